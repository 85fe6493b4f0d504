"""The operator's commands (`i2v submit | jobs | show | redrive | cost`) against the local stack,
run as a user runs them: the `i2v` executable with `--local`, in a directory whose
`.i2v/local.json` names the stack (the file `i2v local up` writes)."""

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from i2v.identity import job_key
from i2v_local.ops.target import write_local_file
from tests.e2e.helpers import jpeg, start_stack, unique

I2V = Path(sys.executable).with_name("i2v")
PROMPT = "ゆっくりズームイン、夕暮れの港 — café crème"


@pytest.fixture(scope="module")
def stack():
    # Caps high enough never to bother the other tests; the cap test fills a counter up to them.
    with start_stack("nohuman", params={"DailyJobCap": "1000", "DailySpendCapUsd": "100"}) as running:
        yield running


@pytest.fixture(scope="module")
def workdir(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("operator")
    write_local_file(
        {"endpoint_url": stack.endpoint_url, "region": "us-east-1", "outputs": stack.stack_outputs()}, directory
    )
    return directory


def i2v(workdir, *args, timeout=180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [str(I2V), *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def creates_for(stack, key):
    """The provider create requests the emulator received for one job (its image URL names the job)."""
    return [j for j in stack.emulator_jobs() if j["endpoint"].startswith("POST") and key in json.dumps(j["options"])]


def folder(tmp_path, name, count):
    path = tmp_path / name
    path.mkdir()
    for i in range(count):
        (path / f"shot-{i}.jpg").write_bytes(jpeg(1280, 720, color=(30 * i, 90, 160)))
    return path


def test_a_folder_submitted_with_wait_ends_in_videos_with_their_cost(stack, workdir, tmp_path):
    photos = folder(tmp_path, unique("trip"), 2)
    result = i2v(
        workdir, "submit", "--local", str(photos), "--prompt", PROMPT, "--wait", "--out", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "PROVIDER", "STATUS", "TIME", "COST", "VIDEO", "/", "ERROR"]
    assert len(lines) == 3 and all("succeeded" in line and "$0.47" in line for line in lines[1:])
    # Live progress went to stderr, one line per change of phase.
    assert "rendering" in result.stderr and "done in" in result.stderr
    videos = sorted((tmp_path / "out").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)
    # The non-ASCII prompt went as RFC 2047 metadata and reached the provider decoded.
    key = f"uploads/{photos.name}/shot-0.jpg"
    head = stack.client("s3").head_object(Bucket=stack.input_bucket, Key=key)
    assert head["Metadata"]["prompt"].startswith("=?utf-8?b?")
    (create,) = creates_for(stack, job_key(stack.input_bucket, key, head.get("VersionId"), head["ETag"].strip('"')))
    assert create["options"]["prompt"] == PROMPT


def test_submit_json_then_jobs_lists_them_newest_first(stack, workdir, tmp_path):
    image = tmp_path / f"{unique('one')}.jpg"
    image.write_bytes(jpeg())
    submitted = i2v(workdir, "submit", "--local", str(image), "--json")
    assert submitted.returncode == 0, submitted.stderr
    (row,) = json_lines(submitted.stdout)
    assert row["status"] == "uploaded" and row["source_key"] == f"uploads/{image.name}" and len(row["job_key"]) == 64
    waited = i2v(workdir, "submit", "--local", str(image), "--wait", "--json")  # a second version: a second job
    (done,) = json_lines(waited.stdout)
    assert waited.returncode == 0 and done["status"] == "succeeded" and done["cost_usd"] == 0.47
    assert done["video_uri"].startswith(f"s3://{stack.output_bucket}/videos/")

    listed = json_lines(i2v(workdir, "jobs", "--local", "--json", "--limit", "50").stdout)
    created = [r["created_at"] for r in listed]
    assert created == sorted(created, reverse=True)
    assert done["job_key"] in [r["job_key"] for r in listed]
    table = i2v(workdir, "jobs", "--local", "--status", "succeeded", "--since", "1h")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["CREATED", "SOURCE", "PROVIDER", "STATUS", "TIME", "COST", "JOB"]
    assert done["job_key"][:12] in table.stdout
    assert "failed" not in table.stdout.split("\n", 1)[1]


def test_jobs_are_served_by_a_query_on_the_status_index(stack):
    table = stack.client("dynamodb").describe_table(TableName=stack.stack_outputs()["JobsTableName"])["Table"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByStatus"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["job_status", "created_at"]
    source = (Path(__file__).parents[2] / "local" / "i2v_local" / "ops" / "records.py").read_text()
    assert ".query(" in source and ".scan(" not in source


def test_each_image_may_choose_its_provider(stack, workdir, tmp_path):
    image = tmp_path / f"{unique('banana')}.jpg"
    image.write_bytes(jpeg())
    result = i2v(
        workdir,
        "submit",
        "--local",
        str(image),
        "--provider",
        "nanobanana",
        "--option",
        "duration=4",
        "--wait",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    (row,) = json_lines(result.stdout)
    assert row["provider"] == "nanobanana" and row["cost_credits"] == 4 and row["cost_usd"] is None
    (create,) = creates_for(stack, row["job_key"])
    assert create["provider"] == "nanobanana" and create["options"]["duration"] == 4
    # Options are validated against the chosen provider: mode is NoHuman's.
    bad = i2v(
        workdir, "submit", "--local", str(image), "--provider", "nanobanana", "--option", "mode=hq", "--wait", "--json"
    )
    (failed,) = json_lines(bad.stdout)
    assert bad.returncode == 1 and failed["error_code"] == "InvalidOption" and "belongs to nohuman" in failed["error"]
    assert creates_for(stack, failed["job_key"]) == []


def test_show_prints_the_record_steps_notification_and_a_fresh_link(stack, workdir, tmp_path):
    image = tmp_path / f"{unique('show')}.jpg"
    image.write_bytes(jpeg())
    (row,) = json_lines(i2v(workdir, "submit", "--local", str(image), "--wait", "--json").stdout)
    table = i2v(workdir, "show", "--local", f"uploads/{image.name}")
    assert table.returncode == 0, table.stderr
    assert f"job:           {row['job_key']}" in table.stdout
    assert "Prepare" in table.stdout and "Admit" in table.stdout and "Store" in table.stdout
    assert "notification:  succeeded" in table.stdout
    shown = json_lines(i2v(workdir, "show", "--local", row["job_key"][:12], "--json", "--expires", "600").stdout)[0]
    assert shown["status"] == "succeeded" and shown["execution"]["status"] == "SUCCEEDED"
    assert [s["step"] for s in shown["steps"]][-2:] == ["Store", "VideoStored"]
    assert all(s["seconds"] is not None for s in shown["steps"])
    assert shown["notification"]["sns_message_id"] and shown["notification"]["body"]["job_key"] == row["job_key"]
    video = requests.get(shown["download_url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    missing = i2v(workdir, "show", "--local", "uploads/never-uploaded.jpg")
    assert missing.returncode == 2 and "no job key and no object" in missing.stderr


def test_an_upload_over_the_daily_cap_costs_nothing_and_says_why(stack, workdir, tmp_path):
    jobs_table = stack.stack_outputs()["JobsTableName"]
    counter = {"job_key": {"S": f"spend#nohuman#{datetime.now(UTC):%Y-%m-%d}"}}
    ddb = stack.client("dynamodb")
    before = ddb.get_item(TableName=jobs_table, Key=counter).get("Item")
    # Today's count stands at the stack's DailyJobCap (1000).
    ddb.update_item(
        TableName=jobs_table,
        Key=counter,
        UpdateExpression="SET jobs = :cap",
        ExpressionAttributeValues={":cap": {"N": "1000"}},
    )
    try:
        image = tmp_path / f"{unique('capped')}.jpg"
        image.write_bytes(jpeg())
        result = i2v(workdir, "submit", "--local", str(image), "--wait", "--json")
        (row,) = json_lines(result.stdout)
        assert result.returncode == 1
        assert row["status"] == "failed" and row["error_code"] == "SpendCapReached"
        assert "daily job cap of 1000 for nohuman" in row["error"]
        assert creates_for(stack, row["job_key"]) == []
        (note,) = stack.notifications_for(f"uploads/{image.name}")
        assert note["error"]["code"] == "SpendCapReached"
        (email,) = [m for m in stack.email_messages() if note["job_key"] in json.dumps(m) or image.name in m["body"]]
        assert "after midnight UTC" in email["body"] and "DailyJobCap" in email["body"]
    finally:
        if before:
            ddb.put_item(TableName=jobs_table, Item=before)
        else:
            ddb.delete_item(TableName=jobs_table, Key=counter)


def test_redrive_resubmits_a_dead_lettered_upload_without_paying_twice(stack, workdir):
    outputs = stack.stack_outputs()
    s3, sqs = stack.client("s3"), stack.client("sqs")
    # An upload whose submit kept failing (StartExecution throttled) and whose failure could not
    # be notified either: its event is in the submit failure dead-letter queue, as Lambda's
    # on-failure record. Submit only starts executions, so nothing was sent to the provider yet.
    key = f"staging/{unique('dlq')}.jpg"
    put = s3.put_object(Bucket=stack.input_bucket, Key=key, Body=jpeg(), ContentType="image/jpeg")
    etag = put["ETag"].strip('"')
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-12-01T10:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "t",
                    "bucket": {"name": stack.input_bucket, "arn": f"arn:aws:s3:::{stack.input_bucket}"},
                    "object": {
                        "key": key,
                        "size": 1,
                        "eTag": etag,
                        "versionId": put.get("VersionId"),
                        "sequencer": "0A",
                    },
                },
            }
        ]
    }
    stack.set_aws_faults(["states:StartExecution:ThrottlingException:1.0"])
    try:
        failed = stack.invoke("SubmitFunction", event)
    finally:
        stack.set_aws_faults([])
    assert failed["FunctionError"]
    the_job = job_key(stack.input_bucket, key, put.get("VersionId"), etag)
    assert len(creates_for(stack, the_job)) == 0
    record = {
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:05.000Z",
        "requestContext": {
            "requestId": "r1",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:x:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": failed["Payload"],
    }
    sqs.send_message(QueueUrl=outputs["SubmitFailureDeadLetterQueueUrl"], MessageBody=json.dumps(record))

    listed = i2v(workdir, "redrive", "--local")
    assert listed.returncode == 0, listed.stderr
    assert key in listed.stdout and "ThrottlingException" in listed.stdout and "--apply" in listed.stdout
    (row,) = [
        r
        for r in json_lines(i2v(workdir, "redrive", "--local", "--json", "--queue", "submit").stdout)
        if r["source_key"] == key
    ]
    assert row["job_key"] == the_job and row["queue"] == "submit"

    applied = i2v(workdir, "redrive", "--local", "--apply", "--json")
    assert applied.returncode == 0, applied.stderr
    assert [r["result"] for r in json_lines(applied.stdout) if r["source_key"] == key] == ["resubmitted"]
    note = stack.wait_for_notification(key, timeout=120)
    assert note["status"] == "succeeded"
    assert len(creates_for(stack, the_job)) == 1  # one create for the upload, never a second
    stack.settle(timeout=60)
    assert "dead-letter queues are empty" in i2v(workdir, "redrive", "--local").stdout


def test_cost_by_day_from_the_records(stack, workdir):
    table = i2v(workdir, "cost", "--local", "--since", "7d")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["DAY", "(UTC)", "PROVIDER"]
    assert "total since" in table.stdout
    rows = json_lines(i2v(workdir, "cost", "--local", "--json").stdout)
    by_provider = {r["provider"]: r for r in rows}
    assert by_provider["nohuman"]["provider_usd"] >= 0.47 * 4
    assert by_provider["nanobanana"]["provider_credits"] >= 4
    assert all(r["aws_usd_estimate"] > 0 for r in rows)


def test_exit_codes_for_scripts(workdir, tmp_path):
    assert i2v(tmp_path, "jobs", "--local").returncode == 4  # no local stack here
    assert i2v(workdir, "submit", "--local", str(tmp_path / "missing.jpg")).returncode == 2
    assert i2v(workdir, "jobs", "--local", "--since", "yesterday-ish").returncode == 2
    assert i2v(workdir, "jobs").returncode == 2  # neither --stack nor --local


def test_local_up_writes_the_file_the_commands_find_and_removes_it(tmp_path):
    up = subprocess.Popen(
        [str(I2V), "local", "up"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        info = json.loads(up.stdout.readline())
        path = tmp_path / ".i2v" / "local.json"
        written = json.loads(path.read_text())
        assert written["endpoint_url"] == info["endpoint_url"] and written["pid"] == up.pid
        assert written["outputs"]["InputBucketName"] == info["input_bucket"]
        result = i2v(tmp_path, "jobs", "--local")
        assert result.returncode == 0 and result.stdout.strip() == "no jobs"
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    assert not (tmp_path / ".i2v" / "local.json").exists()


def test_redrive_hands_a_dead_lettered_webhook_delivery_back_to_the_delivery_function(stack, workdir):
    outputs = stack.stack_outputs()
    sqs = stack.client("sqs")
    key = f"uploads/{unique('hook')}.jpg"
    outcome = {
        "schema_version": "1",
        "status": "failed",
        "job_key": "f" * 64,
        "source": {"bucket": stack.input_bucket, "key": key},
        "provider": "nohuman",
        "output": None,
        "error": {"code": "TimedOut", "message": "timed out after 30 minutes"},
    }
    # What SQS moved to the dead-letter queue after the receiver failed every attempt.
    sqs.send_message(QueueUrl=outputs["WebhookDeadLetterQueueUrl"], MessageBody=json.dumps(outcome))
    listed = [
        r
        for r in json_lines(i2v(workdir, "redrive", "--local", "--queue", "webhook", "--json").stdout)
        if r["source_key"] == key
    ]
    assert [r["queue"] for r in listed] == ["webhook"]
    before = len(stack.receiver.deliveries)

    applied = i2v(workdir, "redrive", "--local", "--queue", "webhook", "--apply", "--json")
    assert applied.returncode == 0, applied.stderr
    assert [r["result"] for r in json_lines(applied.stdout) if r["source_key"] == key] == ["delivered"]
    delivered = stack.receiver.wait_for(before + 1, timeout=30)[before:]
    assert [d["body"]["job_key"] for d in delivered if d["verified"]] == ["f" * 64]
    assert "dead-letter queues are empty" in i2v(workdir, "redrive", "--local").stdout


def test_a_deployed_stack_by_name_gives_the_same_output(stack, workdir):
    """`--stack NAME` reads the outputs from CloudFormation (here moto's, at the local endpoint)."""
    outputs = stack.stack_outputs()
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items() if value},
    }
    stack.client("cloudformation").create_stack(StackName="videos", TemplateBody=json.dumps(template))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=stack.endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    for command in (["jobs", "--limit", "5"], ["cost", "--since", "2026-01-01"], ["redrive"]):
        by_name = subprocess.run(
            [str(I2V), *command, "--stack", "videos"], cwd=workdir, capture_output=True, text=True, env=env, check=False
        )
        local = i2v(workdir, *command, "--local")
        assert by_name.returncode == local.returncode == 0, by_name.stderr
        assert by_name.stdout == local.stdout
    missing = subprocess.run(
        [str(I2V), "jobs", "--stack", "nope"], cwd=workdir, capture_output=True, text=True, env=env, check=False
    )
    assert missing.returncode == 4 and "stack nope" in missing.stderr
