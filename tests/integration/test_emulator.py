"""The provider emulator over real loopback HTTP: both providers' APIs, rendering, admin, faults.

Source images come from a tiny local http.server, so no AWS (and no network) is involved.
"""

import functools
import os
import re
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from i2v_local.emulator import ProviderEmulator
from i2v_local.media import probe

KEY = "test-key"
NB_PATH = "/api/v1/image-to-video.php"
NH_PATH = "/v1/videos/generate"


class _ImageHandler(SimpleHTTPRequestHandler):
    """Serves the folder; /expired/* answers 403 like a presigned URL whose signature has lapsed."""

    def do_GET(self):
        if self.path.startswith("/expired/"):
            self.send_error(403, "Request has expired")
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    photo = Image.new("RGB", (640, 480), (20, 60, 120))
    photo.paste((230, 180, 30), (100, 100, 300, 260))
    photo.save(folder / "photo.jpg", "JPEG")
    photo.save(folder / "photo.png", "PNG")
    photo.save(folder / "photo.gif", "GIF")
    (folder / "notes.txt").write_text("not an image")
    handler = functools.partial(_ImageHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def emulator():
    with ProviderEmulator(api_key=KEY, render_seconds=0) as running:
        yield running


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def nb_post(emulator, body, key=KEY, **kwargs):
    return requests.post(emulator.url + NB_PATH, json=body, headers=auth(key), timeout=60, **kwargs)


def nh_post(emulator, body, key=KEY, **kwargs):
    return requests.post(emulator.url + NH_PATH, json=body, headers=auth(key), timeout=60, **kwargs)


def nh_get(emulator, job_id, key=KEY):
    return requests.get(f"{emulator.url}/v1/videos/generations/{job_id}", headers=auth(key), timeout=30)


def faults(emulator, patch):
    response = requests.post(emulator.url + "/_emulator/faults", json=patch, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_terminal(emulator, job_id, seen=None):
    for _ in range(600):
        body = nh_get(emulator, job_id).json()
        if seen is not None and (not seen or seen[-1] != body["status"]):
            seen.append(body["status"])
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never finished")


def download(url, tmp_path, name):
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    path = tmp_path / name
    path.write_bytes(response.content)
    return response, path


def assert_nanobanana_error(response, status, message_pattern):
    assert response.status_code == status
    assert response.headers["X-Emulator"] == "i2v-local"
    body = response.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    assert re.search(message_pattern, body["error"]), body["error"]


def assert_nohuman_error(response, status, error_type, message_pattern):
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert re.search(message_pattern, body["error"]["message"]), body["error"]["message"]


# --- NanoBanana Video --------------------------------------------------------------------


def test_nanobanana_renders_the_requested_video(emulator, image_server, tmp_path):
    response = nb_post(
        emulator,
        {"image_url": f"{image_server}/photo.jpg", "prompt": "slow pan", "resolution": "480p", "duration": 4},
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Emulator"] == "i2v-local"
    body = response.json()
    assert set(body) == {"success", "video_id", "video_url", "thumbnail_url", "credits_used", "rate_limit"}
    assert body["success"] is True
    assert re.fullmatch(r"vid_[0-9a-f]{12}", body["video_id"])
    assert body["credits_used"] == 4  # 4 s x seedance2 (1) x 480p (1)
    assert body["rate_limit"] == {"count": 1, "limit": 30, "remaining": 29}

    video, path = download(body["video_url"], tmp_path, "video.mp4")
    assert video.headers["Content-Type"] == "video/mp4"
    info = probe(path)
    assert (info["codec"], info["width"], info["height"], info["has_audio"]) == ("h264", 854, 480, False)
    assert info["duration_seconds"] == pytest.approx(4, abs=0.5)

    thumb, thumb_path = download(body["thumbnail_url"], tmp_path, "thumb.jpg")
    assert thumb.headers["Content-Type"] == "image/jpeg"
    with Image.open(thumb_path) as image:
        assert (image.format, image.size) == ("JPEG", (854, 480))


def test_nanobanana_png_square(emulator, image_server, tmp_path):
    body = nb_post(
        emulator,
        {"image_url": f"{image_server}/photo.png", "aspect_ratio": "1:1", "resolution": "720p", "duration": 3},
    ).json()
    assert body["credits_used"] == 3
    info = probe(download(body["video_url"], tmp_path, "v.mp4")[1])
    assert (info["width"], info["height"]) == (720, 720)
    assert info["duration_seconds"] == pytest.approx(3, abs=0.5)


@pytest.mark.parametrize(
    ("model", "resolution", "duration", "credits"),
    [("seedance2", "720p", 6, 6), ("seedance2", "1080p", 5, 10), ("veo3", "480p", 8, 16), ("sora2", "1080p", 15, 90)],
)
def test_nanobanana_credits_rule(model, resolution, duration, credits):
    from i2v_local.emulator.server import nanobanana_credits

    options = {"video_model": model, "resolution": resolution, "duration": duration}
    assert nanobanana_credits(options) == credits


def test_nanobanana_defaults_are_recorded_per_model():
    from i2v_local.emulator.server import validate_nanobanana

    url = "http://127.0.0.1/x.jpg"
    assert validate_nanobanana({"image_url": url}) == {
        "image_url": url,
        "prompt": "Generate a video from this image",
        "video_model": "seedance2",
        "resolution": "480p",
        "duration": 5,
        "aspect_ratio": "16:9",
        "motion_intensity": "medium",
    }
    assert validate_nanobanana({"image_url": url, "video_model": "veo3"})["duration"] == 8
    assert validate_nanobanana({"image_url": url, "video_model": "sora2"})["duration"] == 10
    assert validate_nanobanana({"image_url": url, "video_model": "sora2", "duration": 15})["duration"] == 15


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"image_url": None}, r"image_url is required"),
        ({"image_url": "ftp://host/x.jpg"}, r"image_url must be an http\(s\) URL"),
        ({"prompt": 5}, r"prompt must be a string"),
        ({"video_model": "kling"}, r"video_model must be one of seedance2, veo3, sora2"),
        ({"resolution": "4k"}, r"resolution must be one of 480p, 720p, 1080p"),
        ({"duration": 2}, r"between 3 and 12"),
        ({"duration": 13}, r"between 3 and 12"),
        ({"duration": 5.5}, r"duration must be an integer"),
        ({"duration": "5"}, r"duration must be an integer"),
        ({"duration": True}, r"duration must be an integer"),
        ({"video_model": "veo3", "duration": 5}, r"duration must be 8 for veo3"),
        ({"video_model": "sora2", "duration": 12}, r"duration must be 10 or 15 for sora2"),
        ({"video_model": "sora2", "duration": 5}, r"duration must be 10 or 15 for sora2"),
        ({"video_model": "veo3", "aspect_ratio": "9:16"}, r"aspect_ratio must be one of 16:9 "),
        ({"aspect_ratio": "2:1"}, r"aspect_ratio must be one of 16:9, 9:16, 1:1, 4:3, 3:4, 21:9"),
        ({"motion_intensity": "extreme"}, r"motion_intensity must be one of low, medium, high"),
    ],
)
def test_nanobanana_validation_errors(emulator, patch, message):
    body = {"image_url": "http://127.0.0.1:9/never-fetched.jpg", **patch}
    body = {key: value for key, value in body.items() if value is not None}
    assert_nanobanana_error(nb_post(emulator, body), 400, message)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", ""])
