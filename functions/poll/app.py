"""Workflow task: one check window at the provider's cadence; returns the updated job state
(never the provider's raw answer) with the next Wait's length."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import state, steps
from i2v.providers import get_provider
from i2v.settings import PollSettings

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = PollSettings.from_env()
    job_state = state.parse(event)
    provider = get_provider(settings, name=job_state["provider"], remaining_ms=context.get_remaining_time_in_millis)
    checks_before = job_state["checks"]
    job_state = steps.poll(
        job_state,
        provider,
        settings=settings,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0,
    )
    metrics.add_metric(name="ProviderPolls", unit=MetricUnit.Count, value=job_state["checks"] - checks_before)
    logger.info(
        "polled",
        extra={"status": job_state["status"], "checks": job_state["checks"], "wait_seconds": job_state["wait_seconds"]},
    )
    return job_state
