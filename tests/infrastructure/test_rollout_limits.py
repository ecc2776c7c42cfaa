"""The rollout state machine as the history model counts it, and the executions' timeouts, in the template.

Given the synthesized stack, then every segment of ``lambdas.domain.limits.ROLLOUT_SEGMENTS`` is in the rollout
state machine's definition (these states, of these kinds, each the next of the one before), the loops and
branches the model adds up are its transitions, every other state is one the worst case never visits (each named
with why), and both state machines' timeouts are the ones the domain checks against, within Step Functions'
one-year maximum.
"""

from __future__ import annotations

from typing import Any

import pytest

from albgate.sfn_local.extract import extract_state_machine
from albgate.template import state_machine_id
from lambdas.domain.contract import ROLLBACK_PREFIX
from lambdas.domain.limits import (
    APPROVAL_TIMEOUT_SECONDS,
    MAX_APPLICATIONS_PER_CLUSTER,
    ROLLOUT_SEGMENTS,
    ROLLOUT_TIMEOUT_SECONDS,
    STANDARD_MAX_EXECUTION_SECONDS,
    STEP_SEGMENTS,
    TOKEN_TASK,
)
from lambdas.domain.trigger import STATE_MACHINE_TIMEOUT_SECONDS
from stacks.constructs.bootstrap_workflow import BOOTSTRAP_TIMEOUT
from stacks.constructs.rollout_workflow import APPROVAL_TIMEOUT_HOURS

# The transitions between segments the model's sums stand for (loops, branches, the way to the rollback).
TRANSITIONS = [
    ("Describe Turn Booked?", "Wait For Describe Turn"), ("Wait For Describe Turn", "Preflight"),
    ("Describe Turn Booked?", "Approval Needed?"), ("Preflight", "Rollout Refused"),
    ("Approval Needed?", "Wait For Approval"), ("Wait For Approval", "Start Step"), ("Approval Needed?", "Start Step"),
    ("Start Step", "Check Target Health"), ("Targets Healthy?", "Wait For Health Check"),
    ("Wait For Health Check", "Check Target Health"), ("Targets Healthy?", "Release Old Pods"),
    ("Targets Healthy?", "Record Gate Failure"), ("Release Old Pods", "Verify Drain"),
    ("Old Targets Drained?", "Wait For Drain"), ("Wait For Drain", "Verify Drain"),
    ("Old Targets Drained?", "Announce Step Passed"), ("Old Targets Drained?", "Record Drain Failure"),
    ("More Steps?", "Approval Needed?"), ("More Steps?", "All Steps Passed"), ("All Steps Passed", "Finish Rollout"),
    ("Record Gate Failure", "Roll Back?"), ("Record Drain Failure", "Roll Back?"),
    ("Anything To Roll Back?", "Rollback: Start Step"), ("Rollback: Start Step", "Rollback: Check Target Health"),
    ("Rollback: Targets Healthy?", "Rollback: Wait For Health Check"),
    ("Rollback: Wait For Health Check", "Rollback: Check Target Health"),
    ("Rollback: Targets Healthy?", "Rollback: Release Old Pods"), ("Rollback: Release Old Pods", "Rollback: Verify Drain"),
    ("Rollback: Old Targets Drained?", "Rollback: Wait For Drain"), ("Rollback: Wait For Drain", "Rollback: Verify Drain"),
    ("Rollback: Old Targets Drained?", "Rollback: Announce Step Passed"),
    ("Rollback: More Steps?", "Rollback: Start Step"), ("Rollback: More Steps?", "Rollback: All Steps Passed"),
    ("Rollback: All Steps Passed", "Record Rollback"),
]
# States the worst case never visits, each on a way that ends sooner than the one it counts.
NOT_IN_THE_WORST_CASE = {
    "Record Approval Timeout": "an unanswered approval goes to the rollback decision instead of a whole step",
    "Rollback Could Not Start": "the rollback ends before its step",
    "Rollback: Record Gate Failure": "a failed rollback step ends the execution: three states, not the step's end",
    "Rollback: Record Drain Failure": "the same, after its drain",
    "Summarise Rollback Failure": "on the failed rollback's way (above)",
    "Keep Rollback Cause": "on the failed rollback's way (above)",
    "Rollback Failed": "on the failed rollback's way (above)",
}
TYPE_OF_KIND = {"Task": "Task", TOKEN_TASK: "Task", "Choice": "Choice", "Wait": "Wait", "Pass": "Pass",
                "Succeed": "Succeed", "Fail": "Fail"}


