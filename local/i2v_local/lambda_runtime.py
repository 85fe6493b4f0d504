"""A local Lambda service: execution environments as processes, served by a Runtime API.

Each execution environment is a separate process running AWS's own runtime interface client
(``python -m awslambdaric app.lambda_handler``), exactly how Lambda's Python images start,
with the function's CodeUri as its working directory and task root, its layers on
PYTHONPATH (where ``/opt/python`` would be) and its environment: the template's variables,
the ``AWS_LAMBDA_*`` variables Lambda sets, fake credentials and ``AWS_ENDPOINT_URL``.
Every environment talks to a Lambda Runtime API of its own on loopback
(``AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT``: ``/2018-06-01/runtime/invocation/next``,
``/invocation/{id}/response``, ``/invocation/{id}/error``, ``/init/error``), as a sandbox
talks to its own on AWS.

What it reproduces from AWS, because the pipeline depends on it:

* Concurrency. Environments are reused warm and created cold (on demand, nothing is
  pre-warmed) when all are busy, up to the function's ReservedConcurrentExecutions, an SQS
  event source's MaximumConcurrency, or the stack-wide default (10). Beyond that a
  synchronous invoke (the Invoke API, a Step Functions task) is throttled with
  ``TooManyRequestsException`` (HTTP 429) and an asynchronous one waits.
* RequestResponse returns the handler's JSON, or ``{"errorMessage", "errorType",
  "stackTrace"}`` with ``x-amz-function-error: Unhandled`` (Step Functions uses errorType as
  the Error name, so Retry/Catch on exception class names work).
* Asynchronous invocations (InvocationType=Event, S3 notifications) are queued, not run
  inside the caller's request, and run concurrently. A failed one is retried (twice by
  default, or the function's MaximumRetryAttempts), then sent to its on-failure SQS
  destination as a destination record. A throttled one is retried later, never lost.
* Timeout. The deadline goes to the runtime client (``Lambda-Runtime-Deadline-Ms``), so
  ``context.get_remaining_time_in_millis()`` works; an invocation past the function's
  Timeout has its process killed and is reported as ``Sandbox.Timedout`` (``Task timed out
  after N.00 seconds``); the environment is replaced by a cold one next time.
* Memory. The process's resident set is sampled while it runs (``/proc/PID/status``); over
  MemorySize the process is killed and the invocation reported as ``Runtime.OutOfMemory``.
* SQS event source mappings: a poller per mapping, running batches concurrently up to the
  mapping's concurrency, honouring ReportBatchItemFailures and the queue's visibility
  timeout and redrive policy (moto applies redrive on receive).

Every invocation is recorded (``invocations``; served as JSON at
``/_i2v/lambda/invocations`` on the admin server): function, request id, start, duration,
memory size, peak memory, CPU time and run-queue wait (Linux schedstat), cold or warm, outcome.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from . import moto_internals
from .forkserver import ForkedProcess, ForkServer

log = logging.getLogger("i2v_local.lambda_runtime")

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
DEFAULT_CONCURRENCY = 10
INIT_TIMEOUT = 10.0  # seconds Lambda allows the init phase (beyond it, init is retried within the function timeout)
RUNTIME_PATH = "/2018-06-01/runtime"
INVOCATIONS_PATH = "/_i2v/lambda/invocations"
THROTTLE_MESSAGE = "Rate Exceeded."
# Status codes of the Lambda Invoke API's errors a fault injector may ask for.
ERROR_STATUS = {
    "TooManyRequestsException": 429,
    "ServiceException": 500,
    "ResourceNotReadyException": 502,
    "EC2ThrottledException": 502,
    "ENILimitReachedException": 502,
    "ResourceConflictException": 409,
}


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
    layers: list[Path] = field(default_factory=list)  # each directory is what /opt/python would hold
    reserved_concurrency: int | None = None
    runtime: str = "python3.12"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name}"


@dataclass
class InvocationResult:
    payload: Any  # the handler's return value, or the error payload
    error: bool

    def body(self) -> bytes:
        return json.dumps(self.payload).encode()

    @property
    def error_type(self) -> str | None:
        if not self.error:
            return None
        return (self.payload or {}).get("errorType") if isinstance(self.payload, dict) else "Unknown"


class LambdaServiceError(Exception):
    """The Invoke API refused the call (no invocation ran): throttling, or an injected fault."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
        self.status = status or ERROR_STATUS.get(code, 500)


