"""The layer ships a self-consistent AWS SDK that wins over whatever boto3 the runtime has.

On Lambda /opt/python (the layer) comes before the runtime's boto3. A layer that carries
botocore (aws-xray-sdk pulls it in) without its boto3 and s3transfer mixes SDK versions and
fails at import once the runtime's boto3 moves on (ImportError: cannot import name
'DEFAULT_CHECKSUM_ALGORITHM'). These tests install the layer's requirements, put a different
boto3 behind them as the runtime would, and import every handler.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "layers" / "i2v" / "requirements.txt"
# The "runtime's" SDK: a different release line from the layer's.
RUNTIME_SDK = ["boto3==1.35.36", "botocore==1.35.36", "s3transfer==0.10.4"]


def pinned():
    """name -> version (tests/unit/test_lock.py checks the file against the lock and pyproject.toml)."""
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][^\s;#]*)", line.split("#")[0].strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def pip_install(target, *args):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(target),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr


PROBE = r"""
import importlib.util, json, sys
from pathlib import Path
layer, runtime, repo = sys.argv[1:4]
# Lambda's order: the function's code, then the layer, then the runtime's packages.
sys.path[:0] = [layer, runtime]
import boto3, botocore, s3transfer
from importlib.metadata import distribution
versions = {name: distribution(name).version for name in ("boto3", "botocore", "s3transfer")}
requires = distribution("boto3").requires or []
for name in ("s3", "dynamodb", "sns", "sqs", "events", "secretsmanager", "stepfunctions"):
    boto3.client(name, region_name="us-east-1")
handlers = []
for app in sorted(Path(repo, "functions").glob("*/app.py")):
    spec = importlib.util.spec_from_file_location(f"handler_{app.parent.name}", app)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(app.parent))
    spec.loader.exec_module(module)
    sys.path.remove(str(app.parent))
    assert callable(module.lambda_handler)
    handlers.append(app.parent.name)
print(json.dumps({"files": {m.__name__: m.__file__ for m in (boto3, botocore, s3transfer)},
                  "versions": versions, "requires": requires, "handlers": handlers}))
"""


@pytest.mark.slow
def test_every_handler_imports_with_the_layer_in_front_of_a_different_boto3(tmp_path):
    layer, runtime = tmp_path / "opt-python", tmp_path / "runtime"
    # The layer's requirements for this machine (the Makefile fetches the same for arm64 / 3.12).
    pip_install(layer, "-r", str(REQUIREMENTS))
    (layer / "i2v").symlink_to(REPO / "layers" / "i2v" / "i2v")
    pip_install(runtime, "--no-deps", *RUNTIME_SDK)
    # -S: no site-packages of this virtualenv, only the standard library and the two directories.
    result = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(layer), str(runtime), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for name, path in found["files"].items():
        assert Path(path).is_relative_to(layer), f"{name} came from {path}, not the layer"
    assert found["versions"]["boto3"] == pinned()["boto3"]
    # The boto3 that is imported accepts the botocore and s3transfer beside it.
    versions = found["versions"]
    for requirement in map(Requirement, found["requires"]):
        if requirement.marker is None and requirement.name in versions:
            assert requirement.specifier.contains(versions[requirement.name], prereleases=True), (requirement, versions)
    assert found["handlers"] == sorted(p.parent.name for p in (REPO / "functions").glob("*/app.py"))
