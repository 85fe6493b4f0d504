"""Admission: the slot every job takes right before its paid create call.

Shared by all executions through small items in CONTROL_TABLE, each taken with one
conditional write on that item alone, so executions contend only when they go for the very
same slot (and then the loser simply tries another one):

    admission#<provider>#rate#<k>   k < the per-minute limit: one *rate slot*. ``at`` is the
                                    time of the slot's last create (``state`` used) or of the
                                    create it is reserved for (``state`` reserved, ``holder``
                                    the job). A slot is used at most once per window
                                    (RATE_WINDOW_SECONDS + a margin), so no rolling window
                                    ever holds more than ``limit`` creates.
    admission#<provider>#lease#<k>  k < MaxJobsInFlight: one *in-flight lease*. ``holder`` is
                                    the job at the provider, ``expires_at`` when the slot comes
                                    back on its own (a crashed execution), ``expected_end``.
    admission#<provider>#meta       ``blocked_until`` (a 429's Retry-After: nobody creates
                                    before it) and ``learned_limit`` (NanoBanana's own
                                    ``rate_limit.limit``).

One consistent BatchGetItem reads them all; every change is a conditional PutItem/UpdateItem
on one item that holds only if the item is still as read (or free), so two executions can
never both take the same slot, and a conflict costs one round trip on another slot instead of
a re-read of everything (the single shared item this replaced made 120 simultaneous jobs
retry against each other).

Rate: a job takes a rate slot that was last used a window ago. When every slot was used within
the window, it *reserves* the slot that frees first, for the moment it frees (``state``
reserved): it waits in a Wait state until then and confirms (``state`` used, ``at`` = the
create time). Reservations are first come first served and nobody chains on a reservation not
yet confirmed, so a job that arrives while every slot is reserved waits until the first
reservation is due and asks again. The number of items is fixed (limit + cap + 1 per provider):
they are overwritten in place, no TTL is needed.

In flight: a job takes a lease slot that is free or expired. A lease is released when the job
ends (Poll or Admit seeing the provider finish, Store, NotifyFailure: every path releases,
idempotently) and renewed by each Poll window; a lease not renewed expires.

A 429 (Retry-After): nobody creates before it and the refused job's lease is free again; the
rate slot it used stays used (providers count every request, refused or not).

The spend-cap check of the operator CLI hooks in at ``before_create`` (see
docs/architecture.md, "Admission"): the one place that runs right before every create.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from i2v.aws import client

logger = Logger(child=True)

RATE_WINDOW_SECONDS = 60.0
# Our clock and the provider's differ, and the create reaches the provider a little after we
# decide: a rate slot is used again this much later than the window strictly needs.
RATE_MARGIN_SECONDS = 3.0
# A reservation this close to now is taken at once (and confirmed this early at most).
RESERVATION_TOLERANCE_SECONDS = 0.5
# A reservation not confirmed this long after its time is given up (its holder crashed, or
# came back late: it then asks again); others may chain on it as if it had been used.
RESERVATION_GRACE_SECONDS = 30.0
# A create that goes out this long after admission stamped its slot restamps it (see sending).
RESTAMP_AFTER_SECONDS = 0.5
# Slots that free within this long of the earliest are equally first: reservations spread over them.
RESERVATION_SPREAD_SECONDS = 5.0
# Conditional writes that lost a race tolerated in one Admit before the job waits and asks again.
MAX_CONFLICTS = 12
# Jobs waiting for an in-flight slot retry after about this long (jittered, older jobs sooner).
IN_FLIGHT_RETRY_MIN_SECONDS = 2
IN_FLIGHT_RETRY_MAX_SECONDS = 60
# A lease outlives the job's expected end by this much before another job may take its slot.
LEASE_GRACE_SECONDS = 300
USED, RESERVED = "used", "reserved"
_BATCH = 100  # BatchGetItem's limit on keys per request


@dataclass
class Decision:
    """What admission answered: ``admitted`` (create now), or wait ``wait_seconds`` and ask again."""

    admitted: bool
    wait_seconds: int = 0
    reserved_at: float | None = None
    reason: str = ""
    in_flight: int = 0
    details: dict = field(default_factory=dict)


def meta_key(provider: str) -> dict:
    return {"pk": {"S": f"admission#{provider}#meta"}}


def rate_key(provider: str, k: int) -> dict:
    return {"pk": {"S": f"admission#{provider}#rate#{k}"}}


def lease_key(provider: str, k: int) -> dict:
    return {"pk": {"S": f"admission#{provider}#lease#{k}"}}


def _number(value: float) -> dict:
    return {"N": f"{value:.3f}"}


def _float(item: dict, name: str, default: float | None = None) -> float | None:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default


def _get_many(table: str, keys: list[dict]) -> dict[str, dict]:
    """Consistent reads of ``keys`` (BatchGetItem, in chunks); items by pk, absent ones left out."""
    dynamodb = client("dynamodb")
    found: dict[str, dict] = {}
    for start in range(0, len(keys), _BATCH):
        request = {table: {"Keys": keys[start : start + _BATCH], "ConsistentRead": True}}
        for attempt in range(8):
            response = dynamodb.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found[item["pk"]["S"]] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
        if request:
            # Throttled for good: a decision on a partial view could pass a Retry-After block or
            # a lease, so this attempt fails instead, as the throttling it is (every task that
            # reads admission retries ClientError).
            message = "DynamoDB left admission items unread (UnprocessedKeys)"
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": message}}, "BatchGetItem"
            )
    return found


@dataclass
class _View:
    """The provider's admission items as read: what a decision is made on."""

    blocked_until: float
    learned_limit: int | None
    rate: list[dict]  # per slot k: {k, at, state, holder, item}
    leases: list[dict]  # per slot k: {k, holder, expires_at, expected_end}


