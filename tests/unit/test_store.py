"""The store task: video + thumbnail into the output bucket, manifest beside them, one success notification."""

import io
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from functions.store import app
from i2v import outcome as outcomes
from i2v import publishing, records
from i2v.errors import ResultFetchError
from i2v.settings import Env, NotifyFailureSettings, PublishSettings
from tests import http_mock
from tests.aws_resources import create_table, create_topic_with_queue

OUTPUT_BUCKET = "i2v-output-123456789012-us-east-1"
VIDEO_URL = "https://cdn.nanobananavideo.com/videos/vid_f7g8h9.mp4"
THUMB_URL = "https://cdn.nanobananavideo.com/thumbs/vid_f7g8h9.jpg"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"m" * 5000
THUMB = b"\xff\xd8\xff\xe0thumbnail"


@pytest.fixture
def aws(monkeypatch):
    """Output bucket, jobs table, and the outcome topic with an SQS queue subscribed to read what was published."""
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=OUTPUT_BUCKET)
        create_table("jobs")
        topic_arn, queue_url = create_topic_with_queue()
        sqs = boto3.client("sqs")
        monkeypatch.setenv("PROVIDER", "nanobanana")
        monkeypatch.setenv("OUTPUT_BUCKET", OUTPUT_BUCKET)
        monkeypatch.setenv("OUTPUT_PREFIX", "videos/")
        monkeypatch.setenv("JOBS_TABLE", "jobs")
        monkeypatch.setenv("TOPIC_ARN", topic_arn)
        monkeypatch.setenv("PRESIGN_EXPIRY_SECONDS", "7200")
        yield {"s3": s3, "sqs": sqs, "queue_url": queue_url}


@pytest.fixture
def http():
    with http_mock.HttpMock() as mock:
        yield mock


def published(aws) -> list[dict]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(message["Body"])["Message"]) for message in messages]


def test_stores_video_thumbnail_and_manifest_then_notifies(aws, http, public_dns, event, lambda_context, capsys):
    http.get(VIDEO_URL, body=VIDEO, content_type="video/mp4")
    http.get(THUMB_URL, body=THUMB, content_type="image/jpeg")
    job = event("store_completed.json")
    submitted = datetime.now(UTC) - timedelta(minutes=2)
    job["submitted_at"] = submitted.strftime("%Y-%m-%dT%H:%M:%SZ")

    result = app.lambda_handler(job, lambda_context)

    base = "videos/harbour-5b2d8e0f4c7a"
    assert result == {"job_key": job["job_key"], "status": "succeeded", "video_uri": f"s3://{OUTPUT_BUCKET}/{base}.mp4"}
    s3 = aws["s3"]
    video = s3.get_object(Bucket=OUTPUT_BUCKET, Key=f"{base}.mp4")
    assert video["Body"].read() == VIDEO and video["ContentType"] == "video/mp4"
    thumb = s3.get_object(Bucket=OUTPUT_BUCKET, Key=f"{base}.jpg")
    assert thumb["Body"].read() == THUMB and thumb["ContentType"] == "image/jpeg"

    manifest = json.loads(s3.get_object(Bucket=OUTPUT_BUCKET, Key=f"{base}.json")["Body"].read())
    assert manifest["source"]["key"] == "uploads/harbour.jpg"
    assert manifest["source"]["etag"] == "d41d8cd98f00b204e9800998ecf8427e"
    assert manifest["provider"] == "nanobanana" and manifest["provider_job_id"] == "vid_f7g8h9i0j1k2"
    assert manifest["options"]["video_model"] == "seedance2"
    assert manifest["cost"] == {"credits": 6}
    assert manifest["image"]["width"] == 1280
    assert manifest["output"]["video_bytes"] == len(VIDEO)
    assert manifest["timings"]["submitted_at"] == job["submitted_at"]
    assert manifest["timings"]["finished_at"] >= job["submitted_at"]
    assert manifest["timings"]["total_seconds"] >= 119
    assert manifest["warnings"] == []

    [outcome] = published(aws)
    assert outcome["status"] == "succeeded"
    assert outcome["job_key"] == job["job_key"]
    assert outcome["output"]["video_uri"] == f"s3://{OUTPUT_BUCKET}/{base}.mp4"
    assert outcome["output"]["thumbnail_uri"] == f"s3://{OUTPUT_BUCKET}/{base}.jpg"
    assert outcome["output"]["manifest_uri"] == f"s3://{OUTPUT_BUCKET}/{base}.json"
    assert outcome["output"]["download_url_expires_at"] > manifest["timings"]["finished_at"]
    # provider_seconds is the correct name; render_seconds (deprecated) carries the same value.
    assert outcome["durations"]["provider_seconds"] >= 119
    assert outcome["durations"]["render_seconds"] == outcome["durations"]["provider_seconds"]
    assert manifest["timings"]["provider_seconds"] == manifest["timings"]["render_seconds"]
    assert "X-Amz-Expires=7200" in outcome["output"]["download_url"]
    assert outcome["output"]["download_url"].startswith(
        f"https://{OUTPUT_BUCKET}.s3.us-east-1.amazonaws.com/{base}.mp4?"
    )

    emitted = capsys.readouterr().out
    assert '"JobsSucceeded"' in emitted and '"CreditsUsed"' in emitted and '"RenderSeconds"' in emitted
    assert outcome["output"]["download_url"] not in emitted, "presigned links never reach the logs"


