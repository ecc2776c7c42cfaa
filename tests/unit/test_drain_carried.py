"""The drain albgate starts itself: targets deregistered at once, handed over unseen and carried to the last
drain; and the gate on the controller's conditions until they are overdue (lambdas/domain/rollout/drain.py and
gate.py, on the fakes of test_domain_mutants_gate_drain)."""

from __future__ import annotations

import dataclasses

from lambdas.domain.contract import ALB_METRICS_REGRESSED
from lambdas.domain.errors import ThrottledError
from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, Verdict
from lambdas.domain.poll import DEREGISTRATION_LAG_SECONDS, POD_START_POLL_SECONDS, deregistered_poll_seconds, pod_poll_seconds
from lambdas.domain.ports import DRAINING, HEALTHY, INITIAL, LBC_GATE_PREFIX, UNHEALTHY, PodCondition, Ports
from lambdas.domain.rollout.drain import check_leaving, release_old_pods, verify_drain
from lambdas.domain.rollout.gate import check_target_health, conditions_overdue_seconds
from lambdas.domain.rollout.nudge import NUDGE_REASON
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
from tests.unit.test_analysis_looks import START, FakeMetrics, steady
from tests.unit.test_analysis_looks import state as analysis_state

BINDING = "web-tgb"


def test_release_watches_the_carried_targets_with_the_old_pods_but_never_a_serving_new_pods_ip():
    # Given targets carried from earlier steps, one of whose IPs a new pod now holds
    w = world([pod("web-new-a", "10.0.1.1", released=True), old_pod("web-old-b", "10.0.0.2")])
    s = rollout(release=("web-new-a",))
    s.carried_ips = ["10.0.0.9", "10.0.1.1"]
    # When the step releases its pods
    s = release_old_pods(w.ports, s)
    # Then its drain watches the old pods and the carried target, not the serving new pod's IP
    assert s.watched_ips == ["10.0.0.2", "10.0.0.9"]


