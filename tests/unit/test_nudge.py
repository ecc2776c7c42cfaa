"""Nudging a Load Balancer Controller that lags ELB (lambdas/domain/rollout/nudge.py): which pods, when, what is
written, and how the gate uses it."""

from __future__ import annotations

import dataclasses

from lambdas.domain.errors import NotFoundError
from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, Verdict
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, HEALTHY, INITIAL, LBC_GATE_PREFIX, PodCondition
from lambdas.domain.rollout.gate import check_target_health, conditions_overdue_seconds, elb_asked_at, health_checked
from lambdas.domain.rollout.nudge import NUDGE_REASON, late_for_the_controller, nudge_due, nudge_the_controller
from lambdas.domain.state import StepRecord
from tests.unit.test_domain_mutants_gate_drain import ARN, ARN2, NOW, pod, rollout, target, world
from tests.unit.test_drain_carried import BINDING, gated_group, lbc_pod

GATE = LBC_GATE_PREFIX + BINDING


def record(first_ready_at: float | None, nudged_at: float | None = None) -> StepRecord:
    return StepRecord(step=1, mode="rollout", target=1, started_at=0.0, first_ready_at=first_ready_at,
                      nudged_at=nudged_at)


# ---------------------------------------------------------------------------------------------------------
# Which pods the controller is late for
# ---------------------------------------------------------------------------------------------------------
def test_a_target_elb_calls_healthy_under_a_condition_not_true_is_late():
    late = late_for_the_controller([gated_group()], [lbc_pod("a", "10.0.1.1", "False", "Elb.InitialHealthChecking")],
                                   {ARN: [target("10.0.1.1", HEALTHY)]})
    assert [(p.name, seen) for p, seen in late] == [("a", "healthy in web")]


def test_a_target_nobody_registered_is_late_and_a_draining_one_of_the_same_ip_does_not_count():
    pods = [lbc_pod("a", "10.0.1.1", "False", "Elb.RegistrationInProgress")]
    for listed in ([], [target("10.0.1.1", DRAINING, "Target.DeregistrationInProgress")]):
        late = late_for_the_controller([gated_group()], pods, {ARN: listed})
        assert [(p.name, seen) for p, seen in late] == [("a", "not registered in web")]


def test_an_absent_condition_counts_as_not_true():
    p = dataclasses.replace(lbc_pod("a", "10.0.1.1", "False"), conditions=(PodCondition("ContainersReady", "True"),))
    assert late_for_the_controller([gated_group()], [p], {ARN: [target("10.0.1.1", HEALTHY)]})


def test_nobody_is_late_while_elb_itself_still_checks_or_once_the_condition_is_true():
    initial = {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking")]}
    assert late_for_the_controller([gated_group()], [lbc_pod("a", "10.0.1.1", "False", "Elb.X")], initial) == []
    healthy = {ARN: [target("10.0.1.1", HEALTHY)]}
    assert late_for_the_controller([gated_group()], [lbc_pod("a", "10.0.1.1", "True")], healthy) == []


def test_pods_the_controller_does_not_gate_or_that_have_not_started_are_not_its_to_write():
    healthy = {ARN: [target("10.0.1.1", HEALTHY)]}
    assert late_for_the_controller([gated_group()], [pod("a", "10.0.1.1")], healthy) == []  # no controller gate
    starting = dataclasses.replace(lbc_pod("a", "10.0.1.1", "False"), conditions=(
        PodCondition("ContainersReady", "False"), PodCondition(GATE, "False", "Elb.RegistrationInProgress")))
    assert late_for_the_controller([gated_group()], [starting], healthy) == []
    assert late_for_the_controller([gated_group()], [lbc_pod("a", None, "False")], healthy) == []  # no IP


def test_a_group_without_a_known_binding_is_not_read():
    groups = [gated_group().model_copy(update={"binding": ""})]
    assert late_for_the_controller(groups, [lbc_pod("a", "10.0.1.1", "False")], {ARN: []}) == []


def test_each_group_the_controller_lags_in_is_named():
    second = gated_group().model_copy(update={"arn": ARN2, "binding": "web-admin-tgb"})
    p = lbc_pod("a", "10.0.1.1", "False", "Elb.InitialHealthChecking")
    p = dataclasses.replace(p, readiness_gates=(*p.readiness_gates, LBC_GATE_PREFIX + "web-admin-tgb"))
    late = late_for_the_controller([gated_group(), second], [p], {ARN: [target("10.0.1.1", HEALTHY)], ARN2: []})
    assert [seen for _, seen in late] == ["healthy in web, not registered in web-admin"]


# ---------------------------------------------------------------------------------------------------------
# When a nudge is due
# ---------------------------------------------------------------------------------------------------------
def test_a_nudge_waits_one_controller_requeue_after_the_first_ready_pod_and_after_the_last_nudge():
    assert CONTROLLER_REQUEUE_SECONDS == 15
    assert not nudge_due(record(None), 10_000.0)
    assert not nudge_due(record(100.0), 114.99)
    assert nudge_due(record(100.0), 115.0)
    assert not nudge_due(record(100.0, nudged_at=200.0), 214.99)
    assert nudge_due(record(100.0, nudged_at=200.0), 215.0)


# ---------------------------------------------------------------------------------------------------------
# The write
# ---------------------------------------------------------------------------------------------------------
def test_the_nudge_writes_albgates_gate_false_with_what_elb_showed_and_when():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking"), pod("web-new-b", "10.0.1.2")]
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY)]})
    s = rollout(groups=(gated_group(),))
    rec = record(NOW - CONTROLLER_REQUEUE_SECONDS)
    note = nudge_the_controller(w.ports, s, rec, pods, w.elb.health, NOW)
    assert note.startswith("nudged the Load Balancer Controller about 1 pod(s)")
    [(ns, name, type_, status, reason, message)] = w.kube.conditions_set
    assert (name, type_, status, reason) == ("web-new-a", ALBGATE_GATE, "False", NUDGE_REASON)
    assert message == ("albgate exec-1: at 1970-01-01T00:01:40Z ELB shows this pod's target healthy in web; "
                       "waiting for the Load Balancer Controller to write its target-health condition")
    assert rec.nudged_at == NOW and rec.nudges == 1
    # A second one within a requeue writes nothing
    assert nudge_the_controller(w.ports, s, rec, pods, w.elb.health, NOW + 1) == ""
    assert len(w.kube.conditions_set) == 1 and rec.nudges == 1


