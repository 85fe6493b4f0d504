"""Issue 4 end to end: one upload -> one verified webhook delivery, one EventBridge event and
one email-formatted message, for a success and a failure; a failing receiver is retried and
ends in the webhook DLQ while the other subscribers still get the notification."""

import json
import time

import pytest

from tests.e2e.helpers import jpeg, outcome, settle, start_stack, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    with start_stack("nohuman", webhook=True) as local:
        yield local


@pytest.fixture(autouse=True)
def _reset_receiver(stack):
    stack.receiver.set_behaviour(status=200)
    yield
    stack.receiver.set_behaviour(status=200)


def _deliveries_for(stack, job_key):
    return [d for d in stack.receiver.deliveries if isinstance(d["body"], dict) and d["body"].get("job_key") == job_key]


def _wait(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    return predicate()


def _assert_every_channel_once(stack, key, note, detail_type):
    assert _wait(lambda: _deliveries_for(stack, note["job_key"])), "no webhook delivery"
    event = stack.events.wait_for(lambda e: e["detail"].get("job_key") == note["job_key"], timeout=30)
    # Every channel has delivered once; once nothing is left to deliver, the counts are final.
    settle(stack, stack.queue_urls["WebhookQueue"])

    deliveries = _deliveries_for(stack, note["job_key"])
    assert len(deliveries) == 1, deliveries
    assert deliveries[0]["verified"] and not deliveries[0]["duplicate"]
    assert deliveries[0]["body"] == note

    assert event["source"] == "image-to-video" and event["detail-type"] == detail_type
    assert event["detail"] == note
    assert len(stack.events_for(key)) == 1

    emails = [m for m in stack.email_messages() if key.rsplit("/", 1)[-1] in m["body"]]
    assert len(emails) == 1, emails
    assert emails[0]["subject"]
    assert not emails[0]["body"].lstrip().startswith("{")  # readable text, not the JSON body


def test_success_reaches_webhook_events_and_email_once(stack):
    key = f"{stack.input_prefix}{unique('ok.jpg')}"
    stack.upload(jpeg(), key)
    note = outcome(stack, key)
    assert note["status"] == "succeeded"
    _assert_every_channel_once(stack, key, note, "Video Succeeded")


def test_failure_reaches_webhook_events_and_email_once(stack):
    stack.emulator.set_faults({"fail_next": 1})
    key = f"{stack.input_prefix}{unique('broken.jpg')}"
    stack.upload(jpeg(), key)
    note = outcome(stack, key)
    assert note["status"] == "failed"
    _assert_every_channel_once(stack, key, note, "Video Failed")


def test_failing_receiver_is_retried_then_dead_lettered_while_subscribers_get_it(stack):
    # Retry-After: 1 keeps the retries quick (the delivery function honours it) while giving each
    # attempt a new timestamp: a byte-identical replay would be refused by the receiver.
    stack.receiver.set_behaviour(status=500, retry_after=1)
    key = f"{stack.input_prefix}{unique('unlucky.jpg')}"
    stack.upload(jpeg(), key)
    note = outcome(stack, key)  # the SQS notification subscriber got its message
    assert note["status"] == "succeeded"
    assert [m for m in stack.email_messages() if key.rsplit("/", 1)[-1] in m["body"]]

    sqs = stack.client("sqs")
    dlq = stack.queue_urls["WebhookDeadLetterQueue"]
    dead = []
    deadline = time.monotonic() + 90
    while not dead and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", []):
            if json.loads(message["Body"]).get("job_key") == note["job_key"]:
                dead.append(message)
    assert dead, "the delivery never reached the webhook DLQ"
    attempts = _deliveries_for(stack, note["job_key"])
    assert len(attempts) >= 2
    assert len({a["id"] for a in attempts}) == 1  # the webhook id is stable across retries
    assert all(a["verified"] for a in attempts)