def test_a_scaled_down_step_hands_over_unseen_and_carries_what_it_deregistered():
    # Given step 1 of 2 scaled down (2 old pods serve, as expected), its released pod's target not yet named
    w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")])
    s = rollout(watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"), groups=(group(port=8080),))
    # When the drain is checked
    s = verify_drain(w.ports, s)
    # Then albgate named the released target once, did not look, and handed over unseen, carrying it
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and w.elb.health_reads == 0
    assert s.drain.status is Verdict.DRAINING and s.pending_drain_step is None
    assert s.carried_ips == ["10.0.0.1"] and s.wait_seconds == 0
    assert s.drain.reason == ("albgate deregistered the 1 released target(s) itself: out of the pool, draining; "
                              "the last drain sees them out of every target group's pool")
    assert (s.drain.old_live, s.drain.expected_old, s.drain.leaving_ips) == (2, 2, ("10.0.0.1",))


def test_a_throttled_deregistration_records_nothing_fails_nothing_and_is_asked_again():
    # Given step 1 of 2 scaled down, and the account's RegisterTargets/DeregisterTargets bucket empty
    w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")],
              {ARN: [target("10.0.0.1", HEALTHY), target("10.0.0.2", HEALTHY), target("10.0.0.3", HEALTHY)]})
    s = rollout(watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"), groups=(group(port=8080),))
    asked = []

    def refused(arn, targets):
        asked.append((arn, list(targets)))
        raise ThrottledError("Rate exceeded")
    w.elb.deregister_targets = refused
    # When the drain is checked
    s = verify_drain(w.ports, s)
    # Then the step goes on (no error): the blind call and the one on the look's answer were both refused, nothing is
    # recorded as deregistered, nothing is handed over unseen, and the reason says the call was throttled
    assert asked == [(ARN, [("10.0.0.1", 8080)])] * 2 and s.steps[-1].deregistered == []
    assert s.drain.status is Verdict.WAITING and s.carried_ips == []
    assert "DeregisterTargets throttled for 1 released target(s): the next look asks again" in s.drain.reason
    # When the bucket has room again and the drain looks again / Then the target is named and recorded
    w.elb.deregister_targets = lambda arn, targets: w.elb.deregistered.append((arn, list(targets)))
    s = verify_drain(w.ports, s)
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and s.steps[-1].deregistered == [f"{ARN}|10.0.0.1"]


def test_a_scaled_down_step_with_nothing_leaving_looks_and_passes():
    # Given a step whose watched pods all still serve (nothing was released: say the gate released a pod that left)
    w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")], {ARN: []})
    s = rollout(watched=("10.0.0.2", "10.0.0.3"), groups=(group(port=8080),))
    s = verify_drain(w.ports, s)
    # Then there is nothing to name; its look finds nothing leaving and the drain passed
    assert w.elb.deregistered == [] and w.elb.health_reads == 1
    assert s.drain.status is Verdict.PASSED and s.carried_ips == []


def test_a_carried_target_is_not_named_again_and_the_drain_still_hands_over():
    # Given step 2 of 3, with step 1's target carried (already deregistered) and step 2's released one leaving
    w = world([old_pod("web-old-c", "10.0.0.3")])
    s = rollout(step=1, plan=(1, 2, 3), watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"), groups=(group(port=8080),))
    s.carried_ips = ["10.0.0.1"]
    s = verify_drain(w.ports, s)
    assert w.elb.deregistered == [(ARN, [("10.0.0.2", 8080)])]
    assert s.drain.status is Verdict.DRAINING and s.carried_ips == ["10.0.0.1", "10.0.0.2"]


def test_without_a_port_for_every_group_the_drain_looks_before_it_hands_over():
    # Given two groups, the second one's port unknown (its targets were seen on several ports)
    w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")],
              {ARN: [target("10.0.0.1", DRAINING)], ARN2: [target("10.0.0.1", HEALTHY)]})
    mixed = group(ARN2)
    mixed.ports_mixed = True
    s = rollout(watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"), groups=(group(port=8080), mixed))
    s = verify_drain(w.ports, s)
    # Then it named what it could and waits the lag without looking
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and w.elb.health_reads == 0
    assert s.drain.status is Verdict.WAITING and s.wait_seconds >= 10
    # And then looks, names the target still healthy in the second group on the port ELB shows, and hands the drain
    # over seen: the next gate follows it
    s = verify_drain(w.ports, s)
    assert w.elb.health_reads == 2
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)]), (ARN2, [("10.0.0.1", 8080)])]
    assert s.drain.status is Verdict.DRAINING and s.pending_drain_step == 1 and s.carried_ips == []


def test_the_last_drain_names_its_targets_waits_the_lag_exactly_and_passes_without_a_look():
    # Given the last step scaled down, its released target not named yet, on a group of one known port
    w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")])
    s = rollout(more_steps=False, watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"), groups=(group(port=8080),))
    # When the drain is checked / Then it names the target, does not look, and waits exactly the load balancer's lag
    s = verify_drain(w.ports, s)
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and w.elb.health_reads == 0
    assert s.drain.status is Verdict.WAITING and s.pending_drain_step is None and s.carried_ips == []
    assert s.wait_seconds == DEREGISTRATION_LAG_SECONDS == 10
    # When it is checked a second early / Then it looks (the lag is not over), naming nothing again
    early = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")],
                  {ARN: [target("10.0.0.1", DRAINING)]}, now=NOW + 9)
    verify_drain(early.ports, s.model_copy(deep=True))
    assert early.elb.health_reads == 1 and early.elb.deregistered == []
    # When it is checked once the lag is over / Then the call's success proves the drain: no look
    later = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")], now=NOW + 10)
    s = verify_drain(later.ports, s)
    assert (s.drain.status, later.elb.health_reads, later.elb.deregistered) == (Verdict.PASSED, 0, [])
    assert s.drain.leaving_ips == ("10.0.0.1",)
    assert s.drain.reason == ("1 old target(s) out of every target group's pool: albgate's own DeregisterTargets made "
                              "them `draining`, and the load balancer has stopped sending them new requests since")