def test_nanobanana_body_must_be_a_json_object(emulator, raw):
    response = requests.post(emulator.url + NB_PATH, data=raw, headers=auth(), timeout=10)
    assert_nanobanana_error(response, 400, r"request body must be")


@pytest.mark.parametrize(("headers", "message"), [({}, "missing bearer token"), (auth("wrong"), "invalid API key")])
def test_nanobanana_auth_failures(emulator, headers, message):
    response = requests.post(emulator.url + NB_PATH, json={"image_url": "http://x/y.jpg"}, headers=headers, timeout=10)
    assert_nanobanana_error(response, 401, message)


def test_nanobanana_rate_limit_returns_429_with_retry_after(emulator):
    faults(emulator, {"nanobanana_rate_limit": 2})
    for _ in range(2):  # every authenticated request counts, accepted or not
        assert nb_post(emulator, {"video_model": "nope", "image_url": "http://x/y.jpg"}).status_code == 400
    response = nb_post(emulator, {"image_url": "http://x/y.jpg"})
    assert_nanobanana_error(response, 429, r"rate limit exceeded")
    assert 1 <= int(response.headers["Retry-After"]) <= 60

    # Clearing the request log also empties the rolling window.
    requests.delete(emulator.url + "/_emulator/jobs", timeout=5)
    assert nb_post(emulator, {"video_model": "nope", "image_url": "http://x/y.jpg"}).status_code == 400


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/expired/photo.jpg", r"^could not fetch image_url: 403$"),
        ("/missing.jpg", r"^could not fetch image_url: 404$"),
        ("/notes.txt", r"not a valid JPEG, PNG or WebP image"),
        ("/photo.gif", r"unsupported image format GIF"),
    ],
)
def test_nanobanana_unusable_image_url(emulator, image_server, path, message):
    assert_nanobanana_error(nb_post(emulator, {"image_url": image_server + path}), 400, message)


