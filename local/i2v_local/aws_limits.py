"""AWS's limits, where AWS enforces them and moto does not, with AWS's own messages.

Stack level (``check_stack_limits``, called when the local stack starts): a template AWS
would refuse does not start, and the error carries the message CloudFormation would show.

* S3 bucket names: 3-63 characters of lower-case letters, digits, dots and hyphens, starting
  and ending with a letter or digit, no ``..``, not formatted as an IP address.
* A function's environment variables: 4 KB in all, measured as Lambda does (the variables
  as one JSON object, the "String measured" of its error).
* ``AWS::Logs::LogGroup`` RetentionInDays: one of the values CloudWatch Logs accepts.
* ReservedConcurrentExecutions: not negative, and the functions together leave the account
  at least 100 unreserved of its (default) 1000 concurrent executions.

Call level (``CALL_LIMIT_CHECKS``, run by ``aws_faults.AwsFaultMiddleware`` on each request):

* Step Functions StartExecution: a name over 80 characters (ValidationException, as AWS
  answers a length constraint) or with a forbidden character (InvalidName); input over
  256 KB in UTF-8 (InvalidExecutionInput). moto checks names only without
  ``execute_state_machine``, and input size never.
* S3 PutObject / CreateMultipartUpload / CopyObject with ``REPLACE``: user metadata over
  2 KB (sum of the UTF-8 bytes of each ``x-amz-meta-*`` key and value) -> MetadataTooLarge.
* SQS ChangeMessageVisibility(Batch) over 43200 s is refused by moto itself (single call:
  InvalidParameterValue; batch: a failed entry), so nothing is added here; a test keeps
  that true across moto upgrades.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .aws_faults import AwsFault, Call
from .template import TemplateError

if TYPE_CHECKING:
    from .template import ResolvedTemplate

ENVIRONMENT_LIMIT_BYTES = 4096
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
ACCOUNT_CONCURRENCY = 1000
MIN_UNRESERVED_CONCURRENCY = 100
EXECUTION_NAME_MAX = 80
EXECUTION_INPUT_MAX_BYTES = 262144
S3_USER_METADATA_MAX_BYTES = 2048
SQS_MAX_VISIBILITY_TIMEOUT = 43200
# What Step Functions refuses in execution names besides control characters.
EXECUTION_NAME_FORBIDDEN = set(' \t\n\r<>{}[]?*"#%\\^|~`$&,;:/')


class StackLimitError(TemplateError):
    """A template AWS would refuse to deploy; the message is AWS's."""


# ---- stack level ---------------------------------------------------------------------


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would refuse this bucket name (CloudFormation's wording), or None."""
    if not 3 <= len(name) <= 63:
        return "Bucket name should be between 3 and 63 characters long"
    if name != name.lower():
        return "Bucket name should not contain uppercase characters"
    if "_" in name:
        return "Bucket name should not contain '_'"
    if not re.fullmatch(r"[a-z0-9.-]+", name):
        return "Bucket name should only contain lowercase letters, numbers, periods (.) and hyphens (-)"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "Bucket name should start and end with a lowercase letter or number"
    if ".." in name:
        return "Bucket name should not contain two adjacent periods"
    if ".-" in name or "-." in name:
        return "Bucket name should not contain dashes next to periods"
    try:
        ipaddress.IPv4Address(name)
        return "Bucket name must not be formatted as an IP address"
    except ValueError:
        pass
    return None


def environment_size(variables: dict) -> tuple[int, str]:
    """(bytes, string measured) of a function's environment, as Lambda measures it."""
    measured = json.dumps({str(k): str(v) for k, v in variables.items()}, separators=(",", ":"), ensure_ascii=False)
    return len(measured.encode("utf-8")), measured


def _env_variables(props: dict) -> dict:
    env = ((props.get("Environment") or {}).get("Variables")) or {}
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}


