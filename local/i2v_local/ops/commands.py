"""`i2v jobs`, `i2v show`, `i2v redrive` and `i2v cost`."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections import defaultdict
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from i2v.identity import execution_name, job_key

from . import records
from .render import cost_text, emit, emit_json, seconds_text, table
from .submit import UsageError, _execution_arn

# ---------------------------------------------------------------- jobs

JOB_COLUMNS = [
    ("created_at", "CREATED"),
    ("source_key", "SOURCE"),
    ("provider", "PROVIDER"),
    ("status", "STATUS"),
    ("time_to_video", "TIME"),
    ("cost", "COST"),
    ("job", "JOB"),
]


def job_row(record: dict) -> dict:
    outcome = record.get("outcome") or {}
    return {
        "job_key": record["job_key"],
        "job": record["job_key"][:12],
        "created_at": record.get("created_at"),
        "source_key": record.get("source_key") or (outcome.get("source") or {}).get("key"),
        "provider": record.get("provider"),
        "status": record.get("job_status"),
        "time_to_video": seconds_text(record.get("total_seconds")) if record.get("job_status") == "succeeded" else None,
        "total_seconds": record.get("total_seconds"),
        "cost": cost_text(record.get("cost_usd"), record.get("cost_credits")),
        "cost_usd": record.get("cost_usd"),
        "cost_credits": record.get("cost_credits"),
        "error_code": record.get("error_code"),
        "video_uri": record.get("video_uri"),
    }


def cmd_jobs(target, args, out) -> int:
    statuses = (args.status,) if args.status else records.STATUSES
    found = records.query(target, statuses=statuses, since=records.parse_since(args.since), limit=args.limit)
    rows = [job_row(r) for r in found]
    if args.json:
        for row in rows:
            row.pop("job")
    emit(out, rows, JOB_COLUMNS, args.json, empty="no jobs")
    return 0


# ---------------------------------------------------------------- show

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def resolve_job_key(target, text: str) -> str:
    """A job key (64 hex, or a unique prefix of 8+ from the listing) or an S3 key of the input bucket
    (`uploads/x.jpg`, `x.jpg` under the input prefix, or `s3://bucket/key`): its current version's job."""
    text = text.strip()
    if HEX64.match(text):
        return text
    if re.fullmatch(r"[0-9a-f]{8,63}", text):
        matches = [r["job_key"] for r in records.query(target, limit=None) if r["job_key"].startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"{text} matches {len(matches)} jobs: give more of the job key")
    bucket = target.output("InputBucketName")
    key = text
    if text.startswith("s3://"):
        bucket, key = text[5:].split("/", 1)
    s3 = target.client("s3")
    candidates = [key]
    prefix = target.output("InputPrefix", required=False) or ""
    if prefix and not key.startswith(prefix):
        candidates.append(prefix + key)
    for candidate in candidates:
        try:
            head = s3.head_object(Bucket=bucket, Key=candidate)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "403"):
                continue
            raise
        return job_key(bucket, candidate, head.get("VersionId"), (head.get("ETag") or "").strip('"') or None)
    raise UsageError(f"no job key and no object in s3://{bucket}/ named {text!r}")


def execution_steps(target, key: str) -> tuple[dict | None, list[dict]]:
    sfn = target.client("stepfunctions")
    arn = _execution_arn(target, execution_name(key))
    try:
        execution = sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "ResourceNotFound"):
            return None, []
        raise
    events = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    steps: list[dict] = []
    open_steps: dict[str, dict] = {}
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered:
            step = {
                "step": entered["name"],
                "type": event["type"].replace("StateEntered", ""),
                "started": event["timestamp"],
                "seconds": None,
            }
            steps.append(step)
            open_steps[entered["name"]] = step
        elif exited and exited["name"] in open_steps:
            step = open_steps.pop(exited["name"])
            step["seconds"] = round((event["timestamp"] - step["started"]).total_seconds(), 2)
        elif event["type"].endswith("Failed") and event["type"] != "ExecutionFailed" and open_steps:
            list(open_steps.values())[-1]["error"] = (
                event.get("taskFailedEventDetails") or event.get("lambdaFunctionFailedEventDetails") or {}
            ).get("error")
    summary = {
        "execution_arn": arn,
        "status": execution["status"],
        "started": execution["startDate"].isoformat(),
        "stopped": execution["stopDate"].isoformat() if execution.get("stopDate") else None,
    }
    for step in steps:
        step["started"] = step["started"].isoformat()
    return summary, steps