def test_a_pod_gone_since_the_look_is_skipped_and_nothing_counts():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})

    def gone(*_args: object, **_kwargs: object) -> None:
        raise NotFoundError("pods \"web-new-a\" not found")

    w.kube.set_pod_condition = gone
    rec = record(NOW - CONTROLLER_REQUEUE_SECONDS)
    assert nudge_the_controller(w.ports, rollout(groups=(gated_group(),)), rec, pods, w.elb.health, NOW) == ""
    assert rec.nudged_at is None and rec.nudges == 0


# ---------------------------------------------------------------------------------------------------------
# In the gate
# ---------------------------------------------------------------------------------------------------------
def overdue_after_a_nudge(s):
    """The step's conditions overdue, and its first overdue look's nudge a requeue ago, to no avail: the gate asks
    ELB now."""
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s) - CONTROLLER_REQUEUE_SECONDS
    s.steps[-1].nudged_at = NOW - CONTROLLER_REQUEUE_SECONDS
    return s


def test_elb_is_asked_once_the_conditions_are_overdue_and_a_requeue_after_the_last_nudge():
    s = rollout(groups=(gated_group(),))
    rec = s.steps[-1]
    rec.first_ready_at = NOW
    overdue = NOW + conditions_overdue_seconds(s)
    assert elb_asked_at(s, rec) == overdue
    rec.nudged_at = overdue - CONTROLLER_REQUEUE_SECONDS  # a nudge a requeue before: no later
    assert elb_asked_at(s, rec) == overdue
    rec.nudged_at = overdue  # the first overdue look's nudge: a requeue later
    assert elb_asked_at(s, rec) == overdue + CONTROLLER_REQUEUE_SECONDS


