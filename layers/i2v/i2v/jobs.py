"""Job identity, execution names, job records (DynamoDB), the job state, and the submit and poll steps.

A job is one version of one uploaded object. Its key is a hash of that identity, so S3's
duplicate deliveries land on the same job, the same execution name and the same record.

The record in JOBS_TABLE (partition key `job_key`) is what keeps the paid create call to at
most one per upload, even across crashes:

    state "submitting"  claimed before the create call; no provider job id yet
    state "submitted"   the create call answered; `provider_job_id` and `provider_job` (JSON)

A retry that finds "submitted" reuses the recorded job; one that finds "submitting" cannot
know whether the provider started a job, so it fails with SubmitOutcomeUnknownError instead
of paying again. Other steps may add their own attributes to the record.

For the operator (`i2v jobs`, `i2v show`, `i2v cost`) every record also carries a listing:
`job_status` (running, then succeeded / failed) and `created_at`, the key of the table's
`ByStatus` index, plus the source, and once the outcome is known its cost, time to video and
the outcome itself (`record_outcome`).

Result links often carry a signature in their query string (a credential until they expire).
Everything that outlives the job (the job state, hence the execution's input and history,
and the job record) carries them without their query. The links as given are kept only in a
short-lived item of their own, `<job_key>#result` (deleted by Store once the outcome went out,
and by DynamoDB's TTL after RESULT_LINK_HOURS otherwise), which Store reads to download.
"""

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from i2v import options, spend, storage
from i2v import state as job_state
from i2v.aws import client
from i2v.config import Settings
from i2v.errors import (
    ImageError,
    InvalidOptionError,
    PipelineError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderRejectedError,
    ProviderTransientError,
    SpendCapReachedError,
    SubmitOutcomeUnknownError,
)
from i2v.providers import COMPLETED, FAILED, RUNNING, Provider, ProviderJob

if TYPE_CHECKING:  # Powertools' event classes cost ~10 ms to import; only Submit needs them
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

logger = Logger(child=True)

TIMED_OUT = "timed_out"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
RECORD_TTL_DAYS = 30
# The jobs table's index for listing jobs newest first (partition job_status, sort created_at).
STATUS_INDEX = "ByStatus"
LISTED_STATUSES = ("running", "succeeded", "failed")
# Providers keep result links from an hour to two days: no reason to keep them longer.
RESULT_LINK_HOURS = 48
RESULT_LINK_SUFFIX = "#result"
# A Standard workflow holds 25,000 history events; one poll loop costs about ten of them.
MAX_POLLS = 2000
# Admission rounds (Wait, Admit, Route: about ten events each) are capped the same way.
MAX_ADMITS = 2000
# Errors that prove the provider started no job, so the claim can be released.
NOTHING_CREATED = (ProviderAuthError, ProviderRejectedError, ProviderTransientError, SpendCapReachedError)


# ---------------------------------------------------------------- identity


