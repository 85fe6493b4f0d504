"""Per-image options: stack defaults overridden by the upload's S3 user metadata, validated per provider.

Everything here runs before any paid call, so a job that cannot succeed fails with a message
naming the option, the allowed values and the value received, and costs nothing.
"""

import contextlib
import email.errors
import unicodedata
from collections.abc import Mapping
from email.header import decode_header, make_header

from i2v.errors import InvalidOptionError

NANOBANANA = "nanobanana"
NOHUMAN = "nohuman"
PROVIDERS = (NANOBANANA, NOHUMAN)

# Both providers default to this prompt; NoHuman requires one, so we always send it.
DEFAULT_PROMPT = "Generate a video from this image"
MAX_PROMPT_CHARS = 2000

OPTIONS_BY_PROVIDER = {
    NANOBANANA: ("prompt", "video_model", "resolution", "duration", "aspect_ratio", "motion_intensity"),
    NOHUMAN: ("prompt", "mode", "negative_prompt", "aspect_ratio", "duration", "cfg_scale", "sound"),
}
# Every option either provider takes, in a stable order (notifications list them this way).
OPTION_NAMES = tuple(dict.fromkeys(name for names in OPTIONS_BY_PROVIDER.values() for name in names))

NANOBANANA_MODELS = ("seedance2", "veo3", "sora2")
NANOBANANA_RESOLUTIONS = ("480p", "720p", "1080p")
NANOBANANA_ASPECT_RATIOS = {
    "seedance2": ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9"),
    "veo3": ("16:9",),
    "sora2": ("16:9",),
}
# Allowed durations per model and the duration used when none is given.
NANOBANANA_DURATIONS = {
    "seedance2": (tuple(range(3, 13)), 5),
    "veo3": ((8,), 8),
    "sora2": ((10, 15), 10),
}
MOTION_INTENSITIES = ("low", "medium", "high")

NOHUMAN_MODES = ("fast", "hq")
NOHUMAN_ASPECT_RATIOS = ("16:9", "9:16", "1:1")
NOHUMAN_DURATIONS = (5, 10)
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
# Characters that reorder how text is displayed (Trojan Source): a prompt shown in an email or
# a dashboard could read differently from what the provider receives.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def normalise_key(key: str) -> str:
    """`Video-Model`, `video-model` and `video_model` all name the same option."""
    return key.strip().lower().replace("-", "_")


def decode_value(value: str) -> str:
    """S3 user metadata is ASCII on the wire: clients send other text as RFC 2047 encoded words
    (``=?UTF-8?B?...?=`` or ``=?UTF-8?Q?...?=``). Decode them; plain ASCII passes unchanged."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeDecodeError, email.errors.HeaderParseError, ValueError) as exc:
        raise InvalidOptionError(f"metadata value {value[:60]!r} is not valid RFC 2047 encoded text ({exc})") from None


def metadata_options(metadata: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Option name -> (metadata key as sent, decoded value).

    Two metadata keys that name the same option (``video-model`` and ``video_model``) are
    refused: which one wins would depend on the order S3 happens to return them in.
    """
    found: dict[str, tuple[str, str]] = {}
    for raw_key, value in metadata.items():
        key = normalise_key(raw_key)
        if key in found:
            raise InvalidOptionError(
                f"{found[key][0]!r} and {raw_key!r} both set the option {key}: send only one of them"
            )
        found[key] = (raw_key, decode_value(str(value)))
    return found


PROVIDER_KEY = "provider"


def split_provider(metadata: Mapping[str, str], default: str) -> tuple[str, dict]:
    """The provider an upload asks for (metadata ``provider=``, else ``default``) and the rest of
    its metadata, which are the options validated against that provider."""
    rest = {key: value for key, value in metadata.items() if normalise_key(key) != PROVIDER_KEY}
    asked = [
        decode_value(str(value)).strip().lower()
        for key, value in metadata.items()
        if normalise_key(key) == PROVIDER_KEY
    ]
    if not asked or not asked[0]:
        return default, rest
    if len(asked) > 1 or asked[0] not in PROVIDERS:
        raise InvalidOptionError(f"provider must be one of {', '.join(PROVIDERS)} (got {', '.join(map(repr, asked))})")
    return asked[0], rest


