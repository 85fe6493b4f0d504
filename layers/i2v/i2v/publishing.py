"""Publishing an outcome: once per job, to the SNS topic and to EventBridge.

A conditional write on the job record takes a lease (records.claim_notification): while it
runs, other attempts raise OutcomePublishError and are retried by the state machine; once it
expires (the holder was killed), the next attempt takes over. Each channel's id is remembered on
the record as soon as it went out, so a takeover never sends it again, and ``notified_at`` is
written only after both went out: from then on every attempt skips. If sending fails the lease
is released and the error re-raised for the state machine's Retry.
"""

import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from i2v import records
from i2v.aws import client
from i2v.clock import Clock, utc_now
from i2v.mail import email_text, subject_for
from i2v.outcome import DETAIL_TYPES, EVENT_SOURCE
from i2v.records import OutcomePublishError
from i2v.settings import PublishSettings

logger = Logger(child=True)

__all__ = ["OutcomePublishError", "publish_outcome"]


def publish_sns(settings: PublishSettings, outcome: dict[str, Any], *, now: datetime | None = None) -> str:
    body = json.dumps(outcome)
    message = {
        "default": body,
        "email": email_text(outcome, presign_expiry_seconds=settings.presign_expiry_seconds, now=now),
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


def put_event(settings: PublishSettings, outcome: dict[str, Any]) -> str:
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


def publish_outcome(
    outcome: dict[str, Any],
    settings: PublishSettings,
    *,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Send the outcome to SNS and EventBridge, once per job.

    Returns {"published": False} when the job was already notified, else
    {"published": True, "sns_message_id": ..., "event_id": ...}.
    """
    table = settings.jobs_table
    job_key = outcome["job_key"]
    # The job's listing first (idempotent): `i2v jobs` shows the outcome even if a channel fails.
    records.record_outcome(table, outcome, now=clock())
    token = uuid.uuid4().hex  # recognises our own lease when releasing it
    old = records.claim_notification(table, job_key, outcome["status"], token, now=clock())
    if old is None:
        logger.info("Outcome already notified; not publishing again", extra={"job_key": job_key})
        return {"published": False}

    sent = False
    try:
        sns_message_id = old.get("notified_sns_message_id")
        if not sns_message_id:
            sns_message_id = publish_sns(settings, outcome, now=clock())
            records.remember_sent(table, job_key, "notified_sns_message_id", sns_message_id, sleep=sleep, rng=rng)
        event_id = old.get("notified_event_id")
        if not event_id:
            event_id = put_event(settings, outcome)
            records.remember_sent(table, job_key, "notified_event_id", event_id, sleep=sleep, rng=rng)
        records.mark_notified(table, job_key, now=clock())
        sent = True
    finally:
        if not sent:
            records.release_notification(table, job_key, token)

    logger.info(
        "Outcome published",
        extra={"job_key": job_key, "status": outcome["status"], "sns_message_id": sns_message_id, "event_id": event_id},
    )
    return {"published": True, "sns_message_id": sns_message_id, "event_id": event_id}
