"""AWS's limits: the stack-level checks on a resolved template, the call-level checks' rules."""

from pathlib import Path

import pytest

from i2v_local import template as tpl
from i2v_local.aws_limits import (
    StackLimitError,
    bucket_name_problem,
    check_stack_limits,
    environment_size,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _resolved(tmp_path: Path, resources: str) -> tpl.ResolvedTemplate:
    path = tmp_path / "template.yaml"
    path.write_text("Transform: AWS::Serverless-2016-10-31\nResources:\n" + resources)
    return tpl.load(path)


def _function(name: str = "Fn", extra: str = "") -> str:
    return (
        f"  {name}:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      CodeUri: functions/x\n      Handler: app.lambda_handler\n      Runtime: python3.12\n" + extra
    )


def test_the_repository_template_is_within_every_limit():
    resolved = tpl.load(REPO_ROOT / "template.yaml", {"ProviderBaseUrl": "http://127.0.0.1:9999"})
    check_stack_limits(resolved)


# ---- bucket names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my-bucket.v2", "i2v-local-input-123456789012-us-east-1", "1bucket"])
def test_valid_bucket_names(name):
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ab", "between 3 and 63"),
        ("a" * 64, "between 3 and 63"),
        ("My-Bucket", "uppercase"),
        ("my_bucket", "'_'"),
        ("-bucket", "start and end"),
        ("bucket-", "start and end"),
        ("my..bucket", "two adjacent periods"),
        ("192.168.1.1", "IP address"),
        ("bucket!", "only contain"),
    ],
)
def test_invalid_bucket_names(name, reason):
    assert reason in bucket_name_problem(name)


def test_a_stack_with_an_invalid_bucket_name_does_not_start(tmp_path):
    resolved = _resolved(
        tmp_path, "  Input:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: My_Uploads\n"
    )
    with pytest.raises(StackLimitError, match=r"Input \(AWS::S3::Bucket\) CREATE_FAILED.*uppercase"):
        check_stack_limits(resolved)


def test_generated_bucket_names_follow_the_stack_name(tmp_path):
    check_stack_limits(_resolved(tmp_path, "  Input:\n    Type: AWS::S3::Bucket\n"))


# ---- function environment ------------------------------------------------------------


def test_environment_size_is_measured_as_the_json_lambda_shows():
    size, measured = environment_size({"A": "1", "B": "xy"})
    assert measured == '{"A":"1","B":"xy"}' and size == len(measured)
    assert environment_size({"K": "é"})[0] == len('{"K":"é"}'.encode())


def test_an_environment_over_4_kb_does_not_start(tmp_path):
    big = "x" * 4100
    resolved = _resolved(tmp_path, _function(extra=f"      Environment:\n        Variables:\n          BIG: {big}\n"))
    with pytest.raises(StackLimitError, match=r"exceeded the 4KB limit\. String measured"):
        check_stack_limits(resolved)


def test_an_environment_just_under_4_kb_starts(tmp_path):
    value = "x" * (4096 - len('{"BIG":""}'))
    resolved = _resolved(tmp_path, _function(extra=f"      Environment:\n        Variables:\n          BIG: {value}\n"))
    check_stack_limits(resolved)


def test_globals_count_towards_a_functions_environment(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text(
        "Transform: AWS::Serverless-2016-10-31\nGlobals:\n  Function:\n    Environment:\n      Variables:\n"
        f"        SHARED: {'y' * 3000}\nResources:\n"
        + _function(extra=f"      Environment:\n        Variables:\n          OWN: {'z' * 1200}\n")
    )
    with pytest.raises(StackLimitError, match="4KB"):
        check_stack_limits(tpl.load(path))


# ---- log retention -------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 14, 365, 3653])
def test_allowed_log_retention(tmp_path, days):
    check_stack_limits(
        _resolved(tmp_path, f"  Logs:\n    Type: AWS::Logs::LogGroup\n    Properties:\n      RetentionInDays: {days}\n")
    )


@pytest.mark.parametrize("days", [2, 0, 10, 3650, -1])
def test_log_retention_outside_the_allowed_values_does_not_start(tmp_path, days):
    resolved = _resolved(
        tmp_path, f"  Logs:\n    Type: AWS::Logs::LogGroup\n    Properties:\n      RetentionInDays: {days}\n"
    )
    with pytest.raises(StackLimitError, match=f"Value '{days}' at 'retentionInDays' failed to satisfy constraint"):
        check_stack_limits(resolved)


# ---- reserved concurrency ------------------------------------------------------------


def test_negative_reserved_concurrency_does_not_start(tmp_path):
    resolved = _resolved(tmp_path, _function(extra="      ReservedConcurrentExecutions: -1\n"))
    with pytest.raises(StackLimitError, match="must have value greater than or equal to 0"):
        check_stack_limits(resolved)


def test_reserved_concurrency_must_leave_100_unreserved(tmp_path):
    resolved = _resolved(
        tmp_path,
        _function("A", "      ReservedConcurrentExecutions: 500\n")
        + _function("B", "      ReservedConcurrentExecutions: 401\n"),
    )
    with pytest.raises(StackLimitError, match=r"UnreservedConcurrentExecution below its minimum value of \[100\]"):
        check_stack_limits(resolved)


def test_reserved_concurrency_up_to_900_in_all_starts(tmp_path):
    check_stack_limits(
        _resolved(
            tmp_path,
            _function("A", "      ReservedConcurrentExecutions: 500\n")
            + _function("B", "      ReservedConcurrentExecutions: 400\n"),
        )
    )


def test_a_stack_limit_error_is_a_template_error():
    assert issubclass(StackLimitError, tpl.TemplateError)
