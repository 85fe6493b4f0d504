"""`i2v submit`: upload images with their options as S3 metadata, and optionally watch them.

Options go as user metadata, as a user's own upload would carry them. S3 metadata is ASCII on
the wire: any other text is sent RFC 2047-encoded (UTF-8 encoded words), which the pipeline
decodes. The job key, and so the execution name and the job record, follow from the object's
identity (bucket, key, version), so the command watches exactly the jobs it started.
"""

from __future__ import annotations

import mimetypes
import statistics
import sys
import time
from dataclasses import dataclass, field
from email.header import Header
from pathlib import Path

from botocore.exceptions import ClientError

from i2v.identity import execution_name, job_key

from . import records
from .render import cost_text, emit, seconds_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
METADATA_LIMIT = 2048  # S3: user metadata keys and values, UTF-8 bytes, at most 2 KB
DONE, FAILED = "done", "failed"


class UsageError(Exception):
    """Exit code 2."""


def encode_metadata_value(value: str) -> str:
    """ASCII unchanged; other text as RFC 2047 encoded words on one line."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="")


def metadata_for(prompt: str | None, options: list[tuple[str, str]], provider: str | None) -> dict:
    metadata = {}
    for key, value in options:
        metadata[key] = value
    if prompt is not None:
        metadata["prompt"] = prompt
    if provider:
        metadata["provider"] = provider
    encoded = {key: encode_metadata_value(str(value)) for key, value in metadata.items()}
    for key in encoded:
        if not key.isascii() or not key.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"option name {key!r}: use letters, digits, '-' and '_'")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in encoded.items())
    if size > METADATA_LIMIT:
        raise UsageError(f"the options take {size} bytes as S3 metadata (limit {METADATA_LIMIT}); shorten the prompt")
    return encoded


def expand_images(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, key under the input prefix): a folder keeps its name and relative paths, as a folder drop would."""
    found = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                found.append((file, f"{path.resolve().name}/{file.relative_to(path).as_posix()}"))
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise UsageError(f"no such file or folder: {path}")
    if not found:
        raise UsageError("no images to submit (.jpg, .jpeg, .png, .webp)")
    return found


@dataclass
class Job:
    image: str
    key: str
    job_key: str
    provider: str | None = None
    phase: str = "queued"
    started: float = field(default_factory=time.monotonic)
    record: dict | None = None
    note: str = ""
    file: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in (DONE, FAILED)


def upload(target, image: Path, key: str, metadata: dict) -> Job:
    bucket = target.output("InputBucketName")
    content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
    with image.open("rb") as body:
        answer = target.client("s3").put_object(
            Bucket=bucket, Key=key, Body=body, Metadata=metadata, ContentType=content_type
        )
    etag = (answer.get("ETag") or "").strip('"') or None
    return Job(image=str(image), key=key, job_key=job_key(bucket, key, answer.get("VersionId"), etag))


def _execution_arn(target, name: str) -> str:
    machine = target.output("StateMachineArn")
    return machine.replace(":stateMachine:", ":execution:", 1) + ":" + name


def current_state(target, job: Job) -> str | None:
    """The state the job's execution last entered, or None when it has not started."""
    sfn = target.client("stepfunctions")
    try:
        events = sfn.get_execution_history(
            executionArn=_execution_arn(target, execution_name(job.job_key)), reverseOrder=True, maxResults=20
        )["events"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "ResourceNotFound"):
            return None
        raise
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if details:
            return details.get("name")
    return "Route"


def refresh(target, job: Job) -> None:
    record = records.get(target, job.job_key)
    job.record = record
    if record:
        job.provider = record.get("provider") or job.provider
        status = record.get("job_status")
        if status in ("succeeded", "failed") and record.get("outcome"):
            job.phase = DONE if status == "succeeded" else FAILED
            return
    state = current_state(target, job)
    if state is None:
        # A claimed record means the create call is out (NanoBanana renders inside it).
        job.phase = "rendering" if record else "queued"
    elif state == "Store":
        job.phase = "storing"
    elif state in ("NotifyFailure", "FailureNotified", "NotificationUndeliverable"):
        job.phase = "failing"
    else:
        job.phase = "rendering"


def predicted_seconds(target, provider: str | None, cache: dict) -> float | None:
    """The median time to video of this provider's last 20 successes, if there are any."""
    if not provider:
        return None
    if provider not in cache:
        done = records.query(target, statuses=("succeeded",), limit=20, provider=provider)
        times = [r["total_seconds"] for r in done if r.get("total_seconds") is not None]
        cache[provider] = statistics.median(times) if times else None
    return cache[provider]


