"""Workflow task: check the upload and its options, normalise the image into its work copy.

Returns the job state, ``queued`` for admission or ``failed`` (options or image refused:
nothing is paid for). The only function that imports Pillow, so it is the one sized for it.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from i2v import state, submission
from i2v.providers import FAILED, provider_class
from i2v.settings import PrepareSettings

logger = Logger()
metrics = Metrics()
# A prepared image has nothing to count (only rejections are): not a warning.
warnings.filterwarnings("ignore", "No application metrics to publish")


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = PrepareSettings.from_env()
    job_state = state.parse(event)
    job_state = submission.prepare_job(job_state, provider_class(job_state["provider"]), settings=settings)
    if job_state["status"] == FAILED:
        metrics.add_metric(name="JobsRejected", unit=MetricUnit.Count, value=1)
    logger.info("prepared", extra={"status": job_state["status"]})
    return job_state
