"""The outcome notification: body, email text, SNS + EventBridge publishing, exactly once."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from i2v import mail, publishing, records
from i2v import outcome as outcomes
from i2v.aws import client
from i2v.errors import CODES_BY_ERROR_NAME
from i2v.settings import Env, PublishSettings
from tests.aws_resources import create_queue, create_table

JOB_KEY = "3f1c" + "a" * 60
FIXED_NOW = datetime(2026, 11, 22, 10, 0, 41, 500000, tzinfo=UTC)


def _job(**changes) -> dict:
    job = {
        "job_key": JOB_KEY,
        "source": {
            "bucket": "in-bucket",
            "key": "uploads/harbour.jpg",
            "version_id": None,
            "etag": "abc123",
            "size": 123456,
        },
        "provider": "nohuman",
        "options": {"prompt": "Boats drift at dawn", "mode": "fast", "duration": 5, "aspect_ratio": "16:9"},
        "image": {
            "bucket": "out-bucket",
            "key": f"work/{JOB_KEY}/input.jpg",
            "width": 1024,
            "height": 768,
            "format": "JPEG",
            "reencoded": False,
        },
        "provider_job_id": "gen_123",
        "status": "completed",
        "result": {"video_url": "https://cdn.example/v.mp4", "thumbnail_url": None},
        "cost": {"amount": 0.47, "currency": "USD"},
        "rate_limit": None,
        "warnings": ["image is 1024x768, below the 1024x1024 the provider recommends"],
        "error": None,
        "submitted_at": "2026-11-22T10:00:00Z",
        "deadline": "2026-11-22T10:30:00Z",
        "max_wait_minutes": 30,
        "poll_interval_seconds": 5,
        "poll_count": 7,
    }
    job.update(changes)
    return job


OUTPUT = {
    "video_uri": f"s3://out-bucket/videos/{JOB_KEY}/video.mp4",
    "thumbnail_uri": f"s3://out-bucket/videos/{JOB_KEY}/thumbnail.jpg",
    "manifest_uri": f"s3://out-bucket/videos/{JOB_KEY}/manifest.json",
    "download_url": "https://out-bucket.s3.amazonaws.com/videos/video.mp4?X-Amz-Signature=abc",
    "download_url_expires_at": "2026-11-22T11:00:41Z",
}


class Clock:
    """The clock publish_outcome is given: tests move it by hand."""

    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now


CLOCK = Clock()


@pytest.fixture(autouse=True)
def fixed_clock():
    CLOCK.now = FIXED_NOW
    yield CLOCK


def outcome_at_fixed_now(job: dict, **kwargs) -> dict:
    kwargs.setdefault("finished_at", FIXED_NOW)
    return outcomes.outcome_from_job(job, **kwargs)


def publish(outcome: dict) -> dict:
    """publish_outcome with the settings the environment gives (as at handler entry) and the test clock."""
    settings = PublishSettings.read(Env("tests"))
    return publishing.publish_outcome(outcome, settings, clock=CLOCK, sleep=lambda seconds: None)


def _success() -> dict:
    return outcome_at_fixed_now(_job(render_seconds=35.0), status="succeeded", output=OUTPUT, error=None)


def _failure(code="InvalidOption", message="duration must be one of 5, 10 for nohuman (got 7)", **job_changes) -> dict:
    return outcome_at_fixed_now(
        _job(**job_changes), status="failed", output=None, error={"code": code, "message": message}
    )


# --- the body ----------------------------------------------------------------------------


def test_success_body_follows_schema_version_1():
    body = _success()
    assert body == {
        "schema_version": "1",
        "status": "succeeded",
        "job_key": JOB_KEY,
        "source": {
            "bucket": "in-bucket",
            "key": "uploads/harbour.jpg",
            "version_id": None,
            "etag": "abc123",
            "uri": "s3://in-bucket/uploads/harbour.jpg",
        },
        "provider": "nohuman",
        "provider_job_id": "gen_123",
        "options": {"prompt": "Boats drift at dawn", "mode": "fast", "duration": 5, "aspect_ratio": "16:9"},
        "output": OUTPUT,
        "cost": {"amount": 0.47, "currency": "USD"},
        "durations": {"total_seconds": 41.5, "provider_seconds": 35.0, "render_seconds": 35.0},
        "warnings": ["image is 1024x768, below the 1024x1024 the provider recommends"],
        "error": None,
        "submitted_at": "2026-11-22T10:00:00Z",
        "finished_at": "2026-11-22T10:00:41Z",
    }
    json.dumps(body)  # serialisable as it stands


def test_failure_body_has_no_output_and_an_error():
    body = _failure(cost=None, provider_job_id=None)
    assert body["status"] == "failed" and body["output"] is None
    assert body["error"] == {"code": "InvalidOption", "message": "duration must be one of 5, 10 for nohuman (got 7)"}
    assert body["durations"] == {"total_seconds": 41.5, "provider_seconds": None, "render_seconds": None}


def test_failure_without_an_error_falls_back_to_the_job_error_then_a_generic_one():
    from_job = outcome_at_fixed_now(
        _job(error={"code": "TimedOut", "message": "timed out after 30 minutes"}),
        status="failed",
        output=None,
        error=None,
    )
    assert from_job["error"]["code"] == "TimedOut"
    generic = outcome_at_fixed_now(_job(), status="failed", output=None, error=None)
    assert generic["error"]["code"] == "InternalError"


def test_a_submit_time_after_now_never_gives_a_negative_duration():
    body = outcome_at_fixed_now(
        _job(submitted_at="2026-11-22T10:05:00Z"), status="succeeded", output=OUTPUT, error=None
    )
    assert body["durations"]["total_seconds"] == 0.0


def test_finish_time_can_be_given_by_the_caller():
    finished = datetime(2026, 11, 22, 10, 1, 30, tzinfo=UTC)
    body = outcome_at_fixed_now(_job(), status="succeeded", output=OUTPUT, error=None, finished_at=finished)
    assert body["finished_at"] == "2026-11-22T10:01:30Z"  # not FIXED_NOW
    assert body["durations"]["total_seconds"] == 90.0


def test_unreadable_submit_time_leaves_the_total_unknown():
    body = outcome_at_fixed_now(_job(submitted_at="yesterday"), status="succeeded", output=OUTPUT, error=None)
    assert body["durations"]["total_seconds"] is None


def test_unknown_times_and_status():
    body = outcome_at_fixed_now(_job(submitted_at=None), status="succeeded", output=OUTPUT, error=None)
    assert body["durations"]["total_seconds"] is None
    with pytest.raises(ValueError, match="succeeded"):
        outcome_at_fixed_now(_job(), status="completed", output=OUTPUT, error=None)


# --- subject and email text ----------------------------------------------------------------


def test_subjects():
    assert mail.subject_for(_success()) == "Video ready: harbour.jpg"
    assert mail.subject_for(_failure()) == "Video failed: harbour.jpg (InvalidOption)"


def test_subject_is_short_printable_ascii_whatever_the_file_name():
    source = {"bucket": "in-bucket", "key": "uploads/Hafen Übersicht—" + "ж" * 150 + ".jpg\n"}
    subject = mail.subject_for(_failure(source=source))
    assert len(subject) <= 99
    assert all(32 <= ord(char) < 127 for char in subject)
    assert subject.startswith("Video failed: Hafen Ubersicht?")
    assert subject.endswith("... (InvalidOption)")


@pytest.mark.parametrize(
    "seconds, text",
    [
        (3600, "1 hour"),
        (7200, "2 hours"),
        (5400, "1 hour 30 minutes"),
        (604800, "7 days"),
        (90, "1 minute 30 seconds"),
        (45, "45 seconds"),
    ],
)
def test_human_span(seconds, text):
    assert mail.human_span(seconds) == text


def test_success_email_says_what_where_how_long_and_how_much():
    text = mail.email_text(_success(), presign_expiry_seconds=3600)
    assert "Your video of harbour.jpg is ready." in text
    assert "Image:     s3://in-bucket/uploads/harbour.jpg" in text
    assert "NoHuman Studio (job gen_123)" in text
    assert "prompt:" in text and "Boats drift at dawn" in text and "aspect ratio:  16:9" in text
    assert "duration:      5 s" in text
    assert OUTPUT["download_url"] in text
    # The requested expiry is an upper bound: Lambda's temporary credentials can end it sooner.
    flat = " ".join(text.split())
    assert "The link works for up to 1 hour, until 2026-11-22 11:00 UTC at the latest" in flat
    assert "can stop earlier, when the function's temporary credentials expire" in flat
    assert f"the video itself stays at {OUTPUT['video_uri']}." in flat
    assert "valid for" not in text
    assert OUTPUT["video_uri"] in text and OUTPUT["manifest_uri"] in text
    assert "Cost:      $0.47" in text
    assert "42 s from upload to video, 35 s until the provider finished" in text
    assert "below the 1024x1024" in text
    assert JOB_KEY in text


def test_email_shows_credits_and_computes_expiry_when_not_given():
    output = dict(OUTPUT, download_url_expires_at=None)
    options = {"video_model": "seedance2", "motion_intensity": "low", "sound": False}
    body = outcome_at_fixed_now(
        _job(provider="nanobanana", cost={"credits": 6}, options=options), status="succeeded", output=output, error=None
    )
    text = mail.email_text(body, presign_expiry_seconds=86400)
    assert re.search(r"video model: +seedance2\n", text) and re.search(r"motion intensity: +low\n", text)
    assert re.search(r"sound: +no\n", text)
    assert "NanoBanana Video" in text
    assert "for up to 1 day, until 2026-11-23 10:00 UTC at the latest" in " ".join(text.split())
    assert "6 credits" in text


@pytest.mark.parametrize(
    "code, advice",
    [
        ("InvalidOption", "Fix the options in the image's metadata"),
        ("EmptyObject", "The file was empty (0 bytes)"),
        ("UnsupportedFormat", "Only JPEG, PNG and WebP images are accepted"),
        ("ImageTooLarge", "make it smaller"),
        ("SourceMissing", "deleted before it could be processed"),
        ("SubmitFailed", "The job could not be started"),
        ("CorruptImage", "could not be decoded"),
        ("ProviderAuthRejected", "API key was refused by the provider: update the secret"),
        ("SubmitOutcomeUnknown", "Check the provider dashboard before uploading again"),
        ("TimedOut", "did not finish in time"),
        ("ProviderUnavailable", "in a few minutes"),
        ("SomethingNew", "ask the stack's operator"),
    ],
)
def test_failure_email_says_what_failed_and_what_to_do(code, advice):
    text = mail.email_text(_failure(code=code, message="the reason", cost=None), presign_expiry_seconds=3600)
    assert "No video could be made from harbour.jpg." in text
    assert "What failed: the reason" in text
    assert f"Error code:  {code}" in text
    assert advice in text
    assert "Cost:        not reported" in text
    assert "Download" not in text


# Every failure code the pipeline sets (grep `code=` in layers/ and functions/, and errors.py).
RAISED_CODES = [
    "EmptyObject",
    "CorruptImage",
    "UnsupportedFormat",
    "ImageTooLarge",
    "SourceMissing",
    "InvalidOption",
    "ProviderAuthRejected",
    "ProviderRejectedRequest",
    "ProviderUnavailable",
    "SubmitOutcomeUnknown",
    "ProviderJobFailed",
    "TimedOut",
    "ResultFetchFailed",
    "SubmitFailed",
    "InternalError",
]


@pytest.mark.parametrize("code", sorted(set(RAISED_CODES) | set(CODES_BY_ERROR_NAME.values())))
def test_every_failure_code_gets_its_own_advice(code):
    assert mail.ADVICE.get(code, mail.DEFAULT_ADVICE) != mail.DEFAULT_ADVICE
    text = mail.email_text(_failure(code=code, message="the reason", cost=None), presign_expiry_seconds=3600)
    assert f"What to do:  {mail.ADVICE[code]}" in text


def test_no_two_codes_share_advice():
    assert len(set(mail.ADVICE.values())) == len(mail.ADVICE)


# --- publishing --------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    """Jobs table, topic with a raw and an enveloped SQS subscriber, and an EventBridge rule to SQS."""
    with mock_aws():
        create_table("jobs")
        topic_arn = client("sns").create_topic(Name="outcomes")["TopicArn"]
        queues = {name: create_queue(name) for name in ("raw", "envelope", "failures-only", "events")}
        sns = client("sns")
        sns.subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=queues["raw"][1], Attributes={"RawMessageDelivery": "true"}
        )
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queues["envelope"][1])
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queues["failures-only"][1],
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"status": ["failed"]})},
        )
        events = client("events")
        events.put_rule(Name="outcomes", EventPattern=json.dumps({"source": ["image-to-video"]}))
        events.put_targets(Rule="outcomes", Targets=[{"Id": "q", "Arn": queues["events"][1]}])

        monkeypatch.setenv("JOBS_TABLE", "jobs")
        monkeypatch.setenv("TOPIC_ARN", topic_arn)
        monkeypatch.setenv("EVENT_BUS_NAME", "default")
        monkeypatch.setenv("PRESIGN_EXPIRY_SECONDS", "3600")
        yield {"topic_arn": topic_arn, **{name: url for name, (url, _) in queues.items()}}


def _receive(queue_url: str) -> list:
    messages = client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [message["Body"] for message in messages.get("Messages", [])]


def _job_record() -> dict:
    return client("dynamodb").get_item(TableName="jobs", Key={"job_key": {"S": JOB_KEY}}).get("Item", {})


def test_publish_reaches_sqs_as_json_with_attributes_and_eventbridge(aws):
    outcome = _success()
    result = publish(outcome)

    assert result["published"] is True and result["sns_message_id"] and result["event_id"]
    [raw] = _receive(aws["raw"])
    assert json.loads(raw) == outcome  # the "sqs" entry of the JSON message structure

    [envelope] = [json.loads(body) for body in _receive(aws["envelope"])]
    assert json.loads(envelope["Message"]) == outcome
    assert envelope["Subject"] == "Video ready: harbour.jpg"
    assert envelope["MessageAttributes"]["status"] == {"Type": "String", "Value": "succeeded"}
    assert envelope["MessageAttributes"]["provider"] == {"Type": "String", "Value": "nohuman"}

    assert _receive(aws["failures-only"]) == []  # the filter policy the email subscription uses

    [event] = [json.loads(body) for body in _receive(aws["events"])]
    assert event["source"] == "image-to-video"
    assert event["detail-type"] == "Video Succeeded"
    assert event["detail"] == outcome

    record = _job_record()
    assert record["notified_status"] == {"S": "succeeded"} and "notified_at" in record


def test_failure_is_published_with_failed_status_and_detail_type(aws):
    outcome = _failure()
    publish(outcome)
    [raw] = _receive(aws["failures-only"])
    assert json.loads(raw)["error"]["code"] == "InvalidOption"
    [event] = [json.loads(body) for body in _receive(aws["events"])]
    assert event["detail-type"] == "Video Failed"


def test_message_carries_the_email_text_for_email_subscribers(aws):
    sent = {}
    sns = client("sns")
    sns.meta.events.register("provide-client-params.sns.Publish", lambda params, **kwargs: sent.update(params))

    publish(_failure(code="ProviderAuthRejected", message="401 from the provider"))

    assert sent["MessageStructure"] == "json"
    message = json.loads(sent["Message"])
    assert set(message) == {"default", "email", "sqs", "lambda", "https"}
    assert json.loads(message["default"]) == json.loads(message["https"]) == json.loads(message["lambda"])
    assert "update the secret" in message["email"] and "401 from the provider" in message["email"]
    assert sent["Subject"] == "Video failed: harbour.jpg (ProviderAuthRejected)"


def test_second_publish_for_the_same_job_does_nothing(aws):
    assert publish(_success())["published"] is True
    assert publish(_success()) == {"published": False}
    assert publish(_failure()) == {"published": False}
    assert len(_receive(aws["raw"])) == 1
    assert len(_receive(aws["events"])) == 1


def test_existing_job_record_is_kept(aws):
    client("dynamodb").put_item(TableName="jobs", Item={"job_key": {"S": JOB_KEY}, "status": {"S": "running"}})
    publish(_success())
    record = _job_record()
    assert record["status"] == {"S": "running"} and "notified_at" in record


def test_failed_sns_publish_releases_the_claim_and_raises(aws, monkeypatch):
    monkeypatch.setenv("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    with pytest.raises(ClientError):
        publish(_success())
    record = _job_record()
    assert "notified_at" not in record and "notify_claim" not in record and "claim_expires_at" not in record
    assert _receive(aws["events"]) == []  # nothing half-sent

    # Released, not left to expire: the very next retry publishes.
    monkeypatch.setenv("TOPIC_ARN", aws["topic_arn"])
    assert publish(_success())["published"] is True


def test_a_throttled_record_of_the_sent_message_is_tried_again_so_no_retry_sends_twice(aws, monkeypatch):
    """SNS took the message; recording that it did is throttled a few times. Were the lease
    given up then, the workflow's retry would publish the success a second time."""
    real_update = client("dynamodb").update_item
    throttled = {"left": records.REMEMBER_ATTEMPTS - 1}

    def update_item(**params):
        if "notified_sns_message_id" in params.get("UpdateExpression", "") and throttled["left"]:
            throttled["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
            )
        return real_update(**params)

    monkeypatch.setattr(client("dynamodb"), "update_item", update_item)

    assert publish(_success())["published"] is True
    assert publish(_success()) == {"published": False}
    assert len(_receive(aws["raw"])) == 1
    assert throttled["left"] == 0


