"""A release's child executions through Step Functions, in the child's own account and Region.

Job: ``StartExecution`` and ``DescribeExecution`` of rollout executions named by ARN. The client is made for the
Region in the ARN (a release spans Regions: Step Functions' optimized StartExecution integration does not reach
another Region, docs/facts.md, "Releases across accounts and Regions"), with the credentials of ``role_arn`` when
the child is in another account (STS AssumeRole, cached until shortly before they expire).

Invariant: nothing but domain errors leaves this module; a start whose execution exists already (a retried start
of the same name) answers that execution's ARN: DescribeExecution then says what it is.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.errors import AlbgateError, InvalidInputError, NotFoundError
from lambdas.domain.ports import ChildExecution
from lambdas.domain.trigger import execution_arn

SESSION_NAME = "albgate-release"
_REFRESH_BEFORE_EXPIRY_SECONDS = 300
# What Step Functions answers for a state machine or execution that does not exist where the ARN says.
_MISSING_CODES = frozenset({"StateMachineDoesNotExist", "ExecutionDoesNotExist"})


def region_of(arn: str) -> str:
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) < 6 or parts[2] != "states" or not parts[3]:
        raise InvalidInputError(f"{arn!r} is not a Step Functions ARN; the release stack writes every child's ARN "
                                "from the config: redeploy it")
    return parts[3]


def _domain_error(e: Exception, action: str) -> AlbgateError:
    if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in _MISSING_CODES:
        message = e.response.get("Error", {}).get("Message", "")
        return NotFoundError(
            f"{action}: AWS answered {e.response['Error']['Code']}: {message}. Deploy the stack of that account "
            "and Region with the release configured (it creates the rollout state machine the release starts)"
        )
    return map_aws_error(e, action)


class StepFunctionsChildren:
    """``ChildExecutions`` (lambdas/domain/ports.py) over Step Functions; ``clients`` builds a client for
    (Region, credentials) and is replaced in tests."""

    def __init__(self, home_region: str, *, sts: Any = None, clients: Any = None, now: Any = time.time) -> None:
        self._home_region = home_region
        self._sts = sts
        self._make = clients or (lambda region, creds: boto3.client(
            "stepfunctions", region_name=region, config=client_config(), **creds))
        self._now = now
        self._credentials: dict[str, tuple[float, dict[str, str]]] = {}
        self._clients: dict[tuple[str, str | None], Any] = {}

    def _client(self, arn: str, role_arn: str | None) -> Any:
        region = region_of(arn)
        creds: dict[str, str] = {}
        if role_arn:
            expires, creds = self._credentials.get(role_arn, (0.0, {}))
            if expires - _REFRESH_BEFORE_EXPIRY_SECONDS <= self._now():
                sts = self._sts or boto3.client("sts", region_name=self._home_region, config=client_config())
                try:
                    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
                except (ClientError, BotoCoreError) as e:
                    raise map_aws_error(e, f"sts:AssumeRole {role_arn}") from e
                creds = {"aws_access_key_id": answer["AccessKeyId"], "aws_secret_access_key": answer["SecretAccessKey"],
                         "aws_session_token": answer["SessionToken"]}
                expiration = answer["Expiration"]
                expires = expiration.timestamp() if hasattr(expiration, "timestamp") else float(expiration)
                self._credentials[role_arn] = (expires, creds)
                # A role is global: its clients in every Region hold the old credentials.
                for stale in [k for k in self._clients if k[1] == role_arn]:
                    del self._clients[stale]
        key = (region, role_arn)
        if key not in self._clients:
            self._clients[key] = self._make(region, creds)
        return self._clients[key]

    def start(self, state_machine_arn: str, role_arn: str | None, name: str, input: dict) -> str:
        client = self._client(state_machine_arn, role_arn)
        try:
            return str(client.start_execution(stateMachineArn=state_machine_arn, name=name,
                                              input=json.dumps(input))["executionArn"])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return execution_arn(state_machine_arn, name)
            raise _domain_error(e, f"states:StartExecution {name}") from e
        except BotoCoreError as e:
            raise map_aws_error(e, f"states:StartExecution {name}") from e

    def describe(self, arn: str, role_arn: str | None) -> ChildExecution:
        client = self._client(arn, role_arn)
        try:
            answer = client.describe_execution(executionArn=arn)
        except (ClientError, BotoCoreError) as e:
            raise _domain_error(e, f"states:DescribeExecution {arn}") from e
        output = answer.get("output")
        try:
            parsed = json.loads(output) if isinstance(output, str) else output
        except ValueError:
            parsed = None
        return ChildExecution(status=str(answer["status"]), output=parsed, error=answer.get("error"),
                              cause=answer.get("cause"))
