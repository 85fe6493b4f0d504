"""Handler import time against `import boto3` alone (issue 10: each within 1.3x).

Each figure is the median of several fresh interpreters (python -X importtime is not used:
it slows imports down unevenly), measured as the wall time of the import statement inside
the new process, with the environment a deployed function has (Powertools variables,
tracing left to Lambda's active tracing). Machines here are noisy: read the ratios.

    python -m benchmarks.cold_start [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANDLERS = ["submit", "prepare", "admit", "poll", "store", "notify_failure", "deliver_webhook"]
ENV = {
    "POWERTOOLS_SERVICE_NAME": "image-to-video",
    "POWERTOOLS_METRICS_NAMESPACE": "ImageToVideo",
    "AWS_DEFAULT_REGION": "us-east-1",
    "PYTHONDONTWRITEBYTECODE": "",
}
CODE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str, runs: int) -> float:
    env = {**os.environ, **ENV}
    env.pop("PYTHONDONTWRITEBYTECODE")
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CODE.format(module=module)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def measure(runs: int = 7) -> dict:
    import_seconds("boto3", 1)  # warm the file cache and bytecode
    figures = {"boto3": import_seconds("boto3", runs)}
    for name in HANDLERS:
        import_seconds(f"functions.{name}.app", 1)
        figures[name] = import_seconds(f"functions.{name}.app", runs)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    figures = measure(args.runs)
    base = figures["boto3"]
    print(f"Import time, median of {args.runs} fresh interpreters (Python {sys.version.split()[0]})")
    print(f"  {'import boto3':<26} {base * 1000:7.1f} ms   1.00x")
    for name in HANDLERS:
        print(f"  {'functions.' + name + '.app':<26} {figures[name] * 1000:7.1f} ms   {figures[name] / base:4.2f}x")


if __name__ == "__main__":
    main()
