"""Fixtures shared by every test: fake AWS credentials, a fake Lambda context, sample events, a
resolver that never reaches DNS. The builders behind them are in tests/fixtures.py."""

import functools
import os
import socket

import botocore.loaders
import botocore.session
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.sns import models as sns_models

from i2v_local import moto_internals
from tests.fixtures import (
    AWS_ENVIRONMENT,
    AWS_ENVIRONMENT_UNSET,
    EVENTS_DIR,
    REPO_ROOT,
    FakeLambdaContext,
    load_event,
    resolver,
    resolving_to,
)

__all__ = ["EVENTS_DIR", "REPO_ROOT", "FakeLambdaContext", "load_event"]

# moto's conditional writes race across threads where AWS's do not (the admission tests take
# slots from many threads at once): make them atomic for every test, as the local stack does.
moto_internals.serialise_dynamodb_item_operations()

# Before anything imports boto3: tests never reach real AWS, whatever the machine has.
os.environ.update(AWS_ENVIRONMENT)
for name in AWS_ENVIRONMENT_UNSET:
    os.environ.pop(name, None)


# moto's mock_aws starts each test with a new default boto3 session, and each new botocore session
# parses the service models (large JSON files) again: most of the unit tests' time went there. The
# models are read-only data, so every session of the test process shares one loader.
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)


# moto's SNS makes a 2048-bit RSA key for every subscription that signs an HTTP delivery; one
# key for the whole test process signs just as well.
@functools.cache
def _sns_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


sns_models.Subscription.private_key = lambda self: _sns_signing_key()


@pytest.fixture
def event():
    return load_event


@pytest.fixture
def lambda_context():
    return FakeLambdaContext()


@pytest.fixture
def public_dns(monkeypatch):
    """Every name resolves to one public address; no test reaches a real resolver."""
    monkeypatch.setattr(socket, "getaddrinfo", resolver())


@pytest.fixture
def dns(monkeypatch):
    """A resolver answering from the returned table (host -> address), a public address otherwise."""
    table: dict = {}
    monkeypatch.setattr(socket, "getaddrinfo", resolver(table))
    return table


@pytest.fixture
def resolves_to(monkeypatch):
    """Call with addresses: every name then resolves to all of them."""

    def set_addresses(*addresses):
        monkeypatch.setattr(socket, "getaddrinfo", resolving_to(*addresses))

    return set_addresses


@pytest.fixture(autouse=True)
def _fresh_clients_and_metrics():
    """Each test gets new boto3 clients (new moto endpoints) and empty Powertools metrics."""
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    from i2v.aws import reset_clients

    reset_clients()
    yield
    reset_clients()
    AmazonCloudWatchEMFProvider().clear_metrics()
