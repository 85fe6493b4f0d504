"""The text people read: the email body and the SNS subject of an outcome, with advice per
failure code on what to do next."""

import textwrap
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from i2v.clock import parse_time, utc_now
from i2v.options import OPTION_NAMES

PROVIDER_NAMES = {"nohuman": "NoHuman Studio", "nanobanana": "NanoBanana Video"}
SUBJECT_MAX = 99  # SNS: fewer than 100 printable ASCII characters


# What the person who uploaded can do about each failure code: every code the pipeline
# raises (the ``code=`` of ImageError and PipelineError, the classes' codes in errors.py,
# and the codes the workflow and the failure notifier set themselves).
ADVICE = {
    # The upload itself
    "ProviderNotConfigured": "This stack has no API key for the provider the image asked for: upload it with provider= naming a configured provider (or none, for the stack's default), or ask the stack's operator to add the key to the provider key secret.",
    "InvalidOption": "Fix the options in the image's metadata (see the message above) and upload the image again.",
    "EmptyObject": "The file was empty (0 bytes): check that the upload finished, then upload the image again.",
    "CorruptImage": "The file could not be decoded: export the image again (JPEG, PNG or WebP) and upload the new file.",
    "UnsupportedFormat": "Only JPEG, PNG and WebP images are accepted: convert the image to one of them and upload it again.",
    "ImageTooLarge": "The image is too big (see the message above for the limit): make it smaller, in bytes or pixels, and upload it again.",
    "SourceMissing": "The image was deleted before it could be processed: upload it again and leave it in place until the video is ready.",
    # ImageError's own code, in case an ImageError reaches the notifier through a workflow Catch.
    "InvalidImage": "Check that the file is a complete JPEG, PNG or WebP image within the size limits, then upload it again.",
    # The provider
    "ProviderAuthRejected": "The stack's API key was refused by the provider: update the secret that holds the key, then upload the image again.",
    "ProviderRejectedRequest": "The provider refused the request: check the options and the image against the provider's limits, then upload again.",
    "ProviderUnavailable": "The provider was unavailable or rate-limited: upload the image again in a few minutes.",
    "SubmitOutcomeUnknown": "Check the provider dashboard before uploading again: the job may have been created there, and it may have been charged.",
    "ProviderJobFailed": "The provider could not render this video: try another prompt or image, or upload it again.",
    "ProviderError": "The provider gave an answer the stack does not understand: check the provider dashboard for the job, and if the video is not there, upload the image again.",
    "QueueTimeout": "Too many uploads were waiting for the provider: upload the image again later (a folder in smaller batches), or ask the stack's operator to raise MaxQueueMinutes, or ProviderRequestsPerMinute and MaxJobsInFlight if the provider's plan allows more.",
    "TimedOut": "The provider did not finish in time: check the provider dashboard for the job, then upload again (or raise the stack's MaxWaitMinutes).",
    "ResultFetchFailed": "The video was rendered but could not be copied safely from the provider: check the provider dashboard, where it may still be available for a while.",
    # The stack
    "SpendCapReached": "Nothing was charged: the stack's daily cap for this provider is reached. Upload the image again after midnight UTC, when the count starts again, or ask the stack's operator to raise the cap (DailyJobCap, DailySpendCapUsd, DailySpendCapCredits; 0 = no cap).",
    "SubmitFailed": "The job could not be started: upload the image again in a few minutes, and if it fails again, ask the stack's operator to look at the submit function's logs.",
    "InternalError": "Something went wrong inside the stack: upload the image again, and if it fails again, ask the stack's operator to look at its logs.",
}
# A code this version does not know yet.
DEFAULT_ADVICE = "Something unexpected went wrong: upload the image again, and if it fails again, ask the stack's operator to look at its logs."


