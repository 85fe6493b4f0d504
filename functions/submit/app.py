"""S3 trigger: one job per uploaded object version (validate, normalise, presign, create, start the workflow)."""

from datetime import datetime, timezone

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import jobs
from i2v.aws import client
from i2v.config import Settings
from i2v.providers import FAILED, get_provider

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# S3 may redeliver an event long after the first; a week covers its retries and our own.
IDEMPOTENCY_CONFIG = IdempotencyConfig(expires_after_seconds=7 * 24 * 3600)


def submit_object(record: dict, settings: Settings, context: LambdaContext) -> dict:
    logger.set_correlation_id(record["job_key"])
    provider = get_provider(settings, remaining_ms=context.get_remaining_time_in_millis)

    def provider_for(name: str):  # an image's `provider=` metadata may choose the other one
        return get_provider(settings, name=name, remaining_ms=context.get_remaining_time_in_millis)

    state = jobs.submit_upload(
        record, provider, settings=settings, now=datetime.now(timezone.utc), provider_for=provider_for
    )
    if state["status"] == FAILED:
        metrics.add_metric(name="JobsRejected", unit=MetricUnit.Count, value=1)
        if (state.get("error") or {}).get("code") == "SpendCapReached":
            metrics.add_metric(name="SpendCapRejections", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    logger.info("job started", extra={"status": state["status"], "provider_job_id": state["provider_job_id"]})
    return {"job_key": state["job_key"], "status": state["status"], "execution": jobs.execution_name(state["job_key"])}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # responses may carry links
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = Settings.from_env()
    IDEMPOTENCY_CONFIG.register_lambda_context(context)
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=client("dynamodb"))
    # Keyed on the object's identity only, so a redelivered event (other eventTime, same object) matches.
    submit_once = idempotent_function(
        data_keyword_argument="record", persistence_store=persistence, config=IDEMPOTENCY_CONFIG
    )(submit_object)

    results = []
    # "Records" is absent from S3's s3:TestEvent, sent when the notification is configured.
    for s3_record in S3Event(event).records if "Records" in event else []:
        record = jobs.source_from_s3_record(s3_record)
        try:
            results.append(submit_once(record=record, settings=settings, context=context))
        except IdempotencyAlreadyInProgressError:
            # A concurrent duplicate delivery: the invocation holding the record owns this upload
            # (if it dies, S3 retries its event). Raising would send this duplicate to the
            # on-failure queue and a false failure notification.
            logger.info("upload already being submitted by another invocation", extra={"job_key": record["job_key"]})
            execution = jobs.execution_name(record["job_key"])
            results.append({"job_key": record["job_key"], "status": "in_progress", "execution": execution})
    return {"results": results}
