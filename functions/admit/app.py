"""Workflow task: take an admission slot and create the provider job, or say how long to wait.

Small on purpose (no Pillow): NanoBanana's create answers only when the video is rendered,
so this function is what waits out a NanoBanana render. The create's read timeout is kept
inside the function's timeout; a create whose outcome is unknown is never re-sent.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import state, steps
from i2v.providers import get_provider
from i2v.settings import AdmitSettings

logger = Logger()
metrics = Metrics()
# A job that fails before its create has nothing to count here: not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish")


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = AdmitSettings.from_env()
    job_state = state.parse(event)
    provider = get_provider(
        settings, name=job_state["provider"], remaining_ms=context.get_remaining_time_in_millis, create_attempts=1
    )
    job_state = steps.admit(job_state, provider, settings=settings)
    if job_state["status"] == state.QUEUED:
        metrics.add_metric(name="AdmissionWaits", unit=MetricUnit.Count, value=1)
    elif job_state["created_at"]:
        metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    elif (job_state["error"] or {}).get("code") == "SpendCapReached":
        metrics.add_metric(name="SpendCapRejections", unit=MetricUnit.Count, value=1)
    logger.info(
        "admission",
        extra={
            "status": job_state["status"],
            "wait_seconds": job_state["wait_seconds"],
            "provider_job_id": job_state["provider_job_id"],
        },
    )
    return job_state
