"""State machine task: copy the finished video (and thumbnail) into the output bucket, write the
manifest beside it, and publish the success notification.

A ResultFetchError (refused host, oversize, expired link) propagates: the state machine's
Catch sends it to the failure notifier. Once the success notification went out the job has
succeeded: nothing after it may fail the task, and a retried Store that finds the outcome
already published returns at once (a re-download could fail on a link that has expired since).
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from i2v import fetch, jobs, notify, state, steps, storage
from i2v.config import Settings

logger = Logger()
metrics = Metrics()


def _seconds_since(text: str | None, now: datetime) -> float | None:
    if not text:
        return None
    start = jobs.parse_time(text)
    return max(0.0, round((now - start).total_seconds(), 1))  # never negative, even with clock skew


@logger.inject_lambda_context(correlation_id_path="job_key")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    job = state.parse(event)
    # Results are fetched from the hosts of the job's own provider (one stack may use both).
    base = Settings.from_env()
    settings = replace(base, provider=job.get("provider") or base.provider)
    # The provider is done with this job: its in-flight slot is free (Admit or Poll released it
    # already; this is the backstop, and idempotent).
    steps.release_slot(job, settings)
    # From the create until the workflow saw the provider finish (within one check cadence).
    job["render_seconds"] = _render_seconds(job)

    keys = storage.output_keys(settings, job["job_key"], job["source"]["key"])
    video_uri = storage.s3_uri(settings.output_bucket, keys["video"])
    if notify.notified_status(job["job_key"]) == "succeeded":
        logger.info("Success already published by an earlier attempt; nothing to do", extra={"video_uri": video_uri})
        return {"job_key": job["job_key"], "status": "succeeded", "video_uri": video_uri}

    # The job state's links have no query (signatures stay out of the execution history); the
    # links as the provider gave them are kept for a short while in the jobs table.
    copied = fetch.copy_results(jobs.result_links(job, settings=settings), keys, settings)
    job["warnings"] = list(job.get("warnings") or []) + copied.warnings
    bucket = settings.output_bucket
    thumbnail_uri = copied.thumbnail.uri if copied.thumbnail else _poster_from_input(job, bucket, keys["thumbnail"])

    # Whole seconds, as the manifest prints it: the notification's durations then agree with it.
    finished = datetime.now(UTC).replace(microsecond=0)
    output = {
        "video_uri": copied.video.uri,
        "thumbnail_uri": thumbnail_uri,
        "manifest_uri": storage.s3_uri(bucket, keys["manifest"]),
    }
    manifest = storage.build_manifest(
        job,
        output={**output, "video_bytes": copied.video.size},
        finished_at=jobs.isoformat(finished),
        warnings=job["warnings"],
    )
    storage.write_manifest(bucket, keys["manifest"], manifest)

    output["download_url"] = storage.presign_get(bucket, keys["video"], settings.presign_expiry_seconds)
    output["download_url_expires_at"] = jobs.isoformat(finished + timedelta(seconds=settings.presign_expiry_seconds))
    # The notification carries the manifest's finish time, so the two agree.
    outcome = notify.outcome_from_job(job, status="succeeded", output=output, error=None, finished_at=finished)
    try:
        notify.publish_outcome(outcome)
    except (ClientError, BotoCoreError) as exc:
        # botocore raises modeled subclasses (ThrottledException, ...) whose names a Retry on
        # ClientError does not match: one name the state machine retries, the cause kept.
        raise notify.OutcomePublishError(f"publishing the success notification failed: {exc}") from exc

    job["total_seconds"] = (manifest.get("timings") or {}).get("total_seconds")
    _after_publish(job, copied.video.size, output["video_uri"], settings)
    return {"job_key": job["job_key"], "status": "succeeded", "video_uri": output["video_uri"]}


def _render_seconds(job: dict) -> float | None:
    created, finished = job.get("created_at"), job.get("provider_finished_at")
    if created and finished:
        return max(0.0, round((jobs.parse_time(finished) - jobs.parse_time(created)).total_seconds(), 1))
    return _seconds_since(job.get("submitted_at"), datetime.now(UTC))


def _after_publish(job: dict, video_bytes: int, video_uri: str, settings: Settings) -> None:
    """Forget the signed links, feed the render-time estimate, metrics and the closing log line:
    best effort, because the job has already succeeded (the links also expire with DynamoDB's TTL)."""
    try:
        steps.record_render_time(job, settings)
    except Exception:
        logger.exception("Could not record the render time; the estimate keeps its older samples")
    try:
        jobs.forget_result_links(job["job_key"], settings=settings)
    except Exception:
        logger.exception("Could not delete the kept result links; DynamoDB's TTL will")
    try:
        _record_metrics(job)
        details = {"video_uri": video_uri, "bytes": video_bytes, "warnings": len(job["warnings"])}
        logger.info("Video stored", extra=details)
    except Exception:
        logger.exception("Recording the stored video's metrics failed; the job still succeeded")


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
    if job.get("total_seconds") is not None:  # upload to stored video: the dashboard's p50 / p90
        metrics.add_metric(name="TimeToVideo", unit=MetricUnit.Seconds, value=job["total_seconds"])
    if job.get("render_seconds") is not None:
        metrics.add_metric(name="RenderSeconds", unit=MetricUnit.Seconds, value=job["render_seconds"])
    cost = job.get("cost") or {}
    if isinstance(cost.get("credits"), (int, float)):
        metrics.add_metric(name="CreditsUsed", unit=MetricUnit.Count, value=float(cost["credits"]))
    elif isinstance(cost.get("amount"), (int, float)) and cost.get("currency") == "USD":
        metrics.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=float(cost["amount"]))
