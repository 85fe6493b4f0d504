"""When to check a provider job, and the check window one Poll invocation runs.

The workflow waits (a Wait state, free) until shortly before the job's earliest likely finish
(the estimate's ``low``), then one Poll invocation checks at the provider's cadence until the
job leaves ``running`` or the window ends. Consecutive checks are never closer than the
cadence, across invocations too (``last_checked_at`` travels in the job state). A job still
running after its window goes back to a cheap Wait (``fallback_wait``) and another window.

Everything here takes the clock and the sleep as arguments, so tests drive time by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from i2v.errors import ProviderTransientError
from i2v.providers.base import RUNNING, ProviderJob

# The first check comes this long before the estimate's `low` (Wait and cold-start latency).
LEAD_SECONDS = 1.0
# Time kept back at the end of an invocation for the status call in flight and the return.
END_MARGIN_SECONDS = 15.0
# A fallback wait is this fraction of the time the job has run so far, within the bounds below.
FALLBACK_FRACTION = 0.25
MAX_FALLBACK_SECONDS = 300
# A Standard workflow holds 25,000 history events; one poll loop costs about ten of them.
MAX_POLLS = 2000
# Admission rounds (Wait, Admit, Route: about ten events each) are capped the same way.
MAX_ADMITS = 2000


def poll_interval(max_wait_minutes: int, configured_seconds: int) -> int:
    """The configured interval, stretched when a long deadline would need more polls than
    MAX_POLLS allows: the job then waits its whole deadline instead of hitting the cap early."""
    return max(1, configured_seconds, math.ceil(max_wait_minutes * 60 * 2 / MAX_POLLS))


def max_polls(max_wait_minutes: int, poll_interval_seconds: int) -> int:
    """Twice the polls the deadline allows (Lambda and Wait add time), never near the history limit."""
    expected = math.ceil(max_wait_minutes * 60 / max(1, poll_interval_seconds))
    return max(1, min(MAX_POLLS, 2 * expected))


def first_wait(created_at: float, low: float, cadence: float, now: float) -> int:
    """Seconds to wait after the create before the first check (never past the estimate's low)."""
    return max(0, math.floor(created_at + low - LEAD_SECONDS - now))


def window_end(
    *, created_at: float, p90: float, cadence: float, now: float, deadline: float, max_window: float
) -> float:
    """Check until the estimate's p90 (plus two checks) has passed, within the invocation's budget
    and the job's deadline; at least two checks' worth."""
    wanted = max(created_at + p90 + 2 * cadence, now + 2 * cadence)
    return min(wanted, now + max_window, deadline)


def fallback_wait(*, created_at: float, cadence: float, now: float, deadline: float) -> int:
    """A long-running job waits a quarter of its age before its next window, within bounds."""
    wait = max(cadence, min(MAX_FALLBACK_SECONDS, FALLBACK_FRACTION * max(0.0, now - created_at)))
    return max(0, math.ceil(min(wait, max(0.0, deadline - now))))


@dataclass
class WindowResult:
    job: ProviderJob | None  # the last answer (None if every check failed transiently)
    checks: int
    transient_errors: int
    last_checked_at: float | None
    reason: str  # "finished" | "window" | "deadline"


def run_window(
    get_job: Callable[[], ProviderJob],
    *,
    cadence: float,
    end: float,
    deadline: float,
    last_checked_at: float | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_transient: Callable[[Exception], None] | None = None,
) -> WindowResult:
    """Check at ``cadence`` until the job leaves running, ``end`` or ``deadline``.

    A transient failure of one check (5xx, 429, timeout) counts as "no news": the next check
    comes at the cadence. A check is started only while it can still finish before ``end``.
    """
    checks = errors = 0
    job: ProviderJob | None = None
    while True:
        now = clock()
        due = now if last_checked_at is None else max(now, last_checked_at + cadence)
        if checks and due > end:
            return WindowResult(job, checks, errors, last_checked_at, "window")
        if due > now:
            sleep(due - now)
        last_checked_at = clock()
        checks += 1
        try:
            job = get_job()
        except ProviderTransientError as exc:
            errors += 1
            if on_transient:
                on_transient(exc)
        else:
            if job.status != RUNNING:
                return WindowResult(job, checks, errors, last_checked_at, "finished")
        if last_checked_at >= deadline:
            return WindowResult(job, checks, errors, last_checked_at, "deadline")
