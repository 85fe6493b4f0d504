"""AWS-side faults, with the names and wire formats AWS gives them, for the local stack.

A fault spec is ``SERVICE:Operation:ErrorCode:RATE``::

    sns:Publish:Throttled:0.1
    dynamodb:PutItem:ProvisionedThroughputExceededException:0.05
    s3:GetObject:SlowDown:0.05
    secretsmanager:GetSecretValue:ThrottlingException:0.1
    states:StartExecution:ThrottlingException:0.1
    lambda:Invoke:TooManyRequestsException:0.1

SERVICE is the name AWS signs requests with (``states`` for Step Functions; ``stepfunctions``
is accepted too), Operation an API operation of that service as botocore knows it, ErrorCode
the code AWS puts on the wire, RATE a probability in [0, 1].

``FaultInjector`` decides, seeded, which calls fail: the n-th call of one operation fails or
not depending only on (seed, service, operation, n, spec), so a failing run is repeated by
running it again with the same seed, whatever the other threads do.

``AwsFaultMiddleware`` wraps moto's WSGI app. For each request it works out the service and
operation (SigV4 credential scope; ``Action=`` for the query protocol, ``X-Amz-Target`` for
the JSON protocol, method + path + query for S3 and Lambda) and, when the injector picks a
fault, answers in that service's own error format and HTTP status, so botocore raises the
modeled exception class it raises on AWS (``ThrottledException`` for SNS ``Throttled``, ...).
Requests made with a presigned URL (the provider fetching the image, a person downloading
the video) are not faulted: what another party does on a throttle is not under test here.
It also enforces the call-level limits of ``aws_limits`` that moto does not, and serves the
admin surface ``GET/PUT/DELETE /_i2v/aws-faults``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

ADMIN_PATH = "/_i2v/aws-faults"

# Spec service name (the SigV4 signing name) -> botocore service name.
SERVICES = {
    "s3": "s3",
    "sns": "sns",
    "sqs": "sqs",
    "dynamodb": "dynamodb",
    "secretsmanager": "secretsmanager",
    "states": "stepfunctions",
    "lambda": "lambda",
    "events": "events",
}
SERVICE_ALIASES = {"stepfunctions": "states", "eventbridge": "events"}

# X-Amz-Target prefixes of the JSON-protocol services -> signing name.
TARGET_PREFIXES = {
    "DynamoDB_20120810": "dynamodb",
    "AWSStepFunctions": "states",
    "secretsmanager": "secretsmanager",
    "AWSEvents": "events",
    "AmazonSQS": "sqs",
}

# The messages AWS sends with these codes.
MESSAGES = {
    "Throttled": "Rate exceeded",
    "ThrottlingException": "Rate exceeded",
    "Throttling": "Rate exceeded",
    "RequestThrottled": "Request is throttled.",
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
    "RequestLimitExceeded": (
        "Throughput exceeds the current throughput limit for your account. "
        "Please contact AWS Support at https://aws.amazon.com/support request a limit increase"
    ),
    "SlowDown": "Please reduce your request rate.",
    "TooManyRequestsException": "Rate Exceeded.",
    "InternalError": "We encountered an internal error. Please try again.",
    "InternalFailure": "The request processing has failed because of an unknown error, exception or failure.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "ServiceException": "The Lambda service encountered an internal error.",
}
# HTTP status of codes botocore's models do not carry (the models win where they do).
STATUSES = {
    "SlowDown": 503,
    "InternalError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
    "ServiceException": 500,
    "InternalServerError": 500,
    "InternalServiceError": 500,
    "InternalServiceErrorException": 500,
    "Throttled": 429,
    "TooManyRequestsException": 429,
}
# The namespace AWS puts before '#' in a JSON error's __type.
JSON_NAMESPACES = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810#",
    "sqs": "com.amazonaws.sqs#",
}

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,99}")


class FaultSpecError(ValueError):
    """A fault spec that cannot be used; the message says why and shows the form."""


# ---- specs ---------------------------------------------------------------------------


@cache
def _service_model(signing_name: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(SERVICES[signing_name])


@dataclass
class FaultSpec:
    service: str
    operation: str
    code: str
    rate: float

    def __str__(self) -> str:
        return f"{self.service}:{self.operation}:{self.code}:{self.rate:g}"


def parse_spec(text: str) -> FaultSpec:
    """``SERVICE:Operation:ErrorCode:RATE`` -> FaultSpec; FaultSpecError with the reason."""
    form = "expected SERVICE:Operation:ErrorCode:RATE, e.g. sns:Publish:Throttled:0.1"
    if not isinstance(text, str):
        raise FaultSpecError(f"fault spec {text!r}: {form}")
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(p.strip() for p in parts):
        raise FaultSpecError(f"fault spec {text!r}: {form}")
    service, operation, code, rate_text = (p.strip() for p in parts)
    service = SERVICE_ALIASES.get(service.lower(), service.lower())
    if service not in SERVICES:
        raise FaultSpecError(
            f"fault spec {text!r}: unknown service {parts[0]!r} (one of {', '.join(sorted(SERVICES))})"
        )
    operations = _service_model(service).operation_names
    if operation not in operations:
        close = [name for name in operations if name.lower() == operation.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise FaultSpecError(f"fault spec {text!r}: {service} has no operation {operation!r}{hint}")
    if not _CODE.fullmatch(code):
        raise FaultSpecError(f"fault spec {text!r}: error code {code!r} is not an AWS error code")
    try:
        rate = float(rate_text)
    except ValueError:
        raise FaultSpecError(f"fault spec {text!r}: rate {rate_text!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultSpecError(f"fault spec {text!r}: rate {rate_text} is not between 0 and 1")
    return FaultSpec(service, operation, code, rate)


def parse_specs(specs: Iterable[str | FaultSpec]) -> list[FaultSpec]:
    if isinstance(specs, str):
        specs = [specs]
    return [s if isinstance(s, FaultSpec) else parse_spec(s) for s in specs]


# ---- faults --------------------------------------------------------------------------


@dataclass
class AwsFault:
    """An error AWS would answer with: its code, message, HTTP status and protocol."""

    service: str
    operation: str
    code: str
    message: str
    status: int
    sender_fault: bool = True
    extra: dict = field(default_factory=dict)  # extra XML elements (S3) or JSON fields

    @classmethod
    def for_code(
        cls, service: str, operation: str, code: str, message: str | None = None, status: int | None = None
    ) -> AwsFault:
        modeled_status, sender = _modeled(service, code)
        status = status or modeled_status or STATUSES.get(code) or 400
        if modeled_status is None:
            sender = status < 500
        return cls(
            service,
            operation,
            code,
            message or MESSAGES.get(code) or f"{code} (injected by the local stack)",
            status,
            sender,
        )


@cache
def _modeled(service: str, code: str) -> tuple[int | None, bool]:
    """(HTTP status, sender fault) from botocore's model of the error, if it models it."""
    for shape in _service_model(service).error_shapes:
        error = shape.metadata.get("error") or {}
        if error.get("code", shape.name) == code or shape.name == code:
            return error.get("httpStatusCode"), bool(error.get("senderFault", True))
    return None, True


