"""The job state: the one model of what flows between the workflow's tasks.

Every key is always present (null when unknown), so Choice rules and JSONPath never miss.
``parse`` runs at every handler's entry: it fills keys an older execution's state lacks, and
refuses a state whose fields have the wrong type (a broken workflow, not a user error).
docs/architecture.md's "Job state" table is generated from FIELDS (`python -m i2v.state`)
and tests/unit/test_state.py checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

QUEUED = "queued"
STATUSES = ("queued", "running", "completed", "failed", "timed_out")


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple  # JSON types accepted besides null
    default: Any
    set_by: str
    meaning: str

    def fresh_default(self) -> Any:
        return (
            list(self.default)
            if isinstance(self.default, list)
            else (dict(self.default) if isinstance(self.default, dict) else self.default)
        )


NUMBER = (int, float)
FIELDS: tuple[Field, ...] = (
    Field("job_key", (str,), None, "submit", "sha256 of bucket, decoded key, version id or ETag (64 hex)"),
    Field("source", (dict,), None, "submit, prepare", "the upload: bucket, key, version_id, etag, size"),
    Field("provider", (str,), None, "submit", "`nohuman` or `nanobanana`"),
    Field("options", (dict,), {}, "prepare", "the validated per-image options sent to the provider"),
    Field("image", (dict,), None, "prepare", "the normalised work copy: bucket, key, width, height, format, reencoded"),
    Field("provider_job_id", (str,), None, "admit", "the provider's job id"),
    Field("status", (str,), QUEUED, "every task", "queued, running, completed, failed or timed_out"),
    Field("result", (dict,), None, "admit, poll", "video_url, thumbnail_url (without their query)"),
    Field("cost", (dict,), None, "admit, poll", '{"amount", "currency"} or {"credits"}'),
    Field("rate_limit", (dict,), None, "admit", "NanoBanana's rate_limit {count, limit, remaining}"),
    Field("warnings", (list,), [], "prepare, store", "things the person should know (small image, replaced default)"),
    Field("error", (dict,), None, "any task", "{code, message} once the job failed"),
    Field("submitted_at", (str,), None, "submit", "when the upload happened (the S3 event time)"),
    Field("queued_at", (str,), None, "admit", "when the job first asked for an admission slot"),
    Field("created_at", (str,), None, "admit", "when the create request was sent"),
    Field("provider_finished_at", (str,), None, "admit, poll", "when the workflow saw the provider finish"),
    Field("deadline", (str,), None, "submit, admit", "MaxWaitMinutes after the create (after the upload until then)"),
    Field("max_wait_minutes", (int,), 30, "submit", "the deadline's length"),
    Field("max_queue_minutes", (int,), 60, "submit", "how long a job may wait for admission"),
    Field("poll_interval_seconds", (int,), 5, "submit", "the provider's check cadence"),
    Field(
        "poll_strategy",
        (str,),
        "predicted",
        "submit",
        "`predicted` (estimate + check window) or `fixed` (one check per Wait)",
    ),
    Field("render_estimate", (dict,), None, "admit", "{low, p50, p90, samples, source} in seconds"),
    Field("wait_seconds", NUMBER, 0, "admit, poll", "how long the next Wait state lasts"),
    Field("reserved_at", NUMBER, None, "admit", "the create time admission reserved for this job (epoch seconds)"),
    Field("admit_count", (int,), 0, "admit", "admission attempts so far"),
    Field("max_admits", (int,), 2000, "submit", "cap on admission attempts (the history limit)"),
    Field("create_attempts", (int,), 0, "admit", "create requests refused before any work started (429, 5xx)"),
    Field("last_checked_at", NUMBER, None, "poll", "when the last status check started (epoch seconds)"),
    Field("checks", (int,), 0, "poll", "status checks so far"),
    Field("poll_count", (int,), 0, "poll", "Poll invocations (check windows) so far"),
    Field("max_polls", (int,), 720, "submit", "cap on Poll invocations"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
# Keys a task may add for the next one that are not part of the state itself.
TRANSIENT_KEYS = ("caught",)


class InvalidJobStateError(ValueError):
    """A task received something that is not a job state."""


def parse(event: Any) -> dict:
    """The job state in ``event``, every field present and of its type."""
    if not isinstance(event, dict) or not isinstance(event.get("job_key"), str):
        raise InvalidJobStateError("not a job state: no job_key")
    state = {}
    for f in FIELDS:
        value = event.get(f.name, f.fresh_default())
        if value is not None and not (
            isinstance(value, f.types) and not (isinstance(value, bool) and bool not in f.types)
        ):
            raise InvalidJobStateError(
                f"job state field {f.name} should be {'/'.join(t.__name__ for t in f.types)}, got {type(value).__name__}"
            )
        state[f.name] = value
    if state["status"] not in STATUSES:
        raise InvalidJobStateError(f"unknown job status {state['status']!r}")
    for key in TRANSIENT_KEYS:
        if key in event:
            state[key] = event[key]
    return state


def new(**values: Any) -> dict:
    state = {f.name: f.fresh_default() for f in FIELDS}
    unknown = set(values) - set(FIELD_NAMES)
    if unknown:
        raise InvalidJobStateError(f"not job state fields: {sorted(unknown)}")
    state.update(values)
    return parse(state)


# ---------------------------------------------------------------- shared descriptions
# The outcome notification and the manifest describe the source and the durations the same
# way: both are built from these two functions.


def describe_source(job: dict, *, with_size: bool = False) -> dict:
    source = job.get("source") or {}
    bucket, key = source.get("bucket"), source.get("key")
    described = {
        "bucket": bucket,
        "key": key,
        "version_id": source.get("version_id"),
        "etag": source.get("etag"),
        "uri": f"s3://{bucket}/{key}" if bucket and key else None,
    }
    if with_size:
        described["size"] = source.get("size")
    return described


def _seconds(start: str | None, end: datetime | None) -> float | None:
    if not isinstance(start, str) or end is None:
        return None
    try:
        began = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, round((end - began).total_seconds(), 1))  # never negative, even with clock skew


def describe_durations(job: dict, finished: datetime) -> dict:
    """``total_seconds`` from the upload to ``finished``; ``provider_seconds`` from the create until
    the workflow saw the provider finish (the provider's queue and render; None when unknown).
    ``render_seconds`` is the deprecated name of ``provider_seconds``, kept with the same value."""
    provider_seconds = job.get("provider_seconds", job.get("render_seconds"))
    return {
        "total_seconds": _seconds(job.get("submitted_at"), finished),
        "provider_seconds": provider_seconds,
        "render_seconds": provider_seconds,
    }


def markdown_table() -> str:
    lines = ["| field | set by | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {f.set_by} | {f.meaning} |" for f in FIELDS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
