"""The loopback webhook receiver against the real sender, over real HTTP."""

import base64
import json
import time

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from i2v import webhooks
from i2v.aws import client
from i2v_local.webhook_receiver import WebhookReceiver, new_secret
from tests.fixtures import load_event

OUTCOME = {"schema_version": "1", "status": "succeeded", "job_key": "e" * 64, "error": None}
BODY = webhooks.encode_body(OUTCOME)


@pytest.fixture
def receiver():
    with WebhookReceiver() as running:
        yield running


def _post(receiver: WebhookReceiver, body: bytes, headers: dict) -> requests.Response:
    return requests.post(receiver.url, data=body, headers=headers, timeout=10)


def _deliver(receiver: WebhookReceiver, msg_id: str = "msg_test", **kwargs) -> webhooks.DeliveryResult:
    return webhooks.deliver(receiver.url, OUTCOME, receiver.secret, msg_id, attempt=1, allow_insecure=True, **kwargs)


def test_signed_delivery_is_verified_and_recorded(receiver):
    result = _deliver(receiver)

    assert result.delivered
    [delivery] = receiver.deliveries
    assert delivery["id"] == "msg_test" and delivery["verified"] and delivery["error"] is None
    assert delivery["body"] == OUTCOME
    listed = requests.get(receiver.url.replace("/webhook", "/deliveries"), timeout=10).json()
    assert listed == receiver.deliveries


def test_secret_has_the_standard_form(receiver):
    assert receiver.secret.startswith("whsec_")
    assert len(base64.b64decode(receiver.secret.removeprefix("whsec_"))) == 32
    assert new_secret() != new_secret()


def test_tampered_body_is_rejected(receiver):
    headers = webhooks.sign(receiver.secret, "msg_tampered", int(time.time()), BODY)
    answer = _post(receiver, BODY.replace(b"succeeded", b"failed"), headers)

    assert answer.status_code == 401
    [delivery] = receiver.deliveries
    assert not delivery["verified"] and delivery["error"] == "no matching signature"


def test_wrong_secret_and_missing_headers_are_rejected(receiver):
    headers = webhooks.sign(new_secret(), "msg_other", int(time.time()), BODY)
    assert _post(receiver, BODY, headers).status_code == 401
    assert _post(receiver, BODY, {"content-type": "application/json"}).status_code == 401
    assert [d["verified"] for d in receiver.deliveries] == [False, False]


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_timestamp_outside_the_tolerance_is_rejected(receiver, skew):
    headers = webhooks.sign(receiver.secret, "msg_old", int(time.time()) + skew, BODY)
    answer = _post(receiver, BODY, headers)
    assert answer.status_code == 401
    assert "tolerance" in receiver.deliveries[0]["error"]


def test_replayed_delivery_is_rejected_but_a_fresh_retry_is_acknowledged(receiver):
    sent_at = int(time.time()) - 5
    headers = webhooks.sign(receiver.secret, "msg_once", sent_at, BODY)
    assert _post(receiver, BODY, headers).status_code == 200

    replay = _post(receiver, BODY, headers)
    assert replay.status_code == 409

    # The sender's own retry re-signs with a newer timestamp: acknowledged, not processed twice.
    retry = _post(receiver, BODY, webhooks.sign(receiver.secret, "msg_once", sent_at + 3, BODY))
    assert retry.status_code == 200
    assert [(d["status"], d["verified"], d["duplicate"]) for d in receiver.deliveries] == [
        (200, True, False),
        (409, False, False),
        (200, True, True),
    ]


def test_a_failed_delivery_may_be_retried_with_the_same_id(receiver):
    sent_at = int(time.time()) - 5
    receiver.set_behaviour(status=500)
    assert _post(receiver, BODY, webhooks.sign(receiver.secret, "msg_test", sent_at, BODY)).status_code == 500
    receiver.set_behaviour(status=200)
    # Not a replay: the sender's retry is signed afresh, and the id was never accepted.
    assert _post(receiver, BODY, webhooks.sign(receiver.secret, "msg_test", sent_at + 3, BODY)).status_code == 200
    assert [d["status"] for d in receiver.deliveries] == [500, 200]
    assert not receiver.deliveries[1]["duplicate"]


