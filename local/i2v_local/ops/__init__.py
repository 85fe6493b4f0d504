"""The operator's commands: `i2v submit | jobs | show | redrive | cost`, against a deployed stack
(`--stack NAME`) or the running local stack (`--local`), with identical output.

Exit codes (for scripts):
    0  done (submit --wait: every job succeeded)
    1  submit --wait: at least one job failed; redrive --apply: at least one message could not be redriven
    2  usage: bad arguments, no such image, no such job
    3  submit --wait: still running when --timeout ran out
    4  the stack cannot be reached: no such stack, no credentials, no local stack running here
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .target import TargetError, from_local, from_stack

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_TARGET = 0, 1, 2, 3, 4

EPILOG = """exit codes: 0 ok; 1 a job failed (submit --wait) or a message could not be redriven;
2 usage (bad arguments, no such image or job); 3 still running at --timeout; 4 stack not reachable"""


def key_value(text: str) -> tuple[str, str]:
    """argparse type for KEY=VALUE (the value may itself contain "=")."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _target_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    choice = parent.add_mutually_exclusive_group(required=True)
    choice.add_argument(
        "--stack", metavar="NAME", help="a deployed stack: its CloudFormation outputs, with your AWS credentials"
    )
    choice.add_argument(
        "--local", action="store_true", help="the `i2v local up` running in this directory (.i2v/local.json)"
    )
    parent.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    aws = parent.add_argument_group("with --stack")
    aws.add_argument("--region", help="the stack's region (default: your AWS configuration's)")
    aws.add_argument("--profile", help="the AWS profile to use (default: your AWS configuration's)")
    return parent


def register(groups) -> None:
    """Add the operator's commands to the `i2v` parser's subcommands."""
    parent = _target_options()
    fmt = argparse.RawDescriptionHelpFormatter

    submit = groups.add_parser(
        "submit",
        parents=[parent],
        formatter_class=fmt,
        epilog=EPILOG,
        help="upload images (or folders of them) to the input bucket, optionally wait for the videos",
        description=(
            "Upload each IMAGE (a folder: every .jpg/.jpeg/.png/.webp in it, keeping its name) under the\n"
            "input prefix, with the prompt and options as S3 metadata (text that is not ASCII is sent\n"
            "RFC 2047-encoded; the pipeline decodes it). With --wait, show each image's progress\n"
            "(queued, rendering: elapsed versus the provider's recent median, storing, done/failed) on\n"
            "stderr, then one row per image: where the video is and what it cost."
        ),
    )
    submit.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    submit.add_argument("--prompt", help="what should happen in the video (any language)")
    submit.add_argument(
        "--option",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a video option, e.g. duration=10, mode=hq, video_model=veo3 (repeatable)",
    )
    submit.add_argument(
        "--provider", choices=["nohuman", "nanobanana"], help="the provider for these images (default: the stack's)"
    )
    submit.add_argument("--prefix", default=None, help="upload under this prefix instead of the stack's InputPrefix")
    submit.add_argument("--wait", action="store_true", help="watch until every image has its outcome")
    submit.add_argument("--out", type=Path, metavar="DIR", help="with --wait: download each video into DIR")
    submit.add_argument(
        "--timeout", type=float, default=1800, help="with --wait: give up after this many seconds (default 1800)"
    )
    submit.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)

    jobs = groups.add_parser(
        "jobs",
        parents=[parent],
        formatter_class=fmt,
        epilog=EPILOG,
        help="list jobs, newest first, from the job records",
        description=(
            "List jobs newest first: source key, provider, status, time to video and cost, from the\n"
            "job records (a Query on the jobs table's ByStatus index, never a Scan)."
        ),
    )
    jobs.add_argument("--status", choices=["running", "succeeded", "failed"], help="only jobs in this status")
    jobs.add_argument(
        "--since", metavar="T", help="created at or after T: 2026-12-01, 2026-12-01T10:00Z, or 30m / 24h / 7d"
    )
    jobs.add_argument("--limit", type=_positive, default=20, metavar="N", help="at most N jobs (default 20)")

    show = groups.add_parser(
        "show",
        parents=[parent],
        formatter_class=fmt,
        epilog=EPILOG,
        help="one job: record, execution steps with timings, notification, fresh download link",
        description=(
            "One job: its record, its execution's steps with timings, its notification, and a fresh\n"
            "presigned link to the video (signed with your credentials)."
        ),
    )
    show.add_argument(
        "job", metavar="JOB_KEY|S3_KEY", help="a job key (or 8+ leading characters) or the uploaded object's key"
    )
    show.add_argument(
        "--expires",
        type=_positive,
        default=3600,
        metavar="S",
        help="download link lifetime in seconds (default 3600, at most 604800)",
    )

    redrive = groups.add_parser(
        "redrive",
        parents=[parent],
        formatter_class=fmt,
        epilog=EPILOG,
        help="list (and with --apply re-drive) the submit failure and webhook dead-letter queues",
        description=(
            "List what sits in the dead-letter queues. With --apply: upload events are handed to the\n"
            "submit function again (a job whose create call was recorded is reused, never paid twice;\n"
            "one whose create outcome is unknown is not re-sent), webhook deliveries are attempted once\n"
            "more; what succeeds leaves its queue."
        ),
    )
    redrive.add_argument(
        "--queue", choices=["all", "submit", "webhook"], default="all", help="which dead-letter queue (default all)"
    )
    redrive.add_argument("--apply", action="store_true", help="re-drive the messages instead of only listing them")

    cost = groups.add_parser(
        "cost",
        parents=[parent],
        formatter_class=fmt,
        epilog=EPILOG,
        help="provider cost (USD, credits) and estimated AWS cost by day and provider",
        description=(
            "Provider cost (USD from NoHuman's price table, NanoBanana credits as reported) and an\n"
            "AWS cost estimate (list prices: transitions, GB-seconds, requests), by UTC day and\n"
            "provider, from the job records."
        ),
    )
    cost.add_argument("--since", metavar="T", help="from T (default 30d): 2026-12-01, an ISO time, or 24h / 7d")


COMMANDS = ("submit", "jobs", "show", "redrive", "cost")


def dispatch(args, out) -> int:
    from . import commands, submit

    handlers = {
        "submit": submit.run,
        "jobs": commands.cmd_jobs,
        "show": commands.cmd_show,
        "redrive": commands.cmd_redrive,
        "cost": commands.cmd_cost,
    }
    err = sys.stderr
    try:
        if args.group == "submit" and args.out and not args.wait:
            raise submit.UsageError("--out needs --wait")
        target = from_local() if args.local else from_stack(args.stack, region=args.region, profile=args.profile)
        return handlers[args.group](target, args, out)
    except (submit.UsageError, ValueError) as exc:
        err.write(f"i2v {args.group}: {exc}\n")
        return EXIT_USAGE
    except TargetError as exc:
        err.write(f"i2v {args.group}: {exc}\n")
        return EXIT_TARGET
    except NoCredentialsError as exc:
        err.write(f"i2v {args.group}: {exc}\n")
        return EXIT_TARGET
    except (ClientError, BotoCoreError) as exc:
        err.write(f"i2v {args.group}: AWS said: {exc}\n")
        return EXIT_TARGET
