"""The local stack's template resolver, against template.yaml and small templates of its own."""

from pathlib import Path

import pytest

from i2v_local import template as tpl

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_every_resource_type_in_template_yaml_is_provisioned_or_known_to_need_nothing():
    raw = tpl.load_yaml(TEMPLATE.read_text())
    assert tpl.unsupported_types(raw) == []


def test_template_with_an_unknown_resource_type_is_refused(tmp_path):
    path = _write(tmp_path, "Resources:\n  Cluster:\n    Type: AWS::ECS::Cluster\n")
    with pytest.raises(tpl.TemplateError, match="AWS::ECS::Cluster"):
        tpl.load(path)


def test_provisioned_and_nothing_to_do_tables_do_not_overlap():
    assert not set(tpl.PROVISIONED_TYPES) & set(tpl.NOTHING_TO_DO_TYPES)


def test_template_yaml_resolves_with_local_overrides():
    resolved = tpl.load(
        TEMPLATE,
        {
            "Provider": "nanobanana",
            "ProviderBaseUrl": "http://127.0.0.1:9999",
            "WebhookUrl": "http://127.0.0.1:1/hook",
            "WebhookSecretName": "s",
        },
    )
    functions = {r.logical_id: r for r in resolved.of_type("AWS::Serverless::Function")}
    assert {
        "SubmitFunction",
        "PollFunction",
        "StoreFunction",
        "NotifyFailureFunction",
        "DeliverWebhookFunction",
    } <= set(functions)
    for fn in functions.values():
        env = fn.properties["Environment"]["Variables"]
        # Globals merged in, and every intrinsic resolved to a plain string.
        assert env["POWERTOOLS_SERVICE_NAME"] == "image-to-video"
        assert env["PROVIDER"] == "nanobanana"
        assert all(isinstance(v, str) for v in env.values()), env
        assert (REPO_ROOT / fn.properties["CodeUri"]).is_dir()
    submit_env = functions["SubmitFunction"].properties["Environment"]["Variables"]
    admit_env = functions["AdmitFunction"].properties["Environment"]["Variables"]
    prepare_env = functions["PrepareFunction"].properties["Environment"]["Variables"]
    assert admit_env["PROVIDER_BASE_URL"] == "http://127.0.0.1:9999"
    assert admit_env["CONTROL_TABLE"] == resolved.resources["ControlTable"].physical_name
    assert submit_env["STATE_MACHINE_ARN"].startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    assert prepare_env["OUTPUT_BUCKET"] == resolved.resources["OutputBucket"].physical_name


def test_conditions_drop_resources_when_false():
    resolved = tpl.load(TEMPLATE, {"WebhookUrl": ""})
    assert "DeliverWebhookFunction" not in resolved.resources
    assert resolved.conditions["HasWebhook"] is False


def test_unknown_or_disallowed_parameters_are_refused():
    with pytest.raises(tpl.TemplateError, match="unknown parameter"):
        tpl.load(TEMPLATE, {"NoSuchParameter": "x"})
    with pytest.raises(tpl.TemplateError, match="Provider"):
        tpl.load(TEMPLATE, {"Provider": "other"})


SMALL = """
Parameters:
  Stage: { Type: String, Default: dev }
  Flags: { Type: CommaDelimitedList, Default: "a,b,c" }
Mappings:
  Sizes: { dev: { Memory: "256" } }
Conditions:
  IsDev: !Equals [!Ref Stage, dev]
  IsProd: !Not [!Condition IsDev]
  Either: !Or [!Condition IsDev, !Condition IsProd]
  Both: !And [!Condition IsDev, !Condition IsProd]
Globals:
  Function:
    Timeout: 30
    Layers: [arn:aws:lambda:us-east-1:123456789012:layer:base:1]
    Environment: { Variables: { A: global, B: global } }
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties: { BucketName: !Sub "${AWS::StackName}-${Stage}-${AWS::AccountId}" }
  Queue:
    Type: AWS::SQS::Queue
  Topic:
    Type: AWS::SNS::Topic
  ProdOnly:
    Type: AWS::SNS::Topic
    Condition: IsProd
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: x/
      Handler: app.handler
      Timeout: 5
      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:extra:1]
      MemorySize: !FindInMap [Sizes, !Ref Stage, Memory]
      Environment:
        Variables:
          B: own
          BUCKET_ARN: !GetAtt Bucket.Arn
          QUEUE_ARN: !GetAtt [Queue, Arn]
          TOPIC: !Ref Topic
          JOINED: !Join ["-", [!Ref Stage, !Select [1, !Ref Flags]]]
          SPLIT: !Select [2, !Split [",", "x,y,z"]]
          SUB_VARS: !Sub ["${Name}.${AWS::Region}.${AWS::URLSuffix}", { Name: !Ref Stage }]
          SUB_ATTR: !Sub "${Bucket.Arn}/*"
          LITERAL: !Sub "${!NotAVariable}"
          IF: !If [IsDev, "yes", "no"]
          DROPPED: !If [IsProd, present, !Ref AWS::NoValue]
          EITHER: !If [Either, "1", "0"]
          BOTH: !If [Both, "1", "0"]
          ROLE: !GetAtt FnRole.Arn
"""


