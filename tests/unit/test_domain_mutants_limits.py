"""The worst case a rollout's policy allows, as Preflight adds it up against the history and the timeout.

Given policies that differ in one thing (a bake, an approval, a step more, the bus that announces steps), when
their worst cases are added up, then each difference costs exactly what its states and waits cost: an approval
its two approval states and its timeout, a bake its wait between steps, a step its events, the announcement its
one state per step; and a history or duration over the limit is refused with the numbers and the fix.
"""

from __future__ import annotations

import pytest

from lambdas.domain import limits
from lambdas.domain.limits import (
    StepVisit, WorstCase, duration_problem, history_problem, loop_events, most_steps_within_history, rollout_events,
    step_events, worst_case,
)
from lambdas.domain.models import RolloutPolicy

DRAIN = 330


def case(steps: int = 3, announce: bool = True, **policy) -> WorstCase:
    return worst_case(RolloutPolicy(**policy), steps, DRAIN, preflight_turns=2, announce=announce)


def events_of(name: str) -> int:
    return sum(limits.EVENTS_PER_STATE[kind] for _, kind in limits.ROLLOUT_SEGMENTS[name])


def test_a_bake_costs_its_wait_between_steps_but_not_after_the_last():
    assert case(bake_seconds=100).seconds - case().seconds == 2 * 100


def test_each_approval_costs_its_states_and_its_timeout_and_one_before_step_one_counts():
    base, one, two = case(), case(approval_before_steps=[1]), case(approval_before_steps=[1, 3])
    assert (one.approvals, two.approvals) == (1, 2)
    assert one.events - base.events == events_of("approval")
    assert two.events - base.events == 2 * events_of("approval")
    assert one.seconds - base.seconds == limits.APPROVAL_TIMEOUT_SECONDS
    assert case(approval_before_steps=[4]).approvals == 0  # past the plan: never asked


def test_a_step_more_costs_one_steps_events_and_seconds():
    two, three = case(2), case(3)
    assert three.events - two.events == three.step_events
    step_seconds = RolloutPolicy().step_deadline_seconds + DRAIN + 2 * limits.LOOK_OVERSHOOT_SECONDS
    assert three.seconds - two.seconds == step_seconds
    assert case(1).seconds == 2 * step_seconds + limits.DURATION_MARGIN_SECONDS


def test_without_the_bus_each_passed_step_saves_its_announcement():
    # 3 steps: 2 pass in the rollout, the last fails, the rollback's one step passes: 3 announcements
    assert case(announce=True).events - case(announce=False).events == 3 * events_of_state("Announce Step Passed")
    assert case(announce=True).step_events - case(announce=False).step_events == events_of_state("Announce Step Passed")
    assert case().breakdown == {"gate looks per step": case().gate_looks, "drain looks per step": case().drain_looks,
                                "events per step": case().step_events,
                                "rollback events": step_events(StepVisit(case().gate_looks, case().drain_looks),
                                                               rollout=False)}


def events_of_state(name: str) -> int:
    kinds = {n: k for segment in limits.ROLLOUT_SEGMENTS.values() for n, k in segment}
    return limits.EVENTS_PER_STATE[kinds[name]]


def test_a_step_that_fails_at_its_gate_records_the_gate_failure_and_releases_nothing():
    failed_gate = step_events(StepVisit(4, 0, passed=False), rollout=True)
    failed_drain = step_events(StepVisit(4, 2, passed=False), rollout=True)
    assert failed_drain - failed_gate == (events_of("release") + loop_events(2, "drain_look", "drain_wait")
                                          + events_of("drain_failed") - events_of("gate_failed"))


def test_a_rollback_step_has_no_entry_states_and_the_rollback_costs_its_decision():
    visit = StepVisit(3, 2)
    assert step_events(visit, rollout=True) - step_events(visit, rollout=False) == events_of("step_entry")
    passed = rollout_events([StepVisit(3, 2)])
    rolled_back = rollout_events([StepVisit(3, 2, passed=False)], rollback=[StepVisit(3, 2)])
    assert rolled_back - passed == (events_of("drain_failed") - events_of("step_passed") + events_of("roll_back")
                                    + step_events(StepVisit(3, 2), rollout=False) + events_of("rolled_back")
                                    - events_of("succeeded"))


