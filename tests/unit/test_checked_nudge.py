"""The nudge one health-check interval after the controller's conditions say ELB health-checks every target the step
waits for (lambdas/domain/rollout/gate.py, ``checked_nudge_at``): when it comes, what it asks of ELB (nothing), and
what moves it."""

from __future__ import annotations

from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, Verdict
from lambdas.domain.poll import CONDITIONS_POLL_SECONDS, CONDITIONS_QUICK_LOOKS
from lambdas.domain.ports import HEALTHY, INITIAL
from lambdas.domain.rollout.gate import check_target_health, checked_nudge_at, conditions_overdue_seconds
from lambdas.domain.rollout.nudge import NUDGE_REASON
from lambdas.domain.state import RolloutState
from tests.unit.test_domain_mutants_gate_drain import ARN, ARN2, INTERVAL, NOW, rollout, target, world
from tests.unit.test_drain_carried import gated_group, lbc_pod

CHECKED = "Elb.InitialHealthChecking"
REGISTERING = "Elb.RegistrationInProgress"


def started(first_ready_at: float = NOW - CONTROLLER_REQUEUE_SECONDS) -> RolloutState:
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = first_ready_at
    return s


def look(s: RolloutState, reason: str, at: float, elb_state: str = HEALTHY):
    """One look of the gate at ``at``, the pod's controller condition False with ``reason``; ELB would answer
    ``elb_state`` if asked. Returns the state and the world (its calls and writes)."""
    w = world([lbc_pod("web-new-a", "10.0.1.1", "False", reason)],
              {ARN: [target("10.0.1.1", elb_state, "" if elb_state == HEALTHY else CHECKED)]}, now=at)
    return check_target_health(w.ports, s), w


def test_the_first_look_reading_every_target_health_checked_marks_the_time_and_looks_again_within_an_interval():
    s, w = look(started(), CHECKED, NOW)
    assert s.steps[-1].checked_at == NOW
    assert (w.kube.conditions_set, w.elb.health_reads, s.gate.status) == ([], 0, Verdict.WAITING)
    assert s.wait_seconds == CONDITIONS_POLL_SECONDS  # the quick pace, under the interval


def test_one_interval_after_that_look_the_gate_nudges_the_controller_and_asks_elb_nothing():
    s, _ = look(started(), CHECKED, NOW)
    s, w = look(s, CHECKED, NOW + INTERVAL - 1)
    assert w.kube.conditions_set == [] and s.steps[-1].nudged_at is None  # a second early: not yet
    s, w = look(s, CHECKED, NOW + INTERVAL)
    assert [(c[1], c[4]) for c in w.kube.conditions_set] == [("web-new-a", NUDGE_REASON)]
    assert "its target not written healthy in web, checked by ELB since the controller last looked" in \
        w.kube.conditions_set[0][5]
    assert w.elb.health_reads == 0 and s.steps[-1].nudged_at == NOW + INTERVAL and s.steps[-1].nudges == 1
    assert "whose condition is overdue" not in s.gate.reason and "one health-check interval" in s.gate.reason
    # Then ELB is asked only a controller requeue after the nudge (or once overdue, if later), as after any nudge
    s, w = look(s, CHECKED, NOW + INTERVAL + CONTROLLER_REQUEUE_SECONDS - 1, elb_state=INITIAL)
    assert (w.elb.health_reads, w.kube.conditions_set) == (0, [])
    s, w = look(s, CHECKED, started().steps[-1].first_ready_at + conditions_overdue_seconds(s), elb_state=INITIAL)
    assert w.elb.health_reads == 1


def test_the_nudge_waits_for_a_controller_requeue_after_the_pods_started():
    # Given a step whose pod a look first saw ContainersReady 2 s ago (a controller not throttled looks a requeue
    # after it registered the target: no need to make it look sooner)
    s, _ = look(started(first_ready_at=NOW - 2), CHECKED, NOW)
    s, w = look(s, CHECKED, NOW + INTERVAL)
    assert w.kube.conditions_set == []
    s, w = look(s, CHECKED, NOW - 2 + CONTROLLER_REQUEUE_SECONDS)
    assert [c[1] for c in w.kube.conditions_set] == ["web-new-a"]


def test_a_condition_still_registering_is_no_check_and_clears_the_mark():
    s, _ = look(started(), REGISTERING, NOW)
    assert s.steps[-1].checked_at is None
    s, _ = look(s, CHECKED, NOW + 1)
    assert s.steps[-1].checked_at == NOW + 1
    # a look that reads a target registering again (a pod added to the step) starts the interval afresh
    s, _ = look(s, REGISTERING, NOW + 2)
    assert s.steps[-1].checked_at is None
    s, w = look(s, CHECKED, NOW + 1 + INTERVAL)
    assert w.kube.conditions_set == [] and s.steps[-1].checked_at == NOW + 1 + INTERVAL


def test_past_the_quick_looks_the_wait_ends_at_the_nudge():
    s = started()
    s.steps[-1].quick_looks = CONDITIONS_QUICK_LOOKS
    s, _ = look(s, CHECKED, NOW)
    assert s.wait_seconds <= INTERVAL
    s2 = started()
    s2.steps[-1].quick_looks, s2.steps[-1].checked_at = CONDITIONS_QUICK_LOOKS, NOW - INTERVAL + 1
    s2, w = look(s2, CHECKED, NOW)
    assert w.kube.conditions_set == [] and s2.wait_seconds == 1


def test_checked_nudge_at_is_an_interval_after_the_mark_no_sooner_than_a_requeue_after_the_start_no_later_than_ask_at():
    s = started(first_ready_at=NOW - 100)
    rec = s.steps[-1]
    assert checked_nudge_at(s, rec, NOW, ask_at=NOW + 1000) == NOW + INTERVAL
    assert checked_nudge_at(s, rec, NOW + 5, ask_at=NOW + 1000) == NOW + INTERVAL  # the mark stays where it was
    assert checked_nudge_at(s, rec, NOW + 5, ask_at=NOW + 3) == NOW + 3  # overdue first
    rec.first_ready_at = NOW
    assert checked_nudge_at(s, rec, NOW, ask_at=NOW + 1000) == NOW + CONTROLLER_REQUEUE_SECONDS
    rec.first_ready_at = None  # no start known: the interval alone
    assert checked_nudge_at(s, rec, NOW, ask_at=NOW + 1000) == NOW + INTERVAL


def test_with_several_groups_the_nudge_comes_after_the_shortest_interval():
    # the groups that check that often are written at the nudge; the others keep the controller's own requeue
    slow = gated_group().model_copy(update={"arn": ARN2, "health_check_interval_seconds": 3 * INTERVAL})
    for groups in ((gated_group(), slow), (slow, gated_group())):
        s = rollout(groups=groups)
        s.steps[-1].first_ready_at = NOW - 100
        assert checked_nudge_at(s, s.steps[-1], NOW, ask_at=NOW + 1000) == NOW + INTERVAL
