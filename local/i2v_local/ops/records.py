"""Reading the job records: one item, or jobs newest first through the ByStatus index (a Query)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from i2v import records

STATUS_INDEX = records.STATUS_INDEX
STATUSES = records.LISTED_STATUSES


def plain(item: dict) -> dict:
    """A DynamoDB item as plain values (numbers as floats, JSON attributes parsed)."""
    record = records.from_item(item)
    return {name: float(value) if type(value) is int else value for name, value in record.items()}


def get(target, job_key: str) -> dict | None:
    item = (
        target.client("dynamodb")
        .get_item(TableName=target.output("JobsTableName"), Key={"job_key": {"S": job_key}}, ConsistentRead=True)
        .get("Item")
    )
    return plain(item) if item else None


def query(
    target, *, statuses=STATUSES, since: str | None = None, limit: int | None = 50, provider: str | None = None
) -> list[dict]:
    """Jobs newest first: one Query per status on the index, merged."""
    ddb = target.client("dynamodb")
    table = target.output("JobsTableName")
    found: list[dict] = []
    for status in statuses:
        condition = "job_status = :s"
        values = {":s": {"S": status}}
        if since:
            condition += " AND created_at >= :since"
            values[":since"] = {"S": since}
        kwargs = {
            "TableName": table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if provider:
            kwargs["FilterExpression"] = "provider = :p"
            values[":p"] = {"S": provider}
        taken = 0
        while True:
            if limit:
                kwargs["Limit"] = max(limit - taken, 1) if not provider else 100
            page = ddb.query(**kwargs)
            for item in page.get("Items", []):
                found.append(plain(item))
                taken += 1
            if not page.get("LastEvaluatedKey") or (limit and taken >= limit):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    found.sort(key=lambda r: r.get("created_at") or "", reverse=True)
    return found[:limit] if limit else found


_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")


def parse_since(text: str | None, now: datetime | None = None) -> str | None:
    """`--since`: 2026-12-01, 2026-12-01T10:00:00Z, or relative 30m / 24h / 7d / 2w. Returns the
    ISO form the records use (UTC, `...Z`), which sorts like time."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        moment = now - timedelta(**{unit: int(match.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since: expected a date, a time (ISO 8601) or 30m / 24h / 7d, got {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cost_of(record: dict) -> tuple[float | None, float | None]:
    return record.get("cost_usd"), record.get("cost_credits")
