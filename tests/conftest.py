"""Fixtures shared by every test: fake AWS credentials, a fake Lambda context, sample events."""

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import botocore.loaders
import botocore.session
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = REPO_ROOT / "events"

# Before anything imports boto3: tests never reach real AWS, whatever the machine has.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_SERVICE_NAME="image-to-video",
    POWERTOOLS_METRICS_NAMESPACE="ImageToVideo",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_DEV="false",
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


# moto's mock_aws starts each test with a new default boto3 session, and each new botocore session
# parses the service models (large JSON files) again: most of the unit tests' time went there. The
# models are read-only data, so every session of the test process shares one loader.
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)


def load_event(name: str) -> dict:
    """One sample event from events/, as the tests and `sam local invoke -e` use them."""
    return json.loads((EVENTS_DIR / name).read_text())


@pytest.fixture
def event():
    return load_event


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context():
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def _fresh_clients_and_metrics():
    """Each test gets new boto3 clients (new moto endpoints) and empty Powertools metrics."""
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    from i2v.aws import reset_clients

    reset_clients()
    yield
    reset_clients()
    AmazonCloudWatchEMFProvider().clear_metrics()
