"""Looks shared between executions that watch the same target group (lambdas/domain/looks.py): when another
execution's DescribeTargetHealth answer stands in for a call, and what the gate and the drain do with it."""

from __future__ import annotations

import dataclasses

import pytest

from lambdas.domain.gate import Verdict
from lambdas.domain.looks import (
    FOLLOW_SLACK_SECONDS,
    MAX_AGE_INTERVALS,
    GroupNews,
    LocalLooks,
    Look,
    NoLooks,
    follows,
    usable,
)
from lambdas.domain.ports import HEALTHY, INITIAL
from lambdas.domain.rollout.drain import release_old_pods, verify_drain
from lambdas.domain.rollout.gate import check_target_health
from lambdas.domain.gate import REGISTRATION_GRACE_SECONDS
from lambdas.domain.rollout.targets import register_missing
from lambdas.domain.state import StepRecord
from tests.unit.test_domain_mutants_rollout_more import ARN_A, Elb, Kube, rollout_state
from tests.unit.test_domain_mutants_rollout_more import NOW as more_now
from tests.unit.test_domain_mutants_rollout_more import group as more_group
from tests.unit.test_domain_mutants_rollout_more import pod as more_pod
from tests.unit.test_domain_mutants_rollout_more import ports as more_ports
from tests.unit.test_domain_mutants_gate_drain import (
    ARN,
    ARN2,
    INTERVAL,
    NOW,
    group,
    old_pod,
    pod,
    rollout,
    target,
    world,
)

HALF = MAX_AGE_INTERVALS * INTERVAL


@dataclasses.dataclass
class MovableClock:
    t: float = NOW

    def now(self) -> float:
        return self.t


CLOCK = MovableClock()


def look(at: float, *targets) -> Look:
    return Look(at, tuple(targets))


@pytest.mark.parametrize(("observed_at", "since", "ok"), [
    (NOW - HALF, None, True),  # exactly as old as allowed
    (NOW - HALF - 0.01, None, False),  # older
    (NOW, None, True),
    (NOW + 1, None, False),  # from a clock ahead of ours: not trusted
    (NOW - 1, NOW - 1, False),  # the answer this execution already used (or older): no news
    (NOW - 1, NOW - 1.01, True),
])
def test_a_look_stands_in_for_a_call_when_recent_and_newer_than_what_the_execution_saw_or_did(observed_at, since, ok):
    assert usable(look(observed_at), NOW, INTERVAL, since) is ok


@pytest.mark.parametrize(("observed_at", "ok"), [
    (NOW - HALF - 2, True),  # older than half an interval, but the booked call awaited (made at NOW - HALF - 2)
    (NOW - HALF - 2.5, True),  # up to half a second before its turn
    (NOW - HALF - 2.51, False),  # earlier: not that call, and too old
])
def test_the_answer_of_a_followed_call_stands_in_whatever_its_age(observed_at, ok):
    assert usable(look(observed_at), NOW, INTERVAL, NOW - 30, awaited=NOW - HALF - 2) is ok


def test_no_look_stands_in_for_nothing():
    assert usable(None, NOW, INTERVAL, None) is False
    assert NoLooks().news(ARN) == GroupNews()
    NoLooks().share(ARN, look(NOW))  # nothing kept, nothing raised
    NoLooks().book(ARN, NOW + 5)
    assert NoLooks().news(ARN) == GroupNews()


def test_the_local_store_keeps_the_newest_look_per_group():
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW))
    looks.share(ARN, look(NOW - 5))  # an older answer arriving late
    looks.share(ARN, look(NOW, target("10.0.1.1", HEALTHY)))  # another of the same time: the first stays
    assert looks.news(ARN).look == look(NOW) and looks.shared == 1
    looks.share(ARN, look(NOW + 1))
    assert looks.news(ARN).look.observed_at == NOW + 1 and looks.news(ARN2).look is None and looks.shared == 2


def test_the_local_store_keeps_the_earliest_booking_still_to_come():
    clock = MovableClock()
    looks = LocalLooks(clock)
    looks.book(ARN, NOW + 20)
    looks.book(ARN, NOW + 30)  # later than the one to come: the earlier stays
    assert looks.news(ARN) == GroupNews(None, NOW + 20)
    looks.book(ARN, NOW + 10)
    assert looks.news(ARN).booked_at == NOW + 10
    clock.t = NOW + 10  # due this very moment: still the one to follow
    looks.book(ARN, NOW + 40)
    assert looks.news(ARN).booked_at == NOW + 10
    clock.t = NOW + 11  # that one has passed: any new booking replaces it
    looks.book(ARN, NOW + 40)
    assert looks.news(ARN).booked_at == NOW + 40 and looks.news(ARN2) == GroupNews()


