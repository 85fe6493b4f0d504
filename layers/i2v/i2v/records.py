"""The job records: the one module that reads and writes the jobs table's job items.

One item per job (partition key ``job_key``), written by three parties:

    submission claim   ``state`` "submitting" before the paid create call, "submitted" with
                       ``provider_job_id`` and ``provider_job`` (JSON) once it answered. A retry
                       that finds "submitted" reuses the recorded provider job; one that finds
                       "submitting" cannot know whether the provider started a job
                       (SubmitOutcomeUnknownError): the create is sent at most once per upload.
    listing            ``job_status`` (running, then succeeded / failed) and ``created_at`` (the
                       ``ByStatus`` index the operator's `i2v jobs` queries), the source, and
                       once the outcome is known its cost, time to video and the outcome itself.
    notification lease ``notified_status``, ``notify_claim`` / ``claim_expires_at`` (the lease),
                       ``notified_sns_message_id`` / ``notified_event_id`` (each channel once it
                       went out) and ``notified_at`` (both went out: every later attempt skips).

Every item expires RECORD_TTL_DAYS after it was first written (``expires_at``, DynamoDB TTL).

Signed result links (credentials until they expire) never go into the job item: they are kept
in a short-lived item of their own, ``<job_key>#result``, which Store reads to download and
deletes once the outcome went out (DynamoDB's TTL removes it after RESULT_LINK_HOURS otherwise).

Items are (de)serialised with boto3's TypeSerializer / TypeDeserializer: numbers stay numbers.
The daily spend counters (spend.py) and the admission items (admission.py) are other items of
other shapes, owned by those modules.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from i2v.aws import client
from i2v.clock import isoformat
from i2v.providers import COMPLETED, RUNNING, ProviderJob

logger = Logger(child=True)

RECORD_TTL_DAYS = 30
# The jobs table's index for listing jobs newest first (partition job_status, sort created_at).
STATUS_INDEX = "ByStatus"
LISTED_STATUSES = ("running", "succeeded", "failed")
SUBMITTING = "submitting"
SUBMITTED = "submitted"
# Providers keep result links from an hour to two days: no reason to keep them longer.
RESULT_LINK_HOURS = 48
RESULT_LINK_SUFFIX = "#result"
# Attributes that hold JSON text.
JSON_ATTRIBUTES = ("provider_job", "outcome")

# How long a publish attempt holds the job: longer than an attempt normally takes (a few
# quick DynamoDB, SNS and EventBridge calls), yet short enough that the state machine's
# retries usually outlast the lease of an attempt that was killed. Those retries use FULL
# jitter (Store: waits of up to 10/20/40/60 s; NotifyFailure: up to 2/4/8/16/32 s), so a
# retry may come within seconds while the lease still runs: it gets OutcomePublishError and
# is retried again. That the waits add up to more than the lease is likely, not certain.
CLAIM_LEASE_SECONDS = 45
# Recording that a channel went out is what stops a retry from sending it again, so a throttled
# write is tried harder here than the client's own attempts: about 6 s in all, well inside the
# notifier's timeout, before the lease is given up (and a retry would publish a second time).
REMEMBER_ATTEMPTS = 6
REMEMBER_FIRST_DELAY = 0.2

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class OutcomePublishError(RuntimeError):
    """The notification could not be sent now (a channel refused it, or another attempt holds
    the lease); the state machine's Retry sends it later."""


# ---------------------------------------------------------------- the codec


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value


def from_item(item: Mapping[str, Any]) -> dict:
    """A DynamoDB item (typed form) as plain values: numbers as int / float, JSON attributes parsed."""
    record = {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}
    for name in JSON_ATTRIBUTES:
        if isinstance(record.get(name), str):
            with contextlib.suppress(ValueError):
                record[name] = json.loads(record[name])
    return record


def _typed(value: Any) -> Any:
    if isinstance(value, float):
        value = Decimal(str(value))
    return _serializer.serialize(value)


def _key(job_key: str) -> dict:
    return {"job_key": _typed(job_key)}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def expires_at(now: datetime) -> int:
    """The TTL every job item carries."""
    return _epoch(now + timedelta(days=RECORD_TTL_DAYS))


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- reading