def test_an_overdue_look_whose_conditions_say_still_registering_asks_elb_rather_than_nudge():
    # Given a pod whose controller condition, overdue, still says its target is being registered: the controller
    # has not looked since (throttled, backing off) or the load balancer registers slowly
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.RegistrationInProgress")]
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s)
    w = world(pods, {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking")]})
    s = check_target_health(w.ports, s)
    # Then albgate looks itself, and nudges nobody: ELB shows the target checked, not healthy
    assert w.elb.health_reads == 1 and w.kube.conditions_set == [] and s.steps[-1].nudged_at is None


def test_conditions_say_health_checked_when_every_started_target_is_checked_or_healthy_in_every_group():
    g1, g2 = gated_group(), gated_group().model_copy(update={"arn": ARN2})
    a, b = pod("a", "10.0.1.1"), pod("b", "10.0.1.2")
    starting = pod("c", None, ready=False)
    checked = "Elb.InitialHealthChecking"
    seen = {ARN: [target("10.0.1.1", HEALTHY), target("10.0.1.2", INITIAL, checked)],
            ARN2: [target("10.0.1.1", INITIAL, checked), target("10.0.1.2", HEALTHY)]}
    assert health_checked([g1, g2], [a, b, starting], seen)
    registering = {**seen, ARN2: [target("10.0.1.1", INITIAL, "Elb.RegistrationInProgress"),
                                  target("10.0.1.2", HEALTHY)]}
    assert not health_checked([g1, g2], [a, b], registering)
    missing = {**seen, ARN2: [target("10.0.1.2", HEALTHY)]}  # a's condition there not written yet
    assert not health_checked([g1, g2], [a, b], missing)


def test_the_first_overdue_look_nudges_instead_of_asking_elb_unless_no_nudge_goes_through():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s)
    # Given the pod gone by the time the nudge is written
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})

    def gone(*_args: object, **_kwargs: object) -> None:
        raise NotFoundError("pods \"web-new-a\" not found")

    w.kube.set_pod_condition = gone
    s = check_target_health(w.ports, s)
    # Then nothing was nudged, so ELB is asked in the same look
    assert s.steps[-1].nudged_at is None and w.elb.health_reads == 1


def test_a_gate_waiting_for_a_target_nobody_registered_nudges_the_controller():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.RegistrationInProgress")]
    s = overdue_after_a_nudge(rollout(groups=(gated_group(),)))
    w = world(pods, {ARN: []})
    s = check_target_health(w.ports, s)
    assert s.gate.status is Verdict.WAITING and w.kube.conditions_set[0][1] == "web-new-a"
    assert "not registered in web" in w.kube.conditions_set[0][5]


def test_a_gate_that_releases_on_elbs_answer_does_not_nudge_first():
    # Given a pod with the controller's gate but no condition of it yet (the conditions cannot tell) / When ELB
    # calls its target healthy / Then the gate passes: the release is the write the controller sees
    p = dataclasses.replace(lbc_pod("web-new-a", "10.0.1.1", "False"),
                            conditions=(PodCondition("ContainersReady", "True"),))
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - 60
    w = world([p], {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, s)
    assert s.gate.status is Verdict.PASSED and w.kube.conditions_set == [] and s.steps[-1].nudges == 0


def test_the_first_look_that_sees_a_pod_started_starts_the_nudge_clock_whatever_the_policy():
    from lambdas.domain.models import RolloutPolicy

    # Given a gate told to ask ELB, not the conditions, and a started pod nobody registered yet
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.RegistrationInProgress")]
    s = rollout(groups=(gated_group(),))
    s.request = s.request.model_copy(update={"policy": RolloutPolicy(read_controller_conditions=False)})
    # When it first looks / Then it is too early to nudge: the controller's first requeue may still register it
    w = world(pods, {ARN: []})
    s = check_target_health(w.ports, s)
    assert s.steps[-1].first_ready_at == NOW and w.elb.health_reads == 1 and w.kube.conditions_set == []
    # When it looks one requeue later and the target is still missing / Then the controller is nudged
    w2 = world(pods, {ARN: []}, now=NOW + CONTROLLER_REQUEUE_SECONDS)
    s = check_target_health(w2.ports, s)
    assert [c[1] for c in w2.kube.conditions_set] == ["web-new-a"] and s.steps[-1].first_ready_at == NOW


# ---------------------------------------------------------------------------------------------------------
# A look that cannot ask ELB
# ---------------------------------------------------------------------------------------------------------
def test_overdue_conditions_are_named_without_an_elb_answer():
    pods = [lbc_pod("a", "10.0.1.1", "False", "Elb.InitialHealthChecking"), lbc_pod("b", "10.0.1.2", "True")]
    late = late_for_the_controller([gated_group()], pods, None)
    assert [(p.name, seen) for p, seen in late] == [("a", "not written healthy in web, overdue")]


def test_while_its_elb_look_is_booked_an_overdue_step_nudges_and_reads_the_pods_each_requeue():
    # Given a pod whose controller condition is overdue a requeue after a nudge, and albgate's share spent for 300 s
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = overdue_after_a_nudge(rollout(groups=(gated_group(),)))
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, budget=300)
    # When the gate looks / Then no ELB call; the controller is nudged, and the pods read again a requeue later
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 0 and s.gate.status is Verdict.WAITING
    [(_, name, _, status, reason, message)] = w.kube.conditions_set
    assert (name, status, reason) == ("web-new-a", "False", NUDGE_REASON)
    assert "its target not written healthy in web, overdue" in message
    assert "whose condition is overdue" in s.gate.reason and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS


