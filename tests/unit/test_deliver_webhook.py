"""The SQS-fed delivery Lambda: signed POSTs, partial batch failures, backoff, DLQ."""

import base64
import json
import random

import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError
from moto import mock_aws
from standardwebhooks.webhooks import Webhook

from functions.deliver_webhook import app
from i2v.aws import client
from tests import http_mock
from tests.fixtures import load_event

URL = "https://hooks.example.com/video-events"
SECRET = "whsec_" + base64.b64encode(b"deliver-webhook-test-secret-0001").decode()
SAMPLE = load_event("webhook_sqs.json")
SAMPLE_OUTCOME = json.loads(SAMPLE["Records"][0]["body"])


pytestmark = pytest.mark.usefixtures("public_dns")  # tests/conftest.py: no test reaches a real resolver


@pytest.fixture
def highest_jitter(monkeypatch):
    """Backoff takes the top of its jitter range, so delays are predictable."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


@pytest.fixture
def aws(monkeypatch):
    parameters.clear_caches()
    with mock_aws():
        sqs = client("sqs")
        dlq_url = sqs.create_queue(QueueName="i2v-WebhookDeadLetterQueue")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="i2v-WebhookQueue",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
        )["QueueUrl"]
        client("secretsmanager").create_secret(Name="i2v/webhook", SecretString=SECRET + "\n")
        monkeypatch.setenv("WEBHOOK_URL", URL)
        monkeypatch.setenv("WEBHOOK_SECRET_NAME", "i2v/webhook")
        monkeypatch.setenv("ALLOW_INSECURE_WEBHOOK", "false")
        visibility_changes = []
        sqs.meta.events.register(
            "provide-client-params.sqs.ChangeMessageVisibility",
            lambda params, **kwargs: visibility_changes.append(params["VisibilityTimeout"]),
        )
        yield {"queue": queue_url, "dlq": dlq_url, "visibility_changes": visibility_changes}
    parameters.clear_caches()


def _send(queue_url: str, body: str) -> None:
    client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)


def _receive_event(queue_url: str) -> dict:
    """Receive what is visible and shape it as Lambda's SQS event."""
    sqs = client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    )
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
    }


def _outcome(job_key: str = "b" * 64, status: str = "failed") -> dict:
    return dict(
        SAMPLE_OUTCOME,
        job_key=job_key,
        status=status,
        output=None,
        error={"code": "TimedOut", "message": "timed out after 30 minutes"},
    )


@http_mock.activate
def test_sample_event_is_delivered_signed(aws, lambda_context, capsys):
    http_mock.post(URL, status=200)

    assert app.lambda_handler(load_event("webhook_sqs.json"), lambda_context) == {"batchItemFailures": []}

    [call] = http_mock.calls
    headers = dict(call.request.headers)
    assert Webhook(SECRET).verify(call.request.body, headers) == SAMPLE_OUTCOME
    assert headers["webhook-id"] == "msg_" + SAMPLE_OUTCOME["job_key"][:32] + "_succeeded"
    assert '"WebhooksDelivered"' in capsys.readouterr().out
    assert aws["visibility_changes"] == []


@http_mock.activate
def test_sns_envelope_form_is_accepted(aws, lambda_context):
    http_mock.post(URL, status=204)
    envelope = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:outcomes",
        "Message": json.dumps(_outcome()),
    }
    _send(aws["queue"], json.dumps(envelope))

    assert app.lambda_handler(_receive_event(aws["queue"]), lambda_context) == {"batchItemFailures": []}
    assert json.loads(http_mock.calls[0].request.body) == _outcome()


