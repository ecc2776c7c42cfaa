"""A release's children through Step Functions (lambdas/adapters/release_children.py), on moto.

Invariant under test: each child is started and read in the Region its ARN names, with the assumed role's
credentials when it lives in another account (assumed once, again only shortly before they expire); a retried
start answers the execution that exists; every AWS refusal leaves as a domain error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.adapters.release_children import SESSION_NAME, StepFunctionsChildren, region_of
from lambdas.domain.errors import (
    AccessDeniedError,
    AwsUnavailableError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
)
from lambdas.domain.trigger import execution_arn

ACCOUNT = "123456789012"  # moto's own account
OTHER_ACCOUNT = "222222222222"
OTHER_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/Albgate-{OTHER_ACCOUNT}-eu-west-1-Release"
PREVIOUS = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop@sha256:" + "b" * 64
# A rollout stand-in: succeeds at once, answering the image it replaced as a real rollout's output does.
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {
    "Done": {"Type": "Pass", "Result": {"previous_image": PREVIOUS, "outcome": "done"}, "End": True}}})
ROLLOUT_INPUT = {"cluster": "prod-a", "namespace": "shop", "deployment": "web", "container": "app",
                 "image": "shop@sha256:" + "a" * 64, "policy": {}}


def create_machines(account: str, **creds: str) -> dict[str, str]:
    arns = {}
    for region in ("us-east-1", "eu-west-1"):
        sfn = boto3.client("stepfunctions", region_name=region, **creds)
        arns[region] = sfn.create_state_machine(
            name="Albgate-Rollout", definition=PASS_DEFINITION,
            roleArn=f"arn:aws:iam::{account}:role/albgate-rollout")["stateMachineArn"]
    return arns


def role_credentials(role_arn: str) -> dict[str, str]:
    answer = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=role_arn, RoleSessionName="test-setup")["Credentials"]
    return {"aws_access_key_id": answer["AccessKeyId"], "aws_secret_access_key": answer["SecretAccessKey"],
            "aws_session_token": answer["SessionToken"]}


@pytest.fixture()
def machines() -> Iterator[dict[str, str]]:
    """A rollout state machine in each of two Regions of the home account; executions really run (moto's ASL
    interpreter)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield create_machines(ACCOUNT)


@pytest.fixture()
def other_machines(machines: dict[str, str]) -> dict[str, str]:
    """The same in the other account, whose release role the children are reached through (moto keeps each
    account's resources apart, by the credentials' account)."""
    return create_machines(OTHER_ACCOUNT, **role_credentials(OTHER_ROLE))


def settled(children: StepFunctionsChildren, arn: str, role: str | None = None) -> Any:
    for _ in range(100):
        answer = children.describe(arn, role)
        if answer.status != "RUNNING":
            return answer
        time.sleep(0.05)
    raise AssertionError(f"{arn} never ended")


def test_children_start_in_the_region_their_arn_names(machines):
    # Given rollout state machines in us-east-1 and eu-west-1, and the release's functions in us-east-1
    children = StepFunctionsChildren("us-east-1")
    # When a child is started in each
    arns = {region: children.start(sm, None, f"rel-w1-{i}", ROLLOUT_INPUT)
            for i, (region, sm) in enumerate(sorted(machines.items()))}
    # Then each execution exists in its own Region, with the rollout input as sent
    for region, arn in arns.items():
        assert arn.startswith(f"arn:aws:states:{region}:{ACCOUNT}:execution:Albgate-Rollout:")
        listed = boto3.client("stepfunctions", region_name=region).describe_execution(executionArn=arn)
        assert json.loads(listed["input"]) == ROLLOUT_INPUT


def test_describe_reads_status_and_parses_the_output(machines):
    # Given a child that succeeded
    children = StepFunctionsChildren("us-east-1")
    arn = children.start(machines["eu-west-1"], None, "rel-w1-1", ROLLOUT_INPUT)
    # When it is described
    answer = settled(children, arn)
    # Then the status is Step Functions' and the output is the parsed JSON the rollout answered
    assert answer.status == "SUCCEEDED"
    assert answer.output == {"previous_image": PREVIOUS, "outcome": "done"}
    assert (answer.error, answer.cause) == (None, None)