# --- the lease: a killed attempt never turns "exactly one" into zero ----------------------


class Killed(BaseException):
    """The Lambda dying mid-publish (timeout, out of memory)."""


def _kill_at(monkeypatch, name: str) -> None:
    def die(*args, **kwargs):
        raise Killed(name)

    module = records if name in ("mark_notified", "release_notification") else publishing
    monkeypatch.setattr(module, name, die)
    # A killed process runs no finally clause: the lease is never released.
    monkeypatch.setattr(records, "release_notification", lambda *args, **kwargs: None)


def _at(monkeypatch, seconds_later: float) -> None:
    CLOCK.now = FIXED_NOW + timedelta(seconds=seconds_later)


def _killed_after_the_claim(monkeypatch) -> None:
    with monkeypatch.context() as during:
        _kill_at(during, "publish_sns")
        with pytest.raises(Killed):
            publish(_success())


def test_claim_is_a_lease_with_a_ttl(aws, monkeypatch):
    _killed_after_the_claim(monkeypatch)
    record = _job_record()
    assert record["notify_claim"]["S"]
    assert int(record["claim_expires_at"]["N"]) == int(FIXED_NOW.timestamp()) + 45
    assert int(record["expires_at"]["N"]) == int((FIXED_NOW + timedelta(days=30)).timestamp())
    assert "notified_at" not in record