def test_nanobanana_unreachable_image_host(emulator):
    # Port 9 (discard) is closed on loopback: the connection is refused.
    response = nb_post(emulator, {"image_url": "http://127.0.0.1:9/photo.jpg?X-Amz-Signature=secret"})
    assert_nanobanana_error(response, 400, r"^could not fetch image_url: ConnectionError$")


def test_nanobanana_injected_error_then_normal_service(emulator):
    faults(emulator, {"errors": {"nanobanana.create": {"status": 503, "count": 1, "message": "maintenance"}}})
    assert_nanobanana_error(nb_post(emulator, {"image_url": "http://x/y.jpg"}), 503, r"^maintenance$")
    # The next request reaches validation again.
    assert_nanobanana_error(nb_post(emulator, {"image_url": "http://x/y.jpg", "duration": 1}), 400, "duration")


def test_nanobanana_injected_429_has_retry_after(emulator):
    faults(emulator, {"nanobanana.create": {"status": 429, "count": 1, "retry_after": 9}})
    response = nb_post(emulator, {"image_url": "http://x/y.jpg"})
    assert_nanobanana_error(response, 429, "injected HTTP 429")
    assert response.headers["Retry-After"] == "9"


def test_nanobanana_generation_failure(emulator, image_server):
    faults(emulator, {"fail_next": 1, "failure_message": "content policy"})
    response = nb_post(emulator, {"image_url": f"{image_server}/photo.jpg", "duration": 3})
    assert_nanobanana_error(response, 200, r"^content policy$")
    jobs = requests.get(emulator.url + "/_emulator/jobs", timeout=5).json()["jobs"]
    assert (jobs[-1]["status"], jobs[-1]["http_status"], jobs[-1]["error"]) == ("failed", 200, "content policy")
    assert jobs[-1]["finished_at"] >= jobs[-1]["created_at"]  # the provider was done then


# --- NoHuman Studio ----------------------------------------------------------------------


def test_nohuman_status_progression_and_result(image_server, tmp_path):
    with ProviderEmulator(api_key=KEY, render_seconds=3) as emulator:
        response = nh_post(
            emulator, {"prompt": "camera zooms in", "image_url": f"{image_server}/photo.jpg", "aspect_ratio": "9:16"}
        )
        assert response.status_code == 200, response.text
        created = response.json()
        assert set(created) == {"id", "model", "status", "poll_url"}
        assert re.fullmatch(r"gen_img2v_[0-9a-f]{12}", created["id"])
        assert created["model"] == "nohuman-x33"
        assert created["status"] == "created"
        assert created["poll_url"] == f"/v1/videos/generations/{created['id']}"

        seen = []
        done = wait_for_terminal(emulator, created["id"], seen)
        # Polling may miss the short "created" phase on a busy machine, never the order.
        order = ["created", "processing", "completed"]
        assert seen == sorted(seen, key=order.index) and seen[-2:] == ["processing", "completed"]
        assert set(done) == {"id", "model", "status", "result"}
        # The document defines result.url only: no thumbnail is offered or served.
        assert done["result"] == {"url": f"{emulator.url}/files/{created['id']}.mp4"}
        assert requests.get(f"{emulator.url}/files/{created['id']}.jpg", timeout=10).status_code == 404

        info = probe(download(done["result"]["url"], tmp_path, "v.mp4")[1])
        # fast mode renders 720p; sound defaults to true.
        assert (info["codec"], info["width"], info["height"], info["has_audio"]) == ("h264", 720, 1280, True)
        assert info["duration_seconds"] == pytest.approx(5, abs=0.5)


