"""Render-time estimates per provider and the options that drive render time.

Store records each finished job's render time (create -> provider done) into a small ring of
recent samples, one item per (provider, options) in CONTROL_TABLE (``pk`` =
``estimate#<provider>#<options>``). The estimate is three quantiles of that ring: ``low``
(p10: when the first check is due), ``p50`` and ``p90`` (how long the check window lasts).
Quantiles, not a mean: one job that took ten times as long moves nothing. Before there are
MIN_SAMPLES samples, the documented defaults below are mixed in as if they were samples.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from i2v.aws import client

logger = Logger(child=True)

RING_SIZE = 20  # the most recent samples the estimate uses
TRIM_AT = 2 * RING_SIZE  # the item is cut back to RING_SIZE once it holds this many
MIN_SAMPLES = 3
MIN_SECONDS, MAX_SECONDS = 1.0, 3600.0  # a sample outside this range is clipped

# Options that change how long a render takes, per provider.
DRIVING_OPTIONS = {
    "nohuman": ("mode", "duration"),
    "nanobanana": ("video_model", "resolution", "duration"),
}

# Defaults before history: seconds (low, p50, p90) of a 5-second clip in the provider's
# cheapest mode, scaled by the factors below. Deliberately wide: the first jobs check from
# `low` on, at the provider's cadence, so a wide band costs a few checks, never a late one.
BASE_SECONDS = {"nohuman": (30.0, 60.0, 120.0), "nanobanana": (60.0, 120.0, 240.0)}
FACTORS = {
    "mode": {"hq": 2.0},
    "video_model": {"veo3": 1.5, "sora2": 2.0},
    "resolution": {"720p": 1.5, "1080p": 2.0},
}


@dataclass(frozen=True)
class Estimate:
    low: float
    p50: float
    p90: float
    samples: int
    source: str  # "defaults" | "history" | "mixed"

    def to_dict(self) -> dict:
        return asdict(self)


def options_key(provider: str, options: dict | None) -> str:
    options = options or {}
    parts = [f"{name}={options.get(name)}" for name in DRIVING_OPTIONS.get(provider, ())]
    return "#".join([provider, *parts])


def default_estimate(provider: str, options: dict | None, override_seconds: float = 0.0) -> Estimate:
    """The documented defaults; ``override_seconds`` (INITIAL_RENDER_ESTIMATE_SECONDS) replaces
    them with (0.5x, 1x, 2x) of one figure (the local stack sets its emulator's render time)."""
    if override_seconds and override_seconds > 0:
        s = float(override_seconds)
        return Estimate(0.5 * s, s, 2.0 * s, 0, "defaults")
    options = options or {}
    low, p50, p90 = BASE_SECONDS.get(provider, (30.0, 60.0, 120.0))
    factor = 1.0
    for name, table in FACTORS.items():
        factor *= table.get(str(options.get(name)), 1.0)
    with contextlib.suppress(TypeError, ValueError):
        factor *= max(1.0, float(options.get("duration") or 5) / 5.0)
    return Estimate(low * factor, p50 * factor, p90 * factor, 0, "defaults")


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def estimate_from(samples: list[float], defaults: Estimate) -> Estimate:
    recent = [min(MAX_SECONDS, max(MIN_SECONDS, s)) for s in samples[-RING_SIZE:]]
    if not recent:
        return defaults
    points, source = recent, "history"
    if len(recent) < MIN_SAMPLES:
        points, source = [*recent, defaults.low, defaults.p50, defaults.p90], "mixed"
    low, p50, p90 = quantile(points, 0.1), quantile(points, 0.5), quantile(points, 0.9)
    return Estimate(round(low, 1), round(p50, 1), round(max(p90, p50), 1), len(recent), source)


def item_key(provider: str, options: dict | None) -> dict:
    return {"pk": {"S": "estimate#" + options_key(provider, options)}}


def load_samples(table: str, provider: str, options: dict | None) -> list[float]:
    item = client("dynamodb").get_item(TableName=table, Key=item_key(provider, options)).get("Item") or {}
    return [float(n["N"]) for n in (item.get("samples") or {}).get("L", [])]


def estimate(table: str, provider: str, options: dict | None, override_seconds: float = 0.0) -> Estimate:
    defaults = default_estimate(provider, options, override_seconds)
    if not table:
        return defaults
    return estimate_from(load_samples(table, provider, options), defaults)


def record(table: str, provider: str, options: dict | None, seconds: float) -> None:
    """Append one render time (atomic list_append), trimming the ring now and then."""
    if not table or seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return
    value = {"N": f"{min(MAX_SECONDS, max(MIN_SECONDS, seconds)):.1f}"}
    dynamodb = client("dynamodb")
    answer = dynamodb.update_item(
        TableName=table,
        Key=item_key(provider, options),
        UpdateExpression="SET samples = list_append(if_not_exists(samples, :empty), :new)",
        ExpressionAttributeValues={":empty": {"L": []}, ":new": {"L": [value]}},
        ReturnValues="UPDATED_NEW",
    )
    samples = answer["Attributes"]["samples"]["L"]
    if len(samples) >= TRIM_AT:
        try:
            dynamodb.update_item(
                TableName=table,
                Key=item_key(provider, options),
                UpdateExpression="SET samples = :kept",
                ConditionExpression="size(samples) = :n",
                ExpressionAttributeValues={":kept": {"L": samples[-RING_SIZE:]}, ":n": {"N": str(len(samples))}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise  # someone appended meanwhile: the next record trims
