"""The outcome notification: one per upload, to the SNS topic and to EventBridge.

``outcome_from_job`` builds the schema-version-1 body (docs/architecture.md,
docs/notifications.md); ``publish_outcome`` sends it exactly once per job. A conditional
write on the jobs table takes a lease (``notify_claim``, ``claim_expires_at``): while it
runs, other attempts raise OutcomePublishError and are retried by the state machine; once
it expires (the holder was killed), the next attempt takes over. Each channel's id is
remembered on the record as soon as it went out, so a takeover never sends it again, and
``notified_at`` is written only after both went out: from then on every attempt skips.
If sending fails the lease is released and the error re-raised for the state machine's Retry.
"""

import json
import random
import textwrap
import time
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from i2v import jobs
from i2v import state as job_state
from i2v.aws import client
from i2v.config import OPTION_NAMES, Settings

logger = Logger(child=True)

SCHEMA_VERSION = "1"
EVENT_SOURCE = "image-to-video"
DETAIL_TYPES = {"succeeded": "Video Succeeded", "failed": "Video Failed"}
PROVIDER_NAMES = {"nohuman": "NoHuman Studio", "nanobanana": "NanoBanana Video"}
SUBJECT_MAX = 99  # SNS: fewer than 100 printable ASCII characters
# How long a publish attempt holds the job: longer than an attempt normally takes (a few
# quick DynamoDB, SNS and EventBridge calls), yet short enough that the state machine's
# retries usually outlast the lease of an attempt that was killed. Those retries use FULL
# jitter (Store: waits of up to 10/20/40/60 s; NotifyFailure: up to 2/4/8/16/32 s), so a
# retry may come within seconds while the lease still runs: it gets OutcomePublishError and
# is retried again. That the waits add up to more than the lease is likely, not certain.
CLAIM_LEASE_SECONDS = 45
RECORD_TTL_DAYS = 30

# What the person who uploaded can do about each failure code: every code the pipeline
# raises (the ``code=`` of ImageError and PipelineError, the classes' codes in errors.py,
# and the codes the workflow and the failure notifier set themselves).
ADVICE = {
    # The upload itself
    "ProviderNotConfigured": "This stack has no API key for the provider the image asked for: upload it with provider= naming a configured provider (or none, for the stack's default), or ask the stack's operator to add the key to the provider key secret.",
    "InvalidOption": "Fix the options in the image's metadata (see the message above) and upload the image again.",
    "EmptyObject": "The file was empty (0 bytes): check that the upload finished, then upload the image again.",
    "CorruptImage": "The file could not be decoded: export the image again (JPEG, PNG or WebP) and upload the new file.",
    "UnsupportedFormat": "Only JPEG, PNG and WebP images are accepted: convert the image to one of them and upload it again.",
    "ImageTooLarge": "The image is too big (see the message above for the limit): make it smaller, in bytes or pixels, and upload it again.",
    "SourceMissing": "The image was deleted before it could be processed: upload it again and leave it in place until the video is ready.",
    # ImageError's own code, in case an ImageError reaches the notifier through a workflow Catch.
    "InvalidImage": "Check that the file is a complete JPEG, PNG or WebP image within the size limits, then upload it again.",
    # The provider
    "ProviderAuthRejected": "The stack's API key was refused by the provider: update the secret that holds the key, then upload the image again.",
    "ProviderRejectedRequest": "The provider refused the request: check the options and the image against the provider's limits, then upload again.",
    "ProviderUnavailable": "The provider was unavailable or rate-limited: upload the image again in a few minutes.",
    "SubmitOutcomeUnknown": "Check the provider dashboard before uploading again: the job may have been created there, and it may have been charged.",
    "ProviderJobFailed": "The provider could not render this video: try another prompt or image, or upload it again.",
    "ProviderError": "The provider gave an answer the stack does not understand: check the provider dashboard for the job, and if the video is not there, upload the image again.",
    "QueueTimeout": "Too many uploads were waiting for the provider: upload the image again later (a folder in smaller batches), or ask the stack's operator to raise MaxQueueMinutes, or ProviderRequestsPerMinute and MaxJobsInFlight if the provider's plan allows more.",
    "TimedOut": "The provider did not finish in time: check the provider dashboard for the job, then upload again (or raise the stack's MaxWaitMinutes).",
    "ResultFetchFailed": "The video was rendered but could not be copied safely from the provider: check the provider dashboard, where it may still be available for a while.",
    # The stack
    "SpendCapReached": "Nothing was charged: the stack's daily cap for this provider is reached. Upload the image again after midnight UTC, when the count starts again, or ask the stack's operator to raise the cap (DailyJobCap, DailySpendCapUsd, DailySpendCapCredits; 0 = no cap).",
    "SubmitFailed": "The job could not be started: upload the image again in a few minutes, and if it fails again, ask the stack's operator to look at the submit function's logs.",
    "InternalError": "Something went wrong inside the stack: upload the image again, and if it fails again, ask the stack's operator to look at its logs.",
}
# A code this version does not know yet.
DEFAULT_ADVICE = "Something unexpected went wrong: upload the image again, and if it fails again, ask the stack's operator to look at its logs."