def test_nohuman_without_sound_has_no_audio_track(emulator, image_server, tmp_path):
    job = nh_post(
        emulator,
        {"prompt": "p", "image_url": f"{image_server}/photo.png", "aspect_ratio": "1:1", "sound": False},
    ).json()
    done = wait_for_terminal(emulator, job["id"])
    assert done["status"] == "completed"
    info = probe(download(done["result"]["url"], tmp_path, "v.mp4")[1])
    assert (info["width"], info["height"], info["has_audio"]) == (720, 720, False)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"prompt": None}, r"prompt is required"),
        ({"prompt": "  "}, r"prompt is required"),
        ({"image_url": None}, r"image_url is required"),
        ({"image_url": "file:///etc/passwd"}, r"image_url must be an http\(s\) URL"),
        ({"mode": "ultra"}, r"mode must be one of fast, hq"),
        ({"aspect_ratio": "4:3"}, r"aspect_ratio must be one of 16:9, 9:16, 1:1"),
        ({"duration": 7}, r"duration must be one of 5, 10"),
        ({"duration": "5"}, r"duration must be one of 5, 10"),
        ({"cfg_scale": 1.5}, r"cfg_scale must be a number between 0 and 1"),
        ({"cfg_scale": -0.1}, r"cfg_scale must be a number between 0 and 1"),
        ({"cfg_scale": "0.5"}, r"cfg_scale must be a number between 0 and 1"),
        ({"sound": "yes"}, r"sound must be a boolean"),
        ({"negative_prompt": 3}, r"negative_prompt must be a string"),
    ],
)
def test_nohuman_validation_errors(emulator, patch, message):
    body = {"prompt": "p", "image_url": "http://127.0.0.1:9/never-fetched.jpg", **patch}
    body = {key: value for key, value in body.items() if value is not None}
    assert_nohuman_error(nh_post(emulator, body), 400, "invalid_request_error", message)


def test_nohuman_body_must_be_a_json_object(emulator):
    response = requests.post(emulator.url + NH_PATH, data="nope", headers=auth(), timeout=10)
    assert_nohuman_error(response, 400, "invalid_request_error", "request body must be")


def test_nohuman_auth_failures(emulator):
    response = nh_post(emulator, {"prompt": "p"}, key="wrong")
    assert_nohuman_error(response, 401, "authentication_error", "invalid API key")
    response = requests.get(emulator.url + "/v1/videos/generations/gen_img2v_000000000000", timeout=10)
    assert_nohuman_error(response, 401, "authentication_error", "missing bearer token")


def test_nohuman_unknown_generation_is_404(emulator):
    assert_nohuman_error(nh_get(emulator, "gen_img2v_doesnotexist"), 404, "not_found", "gen_img2v_doesnotexist")


def test_nohuman_injected_job_failure(emulator, image_server):
    faults(emulator, {"fail_next": 1, "failure_message": "model overloaded"})
    job = nh_post(emulator, {"prompt": "p", "image_url": f"{image_server}/photo.jpg"}).json()
    failed = wait_for_terminal(emulator, job["id"])
    assert failed == {"id": job["id"], "model": "nohuman-x33", "status": "failed", "error": "model overloaded"}


def test_nohuman_job_failure_rate(emulator, image_server):
    faults(emulator, {"job_failure_rate": 1.0})
    job = nh_post(emulator, {"prompt": "p", "image_url": f"{image_server}/photo.jpg"}).json()
    assert wait_for_terminal(emulator, job["id"])["status"] == "failed"


@pytest.mark.parametrize(
    ("path", "error"),
    [("/expired/photo.jpg", "could not fetch image_url: 403"), ("/notes.txt", "not a valid JPEG, PNG or WebP")],
)
def test_nohuman_unusable_image_fails_the_generation(emulator, image_server, path, error):
    job = nh_post(emulator, {"prompt": "p", "image_url": image_server + path}).json()
    failed = wait_for_terminal(emulator, job["id"])
    assert failed["status"] == "failed"
    assert error in failed["error"]


