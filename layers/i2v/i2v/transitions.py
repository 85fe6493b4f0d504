"""How a job state changes outside the workflow's own steps: a provider's answer folded in, a
failure recorded, result links stripped of their signatures.

Result links often carry a signature in their query string (a credential until they expire).
Everything that outlives the job (the job state, hence the execution's input and history, and
the job record) carries them without their query; records.keep_result_links keeps the links
as given for a short while.
"""

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from i2v.errors import PipelineError, ProviderJobFailedError
from i2v.providers import COMPLETED, FAILED, ProviderJob

TIMED_OUT = "timed_out"


def without_query(url: str | None) -> str | None:
    """The URL without its query and fragment (where signatures live); None when unreadable."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def carries_secrets(provider_job: ProviderJob) -> bool:
    return any(url and url != without_query(url) for url in (provider_job.video_url, provider_job.thumbnail_url))


def apply_provider_job(job_state: dict[str, Any], provider_job: ProviderJob) -> dict[str, Any]:
    """Fold a provider's answer into the job state (never the raw response; links without their query)."""
    job_state["provider_job_id"] = provider_job.id or job_state.get("provider_job_id")
    job_state["status"] = provider_job.status
    if provider_job.status == COMPLETED:
        job_state["result"] = {
            "video_url": without_query(provider_job.video_url),
            "thumbnail_url": without_query(provider_job.thumbnail_url),
        }
    if provider_job.status == FAILED:
        message = provider_job.error or "the provider reported the job failed"
        job_state["error"] = ProviderJobFailedError(message).as_dict()
    if provider_job.cost is not None:
        job_state["cost"] = provider_job.cost
    if provider_job.rate_limit is not None:
        job_state["rate_limit"] = provider_job.rate_limit
    return job_state


def fail(job_state: dict[str, Any], error: PipelineError) -> dict[str, Any]:
    job_state["status"] = FAILED
    job_state["error"] = error.as_dict()
    return job_state