def test_a_booked_look_before_the_conditions_are_overdue_does_not_nudge():
    # Given a started pod whose controller condition cannot tell (Unknown: the look goes to ELB, and is booked)
    p = lbc_pod("web-new-a", "10.0.1.1", "Unknown")
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s) + 1
    w = world([p], {}, budget=300)
    s = check_target_health(w.ports, s)
    assert "booked in 300 s" in s.gate.reason
    # (its conditions may come to tell: it reads them again a requeue later, tests/unit/test_back_off_pacing.py)
    assert w.kube.conditions_set == [] and s.steps[-1].nudges == 0 and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS


def test_a_condition_not_written_at_all_is_nudged_and_read_again_a_requeue_later_not_at_the_booked_turn():
    # Given a started pod with the controller's gate but no condition of it (the conditions cannot tell), long
    # after it started, and albgate's share spent for 300 s
    p = dataclasses.replace(lbc_pod("web-new-a", "10.0.1.1", "False"),
                            conditions=(PodCondition("ContainersReady", "True"),))
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s)
    w = world([p], {}, budget=300)
    s = check_target_health(w.ports, s)
    assert [c[1] for c in w.kube.conditions_set] == ["web-new-a"] and s.wait_seconds == CONTROLLER_REQUEUE_SECONDS
    # Without a pod the controller gates, nothing to nudge: the look waits for its booked turn
    s2 = rollout()
    s2.steps[-1].first_ready_at = NOW - 600
    w2 = world([pod("web-new-a", "10.0.1.1")], {}, budget=300)
    s2 = check_target_health(w2.ports, s2)
    assert w2.kube.conditions_set == [] and s2.wait_seconds == 300


def test_a_throttled_look_nudges_an_overdue_controller():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = overdue_after_a_nudge(rollout(groups=(gated_group(),)))
    w = world(pods, {}, throttled=True)
    s = check_target_health(w.ports, s)
    assert "throttled" in s.gate.reason and [c[1] for c in w.kube.conditions_set] == ["web-new-a"]
    assert s.steps[-1].nudged_at == NOW


def test_a_look_past_the_step_deadline_fails_without_nudging():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = rollout(groups=(gated_group(),), step_deadline=NOW - 1)
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s)
    w = world(pods, {}, budget=300)
    s = check_target_health(w.ports, s)
    assert s.gate.status is Verdict.FAILED and w.kube.conditions_set == []


def test_a_second_nudge_says_the_status_is_unchanged_so_its_transition_time_stays():
    # Given a pod without albgate's condition yet: the first nudge writes it (a transition from absent to False)
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})
    s = rollout(groups=(gated_group(),))
    rec = record(NOW - CONTROLLER_REQUEUE_SECONDS)
    nudge_the_controller(w.ports, s, rec, pods, w.elb.health, NOW)
    # When the pod carries it False and the next nudge comes / Then only its message changes
    nudged = [dataclasses.replace(pods[0], conditions=(*pods[0].conditions,
                                                      PodCondition(ALBGATE_GATE, "False", NUDGE_REASON)))]
    nudge_the_controller(w.ports, s, rec, nudged, w.elb.health, NOW + CONTROLLER_REQUEUE_SECONDS)
    assert w.kube.same_status == [False, True]


# ---------------------------------------------------------------------------------------------------------
# Every pod and every group is read; each write and count is the step's
# ---------------------------------------------------------------------------------------------------------
def test_a_starting_pod_before_a_late_one_does_not_hide_it():
    starting = dataclasses.replace(lbc_pod("a", None, "False"), conditions=(PodCondition("ContainersReady", "False"),))
    late = late_for_the_controller([gated_group()], [starting, lbc_pod("b", "10.0.1.2", "False", "Elb.X")],
                                   {ARN: [target("10.0.1.2", HEALTHY)]})
    assert [p.name for p, _ in late] == ["b"]


def test_a_group_the_pod_is_not_late_in_does_not_hide_the_next_one():
    second = gated_group().model_copy(update={"arn": ARN2, "binding": "web-admin-tgb"})
    p = lbc_pod("a", "10.0.1.1", "True")  # written healthy in web
    p = dataclasses.replace(p, readiness_gates=(*p.readiness_gates, LBC_GATE_PREFIX + "web-admin-tgb"))
    late = late_for_the_controller([gated_group(), second], [p], {ARN: [target("10.0.1.1", HEALTHY)],
                                                                  ARN2: [target("10.0.1.1", HEALTHY)]})
    assert [seen for _, seen in late] == ["healthy in web-admin"]


