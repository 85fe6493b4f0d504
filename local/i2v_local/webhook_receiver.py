"""A webhook receiver on loopback for the local stack and the tests.

It verifies each POST per Standard Webhooks (signature with any of its secrets, timestamp
within the tolerance, no replays), records what it got, and can be told to misbehave
(answer 500 / 410 / 429 with Retry-After, or hang) so retries and the DLQ can be exercised.

Answers:
  the configured status (200 by default)  verified delivery
  401  missing headers, bad signature or timestamp outside the tolerance
  409  replay: an (id, timestamp) it already verified, whatever it answered then, or an
       accepted id with an older timestamp
A delivery that repeats an accepted id with a *newer* timestamp is the sender's own retry
(it re-signs every attempt): it gets the configured status and is recorded as a duplicate.
GET /deliveries returns the recorded list as JSON.
"""

import base64
import hmac
import json
import secrets as secrets_module
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Verdict:
    verified: bool
    status: int  # what to answer
    error: str | None
    duplicate: bool = False


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets_module.token_bytes(32)).decode()


class WebhookReceiver:
    def __init__(self, secret: str | None = None, host: str = "127.0.0.1", port: int = 0, tolerance_seconds: int = 300):
        self._secrets = [secret or new_secret()]
        self.host = host
        self.port = port
        self.tolerance_seconds = tolerance_seconds
        self.deliveries: list = []
        self._accepted: dict = {}  # webhook id -> timestamp of the latest accepted delivery
        self._seen: set = set()  # (webhook id, timestamp) of every verified delivery
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._status = 200
        self._retry_after: str | None = None
        self._hang_seconds = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- configuration --------------------------------------------------------------

    @property
    def secret(self) -> str:
        """The current signing secret (the first one)."""
        return self._secrets[0]

    @property
    def secrets(self) -> tuple:
        return tuple(self._secrets)

    def add_secret(self, secret: str) -> None:
        """Accept another secret too (rotation: old and new verify until the old is removed)."""
        with self._lock:
            if secret not in self._secrets:
                self._secrets.append(secret)

    def remove_secret(self, secret: str) -> None:
        with self._lock:
            if secret in self._secrets and len(self._secrets) > 1:
                self._secrets.remove(secret)

    def set_behaviour(self, status: int = 200, retry_after: int | str | None = None, hang_seconds: float = 0.0) -> None:
        """How to answer verified deliveries from now on: e.g. status=500, status=410,
        status=429 with retry_after=30, or hang_seconds=30 to make the sender time out."""
        with self._lock:
            self._status = int(status)
            self._retry_after = None if retry_after is None else str(retry_after)
            self._hang_seconds = float(hang_seconds)

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self._accepted.clear()
            self._seen.clear()

    # ---- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(_Handler):
            owner = receiver

        self._stopping.clear()
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_for(self, count: int = 1, timeout: float = 10.0, verified: bool = True) -> list:
        """Block until ``count`` (verified) deliveries were recorded; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [d for d in self.deliveries if d["verified"] or not verified]
            if len(got) >= count or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)

    # ---- verification ---------------------------------------------------------------

    def verify(self, body: bytes, headers: dict) -> Verdict:
        """Check one delivery; remembers what it verified and the ids it accepted."""
        headers = {k.lower(): v for k, v in headers.items()}
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not (msg_id and timestamp and signature):
            return Verdict(False, 401, "missing webhook-id, webhook-timestamp or webhook-signature")
        try:
            sent_at = int(timestamp)
        except ValueError:
            return Verdict(False, 401, "webhook-timestamp is not a Unix time in seconds")
        if abs(time.time() - sent_at) > self.tolerance_seconds:
            return Verdict(False, 401, f"timestamp outside the {self.tolerance_seconds} s tolerance")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return Verdict(False, 401, "body is not UTF-8")

        when = datetime.fromtimestamp(sent_at, tz=UTC)
        offered = [part.split(",", 1)[1].encode() for part in signature.split() if part.startswith("v1,")]
        with self._lock:
            known = list(self._secrets)
        expected = [Webhook(secret).sign(msg_id, when, text).split(",", 1)[1].encode() for secret in known]
        if not any(hmac.compare_digest(mine, theirs) for mine in expected for theirs in offered):
            return Verdict(False, 401, "no matching signature")

        with self._lock:
            previous = self._accepted.get(msg_id)
            # Every verified (id, timestamp) is remembered, whatever was answered: the exact
            # same signed request again is a replay even if the first copy got a 5xx.
            if (msg_id, sent_at) in self._seen or (previous is not None and sent_at <= previous):
                return Verdict(False, 409, "replayed webhook-id")
            self._seen.add((msg_id, sent_at))
            status = self._status
            # The configured behaviour comes first: a receiver told to fail fails duplicates too.
            if status < 300:
                self._accepted[msg_id] = sent_at
        return Verdict(True, status, None, duplicate=previous is not None)


class _Handler(BaseHTTPRequestHandler):
    owner: WebhookReceiver
    server_version = "i2v-webhook-receiver/1"

    def log_message(self, format, *args):  # quiet: the recorded deliveries are the log
        pass

    def do_GET(self):
        if self.path.rstrip("/") != "/deliveries":
            self._answer(404, {"error": "not found"})
            return
        with self.owner._lock:
            recorded = list(self.owner.deliveries)
        self._answer(200, recorded)

    def do_POST(self):
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        verdict = owner.verify(body, dict(self.headers.items()))
        with owner._lock:
            retry_after, hang = owner._retry_after, owner._hang_seconds
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        record = {
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "verified": verdict.verified,
            "duplicate": verdict.duplicate,
            "status": verdict.status,
            "error": verdict.error,
            "body": parsed,
            "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        with owner._lock:
            owner.deliveries.append(record)
        if verdict.verified and hang:
            owner._stopping.wait(hang)
            return  # no answer at all: the sender times out
        headers = {"Retry-After": retry_after} if retry_after and verdict.status >= 300 else {}
        self._answer(verdict.status, {"error": verdict.error} if verdict.error else {"ok": True}, headers)

    def _answer(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (timed out); nothing to tell it
