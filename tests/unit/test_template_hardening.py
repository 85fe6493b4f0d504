"""What a real AWS account enforces and moto does not: names, sizes, error names, policies, alarms.

Each test states one AWS rule the template must satisfy whatever parameter values are allowed.
"""

import json
import logging
import re
import uuid

import botocore.exceptions
import botocore.session
import pytest
from aws_lambda_powertools.shared import constants as powertools_constants
from aws_lambda_powertools.utilities.parameters import exceptions as parameter_exceptions

from tests.unit.test_template import ASL, ASL_PATH, REPO, RESOURCES, TEMPLATE, resources_of, states_of

PARAMETERS = TEMPLATE["Parameters"]
FUNCTIONS = resources_of("AWS::Serverless::Function")
GLOBAL_FUNCTION = TEMPLATE["Globals"]["Function"]


def merged_environment(name):
    """SAM merges Globals' variables into each function's (the function wins)."""
    env = dict(GLOBAL_FUNCTION.get("Environment", {}).get("Variables", {}))
    env.update(FUNCTIONS[name]["Properties"].get("Environment", {}).get("Variables", {}))
    return env


def merged_logging_config(name):
    config = dict(GLOBAL_FUNCTION.get("LoggingConfig", {}))
    config.update(FUNCTIONS[name]["Properties"].get("LoggingConfig", {}))
    return config


# ------------------------------------------------------------------ A2: bucket names


@pytest.mark.parametrize("stack_name", ["i2v", "My-Very-Long-Production-Stack-Name-For-Image-To-Video-" + "X" * 73])
def test_bucket_names_fit_s3_rules_whatever_the_stack_is_called(monkeypatch, stack_name):
    """3-63 characters, lower case, letters/digits/dots/hyphens: CloudFormation rolls back otherwise."""
    from i2v_local import template as tpl

    assert len(stack_name) <= 128
    stack_id = f"arn:aws:cloudformation:ap-southeast-5:123456789012:stack/{stack_name}/{uuid.uuid4()}"
    monkeypatch.setitem(tpl.PSEUDO_PARAMETERS, "AWS::StackName", stack_name)
    monkeypatch.setitem(tpl.PSEUDO_PARAMETERS, "AWS::StackId", stack_id)
    monkeypatch.setitem(tpl.PSEUDO_PARAMETERS, "AWS::Region", "ap-southeast-5")
    resolved = tpl.load(REPO / "template.yaml")
    buckets = resolved.of_type("AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets:
        name = bucket.physical_name
        assert 3 <= len(name) <= 63, name
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name), name
    # The prepare function's policy names the input bucket exactly as the bucket does.
    input_bucket = resolved.resources["InputBucket"].physical_name
    policies = resolved.resources["PrepareFunction"].properties["Policies"]
    assert {"S3ReadPolicy": {"BucketName": input_bucket}} in policies


def test_bucket_names_are_new_for_every_stack(monkeypatch):
    """A bucket retained from a deleted stack must not block a new stack of the same name."""
    from i2v_local import template as tpl

    names = []
    for _ in range(2):
        monkeypatch.setitem(
            tpl.PSEUDO_PARAMETERS,
            "AWS::StackId",
            f"arn:aws:cloudformation:us-east-1:123456789012:stack/i2v/{uuid.uuid4()}",
        )
        names.append({b.physical_name for b in tpl.load(REPO / "template.yaml").of_type("AWS::S3::Bucket")})
    assert not names[0] & names[1]


# ------------------------------------------------------------------ A3: the 4 KB environment

LAMBDA_ENVIRONMENT_LIMIT = 4096
# Lambda measures the variables as the JSON object {"KEY":"value",...}. A parameter's MaxLength
# counts UTF-16 code units: one unit is at most 3 bytes of UTF-8 (a 4-byte character is two
# units), and JSON escapes '"' and '\' in 2 bytes. Control characters (6 bytes as \u00XX) are
# refused by the free-text parameters' AllowedPattern (checked below).
BYTES_PER_FREE_TEXT_UNIT = 3
# Worst-case lengths of what CloudFormation generates (names are capped by each service).
WORST_REF = {
    "AWS::DynamoDB::Table": 255,
    "AWS::S3::Bucket": 63,
    # arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine: + 80-character name
    "AWS::Serverless::StateMachine": 62 + 80,
    # arn:aws-us-gov:sns:us-gov-west-1:123456789012: + 256-character name
    "AWS::SNS::Topic": 47 + 256,
}
WORST_ATTRIBUTE = {("AWS::S3::Bucket", "Arn"): 13 + 63}
ASCII_PROBES = ["a", "0", "0.5", "12", "uploads/", "https://a.example", "image-to-video/key"]


