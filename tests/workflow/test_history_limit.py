"""The execution history limit (25,000 events per Standard execution), held against real executions.

The synthesized rollout state machine runs in moto against the simulated cluster, and its history (which moto
records event by event, as Step Functions does) is compared with the domain's model of it
(``lambdas.domain.limits``): each state visit records the events its kind is counted for, a whole execution
records exactly what the model adds up for the looks it made, a loop that runs into its deadline makes no more
looks than the worst case allows, and the largest plan Preflight accepts runs while one step more is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albgate.sim.albgate_strategy import LAMBDA_SECONDS, SimClock, quiet_powertools
from albgate.sfn_local.extract import extract_state_machine
from albgate.sfn_local.runner import ExecutionResult, LocalStateMachine
from albgate.sim import Simulation, load_scenario, parse_scenario
from albgate.sim.strategies import bootstrap_hardened
from albgate.template import state_machine_id
from lambdas.domain.contract import ROLLBACK_PREFIX
from lambdas.domain.limits import (
    EVENTS_PER_STATE,
    HISTORY_BUDGET_EVENTS,
    ROLLOUT_SEGMENTS,
    StepVisit,
    drain_deadline_seconds,
    max_looks,
    rollout_events,
)
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.rollout.preflight import worst_case
from lambdas.handlers import _runtime

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
# State name -> kind, the rollback's prefixed copies included.
KINDS = {name: kind for segment in ROLLOUT_SEGMENTS.values() for name, kind in segment}
KINDS |= {ROLLBACK_PREFIX + name: kind for name, kind in list(KINDS.items())}


def run(sim: Simulation, template: dict, name: str, policy: dict[str, Any] | None = None) -> ExecutionResult:
    """One rollout of the simulated app by the synthesized state machine; approvals answered at once."""
    sim.run_until(sim.rollout_start)
    extracted = extract_state_machine(template, state_machine_id(template))
    request = sim.rollout_request().model_dump(mode="json")
    if policy is not None:
        base = {k: v for k, v in request["policy"].items() if not ("batch_size" in policy and k == "steps")}
        request["policy"] = {**base, **policy}  # batch_size replaces steps: the two together are refused

    def invoke(logical_id, handler, event):
        sim.advance(LAMBDA_SECONDS)
        return machine.invoke_handler(logical_id, handler, event)

    _runtime.use_ports(lambda cluster: sim.ports)
    try:
        with quiet_powertools(), LocalStateMachine(extracted, SimClock(sim), invoke=invoke,
                                                   on_task_token=lambda t: t.succeed({}),
                                                   real_timeout_seconds=300) as machine:
            return machine.run(request, name=name)
    finally:
        _runtime.use_ports(None)


def scenario(name: str) -> Simulation:
    return Simulation(bootstrap_hardened(load_scenario(SCENARIOS / f"{name}.yaml")))


def visits(history: list[dict]) -> list[tuple[str, int]]:
    """(state name, events recorded while in it) for every state visit, the execution's own events apart."""
    out: list[tuple[str, int]] = []
    for event in history:
        if event["type"].startswith("Execution"):
            continue
        if event["type"].endswith("StateEntered"):
            out.append((event["stateEnteredEventDetails"]["name"], 0))
        out[-1] = (out[-1][0], out[-1][1] + 1)
    return out


def step_visits(history: list[dict]) -> tuple[list[StepVisit], list[StepVisit], int]:
    """What the execution did, as the model counts it: its rollout steps, its rollback's, Preflight's turns."""
    steps: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    preflights = approvals = 0
    for name, _ in visits(history):
        rollback = name.startswith(ROLLBACK_PREFIX)
        base = name.removeprefix(ROLLBACK_PREFIX)
        if base == "Preflight":
            preflights += 1
        elif base == "Wait For Approval":
            approvals += 1
        elif base == "Start Step":
            steps[rollback].append({"gate": 0, "drain": 0, "approval": approvals > 0, "passed": False})
            approvals = 0
        elif base == "Check Target Health":
            steps[rollback][-1]["gate"] += 1
        elif base == "Verify Drain":
            steps[rollback][-1]["drain"] += 1
        elif base == "More Steps?":
            steps[rollback][-1]["passed"] = True
    made = {k: [StepVisit(s["gate"], s["drain"], s["approval"], s["passed"]) for s in v] for k, v in steps.items()}
    return made[False], made[True], preflights - 1


CASES = [
    # scenario, policy, expected status
    pytest.param("seed-app", {"approval_before_steps": [2]}, "SUCCEEDED", id="succeeds-with-an-approval"),
    pytest.param("broken-image", {}, "FAILED", id="rolls-back"),
    # new pods that take 10 minutes to start, on EKS Auto Mode: the gate looks at its shortest wait until its
    # deadline (no controller's gate on the pods, so the task does not watch them: each look is a state visit), and
    # without a rollback the execution ends in `Rollout Failed`
    pytest.param("slow-start", {"step_deadline_seconds": 60, "rollback_on_failure": False}, "FAILED",
                 id="gate-runs-into-its-deadline"),
]
# The model counts the executions that succeed or roll back (the worst case ends so).
MODELLED = [c for c in CASES if c.id != "gate-runs-into-its-deadline"]


