"""One provider status check; returns the updated job state (never the provider's raw answer)."""

from datetime import datetime, timezone

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import jobs
from i2v.config import Settings
from i2v.providers import get_provider

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="job_key")
@tracer.capture_lambda_handler(capture_response=False)  # the job state carries result links
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = Settings.from_env()
    # The job's own provider: one stack may use both.
    provider = get_provider(settings, name=event.get("provider"), remaining_ms=context.get_remaining_time_in_millis)
    # ProviderTransientError propagates: the state machine retries it with backoff.
    state = jobs.poll_job_state(event, provider, now=datetime.now(timezone.utc), settings=settings)
    metrics.add_metric(name="ProviderPolls", unit=MetricUnit.Count, value=1)
    logger.info("polled", extra={"status": state["status"], "poll_count": state["poll_count"]})
    return state