def test_overdue_in_two_groups_names_both():
    second = gated_group().model_copy(update={"arn": ARN2, "binding": "web-admin-tgb"})
    p = lbc_pod("a", "10.0.1.1", "False", "Elb.InitialHealthChecking")
    p = dataclasses.replace(p, readiness_gates=(*p.readiness_gates, LBC_GATE_PREFIX + "web-admin-tgb"))
    late = late_for_the_controller([gated_group(), second], [p], None)
    assert [seen for _, seen in late] == ["not written healthy in web, overdue, not written healthy in web-admin, "
                                          "overdue"]


def test_a_group_missing_from_the_answer_counts_as_nothing_registered_there():
    late = late_for_the_controller([gated_group()], [lbc_pod("a", "10.0.1.1", "False", "Elb.X")], {})
    assert [seen for _, seen in late] == ["not registered in web"]


def test_every_late_pod_is_written_in_the_rollouts_namespace_and_counted_across_nudges():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.X"), lbc_pod("web-new-b", "10.0.1.2", "False", "Elb.X")]
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY)]})
    s = rollout(groups=(gated_group(),))
    rec = record(NOW - CONTROLLER_REQUEUE_SECONDS)
    note = nudge_the_controller(w.ports, s, rec, pods, w.elb.health, NOW)
    assert note == ("nudged the Load Balancer Controller about 2 pod(s) whose target ELB shows ahead of its "
                    "condition (a write on the pod makes it look again at once)")
    assert [(c[0], c[1]) for c in w.kube.conditions_set] == [(s.request.namespace, "web-new-a"),
                                                            (s.request.namespace, "web-new-b")]
    assert rec.nudges == 2
    note = nudge_the_controller(w.ports, s, rec, pods, None, NOW + CONTROLLER_REQUEUE_SECONDS)
    assert note == ("nudged the Load Balancer Controller about 2 pod(s) whose condition is overdue (a write on the "
                    "pod makes it look again at once)")
    assert rec.nudges == 4


def test_a_pod_gone_before_another_does_not_stop_the_nudge():
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.X"), lbc_pod("web-new-b", "10.0.1.2", "False", "Elb.X")]
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY)]})
    written = []

    def set_condition(namespace: str, pod: str, *_args: object, **_kwargs: object) -> None:
        if pod == "web-new-a":
            raise NotFoundError(f"pods \"{pod}\" not found")
        written.append(pod)

    w.kube.set_pod_condition = set_condition
    rec = record(NOW - CONTROLLER_REQUEUE_SECONDS)
    assert nudge_the_controller(w.ports, rollout(groups=(gated_group(),)), rec, pods, w.elb.health, NOW)
    assert written == ["web-new-b"] and rec.nudges == 1


def test_a_booked_look_past_the_deadline_fails_without_nudging():
    # Given a started pod whose controller condition is not written, long overdue, the step's deadline passed and
    # albgate's share spent: the look goes to ELB and is booked
    p = dataclasses.replace(lbc_pod("web-new-a", "10.0.1.1", "False"),
                            conditions=(PodCondition("ContainersReady", "True"),))
    s = rollout(groups=(gated_group(),), step_deadline=NOW - 1)
    s.steps[-1].first_ready_at = NOW - 600
    w = world([p], {}, budget=300)
    s = check_target_health(w.ports, s)
    assert s.gate.status is Verdict.FAILED and w.kube.conditions_set == []


def test_a_booked_look_for_a_handed_over_drain_alone_waits_for_its_turn():
    # Given a step whose pods are all released, following the previous step's drain, with no pod seen starting
    # in it, and albgate's share spent for 300 s / Then nothing to nudge: the look waits for its booked turn
    s = rollout(pending=1, groups=(gated_group(),))
    assert s.steps[-1].first_ready_at is None
    released = dataclasses.replace(lbc_pod("web-new-a", "10.0.1.1", "True"),
                                   conditions=(PodCondition("ContainersReady", "True"), PodCondition(GATE, "True"),
                                               PodCondition(ALBGATE_GATE, "True")))
    w = world([released], {}, budget=300)
    s.plan = [1, 1]
    s = check_target_health(w.ports, s)
    assert "booked in 300 s" in s.gate.reason
    assert w.kube.conditions_set == [] and s.wait_seconds == 300
