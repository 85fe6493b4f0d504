"""A folder's worth of uploads at once: stack start, one job's latency, 20 jobs' makespan.

NanoBanana (its create call answers only when the video is rendered), emulator render time
5 s, poll interval 1 s. One stack: first one upload alone (the single-job latency), then 20
uploads at once (the makespan: from the first upload to the last notification). The ratio
of the makespan to one job's latency says how much of the work ran concurrently: 1.0x would
be perfectly parallel, 20x one job at a time. Machines here are noisy and small (the render
itself is ffmpeg, a CPU-bound process per job): compare ratios, not seconds.

    python -m benchmarks.burst [--jobs N] [--render-seconds S]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time
from pathlib import Path

from i2v_local.stack import LocalStack

SAMPLE = Path(__file__).resolve().parents[1] / "local" / "i2v_local" / "samples" / "harbour.jpg"


def measure(jobs: int = 20, render_seconds: float = 5.0) -> dict:
    body = SAMPLE.read_bytes()
    started = time.perf_counter()
    with LocalStack(provider="nanobanana", render_seconds=render_seconds, poll_interval=1, quiet=True) as stack:
        start_seconds = time.perf_counter() - started
        prefix = stack.input_prefix

        key = f"{prefix}single-{time.time_ns()}.jpg"
        uploaded = time.perf_counter()
        stack.upload(body, key)
        note = stack.wait_for_notification(key, timeout=300)
        assert note["status"] == "succeeded", note.get("error")
        single = time.perf_counter() - uploaded

        keys = [f"{prefix}burst-{i:02d}-{time.time_ns()}.jpg" for i in range(jobs)]
        uploaded = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda k: stack.upload(body, k), keys))
        statuses = [stack.wait_for_notification(k, timeout=900)["status"] for k in keys]
        makespan = time.perf_counter() - uploaded
    return {
        "start_seconds": start_seconds,
        "single_seconds": single,
        "jobs": jobs,
        "makespan_seconds": makespan,
        "succeeded": statuses.count("succeeded"),
        "ratio": makespan / single,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.burst", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--render-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    figures = measure(args.jobs, args.render_seconds)
    print(f"Burst on the embedded local stack (NanoBanana, emulator render time {args.render_seconds:g} s, poll interval 1 s)")
    print(f"  stack start                  {figures['start_seconds']:7.1f} s")
    print(f"  one upload -> notification   {figures['single_seconds']:7.1f} s")
    print(
        f"  {figures['jobs']} uploads at once (makespan) {figures['makespan_seconds']:6.1f} s"
        f"   ({figures['succeeded']}/{figures['jobs']} succeeded)"
    )
    print(f"  makespan / one job           {figures['ratio']:7.2f}x   (1x = fully concurrent, {figures['jobs']}x = one at a time)")


if __name__ == "__main__":
    main()
