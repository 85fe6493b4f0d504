"""Each function's settings: a small frozen model per function, read from the environment once
at handler entry and passed down explicitly (nothing below a handler reads the environment).

A required variable that is missing or empty fails the invocation at once with
MissingSettingError naming it, instead of failing later where the value is first used. The
variable names are the ones template.yaml sets; the protocols at the end say what each shared
module reads, so any function's settings that carry those fields can be passed to it.

Plain dataclasses, not pydantic: handlers import this module, and their import time is budgeted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from i2v.options import OPTION_NAMES


class MissingSettingError(ValueError):
    """A variable the function needs is not set: the stack's template (or the local stack) is wrong."""

    def __init__(self, variable: str, function: str, why: str = "") -> None:
        self.variable = variable
        super().__init__(f"{variable} is not set for {function}{': ' + why if why else ''}")


class InvalidSettingError(ValueError):
    """A variable is set to something the function cannot read (a number that is not one)."""


class Env:
    """Typed reads of one environment (os.environ by default; tests pass a dict)."""

    def __init__(self, function: str, environ: Mapping[str, str] | None = None) -> None:
        self.function = function
        self.environ = os.environ if environ is None else environ

    def text(self, name: str, default: str = "") -> str:
        return (self.environ.get(name) or default).strip()

    def required(self, name: str, why: str = "") -> str:
        value = self.text(name)
        if not value:
            raise MissingSettingError(name, self.function, why)
        return value

    def integer(self, name: str, default: int) -> int:
        number = self.number(name, default)
        if number != int(number):
            raise InvalidSettingError(f"{name} must be a whole number for {self.function} (got {self.text(name)!r})")
        return int(number)

    def number(self, name: str, default: float) -> float:
        value = self.text(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise InvalidSettingError(f"{name} must be a number for {self.function} (got {value!r})") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidSettingError(f"{name} must be a finite number for {self.function} (got {value!r})")
        return number

    def flag(self, name: str) -> bool:
        return self.text(name).lower() == "true"

    def provider(self) -> str:
        return self.text("PROVIDER", "nohuman").lower()

    def hosts(self, name: str) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.text(name).split(",") if h.strip())

    def presign_expiry_seconds(self) -> int:
        # SigV4 allows at most 7 days.
        return min(self.integer("PRESIGN_EXPIRY_SECONDS", 3600), 604800)


# ---------------------------------------------------------------- one model per function


@dataclass(frozen=True)
class JobLimits:
    """What a new job state carries (Submit; NotifyFailure builds the state of an upload Submit lost)."""

    max_wait_minutes: int = 30
    max_queue_minutes: int = 60
    poll_interval_seconds: int = 5
    poll_strategy: str = "predicted"

    @classmethod
    def read(cls, env: Env) -> JobLimits:
        strategy = env.text("POLL_STRATEGY", "predicted").lower()
        return cls(
            max_wait_minutes=env.integer("MAX_WAIT_MINUTES", 30),
            max_queue_minutes=max(1, env.integer("MAX_QUEUE_MINUTES", 60)),
            poll_interval_seconds=env.integer("POLL_INTERVAL_SECONDS", 5),
            poll_strategy=strategy if strategy in ("predicted", "fixed") else "predicted",
        )


