"""The lock, the layer's requirements and pyproject.toml agree (`make lock` writes the first two)."""

import re
import tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures import REPO_ROOT

LOCK = REPO_ROOT / "requirements" / "dev.lock"
LAYER = REPO_ROOT / "layers" / "i2v" / "requirements.txt"
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)\s*(?:;\s*([^#]+))?")
# Where the layer runs: Lambda's python3.12 on arm64.
LAMBDA = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}


def pins(path, environment=None):
    """name -> version, for the lines whose marker holds in `environment` (every line if None)."""
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        if environment is not None and marker and not Marker(marker).evaluate(environment):
            continue
        found.setdefault(canonicalize_name(name), set()).add(version)
    return found


def test_every_line_of_the_layer_requirements_is_an_exact_pin():
    lines = [line for line in LAYER.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines
    for line in lines:
        assert PIN.match(line), f"not an exact pin: {line}"


def test_the_layer_pins_what_the_lock_pins_for_lambda():
    lock = pins(LOCK, LAMBDA)
    for name, (version,) in pins(LAYER).items():
        assert lock.get(name) == {version}, (
            f"{name}=={version} in the layer, {lock.get(name)} in the lock: run make lock"
        )


def test_the_layer_pins_every_runtime_dependency_within_its_range():
    layer = pins(LAYER)
    for requirement in map(Requirement, PROJECT["dependencies"]):
        (version,) = layer[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_the_lock_pins_every_dependency_of_every_extra_within_its_range():
    lock = pins(LOCK)
    requirements = [
        *PROJECT["dependencies"],
        *(r for extra in PROJECT["optional-dependencies"].values() for r in extra),
    ]
    for requirement in map(Requirement, requirements):
        if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
            continue  # the dev extra's reference to the local extra
        versions = lock.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in {LOCK.name}: run make lock"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{requirement} vs {version}: run make lock"
            )


def test_the_layer_carries_boto3_botocore_and_s3transfer_released_together():
    layer = pins(LAYER)
    assert {"boto3", "botocore", "s3transfer"} <= set(layer)
    # boto3 and botocore are released in step under the same version number.
    assert layer["boto3"] == layer["botocore"]
