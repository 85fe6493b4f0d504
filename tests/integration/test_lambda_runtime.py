"""The in-process Lambda runtime on a real moto server, driven by a small template of its own.

Covers: S3 notifications run the handler asynchronously with the function's own environment
and the template's filters; RequestResponse results and error payloads; a failed async
invocation is retried then lands in the on-failure destination; the timeout; SQS event
sources with partial batch failures and redrive; Step Functions tasks run real handlers and
see errorType as the Error name; stop() and os.environ when a handler is still running.
"""

import json
import os
import textwrap
import threading
import time

import pytest

from i2v_local.lambda_runtime import FunctionSpec, LambdaRuntime
from i2v_local.stack import LocalStack

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Prefix: { Type: String, Default: incoming/ }
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
    Environment:
      Variables:
        SHARED: from-globals
        RESULT_BUCKET: !Ref ResultBucket
Resources:
  InputBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-in"
  ResultBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-results"
  FailureQueue:
    Type: AWS::SQS::Queue
  WorkDeadLetterQueue:
    Type: AWS::SQS::Queue
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy: { deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn, maxReceiveCount: 2 }
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/echo/
      Handler: app.handler
      Environment:
        Variables:
          WHO: echo
      Events:
        Upload:
          Type: S3
          Properties:
            Bucket: !Ref InputBucket
            Events: s3:ObjectCreated:*
            Filter: { S3Key: { Rules: [{ Name: prefix, Value: !Ref Prefix }, { Name: suffix, Value: .txt }] } }
  FailFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/fail/
      Handler: app.handler
      EventInvokeConfig:
        MaximumRetryAttempts: 2
        DestinationConfig:
          OnFailure: { Type: SQS, Destination: !GetAtt FailureQueue.Arn }
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/slow/
      Handler: app.handler
      Timeout: 1
  BatchFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/batch/
      Handler: app.handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  Flow:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: flow.asl.json
      DefinitionSubstitutions:
        EchoArn: !GetAtt EchoFunction.Arn
        FailArn: !GetAtt FailFunction.Arn
"""

HANDLERS = {
    "echo": """
        import json, os, boto3

        def handler(event, context):
            record = {"event": event, "who": os.environ["WHO"], "shared": os.environ["SHARED"],
                      "function": context.function_name, "remaining": context.get_remaining_time_in_millis()}
            if "Records" in event:
                key = event["Records"][0]["s3"]["object"]["key"]
                boto3.client("s3").put_object(Bucket=os.environ["RESULT_BUCKET"], Key="seen/" + key, Body=json.dumps(record))
            return record
    """,
    "fail": """
        class ProviderJobFailedError(Exception):
            pass

        def handler(event, context):
            raise ProviderJobFailedError("it broke: " + str(event.get("n")))
    """,
    "slow": """
        import time

        def handler(event, context):
            time.sleep(3)
            return {"finished": True}
    """,
    "batch": """
        import json, os, boto3

        def handler(event, context):
            failures = []
            for record in event["Records"]:
                if record["body"] == "bad":
                    failures.append({"itemIdentifier": record["messageId"]})
                else:
                    boto3.client("s3").put_object(Bucket=os.environ["RESULT_BUCKET"], Key="batch/" + record["body"], Body=b"1")
            return {"batchItemFailures": failures}
    """,
}

FLOW = {
    "StartAt": "Echo",
    "States": {
        "Echo": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${EchoArn}", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Next": "Fail",
        },
        "Fail": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${FailArn}", "Payload": {"n": 1}},
            "Catch": [{"ErrorEquals": ["ProviderJobFailedError"], "ResultPath": "$.caught", "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Pass", "End": True},
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "flow.asl.json").write_text(json.dumps(FLOW))
    for name, code in HANDLERS.items():
        (root / "fns" / name).mkdir(parents=True)
        (root / "fns" / name / "app.py").write_text(textwrap.dedent(code))
    with LocalStack(root / "template.yaml", emulator=False, webhook=False) as local:
        yield local


def _wait_for_object(s3, bucket, key, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            time.sleep(0.2)
    raise AssertionError(f"{key} never appeared")


def test_s3_notification_runs_handler_with_its_environment_and_filters(stack):
    s3 = stack.client("s3")
    s3.put_object(Bucket="i2v-local-in", Key="incoming/a b+c.txt", Body=b"x")
    s3.put_object(Bucket="i2v-local-in", Key="elsewhere/skip.txt", Body=b"x")
    s3.put_object(Bucket="i2v-local-in", Key="incoming/skip.TXT", Body=b"x")
    record = json.loads(_wait_for_object(s3, "i2v-local-results", "seen/incoming/a+b%2Bc.txt"))
    assert record["who"] == "echo" and record["shared"] == "from-globals"
    assert record["function"] == "i2v-local-EchoFunction"
    assert 0 < record["remaining"] <= 10_000
    assert record["event"]["Records"][0]["s3"]["bucket"]["name"] == "i2v-local-in"
    stack.settle()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="i2v-local-results", Prefix="seen/").get("Contents", [])]
    assert keys == ["seen/incoming/a+b%2Bc.txt"]  # suffix filters are case-sensitive, prefix applies


def test_request_response_returns_handler_json(stack):
    response = stack.invoke("EchoFunction", {"hello": "world"})
    assert response["StatusCode"] == 200 and response["FunctionError"] is None
    assert response["Payload"]["event"] == {"hello": "world"}


def test_request_response_error_payload(stack):
    response = stack.invoke("FailFunction", {"n": 7})
    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "ProviderJobFailedError"
    assert response["Payload"]["errorMessage"] == "it broke: 7"
    assert response["Payload"]["stackTrace"]


def test_timeout_is_reported_as_sandbox_timedout(stack):
    response = stack.invoke("SlowFunction", {})
    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in response["Payload"]["errorMessage"]


def test_failed_async_invocation_is_retried_then_sent_to_destination(stack):
    before = sum(1 for i in stack.runtime.invocations if i["function"] == "FailFunction")
    response = stack.invoke("FailFunction", {"n": 42}, invocation_type="Event")
    assert response["StatusCode"] == 202
    sqs = stack.client("sqs")
    url = stack.queue_urls["FailureQueue"]
    deadline = time.monotonic() + 20
    messages = []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert messages, "no destination record"
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith("function:i2v-local-FailFunction:$LATEST")
    assert record["requestPayload"] == {"n": 42}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "ProviderJobFailedError"
    after = sum(1 for i in stack.runtime.invocations if i["function"] == "FailFunction")
    assert after - before == 3


def test_sqs_source_deletes_successes_and_redrives_reported_failures(stack):
    sqs = stack.client("sqs")
    url = stack.queue_urls["WorkQueue"]
    for body in ("one", "bad", "two"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    s3 = stack.client("s3")
    _wait_for_object(s3, "i2v-local-results", "batch/one")
    _wait_for_object(s3, "i2v-local-results", "batch/two")
    dlq = stack.queue_urls["WorkDeadLetterQueue"]
    deadline = time.monotonic() + 30
    bodies = []
    while not bodies and time.monotonic() < deadline:
        bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])]
    assert bodies == ["bad"]


def test_state_machine_runs_real_handlers_and_catches_by_error_name(stack):
    sfn = stack.client("stepfunctions")
    arn = stack.resource("Flow").ref
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"x": 1}))["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = sfn.describe_execution(executionArn=execution)
        if result["status"] != "RUNNING":
            break
        time.sleep(0.3)
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["who"] == "echo"
    assert output["caught"]["Error"] == "ProviderJobFailedError"


# --- stopping while a handler runs: os.environ must end up as the stack left it ---------------

GATED = """
def handler(event, context):
    event["entered"].set()
    event["gate"].wait(30)
    return {"done": True}
