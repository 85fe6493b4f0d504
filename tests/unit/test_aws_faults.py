"""AWS fault specs, the seeded injector, and how requests are recognised (no network)."""

import io
import json
import threading

import pytest

from i2v_local.aws_faults import (
    ADMIN_PATH,
    AwsFault,
    AwsFaultMiddleware,
    FaultInjector,
    FaultSpecError,
    error_response,
    parse_spec,
    recognise,
)

EXAMPLES = [
    "sns:Publish:Throttled:0.1",
    "dynamodb:PutItem:ProvisionedThroughputExceededException:0.05",
    "s3:GetObject:SlowDown:0.05",
    "secretsmanager:GetSecretValue:ThrottlingException:0.1",
    "states:StartExecution:ThrottlingException:0.1",
    "lambda:Invoke:TooManyRequestsException:0.1",
]


# ---- specs ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", EXAMPLES)
def test_the_documented_examples_parse_and_print_back_the_same(text):
    assert str(parse_spec(text)) == text


def test_stepfunctions_is_accepted_as_the_service_name_states():
    spec = parse_spec("stepfunctions:StartExecution:ThrottlingException:1")
    assert spec.service == "states"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sns:Publish:Throttled", "expected SERVICE:Operation:ErrorCode:RATE"),
        ("sns:Publish:Throttled:0.1:extra", "expected SERVICE:Operation:ErrorCode:RATE"),
        ("sns::Throttled:0.1", "expected SERVICE:Operation:ErrorCode:RATE"),
        ("kinesis:PutRecord:Throttled:0.1", "unknown service 'kinesis'"),
        ("sns:publish:Throttled:0.1", "did you mean Publish"),
        ("sns:Send:Throttled:0.1", "sns has no operation 'Send'"),
        ("sns:Publish:Throt tled:0.1", "is not an AWS error code"),
        ("sns:Publish:Throttled:often", "is not a number"),
        ("sns:Publish:Throttled:1.5", "not between 0 and 1"),
        ("sns:Publish:Throttled:-0.1", "not between 0 and 1"),
    ],
)
def test_a_bad_spec_is_refused_with_the_reason(text, reason):
    with pytest.raises(FaultSpecError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(text)


def test_a_bad_spec_makes_set_change_nothing():
    injector = FaultInjector(["sns:Publish:Throttled:1"])
    with pytest.raises(FaultSpecError):
        injector.set(["sns:Publish:Throttled:1", "nope"])
    assert injector.describe()["faults"] == ["sns:Publish:Throttled:1"]


# ---- the injector --------------------------------------------------------------------


def _pattern(injector: FaultInjector, n: int = 200, service: str = "sns", operation: str = "Publish") -> list[bool]:
    return [injector.pick(service, operation) is not None for _ in range(n)]


def test_the_same_seed_fails_the_same_calls():
    first = _pattern(FaultInjector(["sns:Publish:Throttled:0.3"], seed=7))
    second = _pattern(FaultInjector(["sns:Publish:Throttled:0.3"], seed=7))
    assert first == second
    assert 30 <= sum(first) <= 90  # about 0.3 of 200


def test_another_seed_fails_other_calls():
    assert _pattern(FaultInjector(["sns:Publish:Throttled:0.3"], seed=1)) != _pattern(
        FaultInjector(["sns:Publish:Throttled:0.3"], seed=2)
    )


def test_calls_of_other_operations_do_not_change_which_calls_fail():
    # Repeatable under concurrency: the n-th Publish fails or not whatever else was called.
    quiet = FaultInjector(
        ["sns:Publish:Throttled:0.3", "dynamodb:PutItem:ProvisionedThroughputExceededException:0.5"], seed=3
    )
    busy = FaultInjector(
        ["sns:Publish:Throttled:0.3", "dynamodb:PutItem:ProvisionedThroughputExceededException:0.5"], seed=3
    )
    expected = _pattern(quiet, 50)
    seen = []
    for _ in range(50):
        busy.pick("dynamodb", "PutItem")
        seen.append(busy.pick("sns", "Publish") is not None)
    assert seen == expected


def test_rate_zero_never_and_rate_one_always():
    assert not any(_pattern(FaultInjector(["sns:Publish:Throttled:0"], seed=5)))
    assert all(_pattern(FaultInjector(["sns:Publish:Throttled:1"], seed=5)))


def test_only_the_named_operation_is_faulted():
    injector = FaultInjector(["sns:Publish:Throttled:1"])
    assert injector.pick("sns", "Subscribe") is None
    assert injector.pick("sqs", "Publish") is None
    assert injector.pick("sns", "Publish") is not None


@pytest.mark.parametrize(
    ("spec", "service", "operation", "status", "message"),
    [
        ("sns:Publish:Throttled:1", "sns", "Publish", 429, "Rate exceeded"),
        (
            "dynamodb:PutItem:ProvisionedThroughputExceededException:1",
            "dynamodb",
            "PutItem",
            400,
            "provisioned throughput",
        ),
        ("s3:GetObject:SlowDown:1", "s3", "GetObject", 503, "Please reduce your request rate."),
        (
            "secretsmanager:GetSecretValue:ThrottlingException:1",
            "secretsmanager",
            "GetSecretValue",
            400,
            "Rate exceeded",
        ),
        ("states:StartExecution:ThrottlingException:1", "states", "StartExecution", 400, "Rate exceeded"),
        ("lambda:Invoke:TooManyRequestsException:1", "lambda", "Invoke", 429, "Rate Exceeded."),
    ],
)
def test_a_picked_fault_carries_the_code_message_and_status_aws_uses(spec, service, operation, status, message):
    fault = FaultInjector([spec]).pick(service, operation)
    assert isinstance(fault, AwsFault)
    assert fault.code == spec.split(":")[2]
    assert fault.status == status
    assert message in fault.message


def test_lambda_invoke_is_a_pair_the_lambda_runtime_can_ask_for():
    injector = FaultInjector(["lambda:Invoke:TooManyRequestsException:1"])
    fault = injector.pick("lambda", "Invoke")
    assert fault.code == "TooManyRequestsException" and fault.status == 429


def test_set_clear_and_describe_at_run_time():
    injector = FaultInjector([], seed=11)
    assert injector.pick("sns", "Publish") is None
    injector.set(["sns:Publish:Throttled:1"], seed=12)
    assert injector.pick("sns", "Publish") is not None
    described = injector.describe()
    assert described["seed"] == 12
    assert described["faults"] == ["sns:Publish:Throttled:1"]
    assert described["injected"] == {"sns:Publish:Throttled:1": 1}
    assert injector.injected("sns:Publish:Throttled:1") == 1
    injector.clear()
    assert injector.pick("sns", "Publish") is None
    assert injector.describe()["faults"] == []


def test_picks_from_many_threads_are_all_counted():
    injector = FaultInjector(["sns:Publish:Throttled:1"], seed=1)

    def worker():
        for _ in range(250):
            injector.pick("sns", "Publish")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert injector.injected() == 2000
    assert injector.describe()["calls"] == {"sns:Publish": 2000}


# ---- recognising requests ------------------------------------------------------------


def _environ(method="POST", path="/", service="sns", body=b"", query="", headers=None, content_type=""):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:5000",
        "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=abc",
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def test_query_protocol_action_is_read_and_the_body_left_for_moto():
    body = b"Action=Publish&TopicArn=arn&Message=hi"
    environ = _environ(body=body, content_type="application/x-www-form-urlencoded; charset=utf-8")
    call = recognise(environ)
    assert (call.service, call.operation) == ("sns", "Publish")
    assert environ["wsgi.input"].read() == body


@pytest.mark.parametrize(
    ("target", "service", "operation"),
    [
        ("DynamoDB_20120810.UpdateItem", "dynamodb", "UpdateItem"),
        ("AWSStepFunctions.StartExecution", "states", "StartExecution"),
        ("secretsmanager.GetSecretValue", "secretsmanager", "GetSecretValue"),
        ("AWSEvents.PutEvents", "events", "PutEvents"),
        ("AmazonSQS.ChangeMessageVisibility", "sqs", "ChangeMessageVisibility"),
    ],
)
def test_json_protocol_target_names_the_operation(target, service, operation):
    environ = _environ(
        service=service, body=b"{}", headers={"X-Amz-Target": target}, content_type="application/x-amz-json-1.0"
    )
    call = recognise(environ)
    assert (call.service, call.operation) == (service, operation)


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "operation"),
    [
        ("GET", "/bucket/some/key.jpg", "", {}, "GetObject"),
        ("HEAD", "/bucket/key", "", {}, "HeadObject"),
        ("PUT", "/bucket/key", "", {}, "PutObject"),
        ("PUT", "/bucket/key", "", {"x-amz-copy-source": "/other/key"}, "CopyObject"),
        ("DELETE", "/bucket/key", "", {}, "DeleteObject"),
        ("POST", "/bucket/key", "uploads", {}, "CreateMultipartUpload"),
        ("PUT", "/bucket/key", "partNumber=1&uploadId=u", {}, "UploadPart"),
        ("POST", "/bucket/key", "uploadId=u", {}, "CompleteMultipartUpload"),
        ("GET", "/bucket", "list-type=2&prefix=a", {}, "ListObjectsV2"),
        ("PUT", "/bucket", "", {}, "CreateBucket"),
        ("PUT", "/bucket", "versioning", {}, "PutBucketVersioning"),
        ("PUT", "/bucket", "notification", {}, "PutBucketNotificationConfiguration"),
        ("HEAD", "/bucket", "", {}, "HeadBucket"),
        ("GET", "/", "", {}, "ListBuckets"),
    ],
)
def test_s3_operations_from_method_path_and_query(method, path, query, headers, operation):
    call = recognise(_environ(method=method, path=path, query=query, service="s3", headers=headers))
    assert (call.service, call.operation) == ("s3", operation)