def test_retry_during_an_active_lease_raises_for_the_state_machine_to_retry(aws, monkeypatch):
    _killed_after_the_claim(monkeypatch)
    _at(monkeypatch, 44)

    with pytest.raises(publishing.OutcomePublishError, match="another attempt is publishing this outcome"):
        publish(_success())

    assert _receive(aws["raw"]) == [] and _receive(aws["events"]) == []


def test_killed_after_the_claim_then_a_retry_after_expiry_publishes_once(aws, monkeypatch):
    _killed_after_the_claim(monkeypatch)
    _at(monkeypatch, 46)

    result = publish(_success())

    assert result["published"] is True
    assert len(_receive(aws["raw"])) == 1 and len(_receive(aws["events"])) == 1
    record = _job_record()
    assert "notified_at" in record and "notify_claim" not in record
    assert publish(_success()) == {"published": False}
    assert _receive(aws["raw"]) == [] and _receive(aws["events"]) == []


def test_takeover_never_resends_a_channel_that_went_out(aws, monkeypatch):
    with monkeypatch.context() as during:
        _kill_at(during, "put_event")  # killed after SNS went out and its id was recorded
        with pytest.raises(Killed):
            publish(_success())
    first_sns_id = _job_record()["notified_sns_message_id"]["S"]
    assert len(_receive(aws["raw"])) == 1
    _at(monkeypatch, 46)

    result = publish(_success())

    assert result["published"] is True and result["sns_message_id"] == first_sns_id
    assert _receive(aws["raw"]) == []  # SNS not sent again
    assert len(_receive(aws["events"])) == 1