def _read(table: str, provider: str, rate_slots: int, lease_slots: int) -> _View:
    keys = [meta_key(provider)]
    keys += [rate_key(provider, k) for k in range(rate_slots)]
    keys += [lease_key(provider, k) for k in range(lease_slots)]
    items = _get_many(table, keys)
    meta = items.get(meta_key(provider)["pk"]["S"], {})
    rate = []
    for k in range(rate_slots):
        item = items.get(rate_key(provider, k)["pk"]["S"])
        rate.append(
            {
                "k": k,
                "at": _float(item, "at") if item else None,
                "state": item.get("state", {}).get("S", USED) if item else None,
                "holder": item.get("holder", {}).get("S") if item else None,
            }
        )
    leases = []
    for k in range(lease_slots):
        item = items.get(lease_key(provider, k)["pk"]["S"]) or {}
        leases.append(
            {
                "k": k,
                "holder": item.get("holder", {}).get("S"),
                "expires_at": _float(item, "expires_at", 0.0),
                "expected_end": _float(item, "expected_end", 0.0),
            }
        )
    learned = meta.get("learned_limit", {}).get("N")
    return _View(
        blocked_until=_float(meta, "blocked_until", 0.0) or 0.0,
        learned_limit=int(learned) if learned else None,
        rate=rate,
        leases=leases,
    )


def _conditional(operation: str, **kwargs: Any) -> bool:
    """One conditional write (``put_item``/``update_item``): True if it held, False if the item
    had changed meanwhile."""
    try:
        getattr(client("dynamodb"), operation)(**kwargs)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def _put_rate(table: str, provider: str, slot: dict, *, at: float, state: str, holder: str) -> bool:
    """Write rate slot ``slot`` if it is still as read (``at`` unchanged, or never set)."""
    if slot["at"] is None:
        condition, values = "attribute_not_exists(#at)", None
    else:
        condition, values = "#at = :seen", {":seen": _number(slot["at"])}
    kwargs = {
        "TableName": table,
        "Item": {**rate_key(provider, slot["k"]), "at": _number(at), "state": {"S": state}, "holder": {"S": holder}},
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#at": "at"},
    }
    if values:
        kwargs["ExpressionAttributeValues"] = values
    return _conditional("put_item", **kwargs)


