"""Several state machines in one local runner, and an execution that starts others while it runs.

A hand-written template holds a "Parent" whose Lambda task starts one "Child" execution per entry of its input
through the interleaver, then polls them (Wait 10 s -> Check) until all ended; each Child naps its own number of
seconds, then finishes (or fails). The children must run concurrently in simulated time with the parent and with
each other, and their outcomes must reach the parent's output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from albgate.sfn_local.extract import ExtractedMachine, extract_state_machine
from albgate.sfn_local.interleave import Interleaver, Start
from albgate.sfn_local.runner import ExecutionResult, LocalRunnerError, LocalStateMachine
from tests.workflow.conftest import VirtualClock

T0 = 1_700_000_000.0
POLL_SECONDS = 10
HERE = __name__  # the runner imports the handlers below by their Handler string: this module, as pytest named it

# What the handlers reach (they run in-process on the interpreter's threads, so a module variable is enough).
INTERLEAVER: Interleaver | None = None
FINISHED: list[str] = []  # child names, in the order their Finish task ran


class ChildError(Exception):
    """A child that was asked to fail."""


# --- handlers -----------------------------------------------------------------------------------------------
def start_children(event: dict, context: Any) -> dict:
    """Start one Child execution per entry, as soon as possible (at 0: the interleaver starts it at max(at, now))."""
    assert INTERLEAVER is not None, "the test sets INTERLEAVER before running"
    indices = [
        INTERLEAVER.start(Start(0.0, child, child["name"], state_machine="Child")) for child in event["children"]
    ]
    return {**event, "child_indices": indices, "checks": 0}


def check_children(event: dict, context: Any) -> dict:
    """Read each child's result (None while it runs) and say whether all ended."""
    assert INTERLEAVER is not None
    results = [INTERLEAVER.result_of(i) for i in event["child_indices"]]
    return {
        **event,
        "checks": event["checks"] + 1,
        "all_ended": all(r is not None for r in results),
        "statuses": [None if r is None else {"name": r.name, "status": r.status, "error": r.error} for r in results],
    }


def finish_child(event: dict, context: Any) -> dict:
    FINISHED.append(event["name"])
    if event.get("fail"):
        raise ChildError(f"{event['name']} was asked to fail")
    return {"name": event["name"], "napped": event["wait_seconds"]}


# --- the template -------------------------------------------------------------------------------------------
def fn(handler: str) -> dict:
    return {"Type": "AWS::Lambda::Function", "Properties": {"Handler": f"{HERE}.{handler}", "Timeout": 30}}


def state_machine(definition: dict, functions: list[str]) -> dict:
    """A state machine whose definition names each function as ``${<logical id>}``, substituted with its ARN as
    CDK does (DefinitionSubstitutions of Fn::GetAtt)."""
    return {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "DefinitionString": json.dumps(definition),
            "DefinitionSubstitutions": {f: {"Fn::GetAtt": [f, "Arn"]} for f in functions},
        },
    }


TEMPLATE = {
    "Resources": {
        "StartChildren": fn("start_children"),
        "CheckChildren": fn("check_children"),
        "FinishChild": fn("finish_child"),
        "Parent": state_machine(
            {
                "StartAt": "Start Children",
                "States": {
                    "Start Children": {"Type": "Task", "Resource": "${StartChildren}", "Next": "Wait For Children"},
                    "Wait For Children": {"Type": "Wait", "Seconds": POLL_SECONDS, "Next": "Check"},
                    "Check": {"Type": "Task", "Resource": "${CheckChildren}", "Next": "All Ended?"},
                    "All Ended?": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.all_ended", "BooleanEquals": True, "Next": "Done"}],
                        "Default": "Wait For Children",
                    },
                    "Done": {"Type": "Succeed"},
                },
            },
            ["StartChildren", "CheckChildren"],
        ),
        "Child": state_machine(
            {
                "StartAt": "Nap",
                "States": {
                    "Nap": {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "Finish"},
                    "Finish": {"Type": "Task", "Resource": "${FinishChild}", "End": True},
                },
            },
            ["FinishChild"],
        ),
    }
}


