"""Every use of moto's internals, in one place.

The local stack needs a few things moto offers only as implementation details: where it
invokes Lambda (the Invoke API and Step Functions tasks go through
``LambdaFunction.invoke``; S3 notifications through ``moto.s3.notifications``), its
Step Functions interpreter's Lambda integration (to apply the 256 KB state data limit to a
task's result), its user config switch that makes Step Functions run the real ASL, its
Lambda error base class and its SNS backend (to read what an email subscription would
have received). Public API (``moto.server.ThreadedMotoServer``, ``mock_aws``) is used
where it is needed; nothing else in the project imports from ``moto.*``.

``missing()`` lists each internal this module relies on that the installed moto no longer
has; ``tests/unit/test_moto_internals.py`` fails with that list after an upgrade that moved
one, and pyproject.toml pins moto to the minor range the suite passes on.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import threading
from collections.abc import Callable
from typing import Any

# (module, attribute path) for every internal used below.
REQUIRED: list[tuple[str, str]] = [
    ("moto.core.config", "default_user_config"),
    ("moto.server", "DomainDispatcherApplication"),
    ("moto.server", "create_backend_app"),
    ("moto.backends", "list_of_moto_modules"),
    ("moto.moto_server.werkzeug_app", "MotoRequestHandler"),
    ("moto.awslambda.models", "LambdaFunction.invoke"),
    ("moto.awslambda.exceptions", "LambdaClientError"),
    ("moto.s3.notifications", "_invoke_awslambda"),
    ("moto.s3.notifications", "_get_s3_event"),
    ("moto.sns.models", "sns_backends"),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
        "execute_lambda_function_integration",
    ),
    ("moto.stepfunctions.parser.asl.component.common.error_name.failure_event", "FailureEvent"),
    ("moto.stepfunctions.parser.asl.component.common.error_name.failure_event", "FailureEventException"),
    ("moto.stepfunctions.parser.asl.component.common.error_name.states_error_name", "StatesErrorName"),
    (
        "moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type",
        "StatesErrorNameType.StatesStatesDataLimitExceeded",
    ),
    ("moto.stepfunctions.parser.asl.eval.event.event_detail", "EventDetails"),
    ("moto.stepfunctions.parser.asl.parse.asl_parser", "AmazonStateLanguageParser.parse"),
    ("moto.stepfunctions.parser.asl.component.eval_component", "EvalComponent.heap_key"),
    ("moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils", "boto_client_for"),
    ("moto.stepfunctions.parser.asl.utils.json_path", "parse"),
    ("jsonpath_ng.ext", "parse"),
    ("moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl", "ErrorEqualsDecl._eval_body"),
    ("moto.stepfunctions.parser.api", "HistoryEventType.TaskFailed"),
    ("moto.stepfunctions.parser.api", "TaskFailedEventDetails"),
    *(("moto.dynamodb.models", f"DynamoDBBackend.{name}") for name in ("put_item", "update_item", "delete_item")),
    ("moto.dynamodb.responses", "DynamoResult.execute_result"),
    ("moto.dynamodb.responses", "DynamoHandler.call_action"),
    ("moto.dynamodb.models.dynamo_type", "Item.describe_attrs"),
    ("moto.core.responses", "ActionResult.result"),
    ("moto.core.responses", "method_names_from_class"),
]

STATE_MACHINE_CONNECTIONS = 256  # the interpreter's pool of connections to the Lambda API
STATE_DATA_LIMIT = 256 * 1024  # bytes of UTF-8: Step Functions' limit on a state's input and output


def _resolve(module: str, path: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def missing() -> list[str]:
    """The internals this module needs that the installed moto lacks ("module:attribute")."""
    gone = []
    for module, path in REQUIRED:
        try:
            _resolve(module, path)
        except (ImportError, AttributeError):
            gone.append(f"{module}:{path}")
    return gone


# ---- DynamoDB: one item operation at a time, as AWS's conditional writes are atomic -----------

# moto checks a ConditionExpression and then stores the item with no lock between the two, so
# two threads of its server (two executions) can both pass "slot is free" and both take it;
# a Scan iterating a table while a write changes it fails with a 500, and so does a
# BatchGetItem sizing an item that an UpdateItem changes in place. AWS does none of these.
_DYNAMODB_ITEM_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "transact_write_items",
)
_dynamodb_lock = threading.RLock()


def serialise_dynamodb_item_operations() -> None:
    """Make moto's DynamoDB item operations atomic across threads (idempotent, process-wide):
    each backend operation, and each request as a whole (its answer is built from the stored
    item objects, which a write changes in place)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    targets = [(DynamoDBBackend, name) for name in _DYNAMODB_ITEM_OPERATIONS] + [(DynamoHandler, "call_action")]
    for owner, name in targets:
        method = getattr(owner, name)
        if getattr(method, "serialised", False):
            continue

        @functools.wraps(method)
        def locked(self: Any, *args: Any, _method: Callable = method, **kwargs: Any) -> Any:
            with _dynamodb_lock:
                return _method(self, *args, **kwargs)

        locked.serialised = True  # type: ignore[attr-defined]
        setattr(owner, name, locked)