def test_manifest_and_notification_agree_on_the_finish(aws, http, public_dns, event, lambda_context, monkeypatch):
    http.get(VIDEO_URL, body=VIDEO, content_type="video/mp4")
    http.get(THUMB_URL, body=THUMB, content_type="image/jpeg")
    # A notifier clock an hour ahead: only the finish time Store hands over can make them agree.
    later = datetime.now(UTC) + timedelta(hours=1)
    real_publish = publishing.publish_outcome
    monkeypatch.setattr(
        publishing,
        "publish_outcome",
        lambda outcome, settings, **kwargs: real_publish(outcome, settings, **{**kwargs, "clock": lambda: later}),
    )
    job = event("store_completed.json")
    job["submitted_at"] = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    app.lambda_handler(job, lambda_context)

    manifest_key = "videos/harbour-5b2d8e0f4c7a.json"
    manifest = json.loads(aws["s3"].get_object(Bucket=OUTPUT_BUCKET, Key=manifest_key)["Body"].read())
    [outcome] = published(aws)
    assert outcome["finished_at"] == manifest["timings"]["finished_at"]
    assert outcome["durations"]["total_seconds"] == manifest["timings"]["total_seconds"]


def test_nohuman_price_becomes_cost_metric(aws, http, public_dns, event, lambda_context, capsys, monkeypatch):
    monkeypatch.setenv("PROVIDER", "nohuman")
    job = event("store_completed.json")
    job.update(
        provider="nohuman",
        result={"video_url": "https://files.nohuman.studio/gen_1.mp4", "thumbnail_url": None},
        cost={"amount": 0.47, "currency": "USD"},
    )
    http.get("https://files.nohuman.studio/gen_1.mp4", body=VIDEO)

    app.lambda_handler(job, lambda_context)

    [outcome] = published(aws)
    assert outcome["output"]["thumbnail_uri"] is None
    assert outcome["cost"] == {"amount": 0.47, "currency": "USD"}
    assert '"CostUSD"' in capsys.readouterr().out


def test_thumbnail_failure_is_a_warning_not_a_failure(aws, http, public_dns, event, lambda_context):
    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, status=404)
    job = event("store_completed.json")
    job["warnings"] = ["image is 640x480, below the 1024x1024 the provider recommends"]

    result = app.lambda_handler(job, lambda_context)

    assert result["status"] == "succeeded"
    [outcome] = published(aws)
    assert outcome["output"]["thumbnail_uri"] is None
    assert outcome["warnings"][0] == "image is 640x480, below the 1024x1024 the provider recommends"
    assert "thumbnail was not copied" in outcome["warnings"][1] and "HTTP 404" in outcome["warnings"][1]
    manifest_key = "videos/harbour-5b2d8e0f4c7a.json"
    manifest = json.loads(aws["s3"].get_object(Bucket=OUTPUT_BUCKET, Key=manifest_key)["Body"].read())
    assert manifest["warnings"] == outcome["warnings"]
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix="videos/harbour-5b2d8e0f4c7a.jpg")


