"""The commands as a release engineer runs them: `albgate start --wait` and `albgate watch` in their own
processes, against moto running as a local server (``ThreadedMotoServer``) that the AWS SDK reaches through
``AWS_ENDPOINT_URL``, the standard way to point every client at another endpoint. Credentials and Region come
from the environment, as the ordinary credential chain reads them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from tests.cli.conftest import REGION, ROLE, SEED_FLAGS, definition

ALBGATE = shutil.which("albgate", path=str(Path(sys.executable).parent))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(no_aws: Path) -> Iterator[dict[str, str]]:
    """A moto server in its own process (its backends and config are process-wide: sharing them would leak into
    the other tests' in-process mocks), executing Step Functions definitions; yields the environment a user's
    shell would have."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.post(f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                              timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
                   AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true",
                   AWS_CONFIG_FILE=os.environ["AWS_CONFIG_FILE"],
                   AWS_SHARED_CREDENTIALS_FILE=os.environ["AWS_SHARED_CREDENTIALS_FILE"])
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def _state_machine(env: dict[str, str], end: str) -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return sfn.create_state_machine(name=f"Rollout-{end}", definition=json.dumps(definition(end)),
                                    roleArn=ROLE)["stateMachineArn"]


def _albgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert ALBGATE, "the albgate console script is installed in the venv (pip install -e .)"
    return subprocess.run([ALBGATE, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(("end", "code", "verdict"), [("succeed", 0, "SUCCEEDED"), ("rolled-back", 3, "ROLLED BACK")])
def test_start_wait_in_a_process_follows_the_execution_and_exits_with_its_outcome(moto_server, end, code, verdict):
    # Given a deployed rollout state machine / When a release engineer starts a rollout and waits
    arn = _state_machine(moto_server, end)
    proc = _albgate(moto_server, "start", *SEED_FLAGS, "--state-machine-arn", arn, "--wait", "--poll-seconds", "0.2")
    # Then it prints the execution, follows its states and exits with the outcome's code
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Check Target Health" in proc.stdout and verdict in proc.stdout
    assert "console.aws.amazon.com/states/home" in proc.stdout


def test_watch_in_a_process_with_json_ends_with_the_summary(moto_server):
    # Given an execution started by someone else
    arn = _state_machine(moto_server, "succeed")
    started = _albgate(moto_server, "start", *SEED_FLAGS, "--state-machine-arn", arn, "--json")
    assert started.returncode == 0, started.stderr
    execution = json.loads(started.stdout)["executionArn"]
    # When it is watched in another process with --json
    proc = _albgate(moto_server, "watch", execution, "--json", "--poll-seconds", "0.2")
    # Then every line is JSON, the last one the summary with the exit code
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and lines[-1]["type"] == "Summary" and lines[-1]["status"] == "SUCCEEDED"


def test_preflight_in_a_process_reports_the_seed_apps_risks_as_json(no_aws):
    # Given the example app on the simulated cluster (no AWS needed) / When a user runs the report with --json
    seed_app = str(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run([ALBGATE, "preflight", "--simulate", seed_app, "--namespace", "readiness",
                           "--deployment", "nginx-app", "--json"], capture_output=True, text=True, env=env, timeout=120)
    # Then it exits 1 (error-level risks) with one JSON object listing each risk with its fix
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["exit_code"] == 1, proc.stderr
    assert report["risks"] and all(r["fix"] for r in report["risks"])