# DynamoDB's item operations: their results are items in the wire form already.
_DYNAMODB_WIRE_FORM_OPERATIONS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)


class _NotWireForm(TypeError):
    """A result holds a value json.dumps cannot write as DynamoDB would (left to moto)."""


def _wire_value(value: Any) -> str:
    if isinstance(value, bytes):  # B and BS members: base64 in DynamoDB's JSON, as moto's serializer writes them
        return base64.b64encode(value).decode("ascii")
    raise _NotWireForm(type(value).__name__)


def answer_dynamodb_items_as_json() -> None:
    """Write DynamoDB item results with ``json.dumps`` instead of moto's shape-walking
    serializer (idempotent, process-wide).

    moto answers every call through a serializer that walks the output shape member by member
    and, for every attribute value, tries each of its ten type members: about 0.5 ms of CPU
    per item, 40 ms for one 81-item BatchGetItem, in the process that also serves every other
    AWS call. An item result is already in DynamoDB's wire form ({"S": ...}, {"N": ...}), so
    its JSON is the same document; anything else (errors, table descriptions with timestamps,
    a value json cannot write) still goes through moto's serializer."""
    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result
    if getattr(original, "as_json", False):
        return

    def execute_result(self: Any, context: Any) -> Any:
        operation = context.operation_model
        if operation.name in _DYNAMODB_WIRE_FORM_OPERATIONS and not isinstance(self.result, Exception):
            try:
                body = json.dumps(self.result, default=_wire_value, separators=(",", ":"))
            except _NotWireForm:
                return original(self, context)
            version = operation.service_model.metadata.get("jsonVersion", "1.0")
            status = operation.http.get("responseCode", 200)
            return status, {"Content-Type": f"application/x-amz-json-{version}"}, body
        return original(self, context)

    execute_result.as_json = True  # type: ignore[attr-defined]
    execute_result.original = original  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign]


# ---- the server ------------------------------------------------------------------------------


def moto_server_app_and_handler() -> tuple[Callable, Any]:
    """moto's server WSGI app and the request handler its ThreadedMotoServer serves it with.

    moto internals: ``moto.server.DomainDispatcherApplication``, ``create_backend_app`` and
    ``moto.moto_server.werkzeug_app.MotoRequestHandler`` (which keeps ``_`` in S3 metadata
    header names). ``ThreadedMotoServer`` offers no way to wrap its app, so the local stack
    builds the same server around a wrapped app.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app

    cache_moto_module_list()
    cache_response_method_names()
    return DomainDispatcherApplication(create_backend_app), MotoRequestHandler


def cache_moto_module_list() -> None:
    """moto's server lists its own package directory (an ``isdir`` per service, about 200) on
    every request, inside the lock that picks the request's service, so under load requests
    queue on that lock; the list cannot change while the process runs (idempotent)."""
    from moto import backends

    if getattr(backends.list_of_moto_modules, "cached", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    list_of_moto_modules.cached = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


def cache_response_method_names() -> None:
    """moto finds a request's action among its response class's methods with
    ``inspect.getmembers`` on every request (about 0.1 ms of CPU each, some 50 requests per
    job); a class's methods do not change while the process runs (idempotent)."""
    from moto.core import responses

    if getattr(responses.method_names_from_class, "cached", False):
        return
    original = responses.method_names_from_class

    @functools.lru_cache(maxsize=256)
    def method_names_from_class(clazz: Any) -> frozenset[str]:
        return frozenset(original(clazz))

    method_names_from_class.cached = True  # type: ignore[attr-defined]
    responses.method_names_from_class = method_names_from_class


