"""Each function's settings: read once at handler entry, a missing required variable named."""

import pytest

from i2v.settings import (
    AdmitSettings,
    MissingSettingError,
    NotifyFailureSettings,
    PollSettings,
    PrepareSettings,
    StoreSettings,
    SubmitSettings,
    WebhookSettings,
)

COMPLETE = {
    "PROVIDER": "NanoBanana",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
    "OUTPUT_BUCKET": "out",
    "JOBS_TABLE": "jobs",
    "CONTROL_TABLE": "control",
    "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:outcomes",
    "PROVIDER_API_KEY_SECRET": "i2v/key",
    "PRESIGN_EXPIRY_SECONDS": "9999999",
    "RESULT_ALLOWED_HOSTS": " CDN.example , files.example ",
    "DEFAULT_DURATION": "10",
    "DEFAULT_MODE": "",
    "POLL_STRATEGY": "sometimes",
}

REQUIRED = [
    (SubmitSettings, "STATE_MACHINE_ARN"),
    (PrepareSettings, "OUTPUT_BUCKET"),
    (AdmitSettings, "PROVIDER_API_KEY_SECRET"),
    (AdmitSettings, "JOBS_TABLE"),
    (AdmitSettings, "CONTROL_TABLE"),
    (PollSettings, "PROVIDER_API_KEY_SECRET"),
    (PollSettings, "JOBS_TABLE"),
    (StoreSettings, "OUTPUT_BUCKET"),
    (StoreSettings, "JOBS_TABLE"),
    (StoreSettings, "TOPIC_ARN"),
    (NotifyFailureSettings, "JOBS_TABLE"),
    (NotifyFailureSettings, "TOPIC_ARN"),
]


@pytest.mark.parametrize("model, variable", REQUIRED)
def test_a_missing_required_variable_is_named(model, variable):
    environ = {name: value for name, value in COMPLETE.items() if name != variable}
    with pytest.raises(MissingSettingError, match=variable) as raised:
        model.from_env(environ)
    assert raised.value.variable == variable


@pytest.mark.parametrize("model, variable", REQUIRED)
def test_a_blank_required_variable_counts_as_missing(model, variable):
    with pytest.raises(MissingSettingError, match=variable):
        model.from_env({**COMPLETE, variable: "  "})


def test_values_are_parsed_and_bounded():
    submit = SubmitSettings.from_env(COMPLETE)
    assert submit.provider == "nanobanana"
    assert submit.limits.poll_strategy == "predicted"  # an unknown strategy falls back
    assert PrepareSettings.from_env(COMPLETE).default_options == {"duration": "10"}
    store = StoreSettings.from_env(COMPLETE)
    assert store.presign_expiry_seconds == 604800  # SigV4's limit
    assert store.result_allowed_hosts == ("cdn.example", "files.example")
    assert store.jobs_table == "jobs" and store.publish.topic_arn.endswith(":outcomes")


def test_settings_are_frozen():
    settings = SubmitSettings.from_env(COMPLETE)
    with pytest.raises(AttributeError):
        settings.provider = "nohuman"  # type: ignore[misc]


def test_webhook_secret_is_required_only_with_a_url():
    assert WebhookSettings.from_env({}).webhook_url == ""
    with pytest.raises(MissingSettingError, match="WEBHOOK_SECRET_NAME"):
        WebhookSettings.from_env({"WEBHOOK_URL": "https://hooks.example/in"})


def test_a_handler_fails_the_invocation_naming_the_variable(monkeypatch, lambda_context):
    from functions.submit import app

    monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    with pytest.raises(MissingSettingError, match="STATE_MACHINE_ARN is not set for Submit"):
        app.lambda_handler({"Records": []}, lambda_context)


@pytest.mark.parametrize("value", ["five", "1.5", "nan", "inf"])
def test_a_number_that_is_not_one_names_its_variable(value):
    from i2v.settings import InvalidSettingError

    with pytest.raises(InvalidSettingError, match="MAX_JOBS_IN_FLIGHT"):
        AdmitSettings.from_env({**COMPLETE, "MAX_JOBS_IN_FLIGHT": value})
