"""The template passes the ecosystem's own checks: cfn-lint, `sam validate --lint` and `sam build`.

All three run offline apart from pip fetching the layer's arm64 wheels from the package index.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def run(*args, cwd=REPO, timeout=600):
    env = dict(os.environ, SAM_CLI_TELEMETRY="0", PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_cfn_lint_is_clean():
    result = run(str(VENV_BIN / "cfn-lint"), "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean():
    result = run(str(VENV_BIN / "sam"), "validate", "--lint", "--template", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.slow
def test_sam_build_produces_every_function_and_an_arm64_layer(tmp_path):
    build_dir = tmp_path / "build"
    result = run(
        str(VENV_BIN / "sam"),
        "build",
        "--template",
        "template.yaml",
        "--build-dir",
        str(build_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for function in ("SubmitFunction", "PollFunction", "StoreFunction", "NotifyFailureFunction"):
        assert (build_dir / function / "app.py").exists()
    layer = build_dir / "SharedLayer" / "python"
    assert (layer / "i2v" / "errors.py").exists()
    native = list((layer / "PIL").glob("_imaging.*.so"))
    assert native and all("cpython-312-aarch64-linux-gnu" in p.name for p in native)
    assert not list(layer.rglob("__pycache__"))
