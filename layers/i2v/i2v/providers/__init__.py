"""Image-to-video providers behind one interface; `get_provider(settings, name=...)` builds one.

One stack may use both providers. Their keys live in the one secret named by
PROVIDER_API_KEY_SECRET: either a plain string, the key of the stack's default provider
(PROVIDER), or a JSON object with a key per configured provider, ``{"nohuman": "...",
"nanobanana": "..."}`` (either or both). A job for a provider without a key fails before any
request, with code ProviderNotConfigured.
"""

import json
import time
from collections.abc import Callable

from i2v.aws import secret_string
from i2v.errors import InvalidOptionError, ProviderNotConfiguredError
from i2v.httpclient import new_pool_manager
from i2v.providers.base import COMPLETED, FAILED, RUNNING, Provider, ProviderJob
from i2v.providers.http import ProviderHttp
from i2v.providers.nanobanana import NanoBananaProvider
from i2v.providers.nohuman import NoHumanProvider
from i2v.settings import ProviderAccess

PROVIDER_CLASSES = {cls.name: cls for cls in (NanoBananaProvider, NoHumanProvider)}
# One per container: status checks reuse its pooled connections instead of a TLS handshake per poll.
POOL = new_pool_manager()

__all__ = [
    "COMPLETED",
    "FAILED",
    "PROVIDER_CLASSES",
    "RUNNING",
    "Provider",
    "ProviderJob",
    "get_provider",
    "provider_class",
    "provider_key",
]


def provider_key(secret_value: str, provider: str, default_provider: str) -> str:
    """This provider's key from the secret's value (a plain key for the default provider, or JSON)."""
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            keys = json.loads(text)
        except ValueError:
            keys = None
        if not isinstance(keys, dict):
            raise ProviderNotConfiguredError("the provider key secret is neither a plain key nor a JSON object of keys")
        key = keys.get(provider)
        if not isinstance(key, str) or not key.strip():
            configured = ", ".join(sorted(k for k, v in keys.items() if isinstance(v, str) and v.strip())) or "none"
            raise ProviderNotConfiguredError(
                f"provider {provider} is not configured on this stack: its key secret has no {provider!r} entry "
                f"(configured: {configured})"
            )
        return key.strip()
    if provider != default_provider:
        raise ProviderNotConfiguredError(
            f"provider {provider} is not configured on this stack: its key secret holds one plain key, for the "
            f"default provider {default_provider}"
        )
    return text


def provider_class(name: str) -> type[Provider]:
    if name not in PROVIDER_CLASSES:
        raise InvalidOptionError(f"PROVIDER must be one of {', '.join(sorted(PROVIDER_CLASSES))} (got {name!r})")
    return PROVIDER_CLASSES[name]


def get_provider(
    settings: ProviderAccess,
    *,
    name: str | None = None,
    remaining_ms: Callable[[], int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    create_attempts: int | None = None,
) -> Provider:
    """Provider ``name`` (default: the stack's). The API key is read from Secrets Manager on the
    first request (cached by Powertools for five minutes), so validation failures never touch it."""
    cls = provider_class(name or settings.provider)
    secret_name = settings.api_key_secret
    default_provider = settings.provider

    def api_key() -> str:
        return provider_key(secret_string(secret_name), cls.name, default_provider)

    http = ProviderHttp(
        settings.provider_base_url or cls.production_base_url,
        api_key,
        create_read_timeout=cls.create_read_timeout,
        remaining_ms=remaining_ms,
        sleep=sleep,
        pool=POOL,
        **({"create_attempts": create_attempts} if create_attempts else {}),
    )
    return cls(http)
