"""Job identity: a job is one version of one uploaded object.

Its key is a hash of that identity, so S3's duplicate deliveries land on the same job, the same
execution name and the same job record.
"""

import hashlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

if TYPE_CHECKING:  # Powertools' event classes cost ~10 ms to import; only Submit needs them
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord


def job_key(bucket: str, key: str, version_id: str | None, etag: str | None) -> str:
    """sha256 of (bucket, decoded key, version id or ETag). JSON keeps the parts unambiguous
    (keys may contain any character)."""
    identity = json.dumps([bucket, key, version_id or (etag or "").strip('"')], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def execution_name(key: str) -> str:
    """Step Functions names are at most 80 characters without / : or spaces."""
    return "i2v-" + key[:60]


def source_from_s3_record(s3_record: "S3EventRecord") -> dict[str, Any]:
    """The uploaded object of one S3 notification record, with its job key."""
    s3_object = s3_record.s3.get_object
    bucket = s3_record.s3.bucket.name
    # The record's key is form-URL-encoded ("my photo+1.jpg" arrives as "my+photo%2B1.jpg").
    key = unquote_plus(s3_object.key)
    etag = s3_object.etag.strip('"') or None
    return {
        "job_key": job_key(bucket, key, s3_object.version_id, etag),
        "bucket": bucket,
        "key": key,
        "version_id": s3_object.version_id,
        "etag": etag,
        "size": s3_object.get("size"),
    }
