"""Helpers shared by the end-to-end tests on the embedded local stack.

Each test module starts one stack (module scope: moto's backends are process-wide, so only
one stack runs at a time) and every test uses keys of its own, so tests stay independent.
"""

import io
import json
import uuid

from PIL import Image

from i2v_local.stack import LocalStack

OUTCOME_TIMEOUT = 120


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


def outcome(stack: LocalStack, key: str, timeout: float = OUTCOME_TIMEOUT) -> dict:
    """The one outcome notification for key; fails if a second one follows."""
    notification = stack.wait_for_notification(key, timeout=timeout)
    stack.settle(timeout=60)
    found = stack.notifications_for(key)
    assert len(found) == 1, json.dumps(found, indent=2)
    return notification


def create_requests(stack: LocalStack) -> list[dict]:
    return stack.emulator_jobs()


def download(stack: LocalStack, uri: str, target) -> None:
    bucket, key = uri[len("s3://") :].split("/", 1)
    stack.client("s3").download_file(bucket, key, str(target))