def test_s3_virtual_host_addressing_names_the_bucket():
    environ = _environ(method="GET", path="/photo.jpg", service="s3")
    environ["HTTP_HOST"] = "my-bucket.localhost:5000"
    call = recognise(environ)
    assert (call.operation, call.bucket, call.key) == ("GetObject", "my-bucket", "photo.jpg")


def test_lambda_invoke_path_is_invoke():
    call = recognise(
        _environ(path="/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:f/invocations", service="lambda")
    )
    assert (call.service, call.operation) == ("lambda", "Invoke")
    assert recognise(_environ(method="GET", path="/2015-03-31/functions/f", service="lambda")).operation is None


# ---- wire formats (the bytes; botocore's parsing of them is tested against moto) ------


def test_sns_answer_is_a_query_protocol_error_response():
    fault = AwsFault.for_code("sns", "Publish", "Throttled")
    status, _headers, body = error_response(fault, _environ(content_type="application/x-www-form-urlencoded"))
    assert status.startswith("429")
    assert b"<ErrorResponse" in body and b"<Code>Throttled</Code>" in body and b"<Type>Sender</Type>" in body


def test_dynamodb_answer_is_json_with_the_namespaced_type():
    fault = AwsFault.for_code("dynamodb", "PutItem", "ProvisionedThroughputExceededException")
    status, headers, body = error_response(fault, _environ(service="dynamodb"))
    assert status.startswith("400")
    assert json.loads(body)["__type"] == "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    assert ("Content-Type", "application/x-amz-json-1.0") in headers


