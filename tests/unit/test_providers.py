import json
from datetime import UTC
from types import SimpleNamespace

import boto3
import pytest
import urllib3
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError

from i2v.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRejectedError,
    ProviderTransientError,
    SubmitOutcomeUnknownError,
)
from i2v.httpclient import Response
from i2v.providers import COMPLETED, FAILED, RUNNING, get_provider
from i2v.providers.http import ProviderHttp, error_message, retry_after_seconds
from i2v.providers.nanobanana import NanoBananaProvider
from i2v.providers.nohuman import NoHumanProvider
from i2v.settings import Env
from tests import http_mock
from tests.provider_samples import NB_SUCCESS

NH = "https://api.nohuman.studio"
NH_CREATE = NH + "/v1/videos/generate"
NB = "https://nanobananavideo.com"
NB_CREATE = NB + "/api/v1/image-to-video.php"
IMAGE_URL = "https://out.s3.amazonaws.com/work/k/input.jpg?X-Amz-Signature=secret"
NH_OPTIONS = {"prompt": "p", "mode": "fast", "aspect_ratio": "16:9", "duration": 5, "cfg_scale": 0.5, "sound": True}
NB_OPTIONS = {
    "prompt": "p",
    "video_model": "seedance2",
    "resolution": "720p",
    "duration": 6,
    "aspect_ratio": "1:1",
    "motion_intensity": "low",
}


def provider_settings() -> SimpleNamespace:
    """What get_provider reads (providers.ProviderAccess), from the environment as a handler reads it."""
    env = Env("tests")
    return SimpleNamespace(
        provider=env.provider(),
        api_key_secret=env.text("PROVIDER_API_KEY_SECRET"),
        provider_base_url=env.text("PROVIDER_BASE_URL"),
    )


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def http(base, sleeps, **kwargs):
    return ProviderHttp(base, lambda: "sk-test", sleep=sleeps, **kwargs)


@pytest.fixture
def nohuman(sleeps):
    return NoHumanProvider(http(NH, sleeps))


@pytest.fixture
def nanobanana(sleeps):
    return NanoBananaProvider(http(NB, sleeps, create_read_timeout=600))


# ---------------------------------------------------------------- NoHuman


@http_mock.activate
def test_nohuman_create_sends_options_and_bearer_key(nohuman):
    http_mock.post(
        NH_CREATE,
        json={
            "id": "gen_img2v_x7y8z9",
            "model": "nohuman-x33",
            "status": "created",
            "poll_url": "/v1/videos/generations/gen_img2v_x7y8z9",
        },
    )
    job = nohuman.create_job(IMAGE_URL, NH_OPTIONS)
    assert job.id == "gen_img2v_x7y8z9"
    assert job.status == RUNNING
    assert job.cost == {"amount": 0.47, "currency": "USD"}
    sent = http_mock.calls[0].request
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert json.loads(sent.body) == {"image_url": IMAGE_URL, **NH_OPTIONS}


@pytest.mark.parametrize(
    ("mode", "duration", "amount"),
    [("fast", 5, 0.47), ("fast", 10, 0.94), ("hq", 5, 0.94), ("hq", 10, 1.87)],
)
def test_nohuman_price_table(nohuman, mode, duration, amount):
    assert nohuman.cost({"mode": mode, "duration": duration}) == {"amount": amount, "currency": "USD"}


@http_mock.activate
def test_nohuman_create_without_an_id_is_an_unknown_outcome(nohuman):
    http_mock.post(NH_CREATE, json={"status": "created"})
    with pytest.raises(SubmitOutcomeUnknownError, match="nothing was resubmitted"):
        nohuman.create_job(IMAGE_URL, NH_OPTIONS)
    assert len(http_mock.calls) == 1


@pytest.mark.parametrize("status", ["created", "processing"])
@http_mock.activate
def test_nohuman_get_running(nohuman, status):
    http_mock.get(NH + "/v1/videos/generations/gen_1", json={"id": "gen_1", "status": status})
    job = nohuman.get_job("gen_1")
    assert (job.id, job.status, job.video_url, job.error) == ("gen_1", RUNNING, None, None)


@http_mock.activate
def test_nohuman_get_completed(nohuman):
    http_mock.get(
        NH + "/v1/videos/generations/gen_1",
        json={
            "id": "gen_1",
            "status": "completed",
            "result": {"url": "https://cdn.nohuman.studio/v.mp4", "thumbnail_url": "https://cdn.nohuman.studio/t.jpg"},
        },
    )
    job = nohuman.get_job("gen_1")
    assert job.status == COMPLETED
    assert job.video_url == "https://cdn.nohuman.studio/v.mp4"
    assert job.thumbnail_url == "https://cdn.nohuman.studio/t.jpg"


