"""boto3 against moto's server behind the fault and limit middleware, over loopback HTTP.

Retries are off in these clients: what is asserted is the exception a handler sees for one
AWS answer (botocore's standard mode would retry throttling codes first).
"""

import json

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from i2v_local import moto_internals
from i2v_local.aws_faults import ADMIN_PATH, FaultingMotoServer, FaultInjector
from i2v_local.aws_limits import EXECUTION_INPUT_MAX_BYTES, S3_USER_METADATA_MAX_BYTES

ROLE_ARN = "arn:aws:iam::123456789012:role/test"
PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


@pytest.fixture(scope="module")
def server():
    saved = moto_internals.enable_state_machine_execution()  # as the local stack runs it
    injector = FaultInjector(seed=1)
    moto = FaultingMotoServer(injector)
    moto.start()
    url = f"http://127.0.0.1:{moto.get_host_and_port()[1]}"
    requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    try:
        yield url, injector
    finally:
        moto.stop()
        moto_internals.restore_stepfunctions_config(saved)


@pytest.fixture
def faults(server):
    _, injector = server
    injector.clear()
    yield injector
    injector.clear()


def _client(url: str, service: str):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def _raised(call) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


# ---- each example fault raises what AWS's answer raises ------------------------------


def test_sns_throttled_raises_throttledexception(server, faults):
    url, _ = server
    sns = _client(url, "sns")
    topic = sns.create_topic(Name="faults")["TopicArn"]
    faults.set(["sns:Publish:Throttled:1"])
    error = _raised(lambda: sns.publish(TopicArn=topic, Message="hi"))
    assert type(error).__name__ == "ThrottledException"
    assert isinstance(error, sns.exceptions.ThrottledException)
    assert error.response["Error"]["Code"] == "Throttled"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    faults.clear()
    assert sns.publish(TopicArn=topic, Message="hi")["MessageId"]


@pytest.mark.parametrize("operation", ["PutItem", "UpdateItem"])
def test_dynamodb_writes_raise_provisionedthroughputexceededexception(server, faults, operation):
    url, _ = server
    ddb = _client(url, "dynamodb")
    faults.set([f"dynamodb:{operation}:ProvisionedThroughputExceededException:1"])
    call = {
        "PutItem": lambda: ddb.put_item(TableName="t", Item={"k": {"S": "v"}}),
        "UpdateItem": lambda: ddb.update_item(
            TableName="t",
            Key={"k": {"S": "v"}},
            UpdateExpression="SET a = :a",
            ExpressionAttributeValues={":a": {"S": "1"}},
        ),
    }[operation]
    error = _raised(call)
    assert isinstance(error, ddb.exceptions.ProvisionedThroughputExceededException)


def test_s3_get_object_slowdown_is_a_503_clienterror_named_slowdown(server, faults):
    url, _ = server
    s3 = _client(url, "s3")
    s3.create_bucket(Bucket="faults-bucket")
    s3.put_object(Bucket="faults-bucket", Key="a.jpg", Body=b"x")
    faults.set(["s3:GetObject:SlowDown:1"])
    error = _raised(lambda: s3.get_object(Bucket="faults-bucket", Key="a.jpg"))
    assert type(error) is ClientError  # S3 does not model SlowDown: botocore raises ClientError
    assert error.response["Error"]["Code"] == "SlowDown"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert s3.head_object(Bucket="faults-bucket", Key="a.jpg")["ContentLength"] == 1  # only GetObject


def test_secretsmanager_throttling_is_named_throttlingexception(server, faults):
    url, _ = server
    sm = _client(url, "secretsmanager")
    sm.create_secret(Name="faults-secret", SecretString="s")
    faults.set(["secretsmanager:GetSecretValue:ThrottlingException:1"])
    error = _raised(lambda: sm.get_secret_value(SecretId="faults-secret"))
    assert error.response["Error"]["Code"] == "ThrottlingException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_stepfunctions_start_execution_throttling(server, faults):
    url, _ = server
    sfn = _client(url, "stepfunctions")
    arn = sfn.create_state_machine(name="faults-machine", definition=PASS_MACHINE, roleArn=ROLE_ARN)["stateMachineArn"]
    faults.set(["states:StartExecution:ThrottlingException:1"])
    error = _raised(lambda: sfn.start_execution(stateMachineArn=arn, name="one"))
    assert error.response["Error"]["Code"] == "ThrottlingException"


def test_lambda_invoke_over_http_raises_toomanyrequestsexception(server, faults):
    url, _ = server
    lam = _client(url, "lambda")
    faults.set(["lambda:Invoke:TooManyRequestsException:1"])
    error = _raised(lambda: lam.invoke(FunctionName="any-function", Payload=b"{}"))
    assert isinstance(error, lam.exceptions.TooManyRequestsException)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_sqs_json_protocol_fault_keeps_the_query_compatible_code(server, faults):
    url, _ = server
    sqs = _client(url, "sqs")
    queue = sqs.create_queue(QueueName="faults-queue")["QueueUrl"]
    faults.set(["sqs:ReceiveMessage:RequestThrottled:1"])
    error = _raised(lambda: sqs.receive_message(QueueUrl=queue))
    assert error.response["Error"]["Code"] == "RequestThrottled"