@http_mock.activate
def test_failed_delivery_is_postponed_by_the_backoff_and_reported(aws, lambda_context, highest_jitter, capsys):
    http_mock.post(URL, status=503)
    _send(aws["queue"], json.dumps(_outcome()))
    event = _receive_event(aws["queue"])

    result = app.lambda_handler(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert aws["visibility_changes"] == [5]  # attempt 1: up to 5 s
    assert '"WebhooksFailed"' in capsys.readouterr().out
    assert _receive_event(aws["queue"])["Records"] == []  # hidden until the next attempt


@http_mock.activate
def test_retry_after_sets_the_delay(aws, lambda_context):
    http_mock.post(URL, status=429, headers={"Retry-After": "120"})
    _send(aws["queue"], json.dumps(_outcome()))
    app.lambda_handler(_receive_event(aws["queue"]), lambda_context)
    assert aws["visibility_changes"] == [120]


@http_mock.activate
def test_410_is_not_retried(aws, lambda_context, capsys):
    http_mock.post(URL, status=410)
    _send(aws["queue"], json.dumps(_outcome()))

    assert app.lambda_handler(_receive_event(aws["queue"]), lambda_context) == {"batchItemFailures": []}
    assert aws["visibility_changes"] == []
    assert '"WebhooksFailed"' in capsys.readouterr().out


@http_mock.activate
def test_partial_batch_reports_only_the_failed_message(aws, lambda_context):
    http_mock.post(URL, status=200)
    http_mock.post(URL, status=500)
    _send(aws["queue"], json.dumps(_outcome(job_key="c" * 64)))
    _send(aws["queue"], json.dumps(_outcome(job_key="d" * 64)))
    event = _receive_event(aws["queue"])
    assert len(event["Records"]) == 2

    result = app.lambda_handler(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}


@http_mock.activate
def test_not_an_outcome_is_a_failure(aws, lambda_context):
    _send(aws["queue"], json.dumps({"hello": "world"}))
    event = _receive_event(aws["queue"])
    assert app.lambda_handler(event, lambda_context)["batchItemFailures"] == [
        {"itemIdentifier": event["Records"][0]["messageId"]}
    ]
    assert len(http_mock.calls) == 0


@http_mock.activate
def test_unreachable_receiver_is_retried_with_growing_delays_then_lands_in_the_dlq(
    aws, lambda_context, highest_jitter, monkeypatch
):
    http_mock.post(URL, status=502)
    _send(aws["queue"], json.dumps(_outcome()))
    # Make every hidden message visible again at once, so the test need not wait out the delays.
    sqs = client("sqs")
    real_change = sqs.change_message_visibility
    wanted_delays = []

    def change_now(**kwargs):
        wanted_delays.append(kwargs["VisibilityTimeout"])
        return real_change(**dict(kwargs, VisibilityTimeout=0))

    monkeypatch.setattr(sqs, "change_message_visibility", change_now)

    for _ in range(3):
        event = _receive_event(aws["queue"])
        assert len(event["Records"]) == 1
        assert app.lambda_handler(event, lambda_context)["batchItemFailures"]

    assert wanted_delays == [5, 10, 20]  # attempts 1, 2, 3 (ApproximateReceiveCount)
    assert [call.request.headers["webhook-id"] for call in http_mock.calls] == ["msg_" + "b" * 32 + "_failed"] * 3
    assert _receive_event(aws["queue"])["Records"] == []
    [dead] = client("sqs").receive_message(QueueUrl=aws["dlq"]).get("Messages", [])
    assert json.loads(dead["Body"]) == _outcome()


@http_mock.activate
def test_unsafe_webhook_url_is_never_called(aws, lambda_context, monkeypatch):
    monkeypatch.setenv("WEBHOOK_URL", "http://127.0.0.1:9000/hook")
    _send(aws["queue"], json.dumps(_outcome()))
    event = _receive_event(aws["queue"])
    assert app.lambda_handler(event, lambda_context)["batchItemFailures"]
    assert len(http_mock.calls) == 0


@http_mock.activate
def test_loopback_http_when_insecure_webhooks_are_allowed(aws, lambda_context, monkeypatch):
    monkeypatch.setenv("WEBHOOK_URL", "http://127.0.0.1:9000/hook")
    monkeypatch.setenv("ALLOW_INSECURE_WEBHOOK", "true")
    http_mock.post("http://127.0.0.1:9000/hook", status=200)
    assert app.lambda_handler(load_event("webhook_sqs.json"), lambda_context) == {"batchItemFailures": []}


@http_mock.activate
def test_rotating_secret_signs_with_both(aws, lambda_context):
    new_secret = "whsec_" + base64.b64encode(b"the next webhook secret, 32 byte").decode()
    client("secretsmanager").put_secret_value(SecretId="i2v/webhook", SecretString=f"{SECRET} {new_secret}")
    http_mock.post(URL, status=200)

    app.lambda_handler(load_event("webhook_sqs.json"), lambda_context)

    call = http_mock.calls[0]
    assert len(call.request.headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, new_secret):
        assert Webhook(secret).verify(call.request.body, dict(call.request.headers)) == SAMPLE_OUTCOME


@http_mock.activate
def test_no_webhook_configured_does_nothing(lambda_context, monkeypatch):
    monkeypatch.setenv("WEBHOOK_URL", "")
    assert app.lambda_handler(load_event("webhook_sqs.json"), lambda_context) == {"batchItemFailures": []}
    assert len(http_mock.calls) == 0


def test_webhook_without_a_secret_name_is_a_configuration_error(lambda_context, monkeypatch):
    monkeypatch.setenv("WEBHOOK_URL", URL)
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", "")
    with pytest.raises(ValueError, match="WEBHOOK_SECRET_NAME"):
        app.lambda_handler(load_event("webhook_sqs.json"), lambda_context)


@http_mock.activate
def test_failure_is_still_reported_when_postponing_fails(aws, lambda_context, monkeypatch):
    # The sample's receipt handle is not one SQS issued: ChangeMessageVisibility is refused.
    http_mock.post(URL, status=500)
    logged = []
    monkeypatch.setattr(app.logger, "exception", lambda message, **kwargs: logged.append(message))
    event = load_event("webhook_sqs.json")

    result = app.lambda_handler(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert logged == ["Could not postpone the next attempt"]


@http_mock.activate
def test_refused_queue_url_lookup_is_logged_and_the_failure_still_reported(aws, lambda_context, monkeypatch):
    http_mock.post(URL, status=503)
    _send(aws["queue"], json.dumps(SAMPLE_OUTCOME))
    event = _receive_event(aws["queue"])
    sqs = client("sqs")

    def refuse(**kwargs):
        error = {"Code": "AccessDenied", "Message": "not authorized to perform sqs:GetQueueUrl"}
        raise ClientError({"Error": error}, "GetQueueUrl")

    monkeypatch.setattr(sqs, "get_queue_url", refuse)
    logged = []
    monkeypatch.setattr(app.logger, "exception", lambda message, **kwargs: logged.append(message))

    result = app.lambda_handler(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert logged == ["Could not postpone the next attempt"]
    assert aws["visibility_changes"] == []


@http_mock.activate
def test_body_that_is_not_json_is_a_failure(aws, lambda_context):
    _send(aws["queue"], "not json at all")
    event = _receive_event(aws["queue"])
    assert app.lambda_handler(event, lambda_context)["batchItemFailures"] == [
        {"itemIdentifier": event["Records"][0]["messageId"]}
    ]


@http_mock.activate
def test_a_long_retry_after_is_capped_at_the_sqs_limit_from_receipt(aws, lambda_context, monkeypatch):
    http_mock.post(URL, status=503, headers={"Retry-After": str(3 * 24 * 3600)})
    _send(aws["queue"], json.dumps(_outcome()))
    event = _receive_event(aws["queue"])
    clock = iter([1000.0, 1000.0 + 30])  # handler start, then the postpone 30 s later
    monkeypatch.setattr(app.time, "monotonic", lambda: next(clock))

    app.lambda_handler(event, lambda_context)

    assert aws["visibility_changes"] == [12 * 3600 - 60 - 30]


@http_mock.activate
def test_a_malformed_secret_is_never_used_to_sign(aws, lambda_context):
    http_mock.post(URL, status=200)
    client("secretsmanager").put_secret_value(SecretId="i2v/webhook", SecretString="whsec_abc")
    parameters.clear_caches()
    _send(aws["queue"], json.dumps(_outcome()))
    event = _receive_event(aws["queue"])

    result = app.lambda_handler(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert len(http_mock.calls) == 0
