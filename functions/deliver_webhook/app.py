"""SQS (subscribed to the outcome topic) -> one signed Standard Webhooks POST per outcome.

A failed attempt hides its message for the backoff delay (ChangeMessageVisibility) and is
reported as a batch item failure; after the queue's maxReceiveCount SQS moves it to the DLQ.
"""

import json
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from i2v import webhooks
from i2v.aws import client, secret_string
from i2v.settings import WebhookSettings

logger = Logger()
metrics = Metrics()

# Failures are reported per message; an all-failed batch is not an error of the function.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# When this invocation started (time.monotonic()): close to when SQS handed over the batch,
# which is where SQS's 12-hour visibility limit counts from.
_invocation_started = time.monotonic()


def notification_from_body(body: str) -> dict:
    """The outcome notification (its JSON body), from a raw SNS delivery or from the SNS envelope."""
    message = json.loads(body)
    if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
        message = json.loads(message["Message"])
    if not isinstance(message, dict) or not message.get("job_key") or not message.get("status"):
        raise ValueError("message is not an outcome notification (no job_key/status)")
    return message


def _postpone(record: SQSRecord, delay_seconds: int) -> None:
    """Hide the message until the next attempt is due (needs sqs:GetQueueUrl on the queue)."""
    *_, account, queue_name = record.event_source_arn.split(":")
    sqs = client("sqs")
    timeout = webhooks.visibility_timeout(delay_seconds, time.monotonic() - _invocation_started)
    try:
        queue_url = sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=timeout
        )
    except ClientError:
        # Logged, not raised: the message still fails (the caller raises next) and comes back
        # after the queue's own visibility timeout instead of the backoff delay.
        logger.exception("Could not postpone the next attempt", extra={"message_id": record.message_id})


def deliver_record(record: SQSRecord, settings: WebhookSettings) -> None:
    notification = notification_from_body(record.body)
    attempt = int(record.attributes.approximate_receive_count or 1)
    msg_id = webhooks.message_id(notification["job_key"], notification["status"])
    secret = secret_string(settings.webhook_secret_name)
    try:
        webhooks.validate_secret(secret)
    except webhooks.InvalidWebhookSecretError as exc:
        # Nothing is signed with a malformed key; the message is retried, then kept in the DLQ
        # until the secret is fixed and the DLQ redriven.
        logger.error(
            "Webhook secret is malformed; not delivering",
            extra={"secret_name": settings.webhook_secret_name, "reason": str(exc)},
        )
        raise
    # `delivery.outcome` is how this attempt went (delivered, gone, retry), not the job's outcome.
    delivery = webhooks.deliver(
        settings.webhook_url, notification, secret, msg_id, attempt, allow_insecure=settings.allow_insecure_webhook
    )
    details = {"webhook_id": msg_id, "attempt": attempt, "status_code": delivery.status_code, "reason": delivery.reason}

    if delivery.outcome == webhooks.DELIVERED:
        metrics.add_metric(name="WebhooksDelivered", unit=MetricUnit.Count, value=1)
        logger.info("Webhook delivered", extra=details)
        return
    metrics.add_metric(name="WebhooksFailed", unit=MetricUnit.Count, value=1)
    if delivery.outcome == webhooks.GONE:
        logger.warning("Webhook receiver is gone (410); not retrying", extra=details)
        return
    logger.warning("Webhook delivery failed; will retry", extra={**details, "delay_seconds": delivery.delay_seconds})
    _postpone(record, delivery.delay_seconds)
    raise webhooks.WebhookDeliveryFailed(f"attempt {attempt}: {delivery.reason}")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> Mapping[str, Any]:
    global _invocation_started
    _invocation_started = time.monotonic()
    # A WEBHOOK_URL without WEBHOOK_SECRET_NAME fails here (MissingSettingError): nothing unsigned goes out.
    settings = WebhookSettings.from_env()
    if not settings.webhook_url:
        logger.info("No webhook configured; nothing to deliver")
        return {"batchItemFailures": []}
    return process_partial_response(
        event=event,
        record_handler=lambda record: deliver_record(record, settings),
        processor=processor,
        context=context,
    )
