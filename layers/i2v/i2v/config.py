"""Settings read from the environment at call time (never at import time)."""

import os
from dataclasses import dataclass

from i2v.options import OPTIONS_BY_PROVIDER

# Every option either provider takes, in a stable order (notifications list them this way).
OPTION_NAMES = tuple(dict.fromkeys(name for names in OPTIONS_BY_PROVIDER.values() for name in names))


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _int(name: str, default: int) -> int:
    value = _env(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    provider: str
    api_key_secret: str
    provider_base_url: str
    default_options: dict
    poll_interval_seconds: int
    max_wait_minutes: int
    presign_expiry_seconds: int
    max_source_bytes: int
    output_bucket: str
    work_prefix: str
    output_prefix: str
    idempotency_table: str
    jobs_table: str
    state_machine_arn: str
    topic_arn: str
    event_bus_name: str
    result_allowed_hosts: tuple
    allow_loopback_http: bool
    max_result_bytes: int
    webhook_url: str
    webhook_secret_name: str
    allow_insecure_webhook: bool
    control_table: str = ""
    requests_per_minute: int = 60
    max_jobs_in_flight: int = 20
    max_queue_minutes: int = 60
    poll_strategy: str = "predicted"
    initial_render_estimate_seconds: float = 0.0

    @classmethod
    def from_env(cls) -> "Settings":
        defaults = {name: _env(f"DEFAULT_{name.upper()}") for name in OPTION_NAMES}
        return cls(
            provider=_env("PROVIDER", "nohuman").lower(),
            api_key_secret=_env("PROVIDER_API_KEY_SECRET"),
            provider_base_url=_env("PROVIDER_BASE_URL"),
            default_options={name: value for name, value in defaults.items() if value},
            poll_interval_seconds=_int("POLL_INTERVAL_SECONDS", 5),
            max_wait_minutes=_int("MAX_WAIT_MINUTES", 30),
            presign_expiry_seconds=min(_int("PRESIGN_EXPIRY_SECONDS", 3600), 604800),
            max_source_bytes=_int("MAX_SOURCE_BYTES", 50 * 1024 * 1024),
            output_bucket=_env("OUTPUT_BUCKET"),
            work_prefix=_env("WORK_PREFIX", "work/"),
            output_prefix=_env("OUTPUT_PREFIX", "videos/"),
            idempotency_table=_env("IDEMPOTENCY_TABLE"),
            jobs_table=_env("JOBS_TABLE"),
            state_machine_arn=_env("STATE_MACHINE_ARN"),
            topic_arn=_env("TOPIC_ARN"),
            event_bus_name=_env("EVENT_BUS_NAME", "default"),
            result_allowed_hosts=tuple(h.strip().lower() for h in _env("RESULT_ALLOWED_HOSTS").split(",") if h.strip()),
            allow_loopback_http=_env("ALLOW_LOOPBACK_HTTP").lower() == "true",
            max_result_bytes=_int("MAX_RESULT_BYTES", 500 * 1024 * 1024),
            webhook_url=_env("WEBHOOK_URL"),
            webhook_secret_name=_env("WEBHOOK_SECRET_NAME"),
            allow_insecure_webhook=_env("ALLOW_INSECURE_WEBHOOK").lower() == "true",
            control_table=_env("CONTROL_TABLE"),
            requests_per_minute=max(1, _int("PROVIDER_REQUESTS_PER_MINUTE", 60)),
            max_jobs_in_flight=max(1, _int("MAX_JOBS_IN_FLIGHT", 20)),
            max_queue_minutes=max(1, _int("MAX_QUEUE_MINUTES", 60)),
            poll_strategy=_env("POLL_STRATEGY", "predicted").lower() or "predicted",
            initial_render_estimate_seconds=float(_env("INITIAL_RENDER_ESTIMATE_SECONDS") or 0),
        )
