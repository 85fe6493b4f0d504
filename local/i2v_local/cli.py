"""`i2v`: run the pipeline on the embedded local stack.

    i2v local up   [--port N] [--provider nohuman|nanobanana] [--poll-interval S] [--param Key=Value ...]
                   [--aws-fault SERVICE:Operation:ErrorCode:RATE ...] [--aws-fault-seed N]
    i2v local run  IMAGE [--provider ...] [--prompt TEXT] [--option key=value ...] [--out DIR] [--timeout S]
    i2v bucket purge NAME [--delete-bucket] [--endpoint-url URL]
    i2v submit | jobs | show | redrive | cost  (--stack NAME | --local) [--json]   see i2v_local.ops

Stdout carries machine-readable output only (the JSON line of `up`, then one JSON line per
notification); handler logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import signal
import sys
import threading
import time
from pathlib import Path

from .ops import key_value

EMULATOR_NOTICE = (
    "NOTE: the providers are a local EMULATOR of the NoHuman Studio and NanoBanana Video APIs (default: {provider}; "
    "no account, no key, no cost); it renders a simple pan across your image with ffmpeg."
)


def _aws_fault(text: str) -> str:
    from .aws_faults import FaultSpecError, parse_spec

    try:
        return str(parse_spec(text))
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    from . import ops

    parser = argparse.ArgumentParser(
        prog="i2v",
        description=(
            "Image-to-video pipeline: the operator's tool against a deployed stack (--stack NAME) or the\n"
            "local one (--local, started by `i2v local up` in the same directory). Run `i2v COMMAND --help`."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=ops.EPILOG,
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    ops.register(groups)
    local = groups.add_parser("local", help="the embedded local stack (moto + provider emulator)")
    commands = local.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--provider", choices=["nohuman", "nanobanana"], default="nohuman")
        p.add_argument("--poll-interval", type=int, default=1, help="seconds between status checks (default 1)")
        p.add_argument(
            "--param",
            type=key_value,
            action="append",
            default=[],
            metavar="Key=Value",
            help="template parameter override",
        )
        p.add_argument("--render-seconds", type=float, default=2.0, help="how long the emulator takes per job")
        p.add_argument("--template", default=None, help="template.yaml to run (default: the repository's)")
        p.add_argument("--verbose", action="store_true", help="show the handlers' logs")
        p.add_argument(
            "--aws-fault",
            type=_aws_fault,
            action="append",
            default=[],
            metavar="SERVICE:Operation:ErrorCode:RATE",
            help="answer that AWS operation with that AWS error at that rate, e.g. sns:Publish:Throttled:0.1 (repeatable)",
        )
        p.add_argument(
            "--aws-fault-seed", type=int, default=None, metavar="N", help="seed for --aws-fault (repeat a run)"
        )

    up = commands.add_parser("up", help="start the stack and run until Ctrl-C / SIGTERM")
    up.add_argument("--port", type=int, default=0, help="moto server port (default: a free port)")
    common(up)

    run = commands.add_parser("run", help="one image through the pipeline; outputs into --out")
    run.add_argument("image", type=Path)
    run.add_argument("--prompt", default=None)
    run.add_argument(
        "--option", type=key_value, action="append", default=[], metavar="key=value", help="video option (S3 metadata)"
    )
    run.add_argument("--out", type=Path, default=Path("out"))
    run.add_argument("--timeout", type=float, default=300, help="seconds to wait for the outcome (default 300)")
    run.add_argument("--port", type=int, default=0)
    common(run)

    bucket = groups.add_parser("bucket", help="the buckets a deleted stack kept (your AWS credentials)")
    bucket_commands = bucket.add_subparsers(dest="command", required=True)
    purge = bucket_commands.add_parser("purge", help="delete every object version in a bucket (and the bucket)")
    purge.add_argument("name")
    purge.add_argument("--delete-bucket", action="store_true", help="delete the bucket once it is empty")
    purge.add_argument("--endpoint-url", default=None, help="another S3 endpoint (the local stack's)")
    return parser


def _stack(args, out, on_notification=None, webhook=True):
    from .stack import DEFAULT_TEMPLATE, LocalStack

    return LocalStack(
        args.template or DEFAULT_TEMPLATE,
        port=args.port,
        provider=args.provider,
        poll_interval=args.poll_interval,
        params=dict(args.param),
        render_seconds=args.render_seconds,
        quiet=not args.verbose,
        webhook=webhook,
        on_notification=on_notification,
        aws_faults=args.aws_fault,
        aws_fault_seed=args.aws_fault_seed,
    )


def _emit(out, obj) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


def cmd_up(args, out) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    from .ops.target import remove_local_file, write_local_file

    with _stack(args, out, on_notification=lambda n: _emit(out, {"notification": n})) as stack:
        info = stack.outputs()
        # `i2v ... --local` finds the stack through this file (removed again on the way out).
        local_file = write_local_file(
            {"endpoint_url": stack.endpoint_url, "region": "us-east-1", "outputs": stack.stack_outputs()}
        )
        _emit(out, info)
        err = sys.stderr
        err.write(EMULATOR_NOTICE.format(provider=args.provider) + "\n")
        err.write(f"local stack ready in {time.monotonic() - started:.1f} s. Try:\n")
        err.write(
            f"  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \\\n"
            f"  aws --endpoint-url {info['endpoint_url']} s3 cp photo.jpg "
            f"s3://{info['input_bucket']}/{info['input_prefix']}photo.jpg --metadata prompt='a slow pan'\n"
            "Ctrl-C to stop.\n"
        )
        err.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            remove_local_file(local_file)
        err.write("stopping the local stack\n")
    return 0


def _progress(stack, key: str, started: float) -> str:
    sfn = stack.client("stepfunctions")
    arn = stack.outputs()["state_machine_arn"]
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    status = executions[0]["status"] if executions else "waiting for the upload event"
    polls = sum(1 for i in stack.runtime.invocations if i["function"] == "PollFunction")
    return f"[{time.monotonic() - started:5.1f} s] execution: {status}, provider status checks: {polls}"


def _download(stack, uri: str | None, target_dir: Path) -> Path | None:
    if not uri:
        return None
    bucket, key = uri[len("s3://") :].split("/", 1)
    target = target_dir / key.rsplit("/", 1)[-1]
    stack.client("s3").download_file(bucket, key, str(target))
    return target


def cmd_run(args, out) -> int:
    image: Path = args.image
    if not image.is_file():
        sys.stderr.write(f"i2v: no such file: {image}\n")
        return 2
    metadata = dict(args.option)
    if args.prompt:
        metadata["prompt"] = args.prompt
    err = sys.stderr
    started = time.monotonic()
    # One image, one notification: the webhook receiver is for `up` and the tests.
    with _stack(args, out, webhook=False) as stack:
        err.write(EMULATOR_NOTICE.format(provider=args.provider) + "\n")
        err.write(f"local stack ready in {time.monotonic() - started:.1f} s ({stack.endpoint_url})\n")
        key = f"{stack.input_prefix}{image.name}"
        content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        stack.upload(image.read_bytes(), key, metadata, content_type=content_type)
        err.write(f"uploaded s3://{stack.input_bucket}/{key} {json.dumps(metadata) if metadata else ''}\n")
        deadline = time.monotonic() + args.timeout
        last = ""
        notification = None
        while notification is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                err.write(f"i2v: no outcome notification within {args.timeout:.0f} s\n")
                return 3
            try:
                notification = stack.wait_for_notification(key, timeout=min(1.0, remaining))
            except TimeoutError:
                line = _progress(stack, key, started)
                if line.split("]", 1)[1] != last:
                    err.write(line + "\n")
                    last = line.split("]", 1)[1]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "notification.json").write_text(json.dumps(notification, indent=2, ensure_ascii=False) + "\n")
        if notification.get("status") != "succeeded":
            error = notification.get("error") or {}
            err.write(f"i2v: FAILED {error.get('code')}: {error.get('message')}\n")
            err.write(f"notification written to {args.out / 'notification.json'}\n")
            return 1
        output = notification.get("output") or {}
        written = [args.out / "notification.json"]
        for name in ("video_uri", "thumbnail_uri", "manifest_uri"):
            path = _download(stack, output.get(name), args.out)
            if path:
                written.append(path)
        err.write(f"succeeded in {time.monotonic() - started:.1f} s; wrote:\n")
        for path in written:
            err.write(f"  {path}\n")
        _emit(out, {"status": "succeeded", "files": [str(p) for p in written]})
    return 0


def cmd_bucket_purge(args, out) -> int:
    import boto3

    from .buckets import purge_bucket

    s3 = boto3.client("s3", endpoint_url=args.endpoint_url)
    result = purge_bucket(s3, args.name, delete_bucket=args.delete_bucket)
    _emit(
        out,
        {
            "bucket": args.name,
            "versions_deleted": result.versions_deleted,
            "uploads_aborted": result.uploads_aborted,
            "bucket_deleted": result.bucket_deleted,
        },
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import ops

    args = _parser().parse_args(argv)
    # Stdout is for machine-readable lines; handler logs (Powertools writes to stdout) go to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        if args.group == "bucket":
            return cmd_bucket_purge(args, out)
        if args.group in ops.COMMANDS:
            return ops.dispatch(args, out)
        if args.command == "up":
            return cmd_up(args, out)
        return cmd_run(args, out)
    finally:
        sys.stdout = out


if __name__ == "__main__":
    sys.exit(main())
