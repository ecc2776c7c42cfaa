"""The few quicker looks of a step: the drain's looks for the scale-down right after the gate passed, and the
gate's looks at the Load Balancer Controller's conditions once its first requeue could have written
(lambdas/domain/poll.py, observe.next_look, rollout.gate.quick_conditions_look), and what they add to the worst
case the history is sized for (lambdas/domain/limits.py)."""

from __future__ import annotations

import math

import pytest

from lambdas.domain import limits, poll
from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, Verdict
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.rollout.gate import check_target_health, conditions_overdue_seconds, quick_conditions_look
from lambdas.domain.rollout.observe import Pace, next_look, poll_key
from lambdas.domain.state import StepRecord
from tests.unit.test_domain_mutants_gate_drain import ARN, NOW, rollout, target, world
from tests.unit.test_drain_carried import gated_group, lbc_pod


# ---------------------------------------------------------------------------------------------------------
# The drain's looks for the scale-down
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("since", [0.0, 0.3, 2.0, poll.SCALE_DOWN_QUICK_SECONDS - 0.01])
def test_just_after_the_gate_passed_the_scale_down_is_looked_for_every_second(since):
    assert poll.scale_down_poll_seconds("k", since) == poll.SCALE_DOWN_QUICK_POLL_SECONDS == 1


@pytest.mark.parametrize("since", [None, -1.0, poll.SCALE_DOWN_QUICK_SECONDS, 30.0])
def test_later_or_without_a_passed_gate_it_is_looked_for_at_the_pods_pace(since):
    assert poll.scale_down_poll_seconds("k", since) == poll.pod_poll_seconds("k")


def test_the_drain_times_its_scale_down_looks_from_the_steps_gate():
    s = rollout()
    s.steps[-1].gate_passed_at = NOW - 2
    assert next_look(s, Pace("scale-down"), NOW) == 1
    assert next_look(s, Pace("scale-down"), NOW + 2) == poll.pod_poll_seconds(poll_key(s, "scale-down"))


def test_without_a_step_record_the_scale_down_is_looked_for_at_the_pods_pace():
    s = rollout()
    s.steps = []
    assert next_look(s, Pace("scale-down"), NOW) == poll.pod_poll_seconds(poll_key(s, "scale-down"))


# ---------------------------------------------------------------------------------------------------------
# The gate's looks at the controller's conditions
# ---------------------------------------------------------------------------------------------------------
QUICK_FROM = CONTROLLER_REQUEUE_SECONDS - poll.POD_START_POLL_SECONDS  # after a look first saw a pod ContainersReady


def record(first_ready_at: float | None, quick_looks: int = 0) -> StepRecord:
    return StepRecord(step=1, mode="rollout", target=1, started_at=0.0, first_ready_at=first_ready_at,
                      quick_looks=quick_looks)


def test_a_look_is_quick_from_one_requeue_less_a_pods_wait_after_the_first_ready_pod():
    assert QUICK_FROM == 12
    assert not quick_conditions_look(record(100.0), 100.0 + QUICK_FROM - 0.01)
    assert quick_conditions_look(record(100.0), 100.0 + QUICK_FROM)
    assert not quick_conditions_look(record(None), 10_000.0)


def test_a_step_has_at_most_ten_quick_looks():
    assert poll.CONDITIONS_QUICK_LOOKS == 10
    assert quick_conditions_look(record(0.0, quick_looks=9), 50.0)
    assert not quick_conditions_look(record(0.0, quick_looks=10), 50.0)


def test_a_quick_look_waits_two_seconds_but_never_past_the_overdue_look():
    s = rollout()
    assert next_look(s, Pace("conditions", seconds=30, quick=True), NOW) == poll.CONDITIONS_POLL_SECONDS == 2
    assert next_look(s, Pace("conditions", seconds=1, quick=True), NOW) == 1
    assert next_look(s, Pace("conditions", seconds=30), NOW) == poll.pod_poll_seconds(poll_key(s, "conditions"))