@pytest.mark.parametrize(("booked_at", "own_wait", "ok"), [
    (NOW + 5, 5.0, True),  # due no later than the look's own turn
    (NOW + 5.01, 5.0, False),  # after it: the look books its own
    (NOW, 5.0, False),  # due now or past: its answer is shared already, or never comes
    (NOW + 1, 0.0, False),  # the look may call now
    (NOW + 0.4, 0.5, True),  # a turn of its own less than a second away, the other's sooner still
    (None, 5.0, False),
])
def test_a_look_follows_a_booked_call_still_to_come_no_later_than_its_own_turn(booked_at, own_wait, ok):
    assert follows(booked_at, NOW, own_wait) is ok


@dataclasses.dataclass
class CountingBudget:
    """Records the tokens each look asks for; ``wait`` seconds before a turn (0: now)."""

    asked: list[tuple[int, bool]] = dataclasses.field(default_factory=list)
    throttles: int = 0
    wait: float = 0.0

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        self.asked.append((tokens, reserve))
        return self.wait

    def throttled(self) -> None:
        self.throttles += 1

    def short(self) -> bool:
        return bool(getattr(self, "is_short", False))

    def controller_late(self) -> None:
        self.lates = getattr(self, "lates", 0) + 1


def sharing(w, looks: LocalLooks, budget: CountingBudget | None = None):
    w.ports = dataclasses.replace(w.ports, looks=looks, **({"budget": budget} if budget else {}))
    return w


def test_a_gate_uses_another_executions_recent_answer_instead_of_calling_and_passes_on_it():
    # Given another execution's answer 3 s old showing this step's pod healthy
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW - 3, target("10.0.1.1", HEALTHY)))
    w = sharing(world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", INITIAL)]}), looks,
                budget := CountingBudget())
    s = check_target_health(w.ports, rollout())
    # Then no call, no token, and the gate decides on that answer as on its own
    assert w.elb.health_reads == 0 and budget.asked == []
    assert s.gate.status is Verdict.PASSED and (s.shared_looks, s.describe_target_health_calls) == (1, 0)
    assert s.looked_at == NOW


def test_every_group_an_answer_stands_in_for_is_counted():
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW - 1, target("10.0.1.1", HEALTHY)))
    looks.share(ARN2, look(NOW - 1, target("10.0.1.1", HEALTHY)))
    w = sharing(world([pod("web-new-a", "10.0.1.1")]), looks)
    s = check_target_health(w.ports, rollout(groups=(group(), group(ARN2))))
    assert (s.shared_looks, s.describe_target_health_calls, w.elb.health_reads) == (2, 0, 0)


def test_registering_a_target_is_a_change_no_earlier_answer_outlives():
    # Given a new pod nobody registered past the grace, on a group whose port is known
    s = rollout_state(groups=[more_group(ARN_A, port=8080)])
    since = more_now - REGISTRATION_GRACE_SECONDS - 1
    record = StepRecord(step=1, mode="rollout", target=1, started_at=0, unregistered_since={ARN_A: since})
    # When albgate registers it / Then the execution's targets changed now
    register_missing(more_ports(Kube(), Elb()), s, [more_pod("a", "10.0.0.1")], {ARN_A: []}, record, more_now)
    assert s.changed_at == more_now


def test_a_gate_calls_for_an_answer_too_old_and_shares_its_own():
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW - HALF - 1, target("10.0.1.1", HEALTHY)))
    w = sharing(world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", INITIAL)]}), looks)
    s = check_target_health(w.ports, rollout())
    assert w.elb.health_reads == 1 and s.gate.status is Verdict.WAITING and s.shared_looks == 0
    assert looks.news(ARN).look == look(NOW, target("10.0.1.1", INITIAL))


def test_an_execution_never_uses_its_own_answer_twice():
    # Given the answer this execution shared at its last look, still recent
    looks = LocalLooks(CLOCK)
    w = sharing(world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", INITIAL)]}), looks)
    s = check_target_health(w.ports, rollout())
    w2 = sharing(world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", HEALTHY)]}, now=NOW + 2), looks)
    s = check_target_health(w2.ports, s)
    # Then it calls again rather than read back what it saw
    assert w2.elb.health_reads == 1 and s.gate.status is Verdict.PASSED


def test_only_the_groups_without_a_recent_answer_are_called_and_take_tokens():
    # Given two groups, another execution's recent answer for the first only
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW - 1, target("10.0.1.1", HEALTHY)))
    health = {ARN: [target("10.0.1.1", INITIAL)], ARN2: [target("10.0.1.1", HEALTHY)]}
    w = sharing(world([pod("web-new-a", "10.0.1.1")], health), looks, budget := CountingBudget())
    s = check_target_health(w.ports, rollout(groups=(group(), group(ARN2))))
    assert budget.asked == [(1, True)] and w.elb.health_reads == 1
    assert (s.shared_looks, s.describe_target_health_calls) == (1, 1)
    assert s.gate.status is Verdict.PASSED  # the shared answer for the first group, its own for the second


def test_a_gate_backing_off_uses_a_shared_answer_and_keeps_its_own_back_off():
    # Given a gate backing off after throttled calls, and another execution's recent answer
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW - 1, target("10.0.1.1", INITIAL)))
    s = rollout(throttles=3)
    s.elb_after = NOW + 40
    w = sharing(world([pod("web-new-a", "10.0.1.1")], {}, throttled=True), looks)
    s = check_target_health(w.ports, s)
    # Then it looked through the other's answer (no call), and its own calls still wait for the back-off
    assert w.elb.health_reads == 0 and s.shared_looks == 1 and s.steps[-1].observed_at == NOW
    assert (s.throttles, s.elb_after) == (3, NOW + 40)