def test_expired_video_link_raises_for_the_catch_and_notifies_nothing(aws, http, public_dns, event, lambda_context):
    http.get(VIDEO_URL, status=403)

    with pytest.raises(ResultFetchError, match="expired or was refused"):
        app.lambda_handler(event("store_completed.json"), lambda_context)

    assert published(aws) == []
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=OUTPUT_BUCKET)


def test_video_from_a_foreign_host_is_refused(aws, http, public_dns, event, lambda_context):
    job = event("store_completed.json")
    job["result"] = {"video_url": "https://attacker.example/v.mp4", "thumbnail_url": None}

    with pytest.raises(ResultFetchError, match="not one of the allowed hosts"):
        app.lambda_handler(job, lambda_context)
    assert len(http.calls) == 0
    assert published(aws) == []


def test_completed_job_without_video_url_fails(aws, http, public_dns, event, lambda_context):
    job = event("store_completed.json")
    job["result"] = {"video_url": None, "thumbnail_url": THUMB_URL}

    with pytest.raises(ResultFetchError, match="no video URL"):
        app.lambda_handler(job, lambda_context)
    assert published(aws) == []


def test_a_retried_store_does_not_notify_twice(aws, http, public_dns, event, lambda_context):
    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, body=THUMB)
    job = event("store_completed.json")

    app.lambda_handler(job, lambda_context)
    app.lambda_handler(job, lambda_context)

    assert len(published(aws)) == 1


def test_without_a_provider_thumbnail_a_poster_is_made_from_the_input(
    aws, http, public_dns, event, lambda_context, monkeypatch
):
    monkeypatch.setenv("PROVIDER", "nohuman")
    job = event("store_completed.json")
    job.update(
        provider="nohuman", result={"video_url": "https://files.nohuman.studio/gen_1.mp4", "thumbnail_url": None}
    )
    source = io.BytesIO()
    Image.new("RGB", (1280, 720), (200, 120, 40)).save(source, "JPEG")
    aws["s3"].put_object(Bucket=job["image"]["bucket"], Key=job["image"]["key"], Body=source.getvalue())
    http.get("https://files.nohuman.studio/gen_1.mp4", body=VIDEO)

    app.lambda_handler(job, lambda_context)

    [outcome] = published(aws)
    assert outcome["output"]["thumbnail_uri"] == f"s3://{OUTPUT_BUCKET}/videos/harbour-5b2d8e0f4c7a.jpg"
    poster = aws["s3"].get_object(Bucket=OUTPUT_BUCKET, Key="videos/harbour-5b2d8e0f4c7a.jpg")
    assert poster["ContentType"] == "image/jpeg"
    with Image.open(io.BytesIO(poster["Body"].read())) as image:
        assert image.format == "JPEG" and image.size == (640, 360)


def test_a_missing_input_leaves_no_thumbnail_and_says_so(aws, http, public_dns, event, lambda_context, monkeypatch):
    monkeypatch.setenv("PROVIDER", "nohuman")
    job = event("store_completed.json")
    job.update(
        provider="nohuman", result={"video_url": "https://files.nohuman.studio/gen_1.mp4", "thumbnail_url": None}
    )
    http.get("https://files.nohuman.studio/gen_1.mp4", body=VIDEO)

    app.lambda_handler(job, lambda_context)

    [outcome] = published(aws)
    assert outcome["output"]["thumbnail_uri"] is None
    assert any("no thumbnail" in warning for warning in outcome["warnings"])


# ---------------------------------------------------------------- issue 8: B13, A4 (runtime)


def test_a_bad_cost_field_never_fails_a_published_job(aws, http, public_dns, event, lambda_context):
    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, body=THUMB)
    job = event("store_completed.json")
    job["cost"] = {"credits": "abc"}  # as an older Submit could have recorded it

    result = app.lambda_handler(job, lambda_context)

    assert result["status"] == "succeeded"
    assert len(published(aws)) == 1


def test_nothing_after_the_publish_can_fail_the_task(aws, http, public_dns, event, lambda_context, monkeypatch):
    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, body=THUMB)

    def broken(*args, **kwargs):
        raise RuntimeError("metrics backend exploded")

    monkeypatch.setattr(app, "_record_metrics", broken)

    result = app.lambda_handler(event("store_completed.json"), lambda_context)

    assert result["status"] == "succeeded"
    assert len(published(aws)) == 1


