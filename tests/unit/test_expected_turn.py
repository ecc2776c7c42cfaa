"""Where no controller's gate is on a step's pods, its first look at ELB comes no sooner after they turned
ContainersReady than the quickest earlier step's targets took at least to turn healthy, less a fifth
(rollout.gate.expected_turn_at): the looks before that spend Describe* tokens on answers that cannot pass the gate."""

from __future__ import annotations

import dataclasses

import pytest

from lambdas.domain import poll
from lambdas.domain.gate import Verdict
from lambdas.domain.ports import HEALTHY, INITIAL, REGISTRATION_IN_PROGRESS, PodCondition
from lambdas.domain.rollout.gate import check_target_health, expected_turn_at, started_at
from lambdas.domain.rollout.observe import Pace, next_look, poll_key, turn_wait_seconds
from lambdas.domain.state import StepRecord
from tests.unit.test_domain_mutants_gate_drain import ARN, INTERVAL, NOW, pod, rollout, target, world
from tests.unit.test_drain_carried import lbc_pod

STARTED = NOW - 4  # when this step's pods turned ContainersReady


def started(p, at: float | None = STARTED):
    """The pod with its ContainersReady condition's lastTransitionTime."""
    conditions = tuple(dataclasses.replace(c, last_transition_time=at) if c.type == "ContainersReady" else c
                       for c in p.conditions)
    return dataclasses.replace(p, conditions=conditions)


def step_pods(at: float | None = STARTED):
    return [pod("web-new-a", "10.0.1.1", released=True), started(pod("web-new-b", "10.0.1.2"), at)]


def second_step(*earlier: float | None, mode: str = "rollout"):
    """Step 2 of a rollout (plan 1, 2, 3); ``earlier``: each earlier step's ``turned_after`` (in ``mode``)."""
    s = rollout(step=1, plan=(1, 2, 3))
    for i, after in enumerate(earlier):
        s.steps[i] = StepRecord(step=i + 1, mode=mode, target=1, started_at=10.0, turned_after=after)
    return s


def test_a_step_starts_when_its_last_started_pod_turned_containers_ready():
    record = StepRecord(step=1, mode="rollout", target=2, started_at=0.0, first_ready_at=NOW)
    pods = [started(pod("web-new-a", "10.0.1.1"), 90.0), started(pod("web-new-b", "10.0.1.2"), 93.0),
            started(pod("web-new-c", "10.0.1.3", ready=False), 99.0)]  # not started: not counted
    assert started_at(pods, record) == 93.0
    # a pod that does not say when: the look that first saw them started
    assert started_at([*pods[:2], started(pod("web-new-d", "10.0.1.4"), None)], record) == NOW
    assert started_at([], StepRecord(step=1, mode="rollout", target=1, started_at=0.0)) is None


def test_the_first_step_and_steps_without_an_elb_measure_look_at_once():
    s = second_step(None)
    assert expected_turn_at(s, s.steps[-1], step_pods()[1:]) is None
    s = rollout()
    s.steps[-1].turned_after = 3.0  # its own measure does not count
    assert expected_turn_at(s, s.steps[-1], step_pods()[1:]) is None
    # nor before the step's pods are known started
    s = second_step(30.0)
    assert expected_turn_at(s, s.steps[-1], []) is None


def test_the_quickest_earlier_step_of_the_same_mode_less_a_fifth_sets_the_first_look():
    s = second_step(14.0, 10.0)
    s.steps.append(StepRecord(step=3, mode="rollout", target=3, started_at=90.0))
    assert poll.EXPECTED_TURN_EARLY_FRACTION == 0.2
    assert expected_turn_at(s, s.steps[-1], step_pods()[1:]) == STARTED + 8.0
    # a rollback's pods are another version's: the rollout's steps say nothing of them
    rb = second_step(14.0, mode="rollout")
    rb.steps[-1] = StepRecord(step=1, mode="rollback", target=1, started_at=90.0)
    assert expected_turn_at(rb, rb.steps[-1], step_pods()[1:]) is None


def test_pods_with_the_controllers_gate_are_not_held_back():
    # its conditions pace the looks, and read_controller_conditions: false asks ELB every interval on purpose
    s = second_step(30.0)
    pods = [pod("web-new-a", "10.0.1.1", released=True), started(lbc_pod("web-new-b", "10.0.1.2", "False"))]
    assert expected_turn_at(s, s.steps[-1], pods) is None


def test_before_the_expected_turn_the_gate_reads_the_pods_only_and_waits_at_most_an_interval():
    # Given step 1's targets turned no sooner than 30 s after its pods started, and step 2's pods started 4 s ago
    w = world(step_pods(), {ARN: [target("10.0.1.2", INITIAL, REGISTRATION_IN_PROGRESS)]})
    s = check_target_health(w.ports, second_step(30.0))
    # Then ELB is not asked before 24 s after the pods started; the next look comes one interval later (the alarms
    # are read at that pace)
    assert w.elb.health_reads == 0
    assert s.gate.status is Verdict.WAITING
    assert s.gate.reason == ("the new pods started; an earlier step's targets took 30 s or more to turn healthy after "
                             "theirs, so ELB is asked in 20 s")
    assert s.wait_seconds == INTERVAL


def test_the_wait_ends_at_the_expected_turn_when_that_is_sooner_than_an_interval():
    w = world(step_pods())
    s = check_target_health(w.ports, second_step(10.0))
    assert (w.elb.health_reads, s.wait_seconds) == (0, 4)
    assert next_look(s, Pace("turn", seconds=30), NOW) == INTERVAL