class OutcomePublishError(RuntimeError):
    """The notification could not be sent now (a channel refused it, or another attempt holds
    the lease); the state machine's Retry sends it later."""


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: str | None) -> datetime | None:
    """jobs.parse_time, but None for a missing or unreadable time: the outcome still goes out."""
    if not text:
        return None
    try:
        moment = jobs.parse_time(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def outcome_from_job(
    job: dict, *, status: str, output: dict | None, error: dict | None, finished_at: datetime | None = None
) -> dict:
    """The schema-version-1 notification body for a finished job.

    ``status`` is "succeeded" (with ``output``) or "failed" (with ``error`` {code, message};
    the job's own ``error`` is used when none is given). ``finished_at`` defaults to now; Store
    passes the moment it wrote into the manifest, so both say the same.
    """
    if status not in DETAIL_TYPES:
        raise ValueError(f"status must be 'succeeded' or 'failed' (got {status!r})")
    finished = finished_at or _now()
    if status == "failed":
        error = (
            error
            or job.get("error")
            or {"code": "InternalError", "message": "the job failed without a recorded reason"}
        )
        output = None
    else:
        error = None
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "job_key": job.get("job_key"),
        "source": job_state.describe_source(job),
        "provider": job.get("provider"),
        "provider_job_id": job.get("provider_job_id"),
        "options": job.get("options") or {},
        "output": output,
        "cost": job.get("cost"),
        "durations": job_state.describe_durations(job, finished),
        "warnings": list(job.get("warnings") or []),
        "error": error,
        "submitted_at": job.get("submitted_at"),
        "finished_at": jobs.isoformat(finished),
    }


# --- text for people ---------------------------------------------------------------------


def _file_name(outcome: dict) -> str:
    key = (outcome.get("source") or {}).get("key") or "(unknown image)"
    return key.rsplit("/", 1)[-1] or key


def _ascii(text: str) -> str:
    """Printable ASCII only (SNS subjects): accents dropped, anything else becomes '?'."""
    folded = unicodedata.normalize("NFKD", text)
    chars = []
    for char in folded:
        if unicodedata.combining(char):
            continue
        chars.append(char if 32 <= ord(char) < 127 else "?")
    return "".join(chars)


def subject_for(outcome: dict) -> str:
    """E.g. "Video ready: harbour.jpg" or "Video failed: harbour.jpg (InvalidOption)"."""
    if outcome["status"] == "succeeded":
        head, tail = "Video ready: ", ""
    else:
        head, tail = "Video failed: ", f" ({_ascii((outcome.get('error') or {}).get('code') or 'InternalError')})"
    name = _ascii(_file_name(outcome))
    room = SUBJECT_MAX - len(head) - len(tail)
    if len(name) > room:
        name = name[: max(room - 3, 1)] + "..."
    return (head + name + tail)[:SUBJECT_MAX]