def get(table: str, job_key: str) -> dict | None:
    """One job record as plain values (consistent read), or None."""
    item = client("dynamodb").get_item(TableName=table, Key=_key(job_key), ConsistentRead=True).get("Item")
    return from_item(item) if item is not None else None


# ---------------------------------------------------------------- the submission claim


def claim_submission(
    table: str,
    job_key: str,
    *,
    provider: str,
    now: datetime,
    source: Mapping[str, Any] | None = None,
    token: str | None = None,
) -> dict | None:
    """Claim the right to call the provider's create for this job.

    Returns None when the claim is ours, or the existing record when someone got there first.
    ``token`` names this attempt: when botocore retries a put whose answer was lost, the
    condition fails on our own claim, which the token recognises (a later attempt has another).
    """
    token = token or uuid.uuid4().hex
    record: dict[str, Any] = {
        "job_key": job_key,
        "claim_token": token,
        "state": SUBMITTING,
        "provider": provider,
        "created_at": isoformat(now),
        "expires_at": expires_at(now),
        # The listing (STATUS_INDEX): a job is "running" from the moment its create may be sent.
        "job_status": RUNNING,
    }
    for name in ("bucket", "key"):
        if source and source.get(name):
            record[f"source_{name}"] = str(source[name])
    try:
        client("dynamodb").put_item(
            TableName=table,
            Item={name: _typed(value) for name, value in record.items()},
            ConditionExpression="attribute_not_exists(job_key)",
        )
        return None
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    existing = get(table, job_key)
    if existing is not None and existing.get("claim_token") == token and existing.get("state") == SUBMITTING:
        return None  # our own put, answered after a retry: the create has not been sent
    return existing


def _public_view(provider_job: ProviderJob) -> dict:
    """The provider job as the record keeps it: result links without their query."""
    from i2v.transitions import without_query

    links = {
        "video_url": without_query(provider_job.video_url),
        "thumbnail_url": without_query(provider_job.thumbnail_url),
    }
    return {**provider_job.to_dict(), **links}


def record_submission(table: str, job_key: str, provider_job: ProviderJob, *, now: datetime) -> None:
    """Written right after the create call answered, so a retry reuses the job instead of paying again."""
    sets = "#s = :s, provider_job = :j, updated_at = :u"
    values = {
        ":s": _typed(SUBMITTED),
        ":j": _typed(json.dumps(_public_view(provider_job))),
        ":u": _typed(isoformat(now)),
    }
    if provider_job.id:
        sets += ", provider_job_id = :id"
        values[":id"] = _typed(str(provider_job.id))
    _write_hard(
        "update_item",
        "the provider's answer to a create",
        TableName=table,
        Key=_key(job_key),
        UpdateExpression="SET " + sets,
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues=values,
    )


def _write_hard(
    operation: str,
    what: str,
    *,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
    **request: Any,
) -> None:
    """One DynamoDB write that must not be lost to a passing fault (throttling, a timeout, a 5xx
    past botocore's own retries): tried REMEMBER_ATTEMPTS times with jittered backoff."""
    jitter = rng or random.Random()
    sleep = sleep or time.sleep
    for attempt in range(REMEMBER_ATTEMPTS):
        try:
            getattr(client("dynamodb"), operation)(**request)
            return
        except (ClientError, BotoCoreError) as exc:
            if attempt == REMEMBER_ATTEMPTS - 1 or _is_refusal(exc):
                raise
            logger.warning(f"Could not record {what} yet; trying again", extra={"error": str(exc)})
            sleep(jitter.uniform(0, REMEMBER_FIRST_DELAY * 2**attempt))


def _is_refusal(exc: Exception) -> bool:
    """A ClientError that retrying cannot change (validation, permissions, a failed condition)."""
    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    transient = ("Throttl", "ProvisionedThroughputExceeded", "RequestLimitExceeded", "InternalServerError")
    return status < 500 and not any(name in code for name in transient)


