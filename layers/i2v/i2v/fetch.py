"""Copy a provider's result (video or thumbnail) into S3, safely and in constant memory.

The URL comes from a third party, so every hop is checked before it is called: HTTPS only
(plain HTTP only to loopback in the local stack), a host that belongs to the provider, and
only public addresses (no instance metadata, no private services), connected to at the
address that was checked. Redirects are followed by hand so each new location gets the same
check. The body is streamed into a multipart upload and counted, so a huge or endless response
stops at the size cap instead of filling memory, and a slow one at its deadline; its first
bytes must show it is what it claims to be (an MP4, or an image for a thumbnail).
"""

import itertools
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from aws_lambda_powertools import Logger
from urllib3.util import Timeout

from i2v import storage
from i2v.errors import ResultDownloadTransientError, ResultFetchError
from i2v.providers import PROVIDER_CLASSES
from i2v.settings import ResultFetchSettings as Settings
from i2v.urlsafety import CheckedUrl, UnsafeUrlError, check_url, pinned_pool

logger = Logger(child=True)

MAX_REDIRECTS = 3
TIMEOUT = Timeout(connect=10, read=60)  # seconds: connect, and between bytes while reading
CHUNK_SIZE = 1024 * 1024
# The per-read timeout does not bound a whole download (a byte every 59 s keeps it alive), so
# the body must also arrive at this average rate, after a grace period for the first bytes.
MIN_BYTES_PER_SECOND = 1024 * 1024
DOWNLOAD_GRACE_SECONDS = 30.0
EXPIRED_STATUSES = {403, 404, 410}
# Answers that may pass (with every 5xx): the download is tried again, never failed for them.
TRANSIENT_STATUSES = {408, 425, 429}
# In-function attempts before the state machine's own Retry (longer backoff) takes over.
IN_FUNCTION_ATTEMPTS = 3
RETRY_BASE_DELAY_SECONDS = 1.0
RETRY_MAX_DELAY_SECONDS = 4.0
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
# Ask for the bytes as stored: a compressed body is not a video, and decompressing costs memory.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
# What a result must start with: an MP4 (ISO base media file: its first box, at offset 4, is
# "ftyp"), or for thumbnails one of the image formats, by magic bytes.
_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
SNIFF_BYTES = 12


@dataclass(frozen=True)
class FetchedObject:
    bucket: str
    key: str
    size: int
    content_type: str = "video/mp4"

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


def fetch_to_s3(
    url: str, *, bucket: str, key: str, content_type: str, settings: Settings, what: str = "video"
) -> FetchedObject:
    """Stream ``url`` into s3://bucket/key, or raise ResultFetchError saying why it was refused.

    ``content_type`` "video/mp4" requires an MP4; "image/..." requires a JPEG, PNG or WebP
    image (stored with the type its bytes show).
    """
    max_bytes = settings.max_result_bytes
    response = _open(url, settings, what)
    try:
        declared = response.headers.get("Content-Length")
        declared_size = int(declared) if declared and declared.isdigit() else None
        if declared_size is not None and declared_size > max_bytes:
            raise ResultFetchError(
                f"the provider's {what} is {declared_size} bytes, over the {max_bytes}-byte limit (MAX_RESULT_BYTES)"
            )
        deadline = time.monotonic() + download_allowance(declared_size or max_bytes)
        chunks = _capped(_body(response, deadline, what), max_bytes, what)
        first = _first_bytes(chunks, SNIFF_BYTES)
        content_type = _required_type(first, content_type, what)
        size = storage.upload_chunks(itertools.chain([first], chunks), bucket, key, content_type)
    except urllib3.exceptions.HTTPError as exc:
        # A broken connection or a stalled read may pass: retried (here, then by the state machine).
        raise ResultDownloadTransientError(
            f"downloading the provider's {what} failed part way: {exc.__class__.__name__}"
        ) from exc
    finally:
        _close(response)
    logger.info("Result copied", extra={"what": what, "bytes": size, "s3_key": key})
    return FetchedObject(bucket, key, size, content_type)