def _ascii_only(pattern):
    """True when the pattern refuses a non-ASCII character wherever it is put in a valid value."""
    for probe in [*ASCII_PROBES, ""]:
        if re.fullmatch(pattern, probe) is None:
            continue
        for i in range(len(probe) + 1):
            if re.fullmatch(pattern, probe[:i] + "\u00e9" + probe[i:]):
                return False
    return True


def worst_parameter_bytes(name):
    spec = PARAMETERS[name]
    if "AllowedValues" in spec:
        return max(len(str(v).encode()) for v in spec["AllowedValues"])
    if spec.get("Type") == "Number":
        return max(len(str(spec[k])) for k in ("MinValue", "MaxValue"))
    assert "MaxLength" in spec, f"parameter {name} reaches a function environment without a MaxLength"
    pattern = spec.get("AllowedPattern")
    if pattern and _ascii_only(pattern):
        return int(spec["MaxLength"])
    assert pattern and re.fullmatch(pattern, "a\x01b") is None, f"{name} must refuse control characters"
    return int(spec["MaxLength"]) * BYTES_PER_FREE_TEXT_UNIT


def worst_bytes(value):
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode()) - 2
    if isinstance(value, (int, float)):
        return len(str(value))
    ((key, arg),) = value.items()
    if key == "Ref":
        if arg in PARAMETERS:
            return worst_parameter_bytes(arg)
        return WORST_REF[RESOURCES[arg]["Type"]]
    if key == "Fn::GetAtt":
        return WORST_ATTRIBUTE[(RESOURCES[arg[0]]["Type"], arg[1])]
    if key == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        total = len(re.sub(r"\$\{[^}]+\}", "", text).encode())
        for ref in re.findall(r"\$\{([^}]+)\}", text):
            if ref in variables:
                total += worst_bytes(variables[ref])
            elif "." in ref:
                total += worst_bytes({"Fn::GetAtt": ref.split(".", 1)})
            else:
                total += worst_bytes({"Ref": ref})
        return total
    raise AssertionError(f"no worst case for {key}")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_environment_fits_in_4_kb_for_every_allowed_parameter_value(name):
    env = merged_environment(name)
    size = 2 + sum(len(key) + worst_bytes(value) + 6 for key, value in env.items()) - 1
    assert size <= LAMBDA_ENVIRONMENT_LIMIT, f"{name}'s environment can reach {size} bytes"


def test_worst_case_counts_free_text_as_multibyte():
    """The measure itself: a 500-character prompt may be 1,500 bytes (CJK text, for one)."""
    assert worst_parameter_bytes("DefaultPrompt") == 3 * PARAMETERS["DefaultPrompt"]["MaxLength"]
    assert worst_parameter_bytes("ProviderApiKeySecretName") == PARAMETERS["ProviderApiKeySecretName"]["MaxLength"]


# ------------------------------------------------------------------ A4: retry names that match

# botocore's error shapes are exception classes named after the shape: that class name is the
# Step Functions Error. A name is transient when the service marks it retryable or as a server
# fault / throttle (5xx, 429), or it names throttling, an internal error or a conflict to retry.
TRANSIENT_NAME = re.compile(
    r"Throttl|Internal|ServiceUnavailable|RequestLimitExceeded|ProvisionedThroughputExceeded"
    r"|TransactionConflict|SlowDown|RequestTimeout"
)
# Unmodeled error codes (S3's SlowDown, InternalError, 503) arrive as ClientError; no response at all:
CONNECTION_ERRORS = ["EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"]
# What each SAM policy template / inline action prefix in a function's Policies lets it call.
POLICY_SERVICES = {
    "S3ReadPolicy": "s3",
    "S3WritePolicy": "s3",
    "DynamoDBCrudPolicy": "dynamodb",
    "DynamoDBReadPolicy": "dynamodb",
    "DynamoDBWritePolicy": "dynamodb",
    "SNSPublishMessagePolicy": "sns",
    "EventBridgePutEventsPolicy": "events",
    "StepFunctionsExecutionPolicy": "stepfunctions",
    "SQSPollerPolicy": "sqs",
    "AWSSecretsManagerGetSecretValuePolicy": "secretsmanager",
}
# Read through Powertools' parameters utility, which raises GetParameterError for every failure.
SERVICES_READ_THROUGH_POWERTOOLS = {"secretsmanager"}


