"""Forked execution environments are what ``python -m awslambdaric HANDLER`` would be.

Each case runs the same handler once in a forked environment and once in a fresh
interpreter (``fork_server=False``) and expects the same view of the world: working
directory, ``sys.path`` order, exactly the function's environment, a handler module imported
in the environment itself (module state is per environment), its own random state (jitter
differs between environments), and an exit status reported like ``Popen.returncode``.
"""

import json
import os
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from i2v_local.lambda_runtime import FunctionSpec, LambdaRuntime

HANDLER = textwrap.dedent(
    """
    import os
    import random
    import sys

    IMPORTED_IN = os.getpid()
    CALLS = []


    def handler(event, context):
        if event.get("exit") is not None:
            os._exit(event["exit"])
        CALLS.append(1)
        return {
            "cwd": os.getcwd(),
            "path": sys.path[:3],
            "environ": dict(os.environ),
            "imported_in": IMPORTED_IN,
            "pid": os.getpid(),
            "calls": len(CALLS),
            "jitter": random.random(),
            "remaining_ms": context.get_remaining_time_in_millis(),
            "niceness": os.nice(0),
        }
    """
)


@pytest.fixture(params=[True, False], ids=["forked", "fresh-interpreter"])
def runtime(request, tmp_path: Path):
    code, layer = tmp_path / "code", tmp_path / "layer"
    code.mkdir()
    layer.mkdir()
    (code / "app.py").write_text(HANDLER)
    runtime = LambdaRuntime(default_concurrency=4, fork_server=request.param)
    runtime.register(
        FunctionSpec("Probe", "probe", code, "app.handler", environment={"ONLY_HERE": "yes"}, layers=[layer])
    )
    runtime.start(patch_moto=False)
    yield runtime
    runtime.stop()


def test_an_environment_sees_what_python_m_awslambdaric_would(runtime):
    spec = runtime.spec("probe")
    result = runtime.invoke("probe", {})
    assert not result.error, result.payload
    seen = result.payload
    assert seen["cwd"] == str(spec.code_uri)
    # `python -m` puts the working directory first, then PYTHONPATH: task root, then layers.
    assert seen["path"] == [str(spec.code_uri), str(spec.code_uri), str(spec.layers[0])]
    assert seen["environ"]["ONLY_HERE"] == "yes"
    assert seen["environ"]["AWS_LAMBDA_FUNCTION_NAME"] == "probe"
    assert seen["imported_in"] == seen["pid"]  # the handler module loads in the environment
    assert 0 < seen["remaining_ms"] <= spec.timeout * 1000
    expected = runtime.process_environment(spec, "x")
    # Exactly the function's variables, plus the trace id awslambdaric sets per invocation.
    assert set(seen["environ"]) - {"LC_CTYPE", "_X_AMZN_TRACE_ID"} == set(expected)


def test_environments_have_their_own_module_state_and_random_state(runtime):
    barrier = threading.Barrier(3)

    def call(_):
        barrier.wait()
        return runtime.invoke("probe", {}, wait_for_capacity=True).payload

    with ThreadPoolExecutor(3) as pool:
        seen = list(pool.map(call, range(3)))
    assert len({s["pid"] for s in seen}) == 3
    assert all(s["calls"] == 1 for s in seen)
    assert len({s["jitter"] for s in seen}) == 3
    again = runtime.invoke("probe", {}).payload
    assert again["calls"] == 2  # a warm environment keeps its module state


def test_an_exiting_environment_reports_its_status(runtime):
    result = runtime.invoke("probe", {"exit": 3})
    assert result.error
    assert result.payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in result.payload["errorMessage"], json.dumps(result.payload)
    assert not runtime.invoke("probe", {}).error  # replaced by a cold one


def test_environments_yield_the_cores_by_the_niceness_asked_for(tmp_path: Path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    for fork_server in (True, False):
        runtime = LambdaRuntime(fork_server=fork_server, environment_niceness=3)
        runtime.register(FunctionSpec("Probe", "probe", code, "app.handler"))
        runtime.start(patch_moto=False)
        try:
            seen = runtime.invoke("probe", {}).payload
        finally:
            runtime.stop()
        assert seen["niceness"] == os.nice(0) + 3


DATA_PROBE = textwrap.dedent(
    """
    import boto3
    import botocore.loaders

    READ = []
    _load_file = botocore.loaders.JSONFileLoader.load_file


    def _counting(self, file_path):
        READ.append(file_path)
        return _load_file(self, file_path)


    botocore.loaders.JSONFileLoader.load_file = _counting


    def handler(event, context):
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        return {
            "files_read": len(READ),
            "region": dynamodb.meta.region_name,
            "operations": len(dynamodb.meta.service_model.operation_names),
            "endpoint": dynamodb.meta.endpoint_url,
        }
    """
)


def test_a_forked_environment_finds_botocores_data_already_parsed(tmp_path: Path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(DATA_PROBE)
    seen = {}
    for fork_server in (True, False):
        runtime = LambdaRuntime(fork_server=fork_server)
        runtime.register(FunctionSpec("Probe", "probe", code, "app.handler"))
        runtime.start(patch_moto=False)
        try:
            seen[fork_server] = runtime.invoke("probe", {}).payload
        finally:
            runtime.stop()
    assert seen[False]["files_read"] > 0  # a fresh interpreter parses the model, rules, partitions
    assert seen[True]["files_read"] == 0  # the fork server parsed them once for every environment
    # The client itself is the same: made in the environment, from its own settings.
    assert {k: v for k, v in seen[True].items() if k != "files_read"} == {
        k: v for k, v in seen[False].items() if k != "files_read"
    }
    assert seen[True]["region"] == "eu-west-1"
