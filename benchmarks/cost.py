"""AWS cost and completion lag per video: predicted waits and check windows against the fixed loop.

Runs on the embedded local stack, render times drawn uniformly from 40-80 s (seeded), several
jobs per run, both providers:

* NoHuman, PollStrategy=predicted (the default: Wait until shortly before the estimate's low,
  then checks every 5 s inside one Poll invocation);
* NoHuman, PollStrategy=fixed (the baseline: Wait 5 s, one check, Route, again);
* NanoBanana (its create answers with the video, inside the 128 MB Admit function); its
  baseline is the design before (the whole create inside the 1024 MB submit function, then
  Route, Store, VideoStored), modelled from this run's measured create durations.

Per job: state transitions (StateEntered events in the execution's history), Lambda GB-s
(measured invocation durations x the function's memory size, every function the job ran),
AWS cost at published us-east-1 prices - Step Functions Standard $0.025 per 1,000 state
transitions, Lambda arm64 $0.0000133334 per GB-s and $0.20 per million requests (free tiers
ignored) - and the completion lag (provider done, per the emulator, to Store starting).
NoHuman's cadence is 5 s, as its documentation asks; Wait states really wait, so a run lasts
about as long as its longest render.

    python -m benchmarks.cost [--jobs 4] [--seed 7] [--only nohuman|nanobanana]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import datetime
from pathlib import Path

from i2v_local.stack import LocalStack

SAMPLE = Path(__file__).resolve().parents[1] / "local" / "i2v_local" / "samples" / "harbour.jpg"
TRANSITION_USD = 0.025 / 1000
GB_SECOND_USD = 0.0000133334
REQUEST_USD = 0.20 / 1_000_000
OLD_SUBMIT_MB = 1024


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def transitions(stack: LocalStack, job_key: str) -> int:
    sfn = stack.client("stepfunctions")
    machine = stack.resource("VideoStateMachine").ref
    arn = machine.replace(":stateMachine:", ":execution:") + ":i2v-" + job_key[:60]
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return sum(1 for e in events if e["type"].endswith("StateEntered"))


def records_for(stack: LocalStack, job_key: str, key: str) -> list[dict]:
    found = []
    for record in stack.runtime.invocations:
        event = record["event"]
        if (isinstance(event, dict) and event.get("job_key") == job_key) or (
            record["function"] == "SubmitFunction" and key.rsplit("/", 1)[-1] in str(event)
        ):
            found.append(record)
    return found


def run(provider: str, strategy: str, renders: list[float]) -> list[dict]:
    params = {"PollStrategy": strategy, "InitialRenderEstimateSeconds": "0", "PollIntervalSeconds": "5"}
    with LocalStack(provider=provider, render_seconds=5, poll_interval=5, quiet=True, params=params) as stack:
        body = SAMPLE.read_bytes()
        keys = []
        for i, seconds in enumerate(renders):
            stack.set_faults({"render_seconds": seconds})
            before = len(stack.emulator_jobs())
            key = f"{stack.input_prefix}cost-{provider}-{strategy}-{i}-{time.time_ns()}.jpg"
            stack.upload(body, key)
            keys.append(key)
            deadline = time.monotonic() + 60
            while len(stack.emulator_jobs()) == before and time.monotonic() < deadline:
                time.sleep(0.2)  # this render time is read by its create: wait for it before the next
        notes = [stack.wait_for_notification(k, timeout=600) for k in keys]
        stack.settle(timeout=120)
        by_image = {
            j["options"]["image_url"].split("?")[0]: j for j in stack.emulator_jobs() if j.get("http_status") == 200
        }
        rows = []
        for key, note, seconds in zip(keys, notes, renders, strict=False):
            job_key = note["job_key"]
            records = records_for(stack, job_key, key)
            created = next(j for url, j in by_image.items() if job_key in url)
            store = [r for r in records if r["function"] == "StoreFunction"]
            admit = [r for r in records if r["function"] == "AdmitFunction" and r["event"].get("status") == "queued"]
            lag = (
                _time(store[0]["start"]) - _time(created["finished_at"])
                if store and created.get("finished_at")
                else None
            )
            gbs = sum(r["duration_ms"] / 1000 * r["memory_mb"] / 1024 for r in records)
            count = transitions(stack, job_key)
            rows.append(
                {
                    "render": seconds,
                    "status": note["status"],
                    "transitions": count,
                    "gbs": gbs,
                    "requests": len(records),
                    "cost": count * TRANSITION_USD + gbs * GB_SECOND_USD + len(records) * REQUEST_USD,
                    "lag": lag,
                    "create_seconds": max((r["duration_ms"] / 1000 for r in admit), default=0.0),
                    "store_gbs": sum(r["duration_ms"] / 1000 * r["memory_mb"] / 1024 for r in store),
                }
            )
        return rows


def modelled_old_nanobanana(row: dict) -> float:
    """The design before: the whole create in the 1024 MB submit function, then Route, Store, VideoStored."""
    gbs = row["create_seconds"] * OLD_SUBMIT_MB / 1024 + row["store_gbs"]
    return 3 * TRANSITION_USD + gbs * GB_SECOND_USD + 2 * REQUEST_USD


def table(title: str, rows: list[dict]) -> dict:
    print(f"\n{title}")
    print(f"  {'render s':>8} {'status':>9} {'transitions':>11} {'Lambda GB-s':>11} {'AWS $/video':>12} {'lag s':>6}")
    for r in rows:
        lag = f"{r['lag']:6.1f}" if r["lag"] is not None else "     -"
        print(f"  {r['render']:8.1f} {r['status']:>9} {r['transitions']:11d} {r['gbs']:11.2f} {r['cost']:12.6f} {lag}")
    lags = [r["lag"] for r in rows if r["lag"] is not None]
    mean = {
        "transitions": statistics.mean(r["transitions"] for r in rows),
        "gbs": statistics.mean(r["gbs"] for r in rows),
        "cost": statistics.mean(r["cost"] for r in rows),
        "lag": statistics.mean(lags) if lags else float("nan"),
    }
    print(
        f"  {'mean':>8} {'':>9} {mean['transitions']:11.1f} {mean['gbs']:11.2f} {mean['cost']:12.6f} {mean['lag']:6.1f}"
    )
    return mean


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--low", type=float, default=40.0)
    parser.add_argument("--high", type=float, default=80.0)
    parser.add_argument("--only", choices=["nohuman", "nanobanana"])
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    renders = [round(rng.uniform(args.low, args.high), 1) for _ in range(args.jobs)]
    print(f"Render times drawn from {args.low:g}-{args.high:g} s (seed {args.seed}): {renders}")
    print(
        "Prices (us-east-1, published): Step Functions Standard $0.025/1,000 transitions; "
        "Lambda arm64 $0.0000133334/GB-s + $0.20/1M requests"
    )
    if args.only in (None, "nohuman"):
        new = table("NoHuman, PollStrategy=predicted (estimate + check window)", run("nohuman", "predicted", renders))
        old = table(
            "NoHuman, PollStrategy=fixed (baseline: Wait 5 s, one check, Route)", run("nohuman", "fixed", renders)
        )
        print("\n  NoHuman            predicted    fixed   ratio")
        for name, fmt in (("transitions", "{:9.1f}"), ("gbs", "{:9.2f}"), ("cost", "{:9.6f}"), ("lag", "{:9.1f}")):
            ratio = new[name] / old[name] if old[name] else float("nan")
            print(f"  {name:<16} {fmt.format(new[name])} {fmt.format(old[name])} {ratio:7.2f}x")
    if args.only in (None, "nanobanana"):
        rows = run("nanobanana", "predicted", renders)
        new = table("NanoBanana (create inside the 128 MB Admit function)", rows)
        old_cost = statistics.mean(modelled_old_nanobanana(r) for r in rows)
        print(
            f"\n  NanoBanana AWS $/video: {new['cost']:.6f} now, {old_cost:.6f} modelled for the design before "
            f"(1024 MB create, 3 transitions): {new['cost'] / old_cost:.2f}x"
        )


if __name__ == "__main__":
    main()
