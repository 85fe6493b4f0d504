"""Admission: the shared rate window and in-flight leases, atomic in DynamoDB (moto)."""

import concurrent.futures
import math
import threading
import time

import pytest
from moto import mock_aws

from i2v import admission
from tests.aws_resources import create_table

T0 = 1_800_000_000.0
TURN = admission.RATE_WINDOW_SECONDS + admission.RATE_MARGIN_SECONDS  # a slot's next create, after its last


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
    assert c.reserved_at == pytest.approx(T0 + TURN, abs=1e-3) and c.wait_seconds == math.ceil(TURN - 0.5)
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
    assert snapshot["leases"] == {} and snapshot["blocked_until"] == pytest.approx(T0 + 20, abs=1e-3)
    b = take(table, "b", clock, rate=100)
    assert not b.admitted and b.reserved_at == pytest.approx(T0 + 20, abs=1e-3)


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


def test_a_write_that_lost_the_race_takes_another_slot(table, monkeypatch):
    """Between our read and our write someone takes the slot we chose: our conditional write
    fails and we take another one, never the winner's."""
    clock = Clock()
    real_put = admission._put_rate
    calls = {"n": 0}

    def racing_put(table_name, provider, slot, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # someone else takes this very slot first
            assert real_put(table_name, provider, slot, at=clock.now, state=admission.USED, holder="other")
        return real_put(table_name, provider, slot, **kwargs)

    monkeypatch.setattr(admission, "_put_rate", racing_put)
    decision = take(table, "me", clock, rate=2)
    assert decision.admitted and calls["n"] >= 2
    assert sorted(admission.snapshot(table=table, provider="nanobanana")["starts"]) == [T0, T0]


def test_a_reservation_is_never_chained_on_before_it_is_confirmed(table):
    clock = Clock()
    assert take(table, "a", clock, rate=1).admitted
    b = take(table, "b", clock, rate=1)
    assert not b.admitted and b.reserved_at == pytest.approx(T0 + TURN, abs=1e-3)
    c = take(table, "c", clock, rate=1)  # the only slot is owed to b: c asks again after b's turn
    assert not c.admitted and c.reserved_at is None and c.wait_seconds >= TURN - 1
    clock.now = b.reserved_at
    assert take(table, "b", clock, rate=1, reserved_at=b.reserved_at).admitted
    c = take(table, "c", clock, rate=1)
    assert not c.admitted and c.reserved_at == pytest.approx(b.reserved_at + TURN, abs=1e-3)


def test_a_reservation_past_its_grace_is_given_up(table):
    clock = Clock()
    assert take(table, "a", clock, rate=1).admitted
    b = take(table, "b", clock, rate=1)
    clock.now = b.reserved_at + admission.RESERVATION_GRACE_SECONDS + 1  # b crashed and never came
    c = take(table, "c", clock, rate=1)
    assert c.admitted or c.reserved_at >= b.reserved_at + TURN


def test_a_refused_create_still_counts_against_the_rate(table):
    clock = Clock()
    assert take(table, "a", clock, rate=1).admitted
    admission.rate_limited(table=table, provider="nanobanana", job_key="a", retry_after=5, clock=clock)
    clock.now += 5
    again = take(table, "a", clock, rate=1)  # the provider counted the refused request too
    assert not again.admitted and again.reserved_at == pytest.approx(T0 + TURN, abs=1e-3)


def test_simultaneous_jobs_never_exceed_the_cap_or_the_rate(table):
    """50 executions ask at the same instant (threads against moto): at most the cap is
    admitted, each admitted job holds its own lease and rate slot, the others wait in order."""
    clock = Clock()
    rate, cap = 10, 6
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        decisions = dict(
            zip(
                range(50),
                pool.map(lambda i: take(table, f"j{i}", clock, rate=rate, cap=cap), range(50)),
                strict=True,
            )
        )
    admitted = [i for i, d in decisions.items() if d.admitted]
    snapshot = admission.snapshot(table=table, provider="nanobanana")
    assert 1 <= len(admitted) <= cap
    assert set(snapshot["leases"]) == {f"j{i}" for i in admitted}
    assert len(snapshot["starts"]) <= rate
    assert all(not d.admitted and d.wait_seconds >= 1 for i, d in decisions.items() if i not in admitted)


def test_jobs_in_threads_over_several_windows_keep_the_rate_and_the_cap(table):
    """12 executions in threads on a clock running 10x real time (a window is 6 real seconds):
    every job gets through, no rolling minute holds more than the limit, in flight never above the cap."""
    started = time.monotonic()
    speed = 10.0

    def clock():
        return T0 + (time.monotonic() - started) * speed

    rate, cap = 4, 3
    lock = threading.Lock()
    creates, running, most = [], [0], [0]

    def job(i):
        key, reserved = f"j{i}", None
        while True:
            decision = admission.acquire(
                table=table,
                provider="nanobanana",
                job_key=key,
                requests_per_minute=rate,
                max_in_flight=cap,
                expected_seconds=10,
                lease_seconds=600,
                reserved_at=reserved,
                clock=clock,
            )
            if decision.admitted:
                break
            reserved = decision.reserved_at
            time.sleep(decision.wait_seconds / speed)
        with lock:
            creates.append(clock())
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(15 / speed)  # the render
        with lock:
            running[0] -= 1
        admission.release(table=table, provider="nanobanana", job_key=key, max_in_flight=cap)

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(job, range(12)))
    creates.sort()
    assert len(creates) == 12 and most[0] <= cap
    for i in range(len(creates) - rate):
        assert creates[i + rate] - creates[i] >= 60, creates


