"""The workflow steps with a hand-driven clock: Admit (slot + create) and Poll (one check window)."""

import math
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from moto import mock_aws

from i2v import admission, estimates, polling, records, state, steps, submission, transitions
from i2v.clock import isoformat, parse_time
from i2v.errors import ProviderAuthError, ProviderTransientError, SubmitOutcomeUnknownError
from i2v.providers import COMPLETED, FAILED, RUNNING, ProviderJob
from i2v.settings import AdmitSettings, Env, JobLimits
from tests.aws_resources import create_table

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    """time.time and time.sleep in one: sleeping moves the clock, nothing waits."""

    def __init__(self, now=T0):
        self.now = now
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class FakeProvider:
    def __init__(self, name="nohuman", create=None, answers=None, clock=None, finishes_at=None):
        self.name = name
        self.min_recommended_px = 512
        self.http = SimpleNamespace(create_read_timeout=600.0 if name == "nanobanana" else 60.0)
        self._create = create or ProviderJob(id="gen_1", status=RUNNING, cost={"amount": 0.47, "currency": "USD"})
        self.answers = list(answers or [])
        self.clock = clock
        self.finishes_at = finishes_at
        self.creates = 0
        self.checks = []  # clock time of each status check

    def load_api_key(self):
        pass

    def create_job(self, image_url, options):
        self.creates += 1
        if isinstance(self._create, Exception):
            raise self._create
        return self._create

    def get_job(self, job_id):
        self.checks.append(self.clock() if self.clock else None)
        if self.finishes_at is not None:
            if self.clock() >= self.finishes_at:
                return ProviderJob(id=job_id, status=COMPLETED, video_url="https://cdn.nohuman.studio/v.mp4")
            return ProviderJob(id=job_id, status=RUNNING)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("JOBS_TABLE", "jobs")
    monkeypatch.setenv("CONTROL_TABLE", "control")
    monkeypatch.setenv("PROVIDER_API_KEY_SECRET", "key")
    monkeypatch.setenv("PROVIDER_REQUESTS_PER_MINUTE", "2")
    monkeypatch.setenv("MAX_JOBS_IN_FLIGHT", "5")
    monkeypatch.setenv("MAX_QUEUE_MINUTES", "10")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("MAX_WAIT_MINUTES", "30")
    with mock_aws():
        create_table("jobs")
        create_table("control", key="pk")
        yield AdmitSettings.from_env()


def queued(settings, key="k", provider="nohuman"):
    job = submission.new_job_state(
        key=key * 64 if len(key) == 1 else key,
        source={"bucket": "in", "key": "a.jpg"},
        provider=provider,
        limits=JobLimits.read(Env("tests")),
        now=datetime.fromtimestamp(T0, UTC),
    )
    job["options"] = {"mode": "fast", "duration": 5}
    job["image"] = {"bucket": "out", "key": "work/x/input.jpg"}
    return job


def admit(job, provider, settings, clock):
    return state.parse(steps.admit(state.parse(job), provider, settings=settings, clock=clock, pause=lambda s: None))


# ---------------------------------------------------------------- admit


def test_admit_creates_and_waits_until_shortly_before_the_predicted_finish(settings):
    clock = Clock()
    provider = FakeProvider()
    job = admit(queued(settings), provider, settings, clock)
    assert job["status"] == RUNNING and provider.creates == 1
    assert job["render_estimate"]["low"] == 30.0 and job["render_estimate"]["source"] == "defaults"
    assert job["wait_seconds"] == 29  # the estimate's low, less the lead
    assert job["created_at"] and job["deadline"] > job["created_at"]
    assert set(admission.snapshot(table="control", provider="nohuman")["leases"]) == {job["job_key"]}


def test_admit_without_a_slot_waits_and_keeps_its_turn(settings):
    clock = Clock()
    provider = FakeProvider()
    for key in ("a", "b"):
        assert admit(queued(settings, key), provider, settings, clock)["status"] == RUNNING
    job = admit(queued(settings, "c"), provider, settings, clock)
    assert job["status"] == "queued" and provider.creates == 2
    turn = admission.RATE_WINDOW_SECONDS + admission.RATE_MARGIN_SECONDS
    assert job["wait_seconds"] == math.ceil(turn - 0.5) and job["reserved_at"] == pytest.approx(T0 + turn, abs=1e-3)
    clock.now += job["wait_seconds"]
    job = admit(job, provider, settings, clock)
    assert job["status"] == RUNNING and provider.creates == 3 and job["admit_count"] == 2