@http_mock.activate
def test_nohuman_completed_without_thumbnail(nohuman):
    http_mock.get(
        NH + "/v1/videos/generations/gen_1",
        json={"id": "gen_1", "status": "completed", "result": {"url": "https://cdn.nohuman.studio/v.mp4"}},
    )
    job = nohuman.get_job("gen_1")
    assert job.status == COMPLETED and job.thumbnail_url is None


@http_mock.activate
def test_nohuman_completed_without_url_is_a_failure(nohuman):
    http_mock.get(NH + "/v1/videos/generations/gen_1", json={"id": "gen_1", "status": "completed", "result": {}})
    job = nohuman.get_job("gen_1")
    assert job.status == FAILED
    assert "result.url" in job.error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("content policy violation", "content policy violation"),
        ({"code": "nsfw", "message": "image flagged by moderation"}, "image flagged by moderation"),
        (None, "the provider reported the job failed without a reason"),
    ],
)
@http_mock.activate
def test_nohuman_get_failed_carries_the_error_field(nohuman, error, expected):
    body = {"id": "gen_1", "status": "failed"}
    if error is not None:
        body["error"] = error
    http_mock.get(NH + "/v1/videos/generations/gen_1", json=body)
    job = nohuman.get_job("gen_1")
    assert job.status == FAILED
    assert job.error == expected


@http_mock.activate
def test_nohuman_unknown_status_is_an_error(nohuman):
    http_mock.get(NH + "/v1/videos/generations/gen_1", json={"id": "gen_1", "status": "exploded"})
    with pytest.raises(ProviderError, match="unknown job status 'exploded'"):
        nohuman.get_job("gen_1")


@http_mock.activate
def test_nohuman_job_id_is_escaped_in_the_path(nohuman):
    http_mock.get(NH + "/v1/videos/generations/..%2Fadmin", json={"id": "x", "status": "created"})
    nohuman.get_job("../admin")
    assert http_mock.calls[0].request.url.endswith("/v1/videos/generations/..%2Fadmin")


# ---------------------------------------------------------------- NanoBanana


@http_mock.activate
def test_nanobanana_create_is_complete_with_credits_and_rate_limit(nanobanana):
    http_mock.post(NB_CREATE, json=NB_SUCCESS)
    job = nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert job.status == COMPLETED
    assert job.id == "vid_f7g8h9i0j1k2"
    assert job.video_url == NB_SUCCESS["video_url"]
    assert job.thumbnail_url == NB_SUCCESS["thumbnail_url"]
    assert job.cost == {"credits": 6}
    assert job.rate_limit == {"count": 2, "limit": 30, "remaining": 28}
    assert json.loads(http_mock.calls[0].request.body) == {"image_url": IMAGE_URL, **NB_OPTIONS}


def test_nanobanana_uses_a_generous_read_timeout():
    assert NanoBananaProvider.create_read_timeout >= 600


@pytest.mark.parametrize(
    "body",
    [
        {"success": False, "error": "Invalid image URL"},
        {"success": False, "error": {"message": "Invalid image URL"}},
    ],
)
@http_mock.activate
def test_nanobanana_success_false_on_2xx_is_a_failed_job_not_retried(nanobanana, sleeps, body):
    http_mock.post(NB_CREATE, json=body)
    job = nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert job.status == FAILED and "Invalid image URL" in job.error
    assert len(http_mock.calls) == 1 and sleeps == []


@http_mock.activate
def test_nanobanana_without_video_url_is_a_failed_job(nanobanana):
    http_mock.post(NB_CREATE, json={"success": True, "video_id": "vid_1", "credits_used": 6})
    job = nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert job.status == FAILED and "video_url" in job.error
    assert job.cost == {"credits": 6}


def test_nanobanana_has_no_status_endpoint(nanobanana):
    with pytest.raises(ProviderError):
        nanobanana.get_job("vid_1")


def test_recommended_sizes_and_hosts():
    assert NanoBananaProvider.min_recommended_px == 512
    assert NoHumanProvider.min_recommended_px == 1024
    assert NanoBananaProvider.default_result_hosts == ("nanobananavideo.com",)
    assert NoHumanProvider.default_result_hosts == ("nohuman.studio",)


# ---------------------------------------------------------------- classification and retries