def progress_line(job: Job, predicted: float | None, width: int = 0) -> str:
    elapsed = time.monotonic() - job.started
    text = job.phase
    if job.phase == "rendering":
        text += f" {elapsed:.0f} s" + (f" of ~{predicted:.0f} s" if predicted else "")
    elif job.phase in (DONE, FAILED) and job.record:
        outcome = job.record.get("outcome") or {}
        if job.phase == FAILED:
            error = outcome.get("error") or {}
            text += f" {error.get('code')}: {error.get('message')}"
        else:
            text += f" in {seconds_text(job.record.get('total_seconds'))}"
    return f"{job.key:<{width}}  {job.provider or '-':<10}  {text}"


class Progress:
    """Per-image lines on stderr: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last: dict[str, str] = {}
        self.drawn = 0

    def show(self, lines: dict[str, tuple[str, str]]) -> None:
        """lines: key -> (phase, text)."""
        if self.tty:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F")
            for _, line in lines.values():
                self.stream.write("\x1b[2K" + line + "\n")
            self.drawn = len(lines)
        else:
            for key, (phase, line) in lines.items():
                if self.last.get(key) != phase:
                    self.stream.write(line + "\n")
                    self.last[key] = phase
        self.stream.flush()


def download(target, uri: str, directory: Path) -> Path:
    bucket, key = uri[len("s3://") :].split("/", 1)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / key.rsplit("/", 1)[-1]
    target.client("s3").download_file(bucket, key, str(path))
    return path


def result_row(job: Job) -> dict:
    record = job.record or {}
    outcome = record.get("outcome") or {}
    error = outcome.get("error") or {}
    return {
        "image": job.image,
        "source_key": job.key,
        "job_key": job.job_key,
        "provider": job.provider,
        "status": {DONE: "succeeded", FAILED: "failed"}.get(job.phase, job.phase),
        "time_to_video": seconds_text(record.get("total_seconds")) if job.phase == DONE else None,
        "total_seconds": record.get("total_seconds"),
        "cost": cost_text(record.get("cost_usd"), record.get("cost_credits")),
        "cost_usd": record.get("cost_usd"),
        "cost_credits": record.get("cost_credits"),
        "video_uri": record.get("video_uri"),
        "file": job.file,
        "error_code": error.get("code"),
        "error": error.get("message"),
    }


SUBMITTED_COLUMNS = [("source_key", "SOURCE"), ("job_key", "JOB"), ("status", "STATUS")]
RESULT_COLUMNS = [
    ("source_key", "SOURCE"),
    ("provider", "PROVIDER"),
    ("status", "STATUS"),
    ("time_to_video", "TIME"),
    ("cost", "COST"),
    ("where", "VIDEO / ERROR"),
]


def run(target, args, out) -> int:
    images = expand_images(args.images)
    metadata = metadata_for(args.prompt, args.option, args.provider)
    prefix = args.prefix if args.prefix is not None else (target.output("InputPrefix", required=False) or "")
    jobs = []
    for image, relative in images:
        job = upload(target, image, prefix + relative, metadata)
        job.provider = args.provider
        jobs.append(job)
    if not args.wait:
        rows = [{"image": j.image, "source_key": j.key, "job_key": j.job_key, "status": "uploaded"} for j in jobs]
        emit(out, rows, SUBMITTED_COLUMNS, args.json)
        return 0

    progress = Progress()
    predictions: dict = {}
    deadline = time.monotonic() + args.timeout
    while True:
        for job in jobs:
            if not job.finished:
                refresh(target, job)
        width = max(len(j.key) for j in jobs)
        progress.show(
            {
                j.key: (j.phase, progress_line(j, predicted_seconds(target, j.provider, predictions), width))
                for j in jobs
            }
        )
        if all(j.finished for j in jobs) or time.monotonic() >= deadline:
            break
        time.sleep(args.interval)

    for job in jobs:
        if job.phase == DONE and args.out and job.record and job.record.get("video_uri"):
            job.file = str(download(target, job.record["video_uri"], args.out))
    rows = [result_row(j) for j in jobs]
    for row in rows:
        row["where"] = (
            row["file"] or row["video_uri"] or (f"{row['error_code']}: {row['error']}" if row["error_code"] else None)
        )
    if args.json:
        for row in rows:
            row.pop("where")
    emit(out, rows, RESULT_COLUMNS, args.json)
    if not all(j.finished for j in jobs):
        sys.stderr.write(f"i2v: {sum(not j.finished for j in jobs)} job(s) still running after {args.timeout:.0f} s\n")
        return 3
    return 1 if any(j.phase == FAILED for j in jobs) else 0
