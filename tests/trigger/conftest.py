"""Fixtures of the ECR trigger tests: moto DynamoDB / Step Functions / EventBridge, a settable clock, samples.

Invariant: every AWS call of these tests goes to moto (no network); the event samples follow the documented
schemas (Amazon ECR user guide, "Amazon ECR events and EventBridge"; Step Functions developer guide,
"EventBridge for Step Functions execution status changes") and differ from them only in the field a test is about.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.adapters.dynamodb_lock import DynamoDbLock
from lambdas.adapters.eventbus import EventBusPublisher
from lambdas.adapters.stepfunctions import StepFunctionsExecutions, StepFunctionsStarter
from lambdas.domain.trigger_use_case import TriggerPorts
from lambdas.handlers.ecr_trigger import TriggerSettings

ACCOUNT = "123456789012"  # moto's default account: the state machine ARN it returns carries it
REGION = "us-east-1"
TABLE = "albgate-locks"
BUS = "albgate"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64

APPLICATIONS = [
    {"cluster": "prod", "namespace": "readiness", "deployment": "nginx-app", "container": "nginx",
     "ecr_repository": "myapp", "tag_pattern": "v*", "replicas": 3},
    {"cluster": "staging", "namespace": "readiness", "deployment": "nginx-app", "container": "nginx",
     "ecr_repository": "myapp", "tag_pattern": "*"},
    {"cluster": "prod", "namespace": "shop", "deployment": "cart", "container": "app",
     "ecr_repository": "team/cart", "tag_pattern": "release-[0-9]*"},
]
POLICY = {"steps": [1, "50%", "100%"], "bake_seconds": 0, "step_deadline_seconds": 900}


def ecr_event(
    *, action: str = "PUSH", result: str = "SUCCESS", repository: str = "myapp", digest: str = DIGEST_A,
    tag: str | None = "v2", account: str = ACCOUNT, region: str = REGION, time: str = "2025-01-01T10:00:00Z",
) -> dict[str, Any]:
    """The documented 'Event for a completed image push' sample, with this push's values."""
    detail: dict[str, Any] = {"result": result, "repository-name": repository, "image-digest": digest,
                              "action-type": action}
    if tag is not None:
        detail["image-tag"] = tag
    return {
        "version": "0", "id": "13cde686-328b-6117-af20-0e5566167482", "detail-type": "ECR Image Action",
        "source": "aws.ecr", "account": account, "time": time, "region": region, "resources": [],
        "detail": detail,
    }


def status_event(state_machine_arn: str, execution: dict[str, Any], status: str, *, error: str | None = None,
                 cause: str | None = None, include_input: bool = True) -> dict[str, Any]:
    """A 'Step Functions Execution Status Change' event for one execution, as EventBridge delivers it."""
    detail: dict[str, Any] = {
        "executionArn": execution["executionArn"], "stateMachineArn": state_machine_arn,
        "name": execution["name"], "status": status, "startDate": 1735725600000, "stopDate": 1735729200000,
        "input": execution["input"] if include_input else None,
        "output": "{}" if status == "SUCCEEDED" else None,
        "inputDetails": {"included": include_input}, "outputDetails": {"included": status == "SUCCEEDED"},
    }
    if error is not None:
        detail["error"] = error
        detail["cause"] = cause or ""
    return {
        "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states", "account": ACCOUNT,
        "time": "2025-01-01T11:00:00Z", "region": REGION, "resources": [execution["executionArn"]],
        "detail": detail,
    }


@dataclass
class Clock:
    t: float = 1_735_725_600.0  # 2025-01-01T10:00:00Z

    def now(self) -> float:
        return self.t


@dataclass
class RecordingBus:
    inner: EventBusPublisher
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        self.inner.publish(detail_type, detail, resources)
        self.events.append((detail_type, detail))

    def types(self) -> list[str]:
        return [t for t, _ in self.events]


@dataclass
class PushTimes:
    """ECR's imagePushedAt per image, as a test sets it (DescribeImages; unknown images: None)."""

    times: dict[str, float] = field(default_factory=dict)

    def pushed_at(self, image: str) -> float | None:
        return next((v for k, v in self.times.items() if image.endswith(k)), None)


@dataclass
class World:
    settings: TriggerSettings
    deps: TriggerPorts
    clock: Clock
    bus: RecordingBus
    sfn: Any
    ddb: Any
    state_machine_arn: str
    push_times: PushTimes = field(default_factory=PushTimes)

    def executions(self) -> list[dict[str, Any]]:
        listed = self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]
        out = []
        for e in sorted(listed, key=lambda e: e["startDate"]):
            d = self.sfn.describe_execution(executionArn=e["executionArn"])
            out.append({"name": d["name"], "executionArn": d["executionArn"], "input": d["input"],
                        "status": d["status"]})
        return out

    def lock(self, key: str) -> dict[str, Any] | None:
        return self.ddb.get_item(TableName=TABLE, Key={"lock_key": {"S": key}}, ConsistentRead=True).get("Item")

    def end(self, execution: dict[str, Any], status: str = "SUCCEEDED", **kw: Any) -> dict[str, Any]:
        """Stop the execution in moto and deliver its terminal status event to the execution-events handler."""
        from lambdas.handlers.execution_events import handle_execution_event

        # moto never finishes the trivial machine: close the execution (moto records ABORTED) so that a later
        # StartExecution of the same name answers ExecutionAlreadyExists, as Step Functions does once it ended
        if self.sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
            self.sfn.stop_execution(executionArn=execution["executionArn"])
        return handle_execution_event(status_event(self.state_machine_arn, execution, status, **kw),
                                      self.settings, self.deps)


def write_trigger_config(path: Path, applications: Any = APPLICATIONS, policy: Any = POLICY) -> Path:
    """The trigger's configuration file, as its layer holds it at /opt/albgate/trigger.json."""
    path.write_text(json.dumps({"applications": applications, "policy": policy}))
    return path


def settings_env(state_machine_arn: str, config_file: Path) -> dict[str, str]:
    return {
        "ALBGATE_STATE_MACHINE_ARN": state_machine_arn,
        "ALBGATE_LOCK_TABLE": TABLE,
        "ALBGATE_EVENT_BUS": BUS,
        "ALBGATE_TRIGGER_CONFIG": str(config_file),
    }


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def world(aws_env: None, tmp_path: Path) -> Any:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "lock_key", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "lock_key", "KeyType": "HASH"}],
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        arn = sfn.create_state_machine(
            name="Rollout", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name=BUS)
        settings = TriggerSettings.from_environ(settings_env(arn, write_trigger_config(tmp_path / "trigger.json")))
        clock = Clock()
        bus = RecordingBus(EventBusPublisher(BUS, client=events))
        push_times = PushTimes()
        deps = TriggerPorts(DynamoDbLock(TABLE, client=ddb), StepFunctionsStarter(client=sfn), bus, clock.now,
                            executions=StepFunctionsExecutions(client=sfn), images=push_times)
        yield World(settings, deps, clock, bus, sfn, ddb, arn, push_times)


@pytest.fixture
def sample() -> Any:
    return copy.deepcopy