def test_a_429_on_create_goes_back_to_waiting_never_to_failure(settings):
    clock = Clock()
    provider = FakeProvider(create=ProviderTransientError("HTTP 429", status=429, retry_after=7))
    job = admit(queued(settings), provider, settings, clock)
    assert job["status"] == "queued" and job["error"] is None
    assert 7 <= job["wait_seconds"] <= 11 and job["create_attempts"] == 1
    snapshot = admission.snapshot(table="control", provider="nohuman")
    assert snapshot["leases"] == {} and snapshot["blocked_until"] == pytest.approx(T0 + 7, abs=1e-3)
    assert records.get(settings.jobs_table, job["job_key"]) is None  # the claim was released: a later create is allowed
    provider._create = ProviderJob(id="gen_2", status=RUNNING)
    clock.now += job["wait_seconds"]
    assert admit(job, provider, settings, clock)["provider_job_id"] == "gen_2"


def test_a_5xx_on_create_backs_off_and_tries_again(settings):
    clock = Clock()
    provider = FakeProvider(create=ProviderTransientError("HTTP 503", status=503))
    job = admit(queued(settings), provider, settings, clock)
    assert job["status"] == "queued" and 1 <= job["wait_seconds"] <= steps.CREATE_RETRY_BASE_SECONDS
    assert admission.snapshot(table="control", provider="nohuman")["leases"] == {}


def test_an_unknown_create_outcome_fails_and_frees_the_slot(settings):
    clock = Clock()
    provider = FakeProvider(create=SubmitOutcomeUnknownError("read timeout"))
    job = admit(queued(settings), provider, settings, clock)
    assert job["status"] == FAILED and job["error"]["code"] == "SubmitOutcomeUnknown"
    assert admission.snapshot(table="control", provider="nohuman")["leases"] == {}
    # The Step Functions retry of this step never sends it again.
    job2 = admit(queued(settings), FakeProvider(), settings, clock)
    assert job2["error"]["code"] == "SubmitOutcomeUnknown"


def test_a_rejected_create_fails_and_frees_the_slot(settings):
    job = admit(queued(settings), FakeProvider(create=ProviderAuthError("401")), settings, Clock())
    assert job["status"] == FAILED and job["error"]["code"] == "ProviderAuthRejected"
    assert admission.snapshot(table="control", provider="nohuman")["leases"] == {}


def test_queue_timeout_has_its_own_code(settings):
    clock = Clock()
    provider = FakeProvider()
    for key in ("a", "b"):
        admit(queued(settings, key), provider, settings, clock)
    job = queued(settings, "c")
    job["queued_at"] = isoformat(datetime.fromtimestamp(T0 - 9.5 * 60, UTC))
    job = admit(job, provider, settings, clock)  # its turn (a window and the margin away) is past its 10 minutes
    assert job["status"] == FAILED and job["error"]["code"] == "QueueTimeout"
    assert "10" in job["error"]["message"]


def test_nanobanana_completes_in_admit_and_frees_its_slot(settings):
    done = ProviderJob(
        id="vid_1",
        status=COMPLETED,
        video_url="https://nanobananavideo.com/v.mp4",
        rate_limit={"count": 1, "limit": 1, "remaining": 0},
    )
    job = admit(queued(settings, provider="nanobanana"), FakeProvider("nanobanana", create=done), settings, Clock())
    assert job["status"] == COMPLETED and job["provider_finished_at"]
    snapshot = admission.snapshot(table="control", provider="nanobanana")
    assert snapshot["leases"] == {} and snapshot["learned_limit"] == 1


def test_admit_passes_a_failed_state_through(settings):
    job = queued(settings)
    job = transitions.fail(job, ProviderAuthError("x"))
    provider = FakeProvider()
    assert admit(job, provider, settings, Clock())["status"] == FAILED and provider.creates == 0


def test_fixed_strategy_waits_the_interval(settings, monkeypatch):
    job = queued(settings)
    job["poll_strategy"] = "fixed"
    assert admit(job, FakeProvider(), settings, Clock())["wait_seconds"] == 5


# ---------------------------------------------------------------- poll


def running(settings, clock, provider):
    job = admit(queued(settings), provider, settings, clock)
    clock.now += job["wait_seconds"]
    return job


def poll(job, provider, settings, clock, remaining=105.0):
    return state.parse(
        steps.poll(
            state.parse(job),
            provider,
            settings=settings,
            remaining_seconds=lambda: remaining,
            clock=clock,
            sleep=clock.sleep,
        )
    )


def test_the_window_keeps_the_cadence_and_returns_on_completion(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0 + 47)
    job = running(settings, clock, provider)
    job = poll(job, provider, settings, clock)
    assert job["status"] == COMPLETED and job["poll_count"] == 1
    gaps = [b - a for a, b in zip(provider.checks, provider.checks[1:], strict=False)]
    assert gaps and all(gap >= 5 for gap in gaps)
    assert provider.checks[0] <= T0 + 30  # never a first check past the predicted low
    assert provider.checks[-1] - (T0 + 47) < 5  # found within one cadence
    assert admission.snapshot(table="control", provider="nohuman")["leases"] == {}


