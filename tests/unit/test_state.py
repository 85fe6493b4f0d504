"""The job state model: parsed at every handler boundary, documented from one place."""

import json
import re
from pathlib import Path

import pytest

from i2v import state
from tests.fixtures import load_event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_documented_table_is_the_generated_one():
    text = DOCS.read_text()
    table = re.search(r"<!-- state-table:start -->\n(.*?)\n<!-- state-table:end -->", text, re.S).group(1)
    assert table.strip() == state.markdown_table().strip(), (
        "run `python -m i2v.state` and paste it into docs/architecture.md"
    )


def test_an_older_state_gains_every_field_with_its_default():
    older = load_event("poll_running.json")
    parsed = state.parse(older)
    assert set(parsed) == set(state.FIELD_NAMES)
    assert parsed["checks"] == 0 and parsed["render_estimate"] is None and parsed["poll_strategy"] == "predicted"
    json.dumps(parsed)


@pytest.mark.parametrize(
    "field, value",
    [("poll_count", "3"), ("status", "sleeping"), ("options", []), ("warnings", "one"), ("wait_seconds", True)],
)
def test_a_wrong_type_is_refused(field, value):
    with pytest.raises(state.InvalidJobStateError):
        state.parse({**load_event("poll_running.json"), field: value})


def test_not_a_job_state():
    with pytest.raises(state.InvalidJobStateError):
        state.parse({"Records": []})


def test_a_catch_result_survives_the_parse():
    caught = {"Error": "ResultFetchError", "Cause": "{}"}
    assert state.parse({**load_event("poll_running.json"), "caught": caught})["caught"] == caught


def test_new_knows_only_model_fields():
    with pytest.raises(state.InvalidJobStateError):
        state.new(job_key="k", nonsense=1)


def test_every_sample_event_for_a_task_parses():
    for name in (
        "poll_running.json",
        "store_completed.json",
        "notify_failure_caught.json",
        "notify_failure_timed_out.json",
    ):
        state.parse(load_event(name))
