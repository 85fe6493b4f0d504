"""NoHuman Studio: create, then poll `GET /v1/videos/generations/{id}` until completed or failed."""

from typing import Any
from urllib.parse import quote

from i2v.errors import ProviderError, SubmitOutcomeUnknownError
from i2v.options import NOHUMAN
from i2v.providers.base import COMPLETED, FAILED, RUNNING, Provider, ProviderJob, text_field
from i2v.providers.http import redact_urls

# USD per (mode, duration in seconds), from the provider's price table.
PRICES_USD = {
    ("fast", 5): 0.47,
    ("fast", 10): 0.94,
    ("hq", 5): 0.94,
    ("hq", 10): 1.87,
}
STATUS_MAP = {"created": RUNNING, "processing": RUNNING, "completed": COMPLETED, "failed": FAILED}


class NoHumanProvider(Provider):
    name = NOHUMAN
    production_base_url = "https://api.nohuman.studio"
    default_result_hosts = ("nohuman.studio",)
    min_recommended_px = 1024
    create_read_timeout = 60.0  # create only queues the job

    def create_job(self, image_url: str, options: dict) -> ProviderJob:
        payload = {"image_url": image_url, **{key: value for key, value in options.items() if value is not None}}
        body = self.http.create("/v1/videos/generate", payload)
        job_id = text_field(body.get("id"), "id")
        if not job_id:
            raise SubmitOutcomeUnknownError(
                "the provider accepted the create request but returned no job id: its outcome is unknown; "
                "nothing was resubmitted"
            )
        job = self._job(body, options)
        return job

    def get_job(self, job_id: str) -> ProviderJob:
        body = self.http.get(f"/v1/videos/generations/{quote(str(job_id), safe='')}")
        return self._job(body, None)

    def cost(self, options: dict, response: dict | None = None) -> dict | None:
        price_key: Any = (options.get("mode"), options.get("duration"))
        amount = PRICES_USD.get(price_key)
        return None if amount is None else {"amount": amount, "currency": "USD"}

    def _job(self, body: dict, options: dict | None) -> ProviderJob:
        raw_status = str(body.get("status", "")).lower()
        status = STATUS_MAP.get(raw_status)
        if status is None:
            raise ProviderError(f"provider reported an unknown job status {raw_status!r}")
        result: dict = body["result"] if isinstance(body.get("result"), dict) else {}
        job = ProviderJob(
            id=text_field(body.get("id"), "id"),
            status=status,
            cost=self.cost(options) if options else None,
        )
        if status == COMPLETED:
            job.video_url = text_field(result.get("url"), "result.url")
            job.thumbnail_url = text_field(result.get("thumbnail_url"), "result.thumbnail_url")
            if not job.video_url:
                job.status = FAILED
                job.error = "the provider reported the job completed but gave no result.url"
        elif status == FAILED:
            job.error = _error_text(body.get("error"))
        return job


def _error_text(error: Any) -> str:
    """NoHuman's `error` may be a string or an object."""
    if isinstance(error, dict):
        text = error.get("message") or error.get("detail") or error.get("code")
        return redact_urls(str(text or error))[:500]
    if error:
        return redact_urls(str(error))[:500]
    return "the provider reported the job failed without a reason"
