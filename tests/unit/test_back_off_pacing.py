"""Throttling an earlier look met does not slow looks that make no Describe* call: the drain's wait for the
Deployment controller's scale-down, and the gate's reading of the controller's conditions while its next
DescribeTargetHealth waits out the back-off (``RolloutState.elb_after``)."""

from __future__ import annotations

import dataclasses

from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, Verdict
from lambdas.domain.poll import pod_poll_seconds
from lambdas.domain.ports import HEALTHY, PodCondition
from lambdas.domain.rollout.conditions import carries_controller_gates
from lambdas.domain.rollout.drain import verify_drain
from lambdas.domain.rollout.gate import check_target_health, conditions_overdue_seconds
from lambdas.domain.rollout.observe import Pace, next_look
from tests.unit.test_domain_mutants_gate_drain import ARN, NOW, group, old_pod, pod, rollout, target, world
from tests.unit.test_drain_carried import gated_group, lbc_pod


def test_a_drain_waiting_for_the_scale_down_keeps_the_pods_pace_after_throttled_looks():
    # Given a rollout whose gate met 5 throttled calls, and old pods not scaled down yet
    pods = [old_pod("web-old-a", "10.0.0.1", terminating=True), old_pod("web-old-b", "10.0.0.2"),
            old_pod("web-old-c", "10.0.0.3"), old_pod("web-old-d", "10.0.0.4")]
    s = rollout(watched=("10.0.0.1",), groups=(group(port=8080),), throttles=5)
    w = world(pods, {ARN: [target("10.0.0.1", HEALTHY)]})
    s = verify_drain(w.ports, s)
    # Then no call, and the next look at the pods' pace, not the throttle's back-off
    assert w.elb.health_reads == 0 and s.throttles == 5
    assert s.wait_seconds == pod_poll_seconds("exec-1/rollout/0/scale-down/1")


def overdue_rollout(**kwargs: object):
    """A step whose conditions are overdue and whose first overdue look nudged the controller a requeue ago, to no
    avail: the look asks ELB now."""
    s = rollout(groups=(gated_group(),), **kwargs)
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s) - CONTROLLER_REQUEUE_SECONDS
    s.steps[-1].nudged_at = NOW - CONTROLLER_REQUEUE_SECONDS
    return s


def test_a_throttled_gate_that_can_read_the_conditions_comes_back_a_requeue_later_and_calls_after_the_back_off():
    # Given a pod whose controller condition is overdue, and ELB throttling the gate's call
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = overdue_rollout(throttles=4)
    w = world(pods, throttled=True)
    s = check_target_health(w.ports, s)
    back_off = s.elb_after - NOW
    assert s.throttles == 5 and back_off > CONTROLLER_REQUEUE_SECONDS
    # Then it comes back one controller requeue later to read the conditions
    assert s.wait_seconds == CONTROLLER_REQUEUE_SECONDS
    # When it looks before the back-off ends / Then no call: it reads the pods, and comes back no later than then
    early = NOW + CONTROLLER_REQUEUE_SECONDS
    w2 = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, now=early)
    s = check_target_health(w2.ports, s)
    assert w2.elb.health_reads == 0 and "backing off, the next call in" in s.gate.reason
    assert s.wait_seconds == min(CONTROLLER_REQUEUE_SECONDS, round(s.elb_after - early + 0.49))
    # When the controller has written it healthy meanwhile / Then the gate passes on that, with no call
    written = [lbc_pod("web-new-a", "10.0.1.1", "True")]
    w3 = world(written, {}, now=early + CONTROLLER_REQUEUE_SECONDS)
    s = check_target_health(w3.ports, s)
    assert s.gate.status is Verdict.PASSED and w3.elb.health_reads == 0


def test_once_the_back_off_ends_the_gate_calls_and_a_call_that_answers_ends_the_back_off():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = overdue_rollout(throttles=2)
    s.elb_after = NOW
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 1 and s.throttles == 0 and s.elb_after is None


def test_a_throttled_gate_that_cannot_read_the_conditions_waits_the_whole_back_off():
    # Given a pod without the controller's gate (nothing to read on it)
    s = rollout(throttles=2)
    w = world([pod("web-new-a", "10.0.1.1")], throttled=True)
    s = check_target_health(w.ports, s)
    assert s.wait_seconds == next_look(s, Pace("throttled"), NOW) == s.elb_after - NOW
    # and a look before it ends (a retried task, say) makes no call and waits the rest
    w2 = world([pod("web-new-a", "10.0.1.1")], {}, now=NOW + 2)
    s = check_target_health(w2.ports, s)
    assert w2.elb.health_reads == 0 and s.wait_seconds == round(s.elb_after - NOW - 2 + 0.49)


def unwritten_pod():
    """A started pod with the controller's gate whose condition the controller has not written yet."""
    return dataclasses.replace(lbc_pod("web-new-a", "10.0.1.1", "False"),
                               conditions=(PodCondition("ContainersReady", "True"),))


