"""Fixtures for the albgate command tests: an AWS environment with no real credentials, moto's Step Functions
and CloudFormation in-process, and state machines whose Pass/Wait/Fail/Succeed states are named like the real
workflow's (stacks/constructs/rollout_workflow.py) and carry rollout states shaped like lambdas/domain/state.py.

Invariant: nothing here can reach AWS: the environment points the credential chain at empty files, turns the
instance metadata off, and moto answers every call made inside ``moto_aws``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/albgate-rollout"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp@sha256:" + "a" * 64
SEED_INPUT = {"cluster": "my-cluster", "namespace": "readiness", "deployment": "nginx-app", "container": "nginx",
              "image": IMAGE, "policy": {"steps": [1, "25%", "50%", "100%"], "bake_seconds": 60, "harden": True}}
SEED_FLAGS = ["--cluster", "my-cluster", "--namespace", "readiness", "--deployment", "nginx-app",
              "--container", "nginx", "--image", IMAGE]


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No credentials and no Region anywhere in the chain (empty config files, no IMDS)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)
    for var, name in (("AWS_SHARED_CREDENTIALS_FILE", "credentials"), ("AWS_CONFIG_FILE", "config")):
        path = tmp_path / f"aws-{name}"
        path.write_text("")
        monkeypatch.setenv(var, str(path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


@pytest.fixture
def aws_env(no_aws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a Region, as a configured user has them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    """moto with Step Functions executing the definitions (Pass/Wait/Fail/Succeed only: no Lambda)."""
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


def rollout_state(step: int, gate: str = "WAITING", drain: str = "WAITING", mode: str = "rollout",
                  healthy: int = 0, **extra: Any) -> dict[str, Any]:
    """The parts of a RolloutState the watcher reads."""
    return {"step": step, "plan": [1, 2, 3], "mode": mode, "wait_seconds": 0, "bake_seconds": 0,
            "gate": {"status": gate, "reason": f"{healthy} of 1 new pod(s) healthy in every target group",
                     "healthy": healthy, "needed": 1},
            "drain": {"status": drain, "reason": "old targets out of every target group's pool" if drain == "PASSED"
                      else "old pods released"},
            "outcome": "in_progress", "failure_summary": "", **extra}


def _pass(result: dict[str, Any], nxt: str) -> dict[str, Any]:
    return {"Type": "Pass", "Result": result, "Next": nxt}


def definition(end: str) -> dict[str, Any]:
    """One step of the real workflow's shape, ending in ``end``: succeed, rolled-back or failed."""
    states: dict[str, Any] = {
        "Preflight": _pass(rollout_state(-1), "Start Step"),
        "Start Step": _pass(rollout_state(0), "Check Target Health"),
        "Check Target Health": _pass(rollout_state(0), "Targets Healthy?"),
        "Targets Healthy?": {"Type": "Choice", "Choices": [
            {"Variable": "$.gate.status", "StringEquals": "PASSED", "Next": "Release Old Pods"}],
            "Default": "Wait For Health Check"},
        "Wait For Health Check": {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "Check Target Health Again"},
        "Check Target Health Again": _pass(rollout_state(0, gate="PASSED", healthy=1), "Release Old Pods"),
        "Release Old Pods": _pass(rollout_state(0, gate="PASSED", healthy=1), "Verify Drain"),
        "Verify Drain": _pass(rollout_state(0, gate="PASSED", drain="PASSED", healthy=1), "End"),
    }
    if end == "succeed":
        states["End"] = _pass(rollout_state(2, gate="PASSED", drain="PASSED", healthy=1, outcome="succeeded"),
                              "Rollout Succeeded")
        states["Rollout Succeeded"] = {"Type": "Succeed"}
    elif end == "rolled-back":
        states["End"] = _pass(rollout_state(0, mode="rollback", outcome="rolled_back"), "Rollout Rolled Back")
        states["Rollout Rolled Back"] = {"Type": "Fail", "Error": "RolledBack",
                                         "Cause": "step 2 gate FAILED: 0 of 1 new pod(s) healthy"}
    else:
        states["End"] = _pass(rollout_state(0), "Rollout Failed")
        states["Rollout Failed"] = {"Type": "Fail", "Error": "DrainNotVerified", "Cause": "old targets still routable"}
    return {"StartAt": "Preflight", "States": states}


def create_state_machine(end: str = "succeed", name: str = "Rollout") -> str:
    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    return sfn.create_state_machine(name=name, definition=json.dumps(definition(end)), roleArn=ROLE)["stateMachineArn"]


def create_stack(outputs: dict[str, str], name: str = "Albgate") -> None:
    """A tiny stack (one SNS topic) whose outputs are ``outputs``."""
    import boto3

    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=name, TemplateBody=json.dumps(template))