def check_stack_limits(resolved: ResolvedTemplate) -> None:
    """Raise StackLimitError with AWS's message for the first limit the template breaks."""
    for res in resolved.of_type("AWS::S3::Bucket"):
        problem = bucket_name_problem(res.physical_name)
        if problem:
            raise StackLimitError(
                f"{res.logical_id} (AWS::S3::Bucket) CREATE_FAILED: Resource handler returned message: "
                f'"Invalid request provided: {problem}" (bucket name {res.physical_name!r}; '
                "S3: InvalidBucketName, The specified bucket is not valid.)"
            )

    functions = resolved.of_type("AWS::Serverless::Function", "AWS::Lambda::Function")
    for res in functions:
        size, measured = environment_size(_env_variables(res.properties))
        if size > ENVIRONMENT_LIMIT_BYTES:
            raise StackLimitError(
                f"{res.logical_id} ({res.type}) CREATE_FAILED: Resource handler returned message: "
                '"Lambda was unable to configure your environment variables because the environment variables '
                f'you have provided exceeded the 4KB limit. String measured: {measured}" '
                f"(Service: Lambda, Status Code: 400, Error Code: InvalidParameterValueException; {size} bytes)"
            )

    for res in resolved.of_type("AWS::Logs::LogGroup"):
        days = res.properties.get("RetentionInDays")
        if days is None:
            continue
        try:
            ok = int(str(days)) in LOG_RETENTION_DAYS and str(days).strip().lstrip("-").isdigit()
        except ValueError:
            ok = False
        if not ok:
            allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
            raise StackLimitError(
                f"{res.logical_id} (AWS::Logs::LogGroup) CREATE_FAILED: Resource handler returned message: "
                f"\"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: "
                f'Member must satisfy enum value set: [{allowed}]" '
                "(Service: CloudWatchLogs, Status Code: 400, Error Code: InvalidParameterException)"
            )

    reserved_total = 0
    for res in functions:
        value = res.properties.get("ReservedConcurrentExecutions")
        if value is None:
            continue
        reserved = int(value)
        if reserved < 0:
            raise StackLimitError(
                f"{res.logical_id} ({res.type}) CREATE_FAILED: Resource handler returned message: "
                f"\"1 validation error detected: Value '{reserved}' at 'reservedConcurrentExecutions' failed to "
                'satisfy constraint: Member must have value greater than or equal to 0" '
                "(Service: Lambda, Status Code: 400, Error Code: ValidationException)"
            )
        reserved_total += reserved
        if ACCOUNT_CONCURRENCY - reserved_total < MIN_UNRESERVED_CONCURRENCY:
            raise StackLimitError(
                f"{res.logical_id} ({res.type}) CREATE_FAILED: Resource handler returned message: "
                "\"Specified ReservedConcurrentExecutions for function decreases account's "
                f'UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED_CONCURRENCY}]." '
                "(Service: Lambda, Status Code: 400, Error Code: InvalidParameterValueException; "
                f"{reserved_total} reserved in all of the account's {ACCOUNT_CONCURRENCY})"
            )


# ---- call level ----------------------------------------------------------------------


def _name_has_forbidden(name: str) -> bool:
    return any(c in EXECUTION_NAME_FORBIDDEN or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)


def check_start_execution(call: Call, environ: dict) -> AwsFault | None:
    if call.service != "states" or call.operation not in ("StartExecution", "StartSyncExecution"):
        return None
    name = call.params.get("name")
    if isinstance(name, str):
        if len(name) > EXECUTION_NAME_MAX:
            return AwsFault.for_code(
                "states",
                call.operation,
                "ValidationException",
                f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
                f"Member must have length less than or equal to {EXECUTION_NAME_MAX}",
            )
        if not name or _name_has_forbidden(name):
            return AwsFault.for_code("states", call.operation, "InvalidName", f"Invalid Name: '{name}'")
    text = call.params.get("input")
    if isinstance(text, str):
        size = len(text.encode("utf-8"))
        if size > EXECUTION_INPUT_MAX_BYTES:
            return AwsFault.for_code(
                "states",
                call.operation,
                "InvalidExecutionInput",
                f"Invalid State Machine Execution Input: 'The input size of {size} bytes exceeds "
                f"the maximum of {EXECUTION_INPUT_MAX_BYTES} bytes'",
            )
    return None


def s3_user_metadata_size(environ: dict) -> int:
    """Sum of the UTF-8 bytes of each x-amz-meta-* key (without the prefix) and value."""
    total = 0
    for name, value in environ.items():
        if name.startswith("HTTP_X_AMZ_META_"):
            key = name[len("HTTP_X_AMZ_META_") :]
            # WSGI values are latin-1 decoded bytes of the header; count the bytes that were sent.
            total += len(key.encode("latin-1", "replace")) + len(str(value).encode("latin-1", "replace"))
    return total


def check_s3_metadata(call: Call, environ: dict) -> AwsFault | None:
    if call.service != "s3" or call.operation not in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        return None
    if call.operation == "CopyObject" and environ.get("HTTP_X_AMZ_METADATA_DIRECTIVE", "COPY").upper() != "REPLACE":
        return None
    size = s3_user_metadata_size(environ)
    if size <= S3_USER_METADATA_MAX_BYTES:
        return None
    fault = AwsFault.for_code(
        "s3",
        call.operation,
        "MetadataTooLarge",
        "Your metadata headers exceed the maximum allowed metadata size.",
        status=400,
    )
    fault.extra = {"Size": size, "MaxSizeAllowed": S3_USER_METADATA_MAX_BYTES}
    return fault


CALL_LIMIT_CHECKS: list[Callable[[Call, dict], AwsFault | None]] = [check_start_execution, check_s3_metadata]