def presign(target, uri: str | None, expires: int) -> str | None:
    if not uri or not uri.startswith("s3://"):
        return None
    bucket, key = uri[5:].split("/", 1)
    return target.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )


def cmd_show(target, args, out) -> int:
    if args.expires > 604800:
        raise UsageError("--expires: presigned links live at most 604800 s (7 days, SigV4's limit)")
    key = resolve_job_key(target, args.job)
    record = records.get(target, key)
    execution, steps = execution_steps(target, key)
    if record is None and execution is None:
        raise UsageError(f"no job {key}: no record and no execution (was the upload under the input prefix?)")
    record = record or {"job_key": key}
    outcome = record.get("outcome")
    link = presign(target, record.get("video_uri"), args.expires)
    notification = None
    if outcome:
        notification = {
            "status": outcome.get("status"),
            "sns_message_id": record.get("notified_sns_message_id"),
            "event_id": record.get("notified_event_id"),
            "notified_at": record.get("notified_at"),
            "body": outcome,
        }
    row = job_row(record)
    row.pop("job")
    shown = {
        **row,
        "state": record.get("state"),
        "provider_job_id": record.get("provider_job_id"),
        "finished_at": record.get("finished_at"),
        "options": (outcome or {}).get("options"),
        "error": (outcome or {}).get("error"),
        "warnings": (outcome or {}).get("warnings"),
        "execution": execution,
        "steps": steps,
        "notification": notification,
        "download_url": link,
        "download_url_expires_in": args.expires if link else None,
    }
    if args.json:
        emit_json(out, shown)
        return 0
    lines = [
        ("job", key),
        (
            "source",
            f"s3://{record.get('source_bucket') or target.output('InputBucketName')}/{row['source_key'] or '?'}",
        ),
        ("provider", row["provider"]),
        ("provider job", record.get("provider_job_id")),
        ("status", row["status"]),
        ("created", row["created_at"]),
        ("finished", record.get("finished_at")),
        ("time to video", row["time_to_video"]),
        ("cost", row["cost"]),
        ("options", json.dumps((outcome or {}).get("options"), ensure_ascii=False) if outcome else None),
        (
            "error",
            f"{row['error_code']}: {((outcome or {}).get('error') or {}).get('message')}"
            if row["error_code"]
            else None,
        ),
        ("video", row["video_uri"]),
        ("execution", f"{execution['status']} {execution['execution_arn']}" if execution else "not started"),
    ]
    for name, value in lines:
        out.write(f"{name + ':':<15}{value if value not in (None, '') else '-'}\n")
    if steps:
        out.write(
            "\n"
            + table(
                [{**s, "seconds": f"{s['seconds']:.2f}" if s["seconds"] is not None else "running"} for s in steps],
                [
                    ("step", "STEP"),
                    ("type", "TYPE"),
                    ("started", "STARTED"),
                    ("seconds", "SECONDS"),
                    ("error", "ERROR"),
                ],
            )
        )
    out.write("\n")
    if notification:
        out.write(
            f"notification:  {notification['status']}, SNS message {notification['sns_message_id'] or '-'}, "
            f"event {notification['event_id'] or '-'}, at {notification['notified_at'] or '-'}\n"
        )
    else:
        out.write("notification:  none yet\n")
    if link:
        out.write(f"download ({args.expires} s): {link}\n")
    out.flush()
    return 0


# ---------------------------------------------------------------- redrive

REDRIVE_COLUMNS = [
    ("queue", "QUEUE"),
    ("message_id", "MESSAGE"),
    ("source_key", "SOURCE"),
    ("job", "JOB"),
    ("reason", "REASON"),
    ("result", "RESULT"),
]


def _receive_all(sqs, url: str, hide_seconds: int) -> list[dict]:
    """Every visible message, each hidden for hide_seconds while we look at it."""
    messages: dict[str, dict] = {}
    while True:
        page = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hide_seconds,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in page if m["MessageId"] not in messages]
        if not fresh:
            return list(messages.values())
        for message in fresh:
            messages[message["MessageId"]] = message


def _show_again(sqs, url: str, messages: list[dict]) -> None:
    for message in messages:
        with contextlib.suppress(ClientError):
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)


