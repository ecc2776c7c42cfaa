"""The Retry clauses of every Lambda task in both synthesized state machines (rollout and bootstrap).

Lambda's transient service exceptions must be retried wherever a Lambda is invoked: the Step Functions
best-practice list, which is also what CDK's LambdaInvoke retries by default and albgate turns off to own its
policy (docs/facts.md, "Rollout state machine: retries and the approval timeout"). A task-token wait, on the
other hand, must never retry its own timeout: a retry would ask the person again instead of going on.
"""

from __future__ import annotations

import pytest

from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, ROLLOUT_STATE_MACHINE_PREFIX, state_machine_id
from lambdas.domain.trigger import STATE_MACHINE_TIMEOUT_SECONDS
from tests.infrastructure.cfn import definition, walk_states
from tests.infrastructure.test_template import lambda_target

# https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
LAMBDA_SERVICE_EXCEPTIONS = {
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}
TASK_TIMEOUTS = {"States.Timeout", "States.HeartbeatTimeout"}
APPROVAL_TIMEOUT_SECONDS = 24 * 3600

MACHINES = {
    # name: (logical id prefix, fewest Lambda tasks it has: guards the loops below against an empty list)
    "rollout": (ROLLOUT_STATE_MACHINE_PREFIX, 10),
    "bootstrap": (BOOTSTRAP_STATE_MACHINE_PREFIX, 7),
}


def _definition(template, machine: str) -> dict:
    return definition(template, state_machine_id(template, MACHINES[machine][0]))


def _lambda_tasks(template, machine: str) -> list[tuple[str, dict]]:
    return [(n, s) for n, s in walk_states(_definition(template, machine)["States"]) if lambda_target(s)]


def _retried(state: dict) -> set[str]:
    return {e for clause in state.get("Retry", []) for e in clause["ErrorEquals"]}


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_lambda_task_retries_lambdas_transient_service_exceptions(template, machine):
    # Given every task that invokes a Lambda function, the approval's task-token invocation included
    found = _lambda_tasks(template, machine)
    assert len(found) >= MACHINES[machine][1]
    for name, state in found:
        # Then each of Lambda's transient service exceptions is retried, a bounded number of times with backoff
        assert not LAMBDA_SERVICE_EXCEPTIONS - _retried(state), f"{name}: {LAMBDA_SERVICE_EXCEPTIONS - _retried(state)}"
        for clause in state["Retry"]:
            if LAMBDA_SERVICE_EXCEPTIONS & set(clause["ErrorEquals"]):
                assert 2 <= clause["MaxAttempts"] <= 6 and clause["BackoffRate"] >= 2, name


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_a_client_execution_timeout_is_retried_in_the_same_clause_as_the_other_service_exceptions(template, machine):
    # Given Step Functions takes the first clause whose ErrorEquals matches
    for name, state in _lambda_tasks(template, machine):
        clauses = [set(c["ErrorEquals"]) for c in state["Retry"] if LAMBDA_SERVICE_EXCEPTIONS & set(c["ErrorEquals"])]
        # Then all four are in one clause: a client-side timeout is the same transient kind of failure
        assert len(clauses) == 1 and LAMBDA_SERVICE_EXCEPTIONS <= clauses[0], name


def test_a_task_token_wait_never_retries_its_own_timeout_and_catches_it_first(template):
    # Given every `.waitForTaskToken` Lambda task of both state machines
    waits = [
        (machine, name, state)
        for machine in sorted(MACHINES)
        for name, state in _lambda_tasks(template, machine)
        if state["Resource"].endswith(".waitForTaskToken")
    ]
    assert [(m, n) for m, n, _ in waits] == [("rollout", "Wait For Approval")]
    for machine, name, state in waits:
        # Then neither timeout is retried (a retry would ask again with a new token) ...
        assert not TASK_TIMEOUTS & _retried(state), name
        # ... and the first Catch takes both, before States.ALL could treat a timeout like any other failure
        assert set(state["Catch"][0]["ErrorEquals"]) == TASK_TIMEOUTS, name
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        assert state["TimeoutSeconds"] == APPROVAL_TIMEOUT_SECONDS, name


def test_an_unanswered_approval_leaves_the_execution_at_least_as_long_again_for_its_steps_and_rollback(template):
    # Given the rollout state machine's own timeout, which the Deployment lock assumes (lambdas/domain/trigger.py)
    asl = _definition(template, "rollout")
    assert asl["TimeoutSeconds"] == STATE_MACHINE_TIMEOUT_SECONDS
    # Then one approval that is never answered uses at most half of it: the steps before it and the rollback it
    # leads to have the other half (docs/rollout.md, "Approvals", gives the worst cases that do not fit)
    assert 2 * asl["States"]["Wait For Approval"]["TimeoutSeconds"] <= asl["TimeoutSeconds"]