def resolve_options(provider: str, defaults: Mapping[str, str], metadata: Mapping[str, str]) -> dict:
    """The validated, typed options for one upload (see resolve_options_with_warnings)."""
    return resolve_options_with_warnings(provider, defaults, metadata)[0]


def resolve_options_with_warnings(
    provider: str, defaults: Mapping[str, str], metadata: Mapping[str, str]
) -> tuple[dict, list[str]]:
    """Stack defaults, overridden option by option by S3 metadata, validated and typed;
    plus warnings about stack defaults that were replaced.

    Metadata is validated strictly: the uploader asked for it, so a bad value or an option
    the provider does not take is an error. Stack defaults apply to every image, whatever
    model it asks for (DEFAULT_DURATION=5 cannot suit veo3, which only renders 8 seconds):
    one that is invalid for this image is replaced by the provider's or model's own default,
    with a warning. Stack defaults naming options the provider does not take are ignored
    (the template carries defaults for both providers).
    """
    allowed = _allowed(provider)
    stack = {key: value for key, value in defaults.items() if key in allowed and str(value).strip() != ""}
    merged = dict(stack)
    for key, (raw_key, value) in metadata_options(metadata).items():
        if key not in allowed:
            raise InvalidOptionError(_unknown_message(raw_key, key, provider))
        merged[key] = value
        stack.pop(key, None)
    replaced: dict[str, str] = {}
    # Each pass drops one invalid stack default; the loop ends when validation passes or fails on metadata.
    while True:
        try:
            resolved = validate_options(provider, merged)
            break
        except InvalidOptionError as error:
            name = getattr(error, "option", None)
            if name not in stack:
                raise
            replaced[name] = error.message
            del merged[name], stack[name]
    warnings = [
        f"stack default ignored for this image: {reason}; "
        + (f"used {resolved[name]!r} instead" if resolved.get(name) is not None else "left unset")
        for name, reason in replaced.items()
    ]
    return resolved, warnings


def requested_options(provider: str, defaults: Mapping[str, str], metadata: Mapping[str, str]) -> dict:
    """The options as asked for, untyped: what a failure notification shows when validation fails.

    Never raises: values that cannot be decoded are shown as they came, and control or
    bidirectional formatting characters as ``\\uXXXX``, so the email shows what was sent."""
    allowed = OPTIONS_BY_PROVIDER.get(provider, ())
    merged = {key: value for key, value in defaults.items() if key in allowed}
    for key, value in metadata.items():
        with contextlib.suppress(InvalidOptionError):
            value = decode_value(str(value))
        merged[normalise_key(key)] = value
    return {key: _visible(value) if isinstance(value, str) else value for key, value in merged.items()}


