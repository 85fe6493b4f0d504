"""Fault injection for the provider emulator: what to break, how often, and for how long.

Set through `POST /_emulator/faults` (merged into the current settings), read with `GET`,
reset with `DELETE`. Deterministic by default: `count` breaks the next N requests and
`rate` 1.0 breaks every one; fractional rates draw from a seeded RNG.
"""

from __future__ import annotations

import copy
import random
import threading
from dataclasses import dataclass

ENDPOINTS = ("nanobanana.create", "nohuman.create", "nohuman.status", "files")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SCALARS = {
    # name: (check, what the check expects, for the error message)
    "job_failure_rate": (lambda v: _is_number(v) and 0 <= v <= 1, "a number between 0 and 1"),
    "fail_next": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "failure_message": (lambda v: isinstance(v, str), "a string"),
    "render_seconds": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "result_url_ttl_seconds": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "download_bytes_per_second": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer or null"),
    "nanobanana_rate_limit": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "seed": (_is_int, "an integer"),
}


class FaultConfigError(ValueError):
    """The fault settings posted to the admin endpoint are malformed."""


@dataclass(frozen=True)
class InjectedError:
    status: int
    message: str
    retry_after: int | None = None


def _defaults(render_seconds: float, rate_limit: int) -> dict:
    return {
        "errors": {},
        "timeouts": {},
        "job_failure_rate": 0.0,
        "fail_next": 0,
        "failure_message": "generation failed (injected by the emulator)",
        "render_seconds": render_seconds,
        "result_url_ttl_seconds": 86400,
        "download_bytes_per_second": None,
        "nanobanana_rate_limit": rate_limit,
        "seed": 0,
    }


def _check_endpoint(name) -> str:
    if name not in ENDPOINTS:
        raise FaultConfigError(f"unknown endpoint {name!r}; expected one of {', '.join(ENDPOINTS)}")
    return name


def _check_error(endpoint: str, spec) -> dict | None:
    if spec is None:
        return None  # null clears the endpoint's error
    if not isinstance(spec, dict):
        raise FaultConfigError(f"errors.{endpoint} must be an object")
    status = spec.get("status", 500)
    if not _is_int(status) or not 400 <= status <= 599:
        raise FaultConfigError(f"errors.{endpoint}.status must be an HTTP error status (400-599)")
    rate, count = spec.get("rate"), spec.get("count")
    if rate is None and count is None:
        rate = 1.0
    if rate is not None and (not _is_number(rate) or not 0 <= rate <= 1):
        raise FaultConfigError(f"errors.{endpoint}.rate must be a number between 0 and 1")
    if count is not None and (not _is_int(count) or count < 0):
        raise FaultConfigError(f"errors.{endpoint}.count must be a non-negative integer")
    retry_after = spec.get("retry_after")
    if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
        raise FaultConfigError(f"errors.{endpoint}.retry_after must be a non-negative integer")
    message = spec.get("message", spec.get("body", f"injected HTTP {status}"))
    if not isinstance(message, str):
        raise FaultConfigError(f"errors.{endpoint}.message must be a string")
    return {"status": status, "rate": rate, "count": count, "retry_after": retry_after, "message": message}


def _check_timeout(spec) -> tuple[str, dict | None]:
    if not isinstance(spec, dict):
        raise FaultConfigError("timeout must be an object with endpoint and seconds")
    endpoint = _check_endpoint(spec.get("endpoint"))
    seconds = spec.get("seconds")
    if not _is_number(seconds) or seconds < 0:
        raise FaultConfigError("timeout.seconds must be a non-negative number")
    count = spec.get("count")
    if count is not None and (not _is_int(count) or count < 0):
        raise FaultConfigError("timeout.count must be a non-negative integer")
    if seconds == 0:
        return endpoint, None
    return endpoint, {"seconds": float(seconds), "count": count}


def _check_scalar(name: str, value):
    check, expected = _SCALARS[name]
    if not check(value):
        raise FaultConfigError(f"{name} must be {expected}")
    return value


class Faults:
    """Thread-safe fault settings plus the counters and RNG that decide each request."""

    def __init__(self, render_seconds: float = 2.0, rate_limit: int = 30):
        self._lock = threading.Lock()
        self._initial = (render_seconds, rate_limit)
        self._config = _defaults(render_seconds, rate_limit)
        self._rng = random.Random(0)

    # --- admin -------------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._config)

    def reset(self) -> dict:
        with self._lock:
            self._config = _defaults(*self._initial)
            self._rng = random.Random(0)
            return copy.deepcopy(self._config)

    def update(self, patch) -> dict:
        """Validate and merge a patch; nothing changes if any part of it is invalid."""
        if not isinstance(patch, dict):
            raise FaultConfigError("faults must be a JSON object")
        errors, timeouts, scalars = {}, {}, {}
        for key, value in patch.items():
            if key == "errors":
                if not isinstance(value, dict):
                    raise FaultConfigError("errors must be an object keyed by endpoint")
                for endpoint, spec in value.items():
                    errors[_check_endpoint(endpoint)] = _check_error(endpoint, spec)
            elif key in ENDPOINTS:  # shorthand: {"nohuman.create": {...}}
                errors[key] = _check_error(key, value)
            elif key in ("timeout", "timeouts"):
                for spec in value if isinstance(value, list) else [value]:
                    endpoint, timeout = _check_timeout(spec)
                    timeouts[endpoint] = timeout
            elif key in _SCALARS:
                scalars[key] = _check_scalar(key, value)
            else:
                raise FaultConfigError(f"unknown fault setting {key!r}")
        with self._lock:
            for endpoint, spec in errors.items():
                self._set_or_clear(self._config["errors"], endpoint, spec)
            for endpoint, spec in timeouts.items():
                self._set_or_clear(self._config["timeouts"], endpoint, spec)
            self._config.update(scalars)
            if "seed" in scalars:
                self._rng = random.Random(scalars["seed"])
            return copy.deepcopy(self._config)

    @staticmethod
    def _set_or_clear(table: dict, key: str, value) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    # --- per request -------------------------------------------------------------------

    def _fires(self, spec: dict) -> bool:
        """Consume one use of a count-limited spec, or draw against its rate."""
        if spec.get("count") is not None:
            if spec["count"] <= 0:
                return False
            spec["count"] -= 1
            return True
        rate = spec.get("rate")
        if rate is None:
            return True
        return rate >= 1 or self._rng.random() < rate

    def error_for(self, endpoint: str) -> InjectedError | None:
        with self._lock:
            spec = self._config["errors"].get(endpoint)
            if not spec or not self._fires(spec):
                return None
            return InjectedError(spec["status"], spec["message"], spec["retry_after"])

    def delay_for(self, endpoint: str) -> float:
        with self._lock:
            spec = self._config["timeouts"].get(endpoint)
            if not spec or not self._fires(spec):
                return 0.0
            return spec["seconds"]

    def job_failure(self) -> str | None:
        """The failure message if this generation should fail, else None."""
        with self._lock:
            config = self._config
            if config["fail_next"] > 0:
                config["fail_next"] -= 1
                return config["failure_message"]
            rate = config["job_failure_rate"]
            if rate > 0 and (rate >= 1 or self._rng.random() < rate):
                return config["failure_message"]
            return None

    def value(self, name: str):
        with self._lock:
            return self._config[name]
