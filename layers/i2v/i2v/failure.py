"""NotifyFailure's use case: the one failure notification of a job, from two places:

(a) the state machine: a job state that ended failed / timed_out, or that a Catch sent with
    ``caught`` = {"Error", "Cause"};
(b) the submit function's on-failure SQS queue: Lambda destination records wrapping the S3
    event that submit could not handle even after its retries.

Either way the outcome goes out through i2v.publishing, which publishes at most once per job.
"""

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from i2v import publishing, steps
from i2v.clock import Clock, utc_now
from i2v.errors import CODES_BY_ERROR_NAME
from i2v.identity import source_from_s3_record
from i2v.outcome import outcome_from_job
from i2v.settings import NotifyFailureSettings
from i2v.submission import new_job_state
from i2v.transitions import TIMED_OUT

logger = Logger(child=True)


# ---------------------------------------------------------------- (a) the state machine


def error_from_caught(caught: dict[str, Any]) -> dict[str, Any]:
    """Turn a Catch's {"Error", "Cause"} into our {code, message}.

    Only the exception's class name and message survive a Lambda failure; the class name maps
    back to the stable code. Cause is JSON for Lambda errors, plain text for States.* errors.
    """
    name = caught.get("Error") or ""
    cause_text = caught.get("Cause") or ""
    try:
        cause = json.loads(cause_text)
    except ValueError:
        cause = None
    if not isinstance(cause, dict):
        cause = {"errorMessage": cause_text} if cause_text else {}
    code = CODES_BY_ERROR_NAME.get(name) or CODES_BY_ERROR_NAME.get(cause.get("errorType") or "", "InternalError")
    message = cause.get("errorMessage") or f"a step of the workflow failed with {name or 'an unknown error'}"
    return {"code": code, "message": message}


def error_for_job(job_state: dict[str, Any]) -> dict[str, Any]:
    if job_state.get("caught"):
        return error_from_caught(job_state["caught"])
    if job_state.get("error"):
        return job_state["error"]
    minutes = job_state.get("max_wait_minutes")
    if job_state.get("status") == TIMED_OUT:
        return {"code": "TimedOut", "message": f"timed out after {minutes} minutes"}
    if job_state.get("max_polls") and int(job_state.get("poll_count") or 0) >= int(job_state["max_polls"]):
        return {
            "code": "TimedOut",
            "message": f"timed out after {job_state['poll_count']} status checks (limit {job_state['max_polls']})",
        }
    return {
        "code": "InternalError",
        "message": f"the workflow ended with job status {job_state.get('status')!r} and no recorded error",
    }


def _release_slot(job_state: dict[str, Any], settings: NotifyFailureSettings) -> None:
    """The job is over: give its in-flight slot back (best effort: the lease also expires)."""
    try:
        steps.release_slot(job_state, settings)
    except Exception:
        logger.exception("Could not release the admission slot; its lease will expire")


def notify_job_failure(
    job_state: dict[str, Any], settings: NotifyFailureSettings, *, clock: Clock = utc_now
) -> dict[str, Any]:
    """Publish the job's failure. Returns {job_key, status, error_code, published}."""
    if job_state.get("job_key") and job_state.get("provider"):
        _release_slot(job_state, settings)
    error = error_for_job(job_state)
    job_state = {key: value for key, value in job_state.items() if key != "caught"}
    job_state["status"] = "failed"
    job_state["error"] = error
    outcome = outcome_from_job(job_state, status="failed", output=None, error=error, finished_at=clock())
    result = publishing.publish_outcome(outcome, settings.publish, clock=clock)
    return {
        "job_key": job_state.get("job_key"),
        "status": "failed",
        "error_code": error["code"],
        "published": result["published"],
    }


# ---------------------------------------------------------------- (b) submit's on-failure queue


def jobs_from_destination_record(record: dict[str, Any], settings: NotifyFailureSettings) -> list[dict[str, Any]]:
    """One failed job state per S3 record in a Lambda on-failure destination record."""
    context = record.get("requestContext") or {}
    response = record.get("responsePayload") or {}
    reason = response.get("errorMessage") or "no error message was recorded"
    if response.get("errorType"):
        reason = f"{response['errorType']}: {reason}"
    attempts = context.get("approximateInvokeCount")
    message = (
        f"the upload could not be submitted ({context.get('condition') or 'failed'}"
        f"{f' after {attempts} attempts' if attempts else ''}): {reason}"
    )

    payload = record.get("requestPayload") or {}
    failed = []
    # An s3:TestEvent has no "Records": nothing was uploaded, so nobody to notify.
    from aws_lambda_powertools.utilities.data_classes import S3Event

    for s3_record in S3Event(payload).records if payload.get("Records") else []:
        source = source_from_s3_record(s3_record)
        uploaded = datetime.fromisoformat(s3_record.event_time.replace("Z", "+00:00"))
        job_state = new_job_state(
            key=source["job_key"], source=source, provider=settings.provider, limits=settings.limits, now=uploaded
        )
        job_state["status"] = "failed"
        job_state["error"] = {"code": "SubmitFailed", "message": message}
        failed.append(job_state)
    return failed