def download_allowance(size: int) -> float:
    """Seconds a download of ``size`` bytes may take in all (at least MIN_BYTES_PER_SECOND)."""
    return DOWNLOAD_GRACE_SECONDS + size / MIN_BYTES_PER_SECOND


def _open(url: str, settings: Settings, what: str) -> urllib3.BaseHTTPResponse:
    """GET the URL, following at most MAX_REDIRECTS redirects, each one checked before it is called
    and connected to at the address that was checked."""
    allowed = allowed_result_hosts(settings)
    for _ in range(MAX_REDIRECTS + 1):
        pool = pinned_pool(_check(url, allowed, settings, what))
        try:
            response = pool.urlopen(
                "GET",
                url,
                headers=REQUEST_HEADERS,
                redirect=False,
                retries=False,
                timeout=TIMEOUT,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            pool.close()
            raise ResultDownloadTransientError(
                f"the provider's {what} could not be downloaded from {_host(url)}: {exc.__class__.__name__}"
            ) from exc
        response.pinned_pool = pool  # closed with the response
        if response.status not in REDIRECT_STATUSES or "Location" not in response.headers:
            break
        location = response.headers.get("Location", "")
        _close(response)
        url = urljoin(url, location)
    else:
        raise ResultFetchError(f"the provider's {what} link redirected more than {MAX_REDIRECTS} times")

    if response.status in EXPIRED_STATUSES:
        _close(response)
        raise ResultFetchError(
            f"the provider's {what} link has expired or was refused (HTTP {response.status} from {_host(url)})"
        )
    if response.status in TRANSIENT_STATUSES or response.status >= 500:
        _close(response)
        raise ResultDownloadTransientError(
            f"the provider's {what} could not be downloaded yet (HTTP {response.status} from {_host(url)})"
        )
    if not 200 <= response.status < 300:  # a 3xx without Location is not a video either
        _close(response)
        raise ResultFetchError(
            f"the provider's {what} could not be downloaded (HTTP {response.status} from {_host(url)})"
        )
    return response


def _close(response: urllib3.BaseHTTPResponse) -> None:
    """Close the response and the pinned pool it came through."""
    response.close()
    pool = getattr(response, "pinned_pool", None)
    if pool is not None:
        pool.close()


def _check(url: str, allowed: tuple, settings: Settings, what: str) -> CheckedUrl:
    # ALLOW_LOOPBACK_HTTP is the local stack's switch: there the emulator serves results on loopback.
    loopback = settings.allow_loopback_http and _host(url) in _LOOPBACK_NAMES
    try:
        return check_url(url, allowed_hosts=() if loopback else allowed, allow_loopback_http=loopback)
    except UnsafeUrlError as exc:
        raise ResultFetchError(f"refused to download the provider's {what}: {exc}") from exc


def _body(response: urllib3.BaseHTTPResponse, deadline: float, what: str) -> Iterator[bytes]:
    """The body as it arrives, stopping with an error once the deadline has passed.

    read1 returns after at most one socket read, and each read may wait only until the
    deadline (not the whole per-read timeout), so a trickle cannot outlast it.
    """
    raw = response
    while True:
        _wait_at_most(raw, deadline - time.monotonic())
        try:
            chunk = raw.read1(CHUNK_SIZE, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            if time.monotonic() < deadline:
                raise
            raise _too_slow(what) from None
        if not chunk:
            return
        if time.monotonic() > deadline:
            raise _too_slow(what)
        yield chunk


def _too_slow(what: str) -> ResultFetchError:
    return ResultFetchError(
        f"the provider's {what} arrived too slowly (under {MIN_BYTES_PER_SECOND // 1024} KiB/s on average); "
        "the download was stopped"
    )


def _wait_at_most(raw: Any, seconds: float) -> None:
    """Shorten the socket's read timeout to what is left before the deadline (never lengthen it)."""
    sock = _socket_of(raw)
    if sock is None:
        return  # not a live connection (tests with mocked responses): the read timeout still applies
    current = sock.gettimeout()
    wanted = max(0.01, seconds)
    if current is None or wanted < current:
        sock.settimeout(wanted)


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket a urllib3 response reads from. A kept-alive connection still holds it; when the
    server closes after the response (HTTP/1.0, Connection: close) http.client hands it to the
    response's file object, reachable only through its SocketIO."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        sock = getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
    return sock if hasattr(sock, "settimeout") else None


def _capped(chunks: Iterable[bytes], max_bytes: int, what: str) -> Iterator[bytes]:
    """The chunks, stopping with an error as soon as they pass max_bytes."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise ResultFetchError(f"the provider's {what} is over the {max_bytes}-byte limit (MAX_RESULT_BYTES)")
        yield chunk


def _first_bytes(chunks: Iterator[bytes], count: int) -> bytes:
    """At least ``count`` bytes from the front of ``chunks`` (fewer only if the body is shorter)."""
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= count:
            break
    return first


def _required_type(first: bytes, expected: str, what: str) -> str:
    """The content type the first bytes show, or ResultFetchError when they are not what was expected."""
    if expected == "video/mp4":
        if first[4:8] == b"ftyp":
            return expected
        raise ResultFetchError(f"the provider's {what} is not an MP4 video (it does not start with an ftyp box)")
    for signature, content_type in _IMAGE_SIGNATURES:
        if first.startswith(signature):
            return content_type
    if first[:4] == b"RIFF" and first[8:12] == b"WEBP":
        return "image/webp"
    raise ResultFetchError(f"the provider's {what} is not a JPEG, PNG or WebP image")


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


def with_retries(
    download: Callable[[], FetchedObject],
    *,
    attempts: int = IN_FUNCTION_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "video",
) -> FetchedObject:
    """``download()``, again after a transient failure (backoff with full jitter), at most
    ``attempts`` times; the last transient failure is raised for the state machine's Retry."""
    for attempt in range(1, attempts + 1):
        try:
            return download()
        except ResultDownloadTransientError as exc:
            if attempt == attempts:
                raise
            delay = random.uniform(0, min(RETRY_MAX_DELAY_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1)))
            logger.info(
                "download failed; trying again",
                extra={"what": what, "attempt": attempt, "delay": round(delay, 2), "reason": exc.message},
            )
            sleep(delay)
    raise AssertionError("unreachable")


def copy_results(
    result: dict | None, keys: dict, settings: Settings, *, sleep: Callable[[float], None] = time.sleep
) -> CopiedResults:
    """Copy a completed job's video (required) and thumbnail (best effort) into the output bucket.

    ``keys`` comes from storage.output_keys. A thumbnail that cannot be fetched is a warning,
    not a failure: the video is what the person asked for.
    """
    video_url = (result or {}).get("video_url")
    if not video_url:
        raise ResultFetchError("the provider reported the job completed but gave no video URL")
    bucket = settings.output_bucket
    video = with_retries(
        lambda: fetch_to_s3(video_url, bucket=bucket, key=keys["video"], content_type="video/mp4", settings=settings),
        sleep=sleep,
    )

    thumbnail, warnings = None, []
    thumbnail_url = (result or {}).get("thumbnail_url")
    if thumbnail_url:
        try:
            thumbnail = with_retries(
                lambda: fetch_to_s3(
                    thumbnail_url,
                    bucket=bucket,
                    key=keys["thumbnail"],
                    content_type="image/jpeg",
                    settings=settings,
                    what="thumbnail",
                ),
                sleep=sleep,
                what="thumbnail",
            )
        except ResultFetchError as exc:
            logger.warning("Thumbnail not copied", extra={"reason": exc.message})
            warnings.append(f"the thumbnail was not copied: {exc.message}")
    return CopiedResults(video, thumbnail, warnings)
