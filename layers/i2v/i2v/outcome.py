"""The outcome notification body (schema version 1): what happened to one upload.

The same body goes to the SNS topic (email, SQS, webhooks) and to EventBridge, and the job
record keeps it for `i2v show`; docs/notifications.md documents every field.
"""

from datetime import datetime
from typing import Any

from i2v import state as job_states
from i2v.clock import isoformat, utc_now

SCHEMA_VERSION = "1"
EVENT_SOURCE = "image-to-video"
DETAIL_TYPES = {"succeeded": "Video Succeeded", "failed": "Video Failed"}


def outcome_from_job(
    job: dict[str, Any], *, status: str, output: dict | None, error: dict | None, finished_at: datetime | None = None
) -> dict:
    """The schema-version-1 notification body for a finished job.

    ``status`` is "succeeded" (with ``output``) or "failed" (with ``error`` {code, message};
    the job's own ``error`` is used when none is given). ``finished_at`` defaults to now; Store
    passes the moment it wrote into the manifest, so both say the same.
    """
    if status not in DETAIL_TYPES:
        raise ValueError(f"status must be 'succeeded' or 'failed' (got {status!r})")
    finished = finished_at or utc_now()
    if status == "failed":
        error = (
            error
            or job.get("error")
            or {"code": "InternalError", "message": "the job failed without a recorded reason"}
        )
        output = None
    else:
        error = None
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "job_key": job.get("job_key"),
        "source": job_states.describe_source(job),
        "provider": job.get("provider"),
        "provider_job_id": job.get("provider_job_id"),
        "options": job.get("options") or {},
        "output": output,
        "cost": job.get("cost"),
        "durations": job_states.describe_durations(job, finished),
        "warnings": list(job.get("warnings") or []),
        "error": error,
        "submitted_at": job.get("submitted_at"),
        "finished_at": isoformat(finished),
    }
