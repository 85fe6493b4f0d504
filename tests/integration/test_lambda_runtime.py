"""The local Lambda service on a real moto server, driven by a small template of its own.

Covers: S3 notifications run the handler asynchronously with the function's own environment
and the template's filters; RequestResponse results and error payloads; a failed async
invocation is retried then lands in the on-failure destination; the timeout kills the
environment's process and Step Functions' Catch sees Sandbox.Timedout; SQS event sources
with partial batch failures and redrive; Step Functions tasks run real handlers and see
errorType as the Error name; concurrency (warm reuse, cold creation, the reserved
concurrency cap and TooManyRequestsException beyond it, async invokes waiting instead);
init errors, memory over MemorySize, a task result over 256 KB, injected Lambda faults,
the invocation records URL and stop().
"""

import json
import os
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from botocore.config import Config

from i2v_local.lambda_runtime import FunctionSpec, LambdaRuntime, Throttled
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
            ScalingConfig: { MaximumConcurrency: 2 }
  CappedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/capped/
      Handler: app.handler
      ReservedConcurrentExecutions: 2
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/broken/
      Handler: app.handler
  HungryFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/hungry/
      Handler: app.handler
      MemorySize: 128
  BigFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/big/
      Handler: app.handler
  Flow:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: flow.asl.json
      DefinitionSubstitutions:
        EchoArn: !GetAtt EchoFunction.Arn
        FailArn: !GetAtt FailFunction.Arn
  OneTaskFlow:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: one_task.asl.json
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
        import os, time

        def handler(event, context):
            if event.get("pid_file"):
                with open(event["pid_file"], "w") as out:
                    out.write(str(os.getpid()))
            time.sleep(3)
            return {"finished": True}
    """,
    "capped": """
        import os, time

        def handler(event, context):
            started = time.time()
            time.sleep(event.get("sleep", 0))
            return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis(),
                    "request_id": context.aws_request_id, "arn": context.invoked_function_arn,
                    "started": started, "ended": time.time()}
    """,
    "broken": """
        import no_such_module_anywhere

        def handler(event, context):
            return {}
    """,
    "hungry": """
        import time

        def handler(event, context):
            hog = bytearray(300 * 1024 * 1024)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
            time.sleep(2)
            return {"kept": len(hog)}
    """,
    "big": """
        def handler(event, context):
            return {"blob": "x" * event.get("size", 300_000)}
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