def _unit_interval(*parts: Any) -> float:
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FaultInjector:
    """Seeded, thread-safe choice of which AWS calls fail.

    ``pick(service, operation)`` returns an AwsFault for the call or None. The n-th call of
    an operation fails (or not) depending only on the seed, the operation, n and the specs,
    so a run is repeatable even when other operations are called concurrently.
    """

    def __init__(self, specs: Iterable[str | FaultSpec] = (), seed: int | None = None):
        self._lock = threading.Lock()
        self.seed = int(seed) if seed is not None else 0
        self._specs: list[FaultSpec] = parse_specs(specs)
        self._calls: dict[tuple[str, str], int] = {}
        self._injected: dict[str, int] = {}

    @property
    def specs(self) -> list[FaultSpec]:
        with self._lock:
            return list(self._specs)

    def set(self, specs: Iterable[str | FaultSpec], seed: int | None = None) -> None:
        """Replace the specs (parsed first: a bad spec changes nothing); optionally re-seed."""
        parsed = parse_specs(specs)
        with self._lock:
            self._specs = parsed
            if seed is not None:
                self.seed = int(seed)
            self._calls.clear()
            self._injected.clear()

    def clear(self) -> None:
        self.set([])

    def pick(self, service: str, operation: str) -> AwsFault | None:
        service = SERVICE_ALIASES.get(service.lower(), service.lower())
        with self._lock:
            matching = [s for s in self._specs if s.service == service and s.operation == operation]
            if not matching:
                return None
            n = self._calls.get((service, operation), 0)
            self._calls[(service, operation)] = n + 1
            for index, spec in enumerate(matching):
                if spec.rate > 0 and _unit_interval(self.seed, service, operation, n, index, spec.code) < spec.rate:
                    self._injected[str(spec)] = self._injected.get(str(spec), 0) + 1
                    return AwsFault.for_code(service, operation, spec.code)
        return None

    def injected(self, spec: str | FaultSpec | None = None) -> int:
        """How many faults were injected (for one spec, or in all) since the specs were set."""
        with self._lock:
            if spec is None:
                return sum(self._injected.values())
            key = str(spec if isinstance(spec, FaultSpec) else parse_spec(spec))
            return self._injected.get(key, 0)

    def describe(self) -> dict:
        with self._lock:
            return {
                "seed": self.seed,
                "faults": [str(s) for s in self._specs],
                "injected": dict(self._injected),
                "calls": {f"{svc}:{op}": n for (svc, op), n in sorted(self._calls.items())},
            }