def test_before_create_is_a_no_op_without_spend_caps():
    admission.before_create({"job_key": "k"})


def test_a_turn_that_finds_the_cap_full_keeps_its_place(table):
    clock = Clock()
    assert take(table, "a", clock, rate=1, cap=2).admitted
    b = take(table, "b", clock, rate=1, cap=2)
    assert b.reason == "rate limit"
    held = set(admission.snapshot(table=table, provider="nanobanana")["leases"])
    free = next(k for k in range(2) if admission._take_lease(table, "nanobanana", k, "x", clock.now, T0 + 600, T0))
    assert free in (0, 1) and held == {"a"}
    clock.now = b.reserved_at  # b's turn, but "a" and "x" still render
    b = take(table, "b", clock, rate=1, cap=2, reserved_at=b.reserved_at)
    assert not b.admitted and b.reason == "in-flight cap" and b.reserved_at >= clock.now
    c = take(table, "c", clock, rate=1, cap=3)  # a newcomer cannot take b's slot meanwhile
    assert not c.admitted and c.reserved_at is None
    admission.release(table=table, provider="nanobanana", job_key="a", max_in_flight=2)
    clock.now = b.reserved_at
    assert take(table, "b", clock, rate=1, cap=2, reserved_at=b.reserved_at).admitted


def test_a_view_left_partial_by_throttling_is_not_decided_on(table, monkeypatch):
    """BatchGetItem keeps answering UnprocessedKeys: the attempt fails as the throttling it is
    (the workflow retries ClientError) instead of missing a Retry-After block or a lease."""
    from botocore.exceptions import ClientError

    class Throttled:
        def batch_get_item(self, RequestItems):
            return {"Responses": {}, "UnprocessedKeys": RequestItems}

    monkeypatch.setattr(admission, "client", lambda service: Throttled())
    monkeypatch.setattr(admission.time, "sleep", lambda seconds: None)
    with pytest.raises(ClientError, match="ProvisionedThroughputExceededException"):
        take(table, "j1", Clock())


def test_a_held_lease_still_waits_out_a_retry_after(table):
    """An attempt that took its lease and stopped before the create, retried after someone's 429:
    it waits for the Retry-After like everyone else instead of creating at once."""
    clock = Clock()
    assert take(table, "j1", clock).admitted
    admission.rate_limited(table=table, provider="nanobanana", job_key="j2", retry_after=30, clock=clock)
    again = take(table, "j1", clock)
    assert not again.admitted and again.wait_seconds >= 29


