"""Start a rollout execution by name, and ask whether one still runs: albgate's two Step Functions calls.

Job: ``StartExecution`` with albgate's deterministic name; ``ExecutionAlreadyExists`` is an answer
(``started=False``: that push's rollout exists already), not an error, which is what makes a replayed event
start nothing new. ``DescribeExecution`` for a Deployment lease's holder (``Executions``): its status, or None
when Step Functions has no such execution (``ExecutionDoesNotExist``: never started, or its history expired).

Invariant: nothing but domain errors leaves this module (``map_aws_error``); the execution ARN returned for an
existing execution is the one Step Functions gave it (state machine ARN + name, ``domain.trigger.execution_arn``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.trigger import execution_arn


@dataclass(frozen=True)
class Started:
    execution_arn: str
    started: bool  # False: an execution with this name existed already (ExecutionAlreadyExists)


class StepFunctionsStarter:
    def __init__(self, client: Any = None, region: str | None = None) -> None:
        self._client = client or boto3.client("stepfunctions", region_name=region, config=client_config())

    def start(self, state_machine_arn: str, name: str, input_json: str) -> Started:
        try:
            answer = self._client.start_execution(stateMachineArn=state_machine_arn, name=name, input=input_json)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return Started(execution_arn(state_machine_arn, name), started=False)
            raise map_aws_error(e, f"states:StartExecution {name}") from e
        return Started(answer["executionArn"], started=True)


class StepFunctionsExecutions:
    """``Executions`` (lambdas/domain/ports.py) over DescribeExecution."""

    def __init__(self, client: Any = None, region: str | None = None) -> None:
        self._client = client or boto3.client("stepfunctions", region_name=region, config=client_config())

    def status(self, execution_arn: str) -> str | None:
        try:
            answer = self._client.describe_execution(executionArn=execution_arn)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise map_aws_error(e, f"states:DescribeExecution {execution_arn}") from e
        return str(answer["status"])
