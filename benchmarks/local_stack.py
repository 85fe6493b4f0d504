"""How long the embedded local stack takes to start, and an upload to reach its notification.

Both providers, the sample image, the emulator's render time set to 1 s: the figures show the
pipeline's own overhead (moto, the state machine's Wait/Poll loop, ffmpeg, S3 copies) on this
machine. Compare the ratios, not the seconds: machines here are noisy.
"""

import time
from pathlib import Path

from i2v_local.stack import LocalStack

SAMPLE = Path(__file__).resolve().parents[1] / "local" / "i2v_local" / "samples" / "harbour.jpg"
RUNS = 2


def measure(provider: str) -> tuple[float, list[float]]:
    started = time.perf_counter()
    with LocalStack(provider=provider, render_seconds=1.0, poll_interval=1, quiet=True) as stack:
        start_seconds = time.perf_counter() - started
        latencies = []
        for run in range(RUNS):
            key = f"{stack.input_prefix}bench-{run}-{time.time_ns()}.jpg"
            uploaded = time.perf_counter()
            stack.upload(SAMPLE.read_bytes(), key)
            note = stack.wait_for_notification(key, timeout=180)
            assert note["status"] == "succeeded", note["error"]
            latencies.append(time.perf_counter() - uploaded)
    return start_seconds, latencies


def main() -> None:
    print("Embedded local stack (emulator render time 1 s, poll interval 1 s)")
    print(f"{'provider':>11} {'stack start':>12} {f'upload -> notification (median of {RUNS})':>40}")
    figures = {}
    for provider in ("nohuman", "nanobanana"):
        start_seconds, latencies = measure(provider)
        figures[provider] = sorted(latencies)[len(latencies) // 2]
        print(f"{provider:>11} {start_seconds:>10.1f} s {figures[provider]:>38.1f} s")
    ratio = figures["nohuman"] / figures["nanobanana"]
    print(f"nohuman / nanobanana latency ratio {ratio:.2f}x (the poll loop's cost over a synchronous create)")


if __name__ == "__main__":
    main()