def _forbidden_in_text(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS


def _visible(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" if _forbidden_in_text(char) else char for char in text)


def validate_options(provider: str, options: Mapping[str, object]) -> dict:
    """Check and type every option for the provider, filling in the provider's defaults."""
    allowed = _allowed(provider)
    for key in options:
        if key not in allowed:
            raise InvalidOptionError(_unknown_message(key, key, provider))
    if provider == NANOBANANA:
        return _nanobanana(options)
    return _nohuman(options)


def _invalid(name: str, message: str) -> InvalidOptionError:
    """An InvalidOptionError that names its option, so resolve_options can tell a bad stack default."""
    error = InvalidOptionError(message)
    error.option = name
    return error


def _allowed(provider: str) -> tuple:
    if provider not in OPTIONS_BY_PROVIDER:
        raise InvalidOptionError(f"provider must be one of {', '.join(PROVIDERS)} (got {provider!r})")
    return OPTIONS_BY_PROVIDER[provider]


def _unknown_message(raw_key: str, key: str, provider: str) -> str:
    allowed = ", ".join(OPTIONS_BY_PROVIDER[provider])
    other = [name for name, names in OPTIONS_BY_PROVIDER.items() if name != provider and key in names]
    if other:
        return f"{raw_key!r} is not an option of {provider} (it belongs to {other[0]}); allowed: {allowed}"
    return f"unknown option {raw_key!r} for {provider}; allowed: {allowed}"


def _text(options: Mapping, name: str, default: str | None) -> str | None:
    value = options.get(name)
    if value is None or str(value).strip() == "":
        return default
    value = str(value).strip()
    if len(value) > MAX_PROMPT_CHARS:
        raise _invalid(name, f"{name} must be at most {MAX_PROMPT_CHARS} characters (got {len(value)})")
    bad = next(filter(_forbidden_in_text, value), None)
    if bad is not None:
        kind = "bidirectional formatting" if bad in BIDI_CONTROLS else "control"
        raise _invalid(name, f"{name} must not contain {kind} characters (found U+{ord(bad):04X})")
    return value


def _choice(options: Mapping, name: str, allowed: tuple, default: str, context: str = "") -> str:
    value = options.get(name)
    if value is None or str(value).strip() == "":
        value = default
    value = str(value).strip().lower()
    if value not in allowed:
        raise _invalid(name, f"{name} must be one of {', '.join(allowed)}{context} (got {options.get(name)!r})")
    return value


def _int_choice(options: Mapping, name: str, allowed: tuple, default: int, context: str) -> int:
    value = options.get(name)
    if value is None or str(value).strip() == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number not in allowed:
        shown = f"{allowed[0]} to {allowed[-1]}" if len(allowed) > 3 else ", ".join(map(str, allowed))
        raise _invalid(name, f"{name} must be {shown}{context} (got {value!r})")
    return number


def _nanobanana(options: Mapping) -> dict:
    model = _choice(options, "video_model", NANOBANANA_MODELS, "seedance2", " for nanobanana")
    durations, default_duration = NANOBANANA_DURATIONS[model]
    return {
        "prompt": _text(options, "prompt", DEFAULT_PROMPT),
        "video_model": model,
        "resolution": _choice(options, "resolution", NANOBANANA_RESOLUTIONS, "480p", " for nanobanana"),
        "duration": _int_choice(options, "duration", durations, default_duration, f" seconds for nanobanana {model}"),
        "aspect_ratio": _choice(
            options, "aspect_ratio", NANOBANANA_ASPECT_RATIOS[model], "16:9", f" for nanobanana {model}"
        ),
        "motion_intensity": _choice(options, "motion_intensity", MOTION_INTENSITIES, "medium", " for nanobanana"),
    }


def _nohuman(options: Mapping) -> dict:
    resolved = {
        "prompt": _text(options, "prompt", DEFAULT_PROMPT),
        "mode": _choice(options, "mode", NOHUMAN_MODES, "fast", " for nohuman"),
        "aspect_ratio": _choice(options, "aspect_ratio", NOHUMAN_ASPECT_RATIOS, "16:9", " for nohuman"),
        "duration": _int_choice(options, "duration", NOHUMAN_DURATIONS, 5, " seconds for nohuman"),
        "cfg_scale": _cfg_scale(options.get("cfg_scale")),
        "sound": _bool("sound", options.get("sound"), True),
    }
    negative = _text(options, "negative_prompt", None)
    if negative:
        resolved["negative_prompt"] = negative
    return resolved


def _cfg_scale(value: object) -> float:
    if value is None or str(value).strip() == "":
        return 0.5
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:  # NaN fails this too
        raise _invalid("cfg_scale", f"cfg_scale must be a number from 0 to 1 for nohuman (got {value!r})")
    return number


def _bool(name: str, value: object, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or str(value).strip() == "":
        return default
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _invalid(name, f"{name} must be one of true, false, yes, no, 1, 0 for nohuman (got {value!r})")
