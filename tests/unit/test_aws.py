"""The shared client factory and secret reader of the layer."""

import boto3
from moto import mock_aws

from i2v.aws import client, reset_clients, secret_string


@mock_aws
def test_secret_values_are_cached_until_the_clients_are_reset():
    secretsmanager = boto3.client("secretsmanager")
    secretsmanager.create_secret(Name="webhook", SecretString=" whsec_first \n")
    assert secret_string("webhook") == "whsec_first"

    secretsmanager.update_secret(SecretId="webhook", SecretString="whsec_second")
    assert secret_string("webhook") == "whsec_first"  # Powertools' cache saves a call per invocation

    # A new endpoint (the local stack restarting, a new test) must never be served the old value.
    reset_clients()
    assert secret_string("webhook") == "whsec_second"


def test_clients_are_shared_until_reset():
    first = client("s3")
    assert client("s3") is first
    reset_clients()
    assert client("s3") is not first


def test_an_aws_call_gives_up_well_inside_the_shortest_function_timeout():
    """Poll, NotifyFailure and DeliverWebhook have 60 s; one call's worst case must leave room."""
    config = client("sns").meta.config
    assert config.connect_timeout == 3 and config.read_timeout == 8
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}  # the first attempt included
    attempts = config.retries["total_max_attempts"]
    backoff = sum(2**retry for retry in range(attempts - 1))  # standard mode: up to 1 s, then 2 s
    worst = attempts * (config.connect_timeout + config.read_timeout) + backoff
    assert worst == 36 and worst <= 60 - 20  # 20 s left for the function's own work
