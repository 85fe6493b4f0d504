"""A small HTTP client on urllib3 (which botocore already imports, so it costs no import time).

Provider calls and webhook deliveries need one request at a time with a connect and a read
timeout, no redirects followed, no retries below us (the callers decide what may be sent
twice), and an answer read in full (up to a cap): status, reason, headers, body, and the
body as JSON parsed by the standard library. A failure below HTTP becomes TransportError,
which says whether the server may have seen the request.
"""

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from botocore.httpsession import get_cert_path
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util import Timeout

# The trust store AWS calls use (certifi's bundle when installed, else botocore's own).
CA_CERTS = get_cert_path(True)
# An answer larger than this is cut here: provider answers and webhook replies are small.
MAX_BODY_BYTES = 4 * 1024 * 1024
JSON_CONTENT_TYPE = "application/json"


class TransportError(Exception):
    """No HTTP answer came back. ``sent``: the server may have seen the request (False only when
    no connection was made); ``timed_out``: a connect or read timeout rather than an error."""

    def __init__(self, cause: BaseException, *, sent: bool, timed_out: bool):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause_name = type(cause).__name__
        self.sent = sent
        self.timed_out = timed_out


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: urllib3.HTTPHeaderDict
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode(_charset(self.headers.get("Content-Type")), errors="replace")

    def json(self) -> Any:
        """The body parsed by the standard library's json (NaN and Infinity are read as floats,
        as ``json.loads`` does); ValueError when it is not JSON."""
        return json.loads(self.body)


def _charset(content_type: str | None) -> str:
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value.strip('"'):
            return value.strip('"')
    return "utf-8"


def json_payload(payload: Any) -> bytes:
    """``payload`` as a JSON request body; NaN and Infinity are refused (they are not JSON)."""
    return json.dumps(payload, allow_nan=False).encode("utf-8")


def new_pool_manager() -> urllib3.PoolManager:
    """Connections pooled per host, to the default trust store, with nothing retried or followed."""
    return urllib3.PoolManager(ca_certs=CA_CERTS, retries=False)


def request(
    opener: Any,
    method: str,
    url: str,
    *,
    headers: dict | None = None,
    body: bytes | None = None,
    connect_timeout: float,
    read_timeout: float,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Response:
    """One request through ``opener`` (a PoolManager with a full URL, or a connection pool with
    a path): never retried, never redirected, the answer read in full (up to max_body_bytes).
    Raises TransportError when no answer came back."""
    try:
        raw = opener.urlopen(
            method,
            url,
            headers=headers or {},
            body=body,
            redirect=False,
            retries=False,
            timeout=Timeout(connect=connect_timeout, read=read_timeout),
            preload_content=False,
        )
        try:
            data = raw.read(max_body_bytes)
        finally:
            if raw.length_remaining == 0:
                raw.release_conn()  # read to its end: the connection can serve the next request
            else:
                raw.close()  # cut at the cap, unread or of unknown length: not reusable
    except HTTPError as exc:
        raise classify(exc) from exc
    return Response(raw.status, raw.reason or "", raw.headers, data)


def classify(exc: HTTPError) -> TransportError:
    """Whether the server may have seen the request: not when no connection was made (refused,
    no DNS answer, connect timeout); any later failure (a TLS error, a broken connection, a
    read timeout) may come after the request went out. A URL urllib3 cannot use is never sent."""
    # NewConnectionError (refused, no DNS answer) is a subclass of ConnectTimeoutError.
    connect_failed = isinstance(exc, (ConnectTimeoutError, LocationValueError))
    timed_out = isinstance(exc, ReadTimeoutError) or (connect_failed and not isinstance(exc, NewConnectionError))
    return TransportError(exc, sent=not connect_failed, timed_out=timed_out)