# ---- recognising the operation -------------------------------------------------------

_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_LAMBDA_INVOKE = re.compile(r"^/(?:2015-03-31/functions/[^/]+/invocations|2014-11-13/functions/[^/]+/invoke-async)/?$")
_S3_SUBRESOURCES = {
    "acl": "Acl",
    "tagging": "Tagging",
    "versioning": "Versioning",
    "notification": "NotificationConfiguration",
    "policy": "Policy",
    "cors": "Cors",
    "lifecycle": "LifecycleConfiguration",
    "encryption": "Encryption",
    "location": "Location",
    "website": "Website",
    "logging": "Logging",
    "replication": "Replication",
    "ownershipControls": "OwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
    "object-lock": "ObjectLockConfiguration",
    "accelerate": "AccelerateConfiguration",
    "requestPayment": "RequestPayment",
}


@dataclass
class Call:
    """One request as AWS would see it: service, operation, and what the limits need."""

    service: str | None
    operation: str | None
    params: dict = field(default_factory=dict)  # query-protocol form or JSON body (when read)
    bucket: str | None = None
    key: str | None = None
    presigned: bool = False  # authenticated by the query string: a presigned URL, not an SDK call


def _signing_service(environ: dict) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = _CREDENTIAL.search(auth)
    if match:
        return match.group(1)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    credential = (query.get("X-Amz-Credential") or [""])[0]
    parts = credential.split("/")
    if len(parts) >= 5:
        return parts[3]
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return TARGET_PREFIXES.get(target.split(".", 1)[0])
    return None


