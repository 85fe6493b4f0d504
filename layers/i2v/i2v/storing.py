"""Store's use case: copy the finished video (and thumbnail) into the output bucket, write the
manifest beside it, and publish the success notification.

A ResultFetchError (refused host, oversize, expired link) propagates: the state machine's
Catch sends it to the failure notifier. Once the success notification went out the job has
succeeded: nothing after it may fail the task, and a retried Store that finds the outcome
already published returns at once (a re-download could fail on a link that has expired since).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from i2v import fetch, publishing, records, steps, storage
from i2v.clock import Clock, isoformat, parse_time, utc_now
from i2v.outcome import outcome_from_job
from i2v.records import OutcomePublishError
from i2v.settings import StoreSettings

logger = Logger(child=True)


@dataclass(frozen=True)
class Stored:
    """What Store did: the job state as it ended (with the durations the metrics report),
    the video's location and size, and whether this attempt published the outcome."""

    job_state: dict[str, Any]
    video_uri: str
    video_bytes: int | None = None
    published: bool = False

    def result(self) -> dict[str, Any]:
        return {"job_key": self.job_state["job_key"], "status": "succeeded", "video_uri": self.video_uri}


def provider_seconds(job_state: dict[str, Any], now: datetime) -> float | None:
    """From the create until the workflow saw the provider finish (within one check cadence):
    the provider's queue and render together. Without those times, since the upload."""
    created, finished = job_state.get("created_at"), job_state.get("provider_finished_at")
    if created and finished:
        return max(0.0, round((parse_time(finished) - parse_time(created)).total_seconds(), 1))
    submitted = job_state.get("submitted_at")
    if not submitted:
        return None
    return max(0.0, round((now - parse_time(submitted)).total_seconds(), 1))  # never negative, even with clock skew


def store_job(
    job_state: dict[str, Any],
    settings: StoreSettings,
    *,
    clock: Clock = utc_now,
    on_stored: Callable[[Stored], None] = lambda stored: None,
) -> Stored:
    """Copy, write the manifest, publish; ``on_stored`` (the handler's metrics) runs after the
    success went out, and like the rest of the after-work it cannot fail the job."""
    job_state = dict(job_state)
    # Results are fetched from the hosts of the job's own provider (one stack may use both).
    settings = replace(settings, provider=job_state.get("provider") or settings.provider)
    # The provider is done with this job: its in-flight slot is free (Admit or Poll released it
    # already; this is the backstop, and idempotent).
    steps.release_slot(job_state, settings)
    seconds = provider_seconds(job_state, clock())
    job_state["provider_seconds"] = seconds
    job_state["render_seconds"] = seconds  # deprecated name of the same duration

    keys = storage.output_keys(settings, job_state["job_key"], job_state["source"]["key"])
    video_uri = storage.s3_uri(settings.output_bucket, keys["video"])
    if records.notified_status(settings.jobs_table, job_state["job_key"]) == "succeeded":
        logger.info("Success already published by an earlier attempt; nothing to do", extra={"video_uri": video_uri})
        return Stored(job_state, video_uri)

    # The job state's links have no query (signatures stay out of the execution history); the
    # links as the provider gave them are kept for a short while in the jobs table.
    copied = fetch.copy_results(records.result_links(settings.jobs_table, job_state), keys, settings)
    job_state["warnings"] = list(job_state.get("warnings") or []) + copied.warnings
    bucket = settings.output_bucket
    thumbnail_uri = (
        copied.thumbnail.uri if copied.thumbnail else _poster_from_input(job_state, bucket, keys["thumbnail"])
    )

    # Whole seconds, as the manifest prints it: the notification's durations then agree with it.
    finished = clock().replace(microsecond=0)
    output = {
        "video_uri": copied.video.uri,
        "thumbnail_uri": thumbnail_uri,
        "manifest_uri": storage.s3_uri(bucket, keys["manifest"]),
    }
    manifest = storage.build_manifest(
        job_state,
        output={**output, "video_bytes": copied.video.size},
        finished_at=isoformat(finished),
        warnings=job_state["warnings"],
    )
    storage.write_manifest(bucket, keys["manifest"], manifest)

    output["download_url"] = storage.presign_get(bucket, keys["video"], settings.presign_expiry_seconds)
    output["download_url_expires_at"] = isoformat(finished + timedelta(seconds=settings.presign_expiry_seconds))
    # The notification carries the manifest's finish time, so the two agree.
    outcome = outcome_from_job(job_state, status="succeeded", output=output, error=None, finished_at=finished)
    try:
        publishing.publish_outcome(outcome, settings.publish, clock=clock)
    except (ClientError, BotoCoreError) as exc:
        # botocore raises modeled subclasses (ThrottledException, ...) whose names a Retry on
        # ClientError does not match: one name the state machine retries, the cause kept.
        raise OutcomePublishError(f"publishing the success notification failed: {exc}") from exc

    job_state["total_seconds"] = (manifest.get("timings") or {}).get("total_seconds")
    stored = Stored(job_state, copied.video.uri, copied.video.size, published=True)
    _after_publish(stored, settings, on_stored)
    return stored


def _after_publish(stored: Stored, settings: StoreSettings, on_stored: Callable[[Stored], None]) -> None:
    """Forget the signed links, feed the render-time estimate, metrics and the closing log line:
    best effort, because the job has already succeeded (the links also expire with DynamoDB's TTL)."""
    job_state = stored.job_state
    try:
        steps.record_render_time(job_state, settings)
    except Exception:
        logger.exception("Could not record the render time; the estimate keeps its older samples")
    try:
        records.forget_result_links(settings.jobs_table, job_state["job_key"])
    except Exception:
        logger.exception("Could not delete the kept result links; DynamoDB's TTL will")
    try:
        on_stored(stored)
        details = {"video_uri": stored.video_uri, "bytes": stored.video_bytes, "warnings": len(job_state["warnings"])}
        logger.info("Video stored", extra=details)
    except Exception:
        logger.exception("Recording the stored video's metrics failed; the job still succeeded")


def _poster_from_input(job_state: dict[str, Any], bucket: str, key: str) -> str | None:
    """Providers without a thumbnail (NoHuman) get a poster made from the normalised input."""
    if not job_state.get("image"):
        return None
    try:
        return storage.thumbnail_from_input(job_state["image"], bucket, key)
    except (ClientError, OSError) as exc:  # the work copy expired, or Pillow cannot read it
        logger.warning("No thumbnail made from the input", extra={"reason": str(exc)})
        job_state["warnings"].append("no thumbnail: the provider sent none and the input image could not be read")
        return None
