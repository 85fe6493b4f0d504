"""The listing attributes of a job record (what `i2v jobs`, `show` and `cost` read)."""

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from i2v import records
from i2v.settings import PublishSettings
from tests.aws_resources import create_table

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
OUTCOME = {
    "status": "succeeded",
    "job_key": "k" * 64,
    "source": {"bucket": "in", "key": "uploads/a.jpg"},
    "provider": "nohuman",
    "output": {"video_uri": "s3://out/videos/a.mp4", "download_url": "https://signed", "download_url_expires_at": "x"},
    "cost": {"amount": 0.47, "currency": "USD"},
    "durations": {"total_seconds": 41.2, "render_seconds": 35.0},
    "error": None,
    "submitted_at": "2026-12-01T09:59:00Z",
    "finished_at": "2026-12-01T10:00:00Z",
}


@pytest.fixture
def settings(monkeypatch):
    with mock_aws():
        create_table("jobs")
        yield PublishSettings(jobs_table="jobs", topic_arn="unused")


def item(key):
    return boto3.client("dynamodb").get_item(TableName="jobs", Key={"job_key": {"S": key}})["Item"]


def test_the_claim_lists_the_job_as_running(settings):
    assert (
        records.claim_submission(
            settings.jobs_table, "j" * 64, provider="nohuman", now=NOW, source={"bucket": "in", "key": "a.jpg"}
        )
        is None
    )
    record = item("j" * 64)
    assert record["job_status"] == {"S": "running"} and record["created_at"] == {"S": "2026-12-01T10:00:00Z"}
    assert record["source_key"] == {"S": "a.jpg"} and record["source_bucket"] == {"S": "in"}


def test_the_outcome_lists_status_cost_and_time_without_the_signed_link(settings):
    records.record_outcome(settings.jobs_table, OUTCOME, now=NOW)
    records.record_outcome(settings.jobs_table, OUTCOME, now=NOW)  # idempotent
    record = item("k" * 64)
    assert record["job_status"] == {"S": "succeeded"} and record["cost_usd"] == {"N": "0.47"}
    assert record["total_seconds"] == {"N": "41.2"} and record["video_uri"] == {"S": "s3://out/videos/a.mp4"}
    assert record["created_at"] == {"S": "2026-12-01T09:59:00Z"}  # a job that never reached create
    stored = json.loads(record["outcome"]["S"])
    assert "download_url" not in stored["output"] and "signed" not in record["outcome"]["S"]


def test_a_failed_outcome_keeps_its_code_and_credits(settings):
    failed = {
        **OUTCOME,
        "status": "failed",
        "output": None,
        "cost": {"credits": 6},
        "error": {"code": "TimedOut", "message": "m"},
    }
    records.claim_submission(settings.jobs_table, "k" * 64, provider="nanobanana", now=NOW)
    records.record_outcome(settings.jobs_table, failed, now=NOW)
    record = item("k" * 64)
    assert record["job_status"] == {"S": "failed"} and record["error_code"] == {"S": "TimedOut"}
    assert record["cost_credits"] == {"N": "6"} and "cost_usd" not in record
    assert record["created_at"] == {"S": "2026-12-01T10:00:00Z"}  # the claim's time is kept
