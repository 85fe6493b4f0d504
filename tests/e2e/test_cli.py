"""The `i2v` CLI: `local run` (in-process) and `local up` (a real subprocess, stopped by SIGTERM)."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from i2v_local import cli
from i2v_local.media import probe
from tests.e2e.helpers import jpeg

pytestmark = pytest.mark.e2e

SAMPLE = Path(cli.__file__).parent / "samples" / "harbour.jpg"
UP_KEYS = {
    "endpoint_url",
    "input_bucket",
    "input_prefix",
    "output_bucket",
    "topic_arn",
    "notifications_queue_url",
    "state_machine_arn",
    "functions",
    "emulator_url",
    "webhook_url",
    "webhook_secret",
    "events_queue_url",
    "lambda_invocations_url",
}
UP_KEYS |= {"aws_faults_url"}


def test_sample_image_is_small_and_1280x720():
    from PIL import Image

    assert SAMPLE.stat().st_size < 150 * 1024
    with Image.open(SAMPLE) as image:
        assert image.format == "JPEG" and image.size == (1280, 720)


def test_run_writes_video_thumbnail_manifest_and_notification(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "local",
            "run",
            str(SAMPLE),
            "--out",
            str(out),
            "--prompt",
            "gulls circle the lighthouse",
            "--render-seconds",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "EMULATOR" in captured.err
    notification = json.loads((out / "notification.json").read_text())
    assert notification["status"] == "succeeded"
    assert notification["options"]["prompt"] == "gulls circle the lighthouse"
    names = sorted(p.suffix for p in out.iterdir())
    assert names == [".jpg", ".json", ".json", ".mp4"]
    assert probe(next(out.glob("*.mp4")))["codec"] == "h264"
    assert json.loads(captured.out.strip().splitlines()[-1])["status"] == "succeeded"


def test_run_failure_exits_non_zero_with_the_reason(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["local", "run", str(SAMPLE), "--out", str(out), "--option", "duration=7"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED InvalidOption" in captured.err
    assert json.loads((out / "notification.json").read_text())["error"]["code"] == "InvalidOption"
    assert not list(out.glob("*.mp4"))


def test_run_missing_image_exits_2(tmp_path, capsys):
    assert cli.main(["local", "run", str(tmp_path / "nope.jpg"), "--out", str(tmp_path)]) == 2


class _Lines:
    """Lines of a child's stdout, read by a thread so every read can time out."""

    def __init__(self, stream, stderr_path):
        self._stderr_path = stderr_path
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def next(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout:.0f} s; stderr:\n{self._stderr_tail()}") from None
        assert line is not None, f"the process closed its output; stderr:\n{self._stderr_tail()}"
        return line

    def _stderr_tail(self) -> str:
        return "\n".join(self._stderr_path.read_text(errors="replace").splitlines()[-40:])


def test_up_prints_one_json_line_serves_uploads_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # stderr goes to a file: an unread pipe would block the child once it filled.
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "i2v_local.cli",
                "local",
                "up",
                "--render-seconds",
                "1",
                # A fault on a call the pipeline never makes: the flags reach the stack, the upload is unaffected.
                "--aws-fault",
                "s3:ListBuckets:SlowDown:1",
                "--aws-fault-seed",
                "7",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    try:
        lines = _Lines(proc.stdout, stderr_path)
        info = json.loads(lines.next(timeout=60))
        assert set(info) == UP_KEYS
        assert info["webhook_secret"].startswith("whsec_")
        assert info["functions"]["SubmitFunction"]
        faults = requests.get(info["aws_faults_url"], timeout=10).json()
        assert faults["faults"] == ["s3:ListBuckets:SlowDown:1"] and faults["seed"] == 7
        no_retries = Config(retries={"mode": "standard", "total_max_attempts": 1})
        listing = boto3.client(
            "s3",
            endpoint_url=info["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=no_retries,
        )
        with pytest.raises(ClientError, match="SlowDown"):
            listing.list_buckets()
        s3 = boto3.client(
            "s3",
            endpoint_url=info["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        key = f"{info['input_prefix']}from the cli.jpg"
        s3.put_object(Bucket=info["input_bucket"], Key=key, Body=jpeg(), Metadata={"prompt": "drift"})
        line = json.loads(lines.next(timeout=120))  # printed as it arrives
        assert line["notification"]["source"]["key"] == key
        assert line["notification"]["status"] == "succeeded"
        # The documented queue is the user's: it holds the notification `up` just printed.
        sqs = boto3.client(
            "sqs",
            endpoint_url=info["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        received = sqs.receive_message(
            QueueUrl=info["notifications_queue_url"], WaitTimeSeconds=5, MaxNumberOfMessages=10
        )
        assert [json.loads(m["Body"])["source"]["key"] for m in received.get("Messages", [])] == [key]
        # Every Lambda invocation is recorded, with what GB-seconds need.
        deadline = time.monotonic() + 20  # the store function's record lands once it has returned
        while True:
            records = requests.get(info["lambda_invocations_url"], timeout=10).json()["invocations"]
            if {"SubmitFunction", "StoreFunction"} <= {r["function"] for r in records} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {"SubmitFunction", "StoreFunction"} <= {r["function"] for r in records}
        assert all(r["duration_ms"] >= 0 and r["memory_mb"] > 0 and isinstance(r["cold"], bool) for r in records)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    err = stderr_path.read_text()
    assert proc.returncode == 0, err
    assert "EMULATOR" in err


def test_aws_fault_flags_are_checked_before_anything_starts(capsys):
    args = cli._parser().parse_args(
        [
            "local",
            "up",
            "--aws-fault",
            "sns:Publish:Throttled:0.1",
            "--aws-fault",
            "stepfunctions:StartExecution:ThrottlingException:0.05",
            "--aws-fault-seed",
            "3",
        ]
    )
    assert args.aws_fault == ["sns:Publish:Throttled:0.1", "states:StartExecution:ThrottlingException:0.05"]
    assert args.aws_fault_seed == 3
    with pytest.raises(SystemExit) as exited:
        cli._parser().parse_args(["local", "up", "--aws-fault", "sns:Publish:Throttled:often"])
    assert exited.value.code == 2
    assert "rate 'often' is not a number" in capsys.readouterr().err
