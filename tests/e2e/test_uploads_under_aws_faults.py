"""End to end under AWS-side faults: throttling on SNS Publish, DynamoDB writes, S3 reads and
Secrets Manager, answered in AWS's own wire formats, so the handlers see the botocore classes
they see on AWS and the workflow's Retry/Catch names are tested against them.

Every upload must still end in exactly one correct outcome: a video here, since the emulator
renders every one of these jobs.
"""

import pytest

from tests.e2e.helpers import jpeg, settle, start_stack, unique

pytestmark = pytest.mark.e2e

SEED = 20261201
THROTTLING = [
    "sns:Publish:Throttled:0.5",
    "dynamodb:PutItem:ProvisionedThroughputExceededException:0.3",
    # Lower on UpdateItem: if all of botocore's attempts to record the SNS message id after a
    # successful Publish fail, the retried Store publishes again (a known window in publishing.py).
    "dynamodb:UpdateItem:ProvisionedThroughputExceededException:0.1",
    "s3:GetObject:SlowDown:0.5",
    "secretsmanager:GetSecretValue:ThrottlingException:0.5",
]
UPLOADS = 4


@pytest.fixture(scope="module")
def stack():
    # Faults are set once the stack is up: provisioning is not what is under test.
    with start_stack("nanobanana", webhook=False, aws_fault_seed=SEED) as local:
        yield local


@pytest.fixture(autouse=True)
def _no_aws_faults_between_tests(stack):
    stack.set_aws_faults([])
    yield
    stack.set_aws_faults([])


def test_the_up_line_names_the_aws_faults_url(stack):
    import requests

    url = stack.outputs()["aws_faults_url"]
    assert url.startswith(stack.endpoint_url)
    answer = requests.put(url, json={"faults": ["sns:Publish:Throttled:0.1"], "seed": 3}, timeout=10).json()
    assert answer["faults"] == ["sns:Publish:Throttled:0.1"] and answer["seed"] == 3
    assert stack.aws_faults.describe()["faults"] == ["sns:Publish:Throttled:0.1"]


def test_every_upload_ends_in_exactly_one_video_under_aws_throttling(stack):
    keys = [f"{stack.input_prefix}{unique(f'throttled-{i}.jpg')}" for i in range(UPLOADS)]
    stack.set_aws_faults(THROTTLING, seed=SEED)
    for key in keys:
        stack.upload(jpeg(), key)
    notes = {key: stack.wait_for_notification(key, timeout=300) for key in keys}
    # A Store that published and then failed to record it is retried (and skips) up to a minute later.
    stack.settle(timeout=300)
    settle(stack)
    described = stack.aws_faults.describe()
    stack.set_aws_faults([])  # what the test itself reads next is not under test

    injected = described["injected"]
    # The faults really happened, on the calls the pipeline makes.
    for spec in ("sns:Publish:Throttled:0.5", "s3:GetObject:SlowDown:0.5"):
        assert injected.get(spec, 0) > 0, described
    assert sum(v for k, v in injected.items() if k.startswith("dynamodb:")) > 0, described

    for key in keys:
        found = stack.notifications_for(key)
        assert len(found) == 1, (key, found, described)
        note = notes[key]
        assert note["status"] == "succeeded", (key, note, described)
        output = note["output"]
        bucket, video_key = output["video_uri"][len("s3://") :].split("/", 1)
        head = stack.client("s3").head_object(Bucket=bucket, Key=video_key)
        assert head["ContentLength"] > 0
        assert len(stack.events_for(key)) == 1


def test_lambda_throttling_of_step_functions_tasks_is_retried_by_the_workflow(stack):
    # Step Functions reaches Lambda over moto's Lambda API: a throttled Invoke is the task error
    # Lambda.TooManyRequestsException, which the tasks' retriers name.
    key = f"{stack.input_prefix}{unique('lambda-throttled.jpg')}"
    # Seed 5 throttles the first three Invokes, then lets calls through at random.
    stack.set_aws_faults(["lambda:Invoke:TooManyRequestsException:0.5"], seed=5)
    stack.upload(jpeg(), key)
    note = stack.wait_for_notification(key, timeout=300)
    settle(stack)
    described = stack.aws_faults.describe()
    stack.set_aws_faults([])
    assert described["calls"].get("lambda:Invoke", 0) > 0, described
    assert described["injected"], described
    assert len(stack.notifications_for(key)) == 1
    assert note["status"] == "succeeded", (note, described)
