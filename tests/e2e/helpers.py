"""Helpers shared by the end-to-end tests on the embedded local stack.

Each test module starts one stack (module scope: moto's backends are process-wide, so only
one stack runs at a time) and every test uses keys of its own, so tests stay independent.
"""

import json
import time
import uuid

from i2v_local import moto_internals
from i2v_local.stack import ACCOUNT_ID, REGION, LocalStack
from tests import fixtures

OUTCOME_TIMEOUT = 120
SETTLE_TIMEOUT = 60
QUEUE_COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def jpeg(width: int = 1280, height: int = 720, color=(40, 90, 160)) -> bytes:
    """A camera-sized photo with some structure, so the encoder has something to do."""
    return fixtures.jpeg(width, height, color, stripes=True)


def unique(name: str) -> str:
    return f"{uuid.uuid4().hex[:8]}-{name}"


def start_stack(provider: str, **kwargs) -> LocalStack:
    kwargs.setdefault("render_seconds", 1.0)
    kwargs.setdefault("poll_interval", 1)
    kwargs.setdefault("quiet", True)
    return LocalStack(provider=provider, **kwargs)


def settle(stack: LocalStack, *queues: str, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until nothing more can arrive, so that counts taken afterwards are final.

    The stack has settled when no execution runs and no invocation is queued or running: nothing
    is left to publish. Every notification and event it published was delivered to the
    collectors' queues as it was published (moto's SNS and EventBridge deliver synchronously);
    once those queues are empty, the collectors have read it all. ``queues`` are other queues
    with a reader of their own (the webhook queue) that must be empty too.
    """
    sqs = stack.client("sqs")
    urls = [c.queue_url for c in (stack.notifications, stack.events) if c] + list(queues)
    deadline = time.monotonic() + timeout
    while True:
        stack.settle(timeout=max(1.0, deadline - time.monotonic()))
        counts = [sqs.get_queue_attributes(QueueUrl=url, AttributeNames=QUEUE_COUNTS)["Attributes"] for url in urls]
        if not any(int(value) for attributes in counts for value in attributes.values()) and stack.runtime.idle():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"messages left unread after {timeout:.0f} s: {counts}")
        time.sleep(0.1)


def published_outcomes(stack: LocalStack, key: str) -> list[dict]:
    """Every outcome notification published for key, from moto's record of the topics' messages."""
    found = []
    for topic in stack.template.of_type("AWS::SNS::Topic"):
        published, _email = moto_internals.sns_published(ACCOUNT_ID, REGION, topic.ref)
        for _id, message, _subject, _attributes, _group in published:
            try:
                body = json.loads(message)
                if isinstance(body, dict) and "default" in body:  # MessageStructure=json: one text per protocol
                    body = json.loads(body["default"])
            except ValueError:
                continue  # not an outcome (an alarm, say)
            if isinstance(body, dict) and (body.get("source") or {}).get("key") == key:
                found.append(body)
    return found


def outcome(stack: LocalStack, key: str, timeout: float = OUTCOME_TIMEOUT) -> dict:
    """The one outcome notification for key; fails if another one was published or collected."""
    notification = stack.wait_for_notification(key, timeout=timeout)
    settle(stack)
    published = published_outcomes(stack, key)
    assert len(published) == 1, json.dumps(published, indent=2)
    found = stack.notifications_for(key)
    assert len(found) == 1, json.dumps(found, indent=2)
    return notification


def redeliver_upload_event(stack: LocalStack, key: str, times: int = 2) -> None:
    """Invoke the submit function again with the very S3 event it got for key (S3 delivers at least once)."""
    name = key.rsplit("/", 1)[-1]
    delivered = [
        i["event"] for i in stack.runtime.invocations if i["function"] == "SubmitFunction" and name in str(i["event"])
    ]
    assert len(delivered) == 1, delivered
    for _ in range(times):
        response = stack.invoke("SubmitFunction", delivered[0])
        assert response["FunctionError"] is None, response
    settle(stack)


def create_requests(stack: LocalStack) -> list[dict]:
    return stack.emulator_jobs()


def download(stack: LocalStack, uri: str, target) -> None:
    bucket, key = uri[len("s3://") :].split("/", 1)
    stack.client("s3").download_file(bucket, key, str(target))
