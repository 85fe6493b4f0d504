"""State machine task: copy the finished video (and thumbnail) into the output bucket, write the
manifest beside it, and publish the success notification.

A ResultFetchError (refused host, oversize, expired link) propagates: the state machine's
Catch sends it to the failure notifier.
"""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from i2v import fetch, jobs, notify, storage
from i2v.config import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def _seconds_since(text: str | None, now: datetime) -> float | None:
    if not text:
        return None
    start = jobs.parse_time(text)
    return max(0.0, round((now - start).total_seconds(), 1))  # never negative, even with clock skew


@logger.inject_lambda_context(correlation_id_path="job_key")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    job = dict(event)
    # Results are fetched from the hosts of the job's own provider (one stack may use both).
    settings = replace(Settings.from_env(), provider=job.get("provider") or Settings.from_env().provider)
    # From submission until the workflow found the job completed (this task runs right after):
    # it includes image preparation, the provider's queue and up to one poll interval, not render time alone.
    job["render_seconds"] = _seconds_since(job.get("submitted_at"), datetime.now(timezone.utc))

    keys = storage.output_keys(settings, job["job_key"], job["source"]["key"])
    copied = fetch.copy_results(job.get("result"), keys, settings)
    job["warnings"] = list(job.get("warnings") or []) + copied.warnings
    bucket = settings.output_bucket
    thumbnail_uri = copied.thumbnail.uri if copied.thumbnail else _poster_from_input(job, bucket, keys["thumbnail"])

    finished = datetime.now(timezone.utc)
    output = {
        "video_uri": copied.video.uri,
        "thumbnail_uri": thumbnail_uri,
        "manifest_uri": storage.s3_uri(bucket, keys["manifest"]),
    }
    manifest = storage.build_manifest(
        job,
        output={**output, "video_bytes": copied.video.size},
        finished_at=jobs.isoformat(finished),
        total_seconds=_seconds_since(job.get("submitted_at"), finished),
        warnings=job["warnings"],
    )
    storage.write_manifest(bucket, keys["manifest"], manifest)

    output["download_url"] = storage.presign_get(bucket, keys["video"], settings.presign_expiry_seconds)
    output["download_url_expires_at"] = jobs.isoformat(finished + timedelta(seconds=settings.presign_expiry_seconds))
    # The notification carries the manifest's finish time, so the two agree.
    outcome = notify.outcome_from_job(job, status="succeeded", output=output, error=None, finished_at=finished)
    notify.publish_outcome(outcome)

    _record_metrics(job)
    total_seconds = (manifest.get("timings") or {}).get("total_seconds")
    if total_seconds is not None:  # upload to stored video: the dashboard's p50 / p90
        metrics.add_metric(name="TimeToVideo", unit=MetricUnit.Seconds, value=total_seconds)
    logger.info("Video stored", extra={"video_uri": output["video_uri"], "bytes": copied.video.size, "warnings": len(job["warnings"])})
    return {"job_key": job["job_key"], "status": "succeeded", "video_uri": output["video_uri"]}


def _poster_from_input(job: dict, bucket: str, key: str) -> str | None:
    """Providers without a thumbnail (NoHuman) get a poster made from the normalised input."""
    if not job.get("image"):
        return None
    try:
        return storage.thumbnail_from_input(job["image"], bucket, key)
    except (ClientError, OSError) as exc:  # the work copy expired, or Pillow cannot read it
        logger.warning("No thumbnail made from the input", extra={"reason": str(exc)})
        job["warnings"].append("no thumbnail: the provider sent none and the input image could not be read")
        return None


def _record_metrics(job: dict) -> None:
    metrics.add_metric(name="JobsSucceeded", unit=MetricUnit.Count, value=1)
    if job.get("render_seconds") is not None:
        metrics.add_metric(name="RenderSeconds", unit=MetricUnit.Seconds, value=job["render_seconds"])
    cost = job.get("cost") or {}
    if cost.get("credits") is not None:
        metrics.add_metric(name="CreditsUsed", unit=MetricUnit.Count, value=float(cost["credits"]))
    elif cost.get("amount") is not None and cost.get("currency") == "USD":
        metrics.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=float(cost["amount"]))