def test_nohuman_injected_status_429(emulator):
    faults(emulator, {"errors": {"nohuman.status": {"status": 429, "count": 1, "retry_after": 7}}})
    response = nh_get(emulator, "gen_img2v_x")
    assert_nohuman_error(response, 429, "rate_limit", "injected HTTP 429")
    assert response.headers["Retry-After"] == "7"
    assert nh_get(emulator, "gen_img2v_x").status_code == 404


def test_nohuman_injected_server_error_on_create(emulator):
    faults(emulator, {"nohuman.create": {"status": 500, "rate": 1.0, "message": "upstream exploded"}})
    response = nh_post(emulator, {"prompt": "p", "image_url": "http://x/y.jpg"})
    assert_nohuman_error(response, 500, "server_error", "upstream exploded")


def test_timeout_fault_answers_after_the_client_gave_up(emulator, image_server):
    faults(emulator, {"timeout": {"endpoint": "nohuman.create", "seconds": 3, "count": 1}})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            emulator.url + NH_PATH,
            json={"prompt": "p", "image_url": f"{image_server}/photo.jpg"},
            headers=auth(),
            timeout=(5, 0.5),
        )
    # The request was received and the generation created: the outcome was merely unknown to the client.
    jobs = requests.get(emulator.url + "/_emulator/jobs", timeout=5).json()["jobs"]
    assert len(jobs) == 1
    assert jobs[0]["job_id"].startswith("gen_img2v_")
    assert jobs[0]["status"] in ("created", "processing", "completed")


# --- result files ------------------------------------------------------------------------


def test_result_urls_expire_with_403(emulator, image_server):
    body = nb_post(emulator, {"image_url": f"{image_server}/photo.jpg", "duration": 3}).json()
    assert requests.get(body["video_url"], timeout=10).status_code == 200
    faults(emulator, {"result_url_ttl_seconds": 0})
    expired = requests.get(body["video_url"], timeout=10)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text


def test_unknown_file_is_404(emulator):
    response = requests.get(emulator.url + "/files/vid_000000000000.mp4", timeout=10)
    assert response.status_code == 404 and "NoSuchKey" in response.text


def test_throttled_download_delivers_the_whole_file(emulator, image_server):
    body = nb_post(emulator, {"image_url": f"{image_server}/photo.jpg", "duration": 3}).json()
    whole = requests.get(body["thumbnail_url"], timeout=10).content
    faults(emulator, {"download_bytes_per_second": max(1, len(whole) * 4)})
    throttled = requests.get(body["thumbnail_url"], timeout=10)
    assert throttled.status_code == 200
    assert throttled.headers["Content-Length"] == str(len(whole))
    assert throttled.content == whole


def test_files_injected_error(emulator):
    faults(emulator, {"files": {"status": 503, "count": 1}})
    response = requests.get(emulator.url + "/files/anything.mp4", timeout=10)
    assert response.status_code == 503 and "SlowDown" in response.text


# --- admin -------------------------------------------------------------------------------


