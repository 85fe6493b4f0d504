"""The small interface every provider implements, and the normalised job it returns."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from i2v.providers.http import ProviderHttp

logger = Logger(child=True)

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"


@dataclass
class ProviderJob:
    """A provider's job as the pipeline sees it, whatever the provider's own wording."""

    id: str | None
    status: str  # running | completed | failed
    video_url: str | None = None
    thumbnail_url: str | None = None
    error: str | None = None
    cost: dict | None = None
    rate_limit: dict | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "video_url": self.video_url,
            "thumbnail_url": self.thumbnail_url,
            "error": self.error,
            "cost": self.cost,
            "rate_limit": self.rate_limit,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ProviderJob":
        return cls(
            id=data.get("id"),
            status=data["status"],
            video_url=data.get("video_url"),
            thumbnail_url=data.get("thumbnail_url"),
            error=data.get("error"),
            cost=data.get("cost"),
            rate_limit=data.get("rate_limit"),
        )


# ---------------------------------------------------------------- reading provider answers
# A provider's answer is validated where it is parsed: a field of the wrong type becomes
# "unknown" (None) here, so nothing downstream (Store, after the video is published) trips on it.


def text_field(value: Any, name: str) -> str | None:
    """A string (ids may come as numbers); None, with a warning, for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    logger.warning("provider field ignored: not text", extra={"field": name, "type": type(value).__name__})
    return None


def count_field(value: Any, name: str) -> int | float | None:
    """A finite, non-negative number (numeric strings accepted); None, with a warning, for anything else."""
    if value is None:
        return None
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
            number = int(number) if number.is_integer() else number
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        logger.warning(
            "provider field ignored: not a non-negative number", extra={"field": name, "value": repr(value)[:40]}
        )
        return None
    return number


def rate_limit_field(value: Any) -> dict | None:
    """NanoBanana's ``rate_limit {count, limit, remaining}``, keeping only readable counts."""
    if not isinstance(value, dict):
        return None
    counts = {}
    for key in ("count", "limit", "remaining"):
        number = count_field(value.get(key), f"rate_limit.{key}")
        if number is not None:
            counts[key] = number
    return counts or None


class Provider(ABC):
    name: str = ""
    production_base_url: str = ""
    default_result_hosts: tuple = ()
    min_recommended_px: int = 0
    # How long the create request may take to answer (NanoBanana renders before it answers).
    create_read_timeout: float = 60.0

    def __init__(self, http: ProviderHttp):
        self.http = http

    def load_api_key(self) -> None:
        """Read the API key now; raises (e.g. Powertools GetParameterError) when it cannot be read."""
        self.http.api_key()

    @abstractmethod
    def create_job(self, image_url: str, options: dict) -> ProviderJob:
        """Start a job. Paid: called at most once per upload."""

    @abstractmethod
    def get_job(self, job_id: str) -> ProviderJob:
        """One status check."""

    @abstractmethod
    def cost(self, options: dict, response: dict | None = None) -> dict | None:
        """What the job costs, as {"amount", "currency"} or {"credits"}; None when unknown."""
