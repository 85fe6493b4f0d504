"""`--stack NAME`: the CloudFormation outputs lookup (moto's CloudFormation); `--local`: the file."""

import json
import os

import boto3
import pytest
from moto import mock_aws

from i2v_local.ops import target

TEMPLATE = {
    "Resources": {"Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "jobs-q"}}},
    "Outputs": {
        "InputBucketName": {"Value": "i2v-input-1234"},
        "JobsTableName": {"Value": "jobs-table"},
        "QueueUrl": {"Value": {"Ref": "Jobs"}},
    },
}


@pytest.fixture
def cloudformation(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("cloudformation")
        client.create_stack(StackName="videos", TemplateBody=json.dumps(TEMPLATE))
        yield client


def test_outputs_of_a_deployed_stack(cloudformation):
    outputs = target.outputs_of_stack(cloudformation, "videos")
    assert outputs["InputBucketName"] == "i2v-input-1234"
    assert outputs["JobsTableName"] == "jobs-table"
    assert outputs["QueueUrl"].endswith("/jobs-q")


def test_from_stack_uses_the_users_region(cloudformation):
    found = target.from_stack("videos")
    assert found.region == "eu-west-1" and found.outputs["JobsTableName"] == "jobs-table"
    assert found.output("JobsTableName") == "jobs-table"
    with pytest.raises(target.TargetError, match="has no output SubmitFunctionName"):
        found.output("SubmitFunctionName")


def test_a_missing_stack_is_a_target_error(cloudformation):
    with pytest.raises(target.TargetError, match="stack nope"):
        target.from_stack("nope")


def test_stubbed_describe_stacks_in_another_region():
    class Stub:
        def describe_stacks(self, StackName):
            return {"Stacks": [{"StackStatus": "UPDATE_COMPLETE", "Outputs": [{"OutputKey": "A", "OutputValue": "b"}]}]}

    assert target.outputs_of_stack(Stub(), "x") == {"A": "b"}


def test_local_file_is_written_read_and_removed_by_its_owner(tmp_path):
    path = target.write_local_file({"endpoint_url": "http://127.0.0.1:1", "outputs": {"JobsTableName": "t"}}, tmp_path)
    assert path == tmp_path / ".i2v" / "local.json"
    found = target.from_local(path)
    assert found.endpoint_url == "http://127.0.0.1:1" and found.output("JobsTableName") == "t"
    target.remove_local_file(path)
    assert not path.exists()
    with pytest.raises(target.TargetError, match="i2v local up"):
        target.from_local(path)


def test_a_stale_local_file_is_refused(tmp_path):
    path = tmp_path / "local.json"
    path.write_text(json.dumps({"endpoint_url": "http://127.0.0.1:1", "pid": 2**22 + 12345}))
    with pytest.raises(target.TargetError, match="no longer running"):
        target.from_local(path)
    assert os.path.exists(path)