def test_jobs_log_lists_every_create_request_in_order(emulator, image_server):
    nb_post(emulator, {"image_url": f"{image_server}/photo.jpg", "duration": 3, "motion_intensity": "low"})
    nh_post(emulator, {"prompt": "p", "image_url": "http://x/y.jpg", "duration": 7})
    nh_post(emulator, {"prompt": "p"}, key="wrong")

    jobs = requests.get(emulator.url + "/_emulator/jobs", timeout=5).json()["jobs"]
    assert [job["seq"] for job in jobs] == [1, 2, 3]
    first, second, third = jobs
    assert first["provider"] == "nanobanana" and first["endpoint"] == f"POST {NB_PATH}"
    assert first["options"] == {"image_url": f"{image_server}/photo.jpg", "duration": 3, "motion_intensity": "low"}
    assert (first["status"], first["http_status"]) == ("completed", 200)
    assert re.fullmatch(r"vid_[0-9a-f]{12}", first["job_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["created_at"])
    assert second["provider"] == "nohuman" and second["endpoint"] == f"POST {NH_PATH}"
    assert (second["status"], second["http_status"], second["job_id"]) == ("rejected", 400, None)
    assert "duration" in second["error"]
    assert (third["status"], third["http_status"]) == ("rejected", 401)
    assert "wrong" not in str(third)  # the key is never recorded

    assert requests.delete(emulator.url + "/_emulator/jobs", timeout=5).json() == {"cleared": 3}
    assert requests.get(emulator.url + "/_emulator/jobs", timeout=5).json() == {"jobs": []}


def test_faults_merge_read_and_reset(emulator):
    faults(emulator, {"nohuman.status": {"status": 500}})
    merged = faults(emulator, {"render_seconds": 1.5, "errors": {"files": {"status": 503, "count": 2}}})
    assert set(merged["errors"]) == {"nohuman.status", "files"}
    assert merged["render_seconds"] == 1.5
    assert requests.get(emulator.url + "/_emulator/faults", timeout=5).json() == merged

    reset = requests.delete(emulator.url + "/_emulator/faults", timeout=5).json()
    assert reset["errors"] == {} and reset["render_seconds"] == 0


@pytest.mark.parametrize(
    "patch",
    [
        {"errors": {"nohuman.poll": {"status": 500}}},
        {"nohuman.create": {"status": 200}},
        {"nohuman.create": {"status": 500, "rate": 2}},
        {"timeout": {"endpoint": "files"}},
        {"job_failure_rate": "often"},
        {"teapot": True},
        [1, 2],
    ],
)
def test_faults_reject_malformed_settings(emulator, patch):
    response = requests.post(emulator.url + "/_emulator/faults", json=patch, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()
    assert requests.get(emulator.url + "/_emulator/faults", timeout=5).json()["errors"] == {}


def test_fractional_fault_rate_is_repeatable_with_a_seed(emulator):
    def statuses():
        requests.delete(emulator.url + "/_emulator/faults", timeout=5)
        faults(emulator, {"seed": 42, "nohuman.status": {"status": 500, "rate": 0.5}})
        return [nh_get(emulator, "gen_img2v_x").status_code for _ in range(20)]

    first = statuses()
    assert first == statuses()
    assert set(first) == {500, 404}


def test_health_and_unknown_routes(emulator):
    health = requests.get(emulator.url + "/_emulator/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert "not a real provider" in health.json()["emulator"]
    assert_nohuman_error(requests.get(emulator.url + "/v1/nothing", timeout=5), 404, "not_found", "not found")
    assert_nanobanana_error(requests.get(emulator.url + NB_PATH, timeout=5), 405, "method not allowed")


# --- lifecycle -----------------------------------------------------------------------------


def _ffmpeg_children() -> list[int]:
    """Process ids of ffmpeg processes whose parent is this test process (Linux /proc)."""
    found = []
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            with open(f"/proc/{stat}/stat") as handle:
                fields = handle.read().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        if ppid == os.getpid() and "ffmpeg" in name:
            found.append(int(stat))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads child processes from /proc")
def test_stop_terminates_running_renders_before_deleting_the_files(image_server):
    emulator = ProviderEmulator(api_key=KEY, render_seconds=0).start()
    try:
        # hq, 10 s, sound: a render long enough to be caught in the middle.
        job = nh_post(emulator, {"prompt": "p", "image_url": f"{image_server}/photo.jpg", "mode": "hq", "duration": 10})
        job_id = job.json()["id"]
        for _ in range(600):
            if _ffmpeg_children():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the render never started")
        files_dir = emulator._files_dir
        render_threads = list(emulator._render_threads)
    finally:
        emulator.stop()
    assert render_threads and not any(thread.is_alive() for thread in render_threads)
    assert _ffmpeg_children() == []
    assert not files_dir.exists()
    assert emulator._jobs[job_id]["status"] != "completed"


def test_a_stopped_emulator_starts_no_render(image_server):
    emulator = ProviderEmulator(api_key=KEY, render_seconds=0).start()
    emulator.stop()
    assert emulator._render("x", b"", 64, 64, 1, sound=False, thumbnail=False) == "the emulator is stopping"