def test_a_pod_whose_controller_condition_is_unwritten_reads_as_not_registered_until_overdue():
    # Given a started pod with the controller's gate, its condition not written yet, not overdue
    s = rollout(groups=(gated_group(),))
    w = world([unwritten_pod()], {})
    s = check_target_health(w.ports, s)
    # Then ELB is not asked (nothing booked either): the target is read as not registered yet, from the pods
    assert w.elb.health_reads == 0 and s.describe_slot_at is None and s.gate.status is Verdict.WAITING
    assert s.gate.groups[0].unregistered == 1 and "target-health conditions" in s.gate.reason
    assert w.kube.conditions_set == []  # too early to nudge
    # and the group is counted as missing the target from now, for albgate's own registration after the grace
    assert s.steps[-1].unregistered_since == {ARN: NOW}
    # When a later look still finds it unwritten / Then the first sighting stands
    w1 = world([unwritten_pod()], {}, now=NOW + 4)
    s = check_target_health(w1.ports, s)
    assert s.steps[-1].unregistered_since == {ARN: NOW} and w1.elb.health_reads == 0
    # When it is still unwritten once overdue, after the nudge's requeue / Then ELB is asked
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s) - CONTROLLER_REQUEUE_SECONDS
    s.steps[-1].nudged_at = NOW - CONTROLLER_REQUEUE_SECONDS
    w2 = world([unwritten_pod()], {ARN: [target("10.0.1.1", HEALTHY)]})
    check_target_health(w2.ports, s)
    assert w2.elb.health_reads == 1


def test_a_booked_look_whose_pods_carry_the_controllers_gate_reads_them_each_requeue():
    # Given a started pod with the controller's gate whose condition cannot tell (Unknown), not overdue, share spent
    p = lbc_pod("web-new-a", "10.0.1.1", "Unknown")
    s = rollout(groups=(gated_group(),))
    w = world([p], {}, budget=300)
    s = check_target_health(w.ports, s)
    assert "booked in 300 s" in s.gate.reason and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS
    assert w.kube.conditions_set == []  # too early to nudge


def test_the_controllers_gate_is_carried_only_when_every_started_pod_has_it_for_every_known_binding():
    gated = lbc_pod("a", "10.0.1.1", "False")
    assert carries_controller_gates([gated_group()], [gated])
    assert not carries_controller_gates([gated_group()], [gated, pod("b", "10.0.1.2")])
    assert not carries_controller_gates([group()], [gated])  # binding unknown
    assert not carries_controller_gates([], [gated])
    starting = pod("b", None, ready=False)
    assert carries_controller_gates([gated_group()], [gated, starting])  # a starting pod has nothing to carry yet
    assert not carries_controller_gates([gated_group()], [starting])  # nothing started


def test_a_pod_not_containers_ready_yet_has_nothing_to_carry_even_with_an_ip():
    gated = lbc_pod("a", "10.0.1.1", "False")
    assert carries_controller_gates([gated_group()], [gated, pod("b", "10.0.1.2", ready=False)])


def test_the_back_off_ends_half_a_second_early_as_a_wait_state_counts_whole_seconds():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    for ends_in, calls in ((0.5, 1), (1.0, 0)):
        s = overdue_rollout(throttles=1)
        s.elb_after = NOW + ends_in
        w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})
        check_target_health(w.ports, s)
        assert w.elb.health_reads == calls, ends_in


def test_a_look_within_the_back_off_past_the_step_deadline_fails_saying_so():
    pods = [pod("web-new-a", "10.0.1.1")]
    s = rollout(throttles=1, step_deadline=NOW - 1)
    s.elb_after = NOW + 30
    s = check_target_health(world(pods).ports, s)
    assert s.gate.status is Verdict.FAILED
    assert s.gate.reason.startswith("step deadline passed while DescribeTargetHealth was throttled")


def test_readable_conditions_bring_the_look_back_a_requeue_later_even_without_a_nudge():
    # Given a condition that cannot tell (Unknown) before the conditions are overdue (no nudge is due), and ELB
    # throttling the gate's call
    pods = [lbc_pod("web-new-a", "10.0.1.1", "Unknown")]
    s = rollout(groups=(gated_group(),), throttles=3)
    w = world(pods, throttled=True)
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 1 and s.throttles == 4
    assert w.kube.conditions_set == [] and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS
    # and within the back-off too
    w2 = world(pods, {}, now=NOW + 2)
    s = check_target_health(w2.ports, s)
    assert w2.kube.conditions_set == [] and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS


def test_a_condition_written_since_ends_the_count_of_a_missing_target():
    # Given a group counted missing since an earlier look, and the controller's condition on the pod written now
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - 4
    s.steps[-1].unregistered_since = {ARN: NOW - 4}
    w = world([lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.RegistrationInProgress")], {})
    s = check_target_health(w.ports, s)
    # Then nothing is missing any more, and ELB is not asked
    assert s.steps[-1].unregistered_since == {} and w.elb.health_reads == 0
