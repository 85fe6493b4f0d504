"""S3 trigger: turn each uploaded object into its job's execution, and return.

Everything else (checking the image, admission, the provider, waiting, storing, notifying)
is a state of that execution. The execution name is a hash of the object's identity and the
input depends only on the upload, so a duplicate delivery meets the same execution.
"""

import warnings
from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import identity, submission
from i2v.settings import SubmitSettings

logger = Logger()
metrics = Metrics()
# S3's test event (no records) has nothing to count: not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish")


def _event_time(s3_record: S3EventRecord) -> datetime:
    try:
        return datetime.fromisoformat(s3_record.event_time.replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = SubmitSettings.from_env()
    results = []
    # "Records" is absent from S3's s3:TestEvent, sent when the notification is configured.
    for s3_record in S3Event(event).records if "Records" in event else []:
        source = identity.source_from_s3_record(s3_record)
        logger.set_correlation_id(source["job_key"])
        state = submission.start_job(source, settings=settings, uploaded_at=_event_time(s3_record))
        metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=1)
        results.append(
            {
                "job_key": state["job_key"],
                "status": state["status"],
                "execution": identity.execution_name(state["job_key"]),
            }
        )
    logger.info("uploads started", extra={"count": len(results)})
    return {"results": results}
