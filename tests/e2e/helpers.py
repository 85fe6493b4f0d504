"""Helpers shared by the end-to-end tests on the embedded local stack.

Each test module starts one stack (module scope: moto's backends are process-wide, so only
one stack runs at a time) and every test uses keys of its own, so tests stay independent.
"""

import io
import json
import time
import uuid

from PIL import Image

from i2v_local.stack import LocalStack

OUTCOME_TIMEOUT = 120
# "Exactly one" needs a wait: the collectors long-poll for 1 s, so a late duplicate published
# just before the stack settled shows up only after that.
GRACE_AFTER_FIRST = 2.5
GRACE_AFTER_SETTLE = 1.5


def jpeg(width: int = 1280, height: int = 720, color=(40, 90, 160)) -> bytes:
    image = Image.new("RGB", (width, height), color)
    for x in range(0, width, 64):  # some structure, so the encoder has something to do
        image.paste((220, 180, 60), (x, 0, x + 8, height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def unique(name: str) -> str:
    return f"{uuid.uuid4().hex[:8]}-{name}"


def start_stack(provider: str, **kwargs) -> LocalStack:
    kwargs.setdefault("render_seconds", 1.0)
    kwargs.setdefault("poll_interval", 1)
    kwargs.setdefault("quiet", True)
    return LocalStack(provider=provider, **kwargs)


def settle_with_grace(stack: LocalStack, first_seen: float) -> None:
    """Settle, then wait long enough that anything already published has been collected."""
    stack.settle(timeout=60)
    settled = time.monotonic()
    wait_until = max(first_seen + GRACE_AFTER_FIRST, settled + GRACE_AFTER_SETTLE)
    time.sleep(max(0.0, wait_until - time.monotonic()))
    stack.settle(timeout=60)


def outcome(stack: LocalStack, key: str, timeout: float = OUTCOME_TIMEOUT) -> dict:
    """The one outcome notification for key; fails if a second one follows."""
    notification = stack.wait_for_notification(key, timeout=timeout)
    settle_with_grace(stack, time.monotonic())
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
    settle_with_grace(stack, time.monotonic())


def create_requests(stack: LocalStack) -> list[dict]:
    return stack.emulator_jobs()


def download(stack: LocalStack, uri: str, target) -> None:
    bucket, key = uri[len("s3://") :].split("/", 1)
    stack.client("s3").download_file(bucket, key, str(target))