def _parse_time(text: str | None) -> datetime | None:
    """parse_time, but None for a missing or unreadable time: the outcome still goes out."""
    if not text:
        return None
    try:
        moment = parse_time(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _file_name(outcome: dict) -> str:
    key = (outcome.get("source") or {}).get("key") or "(unknown image)"
    return key.rsplit("/", 1)[-1] or key


def _ascii(text: str) -> str:
    """Printable ASCII only (SNS subjects): accents dropped, anything else becomes '?'."""
    folded = unicodedata.normalize("NFKD", text)
    chars = []
    for char in folded:
        if unicodedata.combining(char):
            continue
        chars.append(char if 32 <= ord(char) < 127 else "?")
    return "".join(chars)


def subject_for(outcome: dict) -> str:
    """E.g. "Video ready: harbour.jpg" or "Video failed: harbour.jpg (InvalidOption)"."""
    if outcome["status"] == "succeeded":
        head, tail = "Video ready: ", ""
    else:
        head, tail = "Video failed: ", f" ({_ascii((outcome.get('error') or {}).get('code') or 'InternalError')})"
    name = _ascii(_file_name(outcome))
    room = SUBJECT_MAX - len(head) - len(tail)
    if len(name) > room:
        name = name[: max(room - 3, 1)] + "..."
    return (head + name + tail)[:SUBJECT_MAX]


def human_span(seconds: int) -> str:
    """3600 -> "1 hour", 5400 -> "1 hour 30 minutes", 604800 -> "7 days"."""
    parts = []
    rest = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def _cost_text(cost: dict | None) -> str:
    if not cost:
        return "not reported"
    if cost.get("credits") is not None:
        credits = cost["credits"]
        return (
            f"{credits:g} credit{'s' if credits != 1 else ''}"
            if isinstance(credits, (int, float))
            else f"{credits} credits"
        )
    amount, currency = cost.get("amount"), cost.get("currency") or ""
    if amount is None:
        return "not reported"
    return f"${amount:.2f}" if currency == "USD" else f"{amount} {currency}".strip()


def _options_lines(options: dict) -> list:
    if not options:
        return ["  (provider defaults)"]
    ordered = [name for name in OPTION_NAMES if name in options] + sorted(set(options) - set(OPTION_NAMES))
    width = max(len(name) for name in ordered) + 1
    return [
        f"  {(name.replace('_', ' ') + ':').ljust(width + 1)} {_option_value(name, options[name])}" for name in ordered
    ]


def _option_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "duration":
        return f"{value} s"
    return str(value)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def email_text(outcome: dict[str, Any], *, presign_expiry_seconds: int, now: datetime | None = None) -> str:
    """The plain-text email: what happened to which image, and what to do next."""
    provider = outcome.get("provider")
    provider_text = PROVIDER_NAMES.get(provider or "", provider or "unknown provider")
    if outcome.get("provider_job_id"):
        provider_text += f" (job {outcome['provider_job_id']})"
    source_uri = (outcome.get("source") or {}).get("uri") or _file_name(outcome)
    durations = outcome.get("durations") or {}

    if outcome["status"] == "succeeded":
        lines = [f"Your video of {_file_name(outcome)} is ready.", ""]
    else:
        lines = [f"No video could be made from {_file_name(outcome)}.", ""]
    lines += [f"Image:     {source_uri}", f"Provider:  {provider_text}", "Options:"]
    lines += _options_lines(outcome.get("options") or {})
    lines.append("")

    if outcome["status"] == "succeeded":
        output = outcome.get("output") or {}
        finished = _parse_time(outcome.get("finished_at")) or now or utc_now()
        expires = _parse_time(output.get("download_url_expires_at")) or finished + timedelta(
            seconds=presign_expiry_seconds
        )
        # The requested expiry is only an upper bound: a link signed with a Lambda role's
        # temporary credentials stops working when those credentials expire.
        validity = (
            f"The link works for up to {human_span(presign_expiry_seconds)}, until {_utc_text(expires)} at the latest "
            "(links signed inside AWS Lambda can stop earlier, when the function's temporary credentials expire); "
            f"the video itself stays at {output.get('video_uri')}."
        )
        lines += [
            "Download:",
            f"  {output.get('download_url') or '(no link)'}",
            *textwrap.wrap(validity, width=78, break_long_words=False, break_on_hyphens=False),
            "",
            f"Video:     {output.get('video_uri')}",
        ]
        if output.get("thumbnail_uri"):
            lines.append(f"Thumbnail: {output['thumbnail_uri']}")
        if output.get("manifest_uri"):
            lines.append(f"Manifest:  {output['manifest_uri']}")
        lines += ["", f"Cost:      {_cost_text(outcome.get('cost'))}"]
        timing = []
        if durations.get("total_seconds") is not None:
            timing.append(f"{durations['total_seconds']:.0f} s from upload to video")
        provider_seconds = durations.get("provider_seconds", durations.get("render_seconds"))
        if provider_seconds is not None:
            timing.append(f"{provider_seconds:.0f} s until the provider finished")
        if timing:
            lines.append(f"Time:      {', '.join(timing)}")
    else:
        error = outcome.get("error") or {}
        code = error.get("code") or "InternalError"
        lines += [
            f"What failed: {error.get('message') or 'no reason was recorded'}",
            f"Error code:  {code}",
            "",
            f"What to do:  {ADVICE.get(code, DEFAULT_ADVICE)}",
            "",
            f"Cost:        {_cost_text(outcome.get('cost'))}",
        ]

    if outcome.get("warnings"):
        lines += ["", "Warnings:"] + [f"  - {warning}" for warning in outcome["warnings"]]
    lines += ["", f"Job: {outcome.get('job_key')}", ""]
    return "\n".join(lines)