def transient_error_names(service):
    model = botocore.session.get_session().get_service_model(service)
    names = set()
    for shape_name in model.shape_names:
        metadata = model.shape_for(shape_name).metadata
        if not metadata.get("exception"):
            continue
        status = (metadata.get("error") or {}).get("httpStatusCode") or 0
        if (
            metadata.get("retryable")
            or metadata.get("fault")
            or status >= 500
            or status == 429
            or TRANSIENT_NAME.search(shape_name)
        ):
            names.add(shape_name)
    return names


def services_of(function_name):
    services = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in POLICY_SERVICES:
                    services.add(POLICY_SERVICES[key])
                elif key.endswith("Policy"):
                    raise AssertionError(f"{function_name}: add SAM policy template {key} to POLICY_SERVICES")
                elif key == "Action":
                    for action in [value] if isinstance(value, str) else value:
                        services.add(action.split(":", 1)[0])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(FUNCTIONS[function_name]["Properties"]["Policies"])
    services.discard("kms")  # used by SNS / Secrets Manager on our behalf: their own KMS* errors are modeled there
    return services


def task_function(state):
    placeholder = re.fullmatch(r"\$\{(\w+)\}", state["Parameters"]["FunctionName"]).group(1)
    substitution = RESOURCES["VideoStateMachine"]["Properties"]["DefinitionSubstitutions"][placeholder]
    return substitution["Fn::GetAtt"][0]


def retried(state):
    return {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}


@pytest.mark.parametrize("name", sorted(states_of("Task")))
def test_every_task_retries_every_transient_aws_error_its_function_can_raise(name):
    state = ASL["States"][name]
    names = retried(state)
    if "States.ALL" in names:
        return
    services = services_of(task_function(state))
    assert services, f"{name}: no AWS services found in its function's policies"
    expected = set(CONNECTION_ERRORS) | {"ClientError"}
    for service in services:
        if service in SERVICES_READ_THROUGH_POWERTOOLS:
            expected.add("GetParameterError")
        else:
            expected |= transient_error_names(service)
    missing = expected - names
    assert not missing, f"{name} does not retry {sorted(missing)}"


def test_the_curated_error_names_are_real_exception_classes():
    for name in [*CONNECTION_ERRORS, "ClientError"]:
        assert issubclass(getattr(botocore.exceptions, name), Exception)
    assert parameter_exceptions.GetParameterError.__name__ == "GetParameterError"
    # The derivation finds what the SNS throttling bug was about.
    assert {"ThrottledException", "InternalErrorException", "KMSThrottlingException"} <= transient_error_names("sns")
    assert {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    } <= transient_error_names("dynamodb")


def test_poll_retries_secret_reads_and_its_own_timeouts():
    names = retried(ASL["States"]["Poll"])
    assert {"GetParameterError", "Sandbox.Timedout", "ProviderTransientError"} <= names


def test_a_handled_job_failure_is_not_a_failed_execution():
    """Only an outcome that could not be published fails the execution (and pages the operator)."""
    fails = states_of("Fail")
    assert list(fails) == ["NotificationUndeliverable"]
    notify = ASL["States"]["NotifyFailure"]
    assert ASL["States"][notify["Next"]]["Type"] == "Succeed"
    assert {c["Next"] for c in notify["Catch"]} == {"NotificationUndeliverable"}


# ------------------------------------------------------------------ A5: log level


LAMBDA_APPLICATION_LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_log_level_reaches_lambdas_application_log_level(name):
    config = merged_logging_config(name)
    assert config["LogFormat"] == "JSON"
    assert config["ApplicationLogLevel"] == {"Fn::FindInMap": ["ApplicationLogLevels", {"Ref": "LogLevel"}, "Level"]}


@pytest.mark.parametrize("level", PARAMETERS["LogLevel"]["AllowedValues"])
def test_every_log_level_maps_to_a_lambda_level_powertools_reads_back(level):
    lambda_level = TEMPLATE["Mappings"]["ApplicationLogLevels"][level]["Level"]
    assert lambda_level in LAMBDA_APPLICATION_LOG_LEVELS
    # Powertools gives AWS_LAMBDA_LOG_LEVEL precedence over LOG_LEVEL: it must mean the same level.
    assert powertools_constants.LAMBDA_ADVANCED_LOGGING_LEVELS[lambda_level] == logging.getLevelName(
        getattr(logging, level)
    )


# ------------------------------------------------------------------ A8: email filter


def test_email_subscription_always_has_a_filter_policy_with_its_scope():
    props = RESOURCES["EmailSubscription"]["Properties"]
    assert props["FilterPolicyScope"] == "MessageAttributes"
    condition, on_all, otherwise = props["FilterPolicy"]["Fn::If"]
    assert condition == "EmailOnAllOutcomes"
    assert sorted(on_all["status"]) == ["failed", "succeeded"]
    assert otherwise["status"] == [{"Fn::If": ["EmailOnFailuresOnly", "failed", "succeeded"]}]


