"""A burst under the emulator's faults, paced by admission (issue 9).

NoHuman, 8 uploads at once, ProviderRequestsPerMinute 6 and MaxJobsInFlight 3, with 429s on
create, 500s on a third of the status checks and of the result downloads, and one render the
provider fails. Every upload ends in exactly one outcome; the only failure is the render the
provider failed; no job is created twice; the in-flight cap holds; the creates respect the
rate. Timing is a benchmark (benchmarks/burst.py), not asserted here.
"""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tests.e2e.helpers import jpeg, settle, start_stack, unique

UPLOADS = 8
RATE = 6
CAP = 3


@pytest.fixture(scope="module")
def stack():
    params = {"ProviderRequestsPerMinute": str(RATE), "MaxJobsInFlight": str(CAP)}
    with start_stack("nohuman", render_seconds=3.0, params=params) as local:
        yield local


def _in_flight(stack, stop, most):
    table = stack.resource("ControlTable").physical_name
    dynamodb = stack.client("dynamodb")
    while not stop.wait(0.2):
        leases = dynamodb.scan(
            TableName=table,
            ConsistentRead=True,
            FilterExpression="begins_with(pk, :p) AND attribute_exists(holder)",
            ExpressionAttributeValues={":p": {"S": "admission#nohuman#lease#"}},
        )["Items"]
        now = time.time()
        most.append(sum(1 for lease in leases if float(lease["expires_at"]["N"]) > now))


def test_a_burst_under_faults_ends_in_exactly_one_outcome_each(stack):
    stack.set_faults(
        {
            "seed": 3,
            "errors": {
                "nohuman.create": {"status": 429, "count": 2, "retry_after": 2},
                "nohuman.status": {"status": 500, "rate": 0.33},
                "files": {"status": 500, "rate": 0.33},
            },
            "fail_next": 1,
            "failure_message": "the model could not animate this image",
        }
    )
    body = jpeg(1024, 1024)
    keys = [f"{stack.input_prefix}{unique(f'folder-{i}.jpg')}" for i in range(UPLOADS)]
    stop, most = threading.Event(), []
    sampler = threading.Thread(target=_in_flight, args=(stack, stop, most), daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            list(pool.map(lambda key: stack.upload(body, key), keys))
        for key in keys:
            stack.wait_for_notification(key, timeout=600)
    finally:
        stop.set()
        sampler.join()
    settle(stack)

    outcomes = {}
    for key in keys:
        found = stack.notifications_for(key)
        assert len(found) == 1, (key, found)
        outcomes[key] = found[0]
    failed = [n for n in outcomes.values() if n["status"] == "failed"]
    assert [n["error"]["code"] for n in failed] == ["ProviderJobFailed"], failed
    assert "could not animate" in failed[0]["error"]["message"]

    accepted = [j for j in stack.emulator_jobs() if j.get("http_status") == 200]
    per_upload = Counter(j["options"]["image_url"].split("?")[0] for j in accepted)
    assert len(per_upload) == UPLOADS and set(per_upload.values()) == {1}  # no job created twice
    assert max(most) <= CAP

    # Every request to create counts at the provider, refused or not: no rolling minute held more than RATE.
    sent = sorted(
        datetime.fromisoformat(j["created_at"].replace("Z", "+00:00")).timestamp() for j in stack.emulator_jobs()
    )
    for first, later in zip(sent, sent[RATE:], strict=False):
        assert later - first >= 59.0, sent
