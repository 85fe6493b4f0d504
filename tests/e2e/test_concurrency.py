"""A folder of images at once, on execution environments that run concurrently.

20 uploads at once (NanoBanana, emulator render time 5 s): every upload ends in exactly one
notification, counted after the stack settled, on the stack's own collector and on the
user's documented queue (read with plain boto3: the stack's reader no longer shares it).
The timing ratio is a benchmark (``python -m benchmarks.burst``), not asserted here beyond
"not one at a time".
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from tests.e2e.helpers import jpeg, settle, start_stack, unique

UPLOADS = 20
RENDER_SECONDS = 5.0


@pytest.fixture(scope="module")
def stack():
    with start_stack("nanobanana", render_seconds=RENDER_SECONDS) as local:
        yield local


def _drain(sqs, url: str) -> list[dict]:
    """Every message on a queue, read and deleted the way a user would with boto3."""
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_twenty_uploads_at_once_each_get_exactly_one_notification(stack):
    info = stack.outputs()
    user_sqs = boto3.client(
        "sqs",
        endpoint_url=info["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    _drain(user_sqs, info["notifications_queue_url"])  # start from an empty queue
    body = jpeg()
    keys = [f"{stack.input_prefix}{unique(f'burst-{i:02d}.jpg')}" for i in range(UPLOADS)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
        list(pool.map(lambda key: stack.upload(body, key, {"prompt": "a folder at once"}), keys))
    for key in keys:
        stack.wait_for_notification(key, timeout=600)
    makespan = time.monotonic() - started
    settle(stack)

    # The stack's collector: one succeeded notification per upload, no more.
    for key in keys:
        found = stack.notifications_for(key)
        assert len(found) == 1, (key, found)
        assert found[0]["status"] == "succeeded", found[0].get("error")

    # The user's queue, read with plain boto3 at the same time: every one of them, once.
    # (Only this test's keys: the queue is the user's, and another module's upload is not ours to count.)
    on_user_queue = [n["source"]["key"] for n in _drain(user_sqs, info["notifications_queue_url"])]
    assert sorted(key for key in on_user_queue if key in keys) == sorted(keys)

    # Exactly one submit per upload and one Step Functions execution per upload.
    submits = [
        i
        for i in stack.runtime.invocations
        if i["function"] == "SubmitFunction" and any(k.rsplit("/", 1)[-1] in json.dumps(i["event"]) for k in keys)
    ]
    assert len(submits) == UPLOADS
    sfn = stack.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=info["state_machine_arn"], maxResults=1000)["executions"]
    assert sum(1 for e in executions if e["status"] == "SUCCEEDED") >= UPLOADS

    # Concurrent, not one at a time: one at a time would take at least 20 renders.
    assert makespan < UPLOADS * RENDER_SECONDS / 2, makespan
    environments = {i["environment"] for i in submits}
    assert len(environments) > 1
    assert len(environments) <= stack.runtime.concurrency_limit(info["functions"]["SubmitFunction"])