def test_exact_replay_of_a_delivery_that_got_a_5xx_is_rejected(receiver):
    receiver.set_behaviour(status=500)
    headers = webhooks.sign(receiver.secret, "msg_failed_once", int(time.time()) - 5, BODY)
    assert _post(receiver, BODY, headers).status_code == 500
    receiver.set_behaviour(status=200)

    replay = _post(receiver, BODY, headers)

    assert replay.status_code == 409
    assert receiver.deliveries[-1]["error"] == "replayed webhook-id" and not receiver.deliveries[-1]["verified"]


@pytest.mark.parametrize("status", [500, 410])
def test_duplicate_gets_the_configured_failure(receiver, status):
    sent_at = int(time.time()) - 5
    assert _post(receiver, BODY, webhooks.sign(receiver.secret, "msg_dup", sent_at, BODY)).status_code == 200
    receiver.set_behaviour(status=status)

    retry = _post(receiver, BODY, webhooks.sign(receiver.secret, "msg_dup", sent_at + 3, BODY))

    assert retry.status_code == status
    assert (receiver.deliveries[-1]["verified"], receiver.deliveries[-1]["duplicate"]) == (True, True)


def test_rotation_accepts_old_and_new_secrets(receiver):
    old, new = receiver.secret, new_secret()
    receiver.add_secret(new)
    now = int(time.time())
    assert _post(receiver, BODY, webhooks.sign(old, "msg_a", now, BODY)).status_code == 200
    assert _post(receiver, BODY, webhooks.sign(new, "msg_b", now, BODY)).status_code == 200
    assert _post(receiver, BODY, webhooks.sign(f"{old} {new}", "msg_c", now, BODY)).status_code == 200

    receiver.remove_secret(old)
    assert _post(receiver, BODY, webhooks.sign(old, "msg_d", now, BODY)).status_code == 401
    assert _post(receiver, BODY, webhooks.sign(new, "msg_e", now, BODY)).status_code == 200


def test_receiver_failures_classify_on_the_sender(receiver):
    # One id per case: the same id signed within the same second would be an exact replay.
    receiver.set_behaviour(status=500)
    assert _deliver(receiver, "msg_500").outcome == webhooks.RETRY

    receiver.set_behaviour(status=410)
    assert _deliver(receiver, "msg_410").outcome == webhooks.GONE

    receiver.set_behaviour(status=429, retry_after=30)
    result = _deliver(receiver, "msg_429")
    assert result.outcome == webhooks.RETRY and result.delay_seconds == 30

    receiver.set_behaviour(status=302)
    result = _deliver(receiver, "msg_302")
    assert result.outcome == webhooks.RETRY and result.status_code == 302


def test_hanging_receiver_times_the_sender_out(receiver):
    receiver.set_behaviour(hang_seconds=30)
    result = _deliver(receiver, timeout=0.5)
    assert result.outcome == webhooks.RETRY and result.status_code is None and "no answer" in result.reason


def test_stopped_receiver_is_a_retryable_connection_failure():
    stopped = WebhookReceiver().start()
    url = stopped.url
    stopped.stop()
    result = webhooks.deliver(url, OUTCOME, stopped.secret, "msg_x", attempt=2, allow_insecure=True)
    assert result.outcome == webhooks.RETRY and "ConnectionError" in result.reason


def test_delivery_lambda_to_the_receiver(receiver, lambda_context, monkeypatch):
    from functions.deliver_webhook import app

    parameters.clear_caches()
    with mock_aws():
        client("secretsmanager").create_secret(Name="i2v-local/webhook", SecretString=receiver.secret)
        monkeypatch.setenv("WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("WEBHOOK_SECRET_NAME", "i2v-local/webhook")
        monkeypatch.setenv("ALLOW_INSECURE_WEBHOOK", "true")

        assert app.lambda_handler(load_event("webhook_sqs.json"), lambda_context) == {"batchItemFailures": []}
    parameters.clear_caches()

    [delivery] = receiver.wait_for(1)
    assert delivery["verified"]
    assert delivery["body"] == json.loads(load_event("webhook_sqs.json")["Records"][0]["body"])