# ---- configuration ---------------------------------------------------------------------------


def enable_state_machine_execution() -> dict:
    """Make moto's Step Functions run the real ASL; returns the previous settings for restore."""
    from moto.core.config import default_user_config

    saved = dict(default_user_config["stepfunctions"])
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    return saved


def cache_state_machine_parses() -> None:
    """Parse and preprocess each state machine definition once, not once per execution
    (idempotent).

    moto's interpreter runs the ANTLR grammar over the whole definition and then its
    preprocessor over the tree at the start of every execution: about 90 ms and 15 ms of CPU
    for this project's definition, in the process that also serves every AWS call. Both only
    depend on the definition's text. The evaluation components they build keep no
    per-execution state: the interpreter keeps that in each execution's ``Environment``
    (``env.heap``, keyed by a component's ``heap_key``), so executions share one program. The
    one attribute a component sets lazily, its ``heap_key``, is set before the program is
    shared, so two executions' first uses never race it."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    if getattr(AmazonStateLanguageParser.parse, "cached", False):
        return
    original = AmazonStateLanguageParser.parse

    @functools.lru_cache(maxsize=64)
    def parse(definition: str) -> tuple[Any, Any]:
        program, tree = original(definition)  # a definition that does not parse raises, uncached
        _fix_heap_keys(program)
        return program, tree

    parse.cached = True  # type: ignore[attr-defined]
    AmazonStateLanguageParser.parse = staticmethod(parse)  # type: ignore[method-assign]


def _fix_heap_keys(program: Any) -> None:
    """Give every evaluation component of a program its ``heap_key`` now (see above)."""
    for component in evaluation_components(program):
        _ = component.heap_key


def evaluation_components(program: Any) -> list[Any]:
    """Every evaluation component reachable from a preprocessed program (each once)."""
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    found: list[Any] = []
    seen: set[int] = set()
    pending = [program]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, EvalComponent):
            found.append(value)
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            pending.extend(value)
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("moto.stepfunctions"):
            pending.extend(vars(value).values())
    return found


def share_state_machine_clients() -> None:
    """One Lambda client for the interpreter's Lambda tasks, and each JSONPath parsed once
    (idempotent, process-wide).

    moto's interpreter builds a new boto3 client for every Lambda task (10-20 ms of CPU: the
    service model, the event hooks) and re-parses every JSONPath it evaluates (the
    interpreter's paths, EventBridge's input paths); botocore clients are thread-safe and a
    parsed path is immutable, so both are kept. The client is the one moto would build, with a
    connection pool sized for a burst of tasks instead of botocore's 10."""
    import boto3
    import jsonpath_ng.ext
    from botocore.config import Config
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import json_path

    if getattr(lambda_eval_utils.boto_client_for, "shared", False):
        return
    clients: dict[tuple, Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

        key = (region, service, repr(state_credentials), moto_server_port(), botocore_stubber.enabled)
        with lock:
            if key not in clients:
                endpoint = (
                    {} if botocore_stubber.enabled else {"endpoint_url": f"http://localhost:{moto_server_port()}"}
                )
                clients[key] = boto3.client(
                    aws_access_key_id="ak",
                    region_name=region,
                    service_name=service,
                    aws_secret_access_key="sk",
                    config=Config(
                        parameter_validation=False,
                        retries={"max_attempts": 0, "total_max_attempts": 1},
                        connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        max_pool_connections=STATE_MACHINE_CONNECTIONS,
                    ),
                    **endpoint,
                )
            return clients[key]

    boto_client_for.shared = True  # type: ignore[attr-defined]
    lambda_eval_utils.boto_client_for = boto_client_for
    parse = functools.lru_cache(maxsize=1024)(jsonpath_ng.ext.parse)
    jsonpath_ng.ext.parse = parse
    json_path.parse = parse


def restore_stepfunctions_config(saved: dict) -> None:
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"].update(saved)


# ---- errors ----------------------------------------------------------------------------------


def lambda_error(code: str, message: str, status: int) -> Exception:
    """A Lambda API error as moto's server answers it (botocore raises the modeled class)."""
    from moto.awslambda.exceptions import LambdaClientError

    error = LambdaClientError(code, message)
    error.code = status
    return error


# ---- patches ---------------------------------------------------------------------------------


class Patches:
    """Attribute replacements on moto's modules, undone in reverse order."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, attribute: str, value: Any) -> None:
        self._undo.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, value)

    def remove(self) -> None:
        while self._undo:
            owner, attribute, original = self._undo.pop()
            setattr(owner, attribute, original)


def patch_lambda(
    patches: Patches,
    invoke: Callable[[str, bytes, dict, dict], bytes],
    invoke_from_s3: Callable[[str, dict], None],
    s3_event: Callable[[dict, Any], dict],
) -> None:
    """Route moto's Lambda invocations to the local runtime.

    ``invoke(function_name, body, request_headers, response_headers) -> body``: the Invoke API
    and Step Functions tasks. ``invoke_from_s3(function_arn, event)``: S3 notifications.
    ``s3_event(event, key)``: amends the S3 event moto built for an object key.
    """
    import moto.s3.notifications as s3_notifications
    from moto.awslambda.models import LambdaFunction

    def lambda_invoke(fn_self, body, request_headers, response_headers):
        return invoke(fn_self.function_name, body, request_headers, response_headers)

    def s3_invoke(account_id, event_body, fn_arn, region_name):
        invoke_from_s3(fn_arn, event_body)

    original_s3_event = s3_notifications._get_s3_event

    def get_s3_event(event_name, bucket, key, notification_id):
        return s3_event(original_s3_event(event_name, bucket, key, notification_id), key)

    patches.set(LambdaFunction, "invoke", lambda_invoke)
    patches.set(s3_notifications, "_invoke_awslambda", s3_invoke)
    patches.set(s3_notifications, "_get_s3_event", get_s3_event)


def patch_state_data_limit(patches: Patches, limit: int = STATE_DATA_LIMIT) -> None:
    """A Lambda task whose result is over ``limit`` fails with States.DataLimitExceeded, as on AWS.

    As on AWS that error is terminal: States.ALL does not catch it (see _terminal_data_limit).
    """
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = lambda_eval_utils.execute_lambda_function_integration

    def execute(env, parameters, region, state_credentials):
        original(env=env, parameters=parameters, region=region, state_credentials=state_credentials)
        result = env.stack[-1]
        size = len(json.dumps(result, default=str, separators=(",", ":")).encode())
        if size > limit:
            kind = StatesErrorNameType.StatesStatesDataLimitExceeded
            cause = f"The state/task returned a result with a size exceeding the maximum number of bytes service limit ({size} > {limit})."
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=kind),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(error=kind.to_name(), cause=cause)
                    ),
                )
            )

    patches.set(lambda_eval_utils, "execute_lambda_function_integration", execute)
    _terminal_data_limit(patches)


def _terminal_data_limit(patches: Patches) -> None:
    """States.ALL neither catches nor retries States.DataLimitExceeded on AWS; moto's does.

    Only an ErrorEquals that names States.DataLimitExceeded itself matches it.
    """
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType

    terminal = StatesErrorNameType.StatesStatesDataLimitExceeded
    original = ErrorEqualsDecl._eval_body

    def eval_body(self, env):
        error_name = env.stack[-1] if env.stack else None
        if isinstance(error_name, StatesErrorName) and error_name.typ == terminal:
            named = any(isinstance(n, StatesErrorName) and n.typ == terminal for n in self.error_names)
            if not named:
                env.stack.pop()
                env.stack.append(False)
                return
        original(self, env)

    patches.set(ErrorEqualsDecl, "_eval_body", eval_body)


# ---- reading moto's state --------------------------------------------------------------------


def sns_published(account_id: str, region: str, topic_arn: str) -> tuple[list, list]:
    """(messages published to the topic, its email subscriptions) from moto's SNS backend.

    Each message is (message_id, message, subject, attributes, group_id); each subscription
    has ``.endpoint`` and ``matches(attributes, message) -> bool`` (its filter policy).
    """
    from moto.sns.models import sns_backends

    backend = sns_backends[account_id][region]
    topic = backend.topics.get(topic_arn)
    if topic is None:
        return [], []
    subs = [s for s in backend.subscriptions.values() if s.topic.arn == topic.arn and s.protocol == "email"]
    return list(topic.sent_notifications), [_EmailSubscription(s) for s in subs]


class _EmailSubscription:
    def __init__(self, sub: Any) -> None:
        self.endpoint = sub.endpoint
        self._matcher = getattr(sub, "_filter_policy_matcher", None)

    def matches(self, attributes: dict, message: str) -> bool:
        return self._matcher is None or self._matcher.matches(attributes, message)