def _read_body(environ: dict) -> bytes:
    """Read the request body and put it back, so moto reads it too."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return body


def _s3_bucket_and_key(environ: dict) -> tuple[str | None, str | None]:
    host = environ.get("HTTP_HOST", "").rsplit(":", 1)[0] if not environ.get("HTTP_HOST", "").startswith("[") else ""
    path = unquote(environ.get("PATH_INFO", "") or "/")
    virtual = None
    if host and not re.fullmatch(r"[\d.]+", host) and host != "localhost":
        if host.endswith(".localhost"):
            virtual = host[: -len(".localhost")]
        elif ".s3." in host or ".s3-" in host:
            virtual = re.split(r"\.s3[.-]", host, maxsplit=1)[0]
    if virtual:
        return virtual, path.lstrip("/") or None
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0] or None
    key = parts[1] if len(parts) > 1 and parts[1] else None
    return bucket, key


def _s3_operation(environ: dict, bucket: str | None, key: str | None) -> str | None:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    copy_source = "HTTP_X_AMZ_COPY_SOURCE" in environ
    if bucket is None:
        return "ListBuckets" if method == "GET" else None
    if key is not None:
        if "uploadId" in query:
            return {
                "GET": "ListParts",
                "PUT": "UploadPartCopy" if copy_source else "UploadPart",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
            }.get(method)
        if method == "POST" and "uploads" in query:
            return "CreateMultipartUpload"
        for sub in ("tagging", "acl", "retention", "legal-hold"):
            if sub in query:
                name = {"legal-hold": "LegalHold", "retention": "Retention"}.get(sub, _S3_SUBRESOURCES.get(sub, ""))
                return {"GET": f"GetObject{name}", "PUT": f"PutObject{name}", "DELETE": f"DeleteObject{name}"}.get(
                    method
                )
        if method == "POST" and "restore" in query:
            return "RestoreObject"
        return {
            "GET": "GetObject",
            "HEAD": "HeadObject",
            "PUT": "CopyObject" if copy_source else "PutObject",
            "DELETE": "DeleteObject",
        }.get(method)
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "GET":
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
        if "versions" in query:
            return "ListObjectVersions"
        if "uploads" in query:
            return "ListMultipartUploads"
    for sub, name in _S3_SUBRESOURCES.items():
        if sub in query:
            if sub == "location":
                return "GetBucketLocation"
            return {"GET": f"GetBucket{name}", "PUT": f"PutBucket{name}", "DELETE": f"DeleteBucket{name}"}.get(method)
    return {"GET": "ListObjects", "HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method)


def recognise(environ: dict) -> Call:
    """The service and operation of a request to moto's server (None where unknown)."""
    service = _signing_service(environ)
    if service in SERVICE_ALIASES:
        service = SERVICE_ALIASES[service]
    if service == "s3":
        bucket, key = _s3_bucket_and_key(environ)
        presigned = "HTTP_AUTHORIZATION" not in environ and "X-Amz-Credential" in environ.get("QUERY_STRING", "")
        return Call("s3", _s3_operation(environ, bucket, key), bucket=bucket, key=key, presigned=presigned)
    if service == "lambda":
        path = environ.get("PATH_INFO", "")
        operation = "Invoke" if environ.get("REQUEST_METHOD") == "POST" and _LAMBDA_INVOKE.match(path) else None
        return Call("lambda", operation)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target and "." in target:
        service = service or TARGET_PREFIXES.get(target.split(".", 1)[0])
        operation = target.rsplit(".", 1)[1]
        params: dict = {}
        if service in ("states", "sqs"):  # their call-level limits read the body
            try:
                params = json.loads(_read_body(environ) or b"{}")
            except ValueError:
                params = {}
        return Call(service, operation, params if isinstance(params, dict) else {})
    content_type = environ.get("CONTENT_TYPE", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return Call(service, query["Action"][0], {k: v[0] for k, v in query.items()})
    if environ.get("REQUEST_METHOD") == "POST" and "x-www-form-urlencoded" in content_type:
        form = parse_qs(_read_body(environ).decode("utf-8", "replace"))
        if "Action" in form:
            return Call(service, form["Action"][0], {k: v[0] for k, v in form.items()})
    return Call(service, None)


# ---- answering in AWS's wire formats -------------------------------------------------


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def error_response(
    fault: AwsFault, environ: dict, request_id: str | None = None
) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of fault in its service's protocol."""
    from http import HTTPStatus

    request_id = request_id or str(uuid.uuid4())
    try:
        reason = HTTPStatus(fault.status).phrase
    except ValueError:
        reason = "Error"
    status = f"{fault.status} {reason}"
    headers = [("x-amzn-RequestId", request_id), ("x-i2v-injected", "aws-fault")]
    protocol = _service_model(fault.service).protocol
    # A query-protocol request to a JSON service (old SDKs, SQS) is answered in XML.
    query_request = "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") and not environ.get("HTTP_X_AMZ_TARGET")
    if protocol == "query" or (query_request and protocol == "json"):
        kind = "Sender" if fault.sender_fault else "Receiver"
        body = (
            f'<ErrorResponse xmlns="http://{fault.service}.amazonaws.com/doc/"><Error><Type>{kind}</Type>'
            f"<Code>{_xml_escape(fault.code)}</Code><Message>{_xml_escape(fault.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    elif protocol == "rest-xml":
        extra = "".join(f"<{k}>{_xml_escape(str(v))}</{k}>" for k, v in fault.extra.items())
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{_xml_escape(fault.code)}</Code><Message>{_xml_escape(fault.message)}</Message>{extra}"
            f"<RequestId>{request_id[:16].upper()}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
        headers += [("Content-Type", "application/xml"), ("x-amz-request-id", request_id[:16].upper())]
        if environ.get("REQUEST_METHOD") == "HEAD":
            body = b""  # S3 answers HEAD errors without a body
    elif protocol == "rest-json":
        body = json.dumps(
            {"Type": "User" if fault.sender_fault else "Service", "message": fault.message, **fault.extra}
        ).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", f"{fault.code}:")]
    else:  # json
        version = _service_model(fault.service).metadata.get("jsonVersion", "1.0")
        payload = {
            "__type": JSON_NAMESPACES.get(fault.service, "") + fault.code,
            "message": fault.message,
            **fault.extra,
        }
        body = json.dumps(payload).encode()
        headers.append(("Content-Type", f"application/x-amz-json-{version}"))
        if "awsQueryCompatible" in _service_model(fault.service).metadata:
            headers.append(("x-amzn-query-error", f"{fault.code};{'Sender' if fault.sender_fault else 'Receiver'}"))
    headers.append(("Content-Length", str(len(body))))
    return status, headers, body


# ---- the middleware ------------------------------------------------------------------

LimitCheck = Callable[[Call, dict], "AwsFault | None"]


class AwsFaultMiddleware:
    """WSGI middleware around moto's app: AWS's call-level limits, injected faults, admin."""

    def __init__(
        self,
        app: Callable,
        injector: FaultInjector,
        limit_checks: Iterable[LimitCheck] | None = None,
        fault_lambda_invokes: bool = True,
    ):
        self.app = app
        self.injector = injector
        # The local stack's Lambda runtime applies lambda:Invoke faults to every invocation itself
        # (HTTP, Step Functions tasks, S3 notifications, SQS pollers): applying them here too would
        # count an HTTP invoke twice.
        self.fault_lambda_invokes = fault_lambda_invokes
        if limit_checks is None:
            from .aws_limits import CALL_LIMIT_CHECKS

            limit_checks = CALL_LIMIT_CHECKS
        self.limit_checks = list(limit_checks)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.rstrip("/") == ADMIN_PATH:
            return self._admin(environ, start_response)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        call = recognise(environ)
        if call.service in SERVICES and call.operation:
            for check in self.limit_checks:
                refusal = check(call, environ)
                if refusal is not None:
                    return self._answer(refusal, environ, start_response)
            # Presigned URLs are fetched by others (the provider, a browser): their retries are not under test.
            skipped = call.presigned or (call.service == "lambda" and not self.fault_lambda_invokes)
            fault = None if skipped else self.injector.pick(call.service, call.operation)
            if fault is not None:
                return self._answer(fault, environ, start_response)
        return self.app(environ, start_response)

    @staticmethod
    def _answer(fault: AwsFault, environ: dict, start_response: Callable) -> list[bytes]:
        _read_body(environ)  # drain what the client sent, so the connection stays usable
        status, headers, body = error_response(fault, environ)
        start_response(status, headers)
        return [body]

    def _admin(self, environ: dict, start_response: Callable) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        status = "200 OK"
        try:
            if method in ("PUT", "POST"):
                body = json.loads(_read_body(environ) or b"{}")
                if isinstance(body, list):
                    body = {"faults": body}
                if not isinstance(body, dict) or not isinstance(body.get("faults", []), list):
                    raise FaultSpecError('expected {"faults": ["SERVICE:Operation:ErrorCode:RATE", ...], "seed": N}')
                self.injector.set(body.get("faults", []), seed=body.get("seed"))
            elif method == "DELETE":
                self.injector.clear()
            elif method != "GET":
                status = "405 Method Not Allowed"
            answer: dict = self.injector.describe()
        except (FaultSpecError, ValueError, TypeError) as exc:
            status, answer = "400 Bad Request", {"error": str(exc)}
        data = json.dumps(answer).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


class FaultingMotoServer:
    """moto's threaded server with ``AwsFaultMiddleware`` around its app.

    The same interface as ``moto.server.ThreadedMotoServer``: start(), get_host_and_port(), stop().
    """

    def __init__(
        self, injector: FaultInjector, ip_address: str = "127.0.0.1", port: int = 0, fault_lambda_invokes: bool = True
    ):
        self.injector = injector
        self.fault_lambda_invokes = fault_lambda_invokes
        self._ip_address, self._port = ip_address, port
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from werkzeug.serving import make_server

        from .moto_internals import moto_server_app_and_handler

        app, handler = moto_server_app_and_handler()
        middleware = AwsFaultMiddleware(app, self.injector, fault_lambda_invokes=self.fault_lambda_invokes)
        self._server = make_server(self._ip_address, self._port, middleware, threaded=True, request_handler=handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
