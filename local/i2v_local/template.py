"""Load template.yaml and resolve it the way CloudFormation + SAM would, for the local stack.

The local stack provisions what the template declares, so nothing about the application is
written twice. This module turns the YAML (with CloudFormation's short-form tags) into plain
resource properties: Parameters (defaults + overrides, checked against their constraints),
Rules (assertions evaluated as CloudFormation does before creating anything), Conditions, Mappings, SAM Globals,
pseudo parameters, Ref / Fn::GetAtt of resources (names and ARNs per type) and the usual
intrinsic functions.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "i2v-local"

PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/00000000-0000-0000-0000-000000000000",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NotificationARNs": [],
}

# Resource types the local stack provisions (see stack.py), and those that need nothing
# locally. A type in neither set makes load() fail: the template grew something the local
# stack does not know how to stand up.
PROVISIONED_TYPES = {
    "AWS::S3::Bucket": "bucket (versioning, notifications from function S3 events)",
    "AWS::Serverless::Function": "moto Lambda function + awslambdaric execution environments, S3/SQS events, EventInvokeConfig, layers",
    "AWS::Serverless::StateMachine": "moto Step Functions state machine, DefinitionSubstitutions applied",
    "AWS::StepFunctions::StateMachine": "moto Step Functions state machine",
    "AWS::SNS::Topic": "topic (+ inline Subscription list)",
    "AWS::SNS::Subscription": "subscription (sqs, email; filter policy kept)",
    "AWS::SQS::Queue": "queue (RedrivePolicy, VisibilityTimeout)",
    "AWS::DynamoDB::Table": "table (keys, TTL)",
    "AWS::Serverless::SimpleTable": "table",
    "AWS::SecretsManager::Secret": "secret (seeded by the stack: provider key / webhook secret)",
    "AWS::Events::Rule": "EventBridge rule with SQS targets",
}
NOTHING_TO_DO_TYPES = {
    "AWS::IAM::Role": "moto does not enforce IAM",
    "AWS::IAM::Policy": "moto does not enforce IAM",
    "AWS::IAM::ManagedPolicy": "moto does not enforce IAM",
    "AWS::Lambda::Permission": "moto does not enforce resource policies",
    "AWS::S3::BucketPolicy": "moto does not enforce bucket policies",
    "AWS::SQS::QueuePolicy": "moto does not enforce queue policies",
    "AWS::SNS::TopicPolicy": "moto does not enforce topic policies",
    "AWS::Logs::LogGroup": "handlers log to the terminal",
    "AWS::Logs::MetricFilter": "no CloudWatch metrics locally",
    "AWS::Serverless::LayerVersion": "its ContentUri goes on each function's PYTHONPATH (as /opt/python)",
    "AWS::Lambda::LayerVersion": "the layer package is installed in the virtualenv",
    "AWS::CloudWatch::Alarm": "no CloudWatch alarms locally",
    "AWS::CloudWatch::Dashboard": "no CloudWatch dashboards locally (`i2v jobs` / `i2v cost` read the records)",
    "AWS::KMS::Key": "moto does not encrypt",
    "AWS::KMS::Alias": "moto does not encrypt",
}


class TemplateError(Exception):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader that understands !Ref, !Sub, !GetAtt and every other short-form tag."""


