"""The failure notifier: job states from the state machine, Catch output, and submit's on-failure queue."""

import json

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws

from functions.notify_failure import app
from i2v import failure, identity, state
from tests.aws_resources import create_table, create_topic_with_queue


@pytest.fixture
def aws(monkeypatch):
    """Jobs table and the outcome topic, with an SQS queue subscribed to read what was published."""
    with mock_aws():
        create_table("jobs")
        topic_arn, queue_url = create_topic_with_queue()
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        monkeypatch.setenv("PROVIDER", "nohuman")
        monkeypatch.setenv("JOBS_TABLE", "jobs")
        monkeypatch.setenv("TOPIC_ARN", topic_arn)
        yield {"sqs": sqs, "sns": sns, "queue_url": queue_url, "topic_arn": topic_arn}


def published(aws) -> list[dict]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(message["Body"])["Message"]) for message in messages]


def test_caught_store_error_becomes_its_stable_code(aws, event, lambda_context, capsys):
    job = event("notify_failure_caught.json")

    result = app.lambda_handler(job, lambda_context)

    assert result == {"job_key": job["job_key"], "status": "failed", "error_code": "ResultFetchFailed"}
    [outcome] = published(aws)
    assert outcome["status"] == "failed"
    assert outcome["output"] is None
    assert outcome["error"] == {
        "code": "ResultFetchFailed",
        "message": "the provider's video link has expired or was refused (HTTP 403 from cdn.nanobananavideo.com)",
    }
    assert outcome["provider"] == "nanobanana" and outcome["provider_job_id"] == "vid_f7g8h9i0j1k2"
    assert '"JobsFailed"' in capsys.readouterr().out


