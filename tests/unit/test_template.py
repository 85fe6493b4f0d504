"""Structural rules for template.yaml and the state machine that reviewers would otherwise check by eye."""

import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = cfn_yaml.load(str(REPO / "template.yaml"))
RESOURCES = TEMPLATE["Resources"]
ASL_PATH = REPO / "statemachine" / "pipeline.asl.json"
ASL = json.loads(ASL_PATH.read_text())
TRANSIENT_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def resources_of(type_name):
    return {name: r for name, r in RESOURCES.items() if r["Type"] == type_name}


def states_of(type_name):
    return {name: s for name, s in ASL["States"].items() if s["Type"] == type_name}


# ------------------------------------------------------------------ state machine


def test_every_choice_has_a_default():
    choices = states_of("Choice")
    assert choices
    for name, state in choices.items():
        assert state.get("Default") in ASL["States"], f"Choice {name} has no valid Default"


@pytest.mark.parametrize("name", sorted(states_of("Task")))
def test_every_task_catches_everything_and_retries_transient_lambda_errors(name):
    state = ASL["States"][name]
    catch_all = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
    assert catch_all, f"Task {name} has no Catch for States.ALL"
    retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
    assert retried >= TRANSIENT_LAMBDA_ERRORS or "States.ALL" in retried
    for retry in state.get("Retry", []):
        assert retry.get("JitterStrategy") == "FULL", f"{name} retries without jitter"
        if retry["ErrorEquals"] == ["Lambda.TooManyRequestsException"]:
            # A burst past the concurrency waits (minutes in all) but never long after it passed.
            delays = [
                min(retry["IntervalSeconds"] * retry["BackoffRate"] ** n, retry["MaxDelaySeconds"])
                for n in range(retry["MaxAttempts"])
            ]
            assert sum(delays) >= 240 and retry["MaxDelaySeconds"] <= 30
        else:
            assert retry["MaxAttempts"] <= 6


def test_failures_inside_the_workflow_end_in_the_failure_notifier():
    for name, state in states_of("Task").items():
        if name == "NotifyFailure":
            continue
        targets = {c["Next"] for c in state["Catch"]}
        assert targets == {"NotifyFailure"}, f"{name} can end without a notification"


@pytest.mark.parametrize(
    "wait, task, cap", [("WaitForRender", "Poll", "$.max_polls"), ("WaitForSlot", "Admit", "$.max_admits")]
)
def test_every_loop_waits_in_a_wait_state_by_the_job_state_and_is_capped(wait, task, cap):
    state = ASL["States"][wait]
    assert state["Type"] == "Wait" and state["SecondsPath"] == "$.wait_seconds" and state["Next"] == task
    assert ASL["States"][task]["Next"] == "Route"
    route = ASL["States"]["Route"]
    cap_rules = [c for c in route["Choices"] if "And" in c]
    assert any(rule.get("NumericGreaterThanEqualsPath") == cap for choice in cap_rules for rule in choice["And"]), (
        f"the {task} loop has no cap"
    )


def test_the_happy_path_of_a_polled_job_enters_at_most_eight_states():
    """Prepare, Admit, Route, WaitForRender, Poll, Route, Store, VideoStored: the transitions
    issue 10 budgets for a NoHuman job whose render ends inside its first check window."""
    path = ["Prepare"]
    statuses = iter(["running", "completed"])
    while path[-1] != "VideoStored":
        state = ASL["States"][path[-1]]
        if state["Type"] == "Choice":
            status = next(statuses)
            path.append(next(c["Next"] for c in state["Choices"] if c.get("StringEquals") == status))
        else:
            path.append(state["Next"])
    assert path == ["Prepare", "Admit", "Route", "WaitForRender", "Poll", "Route", "Store", "VideoStored"]
    statuses = {c.get("StringEquals") for c in ASL["States"]["Route"]["Choices"]}
    assert {"completed", "failed", "timed_out", "running", "queued"} <= statuses


