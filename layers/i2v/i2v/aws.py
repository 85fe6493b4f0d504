"""boto3 clients, created on first use and shared by every module of the layer.

Created lazily so tests can start moto first, and so the local stack only has to set
AWS_ENDPOINT_URL. Timeouts are explicit: a hung AWS call must not eat a Lambda's budget.
"""

from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = Logger(child=True)

SECRET_MAX_AGE_SECONDS = 300
# Worst case per call: 3 attempts x (3 s connect + 8 s read) = 33 s, plus standard-mode
# backoff between attempts of at most 1 s and 2 s: 36 s, inside the 60 s of the shortest
# functions (Poll, NotifyFailure, DeliverWebhook). read_timeout bounds each wait for data, not
# a whole transfer, so an 8 MiB S3 part that keeps moving is not cut off.
# total_max_attempts counts the first attempt; botocore's "max_attempts" here would not.
_CONFIG = Config(connect_timeout=3, read_timeout=8, retries={"mode": "standard", "total_max_attempts": 3})


# Typed loosely on purpose: the service is chosen at run time, and boto3's stubs (when present)
# type each service's client separately.
_new_client: Callable[..., Any] = boto3.client


@cache
def client(service: str) -> Any:
    return _new_client(service, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials between cases)."""
    client.cache_clear()


def best_effort(what: str, action: Callable[[], object]) -> None:
    """Run an AWS write whose failure must not fail the job (after a paid create, say): an
    AWS error is logged, naming ``what``, and the job goes on."""
    try:
        action()
    except (ClientError, BotoCoreError):
        logger.exception(f"{what} failed; the job goes on")


@lru_cache(maxsize=4)
def _secrets(secretsmanager: Any) -> parameters.SecretsProvider:
    # One Powertools provider (and its value cache) per shared client: when clients are reset
    # (tests, or the local stack moving to a new endpoint), a stale value is not served from cache.
    return parameters.SecretsProvider(boto3_client=secretsmanager)


def secret_string(name: str, *, max_age: int = SECRET_MAX_AGE_SECONDS) -> str:
    """A secret's value (API key, signing secret), cached by Powertools for max_age seconds."""
    value = _secrets(client("secretsmanager")).get(name, max_age=max_age)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise ValueError(f"secret {name} holds no text")
    return value.strip()