@pytest.fixture(scope="module")
def states(template) -> dict[str, dict[str, Any]]:
    return extract_state_machine(template, state_machine_id(template)).definition["States"]


def successors(state: dict[str, Any]) -> set[str]:
    found = {state[k] for k in ("Next", "Default") if k in state}
    found |= {c["Next"] for c in state.get("Choices", [])}
    found |= {c["Next"] for c in state.get("Catch", [])}
    return found


def modelled() -> dict[str, str]:
    """Every state the model counts, its rollback copies included: name -> kind."""
    names = {name: kind for segment in ROLLOUT_SEGMENTS.values() for name, kind in segment}
    for key in STEP_SEGMENTS:
        names |= {ROLLBACK_PREFIX + name: kind for name, kind in ROLLOUT_SEGMENTS[key]}
    return names


def test_every_modelled_state_is_in_the_definition_with_its_kind(states):
    for name, kind in modelled().items():
        assert name in states, name
        assert states[name]["Type"] == TYPE_OF_KIND[kind], (name, kind)
        waits_for_token = str(states[name].get("Resource", "")).endswith(".waitForTaskToken")
        assert waits_for_token == (kind == TOKEN_TASK), name


@pytest.mark.parametrize("segment", sorted(ROLLOUT_SEGMENTS))
def test_each_segment_is_a_path_of_the_definition(states, segment):
    names = [name for name, _ in ROLLOUT_SEGMENTS[segment]]
    for prefix in ("", ROLLBACK_PREFIX) if segment in STEP_SEGMENTS else ("",):
        for a, b in zip(names, names[1:]):
            assert prefix + b in successors(states[prefix + a]), (prefix + a, prefix + b)


@pytest.mark.parametrize(("source", "target"), TRANSITIONS, ids=[f"{a}->{b}" for a, b in TRANSITIONS])
def test_the_loops_and_branches_the_model_adds_up_are_transitions(states, source, target):
    assert target in successors(states[source])


def test_every_other_state_is_one_the_worst_case_never_visits(states):
    # A new state in the rollout state machine must be added to the model (or here, with the reason)
    assert set(states) == set(modelled()) | set(NOT_IN_THE_WORST_CASE)


def test_the_timeouts_are_the_ones_the_domain_checks_within_the_standard_maximum(template, states):
    machines = {k: r["Properties"] for k, r in template["Resources"].items()
                if r["Type"] == "AWS::StepFunctions::StateMachine"}
    definitions = {k: extract_state_machine(template, k).definition for k in machines}
    rollout = definitions[state_machine_id(template)]
    bootstrap = definitions[state_machine_id(template, "Bootstrap")]
    # The rollout state machine's own timeout is what Preflight and the synth check hold a policy's worst case to
    assert rollout["TimeoutSeconds"] == ROLLOUT_TIMEOUT_SECONDS == STATE_MACHINE_TIMEOUT_SECONDS == 48 * 3600
    # An approval waits as long as the worst case counts for it
    assert states["Wait For Approval"]["TimeoutSeconds"] == APPROVAL_TIMEOUT_SECONDS == APPROVAL_TIMEOUT_HOURS * 3600
    # The bootstrap's never cuts its restarts short: it outlasts one rollout per application at its longest,
    # one after another; both are inside Step Functions' one year
    assert bootstrap["TimeoutSeconds"] == BOOTSTRAP_TIMEOUT.to_seconds()
    assert bootstrap["TimeoutSeconds"] > MAX_APPLICATIONS_PER_CLUSTER * ROLLOUT_TIMEOUT_SECONDS
    assert max(rollout["TimeoutSeconds"], bootstrap["TimeoutSeconds"]) < STANDARD_MAX_EXECUTION_SECONDS
