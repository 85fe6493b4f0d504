"""boto3 clients, created on first use and shared by every module of the layer.

Created lazily so tests can start moto first, and so the local stack only has to set
AWS_ENDPOINT_URL. Timeouts are explicit: a hung AWS call must not eat a Lambda's budget.
"""

from functools import lru_cache

import boto3
from botocore.config import Config

_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})


@lru_cache(maxsize=None)
def client(service: str):
    return boto3.client(service, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials between cases)."""
    client.cache_clear()
