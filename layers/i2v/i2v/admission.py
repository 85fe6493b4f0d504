"""Admission: the slot every job takes right before its paid create call.

One item per provider in CONTROL_TABLE (partition key ``pk`` = ``admission#<provider>``) holds
everything all executions share, and every change is one conditional write on it (optimistic
concurrency on ``version``), so two executions can never both take the last slot:

    starts        create times (epoch seconds, ascending) of the last rolling minute, including
                  *reservations*: future times handed to jobs that arrived while the minute was full
    leases        {job_key: [expires_at, expected_end]}: jobs in flight at the provider
    blocked_until a 429's Retry-After: nobody creates before it
    learned_limit the provider's own per-minute limit, when it told us (NanoBanana's rate_limit.limit)

Rate: at most ``limit`` starts in any window of RATE_WINDOW_SECONDS (+ a safety margin). A job
that finds the minute full reserves the earliest time that keeps the rule and waits (a Wait
state) until then: first come, first served, one round trip per job, no thundering herd at
the window boundary. In flight: at most ``max_in_flight`` unexpired leases. A lease expires on
its own (a crashed execution's slot comes back) and is released when the job ends (Poll or
Admit seeing the provider finish, Store, NotifyFailure: every path releases, idempotently).

The spend-cap check of the operator CLI hooks in at ``before_create`` (see
docs/architecture.md, "Admission"): the one place that runs right before every create.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from i2v.aws import client

logger = Logger(child=True)

RATE_WINDOW_SECONDS = 60.0
# Our clock and the provider's differ, and the create reaches the provider a little after we
# decide: creates are spaced this much more than the window strictly needs.
RATE_MARGIN_SECONDS = 2.0
# A reservation this close to now is taken at once.
RESERVATION_TOLERANCE_SECONDS = 0.5
# Conditional-write conflicts tolerated before the job simply waits and tries again.
MAX_CONFLICTS = 12
# Jobs waiting for an in-flight slot retry after about this long (jittered, older jobs sooner).
IN_FLIGHT_RETRY_MIN_SECONDS = 2
IN_FLIGHT_RETRY_MAX_SECONDS = 60
# A lease outlives the job's expected end by this much before another job may take its slot.
LEASE_GRACE_SECONDS = 300


@dataclass
class Decision:
    """What admission answered: ``admitted`` (create now), or wait ``wait_seconds`` and ask again."""

    admitted: bool
    wait_seconds: int = 0
    reserved_at: float | None = None
    reason: str = ""
    in_flight: int = 0
    details: dict = field(default_factory=dict)


def item_key(provider: str) -> dict:
    return {"pk": {"S": f"admission#{provider}"}}


def _read(table: str, provider: str) -> tuple[dict, int | None]:
    item = client("dynamodb").get_item(TableName=table, Key=item_key(provider), ConsistentRead=True).get("Item")
    if not item:
        return {"starts": [], "leases": {}, "blocked_until": 0.0, "learned_limit": None}, None
    leases = {}
    for key, value in (item.get("leases") or {}).get("M", {}).items():
        numbers = [float(n["N"]) for n in value.get("L", [])]
        if numbers:
            leases[key] = numbers + [numbers[0]] * (2 - len(numbers))
    return {
        "starts": sorted(float(n["N"]) for n in (item.get("starts") or {}).get("L", [])),
        "leases": leases,
        "blocked_until": float((item.get("blocked_until") or {}).get("N", 0)),
        "learned_limit": int(item["learned_limit"]["N"]) if "learned_limit" in item else None,
    }, (int(item["version"]["N"]) if "version" in item else -1)


def _number(value: float) -> dict:
    return {"N": f"{value:.3f}"}


def _write(table: str, provider: str, data: dict, version: int | None) -> bool:
    """Replace the shared state if nobody changed it since ``version``; False on a conflict."""
    values = {
        ":starts": {"L": [_number(t) for t in data["starts"]]},
        ":leases": {"M": {k: {"L": [_number(v[0]), _number(v[1])]} for k, v in data["leases"].items()}},
        ":blocked": _number(data["blocked_until"]),
        ":next": {"N": str(max(version or 0, 0) + 1)},
    }
    expression = "SET starts = :starts, leases = :leases, blocked_until = :blocked, version = :next"
    if data.get("learned_limit"):
        values[":learned"] = {"N": str(int(data["learned_limit"]))}
        expression += ", learned_limit = :learned"
    if version is None:
        condition = "attribute_not_exists(pk)"
    elif version < 0:  # an item some other write left without a version: claim it the same way
        condition = "attribute_not_exists(version)"
    else:
        condition = "version = :seen"
        values[":seen"] = {"N": str(version)}
    try:
        client("dynamodb").update_item(
            TableName=table,
            Key=item_key(provider),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def _update(
    table: str,
    provider: str,
    change: Callable[[dict, float], Decision | None],
    *,
    clock: Callable[[], float],
    pause: Callable[[float], None],
) -> Decision | None:
    """Read, apply ``change`` (which edits the data in place and returns the decision), write
    conditionally; again on a conflict. ``change`` returning a decision with ``details["write"]``
    False means nothing needs writing."""
    for attempt in range(MAX_CONFLICTS):
        data, version = _read(table, provider)
        decision = change(data, clock())
        if decision is not None and decision.details.pop("write", True) is False:
            return decision
        if _write(table, provider, data, version):
            return decision
        # Contention between executions: a few milliseconds, then read again.
        pause(random.uniform(0.005, 0.02 * (attempt + 1)))
    return None


def effective_limit(configured: int, learned: int | None) -> int:
    return max(1, min(configured, learned) if learned else configured)


def next_start(starts: list[float], limit: int, now: float, blocked_until: float) -> float:
    """The earliest create time at or after ``now`` that keeps ``limit`` starts per window."""
    at = max(now, blocked_until)
    if len(starts) >= limit:
        at = max(at, starts[-limit] + RATE_WINDOW_SECONDS + RATE_MARGIN_SECONDS)
    if starts:
        at = max(at, starts[-1])  # the list stays in order
    return at


def in_flight_wait(leases: dict, now: float, waited_seconds: float) -> int:
    """Jittered wait for a job that found every in-flight slot taken: about until the first
    expected end, shorter the longer the job has already waited (roughly first come, first served)."""
    soonest = min((end for _, end in leases.values()), default=now) - now
    base = min(IN_FLIGHT_RETRY_MAX_SECONDS, max(IN_FLIGHT_RETRY_MIN_SECONDS, soonest))
    base /= 1.0 + max(0.0, waited_seconds) / 60.0
    return max(IN_FLIGHT_RETRY_MIN_SECONDS, math.ceil(base * random.uniform(1.0, 1.5)))


def acquire(
    *,
    table: str,
    provider: str,
    job_key: str,
    requests_per_minute: int,
    max_in_flight: int,
    expected_seconds: float,
    lease_seconds: float,
    reserved_at: float | None = None,
    queued_at: float | None = None,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> Decision:
    """Take a slot for one create, or say how long to wait. Atomic across all executions."""

    def change(data: dict, now: float) -> Decision:
        leases = {k: v for k, v in data["leases"].items() if v[0] > now}
        data["leases"] = leases
        data["starts"] = [t for t in data["starts"] if t > now - RATE_WINDOW_SECONDS - RATE_MARGIN_SECONDS]
        if job_key in leases:  # an earlier attempt of this step took it and stopped before the create
            return Decision(True, in_flight=len(leases), reason="lease already held")
        if len(leases) >= max_in_flight:
            wait = in_flight_wait(leases, now, now - (queued_at or now))
            return Decision(False, wait, reserved_at, "in-flight cap", len(leases), {"write": False})
        limit = effective_limit(requests_per_minute, data.get("learned_limit"))
        holds_reservation = (
            reserved_at is not None
            and reserved_at <= now + 1.0
            and any(abs(t - reserved_at) < 0.001 for t in data["starts"])
        )
        if not holds_reservation:
            at = next_start(data["starts"], limit, now, data["blocked_until"])
            data["starts"].append(round(at, 3))
            if at > now + RESERVATION_TOLERANCE_SECONDS:
                # The minute is full: this job's turn is at `at`; the reservation counts from now on.
                return Decision(False, max(1, math.ceil(at - now)), round(at, 3), "rate limit", len(leases))
        leases[job_key] = [now + lease_seconds, now + expected_seconds]
        return Decision(True, in_flight=len(leases), reason="admitted")

    decision = _update(table, provider, change, clock=clock, pause=pause)
    if decision is None:
        return Decision(False, random.randint(1, 3), reserved_at, "contention")
    return decision


def release(*, table: str, provider: str, job_key: str) -> None:
    """Give the job's in-flight slot back (idempotent; every path that ends a job calls it)."""
    try:
        client("dynamodb").update_item(
            TableName=table,
            Key=item_key(provider),
            UpdateExpression="REMOVE leases.#k SET version = if_not_exists(version, :zero) + :one",
            ConditionExpression="attribute_exists(leases.#k)",
            ExpressionAttributeNames={"#k": job_key},
            ExpressionAttributeValues={":one": {"N": "1"}, ":zero": {"N": "0"}},
        )
    except ClientError as exc:
        # ConditionalCheckFailed: already released (or never taken), nothing to do.
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def renew(
    *, table: str, provider: str, job_key: str, lease_seconds: float, expected_end: float, now: float | None = None
) -> None:
    """Extend a running job's lease (Poll calls it each window)."""
    now = time.time() if now is None else now
    try:
        client("dynamodb").update_item(
            TableName=table,
            Key=item_key(provider),
            UpdateExpression="SET leases.#k = :lease, version = if_not_exists(version, :zero) + :one",
            ConditionExpression="attribute_exists(leases.#k)",
            ExpressionAttributeNames={"#k": job_key},
            ExpressionAttributeValues={
                ":lease": {"L": [_number(now + lease_seconds), _number(expected_end)]},
                ":one": {"N": "1"},
                ":zero": {"N": "0"},
            },
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def rate_limited(
    *,
    table: str,
    provider: str,
    job_key: str,
    retry_after: float,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> None:
    """The provider answered 429: nobody creates before Retry-After, and the job's slot is free again."""

    def change(data: dict, now: float) -> None:
        data["leases"].pop(job_key, None)
        data["blocked_until"] = max(data["blocked_until"], now + retry_after)

    _update(table, provider, change, clock=clock, pause=pause)


def learn_limit(
    *,
    table: str,
    provider: str,
    rate_limit: dict | None,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> None:
    """NanoBanana's ``rate_limit {count, limit, remaining}``: remember its limit, and when
    nothing remains, hold creates back for a window."""
    if not isinstance(rate_limit, dict) or not isinstance(rate_limit.get("limit"), (int, float)):
        return
    limit = int(rate_limit["limit"])
    remaining = rate_limit.get("remaining")
    data_now, _ = _read(table, provider)
    if data_now.get("learned_limit") == limit and remaining != 0:
        return

    def change(data: dict, now: float) -> None:
        data["learned_limit"] = max(1, limit)
        if remaining == 0:
            data["blocked_until"] = max(data["blocked_until"], now + RATE_WINDOW_SECONDS / max(1, limit))

    _update(table, provider, change, clock=clock, pause=pause)


def snapshot(*, table: str, provider: str) -> dict:
    """The shared state as it is now (for the CLI, benchmarks and tests)."""
    data, version = _read(table, provider)
    return {**data, "version": version}


def before_create(state: dict) -> None:
    """Called right before every paid create, after the slot was taken.

    The hook for checks that must hold at that moment (the operator CLI's spend caps,
    ``i2v.spend``): raise a PipelineError to fail the job before anything is paid for.
    """
    try:
        from i2v import spend
    except ImportError:
        return
    check = getattr(spend, "check_before_create", None)
    if check is not None:
        check(state)
