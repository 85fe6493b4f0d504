import base64
import json
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import quote_plus

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError
from moto import mock_aws
from urllib3.exceptions import ReadTimeoutError

from i2v import admission, identity, records, submission
from i2v.aws import client
from tests import http_mock
from tests.aws_resources import create_table
from tests.fixtures import jpeg, load_event
from tests.provider_samples import NB_SUCCESS

INPUT = "i2v-input-123456789012-us-east-1"
OUTPUT = "i2v-output-123456789012-us-east-1"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:i2v-pipeline"
NH_CREATE = "https://api.nohuman.studio/v1/videos/generate"
NB_CREATE = "https://nanobananavideo.com/api/v1/image-to-video.php"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("PROVIDER", "nohuman")
    monkeypatch.setenv("PROVIDER_API_KEY_SECRET", "i2v/provider-key")
    monkeypatch.delenv("PROVIDER_BASE_URL", raising=False)
    monkeypatch.setenv("OUTPUT_BUCKET", OUTPUT)
    monkeypatch.setenv("WORK_PREFIX", "work/")
    monkeypatch.setenv("CONTROL_TABLE", "i2v-control")
    monkeypatch.setenv("JOBS_TABLE", "i2v-jobs")
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE_ARN)
    monkeypatch.setenv("PRESIGN_EXPIRY_SECONDS", "3600")
    for name in ("DEFAULT_PROMPT", "DEFAULT_DURATION", "DEFAULT_MODE", "MAX_SOURCE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    parameters.clear_caches()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=INPUT)
        s3.create_bucket(Bucket=OUTPUT)
        create_table("i2v-control", key="pk")
        create_table("i2v-jobs")
        boto3.client("secretsmanager").create_secret(Name="i2v/provider-key", SecretString="sk-test")
        boto3.client("stepfunctions").create_state_machine(
            name="i2v-pipeline",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/i2v-pipeline",
        )
        yield s3
    parameters.clear_caches()


class Workflow:
    """Submit, then (once per new execution, as Step Functions would) Prepare and Admit, in
    process: the tests below check what an upload leads to up to the provider's create."""

    def __init__(self):
        from functions.admit import app as admit
        from functions.prepare import app as prepare
        from functions.submit import app as submit

        self.submit, self.prepare, self.admit = submit, prepare, admit
        self.final = {}  # execution name -> the state after Admit

    def lambda_handler(self, event, context):
        result = self.submit.lambda_handler(event, context)
        sfn = boto3.client("stepfunctions")
        for item in result["results"]:
            name = item["execution"]
            if name not in self.final:
                arn = f"{MACHINE_ARN.replace(':stateMachine:', ':execution:')}:{name}"
                state = json.loads(sfn.describe_execution(executionArn=arn)["input"])
                self.final[name] = self.admit.lambda_handler(self.prepare.lambda_handler(state, context), context)
            item["status"] = self.final[name]["status"]
        return result


@pytest.fixture
def app():
    workflow = Workflow()
    WORKFLOWS[:] = [workflow]
    return workflow


WORKFLOWS = []


def upload(s3, key, body, metadata=None):
    return s3.put_object(Bucket=INPUT, Key=key, Body=body, Metadata=metadata or {})


def event_for(s3, key, body=None, metadata=None):
    """The sample put event, pointing at an object we really uploaded (its key URL-encoded as S3 does)."""
    put = upload(s3, key, jpeg() if body is None else body, metadata)
    event = load_event("s3_put.json")
    s3_object = event["Records"][0]["s3"]["object"]
    s3_object["key"] = quote_plus(key, safe="/")
    s3_object["eTag"] = put["ETag"].strip('"')
    s3_object["size"] = len(jpeg() if body is None else body)
    return event


def executions():
    """The job state after Admit, one per execution started."""
    sfn = boto3.client("stepfunctions")
    found = sfn.list_executions(stateMachineArn=MACHINE_ARN)["executions"]
    final = WORKFLOWS[0].final if WORKFLOWS else {}
    return [
        final.get(e["name"]) or json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
        for e in found
    ]


def nohuman_created():
    http_mock.post(
        NH_CREATE,
        json={
            "id": "gen_img2v_x7y8z9",
            "model": "nohuman-x33",
            "status": "created",
            "poll_url": "/v1/videos/generations/gen_img2v_x7y8z9",
        },
    )


def count_calls(operation):
    calls = []
    client("s3").meta.events.register(f"before-call.s3.{operation}", lambda **kwargs: calls.append(operation))
    return calls


# ---------------------------------------------------------------- happy paths


@http_mock.activate
def test_nohuman_upload_starts_a_running_execution(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg", metadata={"prompt": "boats drift", "mode": "hq"})
    nohuman_created()

    result = app.lambda_handler(event, lambda_context)

    [state] = executions()
    assert result == {
        "results": [
            {"job_key": state["job_key"], "status": "running", "execution": identity.execution_name(state["job_key"])}
        ]
    }
    assert state["status"] == "running"
    assert state["provider_job_id"] == "gen_img2v_x7y8z9"
    assert state["options"]["prompt"] == "boats drift" and state["options"]["mode"] == "hq"
    assert state["cost"] == {"amount": 0.94, "currency": "USD"}
    assert state["source"]["key"] == "uploads/harbour.jpg" and state["source"]["size"] > 0
    assert state["image"]["bucket"] == OUTPUT
    assert state["image"]["key"] == f"work/{state['job_key']}/input.jpg"
    assert aws.get_object(Bucket=OUTPUT, Key=state["image"]["key"])["ContentType"] == "image/jpeg"
    sent = json.loads(http_mock.calls[0].request.body)
    assert sent["prompt"] == "boats drift" and sent["mode"] == "hq"
    assert f"/work/{state['job_key']}/input.jpg" in sent["image_url"]  # presigned link to the normalised copy
    assert "X-Amz-Signature" in sent["image_url"]
    assert http_mock.calls[0].request.headers["Authorization"] == "Bearer sk-test"


@http_mock.activate
def test_nanobanana_upload_is_completed_straight_away(aws, app, lambda_context, monkeypatch):
    monkeypatch.setenv("PROVIDER", "nanobanana")
    event = event_for(aws, "uploads/harbour.jpg", metadata={"video-model": "veo3"})
    http_mock.post(NB_CREATE, json=NB_SUCCESS)

    result = app.lambda_handler(event, lambda_context)

    [state] = executions()
    assert result["results"][0]["status"] == "completed"
    assert state["status"] == "completed"
    assert state["result"] == {"video_url": NB_SUCCESS["video_url"], "thumbnail_url": NB_SUCCESS["thumbnail_url"]}
    assert state["cost"] == {"credits": 6}
    assert state["rate_limit"] == {"count": 2, "limit": 30, "remaining": 28}
    assert state["options"]["video_model"] == "veo3" and state["options"]["duration"] == 8


@http_mock.activate
def test_small_image_is_accepted_with_a_warning(aws, app, lambda_context):
    body = jpeg(640, 480)
    event = event_for(aws, "uploads/small.jpg", body=body)
    nohuman_created()
    app.lambda_handler(event, lambda_context)
    [state] = executions()
    assert state["status"] == "running"
    assert state["warnings"], "a below-recommended image carries a warning"


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "key",
    [
        "uploads/my photo+1.jpg",
        "uploads/2026/11/22/nested/deep/été à la plage.jpg",
        "uploads/a%b&c=d.jpg",
        "uploads/日本語 ファイル.jpg",
    ],
)
@http_mock.activate
def test_keys_are_decoded(aws, app, lambda_context, key):
    event = event_for(aws, key)
    nohuman_created()
    app.lambda_handler(event, lambda_context)
    [state] = executions()
    assert state["source"]["key"] == key
    assert state["status"] == "running"


@http_mock.activate
def test_sample_encoded_key_event_is_decoded(aws, app, lambda_context):
    key = "uploads/2026/my photo+1 été.jpg"
    put = upload(aws, key, jpeg())
    event = load_event("s3_put_encoded_key.json")
    event["Records"][0]["s3"]["object"]["eTag"] = put["ETag"].strip('"')
    nohuman_created()
    app.lambda_handler(event, lambda_context)
    [state] = executions()
    assert state["source"]["key"] == key


# ---------------------------------------------------------------- idempotency


@http_mock.activate
def test_the_same_event_twice_makes_one_job_and_one_execution(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg")
    nohuman_created()
    first = app.lambda_handler(event, lambda_context)
    redelivered = json.loads(json.dumps(event))
    heads = count_calls("HeadObject")
    second = app.lambda_handler(redelivered, lambda_context)
    assert heads == []  # Submit only starts the execution; the duplicate met the same one
    assert first == second
    assert len(http_mock.calls) == 1
    assert len(executions()) == 1


def test_submit_only_starts_the_execution(aws, lambda_context):
    from functions.submit import app as submit

    WORKFLOWS[:] = []
    event = event_for(aws, "uploads/harbour.jpg")
    heads, gets = count_calls("HeadObject"), count_calls("GetObject")
    result = submit.lambda_handler(event, lambda_context)
    assert heads == gets == [] and result["results"][0]["status"] == "queued"
    [state] = executions()
    assert state["status"] == "queued" and state["submitted_at"] == "2026-11-22T10:00:00Z"  # the event's time
    # A redelivery (same event) meets the same execution with the same input.
    assert submit.lambda_handler(json.loads(json.dumps(event)), lambda_context) == result
    assert len(executions()) == 1


@http_mock.activate
def test_crash_after_create_then_retry_does_not_create_again(aws, app, lambda_context):
    from i2v import steps

    event = event_for(aws, "uploads/harbour.jpg")
    nohuman_created()
    with mock.patch.object(steps.polling, "first_wait", side_effect=RuntimeError("Lambda died")):
        with pytest.raises(RuntimeError):
            app.lambda_handler(event, lambda_context)
    assert len(http_mock.calls) == 1

    # Step Functions retries the Admit task with the same input.
    [queued] = executions()
    state = app.admit.lambda_handler(app.prepare.lambda_handler(queued, lambda_context), lambda_context)
    assert len(http_mock.calls) == 1  # the recorded job was reused
    assert state["provider_job_id"] == "gen_img2v_x7y8z9" and state["status"] == "running"


@http_mock.activate
def test_crash_mid_create_fails_with_unknown_outcome_and_no_new_create(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg")
    s3_object = event["Records"][0]["s3"]["object"]
    key = identity.job_key(INPUT, "uploads/harbour.jpg", None, s3_object["eTag"])
    from datetime import datetime

    records.claim_submission("i2v-jobs", key, provider="nohuman", now=datetime.now(UTC))
    nohuman_created()

    app.lambda_handler(event, lambda_context)

    assert len(http_mock.calls) == 0
    [state] = executions()
    assert state["status"] == "failed"
    assert state["error"]["code"] == "SubmitOutcomeUnknown"
    assert "nothing was resubmitted" in state["error"]["message"]


def test_execution_already_exists_counts_as_started(aws):
    from i2v.settings import SubmitSettings

    state = {"job_key": "a" * 64, "status": "running"}
    settings = SubmitSettings.from_env()
    submission.start_execution(state, state_machine_arn=settings.state_machine_arn)
    assert submission.start_execution(
        {**state, "poll_count": 1}, state_machine_arn=settings.state_machine_arn
    ) == identity.execution_name("a" * 64)
    assert len(executions()) == 1


@http_mock.activate
def test_unreadable_api_key_raises_without_claiming_and_a_retry_succeeds(aws, app, lambda_context):
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    secrets = boto3.client("secretsmanager")
    secrets.delete_secret(SecretId="i2v/provider-key", ForceDeleteWithoutRecovery=True)
    event = event_for(aws, "uploads/harbour.jpg")
    nohuman_created()

    with pytest.raises(GetParameterError):  # the state machine retries Admit on this name
        app.lambda_handler(event, lambda_context)

    assert len(http_mock.calls) == 0
    assert boto3.client("dynamodb").scan(TableName="i2v-jobs")["Count"] == 0  # no claim left behind
    assert admission.snapshot(table="i2v-control", provider="nohuman")["leases"] == {}  # nor an admission slot

    secrets.create_secret(Name="i2v/provider-key", SecretString="sk-test")
    parameters.clear_caches()
    http_mock.replace(http_mock.POST, NH_CREATE, body=ReadTimeoutError(None, NH_CREATE, "read timed out"))
    [queued] = executions()
    state = app.admit.lambda_handler(app.prepare.lambda_handler(queued, lambda_context), lambda_context)
    assert state["status"] == "failed" and state["error"]["code"] == "SubmitOutcomeUnknown"
    assert len(http_mock.calls) == 1


@http_mock.activate
def test_provider_unavailable_goes_back_to_waiting_without_sleeping(aws, app, lambda_context, monkeypatch):
    event = event_for(aws, "uploads/harbour.jpg")
    http_mock.post(NH_CREATE, status=503)
    slept = []
    real_get_provider = app.admit.get_provider
    monkeypatch.setattr(
        app.admit, "get_provider", lambda settings, **kw: real_get_provider(settings, sleep=slept.append, **kw)
    )
    app.lambda_handler(event, lambda_context)
    [state] = executions()
    assert state["status"] == "queued" and state["error"] is None and state["wait_seconds"] >= 1
    assert len(http_mock.calls) == 1 and slept == []  # one attempt; the wait is a Wait state


# ---------------------------------------------------------------- stack defaults vs per-image model


@pytest.mark.parametrize(("model", "duration"), [("veo3", 8), ("sora2", 10)])
@http_mock.activate
def test_template_default_duration_gives_way_to_the_models_own(aws, app, lambda_context, monkeypatch, model, duration):
    monkeypatch.setenv("PROVIDER", "nanobanana")
    monkeypatch.setenv("DEFAULT_DURATION", "5")  # what the template always sets
    monkeypatch.setenv("DEFAULT_ASPECT_RATIO", "16:9")
    event = event_for(aws, "uploads/harbour.jpg", metadata={"video-model": model})
    http_mock.post(NB_CREATE, json=NB_SUCCESS)

    result = app.lambda_handler(event, lambda_context)

    assert result["results"][0]["status"] == "completed"
    [state] = executions()
    assert state["options"]["duration"] == duration
    assert json.loads(http_mock.calls[0].request.body)["duration"] == duration
    assert any(w.startswith("stack default ignored for this image: duration") for w in state["warnings"])


@http_mock.activate
def test_nohuman_with_a_4_3_stack_default_uses_16_9_and_says_so(aws, app, lambda_context, monkeypatch):
    monkeypatch.setenv("DEFAULT_ASPECT_RATIO", "4:3")
    event = event_for(aws, "uploads/harbour.jpg", body=jpeg(640, 480))
    nohuman_created()

    app.lambda_handler(event, lambda_context)

    [state] = executions()
    assert state["status"] == "running"
    assert json.loads(http_mock.calls[0].request.body)["aspect_ratio"] == "16:9"
    assert state["warnings"][0].startswith("stack default ignored for this image: aspect_ratio")
    assert "below the 1024x1024" in state["warnings"][1]  # image warnings are kept alongside


# ---------------------------------------------------------------- expected failures


def assert_failed(code, fragment=""):
    [state] = executions()
    assert state["status"] == "failed"
    assert state["error"]["code"] == code, state["error"]
    assert fragment in state["error"]["message"]
    return state


@http_mock.activate
def test_invalid_option_fails_without_any_provider_request(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg", metadata={"duration": "7"})
    nohuman_created()
    result = app.lambda_handler(event, lambda_context)
    assert result["results"][0]["status"] == "failed"
    state = assert_failed("InvalidOption", "duration must be 5, 10 seconds for nohuman (got '7')")
    assert state["options"]["duration"] == "7"  # what was asked for
    assert len(http_mock.calls) == 0


@http_mock.activate
def test_unknown_option_fails_without_any_provider_request(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg", metadata={"video_model": "veo3"})
    app.lambda_handler(event, lambda_context)
    assert_failed("InvalidOption", "not an option of nohuman")
    assert len(http_mock.calls) == 0


@http_mock.activate
def test_zero_byte_object_is_refused_without_reading_it(aws, app, lambda_context):
    event = event_for(aws, "uploads/empty.jpg", body=b"")
    reads = count_calls("GetObject")
    app.lambda_handler(event, lambda_context)
    assert_failed("EmptyObject", "empty")
    assert reads == [] and len(http_mock.calls) == 0


@http_mock.activate
def test_oversized_object_is_refused_without_reading_it(aws, app, lambda_context, monkeypatch):
    monkeypatch.setenv("MAX_SOURCE_BYTES", "1000")
    event = event_for(aws, "uploads/big.jpg")
    reads = count_calls("GetObject")
    app.lambda_handler(event, lambda_context)
    assert_failed("ImageTooLarge", "over 1000 bytes")
    assert reads == [] and len(http_mock.calls) == 0


@http_mock.activate
def test_corrupt_image_fails_without_any_provider_request(aws, app, lambda_context):
    event = event_for(aws, "uploads/broken.jpg", body=jpeg()[:300])
    app.lambda_handler(event, lambda_context)
    [state] = executions()
    assert state["status"] == "failed" and state["error"]["code"] in ("CorruptImage", "InvalidImage")
    assert len(http_mock.calls) == 0


@http_mock.activate
def test_object_deleted_before_processing_fails_cleanly(aws, app, lambda_context):
    event = event_for(aws, "uploads/gone.jpg")
    aws.delete_object(Bucket=INPUT, Key="uploads/gone.jpg")
    app.lambda_handler(event, lambda_context)
    assert_failed("SourceMissing", "no longer exists")


@http_mock.activate
def test_provider_auth_rejection_fails_the_job(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg")
    http_mock.post(NH_CREATE, status=401, json={"error": "invalid key"})
    app.lambda_handler(event, lambda_context)
    assert_failed("ProviderAuthRejected", "provider rejected the API key")
    assert len(http_mock.calls) == 1


@http_mock.activate
def test_provider_validation_rejection_fails_the_job(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg")
    http_mock.post(NH_CREATE, status=400, json={"error": {"message": "image_url is not reachable"}})
    app.lambda_handler(event, lambda_context)
    assert_failed("ProviderRejectedRequest", "image_url is not reachable")


@http_mock.activate
def test_read_timeout_fails_with_unknown_outcome_after_exactly_one_request(aws, app, lambda_context):
    event = event_for(aws, "uploads/harbour.jpg")
    http_mock.post(NH_CREATE, body=ReadTimeoutError(None, NH_CREATE, "read timed out"))
    app.lambda_handler(event, lambda_context)
    assert_failed("SubmitOutcomeUnknown", "outcome is unknown")
    assert len(http_mock.calls) == 1


# ---------------------------------------------------------------- other events, unexpected errors, metrics


def test_s3_test_event_is_ignored(aws, app, lambda_context):
    assert app.lambda_handler({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": INPUT}, lambda_context) == {
        "results": []
    }


def test_unexpected_errors_raise_for_s3_retries(aws, app, lambda_context, monkeypatch):
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE_ARN + "-missing")
    event = event_for(aws, "uploads/bad.jpg", metadata={"duration": "7"})
    with pytest.raises(ClientError, match="StateMachineDoesNotExist"):
        app.lambda_handler(event, lambda_context)


@http_mock.activate
def test_metrics_count_submitted_and_rejected(aws, app, lambda_context, capsys):
    nohuman_created()
    app.lambda_handler(event_for(aws, "uploads/ok.jpg"), lambda_context)
    assert '"JobsSubmitted"' in capsys.readouterr().out
    app.lambda_handler(event_for(aws, "uploads/bad.jpg", metadata={"mode": "ultra"}), lambda_context)
    assert '"JobsRejected"' in capsys.readouterr().out


@http_mock.activate
def test_a_japanese_prompt_sent_rfc2047_encoded_reaches_the_provider_decoded(aws, app, lambda_context):
    prompt = "夕暮れの港、ゆっくりとズームイン"
    encoded = "=?UTF-8?B?" + base64.b64encode(prompt.encode()).decode() + "?="
    event = event_for(aws, "uploads/harbour.jpg", metadata={"prompt": encoded})
    nohuman_created()

    app.lambda_handler(event, lambda_context)

    assert json.loads(http_mock.calls[0].request.body)["prompt"] == prompt
    assert executions()[0]["options"]["prompt"] == prompt


@http_mock.activate
def test_signed_result_links_stay_out_of_the_execution_and_the_job_record(aws, app, lambda_context, monkeypatch):
    monkeypatch.setenv("PROVIDER", "nanobanana")
    signed = {
        **NB_SUCCESS,
        "video_url": NB_SUCCESS["video_url"] + "?Expires=1800000000&Signature=SECRETSIG",
        "thumbnail_url": NB_SUCCESS["thumbnail_url"] + "?X-Amz-Signature=SECRETTHUMB",
    }
    event = event_for(aws, "uploads/harbour.jpg")
    http_mock.post(NB_CREATE, json=signed)

    app.lambda_handler(event, lambda_context)

    [state] = executions()
    assert state["result"] == {"video_url": NB_SUCCESS["video_url"], "thumbnail_url": NB_SUCCESS["thumbnail_url"]}
    dynamodb = boto3.client("dynamodb")
    record = dynamodb.get_item(TableName="i2v-jobs", Key={"job_key": {"S": state["job_key"]}})["Item"]
    assert "SECRET" not in json.dumps(record)
    # Only the short-lived item holds the links as given, for Store.
    kept = dynamodb.get_item(TableName="i2v-jobs", Key={"job_key": {"S": state["job_key"] + "#result"}})["Item"]
    assert kept["video_url"]["S"] == signed["video_url"]
    assert kept["thumbnail_url"]["S"] == signed["thumbnail_url"]
    assert int(kept["expires_at"]["N"]) <= datetime.now(UTC).timestamp() + 48 * 3600 + 5
