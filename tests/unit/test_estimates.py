"""Render-time estimates: documented defaults, history, outliers."""

import pytest
from moto import mock_aws

from i2v import estimates
from tests.aws_resources import create_table

OPTIONS = {"mode": "fast", "duration": 5, "prompt": "ignored"}


@pytest.fixture
def table():
    with mock_aws():
        yield create_table("control", key="pk")


def test_no_history_gives_the_documented_defaults(table):
    estimate = estimates.estimate(table, "nohuman", OPTIONS)
    assert (estimate.low, estimate.p50, estimate.p90, estimate.source) == (30.0, 60.0, 120.0, "defaults")
    hq10 = estimates.estimate(table, "nohuman", {"mode": "hq", "duration": 10})
    assert hq10.p50 == 60.0 * 2 * 2


def test_the_override_replaces_the_defaults():
    estimate = estimates.default_estimate("nohuman", OPTIONS, override_seconds=2)
    assert (estimate.low, estimate.p50, estimate.p90) == (1.0, 2.0, 4.0)


def test_some_history_is_mixed_with_the_defaults(table):
    estimates.record(table, "nohuman", OPTIONS, 40)
    estimate = estimates.estimate(table, "nohuman", OPTIONS)
    assert estimate.source == "mixed" and estimate.samples == 1
    assert estimate.low <= 40 <= estimate.p90


def test_history_alone_once_there_is_enough(table):
    for seconds in (40, 50, 60, 70, 80):
        estimates.record(table, "nohuman", OPTIONS, seconds)
    estimate = estimates.estimate(table, "nohuman", OPTIONS)
    assert estimate.source == "history"
    assert (estimate.low, estimate.p50, estimate.p90) == (40.0, 60.0, 80.0)


def test_an_outlier_moves_neither_the_low_nor_the_median(table):
    for seconds in [60.0] * 19 + [900.0]:
        estimates.record(table, "nohuman", OPTIONS, seconds)
    estimate = estimates.estimate(table, "nohuman", OPTIONS)
    assert estimate.low == 60.0 and estimate.p50 == 60.0 and estimate.p90 == 60.0


def test_options_that_do_not_drive_render_time_share_one_estimate(table):
    estimates.record(table, "nohuman", {**OPTIONS, "prompt": "other"}, 45)
    assert estimates.load_samples(table, "nohuman", OPTIONS) == [45.0]
    assert estimates.load_samples(table, "nohuman", {**OPTIONS, "mode": "hq"}) == []


def test_the_ring_stays_small(table):
    for i in range(estimates.TRIM_AT + 3):
        estimates.record(table, "nanobanana", {}, 10 + i)
    samples = estimates.load_samples(table, "nanobanana", {})
    assert len(samples) < estimates.TRIM_AT
    assert samples[-1] == 10 + estimates.TRIM_AT + 2


@pytest.mark.parametrize("bad", [0, -1, float("nan"), None])
def test_nonsense_samples_are_ignored(table, bad):
    estimates.record(table, "nohuman", OPTIONS, bad)
    assert estimates.load_samples(table, "nohuman", OPTIONS) == []
