"""NanoBanana Video: one (long) create call whose answer already carries the video."""

from i2v.errors import ProviderError
from i2v.options import NANOBANANA
from i2v.providers.base import COMPLETED, FAILED, Provider, ProviderJob, count_field, rate_limit_field, text_field
from i2v.providers.http import MAX_MESSAGE_CHARS, redact_urls


class NanoBananaProvider(Provider):
    name = NANOBANANA
    production_base_url = "https://nanobananavideo.com"
    default_result_hosts = ("nanobananavideo.com",)
    min_recommended_px = 512
    # The create call renders the video before answering: minutes, not seconds.
    create_read_timeout = 600.0

    def create_job(self, image_url: str, options: dict) -> ProviderJob:
        body = self.http.create("/api/v1/image-to-video.php", {"image_url": image_url, **options})
        if body.get("success") is False:
            # A 2xx that says success=false: the provider took the request and the generation
            # failed (4xx rejections never reach here). Final, and not worth a paid retry.
            error = body.get("error")
            if isinstance(error, dict):
                error = error.get("message") or error
            return ProviderJob(
                id=text_field(body.get("video_id"), "video_id"),
                status=FAILED,
                error=f"the provider could not generate the video: {redact_urls(str(error or 'no details'))[:MAX_MESSAGE_CHARS]}",
            )
        job = ProviderJob(
            id=text_field(body.get("video_id"), "video_id"),
            status=COMPLETED,
            video_url=text_field(body.get("video_url"), "video_url"),
            thumbnail_url=text_field(body.get("thumbnail_url"), "thumbnail_url"),
            cost=self.cost(options, body),
            rate_limit=rate_limit_field(body.get("rate_limit")),
        )
        if not job.video_url:
            job.status = FAILED
            job.error = "the provider answered without a video_url"
        return job

    def get_job(self, job_id: str) -> ProviderJob:
        # NanoBanana documents no status endpoint: jobs are finished when create returns.
        raise ProviderError("nanobanana has no status endpoint; its jobs complete in the create response")

    def cost(self, options: dict, response: dict | None = None) -> dict | None:
        credits = count_field((response or {}).get("credits_used"), "credits_used")
        return None if credits is None else {"credits": credits}
