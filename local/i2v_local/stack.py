"""The embedded local stack: moto's server + the real handlers + the provider emulator.

``LocalStack`` reads template.yaml (through ``i2v_local.template``), starts moto's server on
loopback with Step Functions execution enabled, provisions every resource of the template
over real HTTP with boto3, registers each function with the local Lambda service
(``i2v_local.lambda_runtime``: execution environments as ``awslambdaric`` processes behind a
Runtime API), and starts the provider emulator and the webhook receiver. The handlers run
unchanged: the stack only sets ``AWS_ENDPOINT_URL`` (and fake credentials) so every
client they create talks to moto.

It adds, for people to read what the pipeline produced (these two queues are the user's:
nothing in the stack reads them):
* ``i2v-local-notifications``: an SQS queue subscribed to the outcome topic (raw delivery);
* ``i2v-local-events``: an SQS queue targeted by a rule on the default bus for source
  ``image-to-video``.
The stack's own printer and the test helpers read through subscriptions of their own
(``i2v-local-collector-notifications``, ``i2v-local-collector-events``), so two readers
never split one queue.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import moto_internals
from . import template as tpl
from .aws_faults import ADMIN_PATH as AWS_FAULTS_PATH
from .aws_faults import FaultingMotoServer, FaultInjector
from .aws_limits import check_stack_limits
from .lambda_runtime import DEFAULT_CONCURRENCY, FunctionSpec, LambdaRuntime

log = logging.getLogger("i2v_local.stack")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
REGION = tpl.REGION
ACCOUNT_ID = tpl.ACCOUNT_ID
NOTIFICATIONS_QUEUE = "i2v-local-notifications"
EVENTS_QUEUE = "i2v-local-events"
# The stack's own readers (its printer, the tests' collectors): never the user's queues above.
COLLECTOR_NOTIFICATIONS_QUEUE = "i2v-local-collector-notifications"
COLLECTOR_EVENTS_QUEUE = "i2v-local-collector-events"
EVENT_SOURCE = "image-to-video"
WEBHOOK_SECRET_NAME = "i2v-local/webhook-signing-secret"
LOCAL_EMAIL = "you@example.com"
# On AWS no service waits for a function's core; here this process is every service at once,
# so the functions run a little below it. Where Linux's autogroup scheduling is on (the usual
# default) this has no effect: each environment is a session of its own, and a process's nice
# value only weighs inside its session. Giving the sessions themselves a nice value of +19, or
# one session for all environments, was measured and made a burst slower (the first wave is
# mostly the functions' own CPU); the emulator's renders, each in a session of its own at
# +19, are what must yield (RENDER_NICENESS).
ENVIRONMENT_NICENESS = 5
ROLE_NAME = "i2v-local-lambda"
LOCAL_ONLY_ENVIRONMENT = {"ALLOW_LOOPBACK_HTTP": "true", "ALLOW_INSECURE_WEBHOOK": "true"}
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def _dummy_zip() -> bytes:
    # moto stores a code package; the real code is run by the local Lambda service.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    raise RuntimeError('run by i2v_local')\n")
    return buffer.getvalue()


class Collector:
    """Drains an SQS queue in the background into a list (notifications, events)."""

    def __init__(self, sqs, queue_url: str, parse: Callable[[dict], Any], on_item: Callable[[Any], None] | None = None):
        self.sqs, self.queue_url, self.parse, self.on_item = sqs, queue_url, parse, on_item
        self.items: list = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"collect-{queue_url.rsplit('/', 1)[-1]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
                )
            except (BotoCoreError, ClientError):  # the server is shutting down, or a hiccup: try again
                if self._stop.wait(0.5):
                    return
                continue
            for message in response.get("Messages", []):
                item = self.parse(message)
                with self._changed:
                    self.items.append(item)
                    self._changed.notify_all()
                if self.on_item:
                    self.on_item(item)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float) -> Any:
        """The first collected item matching predicate; TimeoutError if none arrives in time."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"nothing arrived on {self.queue_url} within {timeout:.0f} s")
                self._changed.wait(min(remaining, 1.0))

    def matching(self, predicate: Callable[[Any], bool]) -> list:
        with self._changed:
            return [item for item in self.items if predicate(item)]