def release_claim(table: str, job_key: str, *, token: str | None = None) -> None:
    """The provider certainly started nothing: forget the claim so a later retry may try again
    (only this attempt's claim, when ``token`` names it; nothing when there is none)."""
    condition, values = "#s = :s", {":s": _typed(SUBMITTING)}
    if token is not None:
        condition += " AND claim_token = :token"
        values[":token"] = _typed(token)
    try:
        client("dynamodb").delete_item(
            TableName=table,
            Key=_key(job_key),
            ConditionExpression=condition,
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


# ---------------------------------------------------------------- signed result links


def keep_result_links(table: str, job_key: str, provider_job: ProviderJob, *, now: datetime) -> None:
    """Keep a completed job's links as given, signatures included, in their short-lived item.

    Nothing is written for links without a query: the job state's own copy is then complete.
    """
    from i2v.transitions import carries_secrets

    if provider_job.status != COMPLETED or not carries_secrets(provider_job):
        return
    record: dict[str, Any] = {
        "job_key": job_key + RESULT_LINK_SUFFIX,
        "expires_at": _epoch(now + timedelta(hours=RESULT_LINK_HOURS)),
    }
    for name in ("video_url", "thumbnail_url"):
        if getattr(provider_job, name):
            record[name] = getattr(provider_job, name)
    _write_hard(
        "put_item",
        "a result's signed links",
        TableName=table,
        Item={name: _typed(value) for name, value in record.items()},
    )


def result_links(table: str, job_state: Mapping[str, Any], *, now: datetime | None = None) -> dict:
    """The links to download a completed job's results from: the kept ones when there are
    any (they expire with DynamoDB's TTL, so check the time too), else the job state's own."""
    kept = get(table, job_state["job_key"] + RESULT_LINK_SUFFIX)
    fallback = dict(job_state.get("result") or {})
    if not kept or int(kept["expires_at"]) < (now or _now()).timestamp():
        return fallback
    return {name: kept.get(name) or fallback.get(name) for name in ("video_url", "thumbnail_url")}


def forget_result_links(table: str, job_key: str) -> None:
    client("dynamodb").delete_item(TableName=table, Key=_key(job_key + RESULT_LINK_SUFFIX))


# ---------------------------------------------------------------- the listing


def record_outcome(table: str, outcome: Mapping[str, Any], *, now: datetime) -> None:
    """The listing attributes of a finished job, from its outcome notification body.

    Idempotent (the same outcome writes the same values), so the notifier may call it on every
    attempt. A job that failed before its create call has no record yet: this creates it.
    """
    source = outcome.get("source") or {}
    durations = outcome.get("durations") or {}
    cost = outcome.get("cost") or {}
    stored = {name: value for name, value in outcome.items() if name != "output"}
    output = dict(outcome.get("output") or {})
    # A presigned link dies with the signer's credentials: `i2v show` signs a fresh one.
    output.pop("download_url", None)
    output.pop("download_url_expires_at", None)
    stored["output"] = output or None
    values: dict[str, Any] = {
        ":status": outcome["status"],
        ":created": outcome.get("submitted_at") or isoformat(now),
        ":finished": outcome.get("finished_at") or isoformat(now),
        ":outcome": json.dumps(stored, ensure_ascii=False),
        ":ttl": expires_at(now),
    }
    sets = [
        "job_status = :status",
        "created_at = if_not_exists(created_at, :created)",
        "finished_at = :finished",
        "outcome = :outcome",
        "expires_at = if_not_exists(expires_at, :ttl)",
    ]
    optional: dict[str, Any] = {
        "provider": outcome.get("provider"),
        "source_bucket": source.get("bucket"),
        "source_key": source.get("key"),
        "total_seconds": durations.get("total_seconds"),
        "cost_usd": cost.get("amount") if cost.get("currency") == "USD" else None,
        "cost_credits": cost.get("credits"),
        "error_code": (outcome.get("error") or {}).get("code"),
        "video_uri": output.get("video_uri"),
    }
    numbers = ("total_seconds", "cost_usd", "cost_credits")
    for name, value in optional.items():
        if value is None or value == "":
            continue
        if name in numbers:
            try:
                value = Decimal(str(value))
            except ArithmeticError:
                continue
        else:
            value = str(value)
        sets.append(f"{name} = :{name}")
        values[f":{name}"] = value
    client("dynamodb").update_item(
        TableName=table,
        Key=_key(outcome["job_key"]),
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeValues={name: _typed(value) for name, value in values.items()},
    )


# ---------------------------------------------------------------- the notification lease


def _notified(record: Mapping[str, Any]) -> bool:
    """Both channels went out (``notified_at`` is only written after they did)."""
    return "notified_at" in record or ("notified_sns_message_id" in record and "notified_event_id" in record)


def success_started(record: Mapping[str, Any]) -> bool:
    """A success notification went out on at least one channel (record as plain values)."""
    return record.get("notified_status") == "succeeded" and (
        "notified_sns_message_id" in record or "notified_event_id" in record
    )


def notified_status(table: str, job_key: str) -> str | None:
    """The outcome ("succeeded" or "failed") once it went out on both channels; None before."""
    record = get(table, job_key) or {}
    return record.get("notified_status") if _notified(record) else None


def claim_notification(table: str, job_key: str, status: str, token: str, *, now: datetime) -> dict | None:
    """Take a lease on notifying this job.

    Returns the record's old fields (plain values) when the lease is ours (new, or taken over
    from an expired one), None when the outcome already went out on both channels (or, for a
    failure, when a success already went out on one). Raises OutcomePublishError while another
    attempt holds an unexpired lease, so the state machine's Retry comes back after it has
    finished or its lease has run out.
    """
    condition = (
        "attribute_not_exists(notified_at)"
        " AND NOT (attribute_exists(notified_sns_message_id) AND attribute_exists(notified_event_id))"
        " AND (attribute_not_exists(notify_claim) OR claim_expires_at < :now)"
    )
    values: dict[str, Any] = {
        ":status": status,
        ":token": token,
        ":now": _epoch(now),
        ":until": _epoch(now + timedelta(seconds=CLAIM_LEASE_SECONDS)),
        ":ttl": expires_at(now),
    }
    if status == "failed":
        # Once a success notification has gone out on any channel, the job succeeded: a later
        # failure (a Store retry that could not finish, say) must never contradict it.
        condition += (
            " AND NOT (notified_status = :succeeded"
            " AND (attribute_exists(notified_sns_message_id) OR attribute_exists(notified_event_id)))"
        )
        values[":succeeded"] = "succeeded"
    try:
        answer = client("dynamodb").update_item(
            TableName=table,
            Key=_key(job_key),
            UpdateExpression=(
                "SET notified_status = :status, notify_claim = :token, claim_expires_at = :until, "
                "expires_at = if_not_exists(expires_at, :ttl)"
            ),
            ConditionExpression=condition,
            ExpressionAttributeValues={name: _typed(value) for name, value in values.items()},
            ReturnValues="ALL_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        old_item: Any = exc.response.get("Item")
        found = from_item(old_item or {})
        if _notified(found):
            return None
        if status == "failed" and success_started(found):
            logger.warning(
                "A success notification already went out for this job; the failure is not published",
                extra={"job_key": job_key},
            )
            return None
        raise OutcomePublishError("another attempt is publishing this outcome") from exc
    return from_item(answer.get("Attributes") or {})


def remember_sent(
    table: str,
    job_key: str,
    field: str,
    value: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> None:
    """Record that one channel went out (its message id), trying hard: this is what stops a
    takeover from sending it again."""
    _write_hard(
        "update_item",
        "a sent notification",
        sleep=sleep,
        rng=rng,
        TableName=table,
        Key=_key(job_key),
        UpdateExpression=f"SET {field} = :value",
        ExpressionAttributeValues={":value": _typed(value)},
    )


def mark_notified(table: str, job_key: str, *, now: datetime) -> None:
    """Both channels went out: from now on every attempt skips."""
    client("dynamodb").update_item(
        TableName=table,
        Key=_key(job_key),
        UpdateExpression="SET notified_at = :now REMOVE notify_claim, claim_expires_at",
        ExpressionAttributeValues={":now": _typed(isoformat(now))},
    )


def release_notification(table: str, job_key: str, token: str) -> None:
    """End our own lease early (only ours: the condition protects a later holder)."""
    try:
        client("dynamodb").update_item(
            TableName=table,
            Key=_key(job_key),
            UpdateExpression="REMOVE notify_claim, claim_expires_at",
            ConditionExpression="notify_claim = :mine",
            ExpressionAttributeValues={":mine": _typed(token)},
        )
    except ClientError:
        # The publish error that brought us here is the one worth raising; this is context.
        # An unreleased lease only delays the retry until it expires.
        logger.exception("Could not release the notification claim", extra={"job_key": job_key})
