"""A drain left to the Load Balancer Controller: where its own conditions opened the step's gate, albgate does not
spend a token of the account's RegisterTargets/DeregisterTargets bucket on what the controller deregisters anyway
(lambdas/domain/rollout/drain.py, ``_left_to_the_controller``; on the fakes of test_domain_mutants_gate_drain)."""

from __future__ import annotations

import dataclasses

from lambdas.domain.gate import Verdict
from lambdas.domain.poll import deregistered_poll_seconds
from lambdas.domain.ports import DRAINING, HEALTHY, LBC_GATE_PREFIX, Pod, PodCondition
from lambdas.domain.rollout.drain import PROMPT_REGISTRATION_SECONDS, verify_drain
from lambdas.domain.rollout.conditions import registration_lag
from lambdas.domain.rollout.gate import check_target_health
from lambdas.domain.rollout.observe import NOW as NOW_PACE
from lambdas.domain.rollout.observe import Pace, next_look
from lambdas.domain.rollout.left import LEFT_TO_CONTROLLER_SECONDS, controller_went_past, follow_left
from lambdas.domain.state import RolloutState
from tests.unit.test_domain_mutants_gate_drain import ARN, ARN2, INTERVAL, NOW, group, old_pod, pod, rollout, target, world
from tests.unit.test_drain_carried import gated_group, lbc_pod

OLD_PODS = [old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")]
WATCHED = ("10.0.0.1", "10.0.0.2", "10.0.0.3")


def opened(s: RolloutState, lag: float | None = 1.0) -> RolloutState:
    """The step's gate opened by the controller's conditions, its pods registered ``lag`` s after ContainersReady."""
    s.steps[-1].opened_by_controller = True
    s.steps[-1].registration_lag = lag
    return s


def test_the_gate_records_that_the_controllers_conditions_opened_it():
    # Given a new pod the controller wrote healthy
    w = world([lbc_pod("web-new-a", "10.0.1.1", "True")], {})
    s = check_target_health(w.ports, rollout(groups=(gated_group(),)))
    # Then the gate passed on its conditions alone and says so for the drain
    assert s.gate.status is Verdict.PASSED and w.elb.health_reads == 0
    assert s.steps[-1].opened_by_controller is True


def test_a_gate_still_waiting_on_the_conditions_records_nothing():
    w = world([lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")], {})
    s = check_target_health(w.ports, rollout(groups=(gated_group(),)))
    assert s.gate.status is Verdict.WAITING and s.steps[-1].opened_by_controller is False


def test_a_gate_that_passed_on_elbs_answer_records_nothing():
    # Given pods without the controller's gate: only ELB can tell
    w = world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, rollout())
    assert s.gate.status is Verdict.PASSED and w.elb.health_reads == 1
    assert s.steps[-1].opened_by_controller is False


def test_between_steps_a_drain_the_controller_keeps_up_with_is_handed_over_without_a_call():
    # Given step 1 of 2, scaled down, the gate opened by the controller's conditions
    w = world(OLD_PODS)
    s = opened(rollout(watched=WATCHED, groups=(group(port=8080),)))
    # When the drain is checked
    s = verify_drain(w.ports, s)
    # Then albgate neither deregisters nor looks: it hands over unseen and carries the released target
    assert w.elb.deregistered == [] and w.elb.health_reads == 0
    assert s.drain.status is Verdict.DRAINING and s.pending_drain_step is None and s.wait_seconds == 0
    assert s.carried_ips == ["10.0.0.1"] and s.steps[-1].deregistered == []
    assert s.steps[-1].left_at == NOW
    assert s.drain.reason == ("the Load Balancer Controller deregisters the 1 released target(s): its conditions "
                              "opened this step's gate on time; the last drain sees them out of every target "
                              "group's pool")
    assert (s.drain.old_live, s.drain.expected_old, s.drain.leaving_ips) == (2, 2, ("10.0.0.1",))


def test_a_drain_not_scaled_down_yet_is_not_left_before_its_targets_are_known():
    # Given the old ReplicaSet not scaled down yet (3 old pods serve, 2 expected)
    w = world([old_pod("web-old-a", "10.0.0.1"), *OLD_PODS])
    s = opened(rollout(watched=WATCHED, groups=(group(port=8080),)))
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.WAITING and s.steps[-1].left_at is None
    assert w.elb.deregistered == [] and s.carried_ips == []


def test_the_controller_not_keeping_up_leaves_the_drain_to_albgate():
    # Given the gate passed on ELB's answer, or this rollout's calls are being throttled, or a rollback's drain, or
    # the controller registered the step's pods slowly or when albgate could not tell, or the share is cut
    not_opened = rollout(watched=WATCHED, groups=(group(port=8080),))
    throttled = opened(rollout(watched=WATCHED, groups=(group(port=8080),), throttles=1))
    rollback = opened(rollout(watched=WATCHED, groups=(group(port=8080),)))
    rollback.mode = "rollback"
    slow = opened(rollout(watched=WATCHED, groups=(group(port=8080),)), lag=PROMPT_REGISTRATION_SECONDS + 1)
    unknown = opened(rollout(watched=WATCHED, groups=(group(port=8080),)), lag=None)
    cut = opened(rollout(watched=WATCHED, groups=(group(port=8080),)))
    for s in (not_opened, throttled, rollback, slow, unknown, cut):
        w = world(OLD_PODS)
        w.ports.budget.is_short = s is cut
        s = verify_drain(w.ports, s)
        # Then albgate deregisters the released target itself, as before
        assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])], s.mode
        assert s.steps[-1].left_at is None


