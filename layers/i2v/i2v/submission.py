"""The use cases before the provider renders: Submit starts a job's workflow, Prepare checks the
upload and its options and normalises the image, Admit creates the provider job at most once.

Validation happens before any paid call: a job that cannot succeed fails with a clear reason and
costs nothing. The create is guarded by the job record's submission claim (records.py).
"""

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from i2v import options, polling, records, spend, storage
from i2v import state as job_states
from i2v.aws import best_effort, client
from i2v.clock import isoformat
from i2v.errors import (
    ImageError,
    InvalidOptionError,
    PipelineError,
    ProviderAuthError,
    ProviderRejectedError,
    ProviderTransientError,
    SpendCapReachedError,
    SubmitOutcomeUnknownError,
)
from i2v.identity import execution_name, job_key
from i2v.providers import Provider, ProviderJob
from i2v.settings import JobLimits, PrepareSettings, SubmitSettings
from i2v.transitions import fail

logger = Logger(child=True)

# Errors that prove the provider started no job, so the claim can be released.
NOTHING_CREATED = (ProviderAuthError, ProviderRejectedError, ProviderTransientError, SpendCapReachedError)


# ---------------------------------------------------------------- Submit


def new_job_state(*, key: str, source: dict, provider: str, limits: JobLimits, now: datetime) -> dict[str, Any]:
    """The execution input, with every field of the job state model (i2v.state) present."""
    interval = polling.poll_interval(limits.max_wait_minutes, limits.poll_interval_seconds)
    return job_states.new(
        job_key=key,
        source={
            "bucket": source["bucket"],
            "key": source["key"],
            "version_id": source.get("version_id"),
            "etag": source.get("etag"),
            "size": source.get("size"),
        },
        provider=provider,
        status=job_states.QUEUED,
        submitted_at=isoformat(now),
        deadline=isoformat(now + timedelta(minutes=limits.max_wait_minutes)),
        max_wait_minutes=limits.max_wait_minutes,
        max_queue_minutes=limits.max_queue_minutes,
        poll_interval_seconds=interval,
        poll_strategy=limits.poll_strategy if limits.poll_strategy in ("predicted", "fixed") else "predicted",
        # The state machine's caps compare admit_count and poll_count with these.
        max_admits=polling.MAX_ADMITS,
        max_polls=polling.max_polls(limits.max_wait_minutes, interval),
    )


def start_execution(job_state: dict[str, Any], *, state_machine_arn: str) -> str:
    """Start the workflow for this job; a name already taken means an earlier attempt did it."""
    name = execution_name(job_state["job_key"])
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(job_state)
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
        logger.info("execution already exists", extra={"execution": name})
    return name


def start_job(source: dict, *, settings: SubmitSettings, uploaded_at: datetime) -> dict[str, Any]:
    """Submit's whole job: the upload's job state, and its execution started.

    The state depends only on the upload (its time is the S3 event's), so a duplicate delivery
    starts the same execution with the same input: Step Functions answers it as the first.
    """
    key = job_key(source["bucket"], source["key"], source.get("version_id"), source.get("etag"))
    job_state = new_job_state(
        key=key, source=source, provider=settings.provider, limits=settings.limits, now=uploaded_at
    )
    start_execution(job_state, state_machine_arn=settings.state_machine_arn)
    return job_state


# ---------------------------------------------------------------- Prepare


def _head(bucket: str, key: str, version_id: str | None) -> dict:
    params = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    try:
        return client("s3").head_object(**params)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchVersion"):
            raise ImageError("the uploaded object no longer exists", code="SourceMissing") from None
        raise


def _read(bucket: str, key: str, version_id: str | None) -> bytes:
    params = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    return client("s3").get_object(**params)["Body"].read()


def prepare_submission(
    job_state: dict[str, Any], provider: Provider | type[Provider], *, settings: PrepareSettings
) -> None:
    """Options, size checks and image normalisation into the work copy; fills the state.

    Raises InvalidOptionError / ImageError before anything is paid for.
    """
    source = job_state["source"]
    head = _head(source["bucket"], source["key"], source["version_id"])
    # `provider=` chose the provider (choose_provider); what remains are the options.
    asked, metadata = options.split_provider(head.get("Metadata", {}), provider.name)
    if asked != provider.name:
        raise InvalidOptionError(f"this upload asks for provider {asked}, but was submitted to {provider.name}")
    # What was asked for stays in the state if validation fails, so the notification shows it.
    job_state["options"] = options.requested_options(provider.name, settings.default_options, metadata)
    job_state["options"], option_warnings = options.resolve_options_with_warnings(
        provider.name, settings.default_options, metadata
    )

    size = head.get("ContentLength", 0)
    job_state["source"]["size"] = size
    if size == 0:
        raise ImageError("the uploaded object is empty (0 bytes)", code="EmptyObject")
    if size > settings.max_source_bytes:
        raise ImageError(
            f"the uploaded object is {size} bytes; uploads over {settings.max_source_bytes} bytes are refused",
            code="ImageTooLarge",
        )

    # Imported here: Pillow is only needed by Prepare, so the other functions start faster.
    from i2v import images

    prepared = images.prepare_image(
        _read(source["bucket"], source["key"], source["version_id"]),
        min_recommended_px=provider.min_recommended_px,
    )
    work_key = storage.work_key(settings, job_state["job_key"], prepared.extension)
    storage.put_bytes(settings.output_bucket, work_key, prepared.body, prepared.content_type)
    job_state["image"] = {
        "bucket": settings.output_bucket,
        "key": work_key,
        "width": prepared.width,
        "height": prepared.height,
        "format": prepared.format,
        "reencoded": prepared.reencoded,
    }
    job_state["warnings"] = option_warnings + list(prepared.warnings)


