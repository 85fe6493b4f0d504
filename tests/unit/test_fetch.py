"""Fetching provider results: every refusal, and the streamed copy into S3."""

import io
import socket
import time
from dataclasses import replace

import boto3
import pytest
import urllib3
from moto import mock_aws
from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError

from i2v.errors import ResultFetchError
from i2v.fetch import allowed_result_hosts, fetch_to_s3
from i2v.settings import PublishSettings, StoreSettings
from tests import http_mock
from tests.loopback import LoopbackServer, answer, rebinding_resolver, second_loopback_server

BUCKET = "out-bucket"
VIDEO_URL = "https://cdn.nanobananavideo.com/videos/vid_1.mp4"
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def mp4(size: int) -> bytes:
    """``size`` bytes that start like an MP4 file."""
    return (FTYP + b"v" * size)[:size]


@pytest.fixture
def s3():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.fixture
def http():
    # moto intercepts botocore before it reaches urllib3, so S3 calls never meet this mock.
    with http_mock.HttpMock() as mock:
        yield mock


@pytest.fixture
def settings():
    return StoreSettings(
        provider="nanobanana",
        output_bucket="",
        publish=PublishSettings(jobs_table="", topic_arn=""),
        result_allowed_hosts=(),
        max_result_bytes=1000,
    )


def fetch(url, settings, key="videos/v.mp4"):
    return fetch_to_s3(url, bucket=BUCKET, key=key, content_type="video/mp4", settings=settings)


def test_streams_the_result_into_s3(s3, http, dns, settings):
    http.get(VIDEO_URL, body=mp4(900), content_type="video/mp4")

    fetched = fetch(VIDEO_URL, settings)

    assert fetched.size == 900
    assert fetched.uri == f"s3://{BUCKET}/videos/v.mp4"
    stored = s3.get_object(Bucket=BUCKET, Key="videos/v.mp4")
    assert stored["Body"].read() == mp4(900)
    assert stored["ContentType"] == "video/mp4"
    options = http.calls[0].request.options
    assert options["preload_content"] is False  # streamed, not read into memory
    assert (options["timeout"].connect_timeout, options["timeout"].read_timeout) == (10, 60)
    assert options["redirect"] is False and options["retries"] is False


def test_follows_a_redirect_within_the_provider(s3, http, dns, settings):
    http.get(VIDEO_URL, status=302, headers={"Location": "https://media.nanobananavideo.com/v.mp4?sig=abc"})
    http.get("https://media.nanobananavideo.com/v.mp4", body=mp4(30))

    assert fetch(VIDEO_URL, settings).size == 30


def test_plain_http_is_refused(s3, http, dns, settings):
    with pytest.raises(ResultFetchError, match="https"):
        fetch("http://cdn.nanobananavideo.com/v.mp4", settings)
    assert len(http.calls) == 0


def test_host_of_another_site_is_refused(s3, http, dns, settings):
    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        fetch("https://videos.example.com/v.mp4", settings)
    assert len(http.calls) == 0


def test_suffix_trick_is_refused(s3, http, dns, settings):
    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        fetch("https://evilnanobananavideo.com/v.mp4", settings)
    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        fetch("https://nanobananavideo.com.evil.example/v.mp4", settings)
    assert len(http.calls) == 0


def test_configured_hosts_replace_the_provider_defaults(s3, http, dns, settings):
    configured = replace(settings, result_allowed_hosts=("results.example.net",))
    http.get("https://a.results.example.net/v.mp4", body=mp4(20))

    assert fetch("https://a.results.example.net/v.mp4", configured).size == 20
    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        fetch(VIDEO_URL, configured)


def test_each_provider_has_default_hosts(settings):
    assert allowed_result_hosts(replace(settings, provider="nanobanana")) == ("nanobananavideo.com",)
    assert allowed_result_hosts(replace(settings, provider="nohuman")) == ("nohuman.studio",)
    with pytest.raises(ResultFetchError, match="RESULT_ALLOWED_HOSTS"):
        allowed_result_hosts(replace(settings, provider="other"))


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "10.0.0.8", "127.0.0.1", "192.168.1.1", "::1", "fd00::1", "224.0.0.1"]
)
def test_provider_host_resolving_to_a_non_public_address_is_refused(s3, http, dns, settings, address):
    dns["cdn.nanobananavideo.com"] = address

    with pytest.raises(ResultFetchError, match="resolves to"):
        fetch(VIDEO_URL, settings)
    assert len(http.calls) == 0


@pytest.mark.parametrize("literal", ["169.254.169.254", "10.1.2.3", "127.0.0.1"])
def test_ip_literal_urls_are_refused(s3, http, dns, settings, literal):
    with pytest.raises(ResultFetchError):
        fetch(f"https://{literal}/v.mp4", replace(settings, result_allowed_hosts=(literal,)))
    assert len(http.calls) == 0