def test_answers_from_before_the_executions_own_changes_are_useless_to_its_drain():
    # Given the last step, whose gate released a pod at NOW, and an answer another execution got just before
    looks = LocalLooks(CLOCK)
    looks.share(ARN, look(NOW - 1, target("10.0.0.1", HEALTHY)))
    pods = [old_pod("web-old-a", "10.0.0.1", terminating=True), pod("web-new-a", "10.0.1.1")]
    s = rollout(watched=("10.0.0.1",), release=("web-new-a",), more_steps=False, groups=(group(port=8080),))
    s = release_old_pods(sharing(world(pods), looks).ports, s)
    assert s.changed_at == NOW
    # When the drain deregisters the released target itself / Then that is a change too
    looks.share(ARN, look(NOW + 0.5, target("10.0.0.1", HEALTHY)))  # after the release, before the deregistration
    w = sharing(world(pods, now=NOW + 1), looks)
    s = verify_drain(w.ports, s)
    assert w.elb.deregistered and s.changed_at == NOW + 1 and w.elb.health_reads == 0
    # When the drain looks next / Then it asks ELB itself: the recent answer shows the world before its change
    w2 = sharing(world(pods, {ARN: [target("10.0.0.1", HEALTHY)]}, now=NOW + 3), looks)
    s = verify_drain(w2.ports, s)
    assert w2.elb.health_reads == 1 and s.shared_looks == 0 and s.drain.status is Verdict.WAITING
    # and an answer another execution gets after that look stands in for the drain's next call
    looks.share(ARN, look(NOW + 4, target("10.0.0.1", "draining")))
    w3 = sharing(world(pods, {ARN: [target("10.0.0.1", HEALTHY)]}, now=NOW + 5), looks)
    s = verify_drain(w3.ports, s)
    assert w3.elb.health_reads == 0 and s.shared_looks == 1 and s.drain.status is Verdict.PASSED


def test_a_look_that_would_wait_follows_another_executions_booked_call_and_reads_its_answer():
    # Given albgate's share spent (a turn 30 s away) and another execution's call for the group booked in 8 s
    looks = LocalLooks(CLOCK)
    looks.book(ARN, NOW + 8)
    w = sharing(world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", INITIAL)]}), looks,
                budget := CountingBudget(wait=30))
    s = check_target_health(w.ports, rollout())
    # Then it books nothing, makes no call, and comes back just after that call
    assert budget.asked == [(1, False)] and w.elb.health_reads == 0 and s.describe_slot_at is None
    assert s.followed_at == NOW + 8 and s.wait_seconds == 8 + FOLLOW_SLACK_SECONDS
    assert "reads its answer in" in s.gate.reason
    # When it comes back (late: more than half an interval after that call) and the other's answer is there
    # Then it decides on it, with no call: that answer is the one it waited for
    later = NOW + 8 + FOLLOW_SLACK_SECONDS + 4
    looks.share(ARN, look(NOW + 8, target("10.0.1.1", HEALTHY)))
    assert later - (NOW + 8) > HALF
    w2 = sharing(world([pod("web-new-a", "10.0.1.1")], {}, now=later), looks, CountingBudget(wait=30))
    s = check_target_health(w2.ports, s)
    assert s.gate.status is Verdict.PASSED and w2.elb.health_reads == 0 and s.followed_at is None


def test_a_follow_that_found_no_answer_is_not_followed_by_another():
    # Given a look that followed a booking whose call never came
    clock = MovableClock()
    looks = LocalLooks(clock)
    looks.book(ARN, NOW + 8)
    s = check_target_health(sharing(world([pod("web-new-a", "10.0.1.1")]), looks, CountingBudget(wait=30)).ports,
                            rollout())
    clock.t = NOW + 10
    looks.book(ARN, NOW + 14)  # another booking to follow, still before its own turn
    w = sharing(world([pod("web-new-a", "10.0.1.1")], now=NOW + 10), looks, budget := CountingBudget(wait=30))
    s = check_target_health(w.ports, s)
    # Then it books its own turn, and tells the others
    assert budget.asked == [(1, True)] and s.describe_slot_at == NOW + 10 + 30
    assert looks.news(ARN).booked_at == NOW + 14  # the earlier booking still to come stays the one to follow


