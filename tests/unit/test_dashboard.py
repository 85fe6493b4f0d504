"""The CloudWatch dashboard shows what the issue asks for, from metrics the code really emits."""

import json
import re

from tests.unit.test_template import REPO, RESOURCES, TEMPLATE


def body():
    text, variables = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in re.findall(r"\$\{([^}]+)\}", text):
        text = text.replace("${" + name + "}", "x" if name in variables or "::" in name else f"{name}-name")
    return json.loads(text), text


def emitted_metric_names():
    names = set()
    for path in list((REPO / "functions").rglob("*.py")) + list((REPO / "layers" / "i2v" / "i2v").rglob("*.py")):
        names |= set(re.findall(r'add_metric\(\s*name="([A-Za-z]+)"', path.read_text()))
    return names


def test_the_dashboard_has_the_widgets_operators_need():
    dashboard, _ = body()
    titles = [w["properties"]["title"] for w in dashboard["widgets"]]
    assert titles == [
        "Jobs per hour",
        "Time to video (seconds)",
        "Provider cost per day (UTC)",
        "Dead-letter queue depths",
        "Throttles",
    ]
    time_to_video = dashboard["widgets"][1]["properties"]["metrics"]
    assert {m[-1]["stat"] for m in time_to_video} == {"p50", "p90"}
    assert dashboard["widgets"][0]["properties"]["period"] == 3600
    assert dashboard["widgets"][2]["properties"]["period"] == 86400


def test_every_custom_metric_on_the_dashboard_is_emitted():
    dashboard, _ = body()
    shown = {m[1] for w in dashboard["widgets"] for m in w["properties"]["metrics"] if m[0] == "ImageToVideo"}
    missing = shown - emitted_metric_names()
    assert not missing, f"the dashboard shows metrics nothing emits: {missing}"
    # Powertools adds the service dimension; the dashboard must name the same one.
    service = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    assert all(
        m[2:4] == ["service", service]
        for w in dashboard["widgets"]
        for m in w["properties"]["metrics"]
        if m[0] == "ImageToVideo"
    )


def test_the_webhook_dead_letter_queue_is_optional_on_the_dashboard():
    _, variables = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert variables["WebhookDlq"]["Fn::If"][0] == "HasWebhook"