def test_the_window_ends_within_the_invocation_and_falls_back_to_a_cheap_wait(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0 + 10_000)
    job = running(settings, clock, provider)
    start = clock.now
    job = poll(job, provider, settings, clock, remaining=60.0)
    assert job["status"] == RUNNING
    assert clock.now - start <= 60.0 - polling.END_MARGIN_SECONDS
    assert job["wait_seconds"] >= 5  # a Wait state, at least one cadence
    checks_so_far = len(provider.checks)
    clock.now += job["wait_seconds"]
    job = poll(job, provider, settings, clock, remaining=60.0)
    assert len(provider.checks) > checks_so_far and job["poll_count"] == 2
    gaps = [b - a for a, b in zip(provider.checks, provider.checks[1:], strict=False)]
    assert all(gap >= 5 for gap in gaps)  # across invocations too


def test_the_deadline_times_the_job_out(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0 + 10_000)
    job = running(settings, clock, provider)
    clock.now = T0 + 30 * 60 - 3
    job = poll(job, provider, settings, clock)
    assert job["status"] == RUNNING and job["wait_seconds"] <= 3  # never waits past the deadline
    clock.now += job["wait_seconds"]
    job = poll(job, provider, settings, clock)
    assert job["status"] == transitions.TIMED_OUT and job["error"]["code"] == "TimedOut"
    assert admission.snapshot(table="control", provider="nohuman")["leases"] == {}


def test_transient_status_errors_are_no_news(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock)
    provider.answers = [
        ProviderTransientError("503"),
        ProviderTransientError("429"),
        ProviderJob(id="gen_1", status=FAILED, error="bad"),
    ]
    job = running(settings, clock, provider)
    job = poll(job, provider, settings, clock)
    assert job["status"] == FAILED and job["error"] == {"code": "ProviderJobFailed", "message": "bad"}
    assert job["checks"] == 3


def test_fixed_strategy_checks_once_per_invocation(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0 + 10_000)
    job = queued(settings)
    job["poll_strategy"] = "fixed"
    job = admit(job, provider, settings, clock)
    job = poll(job, provider, settings, clock)
    assert len(provider.checks) == 1 and job["wait_seconds"] == 5


def test_poll_of_a_finished_state_does_not_call_the_provider(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0)
    job = running(settings, clock, provider)
    job["status"] = COMPLETED
    assert poll(job, provider, settings, clock)["status"] == COMPLETED and provider.checks == []


def test_poll_without_a_provider_job_id_fails(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0)
    job = running(settings, clock, provider)
    job["provider_job_id"] = None
    job = poll(job, provider, settings, clock)
    assert job["status"] == FAILED and provider.checks == []


def test_store_feeds_the_estimate(settings):
    clock = Clock()
    provider = FakeProvider(clock=clock, finishes_at=T0 + 42)
    job = poll(running(settings, clock, provider), provider, settings, clock)
    assert steps.record_render_time(job, settings) == pytest.approx(job_seconds(job), abs=1)
    assert estimates.load_samples("control", "nohuman", job["options"])


def job_seconds(job):
    return parse_time(job["provider_finished_at"]).timestamp() - parse_time(job["created_at"]).timestamp()


# ---------------------------------------------------------------- the window's arithmetic


def test_first_wait_is_never_past_the_low_estimate():
    assert polling.first_wait(created_at=100, low=40, cadence=5, now=100) == 39
    assert polling.first_wait(created_at=100, low=0.5, cadence=5, now=100) == 0


def test_fallback_wait_grows_with_age_within_bounds():
    assert polling.fallback_wait(created_at=0, cadence=5, now=10, deadline=10_000) == 5
    assert polling.fallback_wait(created_at=0, cadence=5, now=400, deadline=10_000) == 100
    assert polling.fallback_wait(created_at=0, cadence=5, now=5000, deadline=10_000) == polling.MAX_FALLBACK_SECONDS
    assert polling.fallback_wait(created_at=0, cadence=5, now=400, deadline=420) == 20


def test_the_rate_slot_counts_from_when_the_create_went_out(settings):
    """Between admission's decision and the request (claim write, spend counter) time passes:
    the slot is restamped right before the create is sent, so the next turn is a window after
    the request the provider saw."""
    clock = Clock()

    class SlowToSend(FakeProvider):
        def create_job(self, image_url, options):
            self.sent_at = clock()
            return super().create_job(image_url, options)

    provider = SlowToSend()
    real_claim = records.claim_submission

    def slow_claim(*args, **kwargs):
        clock.now += 4  # a throttled claim write, retried by botocore
        return real_claim(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "claim_submission", slow_claim)
        assert admit(queued(settings, "a"), provider, settings, clock)["status"] == RUNNING
    starts = admission.snapshot(table="control", provider="nohuman")["starts"]
    assert provider.sent_at == T0 + 4 and provider.sent_at in starts