def choose_provider(job_state: dict[str, Any], default: str) -> str:
    """The provider the upload's `provider=` metadata names (else ``default``); kept in the state."""
    source = job_state["source"]
    head = _head(source["bucket"], source["key"], source["version_id"])
    name, _ = options.split_provider(head.get("Metadata", {}), default)
    job_state["provider"] = name
    return name


def prepare_job(
    job_state: dict[str, Any], provider: Provider | type[Provider], *, settings: PrepareSettings
) -> dict[str, Any]:
    """The Prepare step: options validated, the image checked and normalised into its work copy.

    A failure we understand (options, image) is returned as a failed state, so the workflow
    sends its one failure notification and nothing is paid for; anything else raises for the
    state machine's Retry and Catch.
    """
    job_state = dict(job_state)
    if job_state.get("status") != job_states.QUEUED:
        return job_state
    try:
        # An image's `provider=` metadata may choose the stack's other provider.
        name = choose_provider(job_state, job_state.get("provider") or settings.provider)
        if name != provider.name:
            from i2v.providers import provider_class

            provider = provider_class(name)
        prepare_submission(job_state, provider, settings=settings)
    except PipelineError as error:
        logger.warning("upload failed before rendering", extra={"code": error.code, "reason": error.message})
        fail(job_state, error)
    return job_state


# ---------------------------------------------------------------- Admit's create


def ensure_provider_job(
    key: str,
    provider: Provider,
    image_url: str,
    job_options: dict,
    *,
    jobs_table: str,
    now: datetime,
    source: dict | None = None,
    caps: spend.Caps | None = None,
    before_send: Callable[[], None] | None = None,
) -> ProviderJob:
    """The provider job for this upload: created at most once, reused on every retry, within
    the daily spend ``caps`` (none when not given). ``before_send`` runs right before the
    create request goes out (admission restamps its rate slot there); if it raises, nothing
    was sent."""
    # Read the key before claiming: a key that cannot be read (missing secret, throttling,
    # no permission) must fail this attempt for S3 to retry, not leave a claim that makes
    # the retry look like a create that was sent.
    provider.load_api_key()
    token = uuid.uuid4().hex
    try:
        existing = records.claim_submission(
            jobs_table, key, provider=provider.name, now=now, source=source, token=token
        )
    except BaseException:
        _forget_claim(jobs_table, key, token)  # in case the put landed: nothing was sent
        raise
    if existing is not None:
        if existing.get("state") == records.SUBMITTED and "provider_job" in existing:
            logger.info("reusing the provider job recorded by an earlier attempt")
            return ProviderJob.from_dict(existing["provider_job"])
        raise SubmitOutcomeUnknownError(
            "an earlier attempt sent the create request and stopped before recording the answer: "
            "its outcome is unknown; nothing was resubmitted, to avoid paying twice"
        )
    sent = False

    def sending() -> None:
        nonlocal sent
        if before_send is not None:
            before_send()
        sent = True

    try:
        provider_job = spend.create_within_caps(
            provider, image_url, job_options, table=jobs_table, now=now, caps=caps or spend.Caps(), sending=sending
        )
    except NOTHING_CREATED:
        _forget_claim(jobs_table, key, token)
        raise
    except BaseException:
        if not sent:  # the spend caps' bookkeeping failed (throttling, say): no request went out
            _forget_claim(jobs_table, key, token)
        raise
    # From here the job exists and the state this step returns carries it: the bookkeeping is
    # tried hard, and if it still fails the job goes on (a retry of this step would find the
    # answer missing and, rightly, not create again).
    best_effort(
        "recording the provider's answer",
        lambda: records.record_submission(jobs_table, key, provider_job, now=now),
    )
    best_effort(
        "keeping the result's signed links",
        lambda: records.keep_result_links(jobs_table, key, provider_job, now=now),
    )
    return provider_job


def _forget_claim(jobs_table: str, key: str, token: str) -> None:
    """Release this attempt's claim when certainly nothing was sent (best effort: a claim left
    behind only makes a retry fail safe, as an unknown outcome)."""
    best_effort("releasing the submission claim", lambda: records.release_claim(jobs_table, key, token=token))