class Throttled(LambdaServiceError):
    def __init__(self, message: str = THROTTLE_MESSAGE):
        super().__init__("TooManyRequestsException", message, 429)


class RuntimeStopped(Exception):
    pass


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(error_type: str, message: str) -> InvocationResult:
    return InvocationResult({"errorMessage": message, "errorType": error_type}, True)


# ---- one invocation and one execution environment -----------------------------------------


class _Invocation:
    def __init__(self, spec: FunctionSpec, event: Any):
        self.spec = spec
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.body = json.dumps(event).encode()
        self.delivered = threading.Event()
        self.done = threading.Event()
        self.deadline = 0.0  # monotonic, set on delivery
        self.init_deadline = 0.0  # monotonic: an environment that has not asked for it by then timed out
        self.delivered_at = 0.0
        # The environment's CPU and run-queue wait (ns) when the invocation was delivered.
        self.sched_at_delivery: tuple[int, int] | None = None
        self.result: InvocationResult | None = None

    def deliver(self) -> dict:
        now = time.time()
        self.delivered_at = time.monotonic()
        self.deadline = self.delivered_at + self.spec.timeout
        self.delivered.set()
        return {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((now + self.spec.timeout) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": self.spec.arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0",
            "Content-Type": "application/json",
        }

    def finish(self, result: InvocationResult) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()


class _Environment:
    """One execution environment: a runtime-interface-client process and its Runtime API."""

    def __init__(self, runtime: LambdaRuntime, spec: FunctionSpec):
        self.runtime, self.spec = runtime, spec
        self.id = uuid.uuid4().hex[:12]
        self.inbox: queue.Queue = queue.Queue()
        self.current: _Invocation | None = None  # delivered to the process, not yet answered
        self.running: _Invocation | None = None  # handed to run(), delivered or not
        self.init_error: dict | None = None
        self.used = False
        self.dead = False
        self.created = time.monotonic()
        self.server = _Server(("127.0.0.1", 0), _RuntimeAPIHandler)
        self.server.environment = self
        self.server.runtime = runtime
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.5}, name=f"rapi-{spec.logical_id}", daemon=True
        )
        self._thread.start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.proc = runtime.launch(spec, self.address)

    # -- called by the Runtime API handler threads --

    def next_invocation(self) -> _Invocation | None:
        invocation = self.inbox.get()
        if invocation is None:
            return None
        self.current = invocation
        return invocation

    def complete(self, request_id: str, payload: Any, error: bool) -> bool:
        invocation = self.current
        if invocation is None or invocation.request_id != request_id:
            return False
        invocation.finish(InvocationResult(payload, error))
        return True

    def failed_init(self, payload: dict) -> None:
        self.init_error = payload

    # -- called by the invoking thread --

    def peak_memory_mb(self) -> int | None:
        return _proc_status_mb(self.proc.pid, "VmHWM")

    def run(self, invocation: _Invocation) -> InvocationResult:
        """Hand the invocation to the environment's process and wait for its result. The
        runtime's watchdog ends it early (init error, process exit, memory, deadline)."""
        invocation.init_deadline = time.monotonic() + INIT_TIMEOUT + self.spec.timeout
        self.running = invocation
        self.runtime.watchdog.watch(self, invocation)
        try:
            self.inbox.put(invocation)
            while not invocation.done.wait(1.0):
                if self.dead:  # killed before the watchdog or kill() could end it (stop() racing)
                    invocation.finish(_error("Runtime.Stopped", "the execution environment was shut down"))
        finally:
            self.runtime.watchdog.unwatch(self)
            self.running = None
        if not self.dead:
            self.current = None
        assert invocation.result is not None
        return invocation.result

    def check(self, invocation: _Invocation, now: float) -> InvocationResult | None:
        """What ends the invocation before the handler answers, if anything has yet."""
        spec = self.spec
        exited = self.proc.poll() is not None
        if not invocation.delivered.is_set():
            if self.init_error is not None:
                payload = dict(self.init_error)
                payload.setdefault("errorType", "Runtime.Unknown")
                return InvocationResult(payload, True)
            if exited:
                return self._exited(invocation)
            return self._timed_out(invocation) if now > invocation.init_deadline else None
        if exited:
            return self._exited(invocation)
        rss = _resident_mb(self.proc.pid)
        if rss is not None and rss > spec.memory_mb:
            return _error(
                "Runtime.OutOfMemory",
                f"RequestId: {invocation.request_id} Error: Runtime exited with error: signal: killed",
            )
        return self._timed_out(invocation) if now >= invocation.deadline else None

    def end(self, invocation: _Invocation, result: InvocationResult) -> None:
        """End the invocation with result and kill the environment (it is not reused)."""
        self.dead = True  # first: the invoking thread must not hand it back to the pool
        self._kill_process()  # then the process: the error is answered once the sandbox is gone
        invocation.finish(result)
        self.kill()

    def _exited(self, invocation: _Invocation) -> InvocationResult:
        return _error(
            "Runtime.ExitError",
            f"RequestId: {invocation.request_id} Error: Runtime exited with error: exit status {self.proc.returncode}",
        )

    @staticmethod
    def _timed_out(invocation: _Invocation) -> InvocationResult:
        return _error(
            "Sandbox.Timedout",
            f"{_now_iso()} {invocation.request_id} Task timed out after {invocation.spec.timeout:.2f} seconds",
        )

    def kill(self) -> None:
        """The sandbox goes away: its process (group) is killed and its Runtime API closed."""
        self.dead = True
        self._kill_process()
        self.inbox.put(None)  # a handler thread blocked in /next returns
        for invocation in (self.current, self.running):
            if invocation is not None:
                invocation.finish(_error("Runtime.Stopped", "the execution environment was shut down"))
        threading.Thread(target=self._close_server, daemon=True).start()

    def _kill_process(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def _close_server(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _schedstat(pid: int) -> tuple[int, int] | None:
    """(CPU time, run-queue wait) in ns, summed over the process's threads: the 1st and 2nd
    fields of Linux's /proc/<pid>/task/<tid>/schedstat. The wait is time the process was
    runnable but no core was free: on AWS each environment has its own CPU share, here every
    environment shares the machine's cores, so this is what the machine adds to a duration."""
    cpu = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as stat:
                fields = stat.read().split()
            cpu, wait = cpu + int(fields[0]), wait + int(fields[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return cpu, wait


_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024) if hasattr(os, "sysconf") else 4096 / (1024 * 1024)


def _resident_mb(pid: int) -> int | None:
    """The process's resident set: /proc/PID/statm's second field (pages), one short read,
    cheap enough to sample every running environment several times a second."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(int(statm.read().split()[1]) * _PAGE_MB)
    except (OSError, ValueError, IndexError):
        return None


def _proc_status_mb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1]) // 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    environment: _Environment | None = None
    runtime: LambdaRuntime

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed environment's connection breaks mid-answer: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        log.debug("runtime api request from %s failed", client_address, exc_info=True)


class _RuntimeAPIHandler(BaseHTTPRequestHandler):
    """The Lambda Runtime API of one environment, or (environment None) the admin routes."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("runtime api: " + format, *args)

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        env = self.server.environment
        if env is not None and self.path == f"{RUNTIME_PATH}/invocation/next":
            invocation = env.next_invocation()
            if invocation is None:  # the environment is shutting down
                self._json(410, {"errorMessage": "environment shut down", "errorType": "Runtime.Stopped"})
                self.close_connection = True
                return
            invocation.sched_at_delivery = _schedstat(env.proc.pid)
            self._send(200, invocation.body, invocation.deliver())
            return
        self._admin("GET", b"")

    def do_POST(self) -> None:
        env = self.server.environment
        body = self._body()
        if env is not None and self.path.startswith(f"{RUNTIME_PATH}/"):
            rest = self.path[len(RUNTIME_PATH) + 1 :]
            if rest == "init/error":
                env.failed_init(_parse_error(body, self.headers))
                self._json(202, {"status": "OK"})
                return
            parts = rest.split("/")
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                if parts[2] == "response":
                    try:
                        payload = json.loads(body) if body else None
                    except ValueError:
                        payload = body.decode("utf-8", "replace")
                    found = env.complete(parts[1], payload, False)
                else:
                    found = env.complete(parts[1], _parse_error(body, self.headers), True)
                if found:
                    self._json(202, {"status": "OK"})
                else:
                    self._json(400, {"errorMessage": f"unknown request id {parts[1]}", "errorType": "InvalidRequestID"})
                return
            self._json(404, {"errorMessage": "not found", "errorType": "NotFound"})
            return
        self._admin("POST", body)

    def do_PUT(self) -> None:
        self._admin("PUT", self._body())

    def do_DELETE(self) -> None:
        self._admin("DELETE", self._body())

    def _admin(self, method: str, body: bytes) -> None:
        route = self.server.runtime.admin_route(self.path.split("?", 1)[0]) if self.server.environment is None else None
        if route is None:
            self._json(404, {"message": f"no route {method} {self.path}"})
            return
        try:
            status, obj = route(method, body)
        except Exception as exc:  # an admin route's bug must not kill the server thread
            log.exception("admin route %s failed", self.path)
            status, obj = 500, {"message": str(exc)}
        self._json(status, obj)


def _parse_error(body: bytes, headers: Any) -> dict:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = {"errorMessage": body.decode("utf-8", "replace")}
    if not isinstance(payload, dict):
        payload = {"errorMessage": str(payload)}
    payload.setdefault("errorType", headers.get("Lambda-Runtime-Function-Error-Type") or "Unknown")
    payload.setdefault("errorMessage", "")
    return payload


# ---- the watchdog ----------------------------------------------------------------------------


class _Watchdog:
    """One thread that watches every running invocation: init errors, a process that exited,
    memory over MemorySize (the resident set, sampled), the deadline. One thread instead of
    a polling loop per invocation: a burst runs a hundred invocations at once, and each
    wake-up takes the interpreter lock the AWS stand-ins in this process need."""

    INTERVAL = 0.1  # seconds between checks

    def __init__(self) -> None:
        self._watched: dict[_Environment, _Invocation] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, env: _Environment, invocation: _Invocation) -> None:
        with self._lock:
            self._watched[env] = invocation
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambda-watchdog", daemon=True)
                self._thread.start()

    def unwatch(self, env: _Environment) -> None:
        with self._lock:
            self._watched.pop(env, None)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.INTERVAL):
            with self._lock:
                watched = list(self._watched.items())
            now = time.monotonic()
            for env, invocation in watched:
                if invocation.done.is_set():
                    continue
                try:
                    result = env.check(invocation, now)
                    if result is not None:
                        env.end(invocation, result)
                except Exception:  # one environment's surprise must not stop the watching
                    log.exception("checking environment %s failed", env.id)


# ---- a function's environments ---------------------------------------------------------------


class _Pool:
    """The execution environments of one function, capped by its concurrency."""

    def __init__(self, runtime: LambdaRuntime, spec: FunctionSpec, limit: int):
        self.runtime, self.spec, self.limit = runtime, spec, limit
        self.idle: list[_Environment] = []
        self.live: set[_Environment] = set()
        self.count = 0  # environments alive or being created
        self.cond = threading.Condition()

    def acquire(self, wait: bool) -> tuple[_Environment, bool]:
        with self.cond:
            while True:
                if self.runtime.closed:
                    raise RuntimeStopped("the local Lambda runtime is stopped")
                while self.idle:
                    env = self.idle.pop()
                    if not env.dead and env.proc.poll() is None:
                        return env, False
                    self.count -= 1
                    self.live.discard(env)
                if self.count < self.limit:
                    self.count += 1
                    break
                if not wait:
                    raise Throttled()
                self.cond.wait(0.5)
        try:
            env = _Environment(self.runtime, self.spec)
            with self.cond:
                self.live.add(env)
            if self.runtime.closed:  # stop() ran while this one was being created
                env.kill()
            return env, True
        except BaseException:
            with self.cond:
                self.count -= 1
                self.cond.notify()
            raise

    def release(self, env: _Environment) -> None:
        with self.cond:
            if env.dead or self.runtime.closed:
                self.count -= 1
                self.live.discard(env)
                if not env.dead:
                    env.kill()
            else:
                self.idle.append(env)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.idle = []
            live = list(self.live)
            self.cond.notify_all()
        for env in live:  # running ones too: their invocations end with Runtime.Stopped
            env.kill()


# ---- the service -----------------------------------------------------------------------------


class LambdaRuntime:
    """Registry of functions plus the machinery that runs them as execution environments."""

    def __init__(
        self,
        base_environment: dict[str, str] | None = None,
        sqs_client_factory: Callable | None = None,
        *,
        default_concurrency: int = DEFAULT_CONCURRENCY,
        fault_injector: Any = None,
        log_fd: int | None = None,
        fork_server: bool | None = None,
        environment_niceness: int = 0,
    ):
        self.functions: dict[str, FunctionSpec] = {}
        self.base_environment = dict(base_environment or {})
        self.default_concurrency = default_concurrency
        # pick("lambda", "Invoke") -> None or an object with .code and .message (and optionally .status)
        self.fault_injector = fault_injector
        self.log_fd = log_fd if log_fd is not None else _stderr_fd()
        # Environments are forked from a process with the layer's libraries imported (see
        # forkserver) where the platform can fork; otherwise each is a fresh interpreter.
        self.use_fork_server = hasattr(os, "fork") and sys.platform == "linux" if fork_server is None else fork_server
        self._fork_server: ForkServer | None = None
        self._fork_server_lock = threading.Lock()
        # Added to each environment's nice value: >0 lets the process serving the AWS APIs
        # (which on AWS never shares a core with a function) come first when cores are short.
        self.environment_niceness = environment_niceness
        self.closed = False
        self._pools: dict[str, _Pool] = {}
        self._pools_lock = threading.Lock()
        self._limits: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sqs_client_factory = sqs_client_factory
        self._patches = moto_internals.Patches()
        self.invocations: list[dict] = []  # one record per invocation that ran (see _record)
        self.throttles: list[dict] = []  # invokes refused with TooManyRequestsException (or an injected error)
        self._records_lock = threading.Lock()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.watchdog = _Watchdog()
        self._routes: dict[str, Callable[[str, bytes], tuple[int, Any]]] = {INVOCATIONS_PATH: self._invocations_route}
        self._admin: _Server | None = None
        self._started = False

    # ---- registry -------------------------------------------------------------------

    def register(self, spec: FunctionSpec) -> None:
        self.functions[spec.name] = spec

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        try:
            return self.functions[name]
        except KeyError:
            raise KeyError(f"no local handler registered for function {name!r}") from None

    def concurrency_limit(self, name_or_arn: str) -> int:
        spec = self.spec(name_or_arn)
        if spec.reserved_concurrency is not None:
            return spec.reserved_concurrency
        return self._limits.get(spec.name, self.default_concurrency)

    def _pool(self, spec: FunctionSpec) -> _Pool:
        with self._pools_lock:
            pool = self._pools.get(spec.name)
            if pool is None:
                pool = self._pools[spec.name] = _Pool(self, spec, self.concurrency_limit(spec.name))
            return pool

    def process_environment(self, spec: FunctionSpec, runtime_api: str) -> dict[str, str]:
        """What an execution environment's process sees in os.environ."""
        env = {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR", "SYSTEMROOT") if name in os.environ}
        env.update(
            {
                "LANG": "en_US.UTF-8",
                "TZ": ":UTC",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(spec.code_uri), *(str(p) for p in spec.layers)]),
                "LAMBDA_TASK_ROOT": str(spec.code_uri),
                "_HANDLER": spec.handler,
                "AWS_LAMBDA_RUNTIME_API": runtime_api,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
            }
        )
        env.update(self.base_environment)
        env.update({k: str(v) for k, v in spec.environment.items()})
        return env

    def launch(self, spec: FunctionSpec, runtime_api: str) -> subprocess.Popen | ForkedProcess:
        """Start an execution environment's process: ``python -m awslambdaric HANDLER``."""
        env = self.process_environment(spec, runtime_api)
        process: subprocess.Popen | ForkedProcess
        if self.use_fork_server:
            with self._fork_server_lock:
                if self._fork_server is None:
                    self._fork_server = ForkServer(self.log_fd)
                server = self._fork_server
            process = server.spawn([spec.handler], str(spec.code_uri), env)
        else:
            process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", spec.handler],
                cwd=str(spec.code_uri),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.log_fd,
                stderr=self.log_fd,
                start_new_session=True,
            )
        if self.environment_niceness:
            with contextlib.suppress(OSError):
                os.setpriority(
                    os.PRIO_PROCESS, process.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.environment_niceness
                )
        return process

    # ---- invocation -----------------------------------------------------------------

    def _injected_fault(self) -> LambdaServiceError | None:
        if self.fault_injector is None:
            return None
        fault = self.fault_injector.pick("lambda", "Invoke")
        if fault is None:
            return None
        return LambdaServiceError(
            fault.code, getattr(fault, "message", "") or fault.code, getattr(fault, "status", None)
        )

    def invoke(self, name_or_arn: str, event: Any, *, wait_for_capacity: bool = False) -> InvocationResult:
        """Run the function once and return its result (RequestResponse).

        Raises ``LambdaServiceError`` (``Throttled`` when every environment the function may
        have is busy, unless ``wait_for_capacity``; or an injected fault) when, on AWS, the
        Invoke API would answer with an error and no code would run.
        """
        spec = self.spec(name_or_arn)
        fault = self._injected_fault()
        if fault is not None:
            self._throttled(spec, fault)
            raise fault
        try:
            env, cold = self._pool(spec).acquire(wait=wait_for_capacity)
        except Throttled as exc:
            self._throttled(spec, exc)
            raise
        except RuntimeStopped:
            return _error("Runtime.Stopped", "the local Lambda runtime is stopped")
        invocation = _Invocation(spec, event)
        started_wall, started = _now_iso(), time.monotonic()
        try:
            result = env.run(invocation)
        finally:
            self._pool(spec).release(env)
        ended = time.monotonic()
        sched_end = _schedstat(env.proc.pid) if not env.dead else None
        sched_start = invocation.sched_at_delivery
        cpu_ms = cpu_wait_ms = None
        if sched_start is not None and sched_end is not None:
            cpu_ms = round((sched_end[0] - sched_start[0]) / 1e6, 1)
            cpu_wait_ms = round((sched_end[1] - sched_start[1]) / 1e6, 1)
        init_ms = (invocation.delivered_at - started) * 1000 if cold and invocation.delivered_at else 0.0
        billed_from = invocation.delivered_at or started
        self._record(
            {
                "function": spec.logical_id,
                "function_name": spec.name,
                "request_id": invocation.request_id,
                "start": started_wall,
                "duration_ms": round((ended - billed_from) * 1000, 1),
                "init_duration_ms": round(init_ms, 1) if cold else None,
                "memory_mb": spec.memory_mb,
                "max_memory_used_mb": env.peak_memory_mb() if not env.dead else None,
                # Linux schedstat of the environment's process over the billed duration: CPU
                # time, and time runnable but waiting for a core (None when not measurable).
                "cpu_ms": cpu_ms,
                "cpu_wait_ms": cpu_wait_ms,
                "cold": cold,
                "outcome": "success" if not result.error else result.error_type,
                "error": result.error,
                "environment": env.id,
                "event": event,
            }
        )
        if result.error:
            log.warning(
                "%s failed: %s: %s", spec.logical_id, result.error_type, (result.payload or {}).get("errorMessage")
            )
        return result

    def _record(self, record: dict) -> None:
        with self._records_lock:
            self.invocations.append(record)

    def _throttled(self, spec: FunctionSpec, exc: LambdaServiceError) -> None:
        with self._records_lock:
            self.throttles.append({"function": spec.logical_id, "start": _now_iso(), "error": exc.code})

    def records(self) -> list[dict]:
        """The invocation records without their events (what the admin URL serves)."""
        with self._records_lock:
            return [{k: v for k, v in r.items() if k != "event"} for r in self.invocations]

    def invoke_async(self, name_or_arn: str, event: Any) -> str:
        """Queue an Event invocation (S3 notifications, InvocationType=Event); runs concurrently."""
        spec = self.spec(name_or_arn)
        request_id = str(uuid.uuid4())
        with self._pending_lock:
            self._pending += 1
        thread = threading.Thread(
            target=self._async_worker, args=(spec.name, event, request_id), name=f"async-{spec.logical_id}", daemon=True
        )
        thread.start()
        return request_id

    def _async_worker(self, name: str, event: Any, request_id: str) -> None:
        try:
            self._run_async(name, event, request_id)
        except Exception:  # a bug here must not leave the stack unsettled forever
            log.exception("async invocation of %s failed", name)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _run_async(self, name: str, event: Any, request_id: str) -> None:
        spec = self.spec(name)
        attempts = 0
        result = None
        throttled = 0
        while attempts <= spec.max_retry_attempts and not self._stop.is_set():
            try:
                result = self.invoke(name, event, wait_for_capacity=True)
            except LambdaServiceError:
                # Lambda keeps a throttled event and retries it (for up to the maximum event age).
                throttled += 1
                if self._stop.wait(min(2.0, 0.1 * 2 ** min(throttled, 5))):
                    return
                continue
            attempts += 1
            if not result.error:
                return
            # AWS waits about a minute, then two; locally a short pause keeps runs quick.
            if self._stop.wait(0.2 * attempts):
                return
        if result is None or self._stop.is_set():
            return
        if spec.on_failure_queue_url:
            record = {
                "version": "1.0",
                "timestamp": _now_iso(),
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
            log.error(
                "async invocation of %s failed after %d attempts and has no destination", spec.logical_id, attempts
            )

    def idle(self) -> bool:
        with self._pending_lock:
            return self._pending == 0

    # ---- SQS event source mappings ---------------------------------------------------

    def add_sqs_source(
        self,
        function_name: str,
        queue_url: str,
        queue_arn: str,
        batch_size: int = 10,
        report_failures: bool = False,
        maximum_concurrency: int | None = None,
    ) -> None:
        if maximum_concurrency is not None:
            self._limits[function_name] = min(self._limits.get(function_name, maximum_concurrency), maximum_concurrency)
        thread = threading.Thread(
            target=self._poll_sqs,
            args=(function_name, queue_url, queue_arn, batch_size, report_failures),
            name=f"sqs-{function_name}",
            daemon=True,
        )
        self._threads.append(thread)
        if self._started:
            thread.start()

    def _sqs(self):
        if self._sqs_client_factory is None:
            raise RuntimeError("the runtime has no SQS client factory")
        return self._sqs_client_factory()

    def _poll_sqs(
        self, function_name: str, queue_url: str, queue_arn: str, batch_size: int, report_failures: bool
    ) -> None:
        sqs = self._sqs()
        slots = threading.BoundedSemaphore(self.concurrency_limit(function_name))
        while not self._stop.is_set():
            if not slots.acquire(timeout=0.5):
                continue
            try:
                response = sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(batch_size, 10),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except (BotoCoreError, ClientError) as exc:  # the server is stopping, or a transient hiccup: keep polling
                slots.release()
                if not self._stop.is_set():
                    log.debug("receive from %s failed: %s", queue_url, exc)
                    self._stop.wait(0.5)
                continue
            messages = response.get("Messages", [])
            if not messages:
                slots.release()
                continue
            with self._pending_lock:
                self._pending += 1
            threading.Thread(
                target=self._run_batch,
                args=(slots, sqs, function_name, queue_url, queue_arn, messages, report_failures),
                name=f"sqs-batch-{function_name}",
                daemon=True,
            ).start()

    def _run_batch(self, slots, sqs, function_name, queue_url, queue_arn, messages, report_failures) -> None:
        try:
            event = {"Records": [_sqs_record(m, queue_arn) for m in messages]}
            try:
                result = self.invoke(function_name, event, wait_for_capacity=True)
            except LambdaServiceError:
                return  # the batch becomes visible again after the visibility timeout
            if result.error:
                return  # the whole batch becomes visible again after the visibility timeout
            failed = set()
            if report_failures and isinstance(result.payload, dict):
                failed = {f.get("itemIdentifier") for f in result.payload.get("batchItemFailures") or []}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                try:
                    sqs.delete_message_batch(
                        QueueUrl=queue_url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                    )
                except (BotoCoreError, ClientError) as exc:
                    log.warning("deleting a processed batch from %s failed: %s", queue_url, exc)
        finally:
            slots.release()
            with self._pending_lock:
                self._pending -= 1

    # ---- the admin server ------------------------------------------------------------

    def add_admin_route(self, path: str, handler: Callable[[str, bytes], tuple[int, Any]]) -> None:
        """Serve ``handler(method, body) -> (status, json-able)`` at ``path`` on the admin server."""
        self._routes[path] = handler

    def admin_route(self, path: str) -> Callable[[str, bytes], tuple[int, Any]] | None:
        return self._routes.get(path)

    def _invocations_route(self, method: str, body: bytes) -> tuple[int, Any]:
        if method != "GET":
            return 405, {"message": "GET only"}
        return 200, {"invocations": self.records()}

    @property
    def admin_url(self) -> str:
        if self._admin is None:
            raise RuntimeError("the runtime is not started")
        return f"http://127.0.0.1:{self._admin.server_address[1]}"

    @property
    def invocations_url(self) -> str:
        return self.admin_url + INVOCATIONS_PATH

    # ---- lifecycle and moto patches --------------------------------------------------

    def start(self, patch_moto: bool = True) -> None:
        if patch_moto:
            self._install_patches()
        self._admin = _Server(("127.0.0.1", 0), _RuntimeAPIHandler)
        self._admin.runtime = self
        threading.Thread(
            target=self._admin.serve_forever, kwargs={"poll_interval": 0.5}, name="lambda-admin", daemon=True
        ).start()
        self._started = True
        for thread in self._threads:
            if not thread.is_alive():
                thread.start()

    def stop(self) -> None:
        """Stop the pollers and kill every execution environment; later invokes are refused."""
        self._stop.set()
        self.closed = True
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()
        self.watchdog.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
            self._admin = None
        with self._fork_server_lock:
            if self._fork_server is not None:
                self._fork_server.close()
                self._fork_server = None
        self._patches.remove()

    def _install_patches(self) -> None:
        runtime = self

        def invoke(function_name: str, body: bytes, request_headers: Any, response_headers: dict) -> bytes:
            event = json.loads(body) if body else {}
            headers = {str(k).lower(): v for k, v in dict(request_headers or {}).items()}
            if headers.get("x-amz-invocation-type") == "Event":
                runtime.invoke_async(function_name, event)
                return b""
            try:
                result = runtime.invoke(function_name, event)
            except LambdaServiceError as exc:
                raise moto_internals.lambda_error(exc.code, exc.message, exc.status) from None
            if result.error:
                response_headers["x-amz-function-error"] = "Unhandled"
            return result.body()

        def invoke_from_s3(fn_arn: str, event_body: dict) -> None:
            # AWS invokes Lambda from S3 asynchronously; moto would run it inside PutObject.
            for record in event_body.get("Records", []):
                obj = record.get("s3", {}).get("object", {})
                if "key" in obj:  # AWS leaves "/" unencoded; moto encodes it as %2F
                    obj["key"] = quote_plus(unquote_plus(obj["key"]), safe="/")
            try:
                runtime.invoke_async(fn_arn, event_body)
            except KeyError as exc:
                log.error("S3 notification for an unknown function: %s", exc)

        def s3_event_with_version(event: dict, key: Any) -> dict:
            # AWS names the object version (and a sequencer) in the event; moto leaves them out.
            obj = event["Records"][0]["s3"]["object"]
            if getattr(key, "version_id", None) not in (None, "null"):
                obj["versionId"] = key.version_id
            obj["sequencer"] = f"{time.time_ns():016X}"
            return event

        moto_internals.patch_lambda(self._patches, invoke, invoke_from_s3, s3_event_with_version)
        moto_internals.patch_state_data_limit(self._patches)


def _stderr_fd() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


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