def test_the_gate_counts_its_quick_looks_and_paces_by_them():
    # Given a gated pod whose controller condition still says its target is being registered (one that says ELB checks
    # it is nudged an interval later: tests/unit/test_checked_nudge.py)
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.RegistrationInProgress")]
    s = rollout(groups=(gated_group(),))
    # When the gate first looks / Then at the pods' pace, nothing counted
    s = check_target_health(world(pods, {ARN: [target("10.0.1.1", "healthy")]}).ports, s)
    assert s.steps[-1].quick_looks == 0 and s.wait_seconds >= poll.POD_START_POLL_SECONDS
    # When it looks once the controller's first requeue could have written / Then 2 s apart, each counted
    at = NOW + QUICK_FROM
    for n in range(1, 3):
        s = check_target_health(world(pods, {ARN: [target("10.0.1.1", "healthy")]}, now=at).ports, s)
        assert s.gate.status is Verdict.WAITING and s.steps[-1].quick_looks == n and s.wait_seconds == 2
        at += 2
    assert at < NOW + conditions_overdue_seconds(s)


# ---------------------------------------------------------------------------------------------------------
# The worst case
# ---------------------------------------------------------------------------------------------------------
def test_the_quick_waits_are_counted_as_the_seconds_they_save():
    # the quick looks at the controller's conditions, and those once old pods are out of service
    assert limits.GATE_QUICK_SAVED_SECONDS == 10 * (3 - 2) + 4 * (3 - 1)
    assert limits.DRAIN_QUICK_SAVED_SECONDS == 4 * (3 - 1)
    worst = limits.worst_case(RolloutPolicy(step_deadline_seconds=600), 2, 420, preflight_turns=0)
    assert worst.gate_looks == math.ceil((600 + 18) / 3) + 1
    assert worst.drain_looks == math.ceil((420 + 8) / 3) + 1


def test_looks_at_the_shortest_waits_with_every_quick_one_stay_within_the_count():
    # A gate loop: its quick looks first (2 s apart), then 3 s apart, looking while the last look came before the
    # deadline
    for deadline in (60, 61, 62, 299, 900):
        t, looks, quick = 0.0, 1, poll.CONDITIONS_QUICK_LOOKS
        while True:
            t += 2 if quick else 3
            quick = max(0, quick - 1)
            if t >= deadline:
                break
            looks += 1
        assert looks <= limits.max_looks(deadline + limits.GATE_QUICK_SAVED_SECONDS), deadline


# ---------------------------------------------------------------------------------------------------------
# A booked look at ELB, where the controller's conditions can still tell
# ---------------------------------------------------------------------------------------------------------
def test_while_its_elb_look_waits_for_a_turn_the_gate_reads_the_conditions_each_controller_requeue():
    # Given a gated pod whose conditions are overdue a requeue after the nudge that made the first overdue look, and
    # albgate's share of the Describe* calls spent for 300 s
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s) - CONTROLLER_REQUEUE_SECONDS
    s.steps[-1].nudged_at = NOW - CONTROLLER_REQUEUE_SECONDS
    w = world(pods, {ARN: [target("10.0.1.1", "healthy")]}, budget=300)
    # When the gate looks / Then its ELB look is booked, and it comes back one controller requeue later, not 300 s
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 0 and s.gate.status is Verdict.WAITING and "booked in 300 s" in s.gate.reason
    assert s.wait_seconds == CONTROLLER_REQUEUE_SECONDS and s.describe_slot_at == NOW + 300
    # When the controller has written the target healthy by then / Then the gate passes on that, no ELB call made
    later = world([lbc_pod("web-new-a", "10.0.1.1", "True")], {}, now=NOW + CONTROLLER_REQUEUE_SECONDS, budget=300)
    s = check_target_health(later.ports, s)
    assert s.gate.status is Verdict.PASSED and s.gate.release == ("web-new-a",) and later.elb.health_reads == 0


def test_a_booked_look_the_conditions_cannot_replace_waits_for_its_turn():
    # Given a new pod without the controller's gate (nothing to read on it), the share spent for 300 s
    from tests.unit.test_domain_mutants_gate_drain import pod
    w = world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", "initial", "Elb.InitialHealthChecking")]},
              budget=300)
    s = check_target_health(w.ports, rollout())
    # Then the gate waits for the booked turn itself
    assert w.elb.health_reads == 0 and s.gate.status is Verdict.WAITING and s.wait_seconds == 300