def test_a_look_whose_own_call_is_booked_makes_it_at_its_turn_for_those_that_follow():
    # Given a look that booked its call, and another execution's answer shared meanwhile
    looks = LocalLooks(CLOCK)
    s = check_target_health(sharing(world([pod("web-new-a", "10.0.1.1")]), looks, CountingBudget(wait=5)).ports,
                            rollout())
    assert s.describe_slot_at == NOW + 5 and looks.news(ARN).booked_at == NOW + 5
    looks.share(ARN, look(NOW + 4, target("10.0.1.1", INITIAL)))
    # When its turn comes / Then it calls (others may be following it) and shares the answer
    w = sharing(world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", HEALTHY)]}, now=NOW + 5), looks)
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 1 and s.shared_looks == 0 and looks.news(ARN).look.observed_at == NOW + 5


def test_a_drain_follows_a_booked_call_as_the_gate_does():
    looks = LocalLooks(CLOCK)
    looks.book(ARN, NOW + 6)
    pods = [old_pod("web-old-a", "10.0.0.1", terminating=True), pod("web-new-a", "10.0.1.1")]
    s = rollout(watched=("10.0.0.1",), more_steps=False)
    w = sharing(world(pods, {ARN: [target("10.0.0.1", "draining")]}), looks, CountingBudget(wait=30))
    s = verify_drain(w.ports, s)
    assert w.elb.health_reads == 0 and s.followed_at == NOW + 6 and s.wait_seconds == 6 + FOLLOW_SLACK_SECONDS


# --- a look that follows another execution's booked call, where the controller's conditions could tell -------
from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS  # noqa: E402
from lambdas.domain.ports import PodCondition  # noqa: E402
from lambdas.domain.rollout.gate import conditions_overdue_seconds  # noqa: E402
from lambdas.domain.rollout.nudge import NUDGE_REASON  # noqa: E402
from tests.unit.test_drain_carried import gated_group, lbc_pod  # noqa: E402


def _following(pods, first_ready_before_overdue: float, now: float = NOW, nudged: bool = False, **rollout_args):
    """A step whose look would wait 300 s for its own turn and follows another execution's call booked in 40 s;
    its first pod turned ContainersReady ``first_ready_before_overdue`` seconds short of the conditions' being
    overdue; ``nudged``: overdue a requeue longer, the first overdue look's nudge a requeue ago."""
    looks = LocalLooks(MovableClock(now))
    looks.book(ARN, now + 40)
    s = rollout(groups=(gated_group(),), **rollout_args)
    s.steps[-1].first_ready_at = now - conditions_overdue_seconds(s) + first_ready_before_overdue
    if nudged:
        s.steps[-1].first_ready_at -= CONTROLLER_REQUEUE_SECONDS
        s.steps[-1].nudged_at = now - CONTROLLER_REQUEUE_SECONDS
    w = sharing(world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, now=now), looks, CountingBudget(wait=300))
    return w, s


def test_a_following_look_whose_conditions_may_still_come_reads_the_pods_a_requeue_later():
    # Given a started pod with the controller's gate whose condition cannot tell (Unknown), before it is overdue
    w, s = _following([lbc_pod("web-new-a", "10.0.1.1", "Unknown")], first_ready_before_overdue=1)
    # When the gate looks / Then it follows the other call, nudges nobody, and reads the pods a requeue later
    s = check_target_health(w.ports, s)
    assert "reads its answer in" in s.gate.reason and w.elb.health_reads == 0
    assert w.kube.conditions_set == [] and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS


def test_a_following_look_whose_conditions_are_overdue_nudges_the_controller():
    # Given a pod whose controller condition is overdue, a requeue after the first overdue look's nudge
    w, s = _following([lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")],
                      first_ready_before_overdue=0, nudged=True)
    # When the gate looks / Then it follows the other call, nudges the controller on that pod, and reads the pods
    # again a requeue later
    s = check_target_health(w.ports, s)
    [(_, name, _, status, reason, _)] = w.kube.conditions_set
    assert (name, status, reason) == ("web-new-a", "False", NUDGE_REASON)
    assert "reads its answer in" in s.gate.reason and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS


def test_a_following_look_past_the_step_deadline_fails_saying_what_it_waited_for():
    w, s = _following([pod("web-new-a", "10.0.1.1")], first_ready_before_overdue=1, now=1500.0, step_deadline=1000.0)
    s = check_target_health(w.ports, s)
    assert s.gate.status is Verdict.FAILED
    assert s.gate.reason.startswith(
        "step deadline passed while albgate waited for another rollout's look at the same target group(s)")