@pytest.mark.parametrize("status", [401, 403])
@http_mock.activate
def test_auth_failures_are_final(nanobanana, sleeps, status):
    http_mock.post(NB_CREATE, status=status, json={"error": "bad key"})
    with pytest.raises(ProviderAuthError, match="provider rejected the API key"):
        nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert len(http_mock.calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"success": False, "error": "duration out of range"}, "duration out of range"),
        ({"error": {"message": "prompt too long"}}, "prompt too long"),
        ("Bad Request: missing image_url", "Bad Request: missing image_url"),
    ],
)
@http_mock.activate
def test_validation_4xx_is_rejected_with_the_providers_message(nanobanana, sleeps, body, message):
    if isinstance(body, str):
        http_mock.post(NB_CREATE, status=400, body=body)
    else:
        http_mock.post(NB_CREATE, status=422, json=body)
    with pytest.raises(ProviderRejectedError) as caught:
        nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert message in caught.value.message
    assert len(http_mock.calls) == 1 and sleeps == []


@http_mock.activate
def test_429_is_retried_honouring_retry_after(nanobanana, sleeps):
    http_mock.post(NB_CREATE, status=429, headers={"Retry-After": "7"}, json={"error": "slow down"})
    http_mock.post(NB_CREATE, status=503, headers={"Retry-After": "2"})
    http_mock.post(NB_CREATE, json=NB_SUCCESS)
    job = nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert job.status == COMPLETED
    assert sleeps == [7.0, 2.0]
    assert len(http_mock.calls) == 3


@http_mock.activate
def test_5xx_without_retry_after_backs_off_exponentially_with_jitter(nohuman, sleeps):
    for _ in range(4):
        http_mock.post(NH_CREATE, status=502, body="bad gateway")
    with pytest.raises(ProviderTransientError, match="after 4 attempt"):
        nohuman.create_job(IMAGE_URL, NH_OPTIONS)
    assert len(http_mock.calls) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        ceiling = 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


@http_mock.activate
def test_retry_stops_when_the_wait_does_not_fit_the_remaining_time(sleeps):
    provider = NoHumanProvider(http(NH, sleeps, remaining_ms=lambda: 20_000))
    http_mock.post(NH_CREATE, status=429, headers={"Retry-After": "60"})
    with pytest.raises(ProviderTransientError, match="after 1 attempt"):
        provider.create_job(IMAGE_URL, NH_OPTIONS)
    assert sleeps == [] and len(http_mock.calls) == 1


@pytest.mark.parametrize("status", [504, 520, 522, 524, 527])
@pytest.mark.parametrize("name", ["nanobanana", "nohuman"])
@http_mock.activate
def test_gateway_timeout_on_create_is_an_unknown_outcome_never_resent(request, sleeps, name, status):
    # The gateway stopped waiting; the origin may still be rendering (and charging).
    provider = request.getfixturevalue(name)
    url = NB_CREATE if name == "nanobanana" else NH_CREATE
    http_mock.post(url, status=status, body="<html>gateway timeout</html>")
    http_mock.post(url, json=NB_SUCCESS if name == "nanobanana" else {"id": "gen_1", "status": "created"})
    with pytest.raises(SubmitOutcomeUnknownError) as caught:
        provider.create_job(IMAGE_URL, NB_OPTIONS if name == "nanobanana" else NH_OPTIONS)
    assert f"HTTP {status}" in caught.value.message and "nothing was resubmitted" in caught.value.message
    assert len(http_mock.calls) == 1 and sleeps == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 507])
@http_mock.activate
def test_statuses_that_started_no_work_are_retried(nanobanana, sleeps, status):
    http_mock.post(NB_CREATE, status=status, headers={"Retry-After": "1"})
    http_mock.post(NB_CREATE, json=NB_SUCCESS)
    assert nanobanana.create_job(IMAGE_URL, NB_OPTIONS).status == COMPLETED
    assert len(http_mock.calls) == 2 and sleeps == [1.0]


@pytest.mark.parametrize("status", [504, 522])
@http_mock.activate
def test_gateway_timeout_on_poll_is_transient(nohuman, status):
    http_mock.get(NH + "/v1/videos/generations/gen_1", status=status)
    with pytest.raises(ProviderTransientError):
        nohuman.get_job("gen_1")