def test_the_last_drain_looks_where_the_call_alone_proves_nothing():
    # A target carried from an earlier step that this step's gate never saw on ELB, a rollback, a target left to the
    # controller, a group of mixed ports: each ends on a look (or the controller's checkpoint)
    def checked(**change):
        w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")], now=NOW + 10)
        s = rollout(more_steps=False, watched=("10.0.0.1", "10.0.0.9"), groups=(group(port=8080),))
        s.steps[-1].deregistered = [f"{ARN}|10.0.0.1"]
        s.changed_at = NOW
        s.carried_ips = ["10.0.0.9"]
        s.steps[-1].observed_at = NOW - 20  # the gate looked at ELB this step
        for key, value in change.items():
            target_obj = s.steps[-1] if key in ("observed_at", "deregistered") else s
            setattr(target_obj, key, value)
        verify_drain(w.ports, s)
        return w.elb.health_reads

    assert checked() == 0
    assert checked(observed_at=None) == 1
    assert checked(mode="rollback") == 1  # a rollback ends on what ELB shows
    # left to the controller unseen: named again by this step already, it still needs a look
    assert checked(left_at=NOW - 5, deregistered=[f"{ARN}|10.0.0.1", f"{ARN}|10.0.0.9"]) == 1
    assert checked(changed_at=NOW + 1) == 1
    assert checked(target_groups=[group().model_copy(update={"ports_mixed": True})]) == 1
    assert checked(target_groups=[group(port=None)]) == 1


def test_the_last_drain_passes_only_once_every_carried_target_is_out_of_the_pool():
    # Given the last step, its own released target gone, a carried one back in the pool (named on a port that was
    # not its own)
    w = world([old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")],
              {ARN: [target("10.0.0.9", HEALTHY)]})
    s = rollout(more_steps=False, watched=("10.0.0.1", "10.0.0.9"), groups=(group(port=8080),))
    s.carried_ips = ["10.0.0.9"]
    s.steps[-1].deregistered = [f"{ARN}|10.0.0.1"]
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.WAITING and s.drain.routable == 1
    # When the next look shows it draining (ELB shows it so until its delay ends) / Then the drain is verified
    w.elb.health = {ARN: [target("10.0.0.9", DRAINING)]}
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.PASSED and s.carried_ips == [] and s.drain.draining == 1


def test_a_gates_look_deregisters_a_carried_target_still_in_the_pool_and_a_removed_pods_and_forgets_what_left():
    # Given a carried target ELB still shows healthy (named on a port that was not its own), one carried that left,
    # and an old pod Kubernetes is removing by itself whose target is still in the pool
    w = world([])
    s = rollout(groups=(group(port=9999),))
    s.carried_ips = ["10.0.0.1", "10.0.0.5"]
    mine = [pod("web-new-a", "10.0.1.1")]
    others = [old_pod("web-old-b", "10.0.0.2", terminating=True), old_pod("web-old-c", "10.0.0.3")]
    health = {ARN: [target("10.0.0.1", HEALTHY), target("10.0.0.2", HEALTHY), target("10.0.0.3", HEALTHY),
                    target("10.0.1.1", INITIAL)]}
    check_leaving(w.ports, s, health, mine, others, s.steps[-1])
    # Then both are deregistered on the port ELB shows; the live old pod's and the new pod's are not touched
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080), ("10.0.0.2", 8080)])]
    assert s.carried_ips == ["10.0.0.1"]


def lbc_pod(name: str, ip: str, status: str, reason: str = "") -> object:
    """A new pod with the controller's gate for the group's binding too, its condition as the controller wrote it."""
    p = pod(name, ip)
    gate = LBC_GATE_PREFIX + BINDING
    return dataclasses.replace(p, readiness_gates=(*p.readiness_gates, gate),
                               conditions=(*p.conditions, PodCondition(gate, status, reason)))


def gated_group():
    g = group()
    g.binding = BINDING
    return g