# ------------------------------------------------------------------ A9: deleting the stack


@pytest.mark.parametrize("name", ["InputBucket", "OutputBucket"])
def test_buckets_outlive_the_stack_and_old_versions_expire(name):
    bucket = RESOURCES[name]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert "AWS::StackId" in json.dumps(bucket["Properties"]["BucketName"])
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any("AbortIncompleteMultipartUpload" in r for r in rules)
    if "VersioningConfiguration" in bucket["Properties"]:
        assert any("NoncurrentVersionExpiration" in r for r in rules)


# ------------------------------------------------------------------ A10: partition


def test_the_workflow_names_no_partition():
    text = ASL_PATH.read_text()
    assert "arn:aws:" not in text
    for state in states_of("Task").values():
        assert state["Resource"] == "${LambdaInvoke}"
    substitutions = RESOURCES["VideoStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["LambdaInvoke"] == {"Fn::Sub": "arn:${AWS::Partition}:states:::lambda:invoke"}


# ------------------------------------------------------------------ A12: alarms


def alarms():
    return resources_of("AWS::CloudWatch::Alarm")


def test_every_alarm_goes_to_the_operator_topic():
    assert alarms()
    for name, alarm in alarms().items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "OperatorTopic"}], name
        assert props["Threshold"] == 0 and props["ComparisonOperator"] == "GreaterThanThreshold", name
        assert props["TreatMissingData"] == "notBreaching", name
    subscription = RESOURCES["OperatorEmailSubscription"]
    assert subscription["Condition"] == "HasOperatorEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "OperatorEmail"}
    assert PARAMETERS["OperatorEmail"]["Default"] == ""


@pytest.mark.parametrize("queue", ["SubmitFailureDeadLetterQueue", "WebhookDeadLetterQueue"])
def test_both_dead_letter_queues_alarm_on_any_message(queue):
    matching = [
        (name, a)
        for name, a in alarms().items()
        if a["Properties"].get("Dimensions") == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    ]
    ((_name, alarm),) = matching
    assert alarm["Properties"]["Namespace"] == "AWS/SQS"
    assert alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm.get("Condition") == RESOURCES[queue].get("Condition")


def test_failed_executions_alarm():
    (alarm,) = [a for a in alarms().values() if a["Properties"].get("MetricName") == "ExecutionsFailed"]
    assert alarm["Properties"]["Namespace"] == "AWS/States"
    assert alarm["Properties"]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "VideoStateMachine"}}]


def test_undeliverable_notifications_alarm():
    (metric_filter,) = resources_of("AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    assert props["LogGroupName"] == {"Ref": "StateMachineLogGroup"}
    error = ASL["States"]["NotificationUndeliverable"]["Error"]
    assert f'$.details.error = "{error}"' in props["FilterPattern"]
    (transform,) = props["MetricTransformations"]
    (alarm,) = [a for a in alarms().values() if a["Properties"].get("MetricName") == transform["MetricName"]]
    assert alarm["Properties"]["Namespace"] == transform["MetricNamespace"]
    # The state machine logs failures (without execution data: no presigned links in the logs).
    logging_config = RESOURCES["VideoStateMachine"]["Properties"]["Logging"]
    assert logging_config["Level"] in ("ERROR", "ALL") and logging_config["IncludeExecutionData"] is False


# ------------------------------------------------------------------ A13: concurrency, secrets key


def test_submit_has_reserved_concurrency_by_parameter():
    props = FUNCTIONS["SubmitFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReservesSubmitConcurrency", {"Ref": "SubmitReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    spec = PARAMETERS["SubmitReservedConcurrency"]
    assert spec["Type"] == "Number" and spec["MinValue"] == 0 and 1 <= spec["Default"] <= 100


def secret_reading_functions():
    return [
        name
        for name, f in FUNCTIONS.items()
        if any("AWSSecretsManagerGetSecretValuePolicy" in p for p in f["Properties"]["Policies"] if isinstance(p, dict))
    ]


@pytest.mark.parametrize("name", ["AdmitFunction", "PollFunction", "DeliverWebhookFunction"])
def test_secret_readers_may_decrypt_with_the_optional_key_only_through_secrets_manager(name):
    assert name in secret_reading_functions()
    conditional = [p["Fn::If"] for p in FUNCTIONS[name]["Properties"]["Policies"] if "Fn::If" in p]
    ((condition, policy, otherwise),) = conditional
    assert condition == "HasSecretsKmsKey" and otherwise == {"Ref": "AWS::NoValue"}
    (statement,) = policy["Statement"]
    assert statement["Action"] == "kms:Decrypt"
    assert statement["Resource"] == {"Ref": "SecretsKmsKeyArn"}
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
    }
    pattern = PARAMETERS["SecretsKmsKeyArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(
        pattern, "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    assert not re.fullmatch(pattern, "*") and not re.fullmatch(pattern, "alias/aws/secretsmanager")


# ------------------------------------------------------------------ B3: who may publish


def test_only_the_store_and_notify_failure_roles_publish_outcomes():
    (policy,) = resources_of("AWS::SNS::TopicPolicy").values()
    props = policy["Properties"]
    assert props["Topics"] == [{"Ref": "OutcomeTopic"}]
    statements = props["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny" and "ArnNotEquals" in s.get("Condition", {})]
    assert deny["Principal"] == "*" and deny["Action"] == "sns:Publish"
    allowed = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert sorted(a["Fn::GetAtt"][0] for a in allowed) == ["NotifyFailureFunctionRole", "StoreFunctionRole"]
    publishers = [
        n
        for n, f in FUNCTIONS.items()
        if any("SNSPublishMessagePolicy" in p for p in f["Properties"]["Policies"] if isinstance(p, dict))
    ]
    assert sorted(publishers) == ["NotifyFailureFunction", "StoreFunction"]


def test_only_the_outcome_topic_feeds_the_webhook_queue():
    statements = RESOURCES["WebhookQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"}
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "OutcomeTopic"}}}
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "sqs:SendMessage"
    assert deny["Condition"] == {"ArnNotEquals": {"aws:SourceArn": {"Ref": "OutcomeTopic"}}}


