"""Test doubles and builders shared by every tier; tests/conftest.py turns them into fixtures.

Plain functions and classes here: import them where a fixture does not fit, e.g. at module
level or in a parametrisation); fixtures of the same names live in conftest.py.
"""

import io
import ipaddress
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = REPO_ROOT / "events"

# The fake credentials and settings every test process runs with (conftest.py sets them before
# anything imports boto3), so no test reaches real AWS whatever the machine has configured.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "image-to-video",
    "POWERTOOLS_METRICS_NAMESPACE": "ImageToVideo",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}
# Removed from the environment: they would point the clients somewhere else.
AWS_ENVIRONMENT_UNSET = ("AWS_ENDPOINT_URL", "AWS_PROFILE")

# A public address (example.com's): what every name resolves to unless a test says otherwise.
PUBLIC_IP = "93.184.216.34"


def load_event(name: str) -> dict:
    """One sample event from events/, as the tests and `sam local invoke -e` use them."""
    return json.loads((EVENTS_DIR / name).read_text())


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def jpeg(
    width: int = 1024, height: int = 1024, color=(40, 90, 160), *, stripes: bool = False, quality: int = 85
) -> bytes:
    """A JPEG of one colour; ``stripes`` adds some structure, so the encoder has something to do."""
    image = Image.new("RGB", (width, height), color)
    if stripes:
        for x in range(0, width, 64):
            image.paste((220, 180, 60), (x, 0, x + 8, height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def addrinfo(address: str, port) -> tuple:
    """One getaddrinfo answer for an IPv4 or IPv6 address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


def resolver(table: dict | None = None, default: str = PUBLIC_IP):
    """A getaddrinfo answering from ``table`` (host -> address), ``default`` for any other name;
    an IP literal resolves to itself, as with a real resolver (the loopback receivers)."""

    def getaddrinfo(host, port, *args, **kwargs):
        try:
            return [addrinfo(str(ipaddress.ip_address(host)), port)]
        except ValueError:
            return [addrinfo((table or {}).get(host, default), port)]

    return getaddrinfo


def resolving_to(*addresses: str):
    """A getaddrinfo that answers with all of ``addresses``, whatever the name."""

    def getaddrinfo(host, port, *args, **kwargs):
        return [addrinfo(address, port) for address in addresses]

    return getaddrinfo