def test_redirect_to_a_private_host_is_refused(s3, http, dns, settings):
    dns["internal.nanobananavideo.com"] = "10.0.0.5"
    http.get(VIDEO_URL, status=301, headers={"Location": "https://internal.nanobananavideo.com/secret"})

    with pytest.raises(ResultFetchError, match="private address"):
        fetch(VIDEO_URL, settings)
    assert [call.request.url for call in http.calls] == [VIDEO_URL]


def test_redirect_to_metadata_service_is_refused(s3, http, dns, settings):
    http.get(VIDEO_URL, status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    with pytest.raises(ResultFetchError, match="refused"):
        fetch(VIDEO_URL, settings)
    assert len(http.calls) == 1


def test_redirect_to_another_site_is_refused(s3, http, dns, settings):
    http.get(VIDEO_URL, status=307, headers={"Location": "https://example.com/v.mp4"})

    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        fetch(VIDEO_URL, settings)


def test_too_many_redirects_are_refused(s3, http, dns, settings):
    for hop in range(5):
        http.get(f"https://cdn.nanobananavideo.com/{hop}", status=302, headers={"Location": f"/{hop + 1}"})

    with pytest.raises(ResultFetchError, match="redirected more than 3 times"):
        fetch("https://cdn.nanobananavideo.com/0", settings)
    assert len(http.calls) == 4


def test_oversize_by_content_length_is_refused_before_reading(s3, http, dns, settings):
    http.get(VIDEO_URL, body=b"v" * 1001, auto_calculate_content_length=True)

    with pytest.raises(ResultFetchError, match="1001 bytes, over the 1000-byte limit"):
        fetch(VIDEO_URL, settings)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_oversize_by_streamed_count_is_refused_and_nothing_is_left(s3, http, dns, settings):
    big = replace(settings, max_result_bytes=10 * 1024 * 1024)
    # No Content-Length: only counting the stream can catch it; 12 MiB starts a multipart upload.
    http.get(VIDEO_URL, body=mp4(12 * 1024 * 1024), auto_calculate_content_length=False)

    with pytest.raises(ResultFetchError, match="over the 10485760-byte limit"):
        fetch(VIDEO_URL, big)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_link_says_so(s3, http, dns, settings, status):
    http.get(VIDEO_URL, status=status, body=b"<Error>AccessDenied</Error>")

    with pytest.raises(ResultFetchError, match=f"expired or was refused \\(HTTP {status}"):
        fetch(VIDEO_URL, settings)


def test_redirect_without_location_is_not_taken_for_the_video(s3, http, dns, settings):
    http.get(VIDEO_URL, status=302, body=b"<html>moved</html>")

    with pytest.raises(ResultFetchError, match="HTTP 302"):
        fetch(VIDEO_URL, settings)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_server_error_is_reported(s3, http, dns, settings):
    http.get(VIDEO_URL, status=502)

    with pytest.raises(ResultFetchError, match="HTTP 502"):
        fetch(VIDEO_URL, settings)


def test_connection_failure_is_reported_without_the_url(s3, http, dns, settings):
    signed = VIDEO_URL + "?token=secret-token"
    http.get(VIDEO_URL, body=ConnectTimeoutError("connect timed out " + signed))

    with pytest.raises(ResultFetchError) as caught:
        fetch(signed, settings)
    assert "ConnectTimeout" in caught.value.message
    assert "secret-token" not in caught.value.message


class _DroppingBody(io.RawIOBase):
    """A response body that sends 9 MiB and then loses the connection."""

    def __init__(self):
        self.sent = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent >= 9 * 1024 * 1024:
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        size = min(len(buffer), 1024 * 1024)
        buffer[:size] = mp4(size)
        self.sent += size
        return size


def test_connection_lost_mid_stream_aborts_the_upload(s3, http, dns, settings):
    http.get(VIDEO_URL, body=io.BufferedReader(_DroppingBody()), auto_calculate_content_length=False)

    with pytest.raises(ResultFetchError, match="failed part way"):
        fetch(VIDEO_URL, replace(settings, max_result_bytes=100 * 1024 * 1024))
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_unresolvable_host_is_refused(s3, http, settings, monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    with pytest.raises(ResultFetchError, match="cannot be resolved"):
        fetch(VIDEO_URL, settings)


def test_loopback_http_is_allowed_only_with_the_local_switch(s3, http, dns, settings):
    url = "http://127.0.0.1:8765/results/v.mp4"
    http.get(url, body=mp4(25))

    with pytest.raises(ResultFetchError):
        fetch(url, settings)
    assert fetch(url, replace(settings, allow_loopback_http=True)).size == 25


def test_local_switch_does_not_open_plain_http_to_public_hosts(s3, http, dns, settings):
    with pytest.raises(ResultFetchError, match="https"):
        fetch("http://cdn.nanobananavideo.com/v.mp4", replace(settings, allow_loopback_http=True))


# ---------------------------------------------------------------- issue 8: B1, B2, B7, B8


def test_redirect_with_a_backslash_authority_is_refused(s3, http, dns, settings):
    location = "https://169.254.169.254\\@cdn.nanobananavideo.com/v.mp4"
    http.get(VIDEO_URL, status=302, headers={"Location": location})

    with pytest.raises(ResultFetchError, match="refused"):
        fetch(VIDEO_URL, settings)
    assert len(http.calls) == 1


def test_result_url_with_a_backslash_authority_is_refused(s3, http, dns, settings):
    with pytest.raises(ResultFetchError, match="refused"):
        fetch("https://169.254.169.254\\@cdn.nanobananavideo.com/v.mp4", settings)
    assert len(http.calls) == 0


def test_asks_for_the_bytes_as_stored(s3, http, dns, settings):
    http.get(VIDEO_URL, body=mp4(100))

    fetch(VIDEO_URL, settings)

    assert http.calls[0].request.headers["Accept-Encoding"] == "identity"


def test_a_body_that_is_not_an_mp4_is_refused(s3, http, dns, settings):
    http.get(VIDEO_URL, body=b"<html><body>Sign in to continue</body></html>", content_type="video/mp4")

    with pytest.raises(ResultFetchError, match="not an MP4"):
        fetch(VIDEO_URL, settings)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xd8\xff\xe0" + b"j" * 40, "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"p" * 40, "image/png"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"w" * 40, "image/webp"),
    ],
)
def test_a_thumbnail_must_be_an_image_and_keeps_its_type(s3, http, dns, settings, body, content_type):
    http.get(VIDEO_URL, body=body)

    fetched = fetch_to_s3(
        VIDEO_URL, bucket=BUCKET, key="t.jpg", content_type="image/jpeg", settings=settings, what="thumbnail"
    )

    assert fetched.content_type == content_type
    assert s3.head_object(Bucket=BUCKET, Key="t.jpg")["ContentType"] == content_type


