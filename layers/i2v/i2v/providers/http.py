"""HTTP to a provider: pooled urllib3 connections, error classification, bounded retries on create.

The rule that shapes this module: a create request that may have reached the provider is
never sent again, because that can charge twice. Only failures where nothing was sent
(connection refused, connect timeout) or where the provider said no work was started
(408, 429 and other 5xx answers) are retried. A gateway timeout (504, Cloudflare 520-527)
on create usually means the origin is still rendering, so it counts as an unknown outcome.
A status check is never retried here: those answers (and 404) raise ProviderTransientError
for the state machine's Retry.
"""

import json
import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import urllib3
from aws_lambda_powertools import Logger

from i2v import retry_after
from i2v.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRejectedError,
    ProviderTransientError,
    SubmitOutcomeUnknownError,
)
from i2v.httpclient import JSON_CONTENT_TYPE, Response, TransportError, json_payload, new_pool_manager, request

logger = Logger(child=True)

CONNECT_TIMEOUT = 5.0
POLL_READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 4
BASE_DELAY = 1.0
MAX_DELAY = 30.0
# Time kept back when deciding whether another attempt fits in the Lambda's remaining time.
SAFETY_MARGIN_SECONDS = 10.0
MAX_MESSAGE_CHARS = 300
# Retryable 4xx answers; every 5xx is retryable too (except gateway timeouts on create).
RETRYABLE_STATUS = frozenset({408, 429})
# A gateway gave up waiting for the origin, which may still be working on the request.
GATEWAY_TIMEOUT_STATUS = frozenset({504, *range(520, 528)})
# Provider messages may echo the presigned image_url (a credential until it expires), in any
# spelling: HTTPS:// (case), https:\/\/ or https:\u002F\u002F (JSON-escaped), https%3A%2F%2F
# (percent-encoded, any case), and signature parameters on their own (X-Amz-Signature=..., X-Amz-Credential=...).
# Compiled on first use (only error paths redact): compiling them costs about 3 ms of cold start.
_URL = r"https?(?::|%3a|\\u003a)(?:\\?/|%2f|\\u002f){2}\S*"
_SIGNING_PARAMETER = (
    r"\b(?:x-amz-[a-z0-9-]+|signature|sig|token|key-pair-id|policy|expires|awsaccesskeyid)(?:=|%3d)[^\s&\"']*"
)


@cache
def _patterns() -> tuple[re.Pattern, re.Pattern]:
    return re.compile(_URL, re.IGNORECASE), re.compile(_SIGNING_PARAMETER, re.IGNORECASE)


def redact_urls(text: str) -> str:
    """``text`` with every URL and every signing query parameter replaced by a placeholder."""
    url, signing_parameter = _patterns()
    return signing_parameter.sub("<redacted>", url.sub("<url>", text))


def json_body(response: Response) -> Any:
    """The body parsed by the standard library's json, whatever else is installed (simplejson,
    which requests would pick, reads NaN differently)."""
    return json.loads(response.body)


def error_message(response: Response) -> str:
    """The provider's own explanation: `{"error": "..."}`, `{"error": {"message": ...}}`,
    `{"message": ...}` or plain text (NanoBanana's error bodies are undocumented)."""
    try:
        body = json_body(response)
    except ValueError:
        body = None
    message = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or error.get("code")
        elif error:
            message = error
        message = message or body.get("message") or body.get("detail")
    if not message:
        message = response.text.strip() or response.reason or "no details"
    # Redact before truncating, so a URL cut at the limit cannot leave a readable prefix.
    return redact_urls(str(message))[:MAX_MESSAGE_CHARS]


def retry_after_seconds(response: Response, now: datetime | None = None) -> float | None:
    """The response's Retry-After as seconds; None when absent or unreadable."""
    return retry_after.retry_after_seconds(response.headers.get("Retry-After"), now=now)


