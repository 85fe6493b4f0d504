"""Every command in README.md and docs/ that can run against the local stack is run here.

A command in the docs is a promise: the `aws`, `curl`, `i2v bucket` and operator (`i2v submit`,
`jobs`, `show`, `redrive`, `cost` with `--local`, found through `.i2v/local.json`) lines of every shell
block are run through bash (so quoting is the shell's, as for a reader pasting them) against
an embedded local stack. `<name>` placeholders take the values of `i2v local up`'s JSON line
(and the README's `<InputBucketName>` / `<OutputBucketName>` the stack's buckets); an `aws`
or `i2v bucket` command without `--endpoint-url` gets the stack's. `$E` is the moto endpoint,
except on docs/emulator.md, where it is the emulator's.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from i2v_local.ops.target import write_local_file
from i2v_local.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SAMPLE = REPO / "local" / "i2v_local" / "samples" / "harbour.jpg"
VENV_BIN = Path(sys.executable).parent
RUNNABLE = re.compile(r"^(aws|curl|(?:\.venv/bin/)?i2v (?:bucket|submit|jobs|show|redrive|cost))\s")
README_UPLOAD_KEY = "uploads/photo.jpg"


def shell_blocks(path):
    """The contents of the fenced blocks that hold shell commands (sh, bash or unlabeled)."""
    blocks, current, language = [], None, None
    for line in path.read_text().splitlines():
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and current is None:
            current, language = [], fence.group(1)
        elif fence:
            if language in ("sh", "bash", ""):
                blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(path):
    found = []
    for block in shell_blocks(path):
        lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
        found += [line for line in lines if RUNNABLE.match(line)]
    return found


ALL_COMMANDS = {path.relative_to(REPO).as_posix(): commands(path) for path in DOCS}


def test_the_docs_have_the_commands_this_test_is_about():
    readme = ALL_COMMANDS["README.md"]
    assert any(c.startswith("aws s3 cp ") and "--metadata" in c for c in readme)
    assert any(c.startswith("i2v bucket purge ") for c in readme)
    assert any(c.startswith("i2v submit --local ") and "--wait" in c for c in readme)
    assert {c.split()[1] for c in readme if c.startswith("i2v ")} >= {"submit", "jobs", "show", "redrive", "cost"}
    assert any(c.startswith("aws ") for c in ALL_COMMANDS["docs/local-stack.md"])
    assert any(c.startswith("curl ") for c in ALL_COMMANDS["docs/emulator.md"])


@pytest.fixture(scope="module")
def stack():
    # The README stores the provider key under the template's default name: the local stack
    # seeds its emulator key under another, so the README's create-secret can run as written.
    with LocalStack(
        provider="nohuman", render_seconds=1, quiet=True, params={"ProviderApiKeySecretName": "i2v-local/provider-key"}
    ) as s:
        yield s


def substitute(command, values):
    for name, value in values.items():
        command = command.replace(f"<{name}>", value)
    leftover = re.findall(r"<[A-Za-z_]+>", command)
    assert not leftover, f"unknown placeholder {leftover} in: {command}"
    if re.match(r"aws\s", command) and "--endpoint-url" not in command:
        command = "aws --endpoint-url " + values["endpoint_url"] + command[3:]
    if " bucket " in command and "--endpoint-url" not in command:
        command = re.sub(r"\s+#.*$", "", command) + " --endpoint-url " + values["endpoint_url"]
    return command


def run(command, cwd, env):
    result = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"{command}\nexit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )
    return result


def test_every_command_in_the_docs_runs_against_the_local_stack(stack, tmp_path):
    info = stack.outputs()
    values = {key: str(value) for key, value in info.items() if isinstance(value, str)}
    values.update(InputBucketName=info["input_bucket"], OutputBucketName=info["output_bucket"])
    shutil.copy(SAMPLE, tmp_path / "photo.jpg")
    shutil.copytree(REPO / "events", tmp_path / "events")
    # The README's operator walk-through: a folder of photos, one more image, and the stack's file.
    (tmp_path / "photos").mkdir()
    for name in ("harbour.jpg", "lighthouse.jpg", "quay.jpg", "../bay.jpg"):
        shutil.copy(SAMPLE, tmp_path / "photos" / name)
    write_local_file(
        {"endpoint_url": stack.endpoint_url, "region": "us-east-1", "outputs": stack.stack_outputs()}, tmp_path
    )
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_PAGER": "",
        "NOHUMAN_KEY": "key-from-the-provider-dashboard",
        "NANOBANANA_KEY": "another-key-from-the-other-dashboard",
    }
    s3 = stack.client("s3")
    ran, purges = [], []
    for doc, doc_commands in ALL_COMMANDS.items():
        doc_env = dict(env, E=info["emulator_url"] if doc == "docs/emulator.md" else info["endpoint_url"])
        for command in doc_commands:
            if " bucket purge " in f" {command}":
                purges.append((command, doc_env))  # last: they delete the buckets the others use
                continue
            run(substitute(command, values), tmp_path, doc_env)
            ran.append(command)
        if doc == "README.md":
            # The README's upload keeps its prompt whole, commas included.
            metadata = s3.head_object(Bucket=info["input_bucket"], Key=README_UPLOAD_KEY)["Metadata"]
            assert metadata == {"prompt": "slow push in, golden hour", "duration": "10"}
            # ... and becomes a video (so the docs' `s3 ls .../videos/` lists something).
            note = stack.wait_for_notification(README_UPLOAD_KEY, timeout=180)
            assert note["status"] == "succeeded", note["error"]
            assert note["options"]["prompt"] == "slow push in, golden hour" and note["options"]["duration"] == 10
    assert len(ran) >= 15

    # Before the buckets go: let every job the commands started finish writing.
    stack.emulator.faults.reset()
    stack.settle(timeout=240)
    for command, doc_env in purges:
        run(substitute(command, values), tmp_path, doc_env)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert info["input_bucket"] not in names and info["output_bucket"] not in names


def test_the_old_shorthand_upload_splits_the_prompt(stack, tmp_path):
    """Why the README uses the JSON form: the shorthand cuts the prompt at its comma."""
    shutil.copy(SAMPLE, tmp_path / "photo.jpg")
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    old = 'aws s3 cp photo.jpg "s3://<InputBucketName>/uploads/" --metadata prompt="slow push in, golden hour",duration=10'
    values = {"endpoint_url": stack.endpoint_url, "InputBucketName": "i2v-docs-shorthand"}
    stack.client("s3").create_bucket(Bucket="i2v-docs-shorthand")
    result = subprocess.run(
        ["bash", "-c", substitute(old, values)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "prompt" in result.stderr  # the shorthand turned "slow push in, golden hour" into a list
