"""Failure notifications, from two places:

(a) the state machine: a job state that ended failed / timed_out, or that a Catch sent here
    with ``caught`` = {"Error", "Cause"};
(b) the submit function's on-failure SQS queue: Lambda destination records wrapping the S3
    event that submit could not handle even after its retries.

Either way the outcome goes out through i2v.notify, which publishes at most once per job.
"""

import json
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import jobs, notify, state, steps
from i2v.config import Settings
from i2v.errors import CODES_BY_ERROR_NAME

logger = Logger()
metrics = Metrics()

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


@lru_cache(maxsize=1)
def _processor():
    """The SQS batch processor, imported on first use: the state machine's invocations (most of
    them) never need it, and Powertools' batch and event classes take a while to import."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS)


# ---------------------------------------------------------------- (a) the state machine


def parse_ending_state(event: dict) -> dict:
    """The typed job state of a job that ends here (``state.parse``, a Catch's ``caught`` kept).

    The workflow's UnexpectedStatus path brings a status the model does not know: that job
    still gets its one outcome, which names the status it ended with."""
    try:
        return state.parse(event)
    except state.InvalidJobStateError:
        if not isinstance(event, dict) or event.get("status") in state.STATUSES:
            raise
        job = state.parse({**event, "status": "failed"})
        job["status"] = event.get("status")
        return job


def error_from_caught(caught: dict) -> dict:
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


def error_for_job(job: dict) -> dict:
    if job.get("caught"):
        return error_from_caught(job["caught"])
    if job.get("error"):
        return job["error"]
    minutes = job.get("max_wait_minutes")
    if job.get("status") == jobs.TIMED_OUT:
        return {"code": "TimedOut", "message": f"timed out after {minutes} minutes"}
    if job.get("max_polls") and int(job.get("poll_count") or 0) >= int(job["max_polls"]):
        return {
            "code": "TimedOut",
            "message": f"timed out after {job['poll_count']} status checks (limit {job['max_polls']})",
        }
    return {
        "code": "InternalError",
        "message": f"the workflow ended with job status {job.get('status')!r} and no recorded error",
    }


def _release_slot(job: dict) -> None:
    """The job is over: give its in-flight slot back (best effort: the lease also expires)."""
    try:
        steps.release_slot(job, Settings.from_env())
    except Exception:
        logger.exception("Could not release the admission slot; its lease will expire")


def notify_job_failure(job: dict) -> dict:
    if job.get("job_key") and job.get("provider"):
        _release_slot(job)
    error = error_for_job(job)
    job = {key: value for key, value in job.items() if key != "caught"}
    job["status"] = "failed"
    job["error"] = error
    result = notify.publish_outcome(notify.outcome_from_job(job, status="failed", output=None, error=error))
    if result["published"]:
        # A duplicate (already notified) is the same failed job: count it once.
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        logger.info("Failure notified", extra={"code": error["code"]})
    return {"job_key": job.get("job_key"), "status": "failed", "error_code": error["code"]}


# ---------------------------------------------------------------- (b) submit's on-failure queue


def jobs_from_destination_record(record: dict, settings: Settings) -> list[dict]:
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
        source = jobs.source_from_s3_record(s3_record)
        uploaded = datetime.fromisoformat(s3_record.event_time.replace("Z", "+00:00"))
        state = jobs.new_job_state(
            key=source["job_key"],
            source=source,
            provider=settings.provider,
            settings=settings,
            now=uploaded,
        )
        state["status"] = "failed"
        state["error"] = {"code": "SubmitFailed", "message": message}
        failed.append(state)
    return failed


def handle_destination_record(record: "SQSRecord") -> None:
    settings = Settings.from_env()
    for job in jobs_from_destination_record(record.json_body, settings):
        logger.append_keys(job_key=job["job_key"])
        notify_job_failure(state.parse(job))


# ---------------------------------------------------------------- handler


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        # A record that cannot be published is returned for SQS to redeliver; the others are done.
        from aws_lambda_powertools.utilities.batch import process_partial_response

        return process_partial_response(
            event=event, record_handler=handle_destination_record, processor=_processor(), context=context
        )
    # The state machine's path: the typed job state (a Catch's ``caught`` kept beside it).
    return notify_job_failure(parse_ending_state(event))
