"""Time as the pipeline writes it (ISO 8601 UTC, whole seconds) and the default clock.

Use cases take ``now`` or a clock (a callable returning an aware datetime) as an argument,
defaulting to ``utc_now``, so tests pass their own instead of patching module names.
"""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
