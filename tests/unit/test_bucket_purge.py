"""`i2v bucket purge`: what deleting a retained, versioned bucket needs (README, "Deleting the stack")."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from i2v_local import buckets, cli

BUCKET = "i2v-input-0b6d2f3e-5c1a-4e7b-9a8d-2f1e3c4b5a69"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def fill(s3):
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key="uploads/photo.jpg", Body=f"v{i}".encode())  # three versions
    s3.put_object(Bucket=BUCKET, Key="uploads/other.jpg", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="uploads/other.jpg")  # a version and a delete marker
    s3.create_multipart_upload(Bucket=BUCKET, Key="videos/unfinished.mp4")


def test_a_versioned_bucket_with_objects_cannot_simply_be_deleted(s3):
    fill(s3)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):  # what `aws s3 rm --recursive` does
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket=BUCKET)
    assert caught.value.response["Error"]["Code"] == "BucketNotEmpty"


def test_purge_deletes_every_version_marker_and_upload_then_the_bucket(s3):
    fill(s3)
    result = buckets.purge_bucket(s3, BUCKET, delete_bucket=True)
    assert result.versions_deleted == 5 and result.uploads_aborted == 1 and result.bucket_deleted
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_purge_works_in_batches(s3, monkeypatch):
    monkeypatch.setattr(buckets, "DELETE_BATCH", 2)
    fill(s3)
    assert buckets.purge_bucket(s3, BUCKET).versions_deleted == 5
    assert "Versions" not in s3.list_object_versions(Bucket=BUCKET)


def test_the_cli_command(s3, capsys):
    fill(s3)
    assert cli.main(["bucket", "purge", BUCKET, "--delete-bucket"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line == {"bucket": BUCKET, "versions_deleted": 5, "uploads_aborted": 1, "bucket_deleted": True}