@http_mock.activate
def test_read_timeout_after_send_is_never_resent(nanobanana, sleeps):
    http_mock.post(NB_CREATE, body=ReadTimeoutError(None, NB_CREATE, "read timed out"))
    with pytest.raises(SubmitOutcomeUnknownError) as caught:
        nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert "outcome is unknown" in caught.value.message
    assert "nothing was resubmitted" in caught.value.message
    assert len(http_mock.calls) == 1 and sleeps == []


@http_mock.activate
def test_connection_broken_after_send_is_never_resent(nanobanana, sleeps):
    http_mock.post(NB_CREATE, body=ProtocolError("Connection aborted.", ConnectionResetError("RemoteDisconnected")))
    with pytest.raises(SubmitOutcomeUnknownError):
        nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert len(http_mock.calls) == 1


@http_mock.activate
def test_2xx_that_is_not_json_is_an_unknown_outcome(nanobanana):
    http_mock.post(NB_CREATE, body="<html>ok</html>")
    with pytest.raises(SubmitOutcomeUnknownError):
        nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert len(http_mock.calls) == 1


def refused():
    return NewConnectionError(None, "Connection refused")


@http_mock.activate
def test_connection_refused_and_connect_timeout_are_retried(nohuman, sleeps):
    http_mock.post(NH_CREATE, body=refused())
    http_mock.post(NH_CREATE, body=ConnectTimeoutError("connect timed out"))
    http_mock.post(NH_CREATE, json={"id": "gen_1", "status": "created"})
    job = nohuman.create_job(IMAGE_URL, NH_OPTIONS)
    assert job.id == "gen_1"
    assert len(http_mock.calls) == 3 and len(sleeps) == 2


@http_mock.activate
def test_connection_refused_every_time_is_transient(nohuman):
    for _ in range(4):
        http_mock.post(NH_CREATE, body=refused())
    with pytest.raises(ProviderTransientError, match="could not connect"):
        nohuman.create_job(IMAGE_URL, NH_OPTIONS)


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500},
        {"status": 408},
        {"status": 429},
        {"status": 404, "json": {"error": "not found"}},
        {"body": ReadTimeoutError(None, NH, "slow")},
        {"body": ProtocolError("Connection aborted.", ConnectionResetError("reset"))},
        {"body": "not json"},
    ],
)
@http_mock.activate
def test_poll_errors_are_transient(nohuman, sleeps, reply):
    http_mock.get(NH + "/v1/videos/generations/gen_1", **reply)
    with pytest.raises(ProviderTransientError):
        nohuman.get_job("gen_1")
    assert len(http_mock.calls) == 1 and sleeps == []  # the state machine does the retrying


@http_mock.activate
def test_poll_auth_failure_is_final(nohuman):
    http_mock.get(NH + "/v1/videos/generations/gen_1", status=401)
    with pytest.raises(ProviderAuthError):
        nohuman.get_job("gen_1")


@http_mock.activate
def test_poll_validation_failure_is_final(nohuman):
    http_mock.get(NH + "/v1/videos/generations/gen_1", status=400, json={"error": "bad id"})
    with pytest.raises(ProviderRejectedError, match="bad id"):
        nohuman.get_job("gen_1")


def _response(body: bytes = b"", headers: dict | None = None, status: int = 400) -> Response:
    return Response(status, "", urllib3.HTTPHeaderDict(headers or {}), body)


def test_retry_after_as_http_date():
    from datetime import datetime

    response = _response(headers={"Retry-After": "Sun, 22 Nov 2026 10:00:30 GMT"})
    assert retry_after_seconds(response, now=datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)) == 30.0
    assert retry_after_seconds(_response(headers={"Retry-After": "soon"})) is None


def test_error_message_is_truncated():
    response = _response(b"x" * 5000)
    assert len(error_message(response)) == 300


def test_error_message_redacts_urls_before_truncating():
    response = _response(json.dumps({"error": {"message": "x" * 280 + " " + IMAGE_URL + " unreachable"}}).encode())
    message = error_message(response)
    assert "X-Amz" not in message and "https://" not in message
    assert message.endswith(" <url> unreachable")


@http_mock.activate
def test_rejection_that_echoes_the_presigned_url_does_not_carry_it(nohuman, sleeps):
    http_mock.post(NH_CREATE, status=400, json={"error": f"could not download image_url {IMAGE_URL}"})
    with pytest.raises(ProviderRejectedError) as caught:
        nohuman.create_job(IMAGE_URL, NH_OPTIONS)
    assert caught.value.message.endswith("could not download image_url <url>")
    assert "X-Amz-Signature" not in caught.value.message