def test_s3_answer_is_an_xml_error_and_head_has_no_body():
    fault = AwsFault.for_code("s3", "GetObject", "SlowDown")
    status, _, body = error_response(fault, _environ(method="GET", service="s3"))
    assert status.startswith("503") and b"<Code>SlowDown</Code>" in body
    _, _, head_body = error_response(fault, _environ(method="HEAD", service="s3"))
    assert head_body == b""


def test_lambda_answer_names_the_error_in_a_header():
    fault = AwsFault.for_code("lambda", "Invoke", "TooManyRequestsException")
    status, headers, _ = error_response(fault, _environ(service="lambda"))
    assert status.startswith("429")
    assert dict(headers)["x-amzn-ErrorType"].split(":")[0] == "TooManyRequestsException"


# ---- the admin surface ---------------------------------------------------------------


def _admin(middleware, method, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    environ = _environ(method=method, path=ADMIN_PATH, body=data)
    seen = {}
    out = b"".join(middleware(environ, lambda status, headers: seen.update(status=status)))
    return seen["status"], json.loads(out)


def test_admin_surface_sets_reads_and_clears_faults():
    injector = FaultInjector()
    middleware = AwsFaultMiddleware(lambda e, s: [b""], injector, limit_checks=[])
    status, answer = _admin(middleware, "PUT", {"faults": ["sns:Publish:Throttled:0.5"], "seed": 4})
    assert status.startswith("200") and answer["faults"] == ["sns:Publish:Throttled:0.5"] and answer["seed"] == 4
    assert _admin(middleware, "GET")[1]["faults"] == ["sns:Publish:Throttled:0.5"]
    status, answer = _admin(middleware, "PUT", {"faults": ["sns:Publish"]})
    assert status.startswith("400") and "SERVICE:Operation:ErrorCode:RATE" in answer["error"]
    assert _admin(middleware, "DELETE")[1]["faults"] == []


def test_presigned_requests_are_recognised_and_not_faulted():
    environ = _environ(
        method="GET",
        path="/bucket/key.jpg",
        service="s3",
        query="X-Amz-Credential=testing%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x",
    )
    del environ["HTTP_AUTHORIZATION"]
    call = recognise(environ)
    assert (call.service, call.operation, call.presigned) == ("s3", "GetObject", True)
    injector = FaultInjector(["s3:GetObject:SlowDown:1"])
    middleware = AwsFaultMiddleware(lambda e, s: (s("200 OK", []), [b"moto"])[1], injector, limit_checks=[])
    seen = {}
    body = b"".join(middleware(environ, lambda status, headers: seen.update(status=status)))
    assert seen["status"] == "200 OK" and body == b"moto"
    assert injector.describe()["calls"] == {}