def test_a_retry_after_the_success_went_out_does_not_download_again(aws, http, public_dns, event, lambda_context):
    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, body=THUMB)
    job = event("store_completed.json")
    app.lambda_handler(job, lambda_context)
    # The provider's link has expired since: a second download would fail the job.
    http.replace(http_mock.GET, VIDEO_URL, status=403)
    downloads = len(http.calls)

    result = app.lambda_handler(job, lambda_context)

    assert result == {
        "job_key": job["job_key"],
        "status": "succeeded",
        "video_uri": f"s3://{OUTPUT_BUCKET}/videos/harbour-5b2d8e0f4c7a.mp4",
    }
    assert len(http.calls) == downloads
    assert len(published(aws)) == 1


def test_a_throttled_publish_raises_the_name_the_state_machine_retries(
    aws, http, public_dns, event, lambda_context, monkeypatch
):
    from botocore.exceptions import ClientError

    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, body=THUMB)
    sns = boto3.client("sns")
    throttled = sns.exceptions.ThrottledException(
        {"Error": {"Code": "Throttled", "Message": "Rate exceeded"}}, "Publish"
    )
    assert isinstance(throttled, ClientError) and type(throttled).__name__ != "ClientError"

    def publish(outcome, settings, **kwargs):
        raise throttled

    monkeypatch.setattr(publishing, "publish_outcome", publish)

    with pytest.raises(publishing.OutcomePublishError, match="Rate exceeded"):
        app.lambda_handler(event("store_completed.json"), lambda_context)


def test_a_failure_never_follows_a_success_that_went_out(aws, event, monkeypatch):
    """SNS carried the success, EventBridge refused it, Store's retries ran out: the Catch sends
    the job to NotifyFailure, which must not publish a failure for a job that succeeded."""
    from functions.notify_failure import app as notify_failure

    job = event("store_completed.json")
    success = outcomes.outcome_from_job(job, status="succeeded", output={"video_uri": "s3://b/v.mp4"}, error=None)

    def refuse(settings, outcome, **kwargs):
        raise publishing.OutcomePublishError("EventBridge refused the event")

    with monkeypatch.context() as patched:
        patched.setattr(publishing, "put_event", refuse)
        with pytest.raises(publishing.OutcomePublishError):
            publishing.publish_outcome(success, PublishSettings.read(Env("tests")))
    assert [message["status"] for message in published(aws)] == ["succeeded"]

    failed_job = dict(job, caught={"Error": "OutcomePublishError", "Cause": "{}"})
    notify_failure.notify_job_failure(failed_job, NotifyFailureSettings.from_env())

    assert published(aws) == []


def test_downloads_from_the_kept_signed_link_then_forgets_it(aws, http, public_dns, event, lambda_context, monkeypatch):
    from i2v.providers import COMPLETED, ProviderJob

    job = event("store_completed.json")
    signed_video = VIDEO_URL + "?Expires=1800000000&Signature=SECRETSIG"
    provider_job = ProviderJob(
        id="vid_1", status=COMPLETED, video_url=signed_video, thumbnail_url=THUMB_URL + "?sig=S2"
    )
    records.keep_result_links("jobs", job["job_key"], provider_job, now=datetime.now(UTC))
    http.get(VIDEO_URL, body=VIDEO)
    http.get(THUMB_URL, body=THUMB)
    app.lambda_handler(job, lambda_context)

    assert http.calls[0].request.url == signed_video
    assert http.calls[1].request.url.endswith("?sig=S2")
    kept = boto3.client("dynamodb").get_item(TableName="jobs", Key={"job_key": {"S": job["job_key"] + "#result"}})
    assert "Item" not in kept  # forgotten once the outcome went out
    assert not hasattr(app, "tracer")  # no X-Ray SDK in the function: nothing records its response


def test_an_expired_kept_link_is_not_used(aws, http, public_dns, event, lambda_context):
    from i2v.providers import COMPLETED, ProviderJob

    job = event("store_completed.json")
    stale = ProviderJob(id="vid_1", status=COMPLETED, video_url=VIDEO_URL + "?sig=OLD", thumbnail_url=None)
    records.keep_result_links("jobs", job["job_key"], stale, now=datetime.now(UTC) - timedelta(days=3))

    assert records.result_links("jobs", job) == job["result"]