def test_a_retried_start_answers_the_execution_that_exists(machines):
    # Given a child started once
    children = StepFunctionsChildren("us-east-1")
    first = children.start(machines["us-east-1"], None, "rel-w2-1", ROLLOUT_INPUT)
    settled(children, first)
    # When a start of the same name is retried (here with another input: Step Functions answers
    # ExecutionAlreadyExists)
    again = children.start(machines["us-east-1"], None, "rel-w2-1", {**ROLLOUT_INPUT, "image": "other"})
    # Then it answers the existing execution's ARN, and no second execution exists
    assert again == first == execution_arn(machines["us-east-1"], "rel-w2-1")
    listed = boto3.client("stepfunctions", region_name="us-east-1").list_executions(
        stateMachineArn=machines["us-east-1"])["executions"]
    assert [e["name"] for e in listed] == ["rel-w2-1"]


class RecordingClients:
    """``clients=``: builds real (moto) clients, recording the Region and credentials of each one built."""

    def __init__(self) -> None:
        self.built: list[tuple[str, dict[str, str]]] = []

    def __call__(self, region: str, creds: dict[str, str]) -> Any:
        self.built.append((region, dict(creds)))
        return boto3.client("stepfunctions", region_name=region, **creds)


class CountingSts:
    """moto's STS, counting AssumeRole calls; ``expires_in`` overrides the expiry it answers."""

    def __init__(self, now: list[float], expires_in: float = 3600) -> None:
        self._sts = boto3.client("sts", region_name="us-east-1")
        self._now, self._expires_in = now, expires_in
        self.assumed: list[tuple[str, str]] = []

    def assume_role(self, RoleArn: str, RoleSessionName: str) -> dict:  # noqa: N803 - boto3's argument names
        self.assumed.append((RoleArn, RoleSessionName))
        answer = self._sts.assume_role(RoleArn=RoleArn, RoleSessionName=RoleSessionName)
        answer["Credentials"]["Expiration"] = datetime.fromtimestamp(self._now[0] + self._expires_in, timezone.utc)
        return answer


