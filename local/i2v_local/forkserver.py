"""Execution environments forked from a process that has already imported the layer's libraries.

A cold start on AWS costs the account nothing but time; here every cold environment's
``import boto3`` (about half a CPU-second) is taken from the same two cores that run moto,
the state machine and the renders, so a burst of cold starts starved the stack it measured.
The fork server imports the third-party libraries the layer ships once (boto3, botocore,
urllib3, Powertools, Pillow), then forks one child per execution environment. The child
becomes what ``python -m awslambdaric HANDLER`` would be: its own session, the function's
working directory, environment and ``sys.path`` (task root, then the layers), and
``awslambdaric``'s ``__main__`` run as the program. The handler module, the layer's own code
and everything they import at init still load in the child, on every cold start, as on AWS.

botocore's data files are parsed once here too: a cold environment's first client read and
parsed about a megabyte of JSON (service model, endpoint rules, partitions; about 0.15 CPU-s,
more than the handler's own imports). The server creates one client per service the layer
calls, and a child's sessions then start from that loader, whose parsed files are cached.
The clients, their configuration and credentials are still made in the child from its own
environment; only the parse of botocore's read-only data is shared.

Only libraries that read no environment at import time are preloaded (``awslambdaric``'s
bootstrap reads ``AWS_LAMBDA_LOG_*`` on import, so it is imported in the child). ``random``
reseeds itself in a forked child, so jitter still differs between environments.

Protocol (JSON lines on a socket pair): the runtime sends ``{"id", "cwd", "env", "args"}``
and gets ``{"id", "pid"}`` (or ``{"id", "error"}``); the server reaps its children and sends
``{"exited": pid, "status": code}`` (negative: killed by that signal, as ``Popen.returncode``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

# Third-party libraries the layer ships (layers/i2v/requirements.txt) and the runtime provides.
PRELOAD = (
    "boto3",
    "boto3.session",
    "botocore.session",
    "botocore.client",
    "botocore.config",
    "botocore.exceptions",
    "boto3.dynamodb.types",
    "urllib3",
    "aws_lambda_powertools",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "PIL.Image",
    "PIL.ImageOps",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
)
# The AWS services the layer's functions call (layers/i2v/i2v/aws.py's clients).
PRELOAD_SERVICES = ("dynamodb", "s3", "secretsmanager", "stepfunctions", "sns", "events")


class ForkedProcess:
    """The part of ``subprocess.Popen``'s interface the runtime uses, for a forked child."""

    def __init__(self, server: ForkServer, pid: int):
        self.server, self.pid = server, pid

    @property
    def returncode(self) -> int | None:
        return self.server.exit_status(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.returncode) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)


class ForkServer:
    """The runtime's side: starts the server process and asks it for environments."""

    def __init__(self, log_fd: int):
        self._log_fd = log_fd
        self._lock = threading.Lock()
        self._answers: dict[int, dict] = {}
        self._answered = threading.Condition(self._lock)
        self._statuses: dict[int, int] = {}
        self._next_id = 0
        ours, theirs = socket.socketpair()
        self._sock = ours
        env = {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR") if name in os.environ}
        env.update({"LANG": "en_US.UTF-8", "TZ": ":UTC", "PYTHONUNBUFFERED": "1"})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "i2v_local.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
        )
        theirs.close()
        self._reader = threading.Thread(target=self._read, name="forkserver-reader", daemon=True)
        self._reader.start()

    def spawn(self, args: list[str], cwd: str, env: dict[str, str], timeout: float = 30.0) -> ForkedProcess:
        """A new child running ``python -m awslambdaric *args`` in cwd with env."""
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            line = json.dumps({"id": request_id, "cwd": cwd, "env": env, "args": args}) + "\n"
            self._sock.sendall(line.encode())
            deadline = time.monotonic() + timeout
            while request_id not in self._answers:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise OSError("the fork server did not answer")
                self._answered.wait(min(remaining, 1.0))
            answer = self._answers.pop(request_id)
        if "pid" not in answer:
            raise OSError(f"the fork server could not start an environment: {answer.get('error')}")
        return ForkedProcess(self, answer["pid"])

    def exit_status(self, pid: int) -> int | None:
        with self._lock:
            return self._statuses.get(pid)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._answered.notify_all()
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                with self._lock:
                    if "exited" in message:
                        self._statuses[message["exited"]] = message["status"]
                    else:
                        self._answers[message["id"]] = message
                        self._answered.notify_all()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- the server process -------------------------------------------------------------------


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(ImportError):
        _preload_botocore_data()


def _preload_botocore_data() -> None:
    """Parse botocore's data for PRELOAD_SERVICES once; children's sessions start from it."""
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()
    session = botocore.session.Session()
    session.register_component("data_loader", loader)
    for service in PRELOAD_SERVICES:
        session.create_client(
            service, region_name="us-east-1", aws_access_key_id="preload", aws_secret_access_key="preload"
        )
    create_loader = botocore.session.create_loader

    def preloaded_or_new(search_path_string: str | None = None) -> botocore.loaders.Loader:
        # AWS_DATA_PATH (a session's data_path) names other files: those get a loader of their own.
        return loader if not search_path_string else create_loader(search_path_string)

    botocore.session.create_loader = preloaded_or_new  # type: ignore[assignment]


def _become_environment(request: dict, base_path: list[str]) -> None:
    """In the forked child: turn into ``python -m awslambdaric ARGS`` and never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        cwd, env = request["cwd"], request["env"]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        # As `python -m` builds it: the working directory, PYTHONPATH, then the interpreter's own.
        sys.path[:] = [cwd, *python_path, *base_path]
        sys.argv = ["awslambdaric", *request["args"]]
        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        message = {"exited": pid, "status": os.waitstatus_to_exitcode(status)}
        sock.sendall((json.dumps(message) + "\n").encode())


def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    # What `python -m` puts after sys.path[0]: the interpreter's own paths (stdlib, site-packages).
    base_path = [p for p in sys.path[1:] if p]
    _preload()
    # A child's exit wakes the loop (through the wakeup pipe) so it is reported at once.
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    buffer = b""
    while True:
        readable, _, _ = select.select([sock, wakeup_read], [], [])
        if wakeup_read in readable:
            os.read(wakeup_read, 4096)
            _reap(sock)
        if sock not in readable:
            continue
        chunk = sock.recv(65536)
        if not chunk:
            return  # the runtime closed its end: stop (environments are killed by the runtime)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            request: dict[str, Any] = json.loads(line)
            try:
                pid = os.fork()
            except OSError as exc:
                sock.sendall((json.dumps({"id": request["id"], "error": str(exc)}) + "\n").encode())
                continue
            if pid == 0:
                sock.close()
                os.close(wakeup_read)
                os.close(wakeup_write)
                _become_environment(request, base_path)
            sock.sendall((json.dumps({"id": request["id"], "pid": pid}) + "\n").encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]))