def _construct_tag(loader: _Loader, tag_suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if tag_suffix == "Ref" else ("Condition" if tag_suffix == "Condition" else f"Fn::{tag_suffix}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _construct_tag)


def load_yaml(text: str) -> dict:
    return yaml.load(text, Loader=_Loader)


@dataclass
class Resource:
    logical_id: str
    type: str
    properties: dict  # resolved
    physical_name: str
    attributes: dict = field(default_factory=dict)  # GetAtt values
    ref: str = ""  # what !Ref returns


@dataclass
class ResolvedTemplate:
    path: Path
    parameters: dict
    conditions: dict
    resources: dict[str, Resource]
    outputs: dict

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def unsupported_types(raw: dict) -> list[str]:
    known = set(PROVISIONED_TYPES) | set(NOTHING_TO_DO_TYPES)
    return sorted({r.get("Type", "?") for r in (raw.get("Resources") or {}).values()} - known)


def _arn(service: str, rest: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{rest}"


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TemplateError(f"parameter {name}={text!r} is not a number") from None


def _check_parameter(name: str, spec: dict, value: str) -> None:
    """The constraints CloudFormation checks before it creates anything."""
    allowed = spec.get("AllowedValues")
    if allowed and value not in [str(a) for a in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"parameter {name}={value!r} does not match AllowedPattern {pattern}")
    kind = spec.get("Type", "String")
    if kind == "Number" or kind == "List<Number>":
        number = _number(name, value)
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name} is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name} is longer than MaxLength {spec['MaxLength']}")


class _Resolver:
    def __init__(self, raw: dict, overrides: dict):
        self.raw = raw
        self.raw_resources: dict = raw.get("Resources") or {}
        self.mappings = raw.get("Mappings") or {}
        self.parameters = self._parameters(raw.get("Parameters") or {}, overrides)
        self.condition_defs = raw.get("Conditions") or {}
        self.conditions: dict[str, bool] = {}
        self._names: dict[str, tuple[str, str, dict]] = {}
        self._naming: set[str] = set()

    @staticmethod
    def _parameters(declared: dict, overrides: dict) -> dict:
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        values = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default and no value")
            if spec.get("Type", "String").startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                value = [v.strip() for v in str(value).split(",")] if not isinstance(value, list) else value
                for item in value:
                    _check_parameter(name, spec, item)
            else:
                value = str(value)
                _check_parameter(name, spec, value)
            values[name] = value
        return values

    # -- rules -------------------------------------------------------------------------

    def check_rules(self) -> None:
        """Evaluate the template's Rules against the parameters; a failed assertion refuses the stack."""
        for rule_name, rule in (self.raw.get("Rules") or {}).items():
            if "RuleCondition" in rule and not self._rule_value(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions") or []:
                if not self._rule_value(assertion["Assert"]):
                    description = assertion.get("AssertDescription") or "assertion failed"
                    raise TemplateError(f"rule {rule_name}: {description}")

    def _rule_value(self, expression: Any) -> Any:
        """Rules allow parameter Refs and a few functions of their own, and nothing else."""
        if not isinstance(expression, dict) or len(expression) != 1:
            return expression if not isinstance(expression, list) else [self._rule_value(e) for e in expression]
        ((key, arg),) = expression.items()
        if key == "Ref":
            if arg not in self.parameters and arg not in PSEUDO_PARAMETERS:
                raise TemplateError(f"rules may only refer to parameters (Ref {arg})")
            return self.ref(arg)
        args = [self._rule_value(a) for a in arg] if isinstance(arg, list) else [self._rule_value(arg)]
        if key == "Fn::Equals":
            return str(args[0]) == str(args[1])
        if key == "Fn::Not":
            return not args[0]
        if key == "Fn::And":
            return all(args)
        if key == "Fn::Or":
            return any(args)
        if key == "Fn::If":
            raise TemplateError("Fn::If in Rules is not supported locally")
        if key == "Fn::Contains":  # [list of strings, string]
            return str(args[1]) in [str(v) for v in args[0]]
        if key == "Fn::EachMemberEquals":  # [list of strings, string]
            return all(str(v) == str(args[1]) for v in args[0])
        if key == "Fn::EachMemberIn":  # [list of strings, list of strings]
            allowed = [str(v) for v in args[1]]
            return all(str(v) in allowed for v in args[0])
        raise TemplateError(f"{key} in Rules is not supported locally")

    # -- conditions --------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            if name not in self.condition_defs:
                raise TemplateError(f"unknown condition {name}")
            self.conditions[name] = bool(self.resolve(self.condition_defs[name]))
        return self.conditions[name]

    # -- names, Ref and GetAtt ---------------------------------------------------------

    def _physical(self, logical_id: str) -> tuple[str, str, dict]:
        """(ref value, physical name, GetAtt attributes) for a resource."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._naming:
            raise TemplateError(f"circular reference through {logical_id}")
        self._naming.add(logical_id)
        res = self.raw_resources[logical_id]
        rtype = res.get("Type", "")
        props = res.get("Properties") or {}

        def named(key: str, default: str) -> str:
            return str(self.resolve(props[key])) if key in props else default

        generated = f"{STACK_NAME}-{logical_id}"
        attrs: dict[str, Any] = {}
        if rtype == "AWS::S3::Bucket":
            name = named("BucketName", generated.lower())
            ref, attrs = name, {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}
        elif rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            name = named("FunctionName", generated)
            ref, attrs = name, {"Arn": _arn("lambda", f"function:{name}")}
        elif rtype in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            name = named("Name" if "Name" in props else "StateMachineName", generated)
            arn = _arn("states", f"stateMachine:{name}")
            ref, attrs = arn, {"Arn": arn, "Name": name}
        elif rtype == "AWS::SNS::Topic":
            name = named("TopicName", generated)
            arn = _arn("sns", name)
            ref, attrs = arn, {"TopicArn": arn, "TopicName": name}
        elif rtype == "AWS::SQS::Queue":
            name = named("QueueName", generated)
            url = f"__QUEUE_URL__/{ACCOUNT_ID}/{name}"  # the endpoint is filled in by the stack
            ref, attrs = url, {"Arn": _arn("sqs", name), "QueueName": name, "QueueUrl": url}
        elif rtype in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            name = named("TableName", generated)
            ref, attrs = (
                name,
                {"Arn": _arn("dynamodb", f"table/{name}"), "StreamArn": _arn("dynamodb", f"table/{name}/stream/local")},
            )
        elif rtype == "AWS::SecretsManager::Secret":
            # Ref is an ARN on AWS; the name works everywhere the ARN does and needs no random suffix.
            name = named("Name", generated)
            ref, attrs = name, {"Id": name}
        elif rtype == "AWS::Events::Rule":
            name = named("Name", generated)
            ref, attrs = name, {"Arn": _arn("events", f"rule/{name}")}
        elif rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            name = named("LayerName", generated)
            ref = _arn("lambda", f"layer:{name}:1")
        elif rtype == "AWS::IAM::Role":
            name = named("RoleName", generated)
            ref, attrs = name, {"Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}", "RoleId": name}
        else:
            name = generated
            ref, attrs = generated, {"Arn": _arn("unknown", generated)}
        self._naming.discard(logical_id)
        self._names[logical_id] = (ref, name, attrs)
        return self._names[logical_id]

    def _implicit(self, name: str) -> tuple[str, dict] | None:
        """SAM's generated resources that templates commonly reference (e.g. FunctionRole)."""
        for logical_id, res in self.raw_resources.items():
            if res.get("Type") == "AWS::Serverless::Function" and name == f"{logical_id}Role":
                role = f"{STACK_NAME}-{name}"
                return role, {"Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{role}"}
        return None

    def ref(self, name: str) -> Any:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.raw_resources:
            return self._physical(name)[0]
        implicit = self._implicit(name)
        if implicit:
            return implicit[0]
        raise TemplateError(f"unresolvable Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id in self.raw_resources:
            attrs = self._physical(logical_id)[2]
        else:
            implicit = self._implicit(logical_id)
            if not implicit:
                raise TemplateError(f"GetAtt of unknown resource {logical_id}")
            attrs = implicit[1]
        if attribute not in attrs:
            raise TemplateError(f"GetAtt {logical_id}.{attribute} is not supported locally")
        return attrs[attribute]

    # -- intrinsics --------------------------------------------------------------------

    _NO_VALUE = object()

    def resolve(self, value: Any) -> Any:
        out = self._resolve(value)
        return None if out is self._NO_VALUE else out

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self._resolve(item) for item in value) if v is not self._NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        resolved = {}
        for k, v in value.items():
            out = self._resolve(v)
            if out is not self._NO_VALUE:
                resolved[k] = out
        return resolved

    def _function(self, name: str, arg: Any) -> Any:
        if name == "Sub":
            template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return self._sub(template, variables)
        if name == "GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(self.resolve(parts[0]), self.resolve(parts[1]))
        if name == "If":
            cond, yes, no = arg
            return self._resolve(yes if self.condition(cond) else no)
        if name == "Equals":
            left, right = (self.resolve(a) for a in arg)
            return str(left) == str(right)
        if name == "Not":
            return not self.resolve(arg[0])
        if name == "And":
            return all(self.resolve(a) for a in arg)
        if name == "Or":
            return any(self.resolve(a) for a in arg)
        if name == "Join":
            sep, items = arg
            return str(sep).join(str(i) for i in self.resolve(items))
        if name == "Select":
            index, items = self.resolve(arg[0]), self.resolve(arg[1])
            return items[int(index)]
        if name == "Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        if name == "FindInMap":
            m, k1, k2 = (self.resolve(a) for a in arg)
            return self.mappings[m][k1][k2]
        if name == "Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if name == "GetAZs":
            return [f"{REGION}{z}" for z in "abc"]
        if name == "ToJsonString":
            import json

            return json.dumps(self.resolve(arg))
        raise TemplateError(f"intrinsic function Fn::{name} is not supported locally")

    def _sub(self, template: str, variables: dict) -> str:
        def replace(match: re.Match) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"  # ${!Literal}
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.raw_resources:
                logical_id, attribute = expr.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            value = self.ref(expr)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}]+)\}", replace, template)