def _update_rate(table: str, provider: str, k: int, update: str, condition: str, values: dict) -> bool:
    """One conditional update of rate slot ``k`` (``#at`` and ``#state`` name its attributes)."""
    return _conditional(
        "update_item",
        TableName=table,
        Key=rate_key(provider, k),
        UpdateExpression=update,
        ConditionExpression=condition,
        ExpressionAttributeNames={"#at": "at", "#state": "state"},
        ExpressionAttributeValues=values,
    )


def _update_reservation(table: str, provider: str, k: int, holder: str, *, at: float, state: str) -> bool:
    """Move or confirm the reservation ``holder`` has on rate slot ``k`` (if it still has it)."""
    return _update_rate(
        table,
        provider,
        k,
        "SET #at = :at, #state = :state",
        "holder = :me AND #state = :reserved",
        {":at": _number(at), ":state": {"S": state}, ":me": {"S": holder}, ":reserved": {"S": RESERVED}},
    )


def _take_lease(table: str, provider: str, k: int, holder: str, now: float, expires_at: float, end: float) -> bool:
    """Lease slot ``k`` for ``holder`` if it is free, expired, or already its own."""
    return _conditional(
        "put_item",
        TableName=table,
        Item={
            **lease_key(provider, k),
            "holder": {"S": holder},
            "expires_at": _number(expires_at),
            "expected_end": _number(end),
        },
        ConditionExpression=(
            "attribute_not_exists(pk) OR attribute_not_exists(holder) OR expires_at <= :now OR holder = :me"
        ),
        ExpressionAttributeValues={":now": _number(now), ":me": {"S": holder}},
    )


def _free_lease(table: str, provider: str, k: int, holder: str) -> bool:
    return _conditional(
        "update_item",
        TableName=table,
        Key=lease_key(provider, k),
        UpdateExpression="REMOVE holder SET expires_at = :zero",
        ConditionExpression="holder = :me",
        ExpressionAttributeValues={":me": {"S": holder}, ":zero": {"N": "0"}},
    )


def effective_limit(configured: int, learned: int | None) -> int:
    return max(1, min(configured, learned) if learned else configured)


def _wait_until(at: float, now: float) -> int:
    """A Wait state lasts whole seconds: end it within the tolerance around ``at`` (a reservation
    may be confirmed that early) rather than up to a second after it, at every window boundary."""
    return max(1, math.ceil(at - now - RESERVATION_TOLERANCE_SECONDS))


def free_at(slot: dict) -> float:
    """When a rate slot may be used again (the window after its last or reserved create)."""
    return -math.inf if slot["at"] is None else slot["at"] + RATE_WINDOW_SECONDS + RATE_MARGIN_SECONDS


def pending(slot: dict, now: float) -> bool:
    """A reservation still owed to its holder: nobody may chain on it until it is confirmed."""
    return slot["state"] == RESERVED and slot["at"] + RESERVATION_GRACE_SECONDS > now


def in_flight_wait(leases: dict, now: float, waited_seconds: float) -> int:
    """Jittered wait for a job that found every in-flight slot taken: about until the first
    expected end, shorter the longer the job has already waited (roughly first come, first served)."""
    soonest = min((end for _, end in leases.values()), default=now) - now
    base = min(IN_FLIGHT_RETRY_MAX_SECONDS, max(IN_FLIGHT_RETRY_MIN_SECONDS, soonest))
    base /= 1.0 + max(0.0, waited_seconds) / 60.0
    return max(IN_FLIGHT_RETRY_MIN_SECONDS, math.ceil(base * random.uniform(1.0, 1.5)))


