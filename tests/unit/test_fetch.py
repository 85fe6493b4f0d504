"""Fetching provider results: every refusal, and the streamed copy into S3."""

import io
import socket
from dataclasses import replace

import boto3
import pytest
import requests
import responses
import urllib3
from moto import mock_aws

from i2v.config import Settings
from i2v.errors import ResultFetchError
from i2v.fetch import allowed_result_hosts, fetch_to_s3

BUCKET = "out-bucket"
VIDEO_URL = "https://cdn.nanobananavideo.com/videos/vid_1.mp4"
PUBLIC_IP = "93.184.216.34"


def resolver(table: dict):
    """A getaddrinfo answering from ``table`` (host -> address), so no test touches DNS."""

    def getaddrinfo(host, port, *args, **kwargs):
        address = table.get(host, PUBLIC_IP)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    return getaddrinfo


@pytest.fixture
def dns(monkeypatch):
    table: dict = {}
    monkeypatch.setattr(socket, "getaddrinfo", resolver(table))
    return table


@pytest.fixture
def s3():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.fixture
def http():
    # Passthrough for the moto S3 endpoint is not needed: moto patches botocore, not requests.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def settings():
    return replace(Settings.from_env(), provider="nanobanana", result_allowed_hosts=(), max_result_bytes=1000)


def fetch(url, settings, key="videos/v.mp4"):
    return fetch_to_s3(url, bucket=BUCKET, key=key, content_type="video/mp4", settings=settings)


def test_streams_the_result_into_s3(s3, http, dns, settings):
    http.get(VIDEO_URL, body=b"v" * 900, content_type="video/mp4")

    fetched = fetch(VIDEO_URL, settings)

    assert fetched.size == 900
    assert fetched.uri == f"s3://{BUCKET}/videos/v.mp4"
    stored = s3.get_object(Bucket=BUCKET, Key="videos/v.mp4")
    assert stored["Body"].read() == b"v" * 900
    assert stored["ContentType"] == "video/mp4"
    assert http.calls[0].request.req_kwargs["stream"] is True
    assert http.calls[0].request.req_kwargs["timeout"] == (10, 60)


def test_follows_a_redirect_within_the_provider(s3, http, dns, settings):
    http.get(VIDEO_URL, status=302, headers={"Location": "https://media.nanobananavideo.com/v.mp4?sig=abc"})
    http.get("https://media.nanobananavideo.com/v.mp4", body=b"ok")

    assert fetch(VIDEO_URL, settings).size == 2


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
    http.get("https://a.results.example.net/v.mp4", body=b"x")

    assert fetch("https://a.results.example.net/v.mp4", configured).size == 1
    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        fetch(VIDEO_URL, configured)


def test_each_provider_has_default_hosts(settings):
    assert allowed_result_hosts(replace(settings, provider="nanobanana")) == ("nanobananavideo.com",)
    assert allowed_result_hosts(replace(settings, provider="nohuman")) == ("nohuman.studio",)
    with pytest.raises(ResultFetchError, match="RESULT_ALLOWED_HOSTS"):
        allowed_result_hosts(replace(settings, provider="other"))


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.8", "127.0.0.1", "192.168.1.1", "::1", "fd00::1", "224.0.0.1"])
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
    http.get(VIDEO_URL, body=b"v" * (12 * 1024 * 1024), auto_calculate_content_length=False)

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
    http.get(VIDEO_URL, body=requests.ConnectTimeout("connect timed out " + signed))

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
        buffer[:size] = b"v" * size
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
    http.get(url, body=b"local")

    with pytest.raises(ResultFetchError):
        fetch(url, settings)
    assert fetch(url, replace(settings, allow_loopback_http=True)).size == 5


def test_local_switch_does_not_open_plain_http_to_public_hosts(s3, http, dns, settings):
    with pytest.raises(ResultFetchError, match="https"):
        fetch("http://cdn.nanobananavideo.com/v.mp4", replace(settings, allow_loopback_http=True))