def job_key(bucket: str, key: str, version_id: str | None, etag: str | None) -> str:
    """sha256 of (bucket, decoded key, version id or ETag). JSON keeps the parts unambiguous
    (keys may contain any character)."""
    identity = json.dumps([bucket, key, version_id or (etag or "").strip('"')], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def source_from_s3_record(s3_record: "S3EventRecord") -> dict:
    """The uploaded object of one S3 notification record, with its job key."""
    s3_object = s3_record.s3.get_object
    bucket = s3_record.s3.bucket.name
    # The record's key is form-URL-encoded ("my photo+1.jpg" arrives as "my+photo%2B1.jpg").
    key = unquote_plus(s3_object.key)
    etag = s3_object.etag.strip('"') or None
    return {
        "job_key": job_key(bucket, key, s3_object.version_id, etag),
        "bucket": bucket,
        "key": key,
        "version_id": s3_object.version_id,
        "etag": etag,
        "size": s3_object.get("size"),
    }


def execution_name(key: str) -> str:
    """Step Functions names are at most 80 characters without / : or spaces."""
    return "i2v-" + key[:60]


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def poll_interval(max_wait_minutes: int, configured_seconds: int) -> int:
    """The configured interval, stretched when a long deadline would need more polls than
    MAX_POLLS allows: the job then waits its whole deadline instead of hitting the cap early."""
    return max(1, configured_seconds, math.ceil(max_wait_minutes * 60 * 2 / MAX_POLLS))


def max_polls(max_wait_minutes: int, poll_interval_seconds: int) -> int:
    """Twice the polls the deadline allows (Lambda and Wait add time), never near the history limit."""
    expected = math.ceil(max_wait_minutes * 60 / max(1, poll_interval_seconds))
    return max(1, min(MAX_POLLS, 2 * expected))


# ---------------------------------------------------------------- job state


def new_job_state(
    *,
    key: str,
    source: dict,
    provider: str,
    settings: Settings,
    now: datetime,
) -> dict:
    """The execution input, with every field of the job state model (i2v.state) present."""
    interval = poll_interval(settings.max_wait_minutes, settings.poll_interval_seconds)
    return job_state.new(
        job_key=key,
        source={
            "bucket": source["bucket"],
            "key": source["key"],
            "version_id": source.get("version_id"),
            "etag": source.get("etag"),
            "size": source.get("size"),
        },
        provider=provider,
        status=job_state.QUEUED,
        submitted_at=isoformat(now),
        deadline=isoformat(now + timedelta(minutes=settings.max_wait_minutes)),
        max_wait_minutes=settings.max_wait_minutes,
        max_queue_minutes=settings.max_queue_minutes,
        poll_interval_seconds=interval,
        poll_strategy=settings.poll_strategy if settings.poll_strategy in ("predicted", "fixed") else "predicted",
        # The state machine's caps compare admit_count and poll_count with these.
        max_admits=MAX_ADMITS,
        max_polls=max_polls(settings.max_wait_minutes, interval),
    )


def without_query(url: str | None) -> str | None:
    """The URL without its query and fragment (where signatures live); None when unreadable."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _carries_secrets(job: ProviderJob) -> bool:
    return any(url and url != without_query(url) for url in (job.video_url, job.thumbnail_url))


def _public_view(job: ProviderJob) -> dict:
    """The provider job as the job record keeps it: result links without their query."""
    links = {"video_url": without_query(job.video_url), "thumbnail_url": without_query(job.thumbnail_url)}
    return {**job.to_dict(), **links}


def apply_provider_job(state: dict, job: ProviderJob) -> dict:
    """Fold a provider's answer into the job state (never the raw response; links without their query)."""
    state["provider_job_id"] = job.id or state.get("provider_job_id")
    state["status"] = job.status
    if job.status == COMPLETED:
        state["result"] = {"video_url": without_query(job.video_url), "thumbnail_url": without_query(job.thumbnail_url)}
    if job.status == FAILED:
        state["error"] = ProviderJobFailedError(job.error or "the provider reported the job failed").as_dict()
    if job.cost is not None:
        state["cost"] = job.cost
    if job.rate_limit is not None:
        state["rate_limit"] = job.rate_limit
    return state


def fail(state: dict, error: PipelineError) -> dict:
    state["status"] = FAILED
    state["error"] = error.as_dict()
    return state


# ---------------------------------------------------------------- job records


def _ttl(now: datetime) -> str:
    return str(int((now + timedelta(days=RECORD_TTL_DAYS)).timestamp()))


def get_record(key: str, settings: Settings) -> dict | None:
    item = (
        client("dynamodb")
        .get_item(TableName=settings.jobs_table, Key={"job_key": {"S": key}}, ConsistentRead=True)
        .get("Item")
    )
    if item is None:
        return None
    record = {name: next(iter(value.values())) for name, value in item.items()}
    if "provider_job" in record:
        record["provider_job"] = json.loads(record["provider_job"])
    return record


def claim_submission(
    key: str, *, provider: str, settings: Settings, now: datetime, source: dict | None = None
) -> dict | None:
    """Claim the right to call the provider's create for this job.

    Returns None when the claim is ours, or the existing record when someone got there first.
    """
    item = {
        "job_key": {"S": key},
        "state": {"S": SUBMITTING},
        "provider": {"S": provider},
        "created_at": {"S": isoformat(now)},
        "expires_at": {"N": _ttl(now)},
        # The listing (STATUS_INDEX): a job is "running" from the moment its create may be sent.
        "job_status": {"S": RUNNING},
    }
    for name in ("bucket", "key"):
        if source and source.get(name):
            item[f"source_{name}"] = {"S": str(source[name])}
    try:
        client("dynamodb").put_item(
            TableName=settings.jobs_table,
            Item=item,
            ConditionExpression="attribute_not_exists(job_key)",
        )
        return None
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    return get_record(key, settings)


def record_submission(key: str, job: ProviderJob, *, settings: Settings, now: datetime) -> None:
    """Written right after the create call answered, so a retry reuses the job instead of paying again."""
    names = "#s = :s, provider_job = :j, updated_at = :u"
    values = {
        ":s": {"S": SUBMITTED},
        ":j": {"S": json.dumps(_public_view(job))},
        ":u": {"S": isoformat(now)},
    }
    if job.id:
        names += ", provider_job_id = :id"
        values[":id"] = {"S": str(job.id)}
    client("dynamodb").update_item(
        TableName=settings.jobs_table,
        Key={"job_key": {"S": key}},
        UpdateExpression="SET " + names,
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues=values,
    )


def keep_result_links(key: str, job: ProviderJob, *, settings: Settings, now: datetime) -> None:
    """Keep a completed job's links as given, signatures included, in their short-lived item.

    Nothing is written for links without a query: the job state's own copy is then complete.
    """
    if job.status != COMPLETED or not _carries_secrets(job):
        return
    item = {
        "job_key": {"S": key + RESULT_LINK_SUFFIX},
        "expires_at": {"N": str(int((now + timedelta(hours=RESULT_LINK_HOURS)).timestamp()))},
    }
    for name in ("video_url", "thumbnail_url"):
        if getattr(job, name):
            item[name] = {"S": getattr(job, name)}
    client("dynamodb").put_item(TableName=settings.jobs_table, Item=item)


def result_links(state: dict, *, settings: Settings) -> dict:
    """The links to download a completed job's results from: the kept ones when there are
    any (they expire with DynamoDB's TTL, so check the time too), else the job state's own."""
    item = (
        client("dynamodb")
        .get_item(
            TableName=settings.jobs_table,
            Key={"job_key": {"S": state["job_key"] + RESULT_LINK_SUFFIX}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    fallback = dict(state.get("result") or {})
    if not item or int(item["expires_at"]["N"]) < datetime.now(UTC).timestamp():
        return fallback
    return {name: (item.get(name) or {}).get("S") or fallback.get(name) for name in ("video_url", "thumbnail_url")}


def forget_result_links(key: str, *, settings: Settings) -> None:
    client("dynamodb").delete_item(TableName=settings.jobs_table, Key={"job_key": {"S": key + RESULT_LINK_SUFFIX}})


def release_claim(key: str, *, settings: Settings) -> None:
    """The provider certainly started nothing: forget the claim so a later retry may try again."""
    client("dynamodb").delete_item(
        TableName=settings.jobs_table,
        Key={"job_key": {"S": key}},
        ConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": SUBMITTING}},
    )


def ensure_provider_job(
    key: str,
    provider: Provider,
    image_url: str,
    job_options: dict,
    *,
    settings: Settings,
    now: datetime,
    source: dict | None = None,
) -> ProviderJob:
    """The provider job for this upload: created at most once, reused on every retry."""
    # Read the key before claiming: a key that cannot be read (missing secret, throttling,
    # no permission) must fail this attempt for S3 to retry, not leave a claim that makes
    # the retry look like a create that was sent.
    provider.load_api_key()
    existing = claim_submission(key, provider=provider.name, settings=settings, now=now, source=source)
    if existing is not None:
        if existing.get("state") == SUBMITTED and "provider_job" in existing:
            logger.info("reusing the provider job recorded by an earlier attempt")
            return ProviderJob.from_dict(existing["provider_job"])
        raise SubmitOutcomeUnknownError(
            "an earlier attempt sent the create request and stopped before recording the answer: "
            "its outcome is unknown; nothing was resubmitted, to avoid paying twice"
        )
    try:
        job = spend.create_within_caps(provider, image_url, job_options, table=settings.jobs_table, now=now)
    except NOTHING_CREATED:
        release_claim(key, settings=settings)
        raise
    keep_result_links(key, job, settings=settings, now=now)
    record_submission(key, job, settings=settings, now=now)
    return job


def record_outcome(outcome: dict, *, settings: Settings, now: datetime | None = None) -> None:
    """The listing attributes of a finished job, from its outcome notification body.

    Idempotent (the same outcome writes the same values), so the notifier may call it on every
    attempt. A job that failed before its create call has no record yet: this creates it.
    """
    now = now or datetime.now(UTC)
    source = outcome.get("source") or {}
    durations = outcome.get("durations") or {}
    cost = outcome.get("cost") or {}
    stored = {key: value for key, value in outcome.items() if key != "output"}
    output = dict(outcome.get("output") or {})
    # A presigned link dies with the signer's credentials: `i2v show` signs a fresh one.
    output.pop("download_url", None)
    output.pop("download_url_expires_at", None)
    stored["output"] = output or None
    values = {
        ":status": {"S": outcome["status"]},
        ":created": {"S": outcome.get("submitted_at") or isoformat(now)},
        ":finished": {"S": outcome.get("finished_at") or isoformat(now)},
        ":outcome": {"S": json.dumps(stored, ensure_ascii=False)},
        ":ttl": {"N": _ttl(now)},
    }
    sets = [
        "job_status = :status",
        "created_at = if_not_exists(created_at, :created)",
        "finished_at = :finished",
        "outcome = :outcome",
        "expires_at = if_not_exists(expires_at, :ttl)",
    ]
    optional = {
        "provider": ("S", outcome.get("provider")),
        "source_bucket": ("S", source.get("bucket")),
        "source_key": ("S", source.get("key")),
        "total_seconds": ("N", durations.get("total_seconds")),
        "cost_usd": ("N", cost.get("amount") if cost.get("currency") == "USD" else None),
        "cost_credits": ("N", cost.get("credits")),
        "error_code": ("S", (outcome.get("error") or {}).get("code")),
        "video_uri": ("S", output.get("video_uri")),
    }
    for name, (kind, value) in optional.items():
        if value is not None and value != "":
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = {kind: str(value)}
    client("dynamodb").update_item(
        TableName=settings.jobs_table,
        Key={"job_key": {"S": outcome["job_key"]}},
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeValues=values,
    )


# ---------------------------------------------------------------- submit


def start_execution(state: dict, *, settings: Settings) -> str:
    """Start the workflow for this job; a name already taken means an earlier attempt did it."""
    name = execution_name(state["job_key"])
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=settings.state_machine_arn, name=name, input=json.dumps(state)
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
        logger.info("execution already exists", extra={"execution": name})
    return name


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


def prepare_submission(state: dict, provider: Provider | type[Provider], *, settings: Settings) -> None:
    """Options, size checks and image normalisation into the work copy; fills the state.

    Raises InvalidOptionError / ImageError before anything is paid for.
    """
    source = state["source"]
    head = _head(source["bucket"], source["key"], source["version_id"])
    # `provider=` chose the provider (choose_provider); what remains are the options.
    asked, metadata = options.split_provider(head.get("Metadata", {}), provider.name)
    if asked != provider.name:
        raise InvalidOptionError(f"this upload asks for provider {asked}, but was submitted to {provider.name}")
    # What was asked for stays in the state if validation fails, so the notification shows it.
    state["options"] = options.requested_options(provider.name, settings.default_options, metadata)
    state["options"], option_warnings = options.resolve_options_with_warnings(
        provider.name, settings.default_options, metadata
    )

    size = head.get("ContentLength", 0)
    state["source"]["size"] = size
    if size == 0:
        raise ImageError("the uploaded object is empty (0 bytes)", code="EmptyObject")
    if size > settings.max_source_bytes:
        raise ImageError(
            f"the uploaded object is {size} bytes; uploads over {settings.max_source_bytes} bytes are refused",
            code="ImageTooLarge",
        )

    # Imported here: Pillow is only needed by submit, so Poll and NotifyFailure start faster.
    from i2v import images

    prepared = images.prepare_image(
        _read(source["bucket"], source["key"], source["version_id"]),
        min_recommended_px=provider.min_recommended_px,
    )
    work_key = storage.work_key(settings, state["job_key"], prepared.extension)
    storage.put_bytes(settings.output_bucket, work_key, prepared.body, prepared.content_type)
    state["image"] = {
        "bucket": settings.output_bucket,
        "key": work_key,
        "width": prepared.width,
        "height": prepared.height,
        "format": prepared.format,
        "reencoded": prepared.reencoded,
    }
    state["warnings"] = option_warnings + list(prepared.warnings)


def choose_provider(state: dict, default: str) -> str:
    """The provider the upload's `provider=` metadata names (else ``default``); kept in the state."""
    source = state["source"]
    head = _head(source["bucket"], source["key"], source["version_id"])
    name, _ = options.split_provider(head.get("Metadata", {}), default)
    state["provider"] = name
    return name


def start_job(source: dict, *, settings: Settings, uploaded_at: datetime) -> dict:
    """Submit's whole job: the upload's job state, and its execution started.

    The state depends only on the upload (its time is the S3 event's), so a duplicate delivery
    starts the same execution with the same input: Step Functions answers it as the first.
    """
    key = job_key(source["bucket"], source["key"], source.get("version_id"), source.get("etag"))
    state = new_job_state(key=key, source=source, provider=settings.provider, settings=settings, now=uploaded_at)
    start_execution(state, settings=settings)
    return state


def prepare_job(state: dict, provider: Provider | type[Provider], *, settings: Settings) -> dict:
    """The Prepare step: options validated, the image checked and normalised into its work copy.

    A failure we understand (options, image) is returned as a failed state, so the workflow
    sends its one failure notification and nothing is paid for; anything else raises for the
    state machine's Retry and Catch.
    """
    state = dict(state)
    if state.get("status") != job_state.QUEUED:
        return state
    try:
        # An image's `provider=` metadata may choose the stack's other provider.
        name = choose_provider(state, state.get("provider") or settings.provider)
        if name != provider.name:
            from i2v.providers import provider_class

            provider = provider_class(name)
        prepare_submission(state, provider, settings=settings)
    except PipelineError as error:
        logger.warning("upload failed before rendering", extra={"code": error.code, "reason": error.message})
        fail(state, error)
    return state