def test_the_last_drain_left_to_the_controller_waits_the_lag_then_looks_once():
    # Given the last step, scaled down, the gate opened by the controller's conditions
    w = world(OLD_PODS)
    s = opened(rollout(more_steps=False, watched=WATCHED, groups=(group(port=8080),)))
    # When the drain is checked / Then no call of any kind: the look waits the load balancer's lag, as after a
    # deregistration of albgate's
    s = verify_drain(w.ports, s)
    assert w.elb.deregistered == [] and w.elb.health_reads == 0
    assert s.drain.status is Verdict.WAITING and s.carried_ips == [] and s.steps[-1].left_at == NOW
    assert s.wait_seconds == deregistered_poll_seconds("exec-1/rollout/0/deregistered/1") >= 10
    # When it looks and ELB shows the controller deregistered the target / Then the drain passed, nothing named
    w.elb.health = {ARN: [target("10.0.0.1", DRAINING)]}
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.PASSED and w.elb.health_reads == 1 and w.elb.deregistered == []


def test_the_last_drain_deregisters_what_the_controller_left_in_the_pool():
    # Given the last drain left to the controller, whose look finds the released target still healthy
    w = world(OLD_PODS)
    s = opened(rollout(more_steps=False, watched=WATCHED, groups=(group(port=8080),)))
    s = verify_drain(w.ports, s)
    w.elb.health = {ARN: [target("10.0.0.1", HEALTHY)]}
    s = verify_drain(w.ports, s)
    # Then albgate deregisters it itself on the port ELB shows and waits for it; the drain is not left twice
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])]
    assert s.drain.status is Verdict.WAITING and w.elb.health_reads == 1


# ---------------------------------------------------------------------------------------------------------
# The next gate follows what was left (lambdas/domain/rollout/left.py)
# ---------------------------------------------------------------------------------------------------------
def written(name: str, ip: str, status: str, at: float | None, binding: str = "web-tgb") -> Pod:
    """A new pod carrying the controller's gate for ``binding``, its condition last changed at ``at``."""
    p = pod(name, ip)
    gate = LBC_GATE_PREFIX + binding
    return dataclasses.replace(p, readiness_gates=(*p.readiness_gates, gate),
                               conditions=(*p.conditions, PodCondition(gate, status, "", "", at)))


def left(carried: tuple[str, ...] = ("10.0.0.1",), at: float = NOW - 5, groups=None) -> RolloutState:
    """Step 2 of 3 whose previous step left ``carried`` to the controller at ``at``."""
    s = rollout(step=1, plan=(1, 2, 3), groups=groups or (gated(port=8080),))
    s.carried_ips, s.left_at = list(carried), at
    return s


def gated(arn: str = ARN, binding: str = "web-tgb", port: int | None = None):
    g = group(arn, port=port)
    g.binding = binding
    return g


def test_a_condition_written_since_the_targets_were_left_proves_the_controller_went_past_them():
    s = left(at=100.0)
    assert controller_went_past(s, [written("web-new-b", "10.0.1.2", "False", 100.0)])
    assert controller_went_past(s, [written("web-new-b", "10.0.1.2", "True", 130.0)])
    # but not one that changed before, nor one whose time the API did not give, nor another binding's
    assert not controller_went_past(s, [written("web-new-b", "10.0.1.2", "False", 99.0)])
    assert not controller_went_past(s, [written("web-new-b", "10.0.1.2", "False", None)])
    assert not controller_went_past(s, [written("web-new-b", "10.0.1.2", "False", 120.0, binding="other")])
    assert not controller_went_past(s, [])
    # nor anything when nothing was left, or a group has no binding the controller's gate could name
    nothing = left(at=100.0)
    nothing.left_at = None
    assert not controller_went_past(nothing, [written("web-new-b", "10.0.1.2", "False", 120.0)])
    assert not controller_went_past(left(at=100.0, groups=(group(port=8080),)),
                                    [written("web-new-b", "10.0.1.2", "False", 120.0)])


