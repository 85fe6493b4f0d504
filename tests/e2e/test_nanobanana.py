"""End to end on the local stack with the NanoBanana Video emulator (synchronous create)."""

import pytest

from i2v_local.emulator import output_dimensions
from i2v_local.media import probe
from tests.e2e.helpers import create_requests, download, jpeg, outcome, redeliver_upload_event, start_stack, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    with start_stack("nanobanana", webhook=False) as local:
        yield local


def test_success_mp4_matches_the_requested_options(stack, tmp_path):
    key = f"{stack.input_prefix}{unique('square.jpg')}"
    metadata = {
        "video_model": "seedance2",
        "resolution": "480p",
        "duration": "4",
        "aspect_ratio": "1:1",
        "motion_intensity": "low",
    }
    stack.upload(jpeg(1024, 1024), key, metadata)
    note = outcome(stack, key)
    assert note["status"] == "succeeded", note
    assert note["provider"] == "nanobanana"
    assert note["options"]["resolution"] == "480p" and note["options"]["duration"] == 4
    assert note["cost"]
    video = tmp_path / "video.mp4"
    download(stack, note["output"]["video_uri"], video)
    info = probe(video)
    assert info["codec"] == "h264"
    assert abs(info["duration_seconds"] - 4) <= 0.5
    assert (info["width"], info["height"]) == output_dimensions("480p", "1:1")
    jobs = [j for j in create_requests(stack) if j.get("provider") == "nanobanana"]
    assert len(jobs) == 1


def test_provider_reported_failure_ends_in_one_failure_notification(stack):
    # NanoBanana answers a failed render with success=false: final, never re-sent (that would pay twice).
    before = len(create_requests(stack))
    stack.emulator.set_faults({"fail_next": 1, "failure_message": "render farm on fire"})
    key = f"{stack.input_prefix}{unique('fails.jpg')}"
    stack.upload(jpeg(), key)
    note = outcome(stack, key)
    assert note["status"] == "failed" and note["output"] is None
    assert note["error"]["code"] == "ProviderJobFailed", note["error"]
    assert "render farm on fire" in note["error"]["message"], note["error"]
    assert len(create_requests(stack)) == before + 1


def test_same_s3_event_twice_makes_one_create_request_and_one_notification(stack):
    # NanoBanana renders inside the create call: a second create would pay twice.
    key = f"{stack.input_prefix}{unique('twice.jpg')}"
    before = len(create_requests(stack))
    stack.upload(jpeg(), key)
    note = outcome(stack, key)
    assert note["status"] == "succeeded", note
    redeliver_upload_event(stack, key, times=2)
    assert len(create_requests(stack)) == before + 1
    assert len(stack.notifications_for(key)) == 1


def test_option_invalid_for_the_model_fails_without_calling_the_provider(stack):
    before = len(create_requests(stack))
    key = f"{stack.input_prefix}{unique('veo.jpg')}"
    stack.upload(jpeg(), key, {"video_model": "veo3", "aspect_ratio": "9:16"})
    note = outcome(stack, key)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "InvalidOption"
    assert len(create_requests(stack)) == before
