import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from moto import mock_aws

from i2v import identity, polling, records, submission
from i2v.errors import (
    ProviderAuthError,
    ProviderRejectedError,
    ProviderTransientError,
    SubmitOutcomeUnknownError,
)
from i2v.providers import COMPLETED, RUNNING, ProviderJob
from i2v.settings import AdmitSettings, Env, JobLimits
from tests.aws_resources import create_table

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
CONTRACT_KEYS = {
    "job_key",
    "source",
    "provider",
    "options",
    "image",
    "provider_job_id",
    "status",
    "result",
    "cost",
    "rate_limit",
    "warnings",
    "error",
    "submitted_at",
    "deadline",
    "max_wait_minutes",
    "poll_interval_seconds",
    "poll_count",
}


class FakeProvider:
    name = "nohuman"
    min_recommended_px = 1024

    def __init__(self, create=None, get=None, key_error=None):
        self._create = create or ProviderJob(id="gen_1", status=RUNNING, cost={"amount": 0.47, "currency": "USD"})
        self._get = get
        self._key_error = key_error
        self.creates = 0
        self.gets = []

    def load_api_key(self):
        if self._key_error:
            raise self._key_error

    def create_job(self, image_url, options):
        self.creates += 1
        if isinstance(self._create, Exception):
            raise self._create
        return self._create

    def get_job(self, job_id):
        self.gets.append(job_id)
        if isinstance(self._get, Exception):
            raise self._get
        return self._get


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("JOBS_TABLE", "jobs")
    monkeypatch.setenv("MAX_WAIT_MINUTES", "30")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("PROVIDER_API_KEY_SECRET", "key")
    monkeypatch.setenv("CONTROL_TABLE", "control")
    return AdmitSettings.from_env()


@pytest.fixture
def table(settings):
    with mock_aws():
        yield create_table("jobs")


# ---------------------------------------------------------------- identity


def test_job_key_is_a_sha256_of_the_object_identity():
    key = identity.job_key("in", "uploads/my photo+1.jpg", None, '"abc"')
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key == identity.job_key("in", "uploads/my photo+1.jpg", None, "abc")  # quotes do not matter
    assert key != identity.job_key("in", "uploads/my photo+1.jpg", None, "abd")
    assert key != identity.job_key("in", "uploads/my photo 1.jpg", None, "abc")
    assert key != identity.job_key("other", "uploads/my photo+1.jpg", None, "abc")
    # A version id, when there is one, identifies the object instead of the ETag.
    assert identity.job_key("in", "k", "v1", "abc") == identity.job_key("in", "k", "v1", "zzz")
    assert identity.job_key("in", "k", "v1", "abc") != identity.job_key("in", "k", "v2", "abc")


def s3_record(key: str, **object_fields) -> S3EventRecord:
    event = {"Records": [{"s3": {"bucket": {"name": "in"}, "object": {"key": key, **object_fields}}}]}
    return next(S3Event(event).records)


@pytest.mark.parametrize(
    "encoded, decoded",
    [
        ("uploads/my+photo.jpg", "uploads/my photo.jpg"),
        ("uploads/my+photo%2B1.jpg", "uploads/my photo+1.jpg"),
        ("uploads/%C3%A9t%C3%A9/%E5%86%99%E7%9C%9F.png", "uploads/été/写真.png"),
        ("uploads/2026/11/22/a.jpg", "uploads/2026/11/22/a.jpg"),
    ],
)
def test_source_from_s3_record_decodes_the_key(encoded, decoded):
    source = identity.source_from_s3_record(s3_record(encoded, size=42, eTag='"abc"', versionId="v1"))
    assert source == {
        "job_key": identity.job_key("in", decoded, "v1", "abc"),
        "bucket": "in",
        "key": decoded,
        "version_id": "v1",
        "etag": "abc",  # S3 sends the ETag without quotes; a quoted one is stripped all the same
        "size": 42,
    }


def test_source_from_s3_record_without_etag_version_or_size():
    source = identity.source_from_s3_record(s3_record("uploads/a.jpg"))
    assert (source["etag"], source["version_id"], source["size"]) == (None, None, None)
    assert source["job_key"] == identity.job_key("in", "uploads/a.jpg", None, None)