def test_a_long_hold_back_reads_the_pods_as_seldom_as_a_long_registration_is_looked_at():
    # Given pods seen started 200 s ago and the turn 100 s away: the wait of a registration that old, not an interval
    s = second_step(300.0)
    s.steps[-1].first_ready_at = NOW - 200
    wait = next_look(s, Pace("turn", seconds=100), NOW)
    assert wait == poll.registration_poll_seconds(INTERVAL, 200, poll_key(s, "turn")) >= 20
    assert next_look(s, Pace("turn", seconds=12), NOW) == 12


def test_the_hold_back_counts_the_pods_of_the_step_it_holds_back_not_an_earlier_steps():
    # Given step 3 whose pods were seen started 200 s ago, step 2's a moment ago
    s = rollout(step=2, plan=(1, 2, 3))
    s.steps[1].first_ready_at, s.steps[2].first_ready_at = NOW, NOW - 200
    # Then the wait is that of a registration 200 s old
    wait = next_look(s, Pace("turn", seconds=100), NOW)
    assert wait == poll.registration_poll_seconds(INTERVAL, 200, poll_key(s, "turn")) >= 20


@pytest.mark.parametrize(("until", "waits"), [
    (30, [10, 10, 10]), (12, [9, 3]), (11, [8, 3]), (13, [10, 3]), (4, [4]), (3, [3]), (1, [3]), (0, [3])])
def test_the_waits_before_the_turn_are_an_interval_at_most_and_never_shorter_than_the_pods_pace(until, waits):
    # the history's worst case counts no loop faster than the pods' pace (observe.booked_wait)
    assert poll.POD_START_POLL_SECONDS == 3
    got, left = [], until
    while True:
        got.append(turn_wait_seconds(left, INTERVAL))
        left -= got[-1]
        if left <= 0:
            break
    assert got == waits


@pytest.mark.parametrize("after", [5.6, 5.0, 0.0])
def test_from_the_expected_turn_on_the_gate_asks_elb(after):
    # within half a second of it counts: a Wait state waits whole seconds
    w = world(step_pods(), {ARN: [target("10.0.1.2", HEALTHY)]})
    s = check_target_health(w.ports, second_step(after))
    assert w.elb.health_reads == 1
    assert s.gate.status is Verdict.PASSED


def test_a_pod_that_cannot_start_fails_the_step_without_waiting_for_the_turn():
    pods = [*step_pods(), pod("web-new-c", "10.0.1.3", waiting="CrashLoopBackOff", restarts=3)]
    s = second_step(30.0)
    s.plan = [1, 3]
    s.steps[-1].target = 3
    w = world(pods)
    s = check_target_health(w.ports, s)
    assert (w.elb.health_reads, s.gate.status, s.wait_seconds) == (0, Verdict.FAILED, 0)
    assert "CrashLoopBackOff" in s.gate.reason


def test_the_look_that_first_sees_every_target_healthy_records_the_look_before_it():
    # Given a first step whose pod turned ContainersReady at STARTED, read from ELB (no controller condition)
    pods = [started(pod("web-new-a", "10.0.1.1"))]
    s = rollout()
    # When a look still finds its target initial, nothing is recorded
    s = check_target_health(world(pods, {ARN: [target("10.0.1.1", INITIAL, REGISTRATION_IN_PROGRESS)]}).ports, s)
    assert s.steps[-1].turned_after is None
    # When a later look finds it healthy, the look before it bounds the turn from below
    s = check_target_health(world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, now=NOW + 6).ports, s)
    assert s.gate.status is Verdict.PASSED
    assert s.steps[-1].turned_after == NOW - STARTED == 4.0


def test_a_first_look_that_finds_them_healthy_records_no_wait_at_all():
    pods = [started(pod("web-new-a", "10.0.1.1"))]
    s = check_target_health(world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}).ports, rollout())
    assert s.steps[-1].turned_after == 0.0
    # nor does a look from before the pods started count as one that did not find them healthy
    s = rollout()
    s.steps[-1].observed_at = STARTED - 5
    s = check_target_health(world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}).ports, s)
    assert s.steps[-1].turned_after == 0.0


def test_a_gate_the_controllers_conditions_opened_records_no_elb_measure():
    # Given a pod with the controller's gate, its condition written True: the gate passes without asking ELB
    from tests.unit.test_drain_carried import gated_group
    s = rollout(groups=(gated_group(),))
    w = world([started(lbc_pod("web-new-a", "10.0.1.1", "True"))], {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, s)
    assert (s.gate.status, w.elb.health_reads) == (Verdict.PASSED, 0)
    assert s.steps[-1].turned_after is None


def test_a_held_back_step_that_finds_its_targets_registering_counts_their_registration_from_its_pods_start():
    # Given step 2 whose first look at ELB came at its turn and finds the target still registering
    s = second_step(2.0)
    w = world(step_pods(), {ARN: [target("10.0.1.2", INITIAL, REGISTRATION_IN_PROGRESS)]})
    s = check_target_health(w.ports, s)
    # Then the registration pace counts from the pods' start (unseen, but registering at least that long)
    assert (w.elb.health_reads, s.steps[-1].registering_since) == (1, STARTED)
    # And a step with no turn to wait for counts from its first look, as the gate saw it
    first = rollout()
    first = check_target_health(world([started(pod("web-new-a", "10.0.1.1"))],
                                      {ARN: [target("10.0.1.1", INITIAL, REGISTRATION_IN_PROGRESS)]}).ports, first)
    assert first.steps[-1].registering_since == NOW