def test_timed_out_job_keeps_its_error(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")

    result = app.lambda_handler(job, lambda_context)

    assert result["error_code"] == "TimedOut"
    [outcome] = published(aws)
    assert outcome["error"] == {"code": "TimedOut", "message": "timed out after 30 minutes"}
    assert outcome["source"]["key"] == "uploads/lighthouse.png"
    assert outcome["cost"] == {"amount": 1.87, "currency": "USD"}


def test_failed_job_from_the_provider_keeps_its_error(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")
    job.update(status="failed", error={"code": "ProviderJobFailed", "message": "content policy violation"})

    app.lambda_handler(job, lambda_context)

    assert published(aws)[0]["error"] == {"code": "ProviderJobFailed", "message": "content policy violation"}


@pytest.mark.parametrize(
    ("name", "cause", "code", "message"),
    [
        (
            "ProviderAuthError",
            {"errorMessage": "the provider rejected the API key", "errorType": "ProviderAuthError"},
            "ProviderAuthRejected",
            "the provider rejected the API key",
        ),
        (
            "ProviderTransientError",
            {"errorMessage": "503 after 3 attempts", "errorType": "ProviderTransientError"},
            "ProviderUnavailable",
            "503 after 3 attempts",
        ),
        ("KeyError", {"errorMessage": "'result'", "errorType": "KeyError"}, "InternalError", "'result'"),
        (
            "Lambda.Unknown",
            "The cause could not be determined because Lambda did not return an error type.",
            "InternalError",
            "The cause could not be determined because Lambda did not return an error type.",
        ),
        ("States.Timeout", "", "InternalError", "a step of the workflow failed with States.Timeout"),
    ],
)
def test_caught_errors_map_to_codes(name, cause, code, message):
    caught = {"Error": name, "Cause": json.dumps(cause) if isinstance(cause, dict) else cause}

    assert failure.error_from_caught(caught) == {"code": code, "message": message}


def test_job_stopped_by_the_poll_cap_is_a_timeout(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")
    job.update(status="running", error=None, poll_count=720, max_polls=720)

    result = app.lambda_handler(job, lambda_context)

    assert result["error_code"] == "TimedOut"
    assert "720 status checks" in published(aws)[0]["error"]["message"]


def test_unexpected_status_without_error_is_an_internal_error(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")
    job.update(status="mystery", error=None, poll_count=1)

    app.lambda_handler(job, lambda_context)

    error = published(aws)[0]["error"]
    assert error["code"] == "InternalError" and "'mystery'" in error["message"]


def test_timed_out_without_error_names_the_deadline(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")
    job.update(error=None, max_wait_minutes=45)

    app.lambda_handler(job, lambda_context)

    assert published(aws)[0]["error"] == {"code": "TimedOut", "message": "timed out after 45 minutes"}


def test_a_second_failure_for_the_same_job_is_not_published_nor_counted(aws, event, lambda_context, capsys):
    job = event("notify_failure_caught.json")

    app.lambda_handler(job, lambda_context)
    assert '"JobsFailed"' in capsys.readouterr().out
    app.lambda_handler(job, lambda_context)

    assert len(published(aws)) == 1
    assert '"JobsFailed"' not in capsys.readouterr().out  # the duplicate is the same failed job


def test_submit_on_failure_record_notifies_each_upload(aws, event, lambda_context):
    sqs_event = event("submit_on_failure.json")

    result = app.lambda_handler(sqs_event, lambda_context)

    assert result == {"batchItemFailures": []}
    [outcome] = published(aws)
    key = "uploads/2026/my photo+1 été.jpg"  # decoded from my+photo%2B1+%C3%A9t%C3%A9.jpg
    assert outcome["source"]["key"] == key
    assert outcome["source"]["bucket"] == "i2v-input-123456789012-us-east-1"
    assert outcome["job_key"] == identity.job_key(
        "i2v-input-123456789012-us-east-1", key, None, "9b2cf535f27731c974343645a3985328"
    )
    assert outcome["provider"] == "nohuman"
    assert outcome["error"]["code"] == "SubmitFailed"
    message = outcome["error"]["message"]
    assert "RetriesExhausted after 3 attempts" in message
    assert "ProvisionedThroughputExceededException" in message
    assert outcome["submitted_at"] == "2026-11-22T10:00:00Z"


def test_destination_record_with_several_uploads_and_a_test_event(aws, event, lambda_context):
    sqs_event = event("submit_on_failure.json")
    body = json.loads(sqs_event["Records"][0]["body"])
    second = json.loads(json.dumps(body["requestPayload"]["Records"][0]))
    second["s3"]["object"]["key"] = "uploads/second.png"
    body["requestPayload"]["Records"].append(second)
    test_event = dict(
        sqs_event["Records"][0],
        messageId="test-event",
        body=json.dumps(dict(body, requestPayload={"Event": "s3:TestEvent"})),
    )
    sqs_event["Records"] = [dict(sqs_event["Records"][0], body=json.dumps(body)), test_event]

    result = app.lambda_handler(sqs_event, lambda_context)

    assert result == {"batchItemFailures": []}
    assert sorted(outcome["source"]["key"] for outcome in published(aws)) == [
        "uploads/2026/my photo+1 été.jpg",
        "uploads/second.png",
    ]


def test_when_no_record_can_be_published_the_whole_batch_fails(aws, event, lambda_context):
    sqs_event = event("submit_on_failure.json")
    aws["sns"].delete_topic(TopicArn=aws["topic_arn"])

    # Powertools raises when every record failed, so SQS redelivers the batch.
    with pytest.raises(BatchProcessingError):
        app.lambda_handler(sqs_event, lambda_context)
    assert published(aws) == []


def test_malformed_record_fails_alone(aws, event, lambda_context):
    sqs_event = event("submit_on_failure.json")
    sqs_event["Records"].append(dict(sqs_event["Records"][0], messageId="broken", body="not json"))

    result = app.lambda_handler(sqs_event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": "broken"}]}
    assert len(published(aws)) == 1


def test_the_state_is_parsed_at_the_boundary(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")
    job["poll_count"] = "three"  # a broken workflow, not a user error: the task fails visibly
    with pytest.raises(state.InvalidJobStateError):
        app.lambda_handler(job, lambda_context)
    assert published(aws) == []
    with pytest.raises(state.InvalidJobStateError):
        app.lambda_handler({"status": "failed"}, lambda_context)


def test_an_older_state_missing_fields_is_filled_in(aws, event, lambda_context):
    job = event("notify_failure_timed_out.json")
    for name in ("checks", "reserved_at", "admit_count"):
        job.pop(name, None)
    assert app.lambda_handler(job, lambda_context)["status"] == "failed"
    assert len(published(aws)) == 1