def test_execution_name_is_valid_for_step_functions():
    name = identity.execution_name(identity.job_key("in", "uploads/été/a b:c.jpg", None, "e"))
    assert name.startswith("i2v-") and len(name) == 64 <= 80
    assert re.fullmatch(r"[0-9a-z-]+", name)


def test_a_long_deadline_stretches_the_interval_so_the_cap_never_cuts_it_short():
    assert polling.poll_interval(30, 5) == 5
    interval = polling.poll_interval(720, 5)
    assert interval > 5
    assert polling.max_polls(720, interval) * interval >= 720 * 60
    assert polling.max_polls(720, interval) <= polling.MAX_POLLS


def test_max_polls_is_bounded():
    assert polling.max_polls(30, 5) == 720
    assert polling.max_polls(24 * 60, 1) == polling.MAX_POLLS
    assert polling.MAX_POLLS * 10 < 25_000  # about ten history events per loop
    assert polling.max_polls(1, 600) == 2  # at least one check, doubled


def test_new_job_state_has_every_contract_key(settings):
    state = submission.new_job_state(
        key="k" * 64,
        source={"bucket": "in", "key": "uploads/a.jpg", "version_id": None, "etag": "e"},
        provider="nohuman",
        limits=JobLimits.read(Env("tests")),
        now=NOW,
    )
    assert set(state) >= CONTRACT_KEYS
    assert state["source"] == {"bucket": "in", "key": "uploads/a.jpg", "version_id": None, "etag": "e", "size": None}
    assert state["submitted_at"] == "2026-11-22T10:00:00Z"
    assert state["deadline"] == "2026-11-22T10:30:00Z"
    assert state["poll_count"] == 0 and state["max_polls"] == 720
    assert state["status"] == "queued" and state["warnings"] == []
    assert state["max_queue_minutes"] == 60 and state["admit_count"] == 0 and state["max_admits"] == polling.MAX_ADMITS
    json.dumps(state)


# ---------------------------------------------------------------- job records


def test_claim_is_exclusive(table, settings):
    assert records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW) is None
    existing = records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW)
    assert existing["state"] == records.SUBMITTING
    assert "provider_job_id" not in existing


def test_a_claim_whose_answer_was_lost_is_recognised_as_ours(table, settings):
    # botocore retried a put that had landed: the condition now fails on our own claim.
    assert records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW, token="a1") is None
    assert records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW, token="a1") is None
    # Another attempt (a retry of the step) is not the claim's owner: its outcome stays unknown.
    assert records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW, token="b2") is not None


def _throttle_then_pass(monkeypatch, operation, failures):
    """The jobs table throttles ``operation`` ``failures`` times, then answers as usual."""
    from botocore.exceptions import ClientError

    from i2v import aws

    real = aws.client("dynamodb")
    calls = {"n": 0}

    class Throttling:
        def __getattr__(self, name):
            if name != operation:
                return getattr(real, name)

            def call(**kwargs):
                calls["n"] += 1
                if calls["n"] <= failures:
                    error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
                    raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, name)
                return getattr(real, name)(**kwargs)

            return call

    monkeypatch.setattr(records, "client", lambda service: Throttling())
    monkeypatch.setattr(records.time, "sleep", lambda seconds: None)
    return calls


def test_the_answer_to_a_create_is_recorded_through_throttling(table, settings, monkeypatch):
    calls = _throttle_then_pass(monkeypatch, "update_item", failures=3)
    submission.ensure_provider_job("k1", FakeProvider(), "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert calls["n"] == 4
    assert records.get(settings.jobs_table, "k1")["state"] == records.SUBMITTED


def test_a_create_whose_answer_cannot_be_recorded_goes_on_from_the_state(table, settings, monkeypatch):
    _throttle_then_pass(monkeypatch, "update_item", failures=100)
    provider = FakeProvider()
    job = submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert job.id == "gen_1" and provider.creates == 1


def test_a_refused_write_is_not_retried(table, settings, monkeypatch):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="ValidationException"):
        records._write_hard("update_item", "a test value", TableName=settings.jobs_table, Key={})