def test_intrinsics_globals_and_conditions(tmp_path):
    resolved = tpl.load(_write(tmp_path, SMALL))
    fn = resolved.resources["Fn"].properties
    env = fn["Environment"]["Variables"]
    assert env["A"] == "global" and env["B"] == "own"
    assert fn["Timeout"] == 5 and fn["MemorySize"] == "256"
    assert fn["Layers"] == [
        "arn:aws:lambda:us-east-1:123456789012:layer:base:1",
        "arn:aws:lambda:us-east-1:123456789012:layer:extra:1",
    ]
    assert env["BUCKET_ARN"] == "arn:aws:s3:::i2v-local-dev-123456789012"
    assert env["QUEUE_ARN"] == "arn:aws:sqs:us-east-1:123456789012:i2v-local-Queue"
    assert env["TOPIC"] == "arn:aws:sns:us-east-1:123456789012:i2v-local-Topic"
    assert env["JOINED"] == "dev-b"
    assert env["SPLIT"] == "z"
    assert env["SUB_VARS"] == "dev.us-east-1.amazonaws.com"
    assert env["SUB_ATTR"] == "arn:aws:s3:::i2v-local-dev-123456789012/*"
    assert env["LITERAL"] == "${NotAVariable}"
    assert env["IF"] == "yes"
    assert "DROPPED" not in env
    assert env["EITHER"] == "1" and env["BOTH"] == "0"
    assert env["ROLE"] == "arn:aws:iam::123456789012:role/i2v-local-FnRole"
    assert "ProdOnly" not in resolved.resources
    assert resolved.resources["Queue"].ref.endswith("/123456789012/i2v-local-Queue")


def test_queue_urls_are_filled_in_with_the_endpoint(tmp_path):
    resolved = tpl.load(_write(tmp_path, SMALL))
    url = tpl.replace_queue_urls(resolved.resources["Queue"].ref, "http://127.0.0.1:5001/")
    assert url == "http://127.0.0.1:5001/123456789012/i2v-local-Queue"


def test_unsupported_intrinsic_is_reported(tmp_path):
    text = "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !ImportValue other-stack-queue\n"
    with pytest.raises(tpl.TemplateError, match="ImportValue"):
        tpl.load(_write(tmp_path, text))


# --- parameter constraints and Rules, as CloudFormation checks them before creating anything ----

CONSTRAINED = """
Parameters:
  Interval: { Type: Number, Default: "5", MinValue: 1, MaxValue: 300 }
  Prefix: { Type: String, Default: "in/", AllowedPattern: "^[a-z/]*$" }
  Prompt: { Type: String, Default: "pan", MinLength: 2, MaxLength: 5 }
  Sizes: { Type: CommaDelimitedList, Default: "a,b", AllowedPattern: "^[a-z]$" }
  Url: { Type: String, Default: "" }
  Secret: { Type: String, Default: "" }
  Stage: { Type: String, Default: dev }
Rules:
  UrlNeedsSecret:
    RuleCondition: !Not [!Equals [!Ref Url, ""]]
    Assertions:
      - Assert: !Not [!Equals [!Ref Secret, ""]]
        AssertDescription: Secret is required with Url.
  KnownStage:
    Assertions:
      - Assert: !Contains [[dev, prod], !Ref Stage]
        AssertDescription: Stage must be dev or prod.
      - Assert: !EachMemberIn [!Ref Sizes, [a, b, c]]
Resources:
  Topic:
    Type: AWS::SNS::Topic
"""