class World:
    """A world with nothing in it but time, which only moves forward."""

    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t

    def run_until(self, t: float) -> None:
        assert t >= self.t, f"the world was moved back from {self.t} to {t}"
        self.t = t


@pytest.fixture(scope="module")
def parent() -> ExtractedMachine:
    return extract_state_machine(TEMPLATE, "Parent")


@pytest.fixture(scope="module")
def child() -> ExtractedMachine:
    return extract_state_machine(TEMPLATE, "Child")


@pytest.fixture(scope="module")
def machine(parent: ExtractedMachine, child: ExtractedMachine):
    with LocalStateMachine(parent, VirtualClock(T0), companions=[child]) as opened:
        yield opened


@pytest.fixture
def interleave(machine):
    """Build the interleaver the handlers use (one per test: an interleaver runs once)."""
    global INTERLEAVER
    FINISHED.clear()

    def build(**kwargs: Any) -> Interleaver:
        global INTERLEAVER
        INTERLEAVER = Interleaver(machine, World(), **kwargs)
        return INTERLEAVER

    yield build
    INTERLEAVER = None


@pytest.fixture
def interleaver(interleave) -> Interleaver:
    return interleave()


def children(*waits: int, failing: int | None = None) -> dict:
    return {"children": [{"name": f"child-{i}", "wait_seconds": w, "fail": i == failing}
                         for i, w in enumerate(waits)]}


# --- tests --------------------------------------------------------------------------------------------------
def test_both_state_machines_live_in_one_mock(machine):
    # Given a machine opened with the Child as a companion of the Parent
    # When its ARNs are read / Then both exist, the main one first and still under state_machine_arn
    assert list(machine.state_machine_arns) == ["Parent", "Child"]
    assert machine.state_machine_arn == machine.state_machine_arns["Parent"]
    assert machine.state_machine_arns["Child"].endswith(":stateMachine:Child")
    # and the companion's function is created and callable too
    assert set(machine.functions) == {"StartChildren", "CheckChildren", "FinishChild"}


def test_a_companion_runs_on_its_own(machine):
    # Given the Child alone / When run by logical id
    result = machine.run({"name": "alone", "wait_seconds": 7}, "alone", clock=VirtualClock(T0), state_machine="Child")
    # Then it is the Child's definition that ran, on the simulated clock
    assert (result.status, result.visited, result.simulated_seconds) == ("SUCCEEDED", ["Nap", "Finish"], 7)
    assert result.output == {"name": "alone", "napped": 7}


def test_children_run_concurrently_with_their_parent(interleave):
    # Given a parent starting four children napping 30, 50, 20 and 50 s, polling them every 10 s
    ended: list[int] = []
    interleaver = interleave(on_end=lambda index, result: ended.append(index))
    # When the parent runs
    results = interleaver.run([Start(T0, children(30, 50, 20, 50), "parent")])
    # Then every execution's result comes back, the parent first, then the children in the order started
    assert [r.name for r in results] == ["parent", "child-0", "child-1", "child-2", "child-3"]
    assert [r.status for r in results] == ["SUCCEEDED"] * 5
    parent, *kids = results
    # and the children overlapped: each started with the parent and took its own nap, not the sum of them
    assert [k.started_at for k in kids] == [T0] * 4
    assert [k.simulated_seconds for k in kids] == [30, 50, 20, 50]
    assert 50 <= parent.simulated_seconds <= 50 + POLL_SECONDS
    assert interleaver.world.now() - T0 == parent.simulated_seconds
    # and the parent saw them end through its polls (at 10, 20, 30, 40, 50 s)
    assert parent.output["checks"] == 5
    assert [s["status"] for s in parent.output["statuses"]] == ["SUCCEEDED"] * 4
    # and executions due at the same instant went in the order they were made (child-1 before child-3)
    assert FINISHED == ["child-2", "child-0", "child-1", "child-3"]
    assert ended == [3, 1, 2, 4, 0]