def test_faults_are_set_at_run_time_through_the_admin_surface(server, faults):
    url, _ = server
    answer = requests.put(f"{url}{ADMIN_PATH}", json={"faults": ["sns:Publish:Throttled:1"], "seed": 9}, timeout=10)
    assert answer.status_code == 200 and answer.json()["faults"] == ["sns:Publish:Throttled:1"]
    sns = _client(url, "sns")
    topic = sns.create_topic(Name="faults-admin")["TopicArn"]
    with pytest.raises(sns.exceptions.ThrottledException):
        sns.publish(TopicArn=topic, Message="hi")
    assert requests.get(f"{url}{ADMIN_PATH}", timeout=10).json()["injected"] == {"sns:Publish:Throttled:1": 1}
    bad = requests.put(f"{url}{ADMIN_PATH}", json={"faults": ["sns:Publish:Throttled:2"]}, timeout=10)
    assert bad.status_code == 400 and "between 0 and 1" in bad.json()["error"]
    assert requests.delete(f"{url}{ADMIN_PATH}", timeout=10).json()["faults"] == []
    assert sns.publish(TopicArn=topic, Message="hi")["MessageId"]


# ---- call-level limits ---------------------------------------------------------------


@pytest.fixture(scope="module")
def machine(server):
    url, _ = server
    return _client(url, "stepfunctions").create_state_machine(
        name="limits-machine", definition=PASS_MACHINE, roleArn=ROLE_ARN
    )["stateMachineArn"]


def test_execution_name_over_80_characters_is_refused(server, faults, machine):
    sfn = _client(server[0], "stepfunctions")
    error = _raised(lambda: sfn.start_execution(stateMachineArn=machine, name="n" * 81))
    assert isinstance(error, sfn.exceptions.ValidationException)
    assert "Member must have length less than or equal to 80" in error.response["Error"]["Message"]
    assert sfn.start_execution(stateMachineArn=machine, name="n" * 80)["executionArn"]


@pytest.mark.parametrize("name", ["has space", "a/b", "a:b", "semi;colon", "tab\there", "ctl\x7f", "q?", "dollar$"])
def test_execution_name_with_a_forbidden_character_is_invalidname(server, faults, machine, name):
    sfn = _client(server[0], "stepfunctions")
    error = _raised(lambda: sfn.start_execution(stateMachineArn=machine, name=name))
    assert isinstance(error, sfn.exceptions.InvalidName)


def test_execution_input_over_256_kb_is_invalidexecutioninput(server, faults, machine):
    sfn = _client(server[0], "stepfunctions")
    padding = EXECUTION_INPUT_MAX_BYTES - len('{"p":""}')
    assert sfn.start_execution(
        stateMachineArn=machine, name="fits", input=json.dumps({"p": "x" * padding}, separators=(",", ":"))
    )["executionArn"]
    # Counted in UTF-8 bytes: 'é' is two.
    too_big = json.dumps({"p": "é" * (padding // 2 + 1)}, ensure_ascii=False, separators=(",", ":"))
    error = _raised(lambda: sfn.start_execution(stateMachineArn=machine, name="too-big", input=too_big))
    assert isinstance(error, sfn.exceptions.InvalidExecutionInput)


def test_s3_user_metadata_over_2_kb_is_metadatatoolarge(server, faults):
    s3 = _client(server[0], "s3")
    s3.create_bucket(Bucket="limits-bucket")
    key_bytes = len("prompt")
    fits = {"prompt": "p" * (S3_USER_METADATA_MAX_BYTES - key_bytes)}
    s3.put_object(Bucket="limits-bucket", Key="fits.jpg", Body=b"x", Metadata=fits)
    too_big = {"prompt": "p" * (S3_USER_METADATA_MAX_BYTES - key_bytes + 1)}
    error = _raised(lambda: s3.put_object(Bucket="limits-bucket", Key="big.jpg", Body=b"x", Metadata=too_big))
    assert error.response["Error"]["Code"] == "MetadataTooLarge"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    error = _raised(lambda: s3.create_multipart_upload(Bucket="limits-bucket", Key="big.jpg", Metadata=too_big))
    assert error.response["Error"]["Code"] == "MetadataTooLarge"
    # A copy that keeps the source's metadata is fine; one that replaces it is measured.
    s3.copy_object(Bucket="limits-bucket", Key="copy.jpg", CopySource={"Bucket": "limits-bucket", "Key": "fits.jpg"})
    error = _raised(
        lambda: s3.copy_object(
            Bucket="limits-bucket",
            Key="copy2.jpg",
            CopySource={"Bucket": "limits-bucket", "Key": "fits.jpg"},
            Metadata=too_big,
            MetadataDirective="REPLACE",
        )
    )
    assert error.response["Error"]["Code"] == "MetadataTooLarge"


def test_s3_user_metadata_keys_count_too(server, faults):
    s3 = _client(server[0], "s3")
    s3.create_bucket(Bucket="limits-keys")
    many = {f"k{i:03d}": "v" * 48 for i in range(40)}  # values 1920 bytes, with the keys 2080
    error = _raised(lambda: s3.put_object(Bucket="limits-keys", Key="a", Body=b"x", Metadata=many))
    assert error.response["Error"]["Code"] == "MetadataTooLarge"


def test_sqs_visibility_beyond_12_hours_is_refused(server, faults):
    # moto enforces this one itself; the test keeps it true across moto upgrades.
    sqs = _client(server[0], "sqs")
    queue = sqs.create_queue(QueueName="limits-queue")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="m")
    receipt = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]["ReceiptHandle"]
    error = _raised(
        lambda: sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=43201)
    )
    assert error.response["Error"]["Code"] == "InvalidParameterValue"
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=43000)
    batch = sqs.change_message_visibility_batch(
        QueueUrl=queue, Entries=[{"Id": "1", "ReceiptHandle": receipt, "VisibilityTimeout": 43201}]
    )
    assert [f["Code"] for f in batch.get("Failed", [])] == ["InvalidParameterValue"]