def _merge_globals(function_props: dict, globals_function: dict) -> dict:
    """SAM Globals: maps merge (the function wins), lists append, scalars are overridden."""
    merged = copy.deepcopy(globals_function)
    for key, value in function_props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(value, merged[key])
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load(path: str | Path, overrides: dict | None = None) -> ResolvedTemplate:
    """Read and resolve a template. Raises TemplateError on anything the local stack cannot do."""
    path = Path(path)
    raw = load_yaml(path.read_text())
    unknown = unsupported_types(raw)
    if unknown:
        raise TemplateError(f"resource type(s) the local stack does not provision: {', '.join(unknown)}")
    resolver = _Resolver(raw, {k: v for k, v in (overrides or {}).items()})
    resolver.check_rules()
    for name in resolver.condition_defs:
        resolver.condition(name)

    globals_function = (raw.get("Globals") or {}).get("Function") or {}
    resources: dict[str, Resource] = {}
    for logical_id, res in resolver.raw_resources.items():
        cond = res.get("Condition")
        if cond and not resolver.condition(cond):
            continue
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::Serverless::Function":
            props = _merge_globals(props, globals_function)
        ref, name, attrs = resolver._physical(logical_id)
        resources[logical_id] = Resource(logical_id, res["Type"], resolver.resolve(props) or {}, name, attrs, ref)

    outputs = {}
    for name, out in (raw.get("Outputs") or {}).items():
        cond = out.get("Condition")
        if cond and not resolver.condition(cond):
            continue
        outputs[name] = resolver.resolve(out.get("Value"))
    return ResolvedTemplate(path, resolver.parameters, dict(resolver.conditions), resources, outputs)


def replace_queue_urls(value: Any, endpoint: str) -> Any:
    """Queue URLs depend on the endpoint, which the stack knows only once the server runs."""
    if isinstance(value, str):
        return value.replace("__QUEUE_URL__", endpoint.rstrip("/"))
    if isinstance(value, list):
        return [replace_queue_urls(v, endpoint) for v in value]
    if isinstance(value, dict):
        return {k: replace_queue_urls(v, endpoint) for k, v in value.items()}
    return value
