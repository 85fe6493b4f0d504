"""Daily spend caps: atomic, per provider and UTC day, nothing sent once a cap is reached."""

from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from i2v import spend
from i2v.errors import ProviderTransientError, SpendCapReachedError
from i2v.providers import RUNNING, ProviderJob
from tests.aws_resources import create_table

NOW = datetime(2026, 12, 1, 23, 59, 0, tzinfo=UTC)
TOMORROW = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
NOHUMAN_OPTIONS = {"mode": "fast", "duration": 5}


class Provider:
    def __init__(self, name="nohuman", cost=None, error=None):
        self.name = name
        self.cost = cost if cost is not None else {"amount": 0.47, "currency": "USD"}
        self.error = error
        self.creates = 0

    def create_job(self, image_url, options):
        self.creates += 1
        if self.error:
            raise self.error
        return ProviderJob(id=f"job-{self.creates}", status=RUNNING, cost=self.cost)


@pytest.fixture
def table(monkeypatch):
    with mock_aws():
        yield create_table("jobs")


def create(provider, table, caps, options=NOHUMAN_OPTIONS, now=NOW):
    return spend.create_within_caps(provider, "https://img", options, table=table, now=now, caps=caps)


def test_caps_parse_from_the_one_environment_variable():
    from i2v.settings import AdmitSettings

    def caps(value):
        environ = {"PROVIDER_API_KEY_SECRET": "k", "JOBS_TABLE": "j", "CONTROL_TABLE": "c"}
        if value is not None:
            environ["SPEND_CAPS"] = value
        return spend.Caps.parse(AdmitSettings.from_env(environ).spend_caps)

    assert caps("jobs=3;usd=2.5;credits=40") == spend.Caps(jobs=3, usd=2.5, credits=40)
    assert caps("jobs=0;usd=0;credits=0") == spend.Caps()
    assert caps(None) == spend.Caps()


def test_zero_means_no_cap(table):
    provider = Provider()
    for _ in range(5):
        create(provider, table, spend.Caps())
    assert provider.creates == 5
    assert spend.today(table, spend.counter_key("nohuman", NOW))["jobs"] == 5


def test_job_cap_stops_the_create_and_says_why(table):
    provider = Provider()
    caps = spend.Caps(jobs=2)
    create(provider, table, caps)
    create(provider, table, caps)
    with pytest.raises(SpendCapReachedError) as raised:
        create(provider, table, caps)
    assert provider.creates == 2
    assert raised.value.code == "SpendCapReached"
    assert "daily job cap of 2 for nohuman" in raised.value.message and "2026-12-01" in raised.value.message


def test_the_count_starts_again_the_next_utc_day(table):
    provider = Provider()
    caps = spend.Caps(jobs=1)
    create(provider, table, caps)
    with pytest.raises(SpendCapReachedError):
        create(provider, table, caps)
    create(provider, table, caps, now=TOMORROW)
    assert provider.creates == 2


def test_caps_are_per_provider(table):
    caps = spend.Caps(jobs=1)
    create(Provider("nohuman"), table, caps)
    banana = Provider("nanobanana", cost={"credits": 6})
    create(banana, table, caps, options={})
    assert banana.creates == 1


def test_usd_cap_uses_the_price_table_before_the_call(table):
    provider = Provider()
    caps = spend.Caps(usd=1.0)
    create(provider, table, caps)  # 0.47
    create(provider, table, caps)  # 0.94
    with pytest.raises(SpendCapReachedError) as raised:
        create(provider, table, caps)  # would be 1.41
    assert provider.creates == 2
    assert "$0.94 spent" in raised.value.message and "this job costs $0.47" in raised.value.message
    with pytest.raises(SpendCapReachedError, match="more than the daily spend cap"):
        create(provider, table, spend.Caps(usd=1.0), options={"mode": "hq", "duration": 10})


def test_credits_cap_counts_what_nanobanana_reports(table):
    provider = Provider("nanobanana", cost={"credits": 6})
    caps = spend.Caps(credits=10)
    create(provider, table, caps, options={})
    create(provider, table, caps, options={})  # 6 < 10: allowed, now 12
    with pytest.raises(SpendCapReachedError, match="10 credits for nanobanana is reached: 12 credits"):
        create(provider, table, caps, options={})
    assert provider.creates == 2


def test_a_create_that_started_nothing_gives_its_reservation_back(table):
    caps = spend.Caps(jobs=1)
    with pytest.raises(ProviderTransientError):
        create(Provider(error=ProviderTransientError("503")), table, caps)
    provider = Provider()
    create(provider, table, caps)
    assert provider.creates == 1


def test_the_check_and_the_count_are_one_conditional_update(table, monkeypatch):
    """Atomic on DynamoDB: the cap is the condition of the very update that counts the job, so
    concurrent submits cannot both pass (moto does not serialise updates, so this is checked on
    the request, not by racing threads against moto)."""
    from i2v.aws import client

    ddb = client("dynamodb")
    calls = []
    original = ddb.update_item

    def recording(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(ddb, "update_item", recording)
    monkeypatch.setattr(ddb, "get_item", lambda **_: pytest.fail("no read before the admission"))
    create(Provider(), table, spend.Caps(jobs=5, usd=10))
    (update,) = calls
    assert update["UpdateExpression"].startswith("ADD jobs :one, usd_cents :cents")
    assert update["ConditionExpression"] == (
        "(attribute_not_exists(jobs) OR jobs < :job_cap) AND (attribute_not_exists(usd_cents) OR usd_cents <= :room)"
    )
    assert update["ExpressionAttributeValues"][":room"] == {"N": str(1000 - 47)}


def test_counters_stay_out_of_the_job_listing(table):
    create(Provider(), table, spend.Caps())
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={"job_key": {"S": spend.counter_key("nohuman", NOW)}}
    )["Item"]
    assert "job_status" not in item and "expires_at" in item
