"""S3 helpers: presigned links, key names, manifests and the streaming multipart upload."""

import json
from datetime import UTC
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from i2v import storage
from i2v.settings import PrepareSettings

BUCKET = "out-bucket"
JOB_KEY = "3f1c9a7be2d04c5f8a6b1e2d3c4b5a6978695a4b3c2d1e0f9a8b7c6d5e4f3a2b"


@pytest.fixture
def s3():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.fixture
def settings():
    return PrepareSettings(provider="nohuman", output_bucket=BUCKET, output_prefix="videos/", work_prefix="work/")


def test_s3_uri():
    assert storage.s3_uri("b", "a/b c.mp4") == "s3://b/a/b c.mp4"


def test_presign_get_is_sigv4_and_capped_at_seven_days(s3):
    url = storage.presign_get(BUCKET, "videos/a b.mp4", 10 * 24 * 3600)

    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["604800"]
    assert "AWSAccessKeyId" not in query


def test_presigned_link_downloads_the_object(s3):
    import requests

    s3.put_object(Bucket=BUCKET, Key="videos/clip.mp4", Body=b"video bytes")

    url = storage.presign_get(BUCKET, "videos/clip.mp4", 600)

    # moto intercepts the signed request in-process: no network is touched.
    assert requests.get(url, timeout=5).content == b"video bytes"


def test_output_keys_are_readable_and_unique_per_job(settings):
    keys = storage.output_keys(settings, JOB_KEY, "uploads/2026/My photo+1.JPG")

    assert keys == {
        "video": "videos/My-photo-1-3f1c9a7be2d0.mp4",
        "thumbnail": "videos/My-photo-1-3f1c9a7be2d0.jpg",
        "manifest": "videos/My-photo-1-3f1c9a7be2d0.json",
    }
    other = storage.output_keys(settings, "9" * 64, "uploads/2026/My photo+1.JPG")
    assert other["video"] != keys["video"]


@pytest.mark.parametrize(
    ("source_key", "name"),
    [
        ("uploads/café.png", "café"),
        ("uploads/...", "image"),
        ("a/../../etc/passwd", "passwd"),
        ("x" * 300 + ".jpg", "x" * 80),
    ],
)
def test_readable_name_is_safe(source_key, name):
    assert storage.readable_name(source_key) == name


def test_work_key(settings):
    assert storage.work_key(settings, JOB_KEY, "jpg") == f"work/{JOB_KEY}/input.jpg"


def test_write_manifest_is_json_with_content_type(s3):
    uri = storage.write_manifest(BUCKET, "videos/x.json", {"job_key": JOB_KEY, "warnings": []})

    assert uri == f"s3://{BUCKET}/videos/x.json"
    stored = s3.get_object(Bucket=BUCKET, Key="videos/x.json")
    assert stored["ContentType"] == "application/json"
    assert json.loads(stored["Body"].read()) == {"job_key": JOB_KEY, "warnings": []}


def test_build_manifest_carries_source_cost_timings_and_warnings():
    job = {
        "job_key": JOB_KEY,
        "source": {"bucket": "in", "key": "uploads/a.jpg", "version_id": "v1", "etag": "e1", "size": 10},
        "provider": "nohuman",
        "provider_job_id": "gen_1",
        "options": {"mode": "fast", "duration": 5},
        "image": {"width": 640, "height": 480, "format": "JPEG"},
        "cost": {"amount": 0.47, "currency": "USD"},
        "submitted_at": "2026-11-22T10:00:00Z",
        "poll_count": 3,
    }

    manifest = storage.build_manifest(
        job, output={"video_uri": "s3://o/v.mp4"}, finished_at="2026-11-22T10:00:41Z", warnings=["w"]
    )

    assert manifest["source"]["uri"] == "s3://in/uploads/a.jpg"
    assert manifest["source"]["etag"] == "e1" and manifest["source"]["version_id"] == "v1"
    assert manifest["cost"] == {"amount": 0.47, "currency": "USD"}
    assert manifest["options"] == {"mode": "fast", "duration": 5}
    assert manifest["timings"] == {
        "submitted_at": "2026-11-22T10:00:00Z",
        "finished_at": "2026-11-22T10:00:41Z",
        "total_seconds": 41.0,
        "provider_seconds": None,
        "render_seconds": None,
        "poll_count": 3,
        "checks": None,
    }
    assert manifest["warnings"] == ["w"]
    assert manifest["image"]["width"] == 640


def test_the_manifest_and_the_notification_describe_source_and_durations_alike():
    from datetime import datetime

    from i2v import outcome as outcomes

    job = {
        "job_key": "k",
        "source": {"bucket": "in", "key": "uploads/a.jpg", "etag": "e1", "version_id": None, "size": 10},
        "submitted_at": "2026-11-22T10:00:00Z",
        "render_seconds": 30.5,
    }
    finished = "2026-11-22T10:00:41Z"
    manifest = storage.build_manifest(job, output={}, finished_at=finished, warnings=[])
    outcome = outcomes.outcome_from_job(
        job,
        status="succeeded",
        output={},
        error=None,
        finished_at=datetime(2026, 11, 22, 10, 0, 41, tzinfo=UTC),
    )
    assert {k: v for k, v in manifest["source"].items() if k != "size"} == outcome["source"]
    assert (
        {k: manifest["timings"][k] for k in outcome["durations"]}
        == outcome["durations"]
        == {
            "total_seconds": 41.0,
            "provider_seconds": 30.5,
            "render_seconds": 30.5,
        }
    )


def test_upload_chunks_small_body_is_one_put(s3):
    size = storage.upload_chunks(iter([b"ab", b"cd"]), BUCKET, "small.bin", "video/mp4")

    stored = s3.get_object(Bucket=BUCKET, Key="small.bin")
    assert size == 4
    assert stored["Body"].read() == b"abcd"
    assert stored["ContentType"] == "video/mp4"


def test_upload_chunks_large_body_is_multipart_in_order(s3):
    chunk = 1024 * 1024
    chunks = [bytes([index]) * chunk for index in range(20)]  # 20 MiB: 8 + 8 + 4

    size = storage.upload_chunks(iter(chunks), BUCKET, "big.bin", "video/mp4")

    stored = s3.get_object(Bucket=BUCKET, Key="big.bin")
    assert size == 20 * chunk
    assert stored["Body"].read() == b"".join(chunks)
    assert stored["ContentType"] == "video/mp4"
    assert stored["ETag"].strip('"').endswith("-3")  # three parts


def test_upload_chunks_aborts_the_multipart_upload_when_the_source_fails(s3):
    def failing():
        yield b"x" * (9 * 1024 * 1024)  # enough to start a multipart upload
        raise RuntimeError("connection dropped")

    with pytest.raises(RuntimeError, match="connection dropped"):
        storage.upload_chunks(failing(), BUCKET, "broken.bin", "video/mp4")

    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_presigned_links_on_aws_are_regional_virtual_hosted(s3, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)

    url = urlsplit(storage.presign_get(BUCKET, "videos/clip.mp4", 600))

    assert url.scheme == "https"
    assert url.hostname == f"{BUCKET}.s3.us-east-1.amazonaws.com"
    assert url.path == "/videos/clip.mp4"


def test_presigned_links_use_the_configured_endpoint_path_style(s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    storage._sigv4_s3_for.cache_clear()

    url = urlsplit(storage.presign_get(BUCKET, "videos/clip.mp4", 600))

    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5999, f"/{BUCKET}/videos/clip.mp4")