class ProviderHttp:
    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        create_read_timeout: float = 60.0,
        remaining_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pool: urllib3.PoolManager | None = None,
        create_attempts: int = MAX_ATTEMPTS,
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.create_read_timeout = create_read_timeout
        self.remaining_ms = remaining_ms
        self.sleep = sleep
        self.pool = pool or new_pool_manager()
        self._key: str | None = None
        # 1 in the workflow's Admit step: a refused create goes back to waiting (a Wait state)
        # instead of sleeping in the function.
        self.create_attempts = max(1, create_attempts)

    def api_key(self) -> str:
        """The bearer key, read once per instance. Submit calls this before it claims the job,
        so a key that cannot be read fails the attempt before anything is marked as sent."""
        if self._key is None:
            self._key = self._api_key()
        return self._key

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key()}", "Accept": JSON_CONTENT_TYPE}

    def _seconds_left(self) -> float | None:
        return None if self.remaining_ms is None else self.remaining_ms() / 1000.0

    def _read_timeout(self, wanted: float) -> float:
        # Give up on the answer before Lambda kills us, so the failure carries a clear message.
        left = self._seconds_left()
        if left is None:
            return wanted
        return max(1.0, min(wanted, left - SAFETY_MARGIN_SECONDS))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads retries from concurrent uploads

    def _fits(self, delay: float) -> bool:
        left = self._seconds_left()
        return left is None or delay + SAFETY_MARGIN_SECONDS < left

    def create(self, path: str, payload: dict) -> dict:
        """POST a paid create request. Returns the JSON body of a 2xx answer.

        Raises ProviderAuthError / ProviderRejectedError (final), ProviderTransientError once
        retries are exhausted, SubmitOutcomeUnknownError when the request may have been seen
        (read timeout, broken connection, gateway timeout).
        """
        url = self.base_url + path
        headers = {**self._headers(), "Content-Type": JSON_CONTENT_TYPE}
        body = json_payload(payload)
        last_problem = ""
        last_status = None
        for attempt in range(1, self.create_attempts + 1):
            retry_after = None
            try:
                # Never follow a redirect: a 307/308 would re-send the body (with the presigned
                # image link) and the API key to wherever Location points.
                response = request(
                    self.pool,
                    "POST",
                    url,
                    headers=headers,
                    body=body,
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=self._read_timeout(self.create_read_timeout),
                )
            except TransportError as exc:
                if exc.sent and exc.timed_out:
                    # A read timeout: the provider has the request and may be rendering (and charging).
                    raise _unknown_outcome("no answer came back in time") from None
                if exc.sent:
                    raise _unknown_outcome(
                        f"the connection broke after the request was sent ({exc.cause_name})"
                    ) from None
                last_problem = f"could not connect ({exc.cause_name})"
            else:
                if response.ok:
                    return _json_or_unknown(response)
                if response.status in GATEWAY_TIMEOUT_STATUS:
                    raise _unknown_outcome(
                        f"a gateway answered HTTP {response.status} (it stopped waiting for the provider, "
                        "which may still be rendering)"
                    )
                _raise_final(response)
                last_problem = f"HTTP {response.status}: {error_message(response)}"
                last_status = response.status
                retry_after = retry_after_seconds(response)
            if attempt == self.create_attempts:
                break
            delay = self._backoff(attempt, retry_after)
            if not self._fits(delay):
                logger.warning("not retrying create: the wait does not fit the remaining time", extra={"delay": delay})
                break
            logger.info("retrying provider create", extra={"attempt": attempt, "delay": delay, "problem": last_problem})
            self.sleep(delay)
        raise ProviderTransientError(
            f"provider unavailable after {attempt} attempt(s): {last_problem}",
            status=last_status,
            retry_after=retry_after,
        )

    def get(self, path: str) -> dict:
        """One GET (status check). Anything transient raises ProviderTransientError for the
        state machine's Retry; auth and validation failures are final."""
        url = self.base_url + path
        try:
            response = request(
                self.pool,
                "GET",
                url,
                headers=self._headers(),
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=self._read_timeout(POLL_READ_TIMEOUT),
            )
        except TransportError as exc:
            raise ProviderTransientError(f"provider status check failed ({exc.cause_name})") from None
        if response.ok:
            try:
                return json_body(response)
            except ValueError:
                raise ProviderTransientError("provider status check returned a body that is not JSON") from None
        if response.status == 404:
            # A job just created may not be visible yet; the deadline bounds how long we wait.
            raise ProviderTransientError(f"provider does not know the job yet (HTTP 404: {error_message(response)})")
        _raise_final(response)
        raise ProviderTransientError(f"provider status check failed: HTTP {response.status}: {error_message(response)}")


def _raise_final(response: Response) -> None:
    """Raise for answers that retrying cannot fix; return for retryable ones."""
    status = response.status
    if status in (401, 403):
        raise ProviderAuthError(f"provider rejected the API key (HTTP {status})")
    if status in RETRYABLE_STATUS:
        return
    if 300 <= status < 400:
        # Redirects are never followed (see ProviderHttp.create), so one is an answer we cannot use.
        where = _host_of(response.headers.get("Location"))
        raise ProviderError(
            f"the provider answered with a redirect (HTTP {status}{f' to {where}' if where else ''}), "
            "which is never followed: check PROVIDER_BASE_URL"
        )
    if 400 <= status < 500:
        raise ProviderRejectedError(f"provider rejected the request (HTTP {status}): {error_message(response)}")
    if status >= 500:
        return
    raise ProviderError(f"unexpected HTTP {status} from provider")


def _host_of(location: str | None) -> str:
    # Only the host: the rest of a Location may carry a signature.
    try:
        return (urlsplit(location or "").hostname or "").lower()
    except ValueError:
        return ""


def _json_or_unknown(response: Response) -> dict:
    try:
        body = json_body(response)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # The provider accepted something, but we cannot tell what: do not resubmit.
        raise _unknown_outcome(f"the provider answered HTTP {response.status} with a body that is not JSON")
    return body


def _unknown_outcome(why: str) -> SubmitOutcomeUnknownError:
    return SubmitOutcomeUnknownError(
        f"the create request was sent but {why}: its outcome is unknown; nothing was resubmitted, "
        "to avoid paying twice. Check the provider's dashboard before uploading again."
    )