def _live_leases(view: _View, now: float) -> dict:
    return {
        s["holder"]: [s["expires_at"], s["expected_end"]] for s in view.leases if s["holder"] and s["expires_at"] > now
    }


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
    conflicts = 0
    while conflicts < MAX_CONFLICTS:
        now = clock()
        view = _read(table, provider, requests_per_minute, max_in_flight)
        leases = _live_leases(view, now)
        mine = next((s for s in view.leases if s["holder"] == job_key and s["expires_at"] > now), None)
        if mine is not None:  # an earlier attempt of this step took it and stopped before the create
            if view.blocked_until > now + RESERVATION_TOLERANCE_SECONDS:  # a 429's Retry-After came since
                return Decision(False, _wait_until(view.blocked_until, now), None, "rate limit", len(leases))
            return Decision(True, in_flight=len(leases), reason="lease already held")
        held = next((s for s in view.rate if s["holder"] == job_key and s["state"] == RESERVED), None)
        free_leases = [s for s in view.leases if not s["holder"] or s["expires_at"] <= now]
        if not free_leases:
            wait = in_flight_wait(leases, now, now - (queued_at or now))
            if held is None:
                return Decision(False, wait, None, "in-flight cap", len(leases))
            # Its turn came but no lease is free: the job keeps its rate slot, moved to when it
            # asks again (nobody has chained on an unconfirmed reservation, so moving it later
            # is safe), instead of losing its place in the queue.
            at = round(max(held["at"], now + wait), 3)
            if _update_reservation(table, provider, held["k"], job_key, at=at, state=RESERVED):
                return Decision(False, wait, at, "in-flight cap", len(leases))
            return Decision(False, wait, None, "in-flight cap", len(leases))

        outcome = _rate(table, provider, view, job_key, held, requests_per_minute, now)
        if isinstance(outcome, str):  # "conflict"
            conflicts += 1
            pause(random.uniform(0.002, 0.01 * conflicts))
            continue
        if isinstance(outcome, Decision):
            outcome.in_flight = len(leases)
            return outcome
        slot, previous_at, taken_at = outcome  # the rate slot taken for a create now

        random.shuffle(free_leases)
        for lease in free_leases:
            if _take_lease(table, provider, lease["k"], job_key, now, now + lease_seconds, now + expected_seconds):
                return Decision(
                    True,
                    in_flight=len(leases) + 1,
                    reason="admitted",
                    details={"rate_slot": slot["k"], "stamped_at": taken_at},
                )
        # Every free lease went to someone else meanwhile: give the rate slot back and wait.
        _restore_rate(table, provider, slot["k"], job_key, taken_at, previous_at)
        wait = in_flight_wait(leases, now, now - (queued_at or now))
        return Decision(False, wait, None, "in-flight cap", len(leases))
    return Decision(False, random.randint(1, 3), reserved_at, "contention")