def test_a_thumbnail_that_is_not_an_image_is_refused(s3, http, dns, settings):
    http.get(VIDEO_URL, body=b"<html>nope</html>")

    with pytest.raises(ResultFetchError, match="not a JPEG, PNG or WebP"):
        fetch_to_s3(
            VIDEO_URL, bucket=BUCKET, key="t.jpg", content_type="image/jpeg", settings=settings, what="thumbnail"
        )


def _trickle(size: int, step: int, pause: float):
    def handle(request):
        request.send_response(200)
        request.send_header("Content-Length", str(size))
        request.end_headers()
        body = mp4(size)
        try:
            for start in range(0, size, step):
                request.wfile.write(body[start : start + step])
                request.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass  # the client gave up, as it should

    return handle


def test_a_download_that_is_too_slow_overall_is_stopped(s3, settings, monkeypatch):
    from i2v import fetch as fetch_module

    monkeypatch.setattr(fetch_module, "MIN_BYTES_PER_SECOND", 1000)
    monkeypatch.setattr(fetch_module, "DOWNLOAD_GRACE_SECONDS", 0.5)
    # 1,000 bytes at 10 bytes per 0.1 s: every read is quick, the whole takes 10 s; allowed: 1.5 s.
    with LoopbackServer(_trickle(1000, 10, 0.1)) as server:
        started = time.monotonic()
        with pytest.raises(ResultFetchError, match="too slowly"):
            fetch(f"http://127.0.0.1:{server.port}/v.mp4", replace(settings, allow_loopback_http=True))
    assert time.monotonic() - started < 4
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_download_allowance_grows_with_size():
    from i2v.fetch import DOWNLOAD_GRACE_SECONDS, MIN_BYTES_PER_SECOND, download_allowance

    assert download_allowance(0) == DOWNLOAD_GRACE_SECONDS
    assert download_allowance(10 * MIN_BYTES_PER_SECOND) == DOWNLOAD_GRACE_SECONDS + 10


def test_the_download_goes_to_the_address_that_was_checked(s3, settings, monkeypatch):
    with LoopbackServer(answer(body=mp4(64))) as good:
        with second_loopback_server(answer(body=b"<html>metadata</html>"), good.port) as evil:
            monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver(["127.0.0.1", "127.0.0.2"]))

            fetched = fetch(f"http://localhost:{good.port}/v.mp4", replace(settings, allow_loopback_http=True))

            assert fetched.size == 64
            assert evil.requests == []
            assert good.requests[0]["headers"]["Host"] == f"localhost:{good.port}"