def test_another_accounts_child_is_reached_with_the_assumed_roles_credentials(other_machines):
    # Given a child in another account, reached through its release role (moto's STS)
    clients, now = RecordingClients(), [1_767_322_800.0]
    sts = CountingSts(now)
    children = StepFunctionsChildren("us-east-1", sts=sts, clients=clients, now=lambda: now[0])
    # When it is started and read
    arn = children.start(other_machines["eu-west-1"], OTHER_ROLE, "rel-w1-1", ROLLOUT_INPUT)
    settled(children, arn, OTHER_ROLE)
    # Then the role was assumed under albgate's session name, and the client was built with its credentials
    assert sts.assumed == [(OTHER_ROLE, SESSION_NAME)]
    ((region, creds),) = clients.built
    assert region == "eu-west-1"
    assert set(creds) == {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
    assert creds["aws_access_key_id"] != "testing"  # not the function's own credentials


def test_a_child_of_the_home_account_uses_the_functions_own_credentials(machines):
    clients = RecordingClients()
    children = StepFunctionsChildren("us-east-1", sts=object(), clients=clients)  # any STS call would fail
    children.start(machines["us-east-1"], None, "rel-w1-1", ROLLOUT_INPUT)
    children.start(machines["eu-west-1"], None, "rel-w1-2", ROLLOUT_INPUT)
    assert clients.built == [("us-east-1", {}), ("eu-west-1", {})]


@pytest.mark.parametrize(("later", "assumed"), [
    (0, 1), (3600 - 301, 1), (3600 - 300, 2), (3600 + 60, 2),
], ids=["at-once", "just-before-the-refresh-window", "five-minutes-before-expiry", "after-expiry"])
def test_credentials_are_kept_until_five_minutes_before_they_expire(other_machines, later, assumed):
    # Given credentials of the other account's role that expire in an hour
    clients, now = RecordingClients(), [1_767_322_800.0]
    sts = CountingSts(now)
    children = StepFunctionsChildren("us-east-1", sts=sts, clients=clients, now=lambda: now[0])
    arn = children.start(other_machines["eu-west-1"], OTHER_ROLE, "rel-w1-1", ROLLOUT_INPUT)
    # When the child is read some time later
    now[0] += later
    children.describe(arn, OTHER_ROLE)
    # Then the role is assumed again only from five minutes before the expiry on, with a client on the new
    # credentials
    assert len(sts.assumed) == assumed
    assert len(clients.built) == assumed
    if assumed == 2:
        assert clients.built[0][1] != clients.built[1][1]


def test_refreshed_credentials_replace_the_roles_clients_in_every_region(other_machines):
    # Given one role's clients in two Regions
    clients, now = RecordingClients(), [1_767_322_800.0]
    sts = CountingSts(now)
    children = StepFunctionsChildren("us-east-1", sts=sts, clients=clients, now=lambda: now[0])
    children.start(other_machines["us-east-1"], OTHER_ROLE, "rel-w1-1", ROLLOUT_INPUT)
    children.start(other_machines["eu-west-1"], OTHER_ROLE, "rel-w1-2", ROLLOUT_INPUT)
    # When the credentials are refreshed through one Region and the other Region is used next
    now[0] += 3600
    children.start(other_machines["us-east-1"], OTHER_ROLE, "rel-w1-3", ROLLOUT_INPUT)
    children.start(other_machines["eu-west-1"], OTHER_ROLE, "rel-w1-4", ROLLOUT_INPUT)
    # Then the other Region's client is rebuilt on the new credentials too, not kept on the expired ones
    assert len(sts.assumed) == 2
    fresh = clients.built[2][1]
    assert clients.built[2:] == [("us-east-1", fresh), ("eu-west-1", fresh)]


def test_a_missing_state_machine_is_not_found_naming_the_stack_to_deploy(machines):
    children = StepFunctionsChildren("us-east-1")
    missing = machines["eu-west-1"].replace("Albgate-Rollout", "Nowhere-Rollout")
    with pytest.raises(NotFoundError) as refused:
        children.start(missing, None, "rel-w1-1", ROLLOUT_INPUT)
    assert "StateMachineDoesNotExist" in str(refused.value) and "Deploy the stack" in str(refused.value)


def test_a_missing_execution_is_not_found(machines):
    children = StepFunctionsChildren("us-east-1")
    with pytest.raises(NotFoundError, match="ExecutionDoesNotExist"):
        children.describe(execution_arn(machines["us-east-1"], "never-started"), None)


def test_a_refused_assume_role_is_a_domain_error(machines):
    # Given STS refusing the role (its trust policy does not name the release's role)
    sts = boto3.client("sts", region_name="us-east-1")
    stub = Stubber(sts)
    stub.add_client_error("assume_role", service_error_code="AccessDenied", http_status_code=403,
                          service_message="not authorized to perform sts:AssumeRole")
    children = StepFunctionsChildren("us-east-1", sts=sts)
    # When a child is started through it / Then albgate's access error leaves, naming the call
    with stub, pytest.raises(AccessDeniedError, match="sts:AssumeRole"):
        children.start(machines["us-east-1"], OTHER_ROLE, "rel-w1-1", ROLLOUT_INPUT)


@pytest.mark.parametrize(("code", "status", "error"), [
    ("ThrottlingException", 400, ThrottledError),
    ("ServiceUnavailable", 503, AwsUnavailableError),
    ("AccessDeniedException", 400, AccessDeniedError),
    ("InvalidExecutionInput", 400, InvalidInputError),
], ids=["throttled", "unavailable", "access-denied", "invalid-input"])
@pytest.mark.parametrize("call", ["start", "describe"])
def test_step_functions_refusals_leave_as_domain_errors(machines, code, status, error, call):
    # Given Step Functions answering an error
    client = boto3.client("stepfunctions", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error(f"{call}_execution", service_error_code=code, http_status_code=status)
    children = StepFunctionsChildren("us-east-1", clients=lambda region, creds: client)
    # When a child is started or read / Then the matching domain error leaves, naming the call
    with stub, pytest.raises(error, match="states:(Start|Describe)Execution"):
        if call == "start":
            children.start(machines["us-east-1"], None, "rel-w1-1", ROLLOUT_INPUT)
        else:
            children.describe(execution_arn(machines["us-east-1"], "rel-w1-1"), None)


@pytest.mark.parametrize("arn", ["", "arn:aws:lambda:us-east-1:1:function:f", "arn:aws:states::1:stateMachine:x"],
                         ids=["empty", "not-step-functions", "no-region"])
def test_an_arn_that_is_not_step_functions_is_invalid_input(arn):
    with pytest.raises(InvalidInputError, match="is not a Step Functions ARN"):
        region_of(arn)
    with pytest.raises(InvalidInputError):
        StepFunctionsChildren("us-east-1").start(arn, None, "rel-w1-1", ROLLOUT_INPUT)
