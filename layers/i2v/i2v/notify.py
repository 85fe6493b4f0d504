"""The outcome notification: one per upload, to the SNS topic and to EventBridge.

``outcome_from_job`` builds the schema-version-1 body (docs/architecture.md,
docs/notifications.md); ``publish_outcome`` sends it exactly once per job: a conditional
write on the jobs table claims the right to notify, so a retried task or a duplicate
execution cannot notify twice. If sending fails the claim is released and the error
re-raised, so the state machine's Retry can try again; channels that already went out on
an earlier attempt are remembered on the job record and not sent again.
"""

import json
import unicodedata
import uuid
from datetime import datetime, timedelta, timezone

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from i2v.aws import client
from i2v.config import OPTION_NAMES, Settings

logger = Logger(child=True)

SCHEMA_VERSION = "1"
EVENT_SOURCE = "image-to-video"
DETAIL_TYPES = {"succeeded": "Video Succeeded", "failed": "Video Failed"}
PROVIDER_NAMES = {"nohuman": "NoHuman Studio", "nanobanana": "NanoBanana Video"}
SUBJECT_MAX = 99  # SNS: fewer than 100 printable ASCII characters

# What the person who uploaded can do about each failure code.
ADVICE = {
    "InvalidOption": "Fix the options in the image's metadata (see the message above) and upload the image again.",
    "InvalidImage": "Check that the file is a complete JPEG, PNG or WebP image within the size limits, then upload it again.",
    "CorruptImage": "The file could not be decoded: export the image again (JPEG, PNG or WebP) and upload the new file.",
    "ProviderAuthRejected": "The stack's API key was refused by the provider: update the secret that holds the key, then upload the image again.",
    "ProviderRejectedRequest": "The provider refused the request: check the options and the image against the provider's limits, then upload again.",
    "ProviderUnavailable": "The provider was unavailable or rate-limited: upload the image again in a few minutes.",
    "SubmitOutcomeUnknown": "Check the provider dashboard before uploading again: the job may have been created there, and it may have been charged.",
    "ProviderJobFailed": "The provider could not render this video: try another prompt or image, or upload it again.",
    "ResultFetchFailed": "The video was rendered but could not be copied safely from the provider: check the provider dashboard, where it may still be available for a while.",
    "TimedOut": "The provider did not finish in time: check the provider dashboard for the job, then upload again (or raise the stack's MaxWaitMinutes).",
}
DEFAULT_ADVICE = "Something unexpected went wrong: upload the image again, and if it fails again, ask the stack's operator to look at its logs."


class OutcomePublishError(RuntimeError):
    """A channel refused the notification; the claim was released so a retry can send it."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def outcome_from_job(job: dict, *, status: str, output: dict | None, error: dict | None) -> dict:
    """The schema-version-1 notification body for a finished job.

    ``status`` is "succeeded" (with ``output``) or "failed" (with ``error`` {code, message};
    the job's own ``error`` is used when none is given).
    """
    if status not in DETAIL_TYPES:
        raise ValueError(f"status must be 'succeeded' or 'failed' (got {status!r})")
    finished = _now()
    source = dict(job.get("source") or {})
    bucket, key = source.get("bucket"), source.get("key")
    submitted = _parse_iso(job.get("submitted_at"))
    if status == "failed":
        error = error or job.get("error") or {"code": "InternalError", "message": "the job failed without a recorded reason"}
        output = None
    else:
        error = None
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "job_key": job.get("job_key"),
        "source": {
            "bucket": bucket,
            "key": key,
            "version_id": source.get("version_id"),
            "etag": source.get("etag"),
            "uri": f"s3://{bucket}/{key}" if bucket and key else None,
        },
        "provider": job.get("provider"),
        "provider_job_id": job.get("provider_job_id"),
        "options": job.get("options") or {},
        "output": output,
        "cost": job.get("cost"),
        "durations": {
            "total_seconds": round((finished - submitted).total_seconds(), 1) if submitted else None,
            "render_seconds": job.get("render_seconds"),
        },
        "warnings": list(job.get("warnings") or []),
        "error": error,
        "submitted_at": job.get("submitted_at"),
        "finished_at": _iso(finished),
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
        return f"{credits:g} credit{'s' if credits != 1 else ''}" if isinstance(credits, (int, float)) else f"{credits} credits"
    amount, currency = cost.get("amount"), cost.get("currency") or ""
    if amount is None:
        return "not reported"
    return f"${amount:.2f}" if currency == "USD" else f"{amount} {currency}".strip()


def _options_lines(options: dict) -> list:
    if not options:
        return ["  (provider defaults)"]
    ordered = [name for name in OPTION_NAMES if name in options] + sorted(set(options) - set(OPTION_NAMES))
    width = max(len(name) for name in ordered) + 1
    return [f"  {(name.replace('_', ' ') + ':').ljust(width + 1)} {_option_value(name, options[name])}" for name in ordered]


def _option_value(name: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "duration":
        return f"{value} s"
    return str(value)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


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
        finished = _parse_iso(outcome.get("finished_at")) or _now()
        expires = _parse_iso(output.get("download_url_expires_at")) or finished + timedelta(seconds=presign_expiry_seconds)
        lines += [
            f"Download (valid for {human_span(presign_expiry_seconds)}, until {_utc_text(expires)}):",
            f"  {output.get('download_url') or '(no link)'}",
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
            timing.append(f"{durations['render_seconds']:.0f} s rendering")
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


def _claim(table: str, job_key: str, status: str, token: str) -> dict | None:
    """Take the right to notify; None if someone already has. Returns the record's old fields."""
    try:
        answer = client("dynamodb").update_item(
            TableName=table,
            Key={"job_key": {"S": job_key}},
            UpdateExpression="SET notified_at = :now, notified_status = :status, notify_claim = :token",
            ConditionExpression="attribute_not_exists(notified_at)",
            ExpressionAttributeValues={":now": {"S": _iso(_now())}, ":status": {"S": status}, ":token": {"S": token}},
            ReturnValues="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return None
        raise
    return answer.get("Attributes") or {}


def _remember(table: str, job_key: str, field: str, value: str) -> None:
    client("dynamodb").update_item(
        TableName=table,
        Key={"job_key": {"S": job_key}},
        UpdateExpression=f"SET {field} = :value",
        ExpressionAttributeValues={":value": {"S": value}},
    )


def _release(table: str, job_key: str, token: str) -> None:
    """Undo our own claim (only ours: the condition protects a later claimant)."""
    try:
        client("dynamodb").update_item(
            TableName=table,
            Key={"job_key": {"S": job_key}},
            UpdateExpression="REMOVE notified_at, notified_status, notify_claim",
            ConditionExpression="notify_claim = :mine",
            ExpressionAttributeValues={":mine": {"S": token}},
        )
    except ClientError:
        # The publish error that brought us here is the one worth raising; this is context.
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
        raise OutcomePublishError(f"EventBridge refused the event: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}")
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
    token = uuid.uuid4().hex  # recognises our own claim when releasing it
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
        sent = True
    finally:
        if not sent:
            _release(settings.jobs_table, job_key, token)

    logger.info(
        "Outcome published",
        extra={"job_key": job_key, "status": outcome["status"], "sns_message_id": sns_message_id, "event_id": event_id},
    )
    return {"published": True, "sns_message_id": sns_message_id, "event_id": event_id}
