"""The rollout state machine's graph, as the console draws it: state names and branches are a reviewed contract.

The definition is extracted from the synthesized template (not built by hand) and walked through Next,
Default, Choices and Catch, so a renamed state or a rewired branch fails here and shows up in review.
"""

from __future__ import annotations

import pytest

from albgate.sfn_local.extract import extract_state_machine
from albgate.template import state_machine_id

RETRY_STATES = ("Preflight", "Start Step", "Check Target Health", "Release Old Pods", "Verify Drain", "Roll Back")


@pytest.fixture(scope="module")
def states(template) -> dict:
    return extract_state_machine(template, state_machine_id(template)).definition["States"]


def edges(state: dict) -> dict[str, str]:
    """label -> target, with the labels the console shows (Next, Default, a Choice's condition, Catch)."""
    out: dict[str, str] = {}
    if "Next" in state:
        out["next"] = state["Next"]
    if "Default" in state:
        out["default"] = state["Default"]
    for choice in state.get("Choices", []):
        out[_condition(choice)] = choice["Next"]
    for catch in state.get("Catch", []):
        out["catch:" + ",".join(catch["ErrorEquals"][:1])] = catch["Next"]
    return out


def _condition(rule: dict) -> str:
    """``$.x=V``; an Or of comparisons of one variable reads ``$.x=V1|V2``."""
    if "Or" in rule:
        parts = [_condition(r) for r in rule["Or"]]
        variables = {p.split("=")[0] for p in parts}
        assert len(variables) == 1, f"an Or over several variables: {parts}"
        return f"{variables.pop()}=" + "|".join(p.split("=", 1)[1] for p in parts)
    if "And" in rule:
        return " & ".join(_condition(r) for r in rule["And"])
    value = next((v for k, v in rule.items() if k not in ("Variable", "Next")), None)
    return f"{rule.get('Variable', '')}={value}"


def test_start_and_story_of_a_step(template):
    definition = extract_state_machine(template, state_machine_id(template)).definition
    assert definition["StartAt"] == "Preflight"
    s = definition["States"]
    # Given the console graph / Then a step reads: start, check, decide, wait, release, verify, decide, bake
    assert edges(s["Preflight"])["next"] == "Describe Turn Booked?"
    # (Preflight's Describe* calls may wait for their turn in albgate's share of the account's bucket)
    assert edges(s["Describe Turn Booked?"]) == {
        "$.preflight=True & $.preflight=WAITING_FOR_DESCRIBE_TURN": "Wait For Describe Turn",
        "default": "Approval Needed?",
    }
    assert s["Wait For Describe Turn"]["SecondsPath"] == "$.wait_seconds"
    assert edges(s["Wait For Describe Turn"]) == {"next": "Preflight"}
    # Preflight takes the Deployment's lease for this very execution (its ARN) before it reads anything
    assert s["Preflight"]["Parameters"] == {
        "request.$": "$$.Execution.Input", "execution_name.$": "$$.Execution.Name",
        "execution_arn.$": "$$.Execution.Id", "state.$": "$",
    }
    assert edges(s["Approval Needed?"]) == {
        "$.approval_required=True": "Wait For Approval",
        "default": "Start Step",
    }
    assert edges(s["Start Step"])["next"] == "Check Target Health"
    assert edges(s["Check Target Health"])["next"] == "Targets Healthy?"
    assert edges(s["Targets Healthy?"]) == {
        "$.gate.status=PASSED": "Release Old Pods",
        "$.gate.status=FAILED": "Record Gate Failure",
        "default": "Wait For Health Check",
    }
    assert edges(s["Wait For Health Check"]) == {"next": "Check Target Health"}
    assert s["Wait For Health Check"]["SecondsPath"] == "$.wait_seconds"
    assert edges(s["Release Old Pods"])["next"] == "Verify Drain"
    # DRAINING: between steps the old targets are all draining and the next step's gate waits for them to leave
    assert edges(s["Old Targets Drained?"]) == {
        "$.drain.status=PASSED|DRAINING": "Announce Step Passed",
        "$.drain.status=FAILED": "Record Drain Failure",
        "default": "Wait For Drain",
    }
    # the example config has an ECR trigger, hence albgate's bus: a passed step is announced, and an event that
    # could not be published never stops the rollout (its Catch goes on to the bake, keeping the state)
    assert edges(s["Announce Step Passed"]) == {"next": "Bake Step", "catch:States.ALL": "Bake Step"}
    assert s["Announce Step Passed"]["ResultPath"] is None and s["Announce Step Passed"]["Catch"][0]["ResultPath"] is None
    assert s["Announce Step Passed"]["Resource"] == "arn:aws:states:::events:putEvents"
    assert edges(s["Bake Step"]) == {"next": "More Steps?"}
    assert edges(s["More Steps?"]) == {"$.more_steps=True": "Approval Needed?", "default": "All Steps Passed"}
    assert edges(s["All Steps Passed"])["next"] == "Finish Rollout"
    assert edges(s["Finish Rollout"])["next"] == "Rollout Succeeded"


def test_every_failure_leads_to_the_rollback_decision(states):
    for name in ("Start Step", "Check Target Health", "Release Old Pods", "Verify Drain"):
        targets = {v for k, v in edges(states[name]).items() if k.startswith("catch:")}
        assert targets == {"Roll Back?"}, name
    assert edges(states["Record Gate Failure"])["next"] == "Roll Back?"
    assert edges(states["Record Drain Failure"])["next"] == "Roll Back?"
    assert edges(states["Record Approval Timeout"])["next"] == "Roll Back?"


