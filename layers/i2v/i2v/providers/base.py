"""The small interface every provider implements, and the normalised job it returns."""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from i2v.providers.http import ProviderHttp

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


class Provider(ABC):
    name: str = ""
    production_base_url: str = ""
    default_result_hosts: tuple = ()
    min_recommended_px: int = 0

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