def test_conditions_are_overdue_after_the_checks_a_requeue_and_an_interval_of_slack():
    two = [gated_group(), gated_group().model_copy(update={"arn": ARN2, "health_check_interval_seconds": 30,
                                                            "healthy_threshold": 3})]
    assert conditions_overdue_seconds(rollout(groups=(gated_group(),))) == \
        INTERVAL * 3 + CONTROLLER_REQUEUE_SECONDS - POD_START_POLL_SECONDS
    assert conditions_overdue_seconds(rollout(groups=tuple(two))) == 30 * 4 + CONTROLLER_REQUEUE_SECONDS - POD_START_POLL_SECONDS


def test_the_gate_reads_only_the_conditions_until_they_are_overdue_then_asks_elb():
    # Given a new pod whose controller condition says its target is still registered (until the overdue look, where
    # it says ELB checks it: that look nudges at once, tests/unit/test_checked_nudge.py has the sooner nudge)
    registering = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.RegistrationInProgress")]
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    w = world(registering, {ARN: [target("10.0.1.1", HEALTHY)]})
    s = rollout(groups=(gated_group(),))
    # When the gate looks first / Then no ELB call, and the next look comes at the pods' pace
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 0 and s.gate.status is Verdict.WAITING
    assert s.steps[-1].first_ready_at == NOW and s.steps[-1].observed_at == NOW
    assert s.gate.reason.endswith("(read from the Load Balancer Controller's target-health conditions)")
    assert s.wait_seconds == pod_poll_seconds("exec-1/rollout/0/conditions/1")
    # When it looks just before they are overdue / Then still none, and it comes back no later than then
    overdue = NOW + conditions_overdue_seconds(s)
    w2 = world(registering, {ARN: [target("10.0.1.1", HEALTHY)]}, now=overdue - 1)
    s = check_target_health(w2.ports, s)
    assert w2.elb.health_reads == 0 and s.wait_seconds == 1
    # When they are overdue / Then the controller is nudged instead (its own look answers), still no call, and the
    # gate comes back no later than a requeue after the nudge
    w3 = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, now=overdue)
    s = check_target_health(w3.ports, s)
    assert w3.elb.health_reads == 0 and s.gate.status is Verdict.WAITING
    assert [c[1] for c in w3.kube.conditions_set] == ["web-new-a"] and s.steps[-1].nudged_at == overdue
    assert "nudged the Load Balancer Controller about 1 pod(s) whose condition is overdue" in s.gate.reason
    assert s.wait_seconds <= CONTROLLER_REQUEUE_SECONDS
    # When a look comes just before that requeue ends / Then still no call
    w4 = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, now=overdue + CONTROLLER_REQUEUE_SECONDS - 1)
    s = check_target_health(w4.ports, s)
    assert w4.elb.health_reads == 0 and s.wait_seconds == 1
    # When the conditions still do not tell a requeue after the nudge / Then ELB is asked, and its `unhealthy`
    # answer fails the step at once
    w5 = world(pods, {ARN: [target("10.0.1.1", UNHEALTHY, "Target.ResponseCodeMismatch")]},
               now=overdue + CONTROLLER_REQUEUE_SECONDS)
    s = check_target_health(w5.ports, s)
    assert w5.elb.health_reads == 1 and s.gate.status is Verdict.FAILED