def test_constrained_parameters_within_bounds_resolve(tmp_path):
    resolved = tpl.load(_write(tmp_path, CONSTRAINED), {"Interval": "300", "Prompt": "ab", "Sizes": "c,a"})
    assert resolved.parameters["Interval"] == "300" and resolved.parameters["Sizes"] == ["c", "a"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"Interval": "0"}, "Interval=0 is below MinValue 1"),
        ({"Interval": "301"}, "Interval=301 is above MaxValue 300"),
        ({"Interval": "soon"}, "Interval='soon' is not a number"),
        ({"Prefix": "In/"}, "Prefix='In/' does not match AllowedPattern"),
        ({"Prompt": "p"}, "Prompt is shorter than MinLength 2"),
        ({"Prompt": "panning"}, "Prompt is longer than MaxLength 5"),
        ({"Sizes": "a,bb"}, "Sizes='bb' does not match AllowedPattern"),
        ({"Url": "https://example.com/hook"}, "rule UrlNeedsSecret: Secret is required with Url."),
        ({"Stage": "test"}, "rule KnownStage: Stage must be dev or prod."),
        ({"Sizes": "a,d"}, "rule KnownStage: assertion failed"),
    ],
)
def test_parameter_constraints_and_rules_refuse_the_stack(tmp_path, overrides, message):
    with pytest.raises(tpl.TemplateError) as raised:
        tpl.load(_write(tmp_path, CONSTRAINED), overrides)
    assert message in str(raised.value)


def test_rule_whose_condition_holds_passes_when_its_assertion_does(tmp_path):
    resolved = tpl.load(_write(tmp_path, CONSTRAINED), {"Url": "https://example.com/hook", "Secret": "s"})
    assert resolved.parameters["Secret"] == "s"


def test_rules_may_not_refer_to_resources(tmp_path):
    text = CONSTRAINED.replace("!Ref Stage]", "!Ref Topic]")
    with pytest.raises(tpl.TemplateError, match="rules may only refer to parameters"):
        tpl.load(_write(tmp_path, text))


def test_template_yaml_refuses_a_zero_poll_interval_and_a_webhook_without_secret():
    with pytest.raises(tpl.TemplateError, match="PollIntervalSeconds=0 is below MinValue"):
        tpl.load(TEMPLATE, {"PollIntervalSeconds": "0"})
    with pytest.raises(tpl.TemplateError, match="rule WebhookNeedsSigningSecret"):
        tpl.load(TEMPLATE, {"WebhookUrl": "https://example.com/hook", "WebhookSecretName": ""})
    assert tpl.load(TEMPLATE, {"MaxWaitMinutes": "1"}).parameters["MaxWaitMinutes"] == "1"


# --- features the local stack cannot stand up fail loudly when it provisions them -----------------

FUNCTION_WITH = """
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Topic:
    Type: AWS::SNS::Topic
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.12
{extra}
"""


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "      EventInvokeConfig:\n        DestinationConfig:\n          OnFailure: { Type: SNS, Destination: !Ref Topic }",
            "OnFailure destination of type SNS is not supported locally",
        ),
        (
            "      EventInvokeConfig:\n        DestinationConfig:\n          OnSuccess: { Type: SQS, Destination: !GetAtt Queue.Arn }",
            "OnSuccess destinations are not supported locally",
        ),
        (
            (
                "  Rule:\n    Type: AWS::Events::Rule\n    Properties:\n      EventPattern: { source: [x] }\n"
                "      Targets: [{ Id: fn, Arn: !GetAtt Fn.Arn }]"
            ),
            "EventBridge rule target fn (arn:aws:lambda:",
        ),
        (
            (
                "  Rule:\n    Type: AWS::Events::Rule\n    Properties:\n      EventPattern: { source: [x] }\n"
                "      Targets: [{ Id: q, Arn: !GetAtt Queue.Arn, InputPath: $.detail }]"
            ),
            "rule target settings InputPath are not supported locally",
        ),
    ],
)
def test_unsupported_destinations_and_rule_targets_fail_the_stack(tmp_path, extra, message):
    from i2v_local.stack import LocalStack

    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = _write(tmp_path, FUNCTION_WITH.format(extra=extra))
    with pytest.raises(tpl.TemplateError) as raised, LocalStack(path, emulator=False, webhook=False, quiet=True):
        pass
    assert message in str(raised.value)
