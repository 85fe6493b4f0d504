"""Standard Webhooks signing, and how one delivery attempt is classified."""

import base64
import hashlib
import hmac
import json
import random
import socket
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from i2v import webhooks
from tests import http_mock
from tests.loopback import LoopbackServer, answer

# The Standard Webhooks specification's published example.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

URL = "https://hooks.example.com/video-events"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OUTCOME = {"schema_version": "1", "status": "succeeded", "job_key": "ab" * 32, "error": None}


pytestmark = pytest.mark.usefixtures("public_dns")  # tests/conftest.py: no test reaches a real resolver


def test_signature_matches_the_specification_example():
    headers = webhooks.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
        "content-type": "application/json",
    }


def test_signature_is_hmac_sha256_of_id_timestamp_body():
    # Cross-check against the definition, independently of the standardwebhooks package.
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{SPEC_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_BODY, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == SPEC_SIGNATURE


def test_rotation_signs_with_every_secret_and_each_verifies():
    new_secret = "whsec_" + base64.b64encode(b"another secret of 32 bytes!!!!!!").decode()
    headers = webhooks.sign(f"{SPEC_SECRET} {new_secret}", SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    old_signature, new_signature = headers["webhook-signature"].split(" ")
    assert old_signature == SPEC_SIGNATURE
    assert new_signature == webhooks.sign(new_secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)["webhook-signature"]


def test_empty_secret_is_refused():
    with pytest.raises(ValueError):
        webhooks.sign("  ", SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)


def test_message_id_is_stable_per_job_and_status():
    job_key = "3f1c" + "0" * 60
    assert webhooks.message_id(job_key, "succeeded") == "msg_3f1c" + "0" * 28 + "_succeeded"
    assert webhooks.message_id(job_key, "succeeded") == webhooks.message_id(job_key, "succeeded")
    assert webhooks.message_id(job_key, "failed") != webhooks.message_id(job_key, "succeeded")


def test_backoff_is_full_jitter_under_an_exponential_ceiling_with_a_cap():
    class Highest(random.Random):
        def uniform(self, a, b):
            return b

    assert [webhooks.backoff_delay(n, rng=Highest()) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert webhooks.backoff_delay(30, rng=Highest()) == 900
    rng = random.Random(7)
    delays = [webhooks.backoff_delay(6, rng=rng) for _ in range(200)]
    assert min(delays) >= 0 and max(delays) <= 160
    assert len(set(delays)) > 20  # jittered, not a fixed step


@pytest.mark.parametrize(
    "value, expected",
    [("120", 120), (" 7 ", 7), ("0", 0), (None, None), ("", None), ("soon", None), ("999999", 43200)],
)
def test_retry_after_seconds(value, expected):
    assert webhooks.parse_retry_after(value) == expected


def test_retry_after_http_date():
    now = 1_700_000_000
    assert webhooks.parse_retry_after("Tue, 14 Nov 2023 22:14:20 GMT", now=now) == 1 * 60
    assert webhooks.parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0


def _verified_request(call):
    """The delivered request verifies with the receiver-side library."""
    headers = dict(call.request.headers)
    assert Webhook(SECRET).verify(call.request.body, headers) == OUTCOME
    return headers


@http_mock.activate
def test_2xx_is_delivered_with_a_signed_json_body():
    http_mock.post(URL, status=204)
    msg_id = webhooks.message_id(OUTCOME["job_key"], "succeeded")

    result = webhooks.deliver(URL, OUTCOME, SECRET, msg_id, attempt=1)

    assert result.outcome == webhooks.DELIVERED and result.delivered and result.status_code == 204
    headers = _verified_request(http_mock.calls[0])
    assert headers["webhook-id"] == msg_id
    assert headers["content-type"] == "application/json"
    assert json.loads(http_mock.calls[0].request.body) == OUTCOME


@http_mock.activate
def test_tampered_body_does_not_verify():
    http_mock.post(URL, status=200)
    webhooks.deliver(URL, OUTCOME, SECRET, "msg_1", attempt=1)
    call = http_mock.calls[0]
    tampered = call.request.body.replace(b"succeeded", b"failed")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, dict(call.request.headers))


@http_mock.activate
def test_same_id_on_every_attempt():
    http_mock.post(URL, status=500)
    http_mock.post(URL, status=200)
    webhooks.deliver(URL, OUTCOME, SECRET, "msg_fixed", attempt=1)
    webhooks.deliver(URL, OUTCOME, SECRET, "msg_fixed", attempt=2)
    assert [call.request.headers["webhook-id"] for call in http_mock.calls] == ["msg_fixed", "msg_fixed"]


@http_mock.activate
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_3xx_is_a_failure_and_is_not_followed(status):
    http_mock.post(URL, status=status, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    result = webhooks.deliver(URL, OUTCOME, SECRET, "msg_1", attempt=1, rng=random.Random(1))
    assert result.outcome == webhooks.RETRY and result.status_code == status
    assert "redirect" in result.reason
    assert len(http_mock.calls) == 1


@http_mock.activate
def test_410_stops():
    http_mock.post(URL, status=410)
    result = webhooks.deliver(URL, OUTCOME, SECRET, "msg_1", attempt=3)
    assert result.outcome == webhooks.GONE and result.status_code == 410 and not result.delivered


@http_mock.activate
def test_429_honours_retry_after():
    http_mock.post(URL, status=429, headers={"Retry-After": "120"})
    result = webhooks.deliver(URL, OUTCOME, SECRET, "msg_1", attempt=1)
    assert result.outcome == webhooks.RETRY and result.status_code == 429 and result.delay_seconds == 120


@http_mock.activate
@pytest.mark.parametrize("status", [500, 502, 503, 429, 400, 401, 404, 409])
def test_other_failures_retry_with_backoff(status):
    class Highest(random.Random):
        def uniform(self, a, b):
            return b

    http_mock.post(URL, status=status)
    result = webhooks.deliver(URL, OUTCOME, SECRET, "msg_1", attempt=3, rng=Highest())
    assert result.outcome == webhooks.RETRY and result.status_code == status and result.delay_seconds == 20


def test_timeout_retries():
    # A real receiver on loopback that takes longer to answer than the read timeout allows.
    def slow(request):
        time.sleep(2)
        answer(status=204, body=b"")(request)

    with LoopbackServer(slow) as server:
        started = time.monotonic()
        result = webhooks.deliver(
            f"http://127.0.0.1:{server.port}/x", OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=True, timeout=0.3
        )
    assert result.outcome == webhooks.RETRY and result.status_code is None and "no answer" in result.reason
    assert time.monotonic() - started < 1.5


def test_connection_error_retries():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = webhooks.deliver(f"http://127.0.0.1:{port}/x", OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=True)
    assert result.outcome == webhooks.RETRY and result.reason == "request failed: NewConnectionError"


@http_mock.activate
def test_post_is_sent_with_connect_and_read_timeouts_and_without_redirects():
    http_mock.post(URL, status=200)
    webhooks.deliver(URL, OUTCOME, SECRET, "msg_1", attempt=1)
    options = http_mock.calls[0].request.options
    # Connect and read are bounded separately; nothing is retried or followed below us.
    assert (options["timeout"].connect_timeout, options["timeout"].read_timeout) == (5, 15)
    assert options["redirect"] is False and options["retries"] is False


def test_a_real_delivery_verifies_at_the_receiver():
    with LoopbackServer(answer(status=204, body=b"")) as server:
        url = f"http://user:p%40ss@127.0.0.1:{server.port}/events?source=i2v"
        result = webhooks.deliver(url, OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=True)
    assert result.delivered and result.status_code == 204
    [received] = server.requests
    assert received["method"] == "POST" and received["path"] == "/events?source=i2v"
    assert Webhook(SECRET).verify(received["body"], received["headers"]) == OUTCOME
    assert received["headers"]["Authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert received["headers"]["Host"] == f"127.0.0.1:{server.port}"


def test_a_receiver_that_answers_429_with_retry_after_over_the_wire():
    with LoopbackServer(answer(status=429, body=b"slow down", headers={"Retry-After": "90"})) as server:
        result = webhooks.deliver(
            f"http://127.0.0.1:{server.port}/x", OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=True
        )
    assert result.outcome == webhooks.RETRY and result.status_code == 429 and result.delay_seconds == 90


@http_mock.activate
@pytest.mark.parametrize(
    "url, allow_insecure",
    [
        ("http://hooks.example.com/x", False),
        ("http://127.0.0.1:9000/x", False),
        ("https://10.0.0.5/x", False),
        ("http://10.0.0.5/x", True),
    ],
)
def test_unsafe_url_is_never_called(url, allow_insecure):
    result = webhooks.deliver(url, OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=allow_insecure)
    assert result.outcome == webhooks.RETRY and "refused" in result.reason
    assert len(http_mock.calls) == 0


@http_mock.activate
def test_loopback_http_allowed_in_the_local_stack():
    http_mock.post("http://127.0.0.1:9000/hook", status=200)
    result = webhooks.deliver("http://127.0.0.1:9000/hook", OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=True)
    assert result.delivered


# ---------------------------------------------------------------- issue 8: B1, B2, B9, A14


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no whsec_ prefix
        "whsec_hi",  # decodes (leniently) to 1 byte
        "whsec_not base64 at all!!",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  # bad padding
        "whsec_" + base64.b64encode(b"x" * 16).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
        f"{SPEC_SECRET} whsec_oops",  # one bad secret during a rotation
    ],
)
def test_malformed_secrets_are_refused_and_nothing_is_signed(secret):
    with pytest.raises(webhooks.InvalidWebhookSecretError):
        webhooks.validate_secret(secret)
    with pytest.raises(webhooks.InvalidWebhookSecretError):
        webhooks.sign(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)


def test_secrets_of_24_to_64_bytes_are_accepted():
    for size in (24, 32, 64):
        webhooks.validate_secret("whsec_" + base64.b64encode(b"k" * size).decode())


def test_visibility_is_capped_at_12_hours_from_receipt():
    twelve_hours = 12 * 3600
    assert webhooks.visibility_timeout(120, 5) == 120
    assert webhooks.visibility_timeout(10**6, 0) == twelve_hours - webhooks.RECEIPT_MARGIN_SECONDS
    # Time already spent since receipt counts against the 12 hours.
    assert webhooks.visibility_timeout(twelve_hours, 600.2) == twelve_hours - webhooks.RECEIPT_MARGIN_SECONDS - 601
    assert webhooks.visibility_timeout(twelve_hours, twelve_hours + 5) == 0


@http_mock.activate
def test_backslash_webhook_url_is_never_called():
    http_mock.post("https://169.254.169.254/", status=200)
    result = webhooks.deliver("https://169.254.169.254\\@hooks.example.com/x", OUTCOME, SECRET, "msg_1", attempt=1)
    assert result.outcome == webhooks.RETRY and "refused" in result.reason
    assert len(http_mock.calls) == 0


def test_delivery_goes_to_the_address_that_was_checked(monkeypatch):
    from tests.loopback import LoopbackServer, answer, rebinding_resolver, second_loopback_server

    with LoopbackServer(answer(status=204, body=b"")) as good:
        with second_loopback_server(answer(status=204, body=b""), good.port) as evil:
            monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver(["127.0.0.1", "127.0.0.2"]))
            url = f"http://hooks.internal.test:{good.port}/events"

            result = webhooks.deliver(url, OUTCOME, SECRET, "msg_1", attempt=1, allow_insecure=True)

            assert result.delivered
            assert evil.requests == []
            assert good.requests[0]["headers"]["Host"] == f"hooks.internal.test:{good.port}"
            assert "webhook-signature" in good.requests[0]["headers"]


@http_mock.activate
def test_a_receiver_behind_basic_auth_gets_its_credentials():
    http_mock.post("https://user:pw@hooks.example.com/x", status=204)
    result = webhooks.deliver("https://user:pw@hooks.example.com/x", OUTCOME, SECRET, "msg_1", attempt=1)
    assert result.delivered
    assert http_mock.calls[0].request.headers["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
