from datetime import UTC, datetime, timedelta

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from urllib3.exceptions import ProtocolError

from i2v import state as state_model
from i2v.errors import ProviderAuthError
from tests import http_mock
from tests.fixtures import load_event

STATUS_URL = "https://api.nohuman.studio/v1/videos/generations/gen_img2v_x7y8z9"


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("PROVIDER", "nohuman")
    monkeypatch.delenv("PROVIDER_BASE_URL", raising=False)
    monkeypatch.setenv("PROVIDER_API_KEY_SECRET", "i2v/provider-key")
    monkeypatch.setenv("JOBS_TABLE", "jobs")
    monkeypatch.setenv("CONTROL_TABLE", "control")
    parameters.clear_caches()
    with mock_aws():
        from tests.aws_resources import create_table

        create_table("jobs")
        create_table("control", key="pk")
        boto3.client("secretsmanager").create_secret(Name="i2v/provider-key", SecretString="sk-test")
        from functions.poll import app

        yield app
    parameters.clear_caches()


@pytest.fixture
def state():
    """The sample running state, with a deadline still ahead."""
    sample = load_event("poll_running.json")
    sample["deadline"] = (datetime.now(UTC) + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return sample


@pytest.fixture
def lambda_context(lambda_context):
    """Little time left: the check window holds one check (the window's pacing is tested in test_steps.py)."""
    lambda_context.remaining_ms = 16_000
    return lambda_context


@http_mock.activate
def test_still_running(app, state, lambda_context):
    http_mock.get(STATUS_URL, json={"id": "gen_img2v_x7y8z9", "status": "processing", "progress": 40})
    result = app.lambda_handler(state, lambda_context)
    assert result["status"] == "running"
    assert result["poll_count"] == state["poll_count"] + 1 and result["checks"] == 1
    assert set(result) == set(state_model.FIELD_NAMES)  # the job state, never the provider's raw answer
    assert result["wait_seconds"] >= state["poll_interval_seconds"]
    assert http_mock.calls[0].request.headers["Authorization"] == "Bearer sk-test"


@http_mock.activate
def test_completed(app, state, lambda_context):
    http_mock.get(
        STATUS_URL,
        json={"id": "gen_img2v_x7y8z9", "status": "completed", "result": {"url": "https://cdn.nohuman.studio/v.mp4"}},
    )
    result = app.lambda_handler(state, lambda_context)
    assert result["status"] == "completed"
    assert result["result"] == {"video_url": "https://cdn.nohuman.studio/v.mp4", "thumbnail_url": None}
    assert result["cost"] == {"amount": 0.47, "currency": "USD"}  # kept from submit


@http_mock.activate
def test_failed(app, state, lambda_context):
    http_mock.get(STATUS_URL, json={"id": "gen_img2v_x7y8z9", "status": "failed", "error": "face detection failed"})
    result = app.lambda_handler(state, lambda_context)
    assert result["status"] == "failed"
    assert result["error"] == {"code": "ProviderJobFailed", "message": "face detection failed"}


@http_mock.activate
def test_deadline_passed(app, state, lambda_context):
    state["deadline"] = "2026-01-01T00:00:00Z"
    http_mock.get(STATUS_URL, json={"id": "gen_img2v_x7y8z9", "status": "processing"})
    result = app.lambda_handler(state, lambda_context)
    assert result["status"] == "timed_out"
    assert result["error"] == {"code": "TimedOut", "message": "timed out after 30 minutes"}


@pytest.mark.parametrize(
    "reply",
    [{"status": 503}, {"status": 429}, {"body": ProtocolError("Connection aborted.", ConnectionResetError("reset"))}],
)
@http_mock.activate
def test_transient_errors_are_no_news_and_the_job_keeps_waiting(app, state, lambda_context, reply):
    http_mock.get(STATUS_URL, **reply)
    result = app.lambda_handler(state, lambda_context)
    assert result["status"] == "running" and result["error"] is None and result["wait_seconds"] >= 5


@http_mock.activate
def test_rejected_key_is_final(app, state, lambda_context):
    http_mock.get(STATUS_URL, status=403)
    with pytest.raises(ProviderAuthError):
        app.lambda_handler(state, lambda_context)


@http_mock.activate
def test_a_signed_result_link_is_kept_aside_and_the_state_carries_it_without_its_query(
    app, state, lambda_context, monkeypatch
):
    signed = "https://cdn.nohuman.studio/v.mp4?X-Amz-Signature=SECRETSIG&X-Amz-Expires=3600"
    http_mock.get(STATUS_URL, json={"id": "gen_img2v_x7y8z9", "status": "completed", "result": {"url": signed}})

    result = app.lambda_handler(state, lambda_context)

    assert result["result"] == {"video_url": "https://cdn.nohuman.studio/v.mp4", "thumbnail_url": None}
    kept = boto3.client("dynamodb").get_item(TableName="jobs", Key={"job_key": {"S": state["job_key"] + "#result"}})[
        "Item"
    ]
    assert kept["video_url"]["S"] == signed
    assert not hasattr(app, "tracer")  # no X-Ray SDK: nothing records the returned job state
