"""Spend guardrails: daily caps per provider, checked atomically right before each paid create.

Three caps, each 0 = no cap, from the Admit function's SPEND_CAPS (``jobs=N;usd=X;credits=Y``,
read into AdmitSettings.spend_caps; from the stack parameters DailyJobCap, DailySpendCapUsd,
DailySpendCapCredits):

    jobs     jobs created per provider per UTC day
    usd      NoHuman Studio: USD per UTC day, from its price table (known before the call)
    credits  NanoBanana Video: credits per UTC day, as its create answers report them
             (a job's credits are known only afterwards: the check is "below the cap")

The counters are one item per provider and UTC day in the jobs table (``job_key`` =
``spend#<provider>#<YYYY-MM-DD>``; no ``job_status``, so they stay out of the job listing),
updated with a conditional UpdateItem: concurrent submits can never together pass a cap. An
upload over a cap raises SpendCapReachedError before any request reaches the provider; the
job ends in one failure notification with code ``SpendCapReached``. A create that certainly
started nothing (refused key, refused request, provider unavailable) gives its reservation back.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from i2v.aws import client
from i2v.errors import ProviderAuthError, ProviderRejectedError, ProviderTransientError, SpendCapReachedError
from i2v.options import NANOBANANA, NOHUMAN
from i2v.providers.base import Provider, ProviderJob
from i2v.providers.nohuman import PRICES_USD

COUNTER_TTL_DAYS = 7
# The provider certainly started no job: the reservation is given back.
REFUNDED = (ProviderAuthError, ProviderRejectedError, ProviderTransientError)


@dataclass(frozen=True)
class Caps:
    jobs: int = 0
    usd: float = 0.0
    credits: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Caps":
        values = {}
        for part in text.split(";"):
            name, _, value = part.partition("=")
            if name.strip() in ("jobs", "usd", "credits") and value.strip():
                values[name.strip()] = float(value)
        return cls(jobs=int(values.get("jobs", 0)), usd=values.get("usd", 0.0), credits=values.get("credits", 0.0))


def counter_key(provider: str, now: datetime) -> str:
    return f"spend#{provider}#{now.strftime('%Y-%m-%d')}"


def price_cents(provider: str, options: dict) -> int:
    """What the job costs in US cents before it is created (NoHuman's table); 0 when unknown."""
    if provider != NOHUMAN:
        return 0
    price_key: Any = (options.get("mode"), options.get("duration"))
    amount = PRICES_USD.get(price_key)
    return round(amount * 100) if amount is not None else 0


def create_within_caps(
    provider: Provider,
    image_url: str,
    job_options: dict,
    *,
    table: str,
    now: datetime,
    caps: Caps,
    sending: Callable[[], None] | None = None,
) -> ProviderJob:
    """provider.create_job, if today's caps allow it; counts it (and its credits) when they do.
    ``sending`` is called right before the request goes out: whatever fails before it sent nothing."""
    cents = price_cents(provider.name, job_options)
    key = counter_key(provider.name, now)
    admit(provider.name, cents, key=key, table=table, now=now, caps=caps)
    if sending is not None:
        sending()
    try:
        job = provider.create_job(image_url, job_options)
    except REFUNDED:
        _add(table, key, jobs=-1, cents=-cents)
        raise
    credits = (job.cost or {}).get("credits")
    if provider.name == NANOBANANA and credits is not None:
        _add(table, key, credits=float(credits))
    return job


def admit(provider: str, cents: int, *, key: str, table: str, now: datetime, caps: Caps) -> None:
    """Count one more job (and its price) for today, unless that would pass a cap."""
    day = now.strftime("%Y-%m-%d")
    if caps.usd and provider == NOHUMAN and cents > round(caps.usd * 100):
        raise SpendCapReachedError(
            f"this job costs ${cents / 100:.2f}, more than the daily spend cap of ${caps.usd:.2f} for {provider} on its own"
        )
    conditions, values = (
        [],
        {
            ":one": {"N": "1"},
            ":cents": {"N": str(cents)},
            ":provider": {"S": provider},
            ":day": {"S": day},
            ":ttl": {"N": str(int((now + timedelta(days=COUNTER_TTL_DAYS)).timestamp()))},
        },
    )
    if caps.jobs:
        conditions.append("(attribute_not_exists(jobs) OR jobs < :job_cap)")
        values[":job_cap"] = {"N": str(caps.jobs)}
    if caps.usd and provider == NOHUMAN:
        conditions.append("(attribute_not_exists(usd_cents) OR usd_cents <= :room)")
        values[":room"] = {"N": str(round(caps.usd * 100) - cents)}
    if caps.credits and provider == NANOBANANA:
        conditions.append("(attribute_not_exists(credits) OR credits < :credit_cap)")
        values[":credit_cap"] = {"N": _number(caps.credits)}
    request = {
        "TableName": table,
        "Key": {"job_key": {"S": key}},
        "UpdateExpression": "ADD jobs :one, usd_cents :cents SET #p = :provider, #d = :day, expires_at = if_not_exists(expires_at, :ttl)",
        "ExpressionAttributeNames": {"#p": "provider", "#d": "day"},
        "ExpressionAttributeValues": values,
    }
    if conditions:
        request["ConditionExpression"] = " AND ".join(conditions)
    try:
        client("dynamodb").update_item(**request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise SpendCapReachedError(_over_cap_message(provider, day, today(table, key), cents, caps)) from None


def today(table: str, key: str) -> dict:
    item = (
        client("dynamodb").get_item(TableName=table, Key={"job_key": {"S": key}}, ConsistentRead=True).get("Item") or {}
    )
    return {name: float(value["N"]) for name, value in item.items() if "N" in value}


def _over_cap_message(provider: str, day: str, counted: dict, cents: int, caps: Caps) -> str:
    jobs = int(counted.get("jobs", 0))
    if caps.jobs and jobs >= caps.jobs:
        return f"the daily job cap of {caps.jobs} for {provider} is reached: {jobs} jobs created on {day} (UTC)"
    if caps.usd and provider == NOHUMAN:
        spent = counted.get("usd_cents", 0) / 100
        if spent + cents / 100 > caps.usd:
            return (
                f"the daily spend cap of ${caps.usd:.2f} for {provider} would be passed: ${spent:.2f} spent on {day} "
                f"(UTC), this job costs ${cents / 100:.2f}"
            )
    if caps.credits and provider == NANOBANANA:
        return (
            f"the daily spend cap of {caps.credits:g} credits for {provider} is reached: "
            f"{counted.get('credits', 0):g} credits used on {day} (UTC)"
        )
    return f"a daily cap for {provider} is reached on {day} (UTC)"


def _add(table: str, key: str, *, jobs: int = 0, cents: int = 0, credits: float = 0.0) -> None:
    parts, values = [], {}
    for name, value in (("jobs", jobs), ("usd_cents", cents), ("credits", credits)):
        if value:
            parts.append(f"{name} :{name}")
            values[f":{name}"] = {"N": _number(value)}
    if parts:
        client("dynamodb").update_item(
            TableName=table,
            Key={"job_key": {"S": key}},
            UpdateExpression="ADD " + ", ".join(parts),
            ExpressionAttributeValues=values,
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
