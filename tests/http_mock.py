"""Canned HTTP answers at urllib3's connection-pool level, for unit tests that never touch the network.

Everything above the socket runs for real: the HTTP helper (i2v.httpclient), the pinned pools
of i2v.urlsafety, urllib3's PoolManager routing and its HTTPResponse reading. Only
``HTTPConnectionPool.urlopen`` is replaced: it records the request and returns the next
registered answer for (method, URL), or raises the registered exception. Tests of what really
crosses a socket use tests/loopback.py instead.

    @http_mock.activate
    def test_x():
        http_mock.post("https://api.example.com/v1/x", json={"id": 1})
        ...
        assert http_mock.calls[0].request.headers["Authorization"] == "Bearer k"
"""

import functools
import io
import json as jsonlib
from dataclasses import dataclass, field
from unittest import mock

import urllib3
from urllib3.connectionpool import HTTPConnectionPool

GET, POST = "GET", "POST"


@dataclass
class Request:
    method: str
    url: str
    headers: urllib3.HTTPHeaderDict
    body: bytes | None
    options: dict = field(default_factory=dict)  # urllib3's other arguments (timeout, redirect, ...)

    @property
    def timeout(self):
        return self.options.get("timeout")


@dataclass
class Call:
    request: Request
    response: object = None


@dataclass
class _Answer:
    method: str
    url: str
    status: int = 200
    body: object = b""  # bytes, a file-like object, or an exception to raise
    headers: dict = field(default_factory=dict)
    used: bool = False


class HttpMock:
    def __init__(self, assert_all_requests_are_fired: bool = False):
        self.answers: list[_Answer] = []
        self.calls: list[Call] = []
        self._patch = None

    # ------------------------------------------------------------ registering answers
    def add(
        self,
        method,
        url,
        *,
        status=200,
        body=b"",
        json=None,
        headers=None,
        content_type=None,
        auto_calculate_content_length=False,
    ):
        """As `responses` does: ``body`` bytes, text, a file-like object or an exception to raise;
        Content-Length only when ``auto_calculate_content_length``."""
        headers = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        if content_type:
            headers["Content-Type"] = content_type
        if auto_calculate_content_length and isinstance(body, bytes):
            headers["Content-Length"] = str(len(body))
        self.answers.append(_Answer(method, url, status, body, headers))

    def get(self, url, **kwargs):
        self.add(GET, url, **kwargs)

    def post(self, url, **kwargs):
        self.add(POST, url, **kwargs)

    def replace(self, method, url, **kwargs):
        self.answers = [a for a in self.answers if (a.method, _base(a.url)) != (method, _base(url))]
        self.add(method, url, **kwargs)

    # ------------------------------------------------------------ answering
    def _urlopen(self, pool, method, url, body=None, headers=None, **kwargs):
        headers = urllib3.HTTPHeaderDict(headers or {})
        host = headers.get("Host") or _authority(pool)
        full = url if "://" in url else f"{pool.scheme}://{host}{url}"
        request = Request(method, full, headers, body if body is None else bytes(body), dict(kwargs))
        call = Call(request)
        self.calls.append(call)
        candidates = [a for a in self.answers if a.method == method and _matches(a.url, full)]
        if not candidates:
            raise urllib3.exceptions.NewConnectionError(pool, f"Connection refused by http_mock: {method} {full}")
        # Each answer serves one call, in order; the last one keeps answering.
        answer = next((a for a in candidates if not a.used), candidates[-1])
        answer.used = True
        if isinstance(answer.body, BaseException):
            raise answer.body
        response = urllib3.HTTPResponse(
            body=io.BytesIO(answer.body) if isinstance(answer.body, bytes) else answer.body,
            headers=answer.headers,
            status=answer.status,
            reason=_REASONS.get(answer.status, ""),
            preload_content=kwargs.get("preload_content", True),
            decode_content=kwargs.get("decode_content", True),
            request_method=method,
            request_url=full,
        )
        call.response = response
        return response

    def start(self) -> None:
        mocker = self

        def urlopen(pool, method, url, body=None, headers=None, **kwargs):
            return mocker._urlopen(pool, method, url, body=body, headers=headers, **kwargs)

        self._patch = mock.patch.object(HTTPConnectionPool, "urlopen", urlopen)
        self._patch.start()

    def stop(self) -> None:
        if self._patch is not None:
            self._patch.stop()
            self._patch = None

    def reset(self) -> None:
        self.answers.clear()
        self.calls.clear()

    def __enter__(self) -> "HttpMock":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


def _authority(pool) -> str:
    default = {"http": 80, "https": 443}[pool.scheme]
    host = f"[{pool.host}]" if ":" in pool.host else pool.host
    return host if pool.port in (None, default) else f"{host}:{pool.port}"


def _base(url: str) -> str:
    return url.split("?", 1)[0]


def _matches(registered: str, actual: str) -> bool:
    """Same URL; a registered URL without a query matches any query, as in `responses`."""
    registered, actual = _strip_userinfo(registered), _strip_userinfo(actual)
    if "?" in registered:
        return registered == actual
    return registered == _base(actual)


def _strip_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return scheme + sep + authority.rpartition("@")[2] + slash + path


# A module-level mock, for the decorator style.
_default = HttpMock()
calls = _default.calls


def add(*args, **kwargs):
    _default.add(*args, **kwargs)


def get(url, **kwargs):
    _default.get(url, **kwargs)


def post(url, **kwargs):
    _default.post(url, **kwargs)


def replace(method, url, **kwargs):
    _default.replace(method, url, **kwargs)


def activate(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _default.reset()
        with _default:
            try:
                return func(*args, **kwargs)
            finally:
                _default.reset()

    return wrapper