def test_an_unanswered_approval_is_recorded_then_rolls_back_like_a_rejection(states):
    # Given the approval task / Then its timeout is caught first (before States.ALL could take it) and recorded,
    # and a rejection (SendTaskFailure) or a failed RequestApproval goes to the rollback decision directly
    assert edges(states["Wait For Approval"]) == {
        "next": "Start Step",
        "catch:States.Timeout": "Record Approval Timeout",
        "catch:AccessDeniedError": "Roll Back?",
        "catch:States.ALL": "Roll Back?",
    }
    assert states["Wait For Approval"]["Catch"][0]["ErrorEquals"] == ["States.Timeout", "States.HeartbeatTimeout"]
    recorded = states["Record Approval Timeout"]
    assert recorded["Type"] == "Pass" and recorded["ResultPath"] == "$.failure"
    assert recorded["Parameters"]["Error"] == "ApprovalTimedOut"
    assert edges(states["Roll Back?"]) == {
        "$.rollback_allowed=True": "Roll Back",
        "default": "Rollout Failed",
    }
    assert edges(states["Anything To Roll Back?"]) == {
        "$.rollback_needed=True": "Rollback: Start Step",
        "default": "Rollout Failed",
    }


def test_rollback_is_the_same_step_fragment_prefixed(states):
    rollout = {n for n in states if not n.startswith("Rollback: ")}
    rollback = {n.removeprefix("Rollback: ") for n in states if n.startswith("Rollback: ")}
    # the rollback repeats the step's gate and drain, without approval
    assert {"Start Step", "Check Target Health", "Targets Healthy?", "Wait For Health Check", "Release Old Pods",
            "Verify Drain", "Old Targets Drained?", "Wait For Drain", "Announce Step Passed", "More Steps?"} <= rollback
    assert "Approval Needed?" in rollout and "Approval Needed?" not in rollback
    assert edges(states["Rollback: All Steps Passed"])["next"] == "Record Rollback"
    assert edges(states["Record Rollback"])["next"] == "Rollout Rolled Back"
    for name in ("Rollback: Check Target Health", "Rollback: Verify Drain"):
        assert {v for k, v in edges(states[name]).items() if k.startswith("catch:")} == {"Summarise Rollback Failure"}


def test_every_loop_ends_in_an_explicit_fail_with_error_and_cause(states):
    fails = {n: s for n, s in states.items() if s["Type"] == "Fail"}
    assert set(fails) == {"Rollout Refused", "Rollout Failed", "Rollout Rolled Back", "Rollback Failed",
                          "Rollback Could Not Start"}
    for name, s in fails.items():
        assert ("Error" in s or "ErrorPath" in s) and ("Cause" in s or "CausePath" in s), name
    # preflight failure changes nothing: it goes straight to Rollout Refused
    assert {v for k, v in edges(states["Preflight"]).items() if k.startswith("catch:")} == {"Rollout Refused"}


def test_every_state_is_reachable_and_every_edge_lands(template):
    definition = extract_state_machine(template, state_machine_id(template)).definition
    states = definition["States"]
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for target in edges(states[name]).values():
            assert target in states, f"{name} -> {target}"
            todo.append(target)
    assert seen == set(states)


THROTTLE_ERRORS = {"ThrottledError", "Lambda.TooManyRequestsException"}


def _worst_wait(retry: dict) -> float:
    """Seconds a Retry clause waits in all before giving up, every jittered draw at its maximum."""
    cap = retry.get("MaxDelaySeconds", float("inf"))
    return sum(min(retry["IntervalSeconds"] * retry["BackoffRate"] ** k, cap) for k in range(retry["MaxAttempts"]))


@pytest.mark.parametrize("name", RETRY_STATES)
def test_lambda_tasks_retry_with_backoff_and_never_forever(states, name):
    throttled, transient = states[name]["Retry"]
    # Given the general clause / Then transient errors retry a few times with backoff, as before
    assert transient["MaxAttempts"] <= 5 and transient["BackoffRate"] >= 2 and transient["IntervalSeconds"] >= 1
    # and throttling is not in it: Step Functions takes the first clause that names an error
    assert not THROTTLE_ERRORS & set(transient["ErrorEquals"])
    assert set(throttled["ErrorEquals"]) == THROTTLE_ERRORS


@pytest.mark.parametrize("name", RETRY_STATES)
def test_throttled_tasks_retry_apart_with_capped_jittered_backoff_and_give_up_within_a_step_deadline(states, name):
    # Given the Retry for throttling (the account's Describe* bucket is shared by every concurrent rollout)
    (throttled, _) = states[name]["Retry"]
    # Then concurrent executions throttled together retry at random times, not in lock-step
    assert throttled["JitterStrategy"] == "FULL"
    assert throttled["BackoffRate"] >= 2 and throttled["IntervalSeconds"] >= 1
    # and each wait is capped, so a long retry keeps looking at the bucket every minute or so
    assert throttled["MaxDelaySeconds"] <= 60
    # and it keeps trying longer than the general clause, but gives up within about a step's 900 s deadline
    assert throttled["MaxAttempts"] > 5 and 300 <= _worst_wait(throttled) <= 1000