@dataclass(frozen=True)
class SubmitSettings:
    provider: str
    state_machine_arn: str
    limits: JobLimits = field(default_factory=JobLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SubmitSettings:
        env = Env("Submit", environ)
        return cls(
            provider=env.provider(),
            state_machine_arn=env.required("STATE_MACHINE_ARN", "uploads cannot start their workflow"),
            limits=JobLimits.read(env),
        )


@dataclass(frozen=True)
class PrepareSettings:
    provider: str
    output_bucket: str
    default_options: dict = field(default_factory=dict)
    max_source_bytes: int = 50 * 1024 * 1024
    work_prefix: str = "work/"
    output_prefix: str = "videos/"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PrepareSettings:
        env = Env("Prepare", environ)
        defaults = {name: env.text(f"DEFAULT_{name.upper()}") for name in OPTION_NAMES}
        return cls(
            provider=env.provider(),
            output_bucket=env.required("OUTPUT_BUCKET", "the normalised image has nowhere to go"),
            default_options={name: value for name, value in defaults.items() if value},
            max_source_bytes=env.integer("MAX_SOURCE_BYTES", 50 * 1024 * 1024),
            work_prefix=env.text("WORK_PREFIX", "work/"),
            output_prefix=env.text("OUTPUT_PREFIX", "videos/"),
        )


@dataclass(frozen=True)
class AdmitSettings:
    provider: str
    api_key_secret: str
    jobs_table: str
    provider_base_url: str = ""
    presign_expiry_seconds: int = 3600
    control_table: str = ""
    requests_per_minute: int = 60
    max_jobs_in_flight: int = 20
    initial_render_estimate_seconds: float = 0.0
    # The daily caps checked right before each create (``jobs=N;usd=X;credits=Y``, see i2v.spend).
    spend_caps: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdmitSettings:
        env = Env("Admit", environ)
        return cls(
            provider=env.provider(),
            api_key_secret=env.required("PROVIDER_API_KEY_SECRET", "the provider's API key cannot be read"),
            jobs_table=env.required("JOBS_TABLE", "without it a create could be sent twice"),
            provider_base_url=env.text("PROVIDER_BASE_URL"),
            presign_expiry_seconds=env.presign_expiry_seconds(),
            control_table=env.required("CONTROL_TABLE", "admission has nowhere to keep its slots"),
            requests_per_minute=max(1, env.integer("PROVIDER_REQUESTS_PER_MINUTE", 60)),
            max_jobs_in_flight=max(1, env.integer("MAX_JOBS_IN_FLIGHT", 20)),
            initial_render_estimate_seconds=env.number("INITIAL_RENDER_ESTIMATE_SECONDS", 0.0),
            spend_caps=env.text("SPEND_CAPS"),
        )


@dataclass(frozen=True)
class PollSettings:
    provider: str
    api_key_secret: str
    jobs_table: str
    provider_base_url: str = ""
    control_table: str = ""
    # How many lease items admission keeps (read by key); None: they are found with a Scan.
    max_jobs_in_flight: int | None = None
    initial_render_estimate_seconds: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PollSettings:
        env = Env("Poll", environ)
        return cls(
            provider=env.provider(),
            api_key_secret=env.required("PROVIDER_API_KEY_SECRET", "the provider's API key cannot be read"),
            jobs_table=env.required("JOBS_TABLE", "signed result links have nowhere to be kept"),
            provider_base_url=env.text("PROVIDER_BASE_URL"),
            control_table=env.text("CONTROL_TABLE"),
            max_jobs_in_flight=env.integer("MAX_JOBS_IN_FLIGHT", 0) or None,
            initial_render_estimate_seconds=env.number("INITIAL_RENDER_ESTIMATE_SECONDS", 0.0),
        )


@dataclass(frozen=True)
class PublishSettings:
    """What publishing an outcome needs (Store and NotifyFailure)."""

    jobs_table: str
    topic_arn: str
    event_bus_name: str = "default"
    presign_expiry_seconds: int = 3600

    @classmethod
    def read(cls, env: Env) -> PublishSettings:
        return cls(
            jobs_table=env.required("JOBS_TABLE", "without it a notification could be sent twice"),
            topic_arn=env.required("TOPIC_ARN", "the outcome has nowhere to go"),
            event_bus_name=env.text("EVENT_BUS_NAME", "default"),
            presign_expiry_seconds=env.presign_expiry_seconds(),
        )


@dataclass(frozen=True)
class StoreSettings:
    provider: str
    output_bucket: str
    publish: PublishSettings
    output_prefix: str = "videos/"
    result_allowed_hosts: tuple[str, ...] = ()
    allow_loopback_http: bool = False
    max_result_bytes: int = 500 * 1024 * 1024
    control_table: str = ""
    # How many lease items admission keeps (read by key); None: they are found with a Scan.
    max_jobs_in_flight: int | None = None

    @property
    def jobs_table(self) -> str:
        return self.publish.jobs_table

    @property
    def presign_expiry_seconds(self) -> int:
        return self.publish.presign_expiry_seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreSettings:
        env = Env("Store", environ)
        return cls(
            provider=env.provider(),
            output_bucket=env.required("OUTPUT_BUCKET", "the video has nowhere to go"),
            publish=PublishSettings.read(env),
            output_prefix=env.text("OUTPUT_PREFIX", "videos/"),
            result_allowed_hosts=env.hosts("RESULT_ALLOWED_HOSTS"),
            allow_loopback_http=env.flag("ALLOW_LOOPBACK_HTTP"),
            max_result_bytes=env.integer("MAX_RESULT_BYTES", 500 * 1024 * 1024),
            control_table=env.text("CONTROL_TABLE"),
            max_jobs_in_flight=env.integer("MAX_JOBS_IN_FLIGHT", 0) or None,
        )


@dataclass(frozen=True)
class NotifyFailureSettings:
    provider: str
    publish: PublishSettings
    control_table: str = ""
    # How many lease items admission keeps (read by key); None: they are found with a Scan.
    max_jobs_in_flight: int | None = None
    limits: JobLimits = field(default_factory=JobLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifyFailureSettings:
        env = Env("NotifyFailure", environ)
        return cls(
            provider=env.provider(),
            publish=PublishSettings.read(env),
            control_table=env.text("CONTROL_TABLE"),
            max_jobs_in_flight=env.integer("MAX_JOBS_IN_FLIGHT", 0) or None,
            limits=JobLimits.read(env),
        )


@dataclass(frozen=True)
class WebhookSettings:
    """DeliverWebhook: no URL means nothing to deliver; a URL needs its signing secret."""

    webhook_url: str = ""
    webhook_secret_name: str = ""
    allow_insecure_webhook: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        env = Env("DeliverWebhook", environ)
        url = env.text("WEBHOOK_URL")
        return cls(
            webhook_url=url,
            webhook_secret_name=env.required("WEBHOOK_SECRET_NAME", "deliveries cannot be signed") if url else "",
            allow_insecure_webhook=env.flag("ALLOW_INSECURE_WEBHOOK"),
        )


# ---------------------------------------------------------------- what shared modules read


class ProviderAccess(Protocol):
    """providers.get_provider."""

    @property
    def provider(self) -> str: ...
    @property
    def api_key_secret(self) -> str: ...
    @property
    def provider_base_url(self) -> str: ...


class ResultFetchSettings(Protocol):
    """fetch: where results may come from and where they go."""

    @property
    def provider(self) -> str: ...
    @property
    def output_bucket(self) -> str: ...
    @property
    def result_allowed_hosts(self) -> tuple[str, ...]: ...
    @property
    def allow_loopback_http(self) -> bool: ...
    @property
    def max_result_bytes(self) -> int: ...


class WorkLayout(Protocol):
    """storage.work_key: where normalised inputs go."""

    @property
    def work_prefix(self) -> str: ...


class OutputLayout(Protocol):
    """storage.output_keys: where videos, thumbnails and manifests go."""

    @property
    def output_prefix(self) -> str: ...


class ControlSettings(Protocol):
    """steps: the admission control table (slots, render-time samples)."""

    @property
    def control_table(self) -> str: ...

    @property
    def max_jobs_in_flight(self) -> int | None: ...


class EstimateSettings(ControlSettings, Protocol):
    """steps: the render-time estimates."""

    @property
    def initial_render_estimate_seconds(self) -> float: ...
