"""`i2v bucket purge`: empty a bucket the stack kept (every object version, delete marker and
unfinished upload), and optionally delete it.

The stack's buckets are retained when the stack is deleted (they hold users' images and
videos); S3 refuses to delete a bucket that still holds anything, and `aws s3 rm --recursive`
leaves the old versions of a versioned bucket behind.
"""

from __future__ import annotations

from dataclasses import dataclass

DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per call


@dataclass
class PurgeResult:
    versions_deleted: int = 0
    uploads_aborted: int = 0
    bucket_deleted: bool = False


def purge_bucket(s3, bucket: str, *, delete_bucket: bool = False) -> PurgeResult:
    result = PurgeResult()
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            result.uploads_aborted += 1
    batch: list[dict] = []

    def flush() -> None:
        if not batch:
            return
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": list(batch), "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"could not delete {len(errors)} object(s) from {bucket}, e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        result.versions_deleted += len(batch)
        batch.clear()

    # Unversioned objects are listed as versions with VersionId "null", so this covers every bucket.
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            batch.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
            if len(batch) == DELETE_BATCH:
                flush()
    flush()
    if delete_bucket:
        s3.delete_bucket(Bucket=bucket)
        result.bucket_deleted = True
    return result