def test_ensure_provider_job_creates_once_and_reuses_the_record(table, settings):
    provider = FakeProvider()
    first = submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    again = submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 1
    assert first == again
    record = records.get(settings.jobs_table, "k1")
    assert record["state"] == records.SUBMITTED
    assert record["provider_job_id"] == "gen_1"


def test_completed_nanobanana_job_is_reused_with_its_result(table, settings):
    done = ProviderJob(
        id=None,
        status=COMPLETED,
        video_url="https://cdn/v.mp4",
        thumbnail_url=None,
        cost={"credits": 6},
        rate_limit={"count": 1, "limit": 30, "remaining": 29},
    )
    provider = FakeProvider(create=done)
    submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    again = submission.ensure_provider_job(
        "k1", FakeProvider(), "https://img", {}, jobs_table=settings.jobs_table, now=NOW
    )
    assert again.video_url == "https://cdn/v.mp4" and again.cost == {"credits": 6}


def test_crash_mid_create_is_an_unknown_outcome_not_a_second_create(table, settings):
    # An earlier attempt claimed and died before recording an answer.
    records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW)
    provider = FakeProvider()
    with pytest.raises(SubmitOutcomeUnknownError, match="nothing was resubmitted"):
        submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 0


@pytest.mark.parametrize(
    "error",
    [ProviderAuthError("no"), ProviderRejectedError("no"), ProviderTransientError("no")],
)
def test_claim_is_released_when_the_provider_certainly_started_nothing(table, settings, error):
    with pytest.raises(type(error)):
        submission.ensure_provider_job(
            "k1", FakeProvider(create=error), "https://img", {}, jobs_table=settings.jobs_table, now=NOW
        )
    assert records.get(settings.jobs_table, "k1") is None
    provider = FakeProvider()
    submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 1


def test_an_unreadable_api_key_raises_before_anything_is_claimed(table, settings):
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    provider = FakeProvider(key_error=GetParameterError("ThrottlingException"))
    with pytest.raises(GetParameterError):
        submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 0
    assert records.get(settings.jobs_table, "k1") is None  # a retry is free to create the job


def test_claim_is_kept_when_the_outcome_is_unknown(table, settings):
    with pytest.raises(SubmitOutcomeUnknownError):
        submission.ensure_provider_job(
            "k1",
            FakeProvider(create=SubmitOutcomeUnknownError("lost")),
            "https://img",
            {},
            jobs_table=settings.jobs_table,
            now=NOW,
        )
    provider = FakeProvider()
    with pytest.raises(SubmitOutcomeUnknownError):
        submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 0


# ---------------------------------------------------------------- cold start


@pytest.mark.parametrize(
    "module",
    [
        "functions.submit.app",
        "functions.admit.app",
        "functions.poll.app",
        "functions.notify_failure.app",
        "i2v.submission",
        "i2v.records",
        "i2v.publishing",
        "i2v.failure",
        "i2v.steps",
        "i2v.storage",
    ],
)
def test_pillow_is_not_imported_by_functions_that_never_use_it(module):
    # A fresh interpreter: this test session has long since imported Pillow.
    code = f"import sys, {module}; sys.exit('PIL' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


def test_bookkeeping_that_fails_before_the_create_leaves_no_claim(table, settings, monkeypatch):
    """The spend caps' counter write is throttled for good: nothing was sent, so the retry creates."""
    from botocore.exceptions import ClientError

    from i2v import spend

    def throttled(*args, **kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")

    monkeypatch.setattr(spend, "admit", throttled)
    provider = FakeProvider()
    with pytest.raises(ClientError):
        submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 0 and records.get(settings.jobs_table, "k1") is None

    monkeypatch.undo()
    submission.ensure_provider_job("k1", provider, "https://img", {}, jobs_table=settings.jobs_table, now=NOW)
    assert provider.creates == 1


def test_a_claim_is_released_only_by_the_attempt_that_holds_it(table, settings):
    records.claim_submission(settings.jobs_table, "k1", provider="nohuman", now=NOW, token="mine")
    records.release_claim(settings.jobs_table, "k1", token="someone else")
    assert records.get(settings.jobs_table, "k1")["state"] == records.SUBMITTING
    records.release_claim(settings.jobs_table, "k1", token="mine")
    assert records.get(settings.jobs_table, "k1") is None