"""


@pytest.fixture
def gated_runtime(tmp_path):
    (tmp_path / "app.py").write_text(GATED)
    runtime = LambdaRuntime()
    runtime.register(FunctionSpec("Gated", "gated", tmp_path, "app.handler", environment={"I2V_FN_VAR": "fn"}, timeout=60))
    return runtime


def _invoke_in_background(runtime):
    event = {"entered": threading.Event(), "gate": threading.Event()}
    results = []
    thread = threading.Thread(target=lambda: results.append(runtime.invoke("gated", event)), daemon=True)
    thread.start()
    assert event["entered"].wait(10), "the handler never started"
    return event, thread, results


def test_stop_waits_for_the_running_invocation_to_restore_the_environment(gated_runtime, monkeypatch):
    monkeypatch.setenv("I2V_STACK_VAR", "stack")  # what a stack sets before the runtime runs
    event, invocation, results = _invoke_in_background(gated_runtime)
    assert os.environ["I2V_FN_VAR"] == "fn"
    stopper = threading.Thread(target=gated_runtime.stop, daemon=True)
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive(), "stop() returned while an invocation held the environment"
    event["gate"].set()
    stopper.join(10)
    invocation.join(10)
    assert results and not results[0].error
    assert "I2V_FN_VAR" not in os.environ and os.environ["I2V_STACK_VAR"] == "stack"


def test_an_invocation_outliving_stop_does_not_restore_the_stacks_environment(gated_runtime, monkeypatch):
    monkeypatch.setenv("I2V_STACK_VAR", "stack")
    event, invocation, results = _invoke_in_background(gated_runtime)
    gated_runtime.stop(lock_timeout=0.1)  # gives up waiting: the handler is still running
    os.environ.pop("I2V_STACK_VAR")  # the stack restores the process environment
    event["gate"].set()
    invocation.join(10)
    assert results
    assert "I2V_STACK_VAR" not in os.environ  # the dead stack's settings stay gone


def test_invoke_after_stop_is_refused_without_touching_the_environment(gated_runtime, monkeypatch):
    gated_runtime.stop()
    before = dict(os.environ)
    result = gated_runtime.invoke("gated", {})
    assert result.error and result.payload["errorType"] == "Runtime.Stopped"
    assert dict(os.environ) == before