@pytest.mark.parametrize("steps,rollback", [
    ([StepVisit(1, 1, passed=False)], []),
    ([StepVisit(1, 1, passed=False), StepVisit(1, 1, passed=False)], [StepVisit(1, 1)]),
    ([StepVisit(1, 0, passed=False)], [StepVisit(1, 0, passed=False)]),
])
def test_a_path_the_state_machine_cannot_take_is_refused(steps, rollback):
    with pytest.raises(ValueError, match="^a rollout that rolls back fails at its last step and passes every rollback "
                                         "step$"):
        rollout_events(steps, rollback=rollback)


def test_a_loop_without_looks_costs_nothing_and_a_policy_without_steps_is_refused():
    assert loop_events(0, "gate_look", "gate_wait") == 0
    with pytest.raises(ValueError, match="^a rollout has at least one step$"):
        case(0)


def test_the_drain_deadline_is_the_policys_or_the_delay_plus_the_margin():
    assert limits.drain_deadline_seconds(RolloutPolicy(drain_deadline_seconds=200), 30) == 200
    assert limits.drain_deadline_seconds(RolloutPolicy(), 30) == 30 + limits.DRAIN_MARGIN_SECONDS
    assert limits.drain_deadline_seconds(RolloutPolicy()) == (limits.DEFAULT_DEREGISTRATION_DELAY_SECONDS
                                                              + limits.DRAIN_MARGIN_SECONDS)


def test_the_most_steps_are_the_largest_count_whose_worst_case_fits_the_history():
    policy = RolloutPolicy()
    most = most_steps_within_history(policy, DRAIN, preflight_turns=2)
    fits = worst_case(policy, most, DRAIN, preflight_turns=2)
    over = worst_case(policy, most + 1, DRAIN, preflight_turns=2)
    assert fits.events <= limits.HISTORY_BUDGET_EVENTS < over.events


def test_a_history_over_the_budget_is_refused_with_the_counts_and_the_most_steps():
    worst = WorstCase(steps=60, step_events=500, events=30_000, seconds=1, gate_looks=100, drain_looks=60, approvals=0)
    assert history_problem(worst, 12) == (
        "this rollout has 60 steps and could record 30,000 history events (each step up to 500: 100 gate looks in "
        "step_deadline_seconds, 60 drain looks in the drain deadline, plus a rollback), over the "
        f"{limits.HISTORY_BUDGET_EVENTS:,} albgate allows below Step Functions' limit of "
        f"{limits.HISTORY_MAX_EVENTS:,} events per execution; past that limit the execution fails mid-rollout, "
        "without a rollback. Use fewer, larger steps (at most 12 at these deadlines: a larger batch_size or fewer "
        "steps entries), or shorter step_deadline_seconds / drain_deadline_seconds (docs/rollout.md, Limits)")
    assert history_problem(worst, 0).endswith(
        "Not even one step fits at these deadlines: use a shorter step_deadline_seconds or drain_deadline_seconds "
        "(docs/rollout.md, Limits)")
    at_budget = WorstCase(1, 1, limits.HISTORY_BUDGET_EVENTS, 1, 1, 1, 0)
    assert history_problem(at_budget, 1) is None


def test_a_rollout_longer_than_the_timeout_is_refused_with_hours():
    worst = WorstCase(steps=4, step_events=1, events=1, seconds=36 * 3600 + 1800, gate_looks=1, drain_looks=1,
                      approvals=2)
    assert duration_problem(worst, 24 * 3600) == (
        f"this rollout could run 36.5 h (4 steps of step_deadline_seconds + drain deadline + bake_seconds, 2 "
        f"approval(s) of up to {limits.APPROVAL_TIMEOUT_SECONDS // 3600} h each, a rollback and "
        f"{limits.DURATION_MARGIN_SECONDS // 60} min for Lambda run time and retries), longer than the rollout state "
        "machine's timeout of 24 h; an execution that times out stops mid-rollout without a rollback. Use fewer "
        "approvals, fewer steps, a shorter bake_seconds or shorter deadlines (docs/rollout.md, Limits)")
    assert duration_problem(WorstCase(1, 1, 1, 24 * 3600, 1, 1, 0), 24 * 3600) is None
