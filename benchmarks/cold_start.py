"""Handler import time against `import boto3` alone (issue 10: each within 1.3x).

Each figure is the time of the import statement inside a fresh interpreter, with the
environment a deployed function has (Powertools variables, tracing left to Lambda's active
tracing): its wall time and its CPU time (process_time). An import is CPU-bound, so on an
idle machine the two agree; on a shared, loaded one the wall time also counts the time the
process waited for a core, and the CPU time is the figure to read. The runs are interleaved:
each round imports boto3 and then every handler once, each ratio is taken against the boto3
import of its own round, and the medians over the rounds are printed.

`--contributors` adds, per handler, the modules it imports beyond boto3's with their self
time (python -X importtime, median over a few interpreters; importtime slows imports down
unevenly, so read it for the ranking, not the totals).

    python -m benchmarks.cold_start [--runs 7] [--contributors]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANDLERS = ["submit", "prepare", "admit", "poll", "store", "notify_failure", "deliver_webhook"]
ENV = {
    "POWERTOOLS_SERVICE_NAME": "image-to-video",
    "POWERTOOLS_METRICS_NAMESPACE": "ImageToVideo",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CODE = (
    "import time; t, c = time.perf_counter(), time.process_time(); import {module}; "
    "print(time.perf_counter() - t, time.process_time() - c)"
)


def _env() -> dict:
    env = {**os.environ, **ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def import_seconds(module: str) -> tuple[float, float]:
    """(wall, CPU) seconds of ``import module`` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(module=module)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def measure(runs: int = 7) -> dict:
    """Per clock ("wall", "cpu"): {"boto3": median seconds, name: (median seconds, median ratio
    to boto3 in the same round)}."""
    modules = ["boto3"] + [f"functions.{name}.app" for name in HANDLERS]
    for module in modules:
        import_seconds(module)  # warm the file cache and bytecode
    rounds = [{module: import_seconds(module) for module in modules} for _ in range(runs)]
    figures = {}
    for index, clock in enumerate(("wall", "cpu")):
        figures[clock] = {"boto3": statistics.median(r["boto3"][index] for r in rounds)}
        for name, module in zip(HANDLERS, modules[1:], strict=True):
            figures[clock][name] = (
                statistics.median(r[module][index] for r in rounds),
                statistics.median(r[module][index] / r["boto3"][index] for r in rounds),
            )
    return figures


def self_times(module: str) -> dict[str, int]:
    """Each imported module's self time in microseconds (python -X importtime)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    times = {}
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, name = line.split(":", 1)[1].split("|")
            times[name.strip()] = int(self_us)
    return times


def _group(module: str) -> str:
    parts = module.split(".")
    depth = 3 if parts[0] == "aws_lambda_powertools" else 2 if parts[0] in ("i2v", "functions") else 1
    return ".".join(parts[:depth])


def contributors(name: str, base: set[str], runs: int = 5, top: int = 8) -> list[tuple[str, float]]:
    """The packages ``name`` imports beyond boto3's, by median self time in ms, largest first."""
    samples = [self_times(f"functions.{name}.app") for _ in range(runs)]
    totals: Counter = Counter()
    for module in set().union(*samples) - base:
        totals[_group(module)] += statistics.median(s.get(module, 0) for s in samples) / 1000
    return totals.most_common(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--contributors", action="store_true", help="list what each handler imports beyond boto3")
    args = parser.parse_args(argv)
    figures = measure(args.runs)
    wall, cpu = figures["wall"], figures["cpu"]
    print(f"Import time, median of {args.runs} interleaved rounds (Python {sys.version.split()[0]})")
    print(f"  {'':<30} {'wall':>9}  {'ratio':>6}   {'CPU':>9}  {'ratio':>6}")
    print(f"  {'import boto3':<30} {wall['boto3'] * 1000:6.1f} ms   1.00x   {cpu['boto3'] * 1000:6.1f} ms   1.00x")
    for name in HANDLERS:
        (w, wr), (c, cr) = wall[name], cpu[name]
        print(f"  {'functions.' + name + '.app':<30} {w * 1000:6.1f} ms  {wr:5.2f}x   {c * 1000:6.1f} ms  {cr:5.2f}x")
    if args.contributors:
        base = set(self_times("boto3"))
        for name in HANDLERS:
            listed = ", ".join(f"{module} {ms:.1f}" for module, ms in contributors(name, base))
            print(f"\n{name} beyond boto3 (ms self time): {listed}")


if __name__ == "__main__":
    main()