def _submit_row(message: dict) -> dict:
    try:
        record = json.loads(message["Body"])
    except ValueError:
        record = {}
    payload = record.get("requestPayload") or {}
    s3_records = payload.get("Records") or []
    source_key, key = None, None
    if s3_records:
        s3 = s3_records[0].get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        source_key = unquote_plus(obj.get("key") or "")
        key = job_key(bucket, source_key, obj.get("versionId"), (obj.get("eTag") or "").strip('"') or None)
    response = record.get("responsePayload") or {}
    reason = ": ".join(x for x in (response.get("errorType"), response.get("errorMessage")) if x)
    return {
        "queue": "submit",
        "message_id": message["MessageId"],
        "source_key": source_key,
        "job_key": key,
        "job": key[:12] if key else None,
        "reason": reason or (record.get("requestContext") or {}).get("condition"),
        "payload": payload,
    }


def _webhook_row(message: dict) -> dict:
    try:
        outcome = json.loads(message["Body"])
        if outcome.get("Type") == "Notification":
            outcome = json.loads(outcome["Message"])
    except (ValueError, TypeError):
        outcome = {}
    key = outcome.get("job_key")
    return {
        "queue": "webhook",
        "message_id": message["MessageId"],
        "source_key": (outcome.get("source") or {}).get("key"),
        "job_key": key,
        "job": key[:12] if key else None,
        "reason": f"{outcome.get('status')} outcome, {message.get('Attributes', {}).get('ApproximateReceiveCount', '?')} receives",
    }


def _redrive_submit(target, row: dict) -> str:
    """The original S3 event, handed to the submit function again (asynchronously, with its
    usual retries and on-failure queue). The job record keeps it from paying twice: a create that
    was recorded is reused, one whose outcome is unknown is not re-sent."""
    answer = target.client("lambda").invoke(
        FunctionName=target.output("SubmitFunctionName"),
        InvocationType="Event",
        Payload=json.dumps(row["payload"]).encode(),
    )
    return "resubmitted" if answer.get("StatusCode") == 202 else f"invoke answered {answer.get('StatusCode')}"