def test_topics_are_encrypted_with_a_key_whose_policy_lets_the_publishers_use_it():
    for topic in ("OutcomeTopic", "OperatorTopic"):
        # Not alias/aws/sns: its key policy cannot admit CloudWatch alarms (the operator topic).
        assert RESOURCES[topic]["Properties"]["KmsMasterKeyId"] == {"Ref": "NotificationsKey"}
    key = RESOURCES["NotificationsKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    services = {s["Principal"].get("Service") for s in key["KeyPolicy"]["Statement"]}
    assert {"sns.amazonaws.com", "cloudwatch.amazonaws.com"} <= services
    for name in ("StoreFunction", "NotifyFailureFunction"):
        statements = [
            s for p in FUNCTIONS[name]["Properties"]["Policies"] if isinstance(p, dict) for s in p.get("Statement", [])
        ]
        (kms,) = [s for s in statements if s["Resource"] == {"Fn::GetAtt": ["NotificationsKey", "Arn"]}]
        assert set(kms["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}


# ------------------------------------------------------------------ B10: secret permissions


def secret_arns():
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "SecretArn":
                    found.append(value["Fn::Sub"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(RESOURCES)
    return found


def test_secret_permissions_name_exactly_one_secret():
    arns = secret_arns()
    assert len(arns) == 3
    for arn in arns:
        # Secrets Manager appends "-" and six random characters; "-*" would also match "<name>-other".
        assert arn.endswith("}-??????"), arn


@pytest.mark.parametrize("name", ["ProviderApiKeySecretName", "WebhookSecretName"])
def test_secret_name_parameters_cannot_be_wildcards(name):
    pattern = PARAMETERS[name]["AllowedPattern"]
    for bad in ["*", "image-to-video/*", "a?", "prod/*/key"]:
        assert not re.fullmatch(pattern, bad), bad
    assert re.fullmatch(pattern, "image-to-video/provider-api-key")


# ------------------------------------------------------------------ B14: local switches stay local


def test_the_deployed_template_has_no_local_stack_switches():
    assert "AllowLoopbackHttp" not in PARAMETERS
    for name in FUNCTIONS:
        env = merged_environment(name)
        assert "ALLOW_LOOPBACK_HTTP" not in env and "ALLOW_INSECURE_WEBHOOK" not in env, name


def test_the_local_stack_sets_its_loopback_switches_itself():
    from i2v_local.stack import LOCAL_ONLY_ENVIRONMENT

    assert LOCAL_ONLY_ENVIRONMENT == {"ALLOW_LOOPBACK_HTTP": "true", "ALLOW_INSECURE_WEBHOOK": "true"}


# ------------------------------------------------------------------ A15: what sam build needs


def test_readme_says_what_sam_build_needs():
    readme = (REPO / "README.md").read_text()
    deploy = readme.split("## Deploy to AWS", 1)[1].split("\n## ", 1)[0]
    assert "`make`" in deploy and "`python3`" in deploy and "pip" in deploy
