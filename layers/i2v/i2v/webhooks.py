"""Standard Webhooks signing and delivery of outcome notifications.

A delivery is one POST of the notification body, signed per the Standard Webhooks
specification (https://www.standardwebhooks.com): headers ``webhook-id`` (stable across
retries, so receivers can de-duplicate), ``webhook-timestamp`` (this attempt, Unix seconds)
and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``).

``deliver`` makes one attempt and classifies the answer; the caller (the SQS-fed delivery
Lambda) turns "retry" into a delayed redelivery and, after the queue's last attempt, the DLQ.
"""

import base64
import binascii
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from i2v.httpclient import TransportError, request
from i2v.retry_after import retry_after_seconds
from i2v.urlsafety import UnsafeUrlError, check_url, pinned_pool

# Connect and read timeouts: the read timeout bounds the wait for the answer and every stall
# while reading it (up to httpclient.MAX_BODY_BYTES), so an attempt takes about 15 s against
# a receiver that answers normally (DNS resolution is not bounded by these).
CONNECT_TIMEOUT_SECONDS = 5.0
TIMEOUT_SECONDS = 15.0
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 15 * 60.0
# SQS cannot hide a message for longer than 12 hours: a longer Retry-After is cut to that.
MAX_DELAY_SECONDS = 12 * 60 * 60
# ...and those 12 hours count from when the message was received, not from the
# ChangeMessageVisibility call: keep this much back for the time between SQS handing the
# batch to Lambda and the handler starting.
RECEIPT_MARGIN_SECONDS = 60
SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64

DELIVERED = "delivered"
GONE = "gone"
RETRY = "retry"


class WebhookDeliveryFailed(Exception):
    """One delivery attempt failed and should be tried again later."""


class InvalidWebhookSecretError(ValueError):
    """The signing secret is not ``whsec_`` + base64 of 24 to 64 bytes; nothing is signed with it."""


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # DELIVERED, GONE (410: stop for good) or RETRY
    status_code: int | None
    reason: str
    delay_seconds: int = 0  # for RETRY: how long to wait before the next attempt

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED


def message_id(job_key: str, status: str) -> str:
    """The webhook id: one per outcome, identical on every retry."""
    return f"msg_{job_key[:32]}_{status}"


def encode_body(outcome: dict) -> bytes:
    return json.dumps(outcome, separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict:
    """Headers for one signed delivery.

    ``secret`` is ``whsec_`` + base64; several secrets separated by spaces (during a
    rotation) give one signature each, space-separated, as the specification allows.
    """
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    text = body.decode("utf-8")
    signatures = [Webhook(secret_key(one)).sign(msg_id, when, text) for one in secret.split()]
    if not signatures:
        raise InvalidWebhookSecretError("webhook secret is empty")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }


def secret_key(secret: str) -> bytes:
    """The HMAC key of one ``whsec_`` secret, strictly decoded.

    The standardwebhooks package decodes leniently (it skips characters that are not base64),
    so a mistyped secret would silently sign with a key of a few bytes: refuse it instead.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecretError(f"the webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise InvalidWebhookSecretError(
            f"the webhook secret after {SECRET_PREFIX!r} is not valid (padded) base64"
        ) from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidWebhookSecretError(
            f"the webhook secret must decode to {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes (got {len(key)})"
        )
    return key


def validate_secret(secret: str) -> None:
    """Raise InvalidWebhookSecretError unless every space-separated secret is well formed."""
    if not secret.split():
        raise InvalidWebhookSecretError("webhook secret is empty")
    for one in secret.split():
        secret_key(one)


def visibility_timeout(delay_seconds: int, seconds_since_receipt: float) -> int:
    """The ChangeMessageVisibility value for a wanted delay: SQS refuses one that would end
    more than 12 hours after the message was received, so what has passed is taken off."""
    room = MAX_DELAY_SECONDS - RECEIPT_MARGIN_SECONDS - math.ceil(max(0.0, seconds_since_receipt))
    return max(0, min(int(delay_seconds), room))


def backoff_delay(attempt: int, *, rng: random.Random | None = None) -> int:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return round((rng or random).uniform(0, ceiling))


def parse_retry_after(value: str | None, *, now: float | None = None) -> int | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    seconds = retry_after_seconds(value, now=None if now is None else datetime.fromtimestamp(now, UTC))
    return None if seconds is None else min(int(seconds), MAX_DELAY_SECONDS)


def deliver(
    url: str,
    outcome: dict,
    secret: str,
    msg_id: str,
    attempt: int,
    *,
    allow_insecure: bool = False,
    timeout: float = TIMEOUT_SECONDS,
    rng: random.Random | None = None,
) -> DeliveryResult:
    """POST one signed delivery and classify the answer. Never follows redirects.

    2xx: delivered. 410: the subscriber is gone, stop. Anything else (3xx, 4xx, 429, 5xx,
    timeouts, connection errors, an unsafe URL): retry after Retry-After when the answer
    carries one, else after the backoff delay for ``attempt`` (1 for the first).
    """

    def retry(status_code: int | None, reason: str, retry_after: int | None = None) -> DeliveryResult:
        delay = retry_after if retry_after is not None else backoff_delay(attempt, rng=rng)
        return DeliveryResult(RETRY, status_code, reason, delay)

    try:
        checked = check_url(url, allow_loopback_http=allow_insecure, allow_userinfo=True)
    except UnsafeUrlError as exc:
        # Kept for retry (and then the DLQ) rather than dropped: once the operator fixes
        # the URL, the messages can be redriven.
        return retry(None, f"webhook URL refused: {exc}")

    body = encode_body(outcome)
    headers = sign(secret, msg_id, int(time.time()), body)
    headers["user-agent"] = "image-to-video-webhooks/1"
    try:
        # Connect to the address that was checked: a second DNS answer cannot move the POST.
        with pinned_pool(checked) as pool:
            response = request(
                pool,
                "POST",
                url,
                headers=headers,
                body=body,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=timeout,
            )
    except TransportError as exc:
        if exc.timed_out:
            return retry(None, f"no answer within {timeout:g} s")
        return retry(None, f"request failed: {exc.cause_name}")

    status = response.status
    if 200 <= status < 300:
        return DeliveryResult(DELIVERED, status, f"HTTP {status}")
    if status == 410:
        return DeliveryResult(GONE, status, "HTTP 410: the receiver no longer wants deliveries")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if 300 <= status < 400:
        return retry(status, f"HTTP {status}: redirects are not followed", retry_after)
    return retry(status, f"HTTP {status}", retry_after)
