"""State machine task: copy the finished video (and thumbnail) into the output bucket, write the
manifest beside it, and publish the success notification (the use case is i2v.storing).

A ResultFetchError propagates for the state machine's Catch; OutcomePublishError for its Retry.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import state, storing
from i2v.settings import StoreSettings

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = StoreSettings.from_env()
    job_state = state.parse(event)
    return storing.store_job(job_state, settings, on_stored=_record_metrics).result()


def _record_metrics(stored: storing.Stored) -> None:
    job_state = stored.job_state
    metrics.add_metric(name="JobsSucceeded", unit=MetricUnit.Count, value=1)
    if job_state.get("total_seconds") is not None:  # upload to stored video: the dashboard's p50 / p90
        metrics.add_metric(name="TimeToVideo", unit=MetricUnit.Seconds, value=job_state["total_seconds"])
    if job_state.get("provider_seconds") is not None:
        # The metric keeps its name (dashboards and alarms use it); it measures provider_seconds.
        metrics.add_metric(name="RenderSeconds", unit=MetricUnit.Seconds, value=job_state["provider_seconds"])
    cost = job_state.get("cost") or {}
    if isinstance(cost.get("credits"), (int, float)):
        metrics.add_metric(name="CreditsUsed", unit=MetricUnit.Count, value=float(cost["credits"]))
    elif isinstance(cost.get("amount"), (int, float)) and cost.get("currency") == "USD":
        metrics.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=float(cost["amount"]))