def _redrive_webhook(target, row: dict, message: dict, queue_arn: str) -> str:
    """The delivery function again, with the dead-lettered message as its SQS event (the webhook
    queue accepts messages from the outcome topic only, so it cannot be sent back there)."""
    event = {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {**message.get("Attributes", {}), "ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": target.region,
            }
        ]
    }
    answer = target.client("lambda").invoke(
        FunctionName=target.output("DeliverWebhookFunctionName"),
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    payload = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError") or (payload or {}).get("batchItemFailures"):
        return "delivery failed again"
    return "delivered"


def cmd_redrive(target, args, out) -> int:
    sqs = target.client("sqs")
    queues = []
    if args.queue in ("all", "submit"):
        queues.append(("submit", target.output("SubmitFailureDeadLetterQueueUrl")))
    if args.queue in ("all", "webhook"):
        url = target.output("WebhookDeadLetterQueueUrl", required=False)
        if url:
            queues.append(("webhook", url))
        elif args.queue == "webhook":
            raise UsageError("this stack has no webhook (WebhookUrl is empty), so no webhook dead-letter queue")
    rows, failed = [], 0
    for name, url in queues:
        messages = _receive_all(sqs, url, hide_seconds=120 if args.apply else 30)
        for message in messages:
            row = _submit_row(message) if name == "submit" else _webhook_row(message)
            if args.apply:
                if name == "submit":
                    row["result"] = _redrive_submit(target, row)
                    ok = row["result"] == "resubmitted"
                else:
                    row["result"] = _redrive_webhook(target, row, message, _source_queue_arn(target, url))
                    ok = row["result"] == "delivered"
                if ok:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    failed += 1
                    _show_again(sqs, url, [message])
            else:
                row["result"] = "waiting (--apply to redrive)"
            row.pop("payload", None)
            rows.append(row)
        if not args.apply:
            _show_again(sqs, url, messages)
    if not args.json:  # the whole reason is in --json
        rows = [{**r, "reason": _shorten(r.get("reason"), 72)} for r in rows]
    emit(out, rows, REDRIVE_COLUMNS, args.json, empty="dead-letter queues are empty")
    return 1 if failed else 0


def _shorten(text: str | None, width: int) -> str | None:
    if not text or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _source_queue_arn(target, dlq_url: str) -> str:
    """The webhook queue's ARN (the delivery function postpones retries on it): the DLQ's name
    without the DeadLetter part is not reliable, so ask the queues which one redrives here."""
    sqs = target.client("sqs")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    except ClientError:
        sources = []
    for url in sources:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return dlq_arn


# ---------------------------------------------------------------- cost

# AWS cost per job, estimated from the record (us-east-1 list prices, arm64): Step Functions
# Standard $0.025 per 1,000 transitions; Lambda $0.0000133334 per GB-second plus $0.20 per
# million requests. Transitions: Route, Store/NotifyFailure and the end state, plus Wait, Poll
# and Route per status check (NoHuman, every PollIntervalSeconds=5 s by default). Lambda: submit
# (1 GB) for a few seconds, or for the whole render with NanoBanana (its create call answers
# when the video is done), poll 256 MB for 1 s per check, store 512 MB for about 3 s.
TRANSITION_USD = 0.025 / 1000
GB_SECOND_USD = 0.0000133334
REQUEST_USD = 0.20 / 1_000_000
POLL_SECONDS = 5


def aws_cost_estimate(record: dict) -> float:
    seconds = float(record.get("total_seconds") or 0)
    provider = record.get("provider")
    polls = 0 if provider == "nanobanana" else math.ceil(seconds / POLL_SECONDS)
    transitions = 3 + 3 * polls
    submit_gb_s = 1.0 * (seconds if provider == "nanobanana" else 3)
    gb_seconds = submit_gb_s + 0.25 * polls + (0.5 * 3 if record.get("job_status") == "succeeded" else 0.25)
    requests = 2 + polls
    return transitions * TRANSITION_USD + gb_seconds * GB_SECOND_USD + requests * REQUEST_USD


COST_COLUMNS = [
    ("day", "DAY (UTC)"),
    ("provider", "PROVIDER"),
    ("jobs", "JOBS"),
    ("succeeded", "OK"),
    ("failed", "FAILED"),
    ("provider_cost", "PROVIDER COST"),
    ("aws_cost", "AWS (EST.)"),
]


def cmd_cost(target, args, out) -> int:
    since = records.parse_since(args.since or "30d")
    found = records.query(target, statuses=("succeeded", "failed"), since=since, limit=None)
    groups: dict[tuple[str, str], dict] = defaultdict(
        lambda: {
            "jobs": 0,
            "succeeded": 0,
            "failed": 0,
            "usd": 0.0,
            "credits": 0.0,
            "aws": 0.0,
            "priced": False,
            "credited": False,
        }
    )
    for record in found:
        day = (record.get("created_at") or "?")[:10]
        group = groups[(day, record.get("provider") or "?")]
        group["jobs"] += 1
        group[record["job_status"]] += 1
        if record.get("cost_usd") is not None:
            group["usd"] += record["cost_usd"]
            group["priced"] = True
        if record.get("cost_credits") is not None:
            group["credits"] += record["cost_credits"]
            group["credited"] = True
        group["aws"] += aws_cost_estimate(record)
    rows = []
    for (day, provider), g in sorted(groups.items(), reverse=True):
        usd = round(g["usd"], 2) if g["priced"] else None
        credits = g["credits"] if g["credited"] else None
        rows.append(
            {
                "day": day,
                "provider": provider,
                "jobs": g["jobs"],
                "succeeded": g["succeeded"],
                "failed": g["failed"],
                "provider_usd": usd,
                "provider_credits": credits,
                "provider_cost": cost_text(usd, credits) or "$0.00",
                "aws_usd_estimate": round(g["aws"], 6),
                "aws_cost": f"${g['aws']:.4f}",
            }
        )
    if args.json:
        for row in rows:
            row.pop("provider_cost")
            row.pop("aws_cost")
    emit(out, rows, COST_COLUMNS, args.json, empty=f"no finished jobs since {since}")
    if rows and not args.json:
        usd = sum(r["provider_usd"] or 0 for r in rows)
        credits = sum(r["provider_credits"] or 0 for r in rows)
        aws = sum(r["aws_usd_estimate"] for r in rows)
        out.write(f"total since {since}: provider {cost_text(usd, credits or None)}, AWS about ${aws:.4f}\n")
    return 0
