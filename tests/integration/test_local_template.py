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
        {"Provider": "nanobanana", "ProviderBaseUrl": "http://127.0.0.1:9999", "WebhookUrl": "http://127.0.0.1:1/hook", "WebhookSecretName": "s"},
    )
    functions = {r.logical_id: r for r in resolved.of_type("AWS::Serverless::Function")}
    assert {"SubmitFunction", "PollFunction", "StoreFunction", "NotifyFailureFunction", "DeliverWebhookFunction"} <= set(functions)
    for fn in functions.values():
        env = fn.properties["Environment"]["Variables"]
        # Globals merged in, and every intrinsic resolved to a plain string.
        assert env["POWERTOOLS_SERVICE_NAME"] == "image-to-video"
        assert env["PROVIDER"] == "nanobanana"
        assert all(isinstance(v, str) for v in env.values()), env
        assert (REPO_ROOT / fn.properties["CodeUri"]).is_dir()
    submit_env = functions["SubmitFunction"].properties["Environment"]["Variables"]
    assert submit_env["PROVIDER_BASE_URL"] == "http://127.0.0.1:9999"
    assert submit_env["STATE_MACHINE_ARN"].startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    assert submit_env["OUTPUT_BUCKET"] == resolved.resources["OutputBucket"].physical_name


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
    assert fn["Layers"] == ["arn:aws:lambda:us-east-1:123456789012:layer:base:1", "arn:aws:lambda:us-east-1:123456789012:layer:extra:1"]
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