def test_every_state_is_reachable_and_every_next_exists():
    states = ASL["States"]
    seen, todo = set(), [ASL["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        nexts = [state.get("Next"), state.get("Default")]
        nexts += [c["Next"] for c in state.get("Choices", [])]
        nexts += [c["Next"] for c in state.get("Catch", [])]
        for target in filter(None, nexts):
            assert target in states, f"{name} points at missing state {target}"
            todo.append(target)
    assert seen == set(states), f"unreachable states: {set(states) - seen}"


def test_definition_substitutions_match_placeholders():
    machine = RESOURCES["VideoStateMachine"]["Properties"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))
    assert placeholders == set(machine["DefinitionSubstitutions"])
    assert machine["DefinitionUri"] == "statemachine/pipeline.asl.json"


# ------------------------------------------------------------------ template


def test_globals_pin_runtime_architecture_and_powertools():
    function_globals = TEMPLATE["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    env = function_globals["Environment"]["Variables"]
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= set(env)


@pytest.mark.parametrize("name", sorted(resources_of("AWS::Serverless::Function")))
def test_functions_are_thin_handlers_with_their_own_log_group(name):
    props = RESOURCES[name]["Properties"]
    handler_file = REPO / props["CodeUri"] / "app.py"
    assert handler_file.exists(), f"{handler_file} is missing"
    assert "def lambda_handler" in handler_file.read_text()
    log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[log_group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert props.get("Policies"), f"{name} has no least-privilege policies"


@pytest.mark.parametrize("name", ["InputBucket", "OutputBucket"])
def test_buckets_are_private_encrypted_and_tls_only(name):
    props = RESOURCES[name]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policies = [r for r in resources_of("AWS::S3::BucketPolicy").values() if r["Properties"]["Bucket"] == {"Ref": name}]
    (policy,) = policies
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_upload_events_filter_the_prefix_and_supported_suffixes_in_both_cases():
    events = RESOURCES["SubmitFunction"]["Properties"]["Events"]
    suffixes = set()
    for event in events.values():
        assert event["Type"] == "S3"
        assert event["Properties"]["Bucket"] == {"Ref": "InputBucket"}
        rules = {r["Name"]: r["Value"] for r in event["Properties"]["Filter"]["S3Key"]["Rules"]}
        assert rules["prefix"] == {"Ref": "InputPrefix"}
        suffixes.add(rules["suffix"])
    expected = {s for ext in ("jpg", "jpeg", "png", "webp") for s in (f".{ext}", f".{ext.upper()}")}
    assert suffixes == expected


def test_output_bucket_never_triggers_the_pipeline():
    for event in RESOURCES["SubmitFunction"]["Properties"]["Events"].values():
        assert event["Properties"]["Bucket"] != {"Ref": "OutputBucket"}
    assert "NotificationConfiguration" not in RESOURCES["OutputBucket"]["Properties"]


def test_submit_failures_go_to_an_on_failure_queue_that_is_drained():
    config = RESOURCES["SubmitFunction"]["Properties"]["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    destination = config["DestinationConfig"]["OnFailure"]
    assert destination == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["SubmitFailureQueue", "Arn"]}}
    drained_by = RESOURCES["NotifyFailureFunction"]["Properties"]["Events"]["SubmitFailures"]
    assert drained_by["Properties"]["Queue"] == {"Fn::GetAtt": ["SubmitFailureQueue", "Arn"]}


def test_presign_expiry_is_capped_at_sigv4_maximum():
    assert TEMPLATE["Parameters"]["PresignExpirySeconds"]["MaxValue"] == 604800
    assert TEMPLATE["Parameters"]["PollIntervalSeconds"]["Default"] == 5
    assert TEMPLATE["Parameters"]["MaxWaitMinutes"]["Default"] == 30


def test_no_wildcard_iam_actions():
    def actions(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("Action", "NotAction"):
                    yield from [value] if isinstance(value, str) else value
                else:
                    yield from actions(value)
        elif isinstance(node, list):
            for item in node:
                yield from actions(item)

    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::S3::BucketPolicy":
            continue  # the TLS-only Deny must cover every action
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::KMS::Key":
            # The account's own administration of the key (AWS's default key policy) is the one "kms:*".
            statements = properties["KeyPolicy"]["Statement"]
            (admin,) = [s for s in statements if s["Action"] == "kms:*"]
            assert admin["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
            properties = [s for s in statements if s is not admin]
        for action in actions(properties):
            assert "*" not in action, f"{name} grants {action}"


def test_layer_is_built_by_makefile_for_arm64():
    layer = RESOURCES["SharedLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (REPO / layer["Properties"]["ContentUri"] / "Makefile").read_text()
    assert "build-SharedLayer:" in makefile
    assert "manylinux2014_aarch64" in makefile and "--only-binary=:all:" in makefile


def test_environment_variables_are_the_documented_ones():
    documented = (REPO / "docs" / "architecture.md").read_text()
    for name, function in resources_of("AWS::Serverless::Function").items():
        for variable in function["Properties"].get("Environment", {}).get("Variables", {}):
            assert f"`{variable}`" in documented, f"{name} sets undocumented {variable}"


def test_a_webhook_cannot_be_deployed_without_its_signing_secret():
    rule = TEMPLATE["Rules"]["WebhookNeedsSigningSecret"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebhookUrl"}, ""]}]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebhookSecretName"}, ""]}]}


def test_functions_write_only_under_their_own_prefixes():
    """No broad S3 CRUD on the output bucket: prepare writes work/, store writes videos/."""
    for name in ("PrepareFunction", "StoreFunction"):
        policies = RESOURCES[name]["Properties"]["Policies"]
        assert not [p for p in policies if "S3CrudPolicy" in p], f"{name} has bucket-wide CRUD"
        writes = [
            statement
            for policy in policies
            for statement in policy.get("Statement", [])
            if "s3:PutObject" in statement["Action"]
        ]
        (write,) = writes
        resource = write["Resource"]["Fn::Sub"]
        assert resource.endswith("/work/*" if name == "PrepareFunction" else "/videos/*")


def test_nanobanana_waits_out_its_render_in_a_small_function_whose_timeout_holds_the_read_timeout():
    from i2v.providers.http import SAFETY_MARGIN_SECONDS
    from i2v.providers.nanobanana import NanoBananaProvider

    admit = RESOURCES["AdmitFunction"]["Properties"]
    assert admit["MemorySize"] <= 256
    assert admit["Timeout"] >= NanoBananaProvider.create_read_timeout + SAFETY_MARGIN_SECONDS
    # The check window ends END_MARGIN_SECONDS before the poll function's timeout; a check in
    # flight then has at most that long less the HTTP client's own margin (it reads the remaining time).
    from i2v.polling import END_MARGIN_SECONDS

    assert END_MARGIN_SECONDS > SAFETY_MARGIN_SECONDS
    assert RESOURCES["PollFunction"]["Properties"]["Timeout"] > END_MARGIN_SECONDS + 2 * 5


def test_admission_parameters_reach_the_functions_that_use_them():
    env = lambda name: RESOURCES[name]["Properties"]["Environment"]["Variables"]  # noqa: E731
    assert env("AdmitFunction")["PROVIDER_REQUESTS_PER_MINUTE"] == {"Ref": "ProviderRequestsPerMinute"}
    assert env("AdmitFunction")["MAX_JOBS_IN_FLIGHT"] == {"Ref": "MaxJobsInFlight"}
    assert env("SubmitFunction")["MAX_QUEUE_MINUTES"] == {"Ref": "MaxQueueMinutes"}
    for name in ("AdmitFunction", "PollFunction", "StoreFunction", "NotifyFailureFunction"):
        assert env(name)["CONTROL_TABLE"] == {"Ref": "ControlTable"}