def test_a_gates_look_at_elb_names_a_removed_old_pods_target_still_in_the_pool():
    # Given a gate that asks ELB (no controller gate on the pod) while Kubernetes removes an old pod by itself
    pods = [pod("web-new-a", "10.0.1.1"), old_pod("web-old-b", "10.0.0.2", terminating=True)]
    w = world(pods, {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking"), target("10.0.0.2", HEALTHY)]})
    s = check_target_health(w.ports, rollout())
    # Then its target is deregistered on the port ELB shows, and the gate waits for its own targets
    assert w.elb.health_reads == 1 and w.elb.deregistered == [(ARN, [("10.0.0.2", 8080)])]
    assert s.gate.status is Verdict.WAITING


@dataclasses.dataclass(frozen=True)
class Clock:
    at: float

    def now(self) -> float:
        return self.at


def analysis_ports(now: float) -> Ports:
    """Only the clock and a CloudWatch whose ALB metrics regressed: a look that reads anything else fails."""
    return Ports(kube=None, elb=None, clock=Clock(now), metrics=FakeMetrics(steady(START + 120, 5, errors=60.0)))  # type: ignore[arg-type]


def test_a_gate_look_fails_first_on_what_the_policy_watches_with_its_error():
    # Given a version whose ALB metrics regressed since the first gate passed (policy.analysis)
    s = analysis_state(analysis={})
    # When the gate looks / Then it fails on that before reading anything else, with the analysis' error
    s = check_target_health(analysis_ports(START + 500), s)
    assert s.gate.status is Verdict.FAILED and s.gate.error == ALB_METRICS_REGRESSED
    assert "during step 1's gate" in s.gate.reason and s.wait_seconds == 0


def test_a_drain_look_fails_first_on_what_the_policy_watches_with_its_error():
    s = analysis_state(analysis={})
    s = verify_drain(analysis_ports(START + 500), s)
    assert s.drain.status is Verdict.FAILED and s.drain.error == ALB_METRICS_REGRESSED
    assert "during step 1's drain" in s.drain.reason and s.wait_seconds == 0


def test_told_not_to_read_the_conditions_the_gate_asks_elb_at_once_and_releases_on_its_answer():
    # Given a gated pod whose controller condition still says its target is being checked, and a policy that does
    # not read the controller's conditions
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = rollout(groups=(gated_group(),))
    policy = s.request.policy.model_copy(update={"read_controller_conditions": False})
    s.request = s.request.model_copy(update={"policy": policy})
    # When ELB already calls its target healthy / Then the first look asks ELB and releases the pod on that answer
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 1 and s.gate.status is Verdict.PASSED and s.gate.release == ("web-new-a",)
    assert "target-health conditions" not in s.gate.reason


def test_healthy_on_elb_but_not_yet_on_the_controllers_gate_waits_for_the_controller_and_trusts_it_again():
    # Given a pod whose controller condition is overdue (a throttled controller), still a requeue after the first
    # overdue look nudged the controller, its target healthy on ELB
    pods = [lbc_pod("web-new-a", "10.0.1.1", "False", "Elb.InitialHealthChecking")]
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s) - CONTROLLER_REQUEUE_SECONDS
    s.steps[-1].nudged_at = NOW - CONTROLLER_REQUEUE_SECONDS
    w = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, s)
    # Then the gate releases nothing (the controller's gate holds the pod out of Ready anyway), says why, and
    # trusts the conditions again from now, without asking ELB before they are overdue once more
    assert w.elb.health_reads == 1 and s.gate.status is Verdict.WAITING and s.gate.release == ()
    assert s.gate.reason.endswith("the Load Balancer Controller has not written them healthy on the pods yet, and "
                                  "its gate holds them until it does")
    # and nudges the controller: albgate's own condition written again on the pod, still False (rollout/nudge.py)
    assert [(c[1], c[3], c[4]) for c in w.kube.conditions_set] == [("web-new-a", "False", NUDGE_REASON)]
    assert "nudged the Load Balancer Controller about 1 pod(s)" in s.gate.reason and s.steps[-1].nudged_at == NOW
    assert s.steps[-1].first_ready_at == NOW
    assert s.wait_seconds == pod_poll_seconds("exec-1/rollout/0/conditions/1")
    later = world(pods, {ARN: [target("10.0.1.1", HEALTHY)]}, now=NOW + 10)
    s = check_target_health(later.ports, s)
    assert later.elb.health_reads == 0 and s.gate.status is Verdict.WAITING
    # When the controller writes it healthy / Then the gate passes on its conditions
    written = world([lbc_pod("web-new-a", "10.0.1.1", "True")], {}, now=NOW + 12)
    s = check_target_health(written.ports, s)
    assert s.gate.status is Verdict.PASSED and s.gate.release == ("web-new-a",) and written.elb.health_reads == 0
