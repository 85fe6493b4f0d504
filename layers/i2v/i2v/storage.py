"""S3 helpers: presigned links, object names under the work/output prefixes, manifests, streaming uploads."""

import json
import os
import re
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import boto3
from botocore.config import Config

from i2v import state as job_state
from i2v.aws import client
from i2v.settings import OutputLayout, WorkLayout

# S3 multipart parts must be at least 5 MiB (except the last); 8 MiB keeps memory small and calls few.
PART_SIZE = 8 * 1024 * 1024

_UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]+")


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def presign_get(bucket: str, key: str, expires_in: int) -> str:
    """A SigV4 presigned GET link (SigV4 caps it at 7 days; it also dies with the signer's credentials)."""
    return _sigv4_s3().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=min(int(expires_in), 604800)
    )


def _sigv4_s3() -> Any:
    """The client that signs links.

    On AWS (no endpoint configured) links use the regional virtual-hosted form,
    ``https://<bucket>.s3.<region>.amazonaws.com/<key>``: AWS's recommended style, and the
    only one for buckets in some regions. Only when an endpoint is configured (the local
    stack, an S3-compatible store) is the link path-style on that endpoint. Always SigV4:
    botocore would otherwise presign with SigV2 in us-east-1, which newer regions refuse.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return _sigv4_s3_for(endpoint, client("s3").meta.region_name)


@lru_cache(maxsize=4)
def _sigv4_s3_for(endpoint_url: str | None, region: str) -> Any:
    # Cached per endpoint: tests and the local stack switch endpoints between runs.
    style = "path" if endpoint_url else "virtual"
    s3_config: Any = {"addressing_style": style, "us_east_1_regional_endpoint": "regional"}
    config = client("s3").meta.config.merge(Config(signature_version="s3v4", s3=s3_config))
    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def readable_name(source_key: str) -> str:
    """A file-name-safe stem of the uploaded key: 'uploads/My photo+1.JPG' -> 'My-photo-1'."""
    stem = PurePosixPath(source_key).stem
    name = _UNSAFE_NAME_CHARS.sub("-", stem).strip("-.")[:80]
    return name or "image"


def work_key(settings: WorkLayout, job_key: str, extension: str) -> str:
    """Where the normalised input image lives (the presigned link the provider fetches points here)."""
    return f"{settings.work_prefix}{job_key}/input.{extension}"


def output_keys(settings: OutputLayout, job_key: str, source_key: str) -> dict:
    """Video, thumbnail and manifest keys: readable, and unique per upload thanks to the job key."""
    base = f"{settings.output_prefix}{readable_name(source_key)}-{job_key[:12]}"
    return {"video": f"{base}.mp4", "thumbnail": f"{base}.jpg", "manifest": f"{base}.json"}


def put_bytes(bucket: str, key: str, body: bytes, content_type: str) -> str:
    client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return s3_uri(bucket, key)


def thumbnail_from_input(image: dict, bucket: str, key: str) -> str:
    """Write a poster of the job's normalised input at bucket/key; returns its s3:// URI."""
    # Imported here: Pillow is only needed for posters, so functions that never make one start faster.
    from i2v import images

    body = client("s3").get_object(Bucket=image["bucket"], Key=image["key"])["Body"].read()
    return put_bytes(bucket, key, images.make_thumbnail(body), "image/jpeg")


def write_manifest(bucket: str, key: str, manifest: dict) -> str:
    body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    return put_bytes(bucket, key, body, "application/json")


def build_manifest(job: dict, *, output: dict, finished_at: str, warnings: list) -> dict:
    """The record written beside the video: what went in, what came out, what it cost, how long it took."""
    return {
        "schema_version": "1",
        "job_key": job.get("job_key"),
        "source": job_state.describe_source(job, with_size=True),
        "provider": job.get("provider"),
        "provider_job_id": job.get("provider_job_id"),
        "options": job.get("options") or {},
        "image": job.get("image"),
        "output": output,
        "cost": job.get("cost"),
        "rate_limit": job.get("rate_limit"),
        "timings": {
            "submitted_at": job.get("submitted_at"),
            "finished_at": finished_at,
            # The same description as the notification's "durations".
            **job_state.describe_durations(job, datetime.fromisoformat(finished_at.replace("Z", "+00:00"))),
            "poll_count": job.get("poll_count"),
            "checks": job.get("checks"),
        },
        "warnings": list(warnings),
    }


def upload_chunks(chunks: Iterable[bytes], bucket: str, key: str, content_type: str) -> int:
    """Stream chunks into one S3 object with at most one part in memory; returns the byte count.

    Anything raised while reading the chunks (a size cap, a broken connection) aborts the
    multipart upload, so no half-written object or orphaned parts are left behind.
    """
    s3 = client("s3")
    buffer = bytearray()
    total = 0
    upload_id = None
    parts: list[dict] = []
    try:
        for chunk in chunks:
            buffer += chunk
            total += len(chunk)
            while len(buffer) >= PART_SIZE:
                if upload_id is None:
                    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]
                part = bytes(memoryview(buffer)[:PART_SIZE])  # one copy, not two
                del buffer[:PART_SIZE]
                parts.append(_upload_part(s3, bucket, key, upload_id, len(parts) + 1, part))
        if upload_id is None:
            # Small enough for a single request.
            s3.put_object(Bucket=bucket, Key=key, Body=bytes(buffer), ContentType=content_type)
            return total
        if buffer:
            parts.append(_upload_part(s3, bucket, key, upload_id, len(parts) + 1, bytes(buffer)))
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        return total
    except BaseException:
        if upload_id is not None:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _upload_part(s3: Any, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> dict:
    response = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
    return {"PartNumber": number, "ETag": response["ETag"]}
