"""Admission: the shared rate window and in-flight leases, atomic in DynamoDB (moto)."""

import pytest
from moto import mock_aws

from i2v import admission
from tests.aws_resources import create_table

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def table():
    with mock_aws():
        yield create_table("control", key="pk")


def take(table, key, clock, *, rate=2, cap=10, reserved_at=None, queued_at=None, expected=60, lease=600):
    return admission.acquire(
        table=table,
        provider="nanobanana",
        job_key=key,
        requests_per_minute=rate,
        max_in_flight=cap,
        expected_seconds=expected,
        lease_seconds=lease,
        reserved_at=reserved_at,
        queued_at=queued_at,
        clock=clock,
        pause=lambda s: None,
    )


def test_slot_taken_and_released(table):
    clock = Clock()
    decision = take(table, "a", clock)
    assert decision.admitted and decision.in_flight == 1
    assert set(admission.snapshot(table=table, provider="nanobanana")["leases"]) == {"a"}
    admission.release(table=table, provider="nanobanana", job_key="a")
    admission.release(table=table, provider="nanobanana", job_key="a")  # idempotent
    assert admission.snapshot(table=table, provider="nanobanana")["leases"] == {}


def test_a_full_minute_reserves_the_next_turn_first_come_first_served(table):
    clock = Clock()
    assert take(table, "a", clock).admitted
    assert take(table, "b", clock).admitted
    c = take(table, "c", clock)
    d = take(table, "d", clock)
    assert not c.admitted and not d.admitted
    # Two per minute: c's turn is a window (plus the margin) after a's, d's after b's, in order.
    assert c.reserved_at == pytest.approx(T0 + 62) and c.wait_seconds == 62
    assert d.reserved_at >= c.reserved_at
    clock.now = c.reserved_at
    assert take(table, "c", clock, reserved_at=c.reserved_at).admitted
    # A newcomer at the same moment does not jump the queue: its turn comes after d's.
    e = take(table, "e", clock)
    assert not e.admitted and e.reserved_at > d.reserved_at


def test_no_window_ever_holds_more_creates_than_the_limit(table):
    clock = Clock()
    starts = []
    pending = {f"j{i}": None for i in range(9)}
    for _ in range(40):
        for key, reserved in list(pending.items()):
            if reserved is not None and reserved > clock.now:
                continue
            decision = take(table, key, clock, rate=3, reserved_at=reserved)
            if decision.admitted:
                starts.append(clock.now)
                del pending[key]
                admission.release(table=table, provider="nanobanana", job_key=key)
            else:
                pending[key] = decision.reserved_at
        clock.now += 7
    assert not pending
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 60, starts


def test_in_flight_cap_holds_and_expired_leases_come_back(table):
    clock = Clock()
    assert take(table, "a", clock, rate=100, cap=2, lease=100).admitted
    assert take(table, "b", clock, rate=100, cap=2, lease=100).admitted
    blocked = take(table, "c", clock, rate=100, cap=2)
    assert not blocked.admitted and blocked.reason == "in-flight cap" and blocked.wait_seconds >= 2
    # "a" crashed and never released: its lease expires and "c" gets the slot.
    clock.now += 101
    later = take(table, "c", clock, rate=100, cap=2)
    assert later.admitted and later.in_flight <= 2


def test_a_retried_admit_finds_its_own_lease(table):
    clock = Clock()
    assert take(table, "a", clock, cap=1).admitted
    again = take(table, "a", clock, cap=1)
    assert again.admitted and again.reason == "lease already held"


def test_older_waiters_retry_sooner():
    leases = {"x": [T0 + 600, T0 + 30]}
    fresh = [admission.in_flight_wait(leases, T0, 0) for _ in range(50)]
    old = [admission.in_flight_wait(leases, T0, 600) for _ in range(50)]
    assert max(old) < min(fresh)


def test_a_429_blocks_everyone_until_retry_after_and_frees_the_slot(table):
    clock = Clock()
    assert take(table, "a", clock, rate=100).admitted
    admission.rate_limited(
        table=table, provider="nanobanana", job_key="a", retry_after=20, clock=clock, pause=lambda s: None
    )
    snapshot = admission.snapshot(table=table, provider="nanobanana")
    assert snapshot["leases"] == {} and snapshot["blocked_until"] == pytest.approx(T0 + 20)
    b = take(table, "b", clock, rate=100)
    assert not b.admitted and b.reserved_at == pytest.approx(T0 + 20)


def test_the_providers_own_limit_lowers_the_configured_one(table):
    clock = Clock()
    admission.learn_limit(
        table=table,
        provider="nanobanana",
        rate_limit={"count": 1, "limit": 1, "remaining": 5},
        clock=clock,
        pause=lambda s: None,
    )
    assert take(table, "a", clock, rate=30).admitted
    assert not take(table, "b", clock, rate=30).admitted


def test_conflicting_writers_both_get_a_consistent_answer(table, monkeypatch):
    """A write that lost the race reads again instead of overwriting the winner."""
    clock = Clock()
    real_write = admission._write
    calls = {"n": 0}

    def racing_write(table_name, provider, data, version):
        calls["n"] += 1
        if calls["n"] == 1:  # someone else takes a slot between our read and our write
            assert take(table_name, "other", clock, cap=1).admitted
        return real_write(table_name, provider, data, version)

    monkeypatch.setattr(admission, "_write", racing_write)
    decision = take(table, "me", clock, cap=1)
    assert not decision.admitted and decision.reason == "in-flight cap"
    assert set(admission.snapshot(table=table, provider="nanobanana")["leases"]) == {"other"}


def test_before_create_is_a_no_op_without_spend_caps():
    admission.before_create({"job_key": "k"})