def _stall(first: bytes, pause: float):
    def handle(request):
        request.send_response(200)
        request.send_header("Content-Length", str(len(first) + 100))
        request.end_headers()
        try:
            request.wfile.write(first)
            request.wfile.flush()
            time.sleep(pause)
        except OSError:
            pass

    return handle


@pytest.mark.parametrize("protocol", ["HTTP/1.0", "HTTP/1.1"])  # the socket is found either way
def test_a_stalled_download_is_stopped_at_its_deadline_not_at_the_read_timeout(s3, settings, monkeypatch, protocol):
    from i2v import fetch as fetch_module

    monkeypatch.setattr(fetch_module, "MIN_BYTES_PER_SECOND", 1000)
    monkeypatch.setattr(fetch_module, "DOWNLOAD_GRACE_SECONDS", 0.5)
    # 20 bytes, then nothing for 8 s: well inside the 60 s read timeout, but past the ~0.6 s allowed.
    with LoopbackServer(_stall(mp4(20), 8), protocol=protocol) as server:
        started = time.monotonic()
        with pytest.raises(ResultFetchError, match="too slowly"):
            fetch(f"http://127.0.0.1:{server.port}/v.mp4", replace(settings, allow_loopback_http=True))
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------- transient failures are retried (issue 9)

from i2v.errors import ResultDownloadTransientError  # noqa: E402
from i2v.fetch import copy_results, with_retries  # noqa: E402

THUMB_URL = "https://cdn.nanobananavideo.com/videos/vid_1.jpg"
KEYS = {"video": "videos/v.mp4", "thumbnail": "videos/v.jpg"}
JPEG = b"\xff\xd8\xff\xe0" + b"j" * 100


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429},
        {"status": 408},
        {"body": ProtocolError("Connection aborted.", ConnectionResetError("reset"))},
        {"body": ReadTimeoutError(None, VIDEO_URL, "slow")},
    ],
)
def test_transient_download_failures_are_retried_then_succeed(s3, http, dns, settings, reply):
    http.get(VIDEO_URL, **reply)
    http.get(VIDEO_URL, **reply)
    http.get(VIDEO_URL, body=mp4(900))
    slept = []
    copied = copy_results({"video_url": VIDEO_URL}, KEYS, replace(settings, output_bucket=BUCKET), sleep=slept.append)
    assert copied.video.size == 900 and len(slept) == 2
    assert all(0 <= delay <= 4 for delay in slept)


def test_a_download_still_failing_raises_the_name_the_state_machine_retries(s3, http, dns, settings):
    http.get(VIDEO_URL, status=500)
    slept = []
    with pytest.raises(ResultDownloadTransientError) as caught:
        copy_results({"video_url": VIDEO_URL}, KEYS, replace(settings, output_bucket=BUCKET), sleep=slept.append)
    assert len(http.calls) == 3 and len(slept) == 2
    assert caught.value.code == "ResultFetchFailed"  # what the notification says if the retries run out


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_link_is_final_and_not_retried(s3, http, dns, settings, status):
    http.get(VIDEO_URL, status=status)
    with pytest.raises(ResultFetchError) as caught:
        copy_results({"video_url": VIDEO_URL}, KEYS, replace(settings, output_bucket=BUCKET), sleep=lambda s: None)
    assert not isinstance(caught.value, ResultDownloadTransientError) and len(http.calls) == 1


def test_a_refused_host_is_final_and_not_retried(s3, http, dns, settings):
    with pytest.raises(ResultFetchError) as caught:
        copy_results(
            {"video_url": "https://evil.example.com/v.mp4"},
            KEYS,
            replace(settings, output_bucket=BUCKET),
            sleep=lambda s: None,
        )
    assert not isinstance(caught.value, ResultDownloadTransientError) and len(http.calls) == 0


def test_a_thumbnail_is_retried_too_and_only_then_a_warning(s3, http, dns, settings):
    http.get(VIDEO_URL, body=mp4(900))
    http.get(THUMB_URL, status=502)
    http.get(THUMB_URL, body=JPEG)
    copied = copy_results(
        {"video_url": VIDEO_URL, "thumbnail_url": THUMB_URL},
        KEYS,
        replace(settings, output_bucket=BUCKET),
        sleep=lambda s: None,
    )
    assert copied.thumbnail is not None and copied.warnings == []


def test_with_retries_backs_off_with_full_jitter_within_its_budget():
    calls, slept = [], []

    def flaky():
        calls.append(1)
        raise ResultDownloadTransientError("503")

    with pytest.raises(ResultDownloadTransientError):
        with_retries(flaky, attempts=3, sleep=slept.append)
    assert len(calls) == 3 and len(slept) == 2 and slept[0] <= 1.0 and slept[1] <= 2.0