def human_span(seconds: int) -> str:
    """3600 -> "1 hour", 5400 -> "1 hour 30 minutes", 604800 -> "7 days"."""
    parts = []
    rest = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def _cost_text(cost: dict | None) -> str:
    if not cost:
        return "not reported"
    if cost.get("credits") is not None:
        credits = cost["credits"]
        return (
            f"{credits:g} credit{'s' if credits != 1 else ''}"
            if isinstance(credits, (int, float))
            else f"{credits} credits"
        )
    amount, currency = cost.get("amount"), cost.get("currency") or ""
    if amount is None:
        return "not reported"
    return f"${amount:.2f}" if currency == "USD" else f"{amount} {currency}".strip()


def _options_lines(options: dict) -> list:
    if not options:
        return ["  (provider defaults)"]
    ordered = [name for name in OPTION_NAMES if name in options] + sorted(set(options) - set(OPTION_NAMES))
    width = max(len(name) for name in ordered) + 1
    return [
        f"  {(name.replace('_', ' ') + ':').ljust(width + 1)} {_option_value(name, options[name])}" for name in ordered
    ]


def _option_value(name: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "duration":
        return f"{value} s"
    return str(value)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def email_text(outcome: dict, *, presign_expiry_seconds: int) -> str:
    """The plain-text email: what happened to which image, and what to do next."""
    provider = outcome.get("provider")
    provider_text = PROVIDER_NAMES.get(provider, provider or "unknown provider")
    if outcome.get("provider_job_id"):
        provider_text += f" (job {outcome['provider_job_id']})"
    source_uri = (outcome.get("source") or {}).get("uri") or _file_name(outcome)
    durations = outcome.get("durations") or {}

    if outcome["status"] == "succeeded":
        lines = [f"Your video of {_file_name(outcome)} is ready.", ""]
    else:
        lines = [f"No video could be made from {_file_name(outcome)}.", ""]
    lines += [f"Image:     {source_uri}", f"Provider:  {provider_text}", "Options:"]
    lines += _options_lines(outcome.get("options") or {})
    lines.append("")

    if outcome["status"] == "succeeded":
        output = outcome.get("output") or {}
        finished = _parse_time(outcome.get("finished_at")) or _now()
        expires = _parse_time(output.get("download_url_expires_at")) or finished + timedelta(
            seconds=presign_expiry_seconds
        )
        # The requested expiry is only an upper bound: a link signed with a Lambda role's
        # temporary credentials stops working when those credentials expire.
        validity = (
            f"The link works for up to {human_span(presign_expiry_seconds)}, until {_utc_text(expires)} at the latest "
            "(links signed inside AWS Lambda can stop earlier, when the function's temporary credentials expire); "
            f"the video itself stays at {output.get('video_uri')}."
        )
        lines += [
            "Download:",
            f"  {output.get('download_url') or '(no link)'}",
            *textwrap.wrap(validity, width=78, break_long_words=False, break_on_hyphens=False),
            "",
            f"Video:     {output.get('video_uri')}",
        ]
        if output.get("thumbnail_uri"):
            lines.append(f"Thumbnail: {output['thumbnail_uri']}")
        if output.get("manifest_uri"):
            lines.append(f"Manifest:  {output['manifest_uri']}")
        lines += ["", f"Cost:      {_cost_text(outcome.get('cost'))}"]
        timing = []
        if durations.get("total_seconds") is not None:
            timing.append(f"{durations['total_seconds']:.0f} s from upload to video")
        if durations.get("render_seconds") is not None:
            timing.append(f"{durations['render_seconds']:.0f} s until the provider finished")
        if timing:
            lines.append(f"Time:      {', '.join(timing)}")
    else:
        error = outcome.get("error") or {}
        code = error.get("code") or "InternalError"
        lines += [
            f"What failed: {error.get('message') or 'no reason was recorded'}",
            f"Error code:  {code}",
            "",
            f"What to do:  {ADVICE.get(code, DEFAULT_ADVICE)}",
            "",
            f"Cost:        {_cost_text(outcome.get('cost'))}",
        ]

    if outcome.get("warnings"):
        lines += ["", "Warnings:"] + [f"  - {warning}" for warning in outcome["warnings"]]
    lines += ["", f"Job: {outcome.get('job_key')}", ""]
    return "\n".join(lines)


# --- publishing ----------------------------------------------------------------------------


def _epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def _is_done(record: dict) -> bool:
    """Both channels went out (``notified_at`` is only written after they did)."""
    return "notified_at" in record or ("notified_sns_message_id" in record and "notified_event_id" in record)


def success_started(record: dict) -> bool:
    """A success notification went out on at least one channel (record in DynamoDB's typed form)."""
    return (record.get("notified_status") or {}).get("S") == "succeeded" and (
        "notified_sns_message_id" in record or "notified_event_id" in record
    )


def notified_status(job_key: str) -> str | None:
    """The outcome ("succeeded" or "failed") once it went out on both channels; None before."""
    settings = Settings.from_env()
    record = (
        client("dynamodb")
        .get_item(TableName=settings.jobs_table, Key={"job_key": {"S": job_key}}, ConsistentRead=True)
        .get("Item")
        or {}
    )
    return (record.get("notified_status") or {}).get("S") if _is_done(record) else None


def _claim(table: str, job_key: str, status: str, token: str) -> dict | None:
    """Take a lease on notifying this job.

    Returns the record's old fields when the lease is ours (new, or taken over from an
    expired one), None when the outcome already went out on both channels. Raises
    OutcomePublishError while another attempt holds an unexpired lease, so the state
    machine's Retry comes back after it has finished or its lease has run out.
    """
    now = _now()
    condition = (
        "attribute_not_exists(notified_at)"
        " AND NOT (attribute_exists(notified_sns_message_id) AND attribute_exists(notified_event_id))"
        " AND (attribute_not_exists(notify_claim) OR claim_expires_at < :now)"
    )
    values = {
        ":status": {"S": status},
        ":token": {"S": token},
        ":now": {"N": _epoch(now)},
        ":until": {"N": _epoch(now + timedelta(seconds=CLAIM_LEASE_SECONDS))},
        ":ttl": {"N": _epoch(now + timedelta(days=RECORD_TTL_DAYS))},
    }
    if status == "failed":
        # Once a success notification has gone out on any channel, the job succeeded: a later
        # failure (a Store retry that could not finish, say) must never contradict it.
        condition += (
            " AND NOT (notified_status = :succeeded"
            " AND (attribute_exists(notified_sns_message_id) OR attribute_exists(notified_event_id)))"
        )
        values[":succeeded"] = {"S": "succeeded"}
    try:
        answer = client("dynamodb").update_item(
            TableName=table,
            Key={"job_key": {"S": job_key}},
            UpdateExpression=(
                "SET notified_status = :status, notify_claim = :token, claim_expires_at = :until, "
                "expires_at = if_not_exists(expires_at, :ttl)"
            ),
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        item = exc.response.get("Item") or {}
        if _is_done(item):
            return None
        if status == "failed" and success_started(item):
            logger.warning(
                "A success notification already went out for this job; the failure is not published",
                extra={"job_key": job_key},
            )
            return None
        raise OutcomePublishError("another attempt is publishing this outcome") from exc
    return answer.get("Attributes") or {}


# Recording that a channel went out is what stops a retry from sending it again, so a throttled
# write is tried harder here than the client's own attempts: about 6 s in all, well inside the
# notifier's timeout, before the lease is given up (and a retry would publish a second time).
REMEMBER_ATTEMPTS = 6
REMEMBER_FIRST_DELAY = 0.2


def _remember(table: str, job_key: str, field: str, value: str) -> None:
    for attempt in range(REMEMBER_ATTEMPTS):
        try:
            client("dynamodb").update_item(
                TableName=table,
                Key={"job_key": {"S": job_key}},
                UpdateExpression=f"SET {field} = :value",
                ExpressionAttributeValues={":value": {"S": value}},
            )
            return
        except (ClientError, BotoCoreError):
            if attempt == REMEMBER_ATTEMPTS - 1:
                raise
            logger.warning("Could not record a sent notification yet; trying again", extra={"job_key": job_key})
            time.sleep(random.uniform(0, REMEMBER_FIRST_DELAY * 2**attempt))


def _mark_done(table: str, job_key: str) -> None:
    """Both channels went out: from now on every attempt skips."""
    client("dynamodb").update_item(
        TableName=table,
        Key={"job_key": {"S": job_key}},
        UpdateExpression="SET notified_at = :now REMOVE notify_claim, claim_expires_at",
        ExpressionAttributeValues={":now": {"S": jobs.isoformat(_now())}},
    )


def _release(table: str, job_key: str, token: str) -> None:
    """End our own lease early (only ours: the condition protects a later holder)."""
    try:
        client("dynamodb").update_item(
            TableName=table,
            Key={"job_key": {"S": job_key}},
            UpdateExpression="REMOVE notify_claim, claim_expires_at",
            ConditionExpression="notify_claim = :mine",
            ExpressionAttributeValues={":mine": {"S": token}},
        )
    except ClientError:
        # The publish error that brought us here is the one worth raising; this is context.
        # An unreleased lease only delays the retry until it expires.
        logger.exception("Could not release the notification claim", extra={"job_key": job_key})


def _publish_sns(settings: Settings, outcome: dict) -> str:
    body = json.dumps(outcome)
    message = {
        "default": body,
        "email": email_text(outcome, presign_expiry_seconds=settings.presign_expiry_seconds),
        "sqs": body,
        "lambda": body,
        "https": body,
    }
    answer = client("sns").publish(
        TopicArn=settings.topic_arn,
        Message=json.dumps(message),
        MessageStructure="json",
        Subject=subject_for(outcome),
        MessageAttributes={
            "status": {"DataType": "String", "StringValue": outcome["status"]},
            "provider": {"DataType": "String", "StringValue": outcome.get("provider") or "unknown"},
        },
    )
    return answer["MessageId"]


def _put_event(settings: Settings, outcome: dict) -> str:
    answer = client("events").put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": DETAIL_TYPES[outcome["status"]],
                "Detail": json.dumps(outcome),
                "EventBusName": settings.event_bus_name,
            }
        ]
    )
    entry = (answer.get("Entries") or [{}])[0]
    if answer.get("FailedEntryCount") or not entry.get("EventId"):
        raise OutcomePublishError(
            f"EventBridge refused the event: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
        )
    return entry["EventId"]