@http_mock.activate
def test_failed_job_errors_do_not_carry_urls(nohuman, nanobanana):
    http_mock.get(
        NH + "/v1/videos/generations/gen_1",
        json={"id": "gen_1", "status": "failed", "error": {"message": f"cannot fetch {IMAGE_URL}"}},
    )
    assert nohuman.get_job("gen_1").error == "cannot fetch <url>"
    http_mock.post(NB_CREATE, json={"success": False, "error": "bad image at http://x.example/a?sig=1"})
    assert nanobanana.create_job(IMAGE_URL, NB_OPTIONS).error.endswith("bad image at <url>")


# ---------------------------------------------------------------- get_provider


@pytest.fixture
def fresh_secrets_cache():
    parameters.clear_caches()
    yield
    parameters.clear_caches()


@mock_aws
@http_mock.activate
def test_get_provider_reads_the_key_from_secrets_manager_once(monkeypatch, fresh_secrets_cache):
    boto3.client("secretsmanager").create_secret(Name="i2v/key", SecretString="sk-live-123\n")
    monkeypatch.setenv("PROVIDER", "nohuman")
    monkeypatch.setenv("PROVIDER_API_KEY_SECRET", "i2v/key")
    monkeypatch.delenv("PROVIDER_BASE_URL", raising=False)
    provider = get_provider(provider_settings())
    assert isinstance(provider, NoHumanProvider)
    assert provider.http.base_url == "https://api.nohuman.studio"
    http_mock.get(NH + "/v1/videos/generations/gen_1", json={"id": "gen_1", "status": "processing"})
    provider.get_job("gen_1")
    boto3.client("secretsmanager").update_secret(SecretId="i2v/key", SecretString="sk-rotated")
    provider.get_job("gen_1")
    # Cached by Powertools: the second request still carries the first value.
    assert [c.request.headers["Authorization"] for c in http_mock.calls] == ["Bearer sk-live-123"] * 2


def test_get_provider_honours_base_url_override(monkeypatch):
    monkeypatch.setenv("PROVIDER", "nanobanana")
    monkeypatch.setenv("PROVIDER_BASE_URL", "http://127.0.0.1:8099/")
    provider = get_provider(provider_settings())
    assert isinstance(provider, NanoBananaProvider)
    assert provider.http.base_url == "http://127.0.0.1:8099"
    assert provider.http.create_read_timeout == 600


def test_get_provider_reuses_one_pool_but_reads_settings_per_call(monkeypatch):
    # Polls reuse pooled connections; the base URL still follows the environment of each call.
    monkeypatch.setenv("PROVIDER", "nanobanana")
    monkeypatch.setenv("PROVIDER_BASE_URL", "http://127.0.0.1:8099")
    first = get_provider(provider_settings())
    monkeypatch.setenv("PROVIDER", "nohuman")
    monkeypatch.setenv("PROVIDER_BASE_URL", "http://127.0.0.1:8100")
    second = get_provider(provider_settings())
    assert first.http.pool is second.http.pool
    assert (first.http.base_url, second.http.base_url) == ("http://127.0.0.1:8099", "http://127.0.0.1:8100")


def test_get_provider_unknown(monkeypatch):
    from i2v.errors import InvalidOptionError

    monkeypatch.setenv("PROVIDER", "acme")
    with pytest.raises(InvalidOptionError, match="PROVIDER must be one of"):
        get_provider(provider_settings())


@mock_aws
@http_mock.activate
def test_a_new_client_does_not_serve_a_stale_cached_key(monkeypatch):
    # The local stack starts a fresh AWS endpoint (with a new key) and resets the shared clients.
    from i2v.aws import reset_clients

    monkeypatch.setenv("PROVIDER", "nohuman")
    monkeypatch.setenv("PROVIDER_API_KEY_SECRET", "i2v/key")
    http_mock.get(NH + "/v1/videos/generations/gen_1", json={"id": "gen_1", "status": "processing"})
    secretsmanager = boto3.client("secretsmanager")
    secretsmanager.create_secret(Name="i2v/key", SecretString="sk-first")
    get_provider(provider_settings()).get_job("gen_1")
    secretsmanager.update_secret(SecretId="i2v/key", SecretString="sk-second")
    reset_clients()
    get_provider(provider_settings()).get_job("gen_1")
    assert [c.request.headers["Authorization"] for c in http_mock.calls] == ["Bearer sk-first", "Bearer sk-second"]


# ---------------------------------------------------------------- issue 8: B4, B6