class LocalStack:
    """Context manager: ``with LocalStack(provider="nanobanana") as stack: ...``."""

    def __init__(
        self,
        template: str | Path = DEFAULT_TEMPLATE,
        *,
        port: int = 0,
        provider: str = "nohuman",
        poll_interval: int = 1,
        params: dict | None = None,
        render_seconds: float = 2.0,
        webhook: bool = True,
        emulator: bool = True,
        quiet: bool = False,
        on_notification: Callable[[dict], None] | None = None,
        lambda_concurrency: int = DEFAULT_CONCURRENCY,
        aws_faults: list[str] | None = None,
        aws_fault_seed: int | None = None,
    ):
        self.template_path = Path(template)
        self.port = port
        self.provider = provider
        self.poll_interval = poll_interval
        self.user_params = dict(params or {})
        self.render_seconds = render_seconds
        self.with_webhook = webhook
        self.with_emulator = emulator
        self.quiet = quiet
        self.on_notification = on_notification
        self.lambda_concurrency = lambda_concurrency
        # AWS-side faults (SERVICE:Operation:ErrorCode:RATE), parsed now: a bad spec fails before anything starts.
        # The same injector serves moto's HTTP API and the Lambda runtime's own invocations.
        self.aws_faults = FaultInjector(aws_faults or [], aws_fault_seed)
        self.endpoint_url = ""
        self.api_key = "local-" + secrets.token_hex(12)
        self.template: tpl.ResolvedTemplate | None = None
        self.runtime: LambdaRuntime | None = None
        self.emulator = None
        self.receiver = None
        self.notifications: Collector | None = None
        self.events: Collector | None = None
        self.queue_urls: dict[str, str] = {}  # logical id (or extra name) -> url
        self.function_names: dict[str, str] = {}
        self._server = None
        self._saved_env: dict | None = None
        self._saved_sfn_config: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> LocalStack:

        self._saved_env = dict(os.environ)
        os.environ.update(FAKE_CREDENTIALS)
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            os.environ.pop(name, None)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        if self.quiet:
            # moto logs every Fail state as an ERROR; our workflow ends failed jobs in one on purpose.
            logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

        self._saved_sfn_config = moto_internals.enable_state_machine_execution()  # run the real ASL
        moto_internals.serialise_dynamodb_item_operations()  # conditional writes atomic, as on AWS
        moto_internals.answer_dynamodb_items_as_json()
        moto_internals.cache_state_machine_parses()
        moto_internals.share_state_machine_clients()

        # moto's server behind the middleware that injects AWS faults and enforces AWS's call limits.
        self._server = FaultingMotoServer(
            self.aws_faults, ip_address="127.0.0.1", port=self.port, fault_lambda_invokes=False
        )
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        # moto's ASL interpreter reaches Lambda on localhost:MOTO_PORT; handlers use AWS_ENDPOINT_URL.
        os.environ["MOTO_PORT"] = str(self.port)
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        # Backends are process-wide: start from nothing even if an earlier stack ran here.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        self._reset_layer_clients()

        if self.with_emulator:
            self._start_emulator()
        if self.with_webhook:
            self._start_receiver()
        self.template = tpl.load(self.template_path, self._parameter_overrides())
        check_stack_limits(self.template)  # a stack AWS would refuse does not start

        base_env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url, "POWERTOOLS_TRACE_DISABLED": "true"}
        if self.quiet:
            base_env.update(LOG_LEVEL="WARNING", POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
        self.runtime = LambdaRuntime(
            base_env,
            sqs_client_factory=lambda: self.client("sqs"),
            default_concurrency=self.lambda_concurrency,
            fault_injector=self.aws_faults,
            # This process is every AWS service at once; on AWS none of them waits for a
            # function's core, so here the functions yield the cores to it.
            environment_niceness=ENVIRONMENT_NICENESS,
        )
        self._provision()
        self.runtime.start()
        self.notifications.start()
        self.events.start()
        return self

    def stop(self) -> None:
        self._stop_running_executions()
        for collector in (self.notifications, self.events):
            if collector:
                collector.stop()
        if self.runtime:
            self.runtime.stop()
        for service in (self.emulator, self.receiver):
            if service is not None:
                service.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._saved_sfn_config is not None:
            moto_internals.restore_stepfunctions_config(self._saved_sfn_config)
            self._saved_sfn_config = None
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None
        self._reset_layer_clients()

    def _stop_running_executions(self) -> None:
        """Stop this stack's workflows before its server goes: moto runs them in threads of this
        process, and one left waiting would wake into the next stack started here (the same
        names, the same account) and publish into it."""
        if self._server is None or self.template is None:
            return
        try:
            sfn = self.client("stepfunctions")
            for machine in sfn.list_state_machines()["stateMachines"]:
                pages = sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
                )
                for page in pages:
                    for execution in page["executions"]:
                        sfn.stop_execution(executionArn=execution["executionArn"], cause="the local stack stopped")
        except (BotoCoreError, ClientError) as exc:  # stopping anyway: say so, do not hide it
            log.warning("could not stop running executions: %s", exc)

    @staticmethod
    def _reset_layer_clients() -> None:
        # The layer caches boto3 clients; they must be created against this endpoint.
        try:
            from i2v.aws import reset_clients
        except ImportError:
            return
        reset_clients()

    def _start_emulator(self) -> None:
        from .emulator import ProviderEmulator

        self.emulator = ProviderEmulator("127.0.0.1", port=0, api_key=self.api_key, render_seconds=self.render_seconds)
        self.emulator.start()

    def _start_receiver(self) -> None:
        from .webhook_receiver import WebhookReceiver

        self.receiver = WebhookReceiver(secret=None, port=0)
        self.receiver.start()

    def _parameter_overrides(self) -> dict:
        declared = tpl.load_yaml(self.template_path.read_text()).get("Parameters") or {}
        wanted = {
            "Provider": self.provider,
            "ResultAllowedHosts": "127.0.0.1",
            "PollIntervalSeconds": str(self.poll_interval),
            # Before any job finished, expect the emulator's render time (the documented
            # defaults are minutes: a first local job would wait them out).
            "InitialRenderEstimateSeconds": str(max(1, round(self.render_seconds))),
            "NotificationEmail": LOCAL_EMAIL,
        }
        if self.emulator is not None:
            wanted["ProviderBaseUrl"] = self.emulator.url
        if self.receiver is not None:
            wanted.update(WebhookUrl=self.receiver.url, WebhookSecretName=WEBHOOK_SECRET_NAME)
        overrides = {k: v for k, v in wanted.items() if k in declared}
        overrides.update(self.user_params)  # the user's --param wins
        return overrides

    # ---- clients ---------------------------------------------------------------------

    def client(self, service: str):
        """A boto3 client of the local endpoint, one per service, shared: clients are thread-safe,
        and making one costs this process (the one serving AWS) about 10 ms of CPU, which a
        burst of uploads paid per upload."""
        with self._clients_lock:
            key = (service, self.endpoint_url)
            if key not in self._clients:
                self._clients[key] = boto3.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    region_name=REGION,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    config=Config(retries={"mode": "standard", "max_attempts": 3}),
                )
            return self._clients[key]

    # ---- provisioning ----------------------------------------------------------------

    def _provision(self) -> None:
        t = self.template
        assert t is not None
        iam = self.client("iam")
        role_arn = iam.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self._provision_secrets()
        for res in t.of_type("AWS::S3::Bucket"):
            self._bucket(res)
        for res in t.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            self._table(res)
        self._queues()
        for res in t.of_type("AWS::SecretsManager::Secret"):
            self._declared_secret(res)
        for res in t.of_type("AWS::SNS::Topic"):
            self._topic(res)
        for res in t.of_type("AWS::SNS::Subscription"):
            self._subscribe(res.properties)
        for res in t.of_type("AWS::Serverless::Function"):
            self._function(res, role_arn)
        for res in t.of_type("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            self._state_machine(res, role_arn)
        self._bucket_notifications()
        for res in t.of_type("AWS::Events::Rule"):
            self._rule(res)
        self._observers()

    def _fix(self, value: Any) -> Any:
        return tpl.replace_queue_urls(value, self.endpoint_url)

    def _provision_secrets(self) -> None:
        sm = self.client("secretsmanager")
        params = self.template.parameters
        if params.get("ProviderApiKeySecretName") and self.emulator is not None:
            # Both providers configured (the emulator speaks both APIs), as a JSON secret of keys.
            keys = {"nohuman": self.api_key, "nanobanana": self.api_key}
            sm.create_secret(Name=params["ProviderApiKeySecretName"], SecretString=json.dumps(keys))
        if self.receiver is not None and params.get("WebhookSecretName") == WEBHOOK_SECRET_NAME:
            sm.create_secret(Name=WEBHOOK_SECRET_NAME, SecretString=self.receiver.secret)

    def _declared_secret(self, res: tpl.Resource) -> None:
        props = res.properties
        value = props.get("SecretString") or secrets.token_urlsafe(32)
        self.client("secretsmanager").create_secret(Name=res.physical_name, SecretString=value)

    def _bucket(self, res: tpl.Resource) -> None:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=res.physical_name)
        status = (res.properties.get("VersioningConfiguration") or {}).get("Status")
        if status:
            s3.put_bucket_versioning(Bucket=res.physical_name, VersioningConfiguration={"Status": status})

    def _table(self, res: tpl.Resource) -> None:
        props = res.properties
        ddb = self.client("dynamodb")
        if res.type == "AWS::Serverless::SimpleTable":
            key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
            kind = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
            attrs, schema = (
                [{"AttributeName": key["Name"], "AttributeType": kind}],
                [{"AttributeName": key["Name"], "KeyType": "HASH"}],
            )
        else:
            attrs, schema = props["AttributeDefinitions"], props["KeySchema"]
        extra = {}
        if props.get("GlobalSecondaryIndexes"):
            extra["GlobalSecondaryIndexes"] = [
                {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                for i in props["GlobalSecondaryIndexes"]
            ]
        ddb.create_table(
            TableName=res.physical_name,
            AttributeDefinitions=attrs,
            KeySchema=schema,
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=res.physical_name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )

    def _queues(self) -> None:
        sqs = self.client("sqs")
        queues = self.template.of_type("AWS::SQS::Queue")
        # Dead-letter queues first: a redrive policy must name an existing queue.
        queues.sort(key=lambda r: 1 if "RedrivePolicy" in r.properties else 0)
        for res in queues:
            attributes = {}
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
                "MaximumMessageSize",
            ):
                if key in res.properties:
                    attributes[key] = str(res.properties[key])
            if "RedrivePolicy" in res.properties:
                attributes["RedrivePolicy"] = json.dumps(res.properties["RedrivePolicy"])
            if res.properties.get("FifoQueue"):
                attributes["FifoQueue"] = "true"
            url = sqs.create_queue(QueueName=res.physical_name, Attributes=attributes)["QueueUrl"]
            self.queue_urls[res.logical_id] = url

    def _topic(self, res: tpl.Resource) -> None:
        self.client("sns").create_topic(Name=res.physical_name)
        for sub in res.properties.get("Subscription") or []:
            self._subscribe({"TopicArn": res.ref, **sub})

    def _subscribe(self, props: dict) -> None:
        attributes = {}
        if "FilterPolicy" in props:
            attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
            attributes["FilterPolicyScope"] = props.get("FilterPolicyScope", "MessageAttributes")
        if props.get("RawMessageDelivery") in (True, "true"):
            attributes["RawMessageDelivery"] = "true"
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        self.client("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )

    def _function(self, res: tpl.Resource, role_arn: str) -> None:
        props = self._fix(res.properties)
        env = dict((props.get("Environment") or {}).get("Variables") or {})
        env = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}
        # The local stack's own switches, never in the deployed template: the emulator serves results,
        # and the receiver takes webhooks, over plain HTTP on loopback.
        env.update(LOCAL_ONLY_ENVIRONMENT)
        timeout = int(props.get("Timeout", 3))
        self.client("lambda").create_function(
            FunctionName=res.physical_name,
            Runtime=props.get("Runtime", "python3.12"),
            Role=role_arn,
            Handler=props["Handler"],
            Code={"ZipFile": _dummy_zip()},
            Timeout=timeout,
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": env},
        )
        invoke_config = props.get("EventInvokeConfig") or {}
        destinations = invoke_config.get("DestinationConfig") or {}
        if destinations.get("OnSuccess"):
            raise tpl.TemplateError(
                f"{res.logical_id}: EventInvokeConfig OnSuccess destinations are not supported locally"
            )
        on_failure = destinations.get("OnFailure") or {}
        on_failure_url = None
        if on_failure:
            # SAM infers the type from the ARN when Type is left out.
            kind = on_failure.get("Type") or ("SQS" if ":sqs:" in str(on_failure.get("Destination", "")) else "?")
            if kind != "SQS" or ":sqs:" not in str(on_failure.get("Destination", "")):
                raise tpl.TemplateError(
                    f"{res.logical_id}: EventInvokeConfig OnFailure destination of type {kind} "
                    "is not supported locally (only SQS queues)"
                )
            on_failure_url = self._queue_url_for_arn(on_failure["Destination"])
        reserved = props.get("ReservedConcurrentExecutions")
        self.runtime.register(
            FunctionSpec(
                logical_id=res.logical_id,
                name=res.physical_name,
                code_uri=(self.template.base_dir / props["CodeUri"]).resolve(),
                handler=props["Handler"],
                environment=env,
                timeout=timeout,
                memory_mb=int(props.get("MemorySize", 128)),
                max_retry_attempts=int(invoke_config.get("MaximumRetryAttempts", 2)),
                on_failure_queue_url=on_failure_url,
                layers=self._layer_dirs(res.logical_id, props.get("Layers") or []),
                reserved_concurrency=int(reserved) if reserved is not None else None,
                runtime=props.get("Runtime", "python3.12"),
            )
        )
        self.function_names[res.logical_id] = res.physical_name
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "SQS":
                ep = event["Properties"]
                self.runtime.add_sqs_source(
                    res.physical_name,
                    self._queue_url_for_arn(ep["Queue"]),
                    ep["Queue"],
                    batch_size=int(ep.get("BatchSize", 10)),
                    report_failures="ReportBatchItemFailures" in (ep.get("FunctionResponseTypes") or []),
                    maximum_concurrency=_int_or_none((ep.get("ScalingConfig") or {}).get("MaximumConcurrency")),
                )
            elif event.get("Type") not in ("S3", None):
                raise tpl.TemplateError(f"{res.logical_id}: event type {event.get('Type')} is not supported locally")

    def _layer_dirs(self, logical_id: str, layers: list) -> list[Path]:
        """Each layer's source directory: what Lambda would extract under /opt (python/ on the path)."""
        by_ref = {r.ref: r for r in self.template.of_type("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")}
        dirs = []
        for layer in layers:
            res = by_ref.get(layer)
            if res is None:
                raise tpl.TemplateError(
                    f"{logical_id}: layer {layer} is not declared in the template (only local layers run locally)"
                )
            content = res.properties.get("ContentUri") or (res.properties.get("Content") or {})
            if not isinstance(content, str):
                raise tpl.TemplateError(f"{logical_id}: layer {res.logical_id} needs a local ContentUri")
            root = (self.template.base_dir / content).resolve()
            # A built layer zip holds python/; a source directory with BuildMethod holds the packages.
            dirs.append(root / "python" if (root / "python").is_dir() else root)
        return dirs

    def _queue_url_for_arn(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        return self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]

    def _state_machine(self, res: tpl.Resource, role_arn: str) -> None:
        props = self._fix(res.properties)
        if "DefinitionUri" in props:
            definition = (self.template.base_dir / props["DefinitionUri"]).read_text()
        elif "Definition" in props:
            definition = json.dumps(props["Definition"])
        else:
            definition = props["DefinitionString"]
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        self.client("stepfunctions").create_state_machine(
            name=res.attributes["Name"], definition=definition, roleArn=role_arn, type=props.get("Type", "STANDARD")
        )

    def _bucket_notifications(self) -> None:
        by_bucket: dict[str, list] = {}
        for res in self.template.of_type("AWS::Serverless::Function"):
            for event_id, event in (res.properties.get("Events") or {}).items():
                if event.get("Type") != "S3":
                    continue
                ep = event["Properties"]
                events = ep["Events"] if isinstance(ep["Events"], list) else [ep["Events"]]
                config = {
                    "Id": f"{res.logical_id}{event_id}",
                    "LambdaFunctionArn": res.attributes["Arn"],
                    "Events": events,
                }
                rules = ((ep.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
                if rules:
                    config["Filter"] = {
                        "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
                    }
                by_bucket.setdefault(ep["Bucket"], []).append(config)
        s3 = self.client("s3")
        for bucket, configs in by_bucket.items():
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configs}
            )

    def _rule(self, res: tpl.Resource) -> None:
        props = self._fix(res.properties)
        events = self.client("events")
        kwargs = {
            "Name": res.physical_name,
            "EventBusName": props.get("EventBusName", "default"),
            "State": props.get("State", "ENABLED"),
        }
        if "EventPattern" in props:
            kwargs["EventPattern"] = json.dumps(props["EventPattern"])
        events.put_rule(**kwargs)
        targets = []
        for target in props.get("Targets") or []:
            if ":sqs:" not in str(target.get("Arn")):
                raise tpl.TemplateError(
                    f"{res.logical_id}: EventBridge rule target {target.get('Id')} ({target.get('Arn')}) "
                    "is not supported locally (only SQS queues)"
                )
            extra = sorted(set(target) - {"Id", "Arn"})
            if extra:
                raise tpl.TemplateError(
                    f"{res.logical_id}: rule target settings {', '.join(extra)} are not supported locally"
                )
            targets.append({"Id": target["Id"], "Arn": target["Arn"]})
        if targets:
            events.put_targets(Rule=res.physical_name, EventBusName=kwargs["EventBusName"], Targets=targets)

    def _observers(self) -> None:
        """The queues people read, and the stack's own readers: never one queue for both.

        ``i2v-local-notifications`` (subscribed to the topic) and ``i2v-local-events`` (a rule
        on the default bus) are the user's. The stack's printer and the tests read copies
        delivered to queues of their own: a second subscription, a second rule target.
        """
        sqs, sns, events = self.client("sqs"), self.client("sns"), self.client("events")
        urls = {}
        for name in (NOTIFICATIONS_QUEUE, COLLECTOR_NOTIFICATIONS_QUEUE, EVENTS_QUEUE, COLLECTOR_EVENTS_QUEUE):
            urls[name] = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = {name: f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}" for name in urls}
        for topic in self.template.of_type("AWS::SNS::Topic"):
            for name in (NOTIFICATIONS_QUEUE, COLLECTOR_NOTIFICATIONS_QUEUE):
                sns.subscribe(
                    TopicArn=topic.ref, Protocol="sqs", Endpoint=arn[name], Attributes={"RawMessageDelivery": "true"}
                )
        events.put_rule(Name=EVENTS_QUEUE, EventPattern=json.dumps({"source": [EVENT_SOURCE]}), State="ENABLED")
        rule_targets = [
            {"Id": "local-events", "Arn": arn[EVENTS_QUEUE]},
            {"Id": "local-collector", "Arn": arn[COLLECTOR_EVENTS_QUEUE]},
        ]
        events.put_targets(Rule=EVENTS_QUEUE, Targets=rule_targets)
        self.queue_urls.update(urls)
        self.notifications = Collector(
            sqs, urls[COLLECTOR_NOTIFICATIONS_QUEUE], lambda m: json.loads(m["Body"]), self.on_notification
        )
        self.events = Collector(self.client("sqs"), urls[COLLECTOR_EVENTS_QUEUE], lambda m: json.loads(m["Body"]))

    # ---- what the stack offers its users ---------------------------------------------

    def resource(self, logical_id: str) -> tpl.Resource:
        return self.template.resources[logical_id]

    # The template's Outputs that name what `i2v local up` reports (see template.yaml).
    OUTPUT_NAMES: ClassVar[dict[str, str]] = {
        "input_bucket": "InputBucketName",
        "input_prefix": "InputPrefix",
        "output_bucket": "OutputBucketName",
        "topic_arn": "OutcomeTopicArn",
        "state_machine_arn": "StateMachineArn",
    }

    def outputs(self) -> dict:
        """The JSON line `i2v local up` prints: the template's Outputs plus the local endpoints."""
        t = self.template
        named = {key: t.outputs.get(output) for key, output in self.OUTPUT_NAMES.items()}
        if named["input_prefix"] is None:
            named["input_prefix"] = ""
        return {
            "endpoint_url": self.endpoint_url,
            **named,
            "notifications_queue_url": self.queue_urls.get(NOTIFICATIONS_QUEUE),
            "functions": dict(self.function_names),
            "emulator_url": self.emulator.url if self.emulator else None,
            "webhook_url": self.receiver.url if self.receiver else None,
            "webhook_secret": self.receiver.secret if self.receiver else None,
            "events_queue_url": self.queue_urls.get(EVENTS_QUEUE),
            "lambda_invocations_url": self.runtime.invocations_url if self.runtime else None,
            "aws_faults_url": f"{self.endpoint_url}{AWS_FAULTS_PATH}",
        }

    def stack_outputs(self) -> dict:
        """The template's Outputs by name, resolved as CloudFormation would (`describe-stacks`)."""
        return self._fix(dict(self.template.outputs))

    @property
    def input_bucket(self) -> str:
        return self.outputs()["input_bucket"]

    @property
    def input_prefix(self) -> str:
        return self.outputs()["input_prefix"]

    @property
    def output_bucket(self) -> str:
        return self.outputs()["output_bucket"]

    def upload(self, body: bytes, key: str, metadata: dict | None = None, content_type: str = "image/jpeg") -> dict:
        """Put an object into the input bucket (the S3 notification starts the pipeline)."""
        return self.client("s3").put_object(
            Bucket=self.input_bucket,
            Key=key,
            Body=body,
            Metadata={k: str(v) for k, v in (metadata or {}).items()},
            ContentType=content_type,
        )

    def invoke(self, logical_id: str, event: Any, invocation_type: str = "RequestResponse") -> dict:
        """Invoke a function through moto's Lambda API (the same path `aws lambda invoke` takes)."""
        response = self.client("lambda").invoke(
            FunctionName=self.function_names[logical_id],
            InvocationType=invocation_type,
            Payload=json.dumps(event).encode(),
        )
        payload = response["Payload"].read()
        return {
            "StatusCode": response["StatusCode"],
            "FunctionError": response.get("FunctionError"),
            "Payload": json.loads(payload) if payload else None,
        }

    def wait_for_notification(self, key: str, timeout: float = 120) -> dict:
        """The outcome notification for an uploaded key."""
        return self.notifications.wait_for(lambda n: (n.get("source") or {}).get("key") == key, timeout)

    def notifications_for(self, key: str) -> list[dict]:
        return self.notifications.matching(lambda n: (n.get("source") or {}).get("key") == key)

    def events_for(self, key: str) -> list[dict]:
        return self.events.matching(lambda e: ((e.get("detail") or {}).get("source") or {}).get("key") == key)

    def email_messages(self) -> list[dict]:
        """What SNS would have emailed: {"subject", "body", "attributes"} per delivered message.

        moto accepts email subscriptions but sends nothing; this reads the topic's published
        messages and applies each email subscription's filter policy, as SNS would.
        """
        out = []
        for topic_res in self.template.of_type("AWS::SNS::Topic"):
            published, subs = moto_internals.sns_published(ACCOUNT_ID, REGION, topic_res.ref)
            for _message_id, message, subject, attributes, _group in published:
                for sub in subs:
                    if not sub.matches(attributes, message):
                        continue
                    try:
                        structured = json.loads(message)
                        body = (
                            structured.get("email", structured.get("default"))
                            if isinstance(structured, dict)
                            else message
                        )
                    except ValueError:
                        body = message
                    out.append({"endpoint": sub.endpoint, "subject": subject, "body": body, "attributes": attributes})
        return out

    def emulator_jobs(self) -> list[dict]:
        response = requests.get(f"{self.emulator.url}/_emulator/jobs", timeout=10)
        response.raise_for_status()
        body = response.json()
        return body["jobs"] if isinstance(body, dict) and "jobs" in body else body

    def set_faults(self, faults: dict) -> dict:
        response = requests.post(f"{self.emulator.url}/_emulator/faults", json=faults, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_aws_faults(self, specs: list[str], seed: int | None = None) -> dict:
        """Replace the injected AWS faults (an empty list clears them); returns what is now set."""
        self.aws_faults.set(specs, seed=seed)
        return self.aws_faults.describe()

    def settle(self, timeout: float = 30) -> None:
        """Wait until no execution runs and no async invocation is queued (for exact counts)."""
        sfn = self.client("stepfunctions")
        arns = [
            r.ref for r in self.template.of_type("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
        ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [
                e
                for arn in arns
                for e in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
            ]
            if not running and self.runtime.idle():
                return
            time.sleep(0.5)
        raise TimeoutError("the stack did not settle")


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None