def _rate(
    table: str, provider: str, view: _View, job_key: str, held: dict | None, configured: int, now: float
) -> tuple[dict, float | None, float] | Decision | str:
    """The rate part of ``acquire``: (slot, its previous ``at``, the ``at`` taken) for a create
    now, a Decision to wait, or "conflict" (a write lost a race: read again)."""
    limit = effective_limit(configured, view.learned_limit)
    slots = view.rate[:limit]
    if held is not None:
        due = max(held["at"], view.blocked_until)
        if due > now + RESERVATION_TOLERANCE_SECONDS:
            if due > held["at"] and not _update_reservation(
                table, provider, held["k"], job_key, at=due, state=RESERVED
            ):
                return "conflict"  # given up meanwhile (grace passed): ask again from scratch
            return Decision(False, _wait_until(due, now), round(due, 3), "rate limit")
        taken_at = max(now, held["at"])
        if _update_reservation(table, provider, held["k"], job_key, at=taken_at, state=USED):
            return held, held["at"], taken_at
        return "conflict"

    # Each slot's earliest create time; nobody chains on a reservation not yet confirmed.
    chainable = [s for s in slots if s["at"] is None or not pending(s, now)]
    if not chainable:
        # Every slot is owed to a job that reserved it: ask again just after one of them is due,
        # drawn at random from the earlier half, not the first (everyone waiting would ask at once, and again while
        # that holder is late): each re-ask is an Admit invocation and a Wait round trip.
        ats = sorted(s["at"] for s in slots)
        due = random.choice(ats[: max(1, len(ats) // 2)])
        wait = max(1.0, due - now + 1.0) + random.uniform(0, 1.0)
        return Decision(False, math.ceil(wait), None, "rate limit (all reserved)")
    times = {s["k"]: max(free_at(s), view.blocked_until, now) for s in chainable}
    ready = [s for s in chainable if times[s["k"]] <= now + RESERVATION_TOLERANCE_SECONDS]
    if ready:
        # Free now: in random order, so simultaneous jobs spread over the slots instead of racing.
        random.shuffle(ready)
        for slot in ready:
            if _put_rate(table, provider, slot, at=now, state=USED, holder=job_key):
                return slot, slot["at"], now
        return "conflict"
    # Reserve the slot that frees first: first come, first served. Slots that free within a few
    # seconds of it are tried in random order: jobs asking at once would otherwise all write to
    # the same slot, one winning and every other failing a write (and paying for it), in turn.
    chainable.sort(key=lambda s: (times[s["k"]], random.random()))
    earliest = times[chainable[0]["k"]]
    near = [s for s in chainable if times[s["k"]] <= earliest + RESERVATION_SPREAD_SECONDS]
    random.shuffle(near)
    for slot in (near + chainable[len(near) :])[:MAX_CONFLICTS]:
        at = round(times[slot["k"]], 3)
        if _put_rate(table, provider, slot, at=at, state=RESERVED, holder=job_key):
            return Decision(False, _wait_until(at, now), at, "rate limit")
    return "conflict"


def sending(*, table: str, provider: str, job_key: str, rate_slot: int, stamped_at: float, now: float) -> None:
    """The create admitted at ``stamped_at`` goes out only ``now``: when that is later than the
    margin allows for (a slow claim write, botocore retrying a throttled one), its rate slot
    counts from now, so the next create on the slot is not early at the provider. If the next
    job has reserved that turn already, its reservation moves to a window after now."""
    if now - stamped_at <= RESTAMP_AFTER_SECONDS:
        return
    if _update_rate(
        table,
        provider,
        rate_slot,
        "SET #at = :now",
        "holder = :me AND #state = :used AND #at = :stamped",
        {":now": _number(now), ":me": {"S": job_key}, ":used": {"S": USED}, ":stamped": _number(stamped_at)},
    ):
        return
    turn = now + RATE_WINDOW_SECONDS + RATE_MARGIN_SECONDS
    _update_rate(
        table,
        provider,
        rate_slot,
        "SET #at = :turn",
        "#state = :reserved AND #at < :turn",
        {":turn": _number(round(turn, 3)), ":reserved": {"S": RESERVED}},
    )


def _restore_rate(table: str, provider: str, k: int, job_key: str, taken_at: float, previous_at: float | None) -> None:
    """Undo a rate slot taken for a create that will not happen (best effort: if someone chained
    on it meanwhile, it stays used, which only errs on the safe side)."""
    values = {":me": {"S": job_key}, ":taken": _number(taken_at)}
    if previous_at is None:
        expression = "REMOVE #at, holder"
    else:
        expression = "SET #at = :previous"
        values[":previous"] = _number(previous_at)
    _conditional(
        "update_item",
        TableName=table,
        Key=rate_key(provider, k),
        UpdateExpression=expression,
        ConditionExpression="holder = :me AND #at = :taken",
        ExpressionAttributeNames={"#at": "at"},
        ExpressionAttributeValues=values,
    )


def _leases_of(table: str, provider: str, max_in_flight: int | None) -> list[dict]:
    """The lease slots (read by key when the cap is known, else found with a Scan)."""
    if max_in_flight:
        return list(_get_many(table, [lease_key(provider, k) for k in range(max_in_flight)]).values())
    return _scan(table, f"admission#{provider}#lease#")


def _scan(table: str, prefix: str) -> list[dict]:
    dynamodb = client("dynamodb")
    kwargs = {
        "TableName": table,
        "ConsistentRead": True,
        "FilterExpression": "begins_with(pk, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": prefix}},
    }
    items = []
    while True:
        response = dynamodb.scan(**kwargs)
        items.extend(response.get("Items", []))
        if not response.get("LastEvaluatedKey"):
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _slot_index(item: dict) -> int:
    return int(item["pk"]["S"].rsplit("#", 1)[1])


def release(*, table: str, provider: str, job_key: str, max_in_flight: int | None = None) -> None:
    """Give the job's in-flight slot back (idempotent; every path that ends a job calls it)."""
    for item in _leases_of(table, provider, max_in_flight):
        if item.get("holder", {}).get("S") == job_key:
            # Lost a race only if the lease expired and someone else took it: nothing to do.
            _free_lease(table, provider, _slot_index(item), job_key)


def renew(
    *,
    table: str,
    provider: str,
    job_key: str,
    lease_seconds: float,
    expected_end: float,
    now: float | None = None,
    max_in_flight: int | None = None,
) -> None:
    """Extend a running job's lease (Poll calls it each window)."""
    now = time.time() if now is None else now
    for item in _leases_of(table, provider, max_in_flight):
        if item.get("holder", {}).get("S") != job_key:
            continue
        _conditional(
            "update_item",
            TableName=table,
            Key=lease_key(provider, _slot_index(item)),
            UpdateExpression="SET expires_at = :expires, expected_end = :end",
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={
                ":expires": _number(now + lease_seconds),
                ":end": _number(expected_end),
                ":me": {"S": job_key},
            },
        )


def _block(table: str, provider: str, until: float) -> None:
    """Nobody creates before ``until`` (a later block never shortens an earlier one)."""
    _conditional(
        "update_item",
        TableName=table,
        Key=meta_key(provider),
        UpdateExpression="SET blocked_until = :until",
        ConditionExpression="attribute_not_exists(blocked_until) OR blocked_until < :until",
        ExpressionAttributeValues={":until": _number(until)},
    )


def rate_limited(
    *,
    table: str,
    provider: str,
    job_key: str,
    retry_after: float,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
    max_in_flight: int | None = None,
) -> None:
    """The provider answered 429: nobody creates before Retry-After and the job's lease is free
    again. Its rate slot stays used: the provider counts every request, refused or not."""
    _block(table, provider, clock() + retry_after)
    release(table=table, provider=provider, job_key=job_key, max_in_flight=max_in_flight)


def learn_limit(
    *,
    table: str,
    provider: str,
    rate_limit: dict | None,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> None:
    """NanoBanana's ``rate_limit {count, limit, remaining}``: remember its limit, and when
    nothing remains, hold creates back for a moment."""
    if not isinstance(rate_limit, dict) or not isinstance(rate_limit.get("limit"), (int, float)):
        return
    limit = max(1, int(rate_limit["limit"]))
    remaining = rate_limit.get("remaining")
    _conditional(
        "update_item",
        TableName=table,
        Key=meta_key(provider),
        UpdateExpression="SET learned_limit = :limit",
        ConditionExpression="attribute_not_exists(learned_limit) OR learned_limit <> :limit",
        ExpressionAttributeValues={":limit": {"N": str(limit)}},
    )
    if remaining == 0:
        _block(table, provider, clock() + RATE_WINDOW_SECONDS / limit)


def snapshot(*, table: str, provider: str) -> dict:
    """The shared state as it is now (for the CLI, benchmarks and tests): ``starts`` the rate
    slots' create times (reservations included, ascending), ``reservations`` {job: time},
    ``leases`` {job: [expires_at, expected_end]} (expired ones included until taken again), ``blocked_until``, ``learned_limit``."""
    items = _scan(table, f"admission#{provider}#")
    meta = next((i for i in items if i["pk"]["S"] == meta_key(provider)["pk"]["S"]), {})
    rate = [i for i in items if "#rate#" in i["pk"]["S"] and "at" in i]
    learned = meta.get("learned_limit", {}).get("N")
    return {
        "starts": sorted(_float(i, "at") for i in rate),
        "reservations": {
            i["holder"]["S"]: _float(i, "at") for i in rate if i.get("state", {}).get("S") == RESERVED and "holder" in i
        },
        "leases": {
            i["holder"]["S"]: [_float(i, "expires_at", 0.0), _float(i, "expected_end", 0.0)]
            for i in items
            if "#lease#" in i["pk"]["S"] and "holder" in i
        },
        "blocked_until": _float(meta, "blocked_until", 0.0),
        "learned_limit": int(learned) if learned else None,
    }


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
