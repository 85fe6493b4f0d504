"""Image-to-video providers behind one interface; `get_provider(settings)` picks the configured one."""

import time
from collections.abc import Callable

import requests

from i2v.aws import secret_string
from i2v.config import Settings
from i2v.errors import InvalidOptionError
from i2v.providers.base import COMPLETED, FAILED, RUNNING, Provider, ProviderJob
from i2v.providers.http import ProviderHttp
from i2v.providers.nanobanana import NanoBananaProvider
from i2v.providers.nohuman import NoHumanProvider

PROVIDER_CLASSES = {cls.name: cls for cls in (NanoBananaProvider, NoHumanProvider)}
# One per container: status checks reuse its pooled connections instead of a TLS handshake per poll.
SESSION = requests.Session()

__all__ = [
    "COMPLETED",
    "FAILED",
    "RUNNING",
    "PROVIDER_CLASSES",
    "Provider",
    "ProviderJob",
    "get_provider",
    "provider_class",
]


def provider_class(name: str) -> type[Provider]:
    if name not in PROVIDER_CLASSES:
        raise InvalidOptionError(f"PROVIDER must be one of {', '.join(sorted(PROVIDER_CLASSES))} (got {name!r})")
    return PROVIDER_CLASSES[name]


def get_provider(
    settings: Settings,
    *,
    remaining_ms: Callable[[], int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    create_attempts: int | None = None,
    name: str | None = None,
) -> Provider:
    """The configured provider. The API key is read from Secrets Manager on the first request
    (cached by Powertools for five minutes), so validation failures never touch it."""
    cls = provider_class(name or settings.provider)
    secret_name = settings.api_key_secret

    def api_key() -> str:
        return secret_string(secret_name)

    http = ProviderHttp(
        settings.provider_base_url or cls.production_base_url,
        api_key,
        create_read_timeout=cls.create_read_timeout,
        remaining_ms=remaining_ms,
        sleep=sleep,
        session=SESSION,
        **({"create_attempts": create_attempts} if create_attempts else {}),
    )
    return cls(http)