def test_jobs_asking_at_once_spread_their_reservations_over_the_slots_that_free_first(table, monkeypatch):
    """A full window whose creates went out within a few seconds: jobs reserving the next turns
    try those slots in random order (not all the earliest first, which makes every job but
    one fail a conditional write, in turn), and never a slot that frees later while one of
    those is still free."""
    clock = Clock()
    for i in range(8):  # one create per half second fills the window
        clock.now = T0 + i * 0.5
        assert take(table, f"early-{i}", clock, rate=8).admitted
    first_tried = []
    real_put = admission._put_rate

    def recording_put(table_name, provider, slot, **kwargs):
        first_tried.append(slot["k"])
        return real_put(table_name, provider, slot, **kwargs)

    monkeypatch.setattr(admission, "_put_rate", recording_put)
    clock.now = T0 + 4
    turns = []
    for i in range(4):
        before = len(first_tried)
        decision = take(table, f"late-{i}", clock, rate=8)
        assert not decision.admitted and decision.reserved_at is not None
        assert len(first_tried) - before == 1  # no lost race: the first write took its slot
        turns.append(decision.reserved_at)
    # Every turn is within the spread of the earliest one, and none is taken twice.
    assert len(set(turns)) == 4
    assert max(turns) <= T0 + TURN + admission.RESERVATION_SPREAD_SECONDS
    # Simultaneous askers (the same view, every write lost) do not all aim at the same slot first.
    aims = set()

    def losing_put(table_name, provider, slot, **kwargs):
        if not attempts[-1]:  # the first slot this asker tried
            aims.add(slot["k"])
        attempts[-1] = True
        return False

    monkeypatch.setattr(admission, "_put_rate", losing_put)
    view = admission._read(table, "nanobanana", 8, 10)
    attempts = []
    for attempt in range(20):
        attempts.append(False)
        assert admission._rate(table, "nanobanana", view, f"probe-{attempt}", None, 8, T0 + 4) == "conflict"
    assert len(aims) > 1


def test_a_create_sent_late_counts_its_rate_slot_from_when_it_went_out(table):
    clock = Clock()
    a = take(table, "a", clock, rate=1)
    assert a.admitted and a.details == {"rate_slot": 0, "stamped_at": T0}
    # The claim write was slow: the create goes out 5 s after admission decided.
    admission.sending(table=table, provider="nanobanana", job_key="a", rate_slot=0, stamped_at=T0, now=T0 + 5)
    clock.now = T0 + 6
    b = take(table, "b", clock, rate=1)
    assert not b.admitted and b.reserved_at == pytest.approx(T0 + 5 + TURN, abs=1e-3)


def test_a_late_create_moves_a_turn_already_reserved_after_it(table):
    clock = Clock()
    assert take(table, "a", clock, rate=1).admitted
    b = take(table, "b", clock, rate=1)
    assert b.reserved_at == pytest.approx(T0 + TURN, abs=1e-3)
    admission.sending(table=table, provider="nanobanana", job_key="a", rate_slot=0, stamped_at=T0, now=T0 + 4)
    clock.now = b.reserved_at  # b comes at its turn: it is a window after a's create now
    again = take(table, "b", clock, rate=1, reserved_at=b.reserved_at)
    assert not again.admitted and again.reserved_at == pytest.approx(T0 + 4 + TURN, abs=1e-3)
    clock.now = again.reserved_at
    assert take(table, "b", clock, rate=1, reserved_at=again.reserved_at).admitted


def test_a_create_sent_at_once_keeps_its_stamp(table, monkeypatch):
    clock = Clock()
    assert take(table, "a", clock, rate=1).admitted
    writes = []
    monkeypatch.setattr(admission, "_conditional", lambda *a, **k: writes.append(a) or True)
    admission.sending(table=table, provider="nanobanana", job_key="a", rate_slot=0, stamped_at=T0, now=T0 + 0.2)
    assert writes == []