def test_both_channels_recorded_counts_as_done_even_without_notified_at(aws, monkeypatch):
    # Killed after the last channel's id was recorded, before notified_at was written.
    with monkeypatch.context() as during:
        _kill_at(during, "mark_notified")
        with pytest.raises(Killed):
            publish(_success())
    assert len(_receive(aws["raw"])) == 1 and len(_receive(aws["events"])) == 1
    assert "notified_at" not in _job_record()

    assert publish(_success()) == {"published": False}  # even while the lease runs
    _at(monkeypatch, 46)
    assert publish(_success()) == {"published": False}
    assert _receive(aws["raw"]) == [] and _receive(aws["events"]) == []


def test_existing_ttl_of_the_job_record_is_kept(aws):
    client("dynamodb").put_item(TableName="jobs", Item={"job_key": {"S": JOB_KEY}, "expires_at": {"N": "1800000000"}})
    publish(_success())
    assert _job_record()["expires_at"] == {"N": "1800000000"}


def test_retry_after_an_eventbridge_failure_sends_only_what_is_missing(aws, monkeypatch):
    events = client("events")
    real_put_events = events.put_events
    calls = []

    def refuse_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}
        return real_put_events(**kwargs)

    monkeypatch.setattr(events, "put_events", refuse_once)

    with pytest.raises(publishing.OutcomePublishError, match="InternalFailure"):
        publish(_success())
    record = _job_record()
    assert "notified_at" not in record and "notified_sns_message_id" in record
    assert len(_receive(aws["raw"])) == 1

    result = publish(_success())
    assert result["published"] is True
    assert result["sns_message_id"] == record["notified_sns_message_id"]["S"]
    assert _receive(aws["raw"]) == []  # SNS not sent twice
    assert len(_receive(aws["events"])) == 1


def test_publish_needs_the_jobs_table(aws, monkeypatch):
    monkeypatch.delenv("JOBS_TABLE")
    with pytest.raises(ValueError, match="JOBS_TABLE"):
        publish(_success())


def test_publish_error_wins_over_a_failed_release(aws, monkeypatch):
    monkeypatch.setenv("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    dynamodb = client("dynamodb")
    real_update = dynamodb.update_item

    def refuse_release(**kwargs):
        if kwargs["UpdateExpression"].startswith("REMOVE"):
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
            )
        return real_update(**kwargs)

    monkeypatch.setattr(dynamodb, "update_item", refuse_release)
    with pytest.raises(ClientError) as raised:
        publish(_success())
    assert raised.value.response["Error"]["Code"] == "NotFound"


def test_unexpected_claim_error_is_raised(aws, monkeypatch):
    monkeypatch.setenv("JOBS_TABLE", "no-such-table")
    with pytest.raises(ClientError) as raised:
        publish(_success())
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert _receive(aws["raw"]) == []