def publish_outcome(outcome: dict) -> dict:
    """Send the outcome to SNS and EventBridge, once per job.

    Returns {"published": False} when the job was already notified, else
    {"published": True, "sns_message_id": ..., "event_id": ...}.
    """
    settings = Settings.from_env()
    if not settings.jobs_table:
        raise ValueError("JOBS_TABLE is not set: without it a notification could be sent twice")
    job_key = outcome["job_key"]
    # The job's listing first (idempotent): `i2v jobs` shows the outcome even if a channel fails.
    jobs.record_outcome(outcome, settings=settings, now=_now())
    token = uuid.uuid4().hex  # recognises our own lease when releasing it
    old = _claim(settings.jobs_table, job_key, outcome["status"], token)
    if old is None:
        logger.info("Outcome already notified; not publishing again", extra={"job_key": job_key})
        return {"published": False}

    sent = False
    try:
        sns_message_id = (old.get("notified_sns_message_id") or {}).get("S")
        if not sns_message_id:
            sns_message_id = _publish_sns(settings, outcome)
            _remember(settings.jobs_table, job_key, "notified_sns_message_id", sns_message_id)
        event_id = (old.get("notified_event_id") or {}).get("S")
        if not event_id:
            event_id = _put_event(settings, outcome)
            _remember(settings.jobs_table, job_key, "notified_event_id", event_id)
        _mark_done(settings.jobs_table, job_key)
        sent = True
    finally:
        if not sent:
            _release(settings.jobs_table, job_key, token)

    logger.info(
        "Outcome published",
        extra={"job_key": job_key, "status": outcome["status"], "sns_message_id": sns_message_id, "event_id": event_id},
    )
    return {"published": True, "sns_message_id": sns_message_id, "event_id": event_id}