def test_a_failed_childs_status_reaches_the_parent(interleaver):
    # Given a parent whose second child fails after its nap, registered with start() before run()
    index = interleaver.start(Start(T0, children(20, 40, 10, failing=1), "parent"))
    # When the interleaver runs it (with nothing more given)
    results = interleaver.run([])
    # Then the parent took index 0, polled until all ended, and its output carries the child's failure
    assert index == 0
    assert [r.name for r in results] == ["parent", "child-0", "child-1", "child-2"]
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED"]
    assert results[2].error == "ChildError"
    statuses = results[0].output["statuses"]
    assert statuses[1] == {"name": "child-1", "status": "FAILED", "error": "ChildError"}
    assert interleaver.result_of(2) is results[2]


def test_result_of_is_none_until_the_execution_ended(interleave):
    # Given a parent polling one child napping 25 s, and a look at the child's result at each end
    seen: list[tuple[int, ExecutionResult | None]] = []
    interleaver = interleave(on_end=lambda index, result: seen.append((index, INTERLEAVER.result_of(1))))
    index = interleaver.start(Start(T0, children(25), "parent"))
    # When it runs
    interleaver.run([])
    # Then the child was polled while running (None), then ended before the parent, its result kept
    assert interleaver.result_of(index).output["statuses"] == [
        {"name": "child-0", "status": "SUCCEEDED", "error": None}]
    assert interleaver.result_of(index).output["checks"] == 3  # at 10 and 20 s it was still napping
    assert [(i, r.name if r else None) for i, r in seen] == [(1, "child-0"), (0, "child-0")]
    with pytest.raises(LocalRunnerError, match="no execution 7"):
        interleaver.result_of(7)


def test_a_child_named_like_another_execution_fails_the_run(interleaver):
    # Given a parent that starts a child under its own name
    # When it runs / Then the runner refuses loudly instead of letting the parent pass for a failed state machine
    with pytest.raises(LocalRunnerError, match="names must differ: 'parent' is already taken"):
        interleaver.run([Start(T0, {"children": [{"name": "parent", "wait_seconds": 5}]}, "parent")])


def test_names_must_differ_across_starts_made_before_and_given_to_run(interleaver):
    # Given an execution registered before run
    interleaver.start(Start(T0, children(5), "twin"))
    # When the same name is started again, or given to run / Then both are refused
    with pytest.raises(LocalRunnerError, match="'twin' is already taken"):
        interleaver.start(Start(T0, children(5), "twin"))
    with pytest.raises(LocalRunnerError, match="names must differ"):
        interleaver.run([Start(T0, children(5), "twin")])


def test_an_unknown_state_machine_is_refused_naming_the_known_ones(machine, interleaver):
    # Given a state machine id the runner does not have
    # When a run or an interleaved start names it / Then both refuse, listing the ones it has
    with pytest.raises(LocalRunnerError, match=r"no state machine 'Nope'.*\['Child', 'Parent'\]"):
        machine.run({}, "nope", state_machine="Nope")
    with pytest.raises(LocalRunnerError, match="no state machine 'Nope'"):
        interleaver.start(Start(T0, {}, "nope", state_machine="Nope"))


def test_companions_may_share_a_function_only_if_it_is_the_same(parent, child):
    # Given a companion whose function reuses a logical id of the parent's for another handler
    clash = ExtractedMachine("Other", child.definition, {"StartChildren": f"{HERE}.finish_child"})
    same = ExtractedMachine("Same", child.definition, {**child.functions, "StartChildren": f"{HERE}.start_children"})
    # When the runner is built / Then the clash is refused (before anything opens), the shared function is not
    with pytest.raises(LocalRunnerError, match="'StartChildren'.*one logical id, one function"):
        LocalStateMachine(parent, VirtualClock(T0), companions=[clash])
    assert LocalStateMachine(parent, VirtualClock(T0), companions=[same]).functions["StartChildren"].endswith(
        ".start_children")
    with pytest.raises(LocalRunnerError, match="'Parent' is given twice"):
        LocalStateMachine(parent, VirtualClock(T0), companions=[parent])
