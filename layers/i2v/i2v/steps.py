"""The workflow's steps after Submit: Admit (slot + create) and Poll (one check window).

Prepare lives in submission.prepare_job (it needs Pillow; these steps must not import it).
Each step takes the parsed job state and returns the next one; clocks and sleeps are
arguments so tests drive time by hand.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aws_lambda_powertools import Logger

from i2v import admission, estimates, polling, records, spend, storage, submission
from i2v.aws import best_effort
from i2v.clock import isoformat, parse_time
from i2v.errors import PipelineError, ProviderJobFailedError, ProviderTransientError, QueueTimeoutError
from i2v.providers import COMPLETED, RUNNING, Provider
from i2v.settings import AdmitSettings, ControlSettings, EstimateSettings, PollSettings
from i2v.state import QUEUED
from i2v.transitions import TIMED_OUT, apply_provider_job, fail

logger = Logger(child=True)

FIXED = "fixed"
# A create refused before any work started (5xx, connection refused) waits this long, doubled
# per refusal, before the job asks for a slot again (a 429's Retry-After wins).
CREATE_RETRY_BASE_SECONDS = 5
CREATE_RETRY_MAX_SECONDS = 120
# NanoBanana's create renders before it answers: its lease lasts the create's read timeout and this.
LEASE_GRACE_SECONDS = admission.LEASE_GRACE_SECONDS


def _iso(epoch: float) -> str:
    return isoformat(datetime.fromtimestamp(epoch, UTC))


def _epoch(text: str | None) -> float | None:
    return None if not text else parse_time(text).timestamp()


def _moment(text: str) -> float:
    """A time the job state always has by then (queued_at, deadline)."""
    return parse_time(text).timestamp()


def _estimate(state: dict, settings: EstimateSettings) -> estimates.Estimate:
    return estimates.estimate(
        settings.control_table, state["provider"], state["options"], settings.initial_render_estimate_seconds
    )


def release_slot(state: dict, settings: ControlSettings) -> None:
    if settings.control_table and state.get("provider"):
        admission.release(
            table=settings.control_table,
            provider=state["provider"],
            job_key=state["job_key"],
            max_in_flight=settings.max_jobs_in_flight,
        )


def _queue_timeout(state: dict, waited_minutes: float) -> dict:
    return fail(
        state,
        QueueTimeoutError(
            f"the upload waited {waited_minutes:.0f} minutes for a turn at the provider "
            f"(MaxQueueMinutes is {state['max_queue_minutes']}) and was not sent"
        ),
    )


# ---------------------------------------------------------------- admit


def admit(
    state: dict,
    provider: Provider,
    *,
    settings: AdmitSettings,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> dict:
    """Take an admission slot and create the provider job, or say how long to wait (status
    stays ``queued`` with ``wait_seconds``). Anything but a queued job passes through."""
    state = dict(state)
    if state["status"] != QUEUED:
        return state
    now = clock()
    state["admit_count"] += 1
    if not state["queued_at"]:
        state["queued_at"] = _iso(now)
    queued_at = _moment(state["queued_at"])
    queue_deadline = queued_at + 60 * state["max_queue_minutes"]
    if now >= queue_deadline or state["admit_count"] > state["max_admits"]:
        return _queue_timeout(state, (now - queued_at) / 60)

    estimate = _estimate(state, settings)
    state["render_estimate"] = estimate.to_dict()
    # Read the API key (cached after the first read) before taking a slot: the rate slot is
    # stamped when admission decides, so everything between that and the request reaching the
    # provider eats into the window's margin.
    provider.load_api_key()
    synchronous = provider.name == "nanobanana"
    lease = (provider.http.create_read_timeout if synchronous else 2 * estimate.p90) + LEASE_GRACE_SECONDS
    decision = admission.acquire(
        table=settings.control_table,
        provider=provider.name,
        job_key=state["job_key"],
        requests_per_minute=settings.requests_per_minute,
        max_in_flight=settings.max_jobs_in_flight,
        expected_seconds=estimate.p50,
        lease_seconds=lease,
        reserved_at=state["reserved_at"],
        queued_at=queued_at,
        clock=clock,
        pause=pause,
    )
    if not decision.admitted:
        if decision.reserved_at and decision.reserved_at > queue_deadline:
            return _queue_timeout(state, (decision.reserved_at - queued_at) / 60)
        state["wait_seconds"] = max(1, min(decision.wait_seconds, math.ceil(queue_deadline - now)))
        state["reserved_at"] = decision.reserved_at
        logger.info(
            "waiting for an admission slot", extra={"reason": decision.reason, "wait_seconds": state["wait_seconds"]}
        )
        return state

    state["reserved_at"] = None
    try:
        admission.before_create(state)
        image_url = storage.presign_get(
            state["image"]["bucket"], state["image"]["key"], settings.presign_expiry_seconds
        )
        created_at = clock()
        provider_job = submission.ensure_provider_job(
            state["job_key"],
            provider,
            image_url,
            state["options"],
            jobs_table=settings.jobs_table,
            now=datetime.now(UTC),
            source=state["source"],
            caps=spend.Caps.parse(settings.spend_caps),
            before_send=lambda: _stamp_rate_slot(state, decision, settings, clock),
        )
    except ProviderTransientError as exc:
        # Nothing was created (the claim is released): back to waiting, never to failure.
        return _refused(state, exc, settings, clock=clock, pause=pause)
    except PipelineError as error:
        release_slot(state, settings)
        return fail(state, error)
    except BaseException:
        release_slot(state, settings)
        raise

    state["created_at"] = _iso(created_at)
    state["deadline"] = _iso(created_at + 60 * state["max_wait_minutes"])
    apply_provider_job(state, provider_job)
    # The job exists now: admission's bookkeeping must not fail it (a retry of this step would
    # find the create sent and end the job as an unknown outcome). A lease left behind expires.
    if provider_job.rate_limit:
        best_effort(
            "learning the provider's rate limit",
            lambda: admission.learn_limit(
                table=settings.control_table,
                provider=provider.name,
                rate_limit=provider_job.rate_limit,
                clock=clock,
                pause=pause,
            ),
        )
    if state["status"] != RUNNING:
        state["provider_finished_at"] = _iso(clock())
        best_effort("releasing the admission slot", lambda: release_slot(state, settings))
        return state
    if state["poll_strategy"] == FIXED:
        state["wait_seconds"] = state["poll_interval_seconds"]
    else:
        state["wait_seconds"] = polling.first_wait(created_at, estimate.low, state["poll_interval_seconds"], clock())
    return state


def _stamp_rate_slot(
    state: dict, decision: admission.Decision, settings: AdmitSettings, clock: Callable[[], float]
) -> None:
    """Right before the create goes out: its rate slot counts from now if admission's stamp is
    stale (best effort: a failed write leaves the stamp, which the margin mostly covers)."""
    if "rate_slot" not in decision.details:
        return  # an earlier attempt's lease: its slot was stamped then
    best_effort(
        "restamping the rate slot",
        lambda: admission.sending(
            table=settings.control_table,
            provider=state["provider"],
            job_key=state["job_key"],
            rate_slot=decision.details["rate_slot"],
            stamped_at=decision.details["stamped_at"],
            now=clock(),
        ),
    )


def _refused(
    state: dict,
    exc: ProviderTransientError,
    settings: AdmitSettings,
    *,
    clock: Callable[[], float],
    pause: Callable[[float], None],
) -> dict:
    state["create_attempts"] += 1
    if exc.status == 429:
        retry_after = exc.retry_after if exc.retry_after is not None else CREATE_RETRY_BASE_SECONDS
        admission.rate_limited(
            table=settings.control_table,
            provider=state["provider"],
            job_key=state["job_key"],
            retry_after=retry_after,
            clock=clock,
            pause=pause,
            max_in_flight=settings.max_jobs_in_flight,
        )
        wait = retry_after + random.uniform(0, max(1.0, retry_after / 2))
    else:
        release_slot(state, settings)
        ceiling = min(CREATE_RETRY_MAX_SECONDS, CREATE_RETRY_BASE_SECONDS * 2 ** (state["create_attempts"] - 1))
        wait = exc.retry_after if exc.retry_after is not None else random.uniform(ceiling / 2, ceiling)
    state["wait_seconds"] = max(1, math.ceil(wait))
    state["status"] = QUEUED
    logger.info(
        "create refused before any work started; waiting",
        extra={"status": exc.status, "wait_seconds": state["wait_seconds"]},
    )
    return state


# ---------------------------------------------------------------- poll


def poll(
    state: dict,
    provider: Provider,
    *,
    settings: PollSettings,
    remaining_seconds: Callable[[], float],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """One check window: checks at the cadence until the job leaves running, the window ends
    or the deadline passes. Returns the state with ``wait_seconds`` for the next Wait."""
    state = dict(state)
    state["poll_count"] += 1
    if state["status"] != RUNNING:
        return state
    if not state["provider_job_id"]:
        release_slot(state, settings)
        return fail(state, ProviderJobFailedError("the job has no provider job id to poll"))
    now = clock()
    cadence = float(state["poll_interval_seconds"])
    deadline = _moment(state["deadline"])
    created_at = _epoch(state["created_at"]) or now
    estimate = state["render_estimate"] or _estimate(state, settings).to_dict()
    if state["poll_strategy"] == FIXED:
        end = now
    else:
        budget = max(0.0, remaining_seconds() - polling.END_MARGIN_SECONDS)
        end = polling.window_end(
            created_at=created_at,
            p90=float(estimate["p90"]),
            cadence=cadence,
            now=now,
            deadline=deadline,
            max_window=budget,
        )
    job_id = state["provider_job_id"]
    result = polling.run_window(
        lambda: provider.get_job(job_id),
        cadence=cadence,
        end=end,
        deadline=deadline,
        last_checked_at=state["last_checked_at"],
        clock=clock,
        sleep=sleep,
        on_transient=lambda exc: logger.info(
            "status check failed; next one at the cadence", extra={"reason": str(exc)}
        ),
    )
    state["checks"] += result.checks
    state["last_checked_at"] = result.last_checked_at
    if result.job is not None and result.job.status != RUNNING:
        # Signed result links stay out of the state (and the execution history): kept aside for Store.
        records.keep_result_links(settings.jobs_table, state["job_key"], result.job, now=datetime.now(UTC))
        apply_provider_job(state, result.job)
        state["provider_finished_at"] = _iso(result.last_checked_at or clock())
        state["wait_seconds"] = 0
        release_slot(state, settings)
        return state
    now = clock()
    if now >= deadline or state["poll_count"] >= state["max_polls"]:
        state["status"] = TIMED_OUT
        state["error"] = {"code": "TimedOut", "message": f"timed out after {state['max_wait_minutes']} minutes"}
        release_slot(state, settings)
        return state
    if state["poll_strategy"] == FIXED:
        state["wait_seconds"] = state["poll_interval_seconds"]
    else:
        state["wait_seconds"] = polling.fallback_wait(
            created_at=created_at, cadence=cadence, now=now, deadline=deadline
        )
    if settings.control_table:
        admission.renew(
            table=settings.control_table,
            provider=state["provider"],
            job_key=state["job_key"],
            lease_seconds=state["wait_seconds"] + remaining_seconds() + LEASE_GRACE_SECONDS,
            expected_end=created_at + float(estimate["p50"]),
            now=now,
            max_in_flight=settings.max_jobs_in_flight,
        )
    return state


def record_render_time(state: dict, settings: ControlSettings) -> float | None:
    """Store's contribution to the estimates: how long the provider took for this job."""
    created, finished = _epoch(state.get("created_at")), _epoch(state.get("provider_finished_at"))
    if created is None or finished is None or state.get("status") != COMPLETED:
        return None
    seconds = max(0.0, finished - created)
    estimates.record(settings.control_table, state["provider"], state.get("options"), seconds)
    return seconds