def test_every_groups_binding_must_show_the_controller_went_past():
    s = left(at=100.0, groups=(gated(ARN, "web-tgb", 8080), gated(ARN2, "admin-tgb", 8080)))
    one = written("web-new-b", "10.0.1.2", "False", 110.0)
    other = written("web-new-c", "10.0.1.3", "False", 111.0, binding="admin-tgb")
    assert not controller_went_past(s, [one]) and not controller_went_past(s, [other])
    assert controller_went_past(s, [one, other])


def test_proof_settles_the_left_targets_without_a_call():
    w = world([written("web-new-b", "10.0.1.2", "False", NOW - 2)])
    s = left(at=NOW - 5)
    follow_left(w.ports, s, w.kube.pods, [], NOW)
    assert s.left_at is None and w.elb.deregistered == [] and s.carried_ips == ["10.0.0.1"]
    assert getattr(w.ports.budget, "lates", 0) == 0


def test_without_proof_nothing_is_called_before_the_deadline_and_albgate_deregisters_at_it():
    pods = [written("web-new-b", "10.0.1.2", "False", NOW - 30)]  # written before the targets were left
    at = NOW - LEFT_TO_CONTROLLER_SECONDS
    early = world(pods)
    s = left(at=at + 0.5)
    follow_left(early.ports, s, pods, [], NOW)
    assert early.elb.deregistered == [] and s.left_at == at + 0.5
    # At the deadline: the carried targets and every terminating pod's, never a live pod's IP, named once
    due = world(pods)
    s = left(carried=("10.0.0.1", "10.0.1.2"), at=at)
    going = old_pod("web-old-c", "10.0.0.3", terminating=True)
    no_ip = old_pod("web-old-e", None, terminating=True)  # gone from the network already: nothing to name
    follow_left(due.ports, s, pods, [going, old_pod("web-old-d", "10.0.0.4"), no_ip], NOW)
    assert due.elb.deregistered == [(ARN, [("10.0.0.1", 8080), ("10.0.0.3", 8080)])]
    assert s.left_at is None and s.steps[-1].deregistered == [f"{ARN}|10.0.0.1", f"{ARN}|10.0.0.3"]
    # and every execution is told the controller was late (none leaves a drain for a while); not before the deadline
    assert getattr(due.ports.budget, "lates", 0) == 1 and getattr(early.ports.budget, "lates", 0) == 0
    follow_left(due.ports, s, pods, [going], NOW + 5)
    assert len(due.elb.deregistered) == 1


def test_a_later_blind_deregistration_names_the_carried_targets_still_left():
    # Given step 2's drain scaled down while step 1's target is still left without proof (its gate passed on ELB)
    w = world([old_pod("web-old-c", "10.0.0.3")])
    s = rollout(step=1, plan=(1, 2, 3), watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"), groups=(group(port=8080),))
    s.carried_ips, s.left_at = ["10.0.0.1"], NOW - 3
    s = verify_drain(w.ports, s)
    # Then albgate names both, the carried one too
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080), ("10.0.0.2", 8080)])]


def test_a_gates_look_at_elb_settles_what_was_left():
    # Given targets left to the controller, and a gate that must ask ELB (its pods carry no controller gate)
    new = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2")]
    w = world(new, {ARN: [target("10.0.0.1", HEALTHY), target("10.0.1.2", HEALTHY)]})
    s = left(at=NOW - 1, groups=(group(port=8080),))
    s = check_target_health(w.ports, s)
    # Then the look named the carried target it saw in the pool, and nothing is left to follow
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and s.left_at is None


def test_a_registration_just_within_prompt_still_leaves_the_drain():
    w = world(OLD_PODS)
    s = verify_drain(w.ports, opened(rollout(watched=WATCHED, groups=(group(port=8080),)),
                                     lag=PROMPT_REGISTRATION_SECONDS))
    assert s.drain.status is Verdict.DRAINING and w.elb.deregistered == [] and s.left_at == NOW


