"""End to end on the local stack with the NoHuman Studio emulator: upload -> one notification."""

import time

import pytest

from i2v_local.emulator import output_dimensions
from i2v_local.emulator.server import NH_RESOLUTION
from i2v_local.media import probe
from tests.e2e.helpers import create_requests, download, jpeg, outcome, redeliver_upload_event, start_stack, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    # MaxWaitMinutes=1 (the template's minimum) keeps the timeout case to about a minute.
    with start_stack("nohuman", webhook=False, params={"MaxWaitMinutes": "1"}) as local:
        yield local


def test_success_mp4_matches_the_requested_options(stack, tmp_path):
    key = f"{stack.input_prefix}{unique('portrait.jpg')}"
    stack.upload(jpeg(), key, {"duration": "5", "aspect_ratio": "9:16", "mode": "fast", "prompt": "waves roll in"})
    note = outcome(stack, key)
    assert note["status"] == "succeeded", note
    assert note["provider"] == "nohuman" and note["error"] is None
    assert note["options"]["aspect_ratio"] == "9:16" and note["options"]["prompt"] == "waves roll in"
    assert note["output"]["video_uri"].startswith(f"s3://{stack.output_bucket}/")
    video = tmp_path / "video.mp4"
    download(stack, note["output"]["video_uri"], video)
    info = probe(video)
    assert info["codec"] == "h264"
    assert abs(info["duration_seconds"] - 5) <= 0.5
    assert (info["width"], info["height"]) == output_dimensions(NH_RESOLUTION["fast"], "9:16")
    download(stack, note["output"]["manifest_uri"], tmp_path / "manifest.json")
    assert note["output"]["thumbnail_uri"]


def test_provider_reported_failure_ends_in_one_failure_notification(stack):
    stack.emulator.set_faults({"fail_next": 1, "failure_message": "content policy violation"})
    key = f"{stack.input_prefix}{unique('fails.jpg')}"
    stack.upload(jpeg(), key)
    note = outcome(stack, key)
    assert note["status"] == "failed" and note["output"] is None
    assert note["error"]["code"] == "ProviderJobFailed"
    assert "content policy violation" in note["error"]["message"]


def test_invalid_option_fails_without_calling_the_provider(stack):
    before = len(create_requests(stack))
    key = f"{stack.input_prefix}{unique('bad-duration.jpg')}"
    stack.upload(jpeg(), key, {"duration": "7"})
    note = outcome(stack, key)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "InvalidOption"
    assert "duration" in note["error"]["message"]
    assert len(create_requests(stack)) == before


def test_corrupt_image_fails_without_calling_the_provider(stack):
    before = len(create_requests(stack))
    key = f"{stack.input_prefix}{unique('corrupt.jpg')}"
    stack.upload(b"\xff\xd8\xff\xe0 this is not really a JPEG", key)
    note = outcome(stack, key)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "CorruptImage"
    assert len(create_requests(stack)) == before


def test_same_s3_event_twice_makes_one_create_request_and_one_notification(stack):
    key = f"{stack.input_prefix}{unique('twice.jpg')}"
    before = len(create_requests(stack))
    stack.upload(jpeg(), key)
    note = outcome(stack, key)
    assert note["status"] == "succeeded"
    redeliver_upload_event(stack, key, times=2)
    assert len(create_requests(stack)) == before + 1
    assert len(stack.notifications_for(key)) == 1


@pytest.mark.parametrize(
    "name",
    ["my photo+1.jpg", "nested/deeper/still/harbour.jpg", "überfahrt à la mer 港.jpg", "a b/c+d/e%20f.png"],
)
def test_awkward_keys_work(stack, name):
    key = f"{stack.input_prefix}{unique('k')}/{name}"
    stack.upload(jpeg(), key, content_type="image/png" if name.endswith(".png") else "image/jpeg")
    note = outcome(stack, key)
    assert note["status"] == "succeeded", note
    assert note["source"]["key"] == key  # decoded, exactly as uploaded


def test_job_that_outlives_max_wait_times_out(stack):
    # The render takes longer than MaxWaitMinutes (1): the deadline decides, not the provider.
    stack.emulator.set_faults({"render_seconds": 150})
    before = len(create_requests(stack))
    key = f"{stack.input_prefix}{unique('slow.jpg')}"
    stack.upload(jpeg(), key)
    # The emulator reads render_seconds before it lists a request; waiting for the job id as
    # well means the generation exists with its slow render before the fault is cleared.
    deadline = time.monotonic() + 30
    while not [j for j in create_requests(stack)[before:] if j["job_id"]] and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.emulator.faults.reset()  # only this job is slow
    note = outcome(stack, key, timeout=150)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "TimedOut"
    assert "timed out after 1 minutes" in note["error"]["message"]


def test_a_japanese_prompt_and_a_photo_with_gps_arrive_decoded_and_without_the_position(stack, tmp_path):
    import base64
    import io
    import json

    from PIL import Image

    prompt = "夕暮れの港、ゆっくりとズームイン 🌅"
    encoded = "=?UTF-8?B?" + base64.b64encode(prompt.encode()).decode() + "?="
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (59.0, 19.0, 42.0), 3: "E", 4: (18.0, 4.0, 6.0)})
    photo = io.BytesIO()
    Image.open(io.BytesIO(jpeg())).save(photo, "JPEG", quality=90, exif=exif.tobytes())
    key = f"{stack.input_prefix}{unique('gps-ja.jpg')}"

    stack.upload(photo.getvalue(), key, {"prompt": encoded})
    note = outcome(stack, key)

    assert note["status"] == "succeeded", note
    assert note["options"]["prompt"] == prompt
    assert create_requests(stack)[-1]["options"]["prompt"] == prompt
    download(stack, note["output"]["manifest_uri"], tmp_path / "manifest.json")
    image = json.loads((tmp_path / "manifest.json").read_text())["image"]
    sent = stack.client("s3").get_object(Bucket=image["bucket"], Key=image["key"])["Body"].read()
    assert b"Exif" not in sent
    assert not Image.open(io.BytesIO(sent)).getexif().get_ifd(0x8825)
