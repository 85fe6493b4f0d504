"""Copy a provider's result (video or thumbnail) into S3, safely and in constant memory.

The URL comes from a third party, so every hop is checked before it is called: HTTPS only
(plain HTTP only to loopback in the local stack), a host that belongs to the provider, and
only public addresses (no instance metadata, no private services). Redirects are followed by
hand so each new location gets the same check. The body is streamed into a multipart upload
and counted, so a huge or endless response stops at the size cap instead of filling memory.
"""

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from aws_lambda_powertools import Logger

from i2v import storage
from i2v.config import Settings
from i2v.errors import ResultFetchError
from i2v.providers import PROVIDER_CLASSES
from i2v.urlsafety import UnsafeUrlError, check_url

logger = Logger(child=True)

MAX_REDIRECTS = 3
TIMEOUT = (10, 60)  # seconds: connect, and between bytes while reading
CHUNK_SIZE = 1024 * 1024
EXPIRED_STATUSES = {403, 404, 410}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class FetchedObject:
    bucket: str
    key: str
    size: int

    @property
    def uri(self) -> str:
        return storage.s3_uri(self.bucket, self.key)


def allowed_result_hosts(settings: Settings) -> tuple:
    if settings.result_allowed_hosts:
        return settings.result_allowed_hosts
    # Each provider class names the hosts it serves results from (subdomains included).
    provider = PROVIDER_CLASSES.get(settings.provider)
    hosts = provider.default_result_hosts if provider else ()
    if not hosts:
        raise ResultFetchError(
            f"no result hosts are known for provider {settings.provider!r}: set RESULT_ALLOWED_HOSTS"
        )
    return hosts


def fetch_to_s3(url: str, *, bucket: str, key: str, content_type: str, settings: Settings, what: str = "video") -> FetchedObject:
    """Stream ``url`` into s3://bucket/key, or raise ResultFetchError saying why it was refused."""
    max_bytes = settings.max_result_bytes
    response = _open(url, settings, what)
    try:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise ResultFetchError(
                f"the provider's {what} is {int(declared)} bytes, over the {max_bytes}-byte limit (MAX_RESULT_BYTES)"
            )
        size = storage.upload_chunks(_capped(response, max_bytes, what), bucket, key, content_type)
    except requests.RequestException as exc:
        raise ResultFetchError(f"downloading the provider's {what} failed part way: {exc.__class__.__name__}") from exc
    finally:
        response.close()
    logger.info("Result copied", extra={"what": what, "bytes": size, "s3_key": key})
    return FetchedObject(bucket, key, size)


def _open(url: str, settings: Settings, what: str) -> requests.Response:
    """GET the URL, following at most MAX_REDIRECTS redirects, each one checked before it is called."""
    allowed = allowed_result_hosts(settings)
    for _ in range(MAX_REDIRECTS + 1):
        _check(url, allowed, settings, what)
        try:
            response = requests.get(url, stream=True, allow_redirects=False, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ResultFetchError(
                f"the provider's {what} could not be downloaded from {_host(url)}: {exc.__class__.__name__}"
            ) from exc
        if not response.is_redirect:
            break
        location = response.headers.get("Location", "")
        response.close()
        url = urljoin(url, location)
    else:
        raise ResultFetchError(f"the provider's {what} link redirected more than {MAX_REDIRECTS} times")

    if response.status_code in EXPIRED_STATUSES:
        response.close()
        raise ResultFetchError(
            f"the provider's {what} link has expired or was refused (HTTP {response.status_code} from {_host(url)})"
        )
    if not 200 <= response.status_code < 300:  # a 3xx without Location is not a video either
        response.close()
        raise ResultFetchError(f"the provider's {what} could not be downloaded (HTTP {response.status_code} from {_host(url)})")
    return response


def _check(url: str, allowed: tuple, settings: Settings, what: str) -> None:
    # ALLOW_LOOPBACK_HTTP is the local stack's switch: there the emulator serves results on loopback.
    loopback = settings.allow_loopback_http and _host(url) in _LOOPBACK_NAMES
    try:
        check_url(url, allowed_hosts=() if loopback else allowed, allow_loopback_http=loopback)
    except UnsafeUrlError as exc:
        raise ResultFetchError(f"refused to download the provider's {what}: {exc}") from exc


def _capped(response: requests.Response, max_bytes: int, what: str):
    """The response body in chunks, stopping with an error as soon as it passes max_bytes."""
    total = 0
    for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
        total += len(chunk)
        if total > max_bytes:
            raise ResultFetchError(f"the provider's {what} is over the {max_bytes}-byte limit (MAX_RESULT_BYTES)")
        yield chunk


def _host(url: str) -> str:
    # Only the host is ever logged or reported: result URLs often carry signatures.
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(frozen=True)
class CopiedResults:
    video: FetchedObject
    thumbnail: FetchedObject | None
    warnings: list


def copy_results(result: dict | None, keys: dict, settings: Settings) -> CopiedResults:
    """Copy a completed job's video (required) and thumbnail (best effort) into the output bucket.

    ``keys`` comes from storage.output_keys. A thumbnail that cannot be fetched is a warning,
    not a failure: the video is what the person asked for.
    """
    video_url = (result or {}).get("video_url")
    if not video_url:
        raise ResultFetchError("the provider reported the job completed but gave no video URL")
    bucket = settings.output_bucket
    video = fetch_to_s3(video_url, bucket=bucket, key=keys["video"], content_type="video/mp4", settings=settings)

    thumbnail, warnings = None, []
    thumbnail_url = (result or {}).get("thumbnail_url")
    if thumbnail_url:
        try:
            thumbnail = fetch_to_s3(
                thumbnail_url, bucket=bucket, key=keys["thumbnail"], content_type="image/jpeg", settings=settings, what="thumbnail"
            )
        except ResultFetchError as exc:
            logger.warning("Thumbnail not copied", extra={"reason": exc.message})
            warnings.append(f"the thumbnail was not copied: {exc.message}")
    return CopiedResults(video, thumbnail, warnings)
