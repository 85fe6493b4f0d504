"""An in-process Lambda runtime for moto: runs the real handlers when moto is asked to invoke.

Without docker moto runs no Lambda code. This module patches the two places moto invokes a
function (``LambdaFunction.invoke``: the Invoke API and Step Functions tasks; and the S3
notification hook) so that they call the handler registered for that function instead.

What it reproduces from AWS, because the pipeline depends on it:

* RequestResponse returns the handler's JSON, or ``{"errorMessage", "errorType",
  "stackTrace"}`` with ``x-amz-function-error: Unhandled`` (Step Functions uses errorType as
  the Error name, so Retry/Catch on exception class names work).
* Asynchronous invocations (InvocationType=Event, S3 notifications) are queued, not run
  inside the caller's request. A failed async invocation is retried (twice by default, or
  the function's MaximumRetryAttempts), then sent to its on-failure SQS destination as a
  destination record.
* The context's ``get_remaining_time_in_millis`` honours the function's Timeout; a handler
  that overruns it is reported as ``Task timed out after N seconds`` (Sandbox.Timedout).
* SQS event source mappings: a poller per mapping, honouring ReportBatchItemFailures and the
  queue's visibility timeout and redrive policy (moto applies redrive on receive).

Environment variables differ per function but ``os.environ`` is process-wide, and handlers
(and Powertools, and boto3) read it at call time. So invocations run one at a time, under
one lock, with the function's environment applied for the duration of the call. A handler
must therefore never invoke another function synchronously (none of ours does); async
invocations and Step Functions tasks are queued and run after the caller returns.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote_plus, unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("i2v_local.lambda_runtime")

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


@dataclass
class FunctionSpec:
    """What the runtime needs to know about one function."""

    logical_id: str
    name: str
    code_uri: Path
    handler: str  # "app.lambda_handler"
    environment: dict[str, str] = field(default_factory=dict)
    timeout: int = 3
    memory_mb: int = 128
    max_retry_attempts: int = 2  # async retries, as on AWS
    on_failure_queue_url: str | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name}"


@dataclass
class InvocationResult:
    payload: Any  # the handler's return value, or the error payload
    error: bool

    def body(self) -> bytes:
        return json.dumps(self.payload).encode()


class LambdaContext:
    """The context object a Python handler receives (the fields Powertools reads)."""

    def __init__(self, spec: FunctionSpec, request_id: str):
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{request_id.replace('-', '')}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error_payload(exc: BaseException) -> dict:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[1:],
    }


class LambdaRuntime:
    """Registry of functions plus the machinery that runs them in this process."""

    def __init__(self, base_environment: dict[str, str] | None = None, sqs_client_factory: Callable | None = None):
        self.functions: dict[str, FunctionSpec] = {}
        self.base_environment = dict(base_environment or {})
        self._modules: dict[str, Any] = {}
        self._lock = threading.Lock()  # one invocation at a time: os.environ is process-wide
        # Guards os.environ changes against stop(): once closed, no invocation touches it, so a
        # handler still running after stop() cannot put this stack's settings back.
        self._env_lock = threading.Lock()
        self._closed = False
        self._async_queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sqs_client_factory = sqs_client_factory
        self._patches: list[tuple[Any, str, Any]] = []
        self.invocations: list[dict] = []  # {function, request_id, error, event}: for progress and tests
        self._pending = 0
        self._pending_lock = threading.Lock()

    # ---- registry -------------------------------------------------------------------

    def register(self, spec: FunctionSpec) -> None:
        self.functions[spec.name] = spec

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        try:
            return self.functions[name]
        except KeyError:
            raise KeyError(f"no local handler registered for function {name!r}") from None

    # ---- invocation -----------------------------------------------------------------

    def _load_handler(self, spec: FunctionSpec) -> Callable:
        module_file, _, func_name = spec.handler.rpartition(".")
        key = spec.logical_id
        if key not in self._modules:
            path = Path(spec.code_uri) / (module_file.replace(".", "/") + ".py")
            # A unique module name per function: every handler file is called app.py.
            unique = f"i2v_local_fn_{spec.logical_id}"
            module_spec = importlib.util.spec_from_file_location(unique, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load handler module {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[unique] = module
            module_spec.loader.exec_module(module)
            self._modules[key] = module
        return getattr(self._modules[key], func_name)

    def _function_environment(self, spec: FunctionSpec) -> dict[str, str]:
        env = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }
        env.update(self.base_environment)
        env.update({k: str(v) for k, v in spec.environment.items()})
        return env

    def invoke(self, name_or_arn: str, event: Any) -> InvocationResult:
        """Run the handler once, synchronously, with the function's environment and timeout."""
        spec = self.spec(name_or_arn)
        request_id = str(uuid.uuid4())
        outcome: dict[str, Any] = {}
        with self._lock:
            with self._env_lock:
                if self._closed:
                    return InvocationResult(
                        {"errorMessage": "the local Lambda runtime is stopped", "errorType": "Runtime.Stopped"}, True
                    )
                saved = dict(os.environ)
                os.environ.update(self._function_environment(spec))
            try:
                handler = self._load_handler(spec)
                context = LambdaContext(spec, request_id)

                def run() -> None:
                    try:
                        outcome["value"] = handler(event, context)
                    except BaseException as exc:  # reported to the caller as a function error, as on AWS
                        outcome["error"] = exc

                worker = threading.Thread(target=run, name=f"lambda-{spec.logical_id}", daemon=True)
                worker.start()
                worker.join(spec.timeout)
                if worker.is_alive():
                    # AWS kills the sandbox; we cannot kill a thread, so we stop waiting for it.
                    result = InvocationResult(
                        {
                            "errorMessage": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S.%fZ} {request_id} "
                            f"Task timed out after {spec.timeout:.2f} seconds",
                            "errorType": "Sandbox.Timedout",
                        },
                        True,
                    )
                elif "error" in outcome:
                    result = InvocationResult(error_payload(outcome["error"]), True)
                else:
                    # Round-trip through JSON as the real service does (dates etc. must serialise).
                    result = InvocationResult(json.loads(json.dumps(outcome.get("value"))), False)
            except Exception as exc:  # the handler could not even be loaded: Runtime.ImportModuleError on AWS
                result = InvocationResult(
                    {"errorMessage": str(exc), "errorType": "Runtime.ImportModuleError", "stackTrace": []}, True
                )
            finally:
                with self._env_lock:
                    if not self._closed:
                        os.environ.clear()
                        os.environ.update(saved)
        self.invocations.append({"function": spec.logical_id, "request_id": request_id, "error": result.error, "event": event})
        if result.error:
            log.warning("%s failed: %s: %s", spec.logical_id, result.payload.get("errorType"), result.payload.get("errorMessage"))
        return result

    def invoke_async(self, name_or_arn: str, event: Any) -> str:
        """Queue an Event invocation (S3 notifications, InvocationType=Event)."""
        spec = self.spec(name_or_arn)
        request_id = str(uuid.uuid4())
        with self._pending_lock:
            self._pending += 1
        self._async_queue.put((spec.name, event, request_id))
        return request_id

    def _async_worker(self) -> None:
        while not self._stop.is_set():
            try:
                name, event, request_id = self._async_queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run_async(name, event, request_id)
            finally:
                with self._pending_lock:
                    self._pending -= 1

    def _run_async(self, name: str, event: Any, request_id: str) -> None:
        spec = self.spec(name)
        attempts = 0
        result = None
        while attempts <= spec.max_retry_attempts and not self._stop.is_set():
            attempts += 1
            result = self.invoke(name, event)
            if not result.error:
                return
            # AWS waits about a minute, then two; locally a short pause keeps runs quick.
            time.sleep(0.2 * attempts)
        if result is None or self._stop.is_set():
            return
        if spec.on_failure_queue_url:
            record = {
                "version": "1.0",
                "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "requestContext": {
                    "requestId": request_id,
                    "functionArn": f"{spec.arn}:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": event,
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": result.payload,
            }
            self._sqs().send_message(QueueUrl=spec.on_failure_queue_url, MessageBody=json.dumps(record))
        else:
            log.error("async invocation of %s failed after %d attempts and has no destination", spec.logical_id, attempts)

    def idle(self) -> bool:
        with self._pending_lock:
            return self._pending == 0

    # ---- SQS event source mappings ---------------------------------------------------

    def add_sqs_source(self, function_name: str, queue_url: str, queue_arn: str, batch_size: int = 10, report_failures: bool = False) -> None:
        thread = threading.Thread(
            target=self._poll_sqs,
            args=(function_name, queue_url, queue_arn, batch_size, report_failures),
            name=f"sqs-{function_name}",
            daemon=True,
        )
        self._threads.append(thread)
        if self._started:
            thread.start()

    _started = False

    def _sqs(self):
        if self._sqs_client_factory is None:
            raise RuntimeError("the runtime has no SQS client factory")
        return self._sqs_client_factory()

    def _poll_sqs(self, function_name: str, queue_url: str, queue_arn: str, batch_size: int, report_failures: bool) -> None:
        sqs = self._sqs()
        while not self._stop.is_set():
            try:
                response = sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(batch_size, 10),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except (BotoCoreError, ClientError) as exc:  # the server is stopping, or a transient hiccup: keep polling
                if not self._stop.is_set():
                    log.debug("receive from %s failed: %s", queue_url, exc)
                    time.sleep(0.5)
                continue
            messages = response.get("Messages", [])
            if not messages:
                continue
            event = {"Records": [_sqs_record(m, queue_arn) for m in messages]}
            result = self.invoke(function_name, event)
            if result.error:
                continue  # the whole batch becomes visible again after the visibility timeout
            failed = set()
            if report_failures and isinstance(result.payload, dict):
                failed = {f.get("itemIdentifier") for f in result.payload.get("batchItemFailures") or []}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )

    # ---- lifecycle and moto patches --------------------------------------------------

    def start(self, async_workers: int = 1) -> None:
        self._install_patches()
        self._started = True
        for i in range(async_workers):
            self._threads.append(threading.Thread(target=self._async_worker, name=f"lambda-async-{i}", daemon=True))
        for thread in self._threads:
            if not thread.is_alive():
                thread.start()

    def stop(self, lock_timeout: float = 10.0) -> None:
        """Stop the workers; afterwards no invocation applies or restores an environment.

        Waits (bounded) for a running invocation to end, so it restores os.environ itself
        before the caller restores the process environment; one still running after that
        leaves os.environ alone.
        """
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        acquired = self._lock.acquire(timeout=lock_timeout)
        try:
            with self._env_lock:
                self._closed = True
        finally:
            if acquired:
                self._lock.release()
        if not acquired:
            log.warning("an invocation was still running when the runtime stopped")
        self._remove_patches()

    def _install_patches(self) -> None:
        import moto.s3.notifications as s3_notifications
        from moto.awslambda.models import LambdaFunction

        runtime = self

        def invoke(fn_self, body, request_headers, response_headers):  # noqa: ANN001 - moto's signature
            event = json.loads(body) if body else {}
            headers = {str(k).lower(): v for k, v in dict(request_headers or {}).items()}
            if headers.get("x-amz-invocation-type") == "Event":
                runtime.invoke_async(fn_self.function_name, event)
                return b""
            result = runtime.invoke(fn_self.function_name, event)
            if result.error:
                response_headers["x-amz-function-error"] = "Unhandled"
            return result.body()

        def invoke_from_s3(account_id, event_body, fn_arn, region_name):  # noqa: ANN001
            # AWS invokes Lambda from S3 asynchronously; moto would run it inside PutObject.
            for record in event_body.get("Records", []):
                obj = record.get("s3", {}).get("object", {})
                if "key" in obj:  # AWS leaves "/" unencoded; moto encodes it as %2F
                    obj["key"] = quote_plus(unquote_plus(obj["key"]), safe="/")
            try:
                runtime.invoke_async(fn_arn, event_body)
            except KeyError as exc:
                log.error("S3 notification for an unknown function: %s", exc)

        original_s3_event = s3_notifications._get_s3_event

        def s3_event_with_version(event_name, bucket, key, notification_id):  # noqa: ANN001
            # AWS names the object version (and a sequencer) in the event; moto leaves them out.
            event = original_s3_event(event_name, bucket, key, notification_id)
            obj = event["Records"][0]["s3"]["object"]
            if getattr(key, "version_id", None) not in (None, "null"):
                obj["versionId"] = key.version_id
            obj["sequencer"] = f"{time.time_ns():016X}"
            return event

        self._patch(LambdaFunction, "invoke", invoke)
        self._patch(s3_notifications, "_invoke_awslambda", invoke_from_s3)
        self._patch(s3_notifications, "_get_s3_event", s3_event_with_version)

    def _patch(self, owner: Any, attribute: str, value: Any) -> None:
        self._patches.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, value)

    def _remove_patches(self) -> None:
        while self._patches:
            owner, attribute, original = self._patches.pop()
            setattr(owner, attribute, original)


def _sqs_record(message: dict, queue_arn: str) -> dict:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
