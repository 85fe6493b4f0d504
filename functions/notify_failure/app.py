"""Failure notifications, from two places:

(a) the state machine: a job state that ended failed / timed_out, or that a Catch sent here
    with ``caught`` = {"Error", "Cause"};
(b) the submit function's on-failure SQS queue: Lambda destination records wrapping the S3
    event that submit could not handle even after its retries.

Either way i2v.failure builds the failure outcome and i2v.publishing sends it at most once per job.
"""

import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import failure, state
from i2v.settings import NotifyFailureSettings

logger = Logger()
metrics = Metrics()
# A failure already notified is not counted again: not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish")

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


@lru_cache(maxsize=1)
def _processor() -> "BatchProcessor":
    """The SQS batch processor, imported on first use: the state machine's invocations (most of
    them) never need it, and Powertools' batch and event classes take a while to import."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS)


# ---------------------------------------------------------------- (a) the state machine


def parse_ending_state(event: dict[str, Any]) -> dict[str, Any]:
    """The typed job state of a job that ends here (``state.parse``, a Catch's ``caught`` kept).

    The workflow's UnexpectedStatus path brings a status the model does not know: that job
    still gets its one outcome, which names the status it ended with."""
    try:
        return state.parse(event)
    except state.InvalidJobStateError:
        if not isinstance(event, dict) or event.get("status") in state.STATUSES:
            raise
        job_state = state.parse({**event, "status": "failed"})
        job_state["status"] = event.get("status")
        return job_state


def notify_job_failure(job: dict[str, Any], settings: NotifyFailureSettings) -> dict[str, Any]:
    result = failure.notify_job_failure(job, settings)
    if result.pop("published"):
        # A duplicate (already notified) is the same failed job: count it once.
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        logger.info("Failure notified", extra={"code": result["error_code"]})
    return result


# ---------------------------------------------------------------- (b) submit's on-failure queue


def handle_destination_record(record: "SQSRecord", settings: NotifyFailureSettings) -> None:
    for job in failure.jobs_from_destination_record(record.json_body, settings):
        logger.append_keys(job_key=job["job_key"])
        notify_job_failure(state.parse(job), settings)


# ---------------------------------------------------------------- handler


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> Mapping[str, Any]:
    settings = NotifyFailureSettings.from_env()
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        # A record that cannot be published is returned for SQS to redeliver; the others are done.
        from aws_lambda_powertools.utilities.batch import process_partial_response

        return process_partial_response(
            event=event,
            record_handler=lambda record: handle_destination_record(record, settings),
            processor=_processor(),
            context=context,
        )
    # The state machine's path: the typed job state (a Catch's ``caught`` kept beside it).
    return notify_job_failure(parse_ending_state(event), settings)
