"""AWS limits held up front: the worst cases of ``lambdas.domain.limits``, Preflight's refusals, the CDK config's,
and the rollout state's bound.

Each check names the limit, the field and the fix; each worst case is compared with the limit it guards. The
model's per-state counts are held to the synthesized definition and to moto's history elsewhere
(tests/infrastructure/test_rollout_limits.py, tests/workflow/test_history_limit.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from albgate.sim import Simulation, load_scenario
from albgate.sim.strategies import bootstrap_hardened
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.limits import (
    HISTORY_BUDGET_EVENTS,
    HISTORY_MAX_EVENTS,
    MAX_APPLICATIONS_PER_CLUSTER,
    STATE_PAYLOAD_BUDGET_BYTES,
    STATE_PAYLOAD_MAX_BYTES,
    StepVisit,
    lambda_environment_bytes,
    max_looks,
    most_steps_within_history,
    payload_bytes,
    rollout_events,
    step_events,
)
from lambdas.domain.models import RolloutPolicy, RolloutRequest, parse_request
from lambdas.domain.plan import step_targets
from lambdas.domain.rollout.preflight import MAX_PREFLIGHT_TURNS, check_limits, limit_problems, preflight, worst_case
from lambdas.domain.state import MAX_TEXT_CHARS, RolloutState, StepRecord, TargetGroupInfo, largest_state_bytes
from stacks.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
REQUEST = RolloutRequest(cluster="prod", namespace="readiness", deployment="nginx-app", container="nginx",
                         image="123456789012.dkr.ecr.us-east-1.amazonaws.com/team/nginx-app:v2")


def group(i: int = 0, delay: int = 300) -> TargetGroupInfo:
    return TargetGroupInfo(
        arn=f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-readines-nginxsvc-{i:010d}/"
        "0123456789abcdef", service=f"nginx-svc-{i}", health_check_interval_seconds=10, healthy_threshold=2,
        deregistration_delay_seconds=delay)


# ---------------------------------------------------------------------------------------------------------
# How the limits are measured
# ---------------------------------------------------------------------------------------------------------
def test_the_environment_is_measured_as_the_compact_json_lambda_reports():
    # Lambda's refusal quotes the string it measured: {"KEY":"value",...}, no spaces
    assert lambda_environment_bytes({"A": "b", "CD": "é"}) == len('{"A":"b","CD":"é"}'.encode())


@pytest.mark.parametrize(("deadline", "looks"), [(60, 21), (900, 301), (420, 141), (61, 22)])
def test_a_loop_makes_at_most_one_look_per_shortest_wait_and_one_at_its_deadline(deadline, looks):
    assert max_looks(deadline) == looks


def test_a_step_costs_nine_events_per_look_and_a_rollout_adds_its_start_and_end():
    # Given one step that looked 5 times at its gate and once at its drain (the example app's first step)
    one = StepVisit(5, 1)
    # Then: Approval Needed? 2, Start Step 5, 5 looks x 7 + 4 waits x 2, Release 5, a drain look 7, then
    # Announce 5 + Bake 2 + More Steps? 2
    assert step_events(one, rollout=True) == 2 + 5 + (5 * 7 + 4 * 2) + 5 + 7 + 9
    # And a rollout of it: started 1, Preflight 7, the step, All Steps Passed 2, Finish 5 + Succeed 2, ended 1
    assert rollout_events([one]) == 1 + 7 + step_events(one, rollout=True) + 2 + 7 + 1
    with pytest.raises(ValueError):
        rollout_events([StepVisit(5, 0, passed=False)])  # a failed rollout that rolls back needs its rollback


# ---------------------------------------------------------------------------------------------------------
# History and duration: Preflight's refusals and the config's, table-driven
# ---------------------------------------------------------------------------------------------------------
LIMIT_CASES = [
    # id, policy, steps, drain deadline, the problems' distinctive words (none: it fits)
    ("default-policy-four-steps", {}, 4, 420, []),
    ("batch-of-one-five-steps", {"batch_size": 1}, 5, 420, ["25,000 events per execution", "at most 4"]),
    ("short-deadlines-many-steps", {"batch_size": 1, "step_deadline_seconds": 60, "drain_deadline_seconds": 30},
     59, 30, []),
    ("short-deadlines-too-many-steps", {"batch_size": 1, "step_deadline_seconds": 60, "drain_deadline_seconds": 30},
     80, 30, ["at most 59"]),
    ("one-approval", {"approval_before_steps": [2]}, 4, 420, []),
    ("two-approvals", {"approval_before_steps": [2, 3]}, 4, 420, ["timeout of 48 h", "2 approval(s)"]),
    ("day-long-bakes", {"bake_seconds": 86_400}, 4, 420, ["timeout of 48 h", "bake_seconds"]),
    ("long-drain-from-the-target-group", {}, 4, 3720, ["25,000 events per execution", "Not even one step fits"]),
    ("long-drain-shortened", {"drain_deadline_seconds": 600}, 3, 600, []),
]


@pytest.mark.parametrize("policy,steps,drain,words", [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES])
def test_a_rollouts_worst_case_is_held_to_the_history_and_the_timeout(policy, steps, drain, words):
    # Given a policy, its plan's steps and the drain deadline the target groups give
    problems = limit_problems(RolloutPolicy(**policy), steps, drain)
    # Then it fits, or each limit it passes is named with the fix
    assert bool(problems) == bool(words), problems
    text = " ".join(problems)
    for word in words:
        assert word in text, text
    worst = worst_case(RolloutPolicy(**policy), steps, drain)
    assert (worst.events <= HISTORY_BUDGET_EVENTS and worst.seconds <= 48 * 3600) == (not problems)


def test_the_default_policy_allows_four_steps_at_the_default_deadlines():
    assert most_steps_within_history(RolloutPolicy(), 420, preflight_turns=MAX_PREFLIGHT_TURNS) == 4
    assert worst_case(RolloutPolicy(), 4, 420).events <= HISTORY_BUDGET_EVENTS < HISTORY_MAX_EVENTS


def test_preflight_refuses_a_policy_longer_than_the_execution_may_run():
    # Given the example app and a policy with two approvals (each may wait 24 h)
    sim = Simulation(bootstrap_hardened(load_scenario(ROOT / "scenarios" / "seed-app.yaml")))
    sim.run_until(sim.rollout_start)
    request = sim.rollout_request().model_dump(mode="json")
    request["policy"]["approval_before_steps"] = [2, 3]
    # When Preflight reads it / Then it refuses (Rollout Refused), naming the field, the limit and the numbers
    with pytest.raises(InvalidInputError) as exc:
        preflight(sim.ports, parse_request(request), "two-approvals")
    assert str(exc.value).startswith("policy: this rollout could run 5")
    assert "timeout of 48 h" in str(exc.value) and "docs/rollout.md, Limits" in str(exc.value)
    # And nothing was changed
    assert sim.deployment().template.container("nginx").image == "ikubernetes/myapp:v1"


# ---------------------------------------------------------------------------------------------------------
# The CDK config, at synth
# ---------------------------------------------------------------------------------------------------------
def example() -> dict[str, Any]:
    return json.loads((ROOT / "config" / "example.json").read_text())


def with_policy(**policy: Any) -> dict[str, Any]:
    config = example()
    base = {k: v for k, v in config["rollout_policy"].items() if not ("batch_size" in policy and k == "steps")}
    config["rollout_policy"] = {**base, **policy}  # batch_size replaces steps: the two together are refused
    return config


def with_apps(count: int) -> dict[str, Any]:
    config = example()
    base = config["applications"][0]
    config["applications"] = [{**base, "deployment": f"app-{i}"} for i in range(count)]
    return config


SYNTH_CASES = [
    # id, config, what the error names (none: synth goes on)
    ("example", example(), None),
    ("two-approvals", with_policy(approval_before_steps=[2, 3]), ["rollout_policy:", "timeout of 48 h"]),
    ("batch-of-one-for-ten-replicas", (lambda c: (c["applications"][0].update(replicas=10), c)[1])(
        with_policy(batch_size=1)), ["rollout_policy:", "10 steps", "at most 4"]),
    ("batch-of-one-replicas-unknown", (lambda c: (c["applications"][0].pop("replicas"), c)[1])(
        with_policy(batch_size=1)), None),
    ("most-applications", with_apps(MAX_APPLICATIONS_PER_CLUSTER), None),
    ("one-application-too-many", with_apps(MAX_APPLICATIONS_PER_CLUSTER + 1),
     ["clusters.0:", f"{MAX_APPLICATIONS_PER_CLUSTER + 1} applications", f"at most {MAX_APPLICATIONS_PER_CLUSTER}"]),
]


@pytest.mark.parametrize("config,words", [c[1:] for c in SYNTH_CASES], ids=[c[0] for c in SYNTH_CASES])
def test_the_config_is_refused_at_synth_when_its_policy_or_applications_pass_a_limit(config, words):
    if words is None:
        parse_config(copy.deepcopy(config))
        return
    with pytest.raises(ConfigError) as exc:
        parse_config(copy.deepcopy(config))
    for word in words:
        assert word in str(exc.value), str(exc.value)


# ---------------------------------------------------------------------------------------------------------
# The rollout state
# ---------------------------------------------------------------------------------------------------------
def largest_accepted_replicas(groups: int) -> int:
    """The most replicas Preflight lets a default-policy rollout behind ``groups`` target groups have."""
    lo, hi = 1, 5000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            check_limits(REQUEST, step_targets(mid, REQUEST.policy), [group(i) for i in range(groups)],
                         previous_image="nginx:1.27", hardening={}, findings=[])
            lo = mid
        except InvalidInputError:
            hi = mid - 1
    return lo


@pytest.mark.parametrize(("groups", "at_least"), [(1, 500), (2, 350), (5, 200)])
def test_the_largest_state_of_the_largest_accepted_deployment_fits_with_margin(groups, at_least):
    # Given the most replicas Preflight accepts behind this many target groups
    replicas = largest_accepted_replicas(groups)
    assert replicas >= at_least
    tgs = [group(i) for i in range(groups)]
    # Then its largest state is within the budget, which leaves an eighth of Step Functions' limit free
    size = largest_state_bytes(REQUEST, replicas=replicas, plan=step_targets(replicas, REQUEST.policy),
                               target_groups=tgs, previous_image="nginx:1.27")
    assert size <= STATE_PAYLOAD_BUDGET_BYTES <= STATE_PAYLOAD_MAX_BYTES * 7 // 8
    # And one more replica is refused, naming the limit and the fix
    with pytest.raises(InvalidInputError) as exc:
        check_limits(REQUEST, step_targets(replicas + 1, REQUEST.policy), tgs, previous_image="nginx:1.27",
                     hardening={}, findings=[])
    assert "States.DataLimitExceeded" in str(exc.value) and "fewer replicas per Deployment" in str(exc.value)


def test_the_largest_plan_the_history_allows_carries_a_state_within_the_budget():
    # Given the shortest deadlines, at which the history allows the most steps, one pod per step
    policy = RolloutPolicy(batch_size=1, step_deadline_seconds=60, drain_deadline_seconds=30)
    steps = most_steps_within_history(policy, 30, preflight_turns=MAX_PREFLIGHT_TURNS)
    assert steps == 59
    request = REQUEST.model_copy(update={"policy": policy})
    plan = step_targets(steps, policy)
    # When Preflight checks it / Then it passes, and its largest state (a record per step) fits the budget
    check_limits(request, plan, [group()], previous_image="nginx:1.27", hardening={}, findings=[])
    size = largest_state_bytes(request, replicas=steps, plan=plan, target_groups=[group()], previous_image="x")
    assert size <= STATE_PAYLOAD_BUDGET_BYTES


def _state(**changes: Any) -> RolloutState:
    base = dict(request=REQUEST, execution_name="e", started_at=1.0, replicas=3, plan=[1, 2, 3],
                target_image="i@sha256:" + "0" * 64, previous_image="p", previous_revision=1,
                original_max_surge="25%", original_max_unavailable=0, target_groups=[group(0), group(1)])
    return RolloutState(**{**base, **changes})


def test_deregistered_targets_are_carried_by_group_number_only_while_a_drain_reads_them():
    arn0, arn1 = group(0).arn, group(1).arn
    records = [StepRecord(step=1, mode="rollout", target=1, started_at=1.0, deregistered=[f"{arn0}|10.0.0.1"]),
               StepRecord(step=2, mode="rollout", target=2, started_at=2.0, deregistered=[f"{arn1}|10.0.0.2"]),
               StepRecord(step=3, mode="rollout", target=3, started_at=3.0, deregistered=[f"{arn0}|10.0.0.3"])]
    # Given step 3 running while the next gate follows step 2's drain
    state = _state(steps=records, pending_drain_step=2)
    # When it is handed on
    carried = state.dump()
    # Then step 1's list is gone (its count kept), the others name their group by number
    assert [r["deregistered"] for r in carried["steps"]] == [[], ["#1|10.0.0.2"], ["#0|10.0.0.3"]]
    assert [r["deregistered_total"] for r in carried["steps"]] == [1, 1, 1]
    # And the next handler reads exactly what was written
    again = RolloutState.model_validate(carried)
    assert [r.deregistered for r in again.steps] == [[], [f"{arn1}|10.0.0.2"], [f"{arn0}|10.0.0.3"]]
    assert again.dump() == carried


def test_a_caught_errors_long_cause_is_cut_when_a_handler_reads_the_state():
    cause = json.dumps({"errorMessage": "x" * 30_000, "stackTrace": ["frame"] * 100})
    state = _state(failure={"Error": "KeyError", "Cause": cause}, failure_summary="s" * 40_000)
    assert len(state.failure["Cause"]) == MAX_TEXT_CHARS and state.failure["Cause"].endswith("[truncated]")
    assert len(state.failure_summary) == MAX_TEXT_CHARS
    assert payload_bytes(state.dump()) < 3 * MAX_TEXT_CHARS + 4096