def slow_start() -> Simulation:
    """The example app on EKS Auto Mode, whose containers take 10 minutes to start (a large image pulled on a cold
    node)."""
    return Simulation(bootstrap_hardened(parse_scenario({
        "name": "slow-start", "seed": 6, "traffic": {"rate_per_second": 0}, "cluster": {"auto_mode": True},
        "app": {"startup": {"container_start_seconds": [600, 600]}},
        "rollout": {"image": "ikubernetes/myapp:v2"}})))


@pytest.fixture(scope="module")
def runs(template) -> dict[str, ExecutionResult]:
    results = {}
    for case in CASES:
        name, policy, _ = case.values
        sim = slow_start() if name == "slow-start" else scenario(name)
        results[case.id] = run(sim, template, f"history-{case.id}", policy)
    return results


@pytest.mark.parametrize(("scenario_name", "policy", "status"), CASES)
def test_each_state_visit_records_the_events_its_kind_is_counted_for(runs, request, scenario_name, policy, status):
    result = runs[request.node.callspec.id]
    assert result.status == status, (result.error, result.cause)
    # Given every state visit of a real execution (retries apart: none happened here)
    assert result.retries == 0
    seen = visits(result.history)
    assert seen
    # Then each one recorded what the model counts for its kind (a state waiting for a token: at most that)
    for name, events in seen:
        kind = KINDS[name]
        if kind == "TokenTask":
            assert 5 <= events <= EVENTS_PER_STATE[kind], name
        else:
            assert events == EVENTS_PER_STATE[kind], (name, kind, events)


@pytest.mark.parametrize(("scenario_name", "policy", "status"), MODELLED)
def test_the_model_adds_up_to_the_history_the_execution_recorded(runs, request, scenario_name, policy, status):
    result = runs[request.node.callspec.id]
    rollout, rollback, turns = step_visits(result.history)
    # Given the looks the execution made / When the model adds up their events
    counted = rollout_events(rollout, rollback=rollback, preflight_turns=turns)
    # Then it is the history's length, but for TaskSubmitted, which Step Functions records for a token wait
    # and moto does not
    token_waits = sum(1 for s in rollout if s.approval)
    submitted = sum(1 for e in result.history if e["type"] == "TaskSubmitted")
    assert counted - token_waits + submitted == len(result.history)


def test_a_gate_that_runs_into_its_deadline_stays_within_the_worst_case(runs):
    result = runs["gate-runs-into-its-deadline"]
    rollout, rollback, _ = step_visits(result.history)
    # Given pods that have not started by the step deadline: the gate looks every 3-4 s until it fails
    assert result.visited[-3:] == ["Record Gate Failure", "Roll Back?", "Rollout Failed"]
    assert len(rollout) == 1 and rollout[0].drain_looks == 0 and not rollback
    policy = RolloutPolicy(step_deadline_seconds=60)
    # Then it made no more looks than the worst case counts, and not many fewer (the bound is not slack)
    assert max_looks(60) - 6 <= rollout[0].gate_looks <= max_looks(60)
    # And the whole execution is within the worst case of its plan
    assert len(result.history) <= worst_case(policy, len(rollout), drain_deadline_seconds(policy, 300)).events


def five_replicas(replicas: int) -> Simulation:
    return Simulation(bootstrap_hardened(parse_scenario({
        "name": f"replicas-{replicas}", "seed": 1, "traffic": {"rate_per_second": 0}, "app": {"replicas": replicas},
        "rollout": {"image": "ikubernetes/myapp:v2"}})))


def test_the_largest_plan_preflight_accepts_runs_and_one_step_more_is_refused(template):
    policy = {"batch_size": 1}
    drain = drain_deadline_seconds(RolloutPolicy(), 300)  # the simulated target group's deregistration delay
    # Given batch_size 1 at the default deadlines: four steps fit the history's budget, five do not
    assert worst_case(RolloutPolicy(**policy), 4, drain).events <= HISTORY_BUDGET_EVENTS
    assert worst_case(RolloutPolicy(**policy), 5, drain).events > HISTORY_BUDGET_EVENTS
    # When a Deployment of 4 replicas is rolled one pod per step / Then it runs and succeeds, within its bound
    largest = run(five_replicas(4), template, "largest-allowed", policy)
    rollout, _, _ = step_visits(largest.history)
    assert largest.status == "SUCCEEDED" and len(rollout) == 4
    assert len(largest.history) <= worst_case(RolloutPolicy(**policy), 4, drain).events
    # When the Deployment has 5 replicas / Then Preflight refuses it, naming the limit and the fix
    refused = run(five_replicas(5), template, "one-step-over", policy)
    assert refused.status == "FAILED" and refused.error == "InvalidInputError"
    assert refused.visited[-1] == "Rollout Refused"
    assert "25,000 events per execution" in refused.cause and "at most 4" in refused.cause
    assert "Start Step" not in refused.visited  # nothing was changed
