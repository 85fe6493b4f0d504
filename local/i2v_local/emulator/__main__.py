"""`python -m i2v_local.emulator --port 8765`: run the provider emulator until Ctrl-C or SIGTERM."""

import argparse
import logging
import signal
import threading

from .server import ProviderEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m i2v_local.emulator",
        description="Local EMULATOR of the NanoBanana Video and NoHuman Studio APIs (not the real services).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="local-emulator-key", help="the Bearer key clients must send")
    parser.add_argument("--render-seconds", type=float, default=2.0, help="minimum wall time of a render")
    parser.add_argument("--public-base-url", default=None, help="base of result URLs (default: the listen URL)")
    parser.add_argument("--rate-limit", type=int, default=30, help="NanoBanana requests per rolling minute")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    emulator = ProviderEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        render_seconds=args.render_seconds,
        public_base_url=args.public_base_url,
        rate_limit=args.rate_limit,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    emulator.start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