@pytest.mark.parametrize(
    "text",
    [
        "could not fetch HTTPS://out.s3.amazonaws.com/k.jpg?X-Amz-Signature=abc123",
        'upstream said {"url":"https:\\/\\/out.s3.amazonaws.com\\/k.jpg?X-Amz-Signature=abc123"}',
        "bad image_url=https%3A%2F%2Fout.s3.amazonaws.com%2Fk.jpg%3FX-Amz-Signature%3Dabc123",
        "bad image_url=https%3a%2f%2fout.s3.amazonaws.com%2fk.jpg",
        'raw body {"u":"https:\\u002F\\u002Fout.s3.amazonaws.com\\u002Fk.jpg"}',
        "signature mismatch: X-Amz-Signature=abc123&X-Amz-Credential=AKIA%2F20261201",
        "token expired: X-Amz-Security-Token=abc123",
    ],
)
def test_redaction_covers_every_spelling_of_a_signed_url(text):
    from i2v.providers.http import redact_urls

    redacted = redact_urls(text)
    assert "abc123" not in redacted
    assert "out.s3.amazonaws.com" not in redacted
    assert "AKIA" not in redacted


def test_redaction_leaves_ordinary_text_alone():
    from i2v.providers.http import redact_urls

    assert redact_urls("design = simple; signed up for 10 credits") == "design = simple; signed up for 10 credits"


@http_mock.activate
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_on_create_is_an_error_and_the_body_is_not_sent_elsewhere(nohuman, sleeps, status):
    http_mock.post(NH_CREATE, status=status, headers={"Location": "https://collector.example/steal?x=1"})
    http_mock.post("https://collector.example/steal", status=200, json={"id": "gen_1", "status": "created"})

    with pytest.raises(ProviderError, match=f"redirect \\(HTTP {status} to collector.example\\)") as caught:
        nohuman.create_job(IMAGE_URL, NH_OPTIONS)

    assert [call.request.url for call in http_mock.calls] == [NH_CREATE]
    assert "x=1" not in caught.value.message
    assert sleeps == []


@http_mock.activate
def test_a_redirect_on_a_status_check_is_not_followed(nohuman):
    http_mock.get(NH + "/v1/videos/generations/gen_1", status=302, headers={"Location": "https://elsewhere.example/"})
    http_mock.get("https://elsewhere.example/", json={"id": "gen_1", "status": "completed", "result": {"url": "x"}})

    with pytest.raises(ProviderError, match="redirect"):
        nohuman.get_job("gen_1")
    assert len(http_mock.calls) == 1


# ---------------------------------------------------------------- issue 8: B13


@http_mock.activate
@pytest.mark.parametrize("credits", ["abc", -3, float("nan"), True, {"n": 1}, [6]])
def test_an_unreadable_credits_used_becomes_an_unknown_cost(nanobanana, credits):
    http_mock.post(NB_CREATE, json={**NB_SUCCESS, "credits_used": credits})

    job = nanobanana.create_job(IMAGE_URL, NB_OPTIONS)

    assert job.status == COMPLETED
    assert job.cost is None


@http_mock.activate
def test_a_numeric_credits_string_is_read_as_a_number(nanobanana):
    http_mock.post(NB_CREATE, json={**NB_SUCCESS, "credits_used": "6"})
    assert nanobanana.create_job(IMAGE_URL, NB_OPTIONS).cost == {"credits": 6}


@http_mock.activate
def test_rate_limit_keeps_only_readable_counts(nanobanana):
    http_mock.post(
        NB_CREATE, json={**NB_SUCCESS, "rate_limit": {"count": 2, "limit": "x", "remaining": 28, "extra": "y"}}
    )
    assert nanobanana.create_job(IMAGE_URL, NB_OPTIONS).rate_limit == {"count": 2, "remaining": 28}


@http_mock.activate
def test_a_video_url_that_is_not_text_fails_the_job(nanobanana):
    http_mock.post(NB_CREATE, json={**NB_SUCCESS, "video_url": {"href": "https://cdn.nanobananavideo.com/v.mp4"}})
    job = nanobanana.create_job(IMAGE_URL, NB_OPTIONS)
    assert job.status == FAILED and "video_url" in job.error


@http_mock.activate
def test_nohuman_numeric_id_and_odd_result_fields(nohuman):
    http_mock.get(
        NH + "/v1/videos/generations/77",
        json={"id": 77, "status": "completed", "result": {"url": ["not", "a", "url"]}},
    )
    job = nohuman.get_job("77")
    assert job.id == "77"
    assert job.status == FAILED and "result.url" in job.error
