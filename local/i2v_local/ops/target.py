"""Where the operator's commands point: a deployed stack or the running local stack.

Both resolve to the same thing, a ``Target``: the stack's CloudFormation Outputs by their
template names (``InputBucketName``, ``JobsTableName``, ...) and a factory of boto3 clients.
After that no command knows which kind of stack it talks to, so the output is identical.

* ``--stack NAME``: ``DescribeStacks`` with the user's credentials and region (``--region``,
  ``--profile`` or the usual AWS environment and configuration).
* ``--local``: the file ``i2v local up`` writes in its working directory
  (``.i2v/local.json``) while it runs, and removes when it stops.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LOCAL_FILE = Path(".i2v") / "local.json"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


class TargetError(Exception):
    """The stack cannot be found or reached (exit code 4)."""


@dataclass
class Target:
    name: str
    outputs: dict
    region: str
    endpoint_url: str | None = None
    profile: str | None = None
    _clients: dict = field(default_factory=dict, repr=False)

    def client(self, service: str):
        if service not in self._clients:
            if self.endpoint_url:
                self._clients[service] = boto3.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=_CONFIG,
                    **LOCAL_CREDENTIALS,
                )
            else:
                session = boto3.Session(profile_name=self.profile, region_name=self.region)
                self._clients[service] = session.client(service, config=_CONFIG)
        return self._clients[service]

    def output(self, name: str, required: bool = True) -> str | None:
        value = self.outputs.get(name)
        if required and not value:
            raise TargetError(
                f"stack {self.name} has no output {name}: update the stack to this version of template.yaml"
            )
        return value


def outputs_of_stack(cloudformation, stack_name: str) -> dict:
    """{OutputKey: OutputValue} of a deployed stack; TargetError when there is no such stack."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        raise TargetError(f"stack {stack_name}: {message}") from None
    except BotoCoreError as exc:
        raise TargetError(f"stack {stack_name}: {exc}") from None
    if not stacks:
        raise TargetError(f"stack {stack_name} does not exist")
    stack = stacks[0]
    status = stack.get("StackStatus", "")
    if (status.endswith("_FAILED") and not stack.get("Outputs")) or status == "DELETE_COMPLETE":
        raise TargetError(f"stack {stack_name} is {status}")
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}


def from_stack(stack_name: str, *, region: str | None = None, profile: str | None = None) -> Target:
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:
        raise TargetError(str(exc)) from None
    region = session.region_name
    if not region:
        raise TargetError("no AWS region: pass --region or set AWS_REGION / a profile's region")
    outputs = outputs_of_stack(session.client("cloudformation", config=_CONFIG), stack_name)
    return Target(name=stack_name, outputs=outputs, region=region, profile=profile)


def write_local_file(info: dict, directory: Path | None = None) -> Path:
    """Written by `i2v local up` once the stack is ready."""
    path = (directory or Path.cwd()) / LOCAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**info, "pid": os.getpid()}, indent=2) + "\n")
    temporary.replace(path)
    return path


def remove_local_file(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def from_local(path: Path | None = None) -> Target:
    path = path or Path.cwd() / LOCAL_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(
            f"no local stack: {path} not found (start one with `i2v local up` in this directory)"
        ) from None
    except ValueError as exc:
        raise TargetError(f"{path} is not readable JSON: {exc}") from None
    pid = info.get("pid")
    if pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            raise TargetError(f"the local stack that wrote {path} (pid {pid}) is no longer running") from None
        except PermissionError:
            pass
    return Target(
        name="local",
        outputs=dict(info.get("outputs") or {}),
        region=info.get("region", "us-east-1"),
        endpoint_url=info["endpoint_url"],
    )
