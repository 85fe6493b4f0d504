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