# One Lambda task, its function given in the input; Catch records the Error it sees.
ONE_TASK = {
    "StartAt": "Task",
    "States": {
        "Task": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName.$": "$.function", "Payload.$": "$.payload"},
            "OutputPath": "$.Payload",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": "Caught"}],
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
    (root / "one_task.asl.json").write_text(json.dumps(ONE_TASK))
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child not yet reaped is a zombie: gone for our purposes
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read()
    except OSError:
        return False


def test_timeout_kills_the_environment_and_is_reported_as_sandbox_timedout(stack, tmp_path):
    pid_file = tmp_path / "slow.pid"
    response = stack.invoke("SlowFunction", {"pid_file": str(pid_file)})
    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in response["Payload"]["errorMessage"]
    assert not _pid_alive(int(pid_file.read_text())), "the overrunning handler's process is still running"
    record = [i for i in stack.runtime.invocations if i["function"] == "SlowFunction"][-1]
    assert record["outcome"] == "Sandbox.Timedout" and 900 <= record["duration_ms"] < 2500
    # The environment is replaced: the next invocation starts cold, in a new process.
    stack.invoke("SlowFunction", {"pid_file": str(tmp_path / "second.pid")})
    second = [i for i in stack.runtime.invocations if i["function"] == "SlowFunction"][-1]
    assert second["cold"] and second["environment"] != record["environment"]


def _run_execution(stack, machine: str, execution_input: dict, timeout: float = 60) -> dict:
    sfn = stack.client("stepfunctions")
    arn = stack.resource(machine).ref
    execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(execution_input))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = sfn.describe_execution(executionArn=execution)
        if result["status"] != "RUNNING":
            return result
        time.sleep(0.2)
    raise AssertionError(f"{machine} still running after {timeout} s")


def test_step_functions_catch_sees_sandbox_timedout(stack):
    result = _run_execution(stack, "OneTaskFlow", {"function": stack.function_names["SlowFunction"], "payload": {}})
    assert result["status"] == "SUCCEEDED", result
    caught = json.loads(result["output"])["caught"]
    assert caught["Error"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in caught["Cause"]


def test_a_task_result_over_256_kb_fails_with_states_data_limit_exceeded(stack):
    under = _run_execution(
        stack, "OneTaskFlow", {"function": stack.function_names["BigFunction"], "payload": {"size": 200_000}}
    )
    assert under["status"] == "SUCCEEDED" and len(json.loads(under["output"])["blob"]) == 200_000
    over = _run_execution(
        stack, "OneTaskFlow", {"function": stack.function_names["BigFunction"], "payload": {"size": 270_000}}
    )
    # A terminal error on AWS: the task's Catch on States.ALL does not catch it, the execution fails.
    assert over["status"] == "FAILED", over
    assert over.get("error") == "States.DataLimitExceeded", over


def test_context_has_request_id_arn_and_deadline(stack):
    payload = stack.invoke("CappedFunction", {})["Payload"]
    assert payload["arn"].endswith(":function:i2v-local-CappedFunction")
    assert 0 < payload["remaining"] <= 10_000  # the Globals' Timeout: 10 s
    record = next(i for i in stack.runtime.invocations if i["request_id"] == payload["request_id"])
    assert record["function"] == "CappedFunction" and record["memory_mb"] == 128


def _lambda_without_retries(stack):
    return boto3.client(
        "lambda",
        endpoint_url=stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


def test_reserved_concurrency_caps_environments_and_throttles_sync_invokes(stack):
    client = _lambda_without_retries(stack)
    name = stack.function_names["CappedFunction"]

    def call(sleep):
        try:
            response = client.invoke(FunctionName=name, Payload=json.dumps({"sleep": sleep}).encode())
            return json.loads(response["Payload"].read())
        except client.exceptions.TooManyRequestsException as exc:
            return exc

    with ThreadPoolExecutor(max_workers=3) as pool:
        busy = [pool.submit(call, 2.0) for _ in range(2)]
        time.sleep(1.0)  # both environments are busy now
        third = pool.submit(call, 0).result()
        results = [f.result() for f in busy]
    assert isinstance(third, client.exceptions.TooManyRequestsException)
    assert third.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert all(isinstance(r, dict) for r in results), results
    assert len({r["pid"] for r in results}) == 2  # two environments ran at the same time
    # Warm reuse: a later call runs in one of those two processes.
    assert call(0)["pid"] in {r["pid"] for r in results}


def test_concurrency_limits_come_from_the_template(stack):
    limit = stack.runtime.concurrency_limit
    assert limit(stack.function_names["CappedFunction"]) == 2  # ReservedConcurrentExecutions
    assert limit(stack.function_names["BatchFunction"]) == 2  # the SQS source's ScalingConfig.MaximumConcurrency
    assert limit(stack.function_names["EchoFunction"]) == 10  # the stack-wide default


def test_async_invokes_beyond_the_cap_wait_and_all_run(stack):
    before = sum(1 for i in stack.runtime.invocations if i["function"] == "CappedFunction")
    started = time.monotonic()
    for _ in range(5):
        assert stack.invoke("CappedFunction", {"sleep": 0.5}, invocation_type="Event")["StatusCode"] == 202
    stack.settle(timeout=60)
    records = [i for i in stack.runtime.invocations if i["function"] == "CappedFunction"][before:]
    assert len(records) == 5 and all(r["outcome"] == "success" for r in records)
    assert len({r["environment"] for r in records}) <= 2  # never more environments than the cap
    assert time.monotonic() - started >= 1.4  # five half-second runs, at most two at a time


def test_concurrent_invocations_of_one_function_run_in_parallel(stack):
    client = _lambda_without_retries(stack)
    name = stack.function_names["CappedFunction"]
    client.invoke(FunctionName=name, Payload=b"{}")  # at least one warm environment
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(
            pool.map(lambda _: client.invoke(FunctionName=name, Payload=json.dumps({"sleep": 1.5}).encode()), range(2))
        )
    runs = [json.loads(r["Payload"].read()) for r in responses]
    assert max(r["started"] for r in runs) < min(r["ended"] for r in runs), runs  # the two handlers overlapped
    assert runs[0]["pid"] != runs[1]["pid"]


def test_an_init_error_is_reported_with_the_runtime_clients_error_type(stack):
    response = stack.invoke("BrokenFunction", {})
    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_anywhere" in response["Payload"]["errorMessage"]


def test_memory_over_memory_size_is_reported_as_out_of_memory(stack):
    response = stack.invoke("HungryFunction", {})
    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "Runtime.OutOfMemory"


class FakeFault:
    def __init__(self, code, message):
        self.code, self.message = code, message


class FakeInjector:
    """Answers the first `times` picks for lambda:Invoke with a throttle."""

    def __init__(self, times):
        self.left = times
        self.picks = []
        self._lock = threading.Lock()

    def pick(self, service, operation):
        with self._lock:
            self.picks.append((service, operation))
            if self.left > 0:
                self.left -= 1
                return FakeFault("TooManyRequestsException", "Rate Exceeded.")
            return None


@pytest.fixture
def injector(stack):
    fake = FakeInjector(times=1)
    stack.runtime.fault_injector = fake
    yield fake
    stack.runtime.fault_injector = None


def test_an_injected_throttle_reaches_step_functions_as_lambda_too_many_requests(stack, injector):
    result = _run_execution(stack, "OneTaskFlow", {"function": stack.function_names["CappedFunction"], "payload": {}})
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["caught"]["Error"] == "Lambda.TooManyRequestsException"
    assert injector.picks[0] == ("lambda", "Invoke")


def test_an_injected_throttle_on_an_async_invoke_is_retried_not_lost(stack, injector):
    injector.left = 3
    before = sum(1 for i in stack.runtime.invocations if i["function"] == "CappedFunction")
    stack.invoke("CappedFunction", {}, invocation_type="Event")
    stack.settle(timeout=30)
    after = [i for i in stack.runtime.invocations if i["function"] == "CappedFunction"][before:]
    assert len(after) == 1 and after[0]["outcome"] == "success"
    assert len(injector.picks) == 4


def test_invocation_records_are_served_on_loopback(stack):
    stack.invoke("EchoFunction", {"hello": "records"})
    url = stack.outputs()["lambda_invocations_url"]
    assert url.startswith("http://127.0.0.1:")
    records = requests.get(url, timeout=10).json()["invocations"]
    echo = [r for r in records if r["function"] == "EchoFunction"]
    assert echo
    for key in ("function", "request_id", "start", "duration_ms", "memory_mb", "cold", "outcome"):
        assert key in echo[-1]
    assert echo[-1]["outcome"] == "success" and "event" not in echo[-1]
    assert any(r["cold"] for r in echo)


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


# --- the runtime on its own: stop() ends every environment --------------------------------------

SLEEPY = """
import os, time

def handler(event, context):
    with open(event["pid_file"], "w") as out:
        out.write(str(os.getpid()))
    time.sleep(30)
    return {"done": True}
"""


def test_stop_kills_running_environments_and_refuses_new_invocations(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(SLEEPY)
    runtime = LambdaRuntime()
    runtime.register(FunctionSpec("Sleepy", "sleepy", code, "app.handler", timeout=60))
    runtime.start(patch_moto=False)
    pid_file = tmp_path / "pid"
    results = []
    thread = threading.Thread(
        target=lambda: results.append(runtime.invoke("sleepy", {"pid_file": str(pid_file)})), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the handler never started"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    runtime.stop()
    thread.join(10)
    assert results and results[0].error
    assert not _pid_alive(pid)
    assert runtime.invoke("sleepy", {}).payload["errorType"] == "Runtime.Stopped"


def test_sync_invokes_beyond_the_cap_raise_throttled_directly(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(SLEEPY)
    runtime = LambdaRuntime(default_concurrency=1)
    runtime.register(FunctionSpec("Sleepy", "sleepy", code, "app.handler", timeout=60))
    runtime.start(patch_moto=False)
    try:
        pid_file = tmp_path / "pid"
        threading.Thread(target=lambda: runtime.invoke("sleepy", {"pid_file": str(pid_file)}), daemon=True).start()
        deadline = time.monotonic() + 20
        while not pid_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(Throttled):
            runtime.invoke("sleepy", {"pid_file": str(pid_file)})
        assert runtime.throttles and runtime.throttles[-1]["error"] == "TooManyRequestsException"
    finally:
        runtime.stop()