def test_no_wait_runs_past_the_deadline_of_what_was_left():
    # Given targets left 4 s ago, and a look that would wait longer (the targets' interval)
    s = left(at=NOW - 4)
    assert next_look(s, Pace("targets"), NOW) == LEFT_TO_CONTROLLER_SECONDS - 4
    # and at least a second, once the deadline is due; a look that goes now still goes now
    assert next_look(left(at=NOW - 30), Pace("targets"), NOW) == 1
    assert next_look(s, NOW_PACE, NOW) == 0
    # Without anything left, the wait is the pace's
    s.left_at = None
    assert next_look(s, Pace("targets"), NOW) == INTERVAL


def test_the_gate_bounds_the_controllers_registration_at_its_first_read_of_the_conditions():
    # Given a step's pod ContainersReady at 90 s whose controller condition appeared at 93 s
    ready = PodCondition("ContainersReady", "True", "", "", 90.0)
    p = dataclasses.replace(written("web-new-a", "10.0.1.1", "False", 93.0), conditions=(
        ready, PodCondition(LBC_GATE_PREFIX + "web-tgb", "False", "Elb.RegistrationInProgress", "", 93.0)))
    w = world([p])
    s = check_target_health(w.ports, rollout(groups=(gated(),)))
    assert s.steps[-1].registration_lag == 3.0
    # And a later look does not move it (a condition's time only grows)
    later = dataclasses.replace(p, conditions=(ready, PodCondition(LBC_GATE_PREFIX + "web-tgb", "True", "", "", 99.0)))
    s = check_target_health(world([later]).ports, s)
    assert s.steps[-1].registration_lag == 3.0 and s.steps[-1].opened_by_controller


def test_the_registration_bound_is_the_slowest_pods_and_none_until_every_pod_tells():
    def pod_with(ip: str, ready_at: float | None, written_at: float | None) -> Pod:
        conds = [PodCondition("ContainersReady", "True", "", "", ready_at)]
        if written_at is not None or ready_at is None:
            conds.append(PodCondition(LBC_GATE_PREFIX + "web-tgb", "False", "Elb.RegistrationInProgress", "",
                                      written_at))
        return dataclasses.replace(pod("p-" + ip, ip), readiness_gates=(LBC_GATE_PREFIX + "web-tgb",),
                                   conditions=tuple(conds))
    groups = [gated()]
    assert registration_lag(groups, [pod_with("10.0.1.1", 90.0, 91.0), pod_with("10.0.1.2", 92.0, 96.0)]) == 4.0
    assert registration_lag(groups, [pod_with("10.0.1.1", 90.0, 91.0), pod_with("10.0.1.2", 92.0, None)]) is None
    assert registration_lag(groups, [pod_with("10.0.1.1", None, 91.0)]) is None
    assert registration_lag([group()], [pod_with("10.0.1.1", 90.0, 91.0)]) is None  # no binding
    assert registration_lag(groups, [pod("p", None)]) is None  # nobody ContainersReady with an IP


def test_what_albgate_deregisters_at_the_deadline_is_recorded_on_the_current_step():
    # Given the third step of three, targets left by the second, past the deadline without proof
    w = world([])
    s = rollout(step=2, plan=(1, 2, 3), groups=(gated(port=8080),))
    s.carried_ips, s.left_at = ["10.0.0.1"], NOW - LEFT_TO_CONTROLLER_SECONDS
    follow_left(w.ports, s, [], [], NOW)
    # Then the current step's record says what albgate deregistered, not an earlier one's
    assert [r.deregistered for r in s.steps] == [[], [], [f"{ARN}|10.0.0.1"]]


def test_the_registration_bound_reads_every_started_pod_and_skips_the_others():
    lbc = LBC_GATE_PREFIX + "web-tgb"

    def with_conditions(name: str, ip: str | None, *conds: PodCondition) -> Pod:
        return dataclasses.replace(pod(name, ip), readiness_gates=(lbc,), conditions=conds)

    started = with_conditions("a", "10.0.1.1", PodCondition("ContainersReady", "True", "", "", 90.0),
                              PodCondition(lbc, "False", "Elb.RegistrationInProgress", "", 94.0))
    no_ip = with_conditions("b", None, PodCondition("ContainersReady", "True", "", "", 80.0))
    not_ready = with_conditions("c", "10.0.1.3", PodCondition("ContainersReady", "False", "", "", 91.0))
    # a pod without an IP or not ContainersReady says nothing, wherever it comes in the list
    assert registration_lag([gated()], [no_ip, started]) == 4.0
    assert registration_lag([gated()], [started, not_ready]) == 4.0
