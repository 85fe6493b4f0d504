"""Provider HTTP over real sockets: a loopback server plays the provider, so urllib3's
connection handling, timeouts and the helper's reading of status, headers and body are the
ones that run on Lambda (test_providers.py covers the classification with canned answers)."""

import json
import math
import socket
import threading
import time

import pytest

from i2v.errors import (
    ProviderAuthError,
    ProviderRejectedError,
    ProviderTransientError,
    SubmitOutcomeUnknownError,
)
from i2v.httpclient import new_pool_manager
from i2v.providers.http import ProviderHttp
from i2v.providers.nohuman import NoHumanProvider
from tests.loopback import LoopbackServer, answer

IMAGE_URL = "https://out.s3.amazonaws.com/work/k/input.jpg?X-Amz-Signature=secret"
OPTIONS = {"prompt": "p", "mode": "fast", "aspect_ratio": "16:9", "duration": 5}
CREATED = json.dumps({"id": "gen_1", "status": "created"}).encode()


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def provider(port: int, sleeps=None, **kwargs) -> NoHumanProvider:
    http = ProviderHttp(
        f"http://127.0.0.1:{port}", lambda: "sk-wire", sleep=Sleeps() if sleeps is None else sleeps, **kwargs
    )
    return NoHumanProvider(http)


def in_turn(*handlers):
    """A handler that answers each request with the next handler (the last one repeats)."""
    count = iter(range(10**6))

    def handle(request):
        handlers[min(next(count), len(handlers) - 1)](request)

    return handle


def json_answer(body: bytes, status: int = 200, headers: dict | None = None):
    return answer(status, body, {"Content-Type": "application/json", **(headers or {})})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_create_sends_json_and_the_key_and_reads_the_answer():
    with LoopbackServer(json_answer(CREATED, status=201)) as server:
        job = provider(server.port).create_job(IMAGE_URL, OPTIONS)
    assert job.id == "gen_1" and job.status == "running"
    [sent] = server.requests
    assert sent["method"] == "POST" and sent["path"] == "/v1/videos/generate"
    assert sent["headers"]["Authorization"] == "Bearer sk-wire"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"image_url": IMAGE_URL, **OPTIONS}


def test_429_with_retry_after_is_retried_after_that_wait():
    slow_down = json_answer(b'{"error": "slow down"}', status=429, headers={"Retry-After": "7"})
    sleeps = Sleeps()
    with LoopbackServer(in_turn(slow_down, json_answer(CREATED))) as server:
        job = provider(server.port, sleeps).create_job(IMAGE_URL, OPTIONS)
    assert job.id == "gen_1" and sleeps == [7.0] and len(server.requests) == 2


def test_a_read_timeout_after_the_create_was_sent_is_never_resent():
    release = threading.Event()

    def rendering(request):
        release.wait(5)
        json_answer(CREATED)(request)

    sleeps = Sleeps()
    http = provider(0, sleeps).http
    with LoopbackServer(rendering) as server:
        http.base_url = f"http://127.0.0.1:{server.port}"
        http.create_read_timeout = 0.3
        http.remaining_ms = None
        started = time.monotonic()
        try:
            with pytest.raises(SubmitOutcomeUnknownError, match="no answer came back in time"):
                NoHumanProvider(http).create_job(IMAGE_URL, OPTIONS)
        finally:
            release.set()
    assert time.monotonic() - started < 3
    assert len(server.requests) == 1 and sleeps == []


def test_a_connection_closed_without_an_answer_is_an_unknown_outcome():
    def hang_up(request):
        request.close_connection = True
        request.wfile.flush()
        request.connection.shutdown(socket.SHUT_RDWR)

    sleeps = Sleeps()
    with LoopbackServer(hang_up) as server:
        with pytest.raises(SubmitOutcomeUnknownError, match="connection broke"):
            provider(server.port, sleeps).create_job(IMAGE_URL, OPTIONS)
    assert len(server.requests) == 1 and sleeps == []


def test_a_refused_connection_is_retried_then_transient():
    sleeps = Sleeps()
    with pytest.raises(ProviderTransientError, match=r"could not connect \(NewConnectionError\)"):
        provider(closed_port(), sleeps).create_job(IMAGE_URL, OPTIONS)
    assert len(sleeps) == 3  # four attempts, nothing ever reached a server


def test_auth_and_validation_answers_are_final():
    with LoopbackServer(json_answer(b'{"error": "bad key"}', status=401)) as server:
        with pytest.raises(ProviderAuthError):
            provider(server.port).create_job(IMAGE_URL, OPTIONS)
    message = json.dumps({"error": {"message": f"cannot fetch {IMAGE_URL}"}}).encode()
    with LoopbackServer(json_answer(message, status=422)) as server:
        with pytest.raises(ProviderRejectedError) as rejected:
            provider(server.port).create_job(IMAGE_URL, OPTIONS)
    assert "X-Amz-Signature" not in str(rejected.value) and "<url>" in str(rejected.value)


def test_status_checks_reuse_one_connection_and_read_nan_as_the_standard_library_does():
    body = b'{"id": "gen_1", "status": "processing", "progress": NaN}'
    connections = set()

    def handle(request):
        connections.add(request.client_address)
        json_answer(body)(request)

    with LoopbackServer(handle, protocol="HTTP/1.1") as server:
        client = provider(server.port)
        client.http.pool = new_pool_manager()
        jobs = [client.get_job("gen_1") for _ in range(3)]
        raw = client.http.get("/v1/videos/generations/gen_1")
    assert [job.status for job in jobs] == ["running"] * 3
    assert math.isnan(raw["progress"])
    assert len(server.requests) == 4 and len(connections) == 1


def test_a_status_check_that_times_out_is_transient():
    release = threading.Event()

    def stuck(request):
        release.wait(5)

    client = provider(0)
    with LoopbackServer(stuck) as server:
        client.http.base_url = f"http://127.0.0.1:{server.port}"
        client.http.remaining_ms = lambda: 11_000  # leaves a 1 s read timeout
        try:
            with pytest.raises(ProviderTransientError, match="ReadTimeoutError"):
                client.get_job("gen_1")
        finally:
            release.set()
