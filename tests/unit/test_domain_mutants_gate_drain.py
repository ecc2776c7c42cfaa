"""The two decisions of a step and the use cases around them, word for word and count for count.

Given the new and old pods of a step and what DescribeTargetHealth says of their targets, ``evaluate_gate`` and
``evaluate_drain`` say PASSED, WAITING or FAILED with the exact counts and reasons a release engineer reads, and
``targets_to_register`` registers in every group whose grace ran out. Given a small fake cluster and load balancer,
Targets Healthy? (``check_target_health``), Release Old Pods and Verify Drain read the Deployment once per look,
fail on Kubernetes' own progress deadline, say when a failure is blind, follow a drain handed over to the next
step's gate, deregister only what albgate released, and wait exactly as long as what they wait for asks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from lambdas.domain.errors import ThrottledError
from lambdas.domain.gate import (
    DrainResult,
    GateResult,
    Registration,
    Verdict,
    all_registering,
    evaluate_drain,
    evaluate_gate,
    pods_needing_targets,
    targets_to_register,
)
from lambdas.domain.models import RolloutPolicy, RolloutRequest
from lambdas.domain.poll import (
    DEREGISTRATION_LAG_SECONDS,
    deregistered_poll_seconds,
    drain_poll_seconds,
    pod_poll_seconds,
    target_poll_seconds,
)
from lambdas.domain.ports import (
    ALBGATE_GATE,
    DRAINING,
    HEALTHY,
    INITIAL,
    REGISTRATION_IN_PROGRESS,
    UNHEALTHY,
    UNAVAILABLE,
    UNUSED,
    Container,
    Deployment,
    DeploymentCondition,
    Pod,
    PodCondition,
    PodTemplate,
    Ports,
    ReplicaSet,
    TargetHealth,
)
from lambdas.domain.rollout.drain import release_old_pods, verify_drain
from lambdas.domain.rollout.gate import check_target_health
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo

NS = "shop"
NEW = "registry.example.com/web@sha256:" + "b" * 64
OLD = "registry.example.com/web@sha256:" + "a" * 64
ARN = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web/0123456789abcdef"
ARN2 = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web-admin/fedcba9876543210"
INTERVAL = 10  # the target group's health-check interval
NOW = 100.0
BLIND = (
    "; albgate has not seen this step's targets for a while (DescribeTargetHealth throttled, or waiting for "
    "albgate's share of the account's Describe* calls), so it cannot tell whether a rollback would remove serving "
    "pods: it stops here with the old pods serving; roll back by hand once the account's Describe* calls are no "
    "longer throttled"
)
NOT_SCALED = "the Deployment controller has not scaled the old ReplicaSet down yet"


def pod(name: str, ip: str | None = "10.0.1.1", *, ready: bool = True, created_at: float = 0.0, waiting: str = "",
        restarts: int = 0, unschedulable: bool = False, released: bool = False, terminating: bool = False,
        old: bool = False) -> Pod:
    """A pod of the new ReplicaSet behind albgate's gate (``old``: of the previous one, without the gate)."""
    conditions = [PodCondition("ContainersReady", "True" if ready else "False")]
    if unschedulable:
        conditions.append(PodCondition("PodScheduled", "False", "Unschedulable"))
    if released:
        conditions.append(PodCondition(ALBGATE_GATE, "True"))
    return Pod(namespace=NS, name=name, uid=f"uid-{name}", ip=ip,
               labels={"app": "web", "pod-template-hash": "old" if old else "new"},
               phase="Running" if ready else "Pending", readiness_gates=() if old else (ALBGATE_GATE,),
               conditions=tuple(conditions), terminating=terminating, restart_count=restarts, created_at=created_at,
               waiting_reason=waiting)


def old_pod(name: str, ip: str | None, *, terminating: bool = False) -> Pod:
    return pod(name, ip, old=True, terminating=terminating)


def target(ip: str, state: str, reason: str = "", description: str = "") -> TargetHealth:
    return TargetHealth(target_id=ip, port=8080, state=state, reason=reason, description=description)


# ---------------------------------------------------------------------------------------------------------
# pods_needing_targets and all_registering
# ---------------------------------------------------------------------------------------------------------
def test_a_pod_with_an_ip_that_is_not_containers_ready_is_not_worth_a_describe_call():
    assert pods_needing_targets([pod("web-a", ready=False)], 1) is False


def test_every_ready_pod_registering_is_registering_though_another_pod_still_starts():
    # Given one ready pod whose target the load balancer is registering, and one with an IP still starting
    candidates = [pod("web-a", "10.0.1.1"), pod("web-b", "10.0.1.2", ready=False)]
    health = {ARN: [target("10.0.1.1", INITIAL, REGISTRATION_IN_PROGRESS)]}
    # Then only the started pod counts
    assert all_registering(candidates, health) is True


# ---------------------------------------------------------------------------------------------------------
# evaluate_gate
# ---------------------------------------------------------------------------------------------------------
def gate(candidates: list[Pod], needed: int, health: dict[str, list[TargetHealth]] | None) -> GateResult:
    return evaluate_gate(candidates=candidates, needed=needed, health=health, now=NOW, deadline=NOW + 60)


def test_a_step_whose_pods_are_all_released_passes_needing_none():
    assert gate([], 0, None) == GateResult(Verdict.PASSED, "this step's pods are already released", needed=0)


def test_of_two_pods_that_cannot_start_the_first_by_name_is_named():
    candidates = [pod("web-b", waiting="CrashLoopBackOff", restarts=4), pod("web-a", waiting="ImagePullBackOff")]
    assert gate(candidates, 2, None) == GateResult(
        Verdict.FAILED, "new pod web-a is ImagePullBackOff (restarts: 0); the new version does not start", needed=2)


def test_before_its_targets_are_read_the_gate_counts_pods_with_an_ip_but_not_ready_as_starting():
    candidates = [pod("web-a", "10.0.1.1"), pod("web-b", "10.0.1.2", ready=False)]
    assert gate(candidates, 2, None) == GateResult(
        Verdict.WAITING, "waiting for 1 of 2 new pods to start (ContainersReady) before checking targets",
        needed=2, starting=1, unschedulable=0)


def test_before_its_targets_are_read_the_gate_names_a_pod_no_node_can_take():
    candidates = [pod("web-a", None, ready=False, unschedulable=True)]
    assert gate(candidates, 1, None) == GateResult(
        Verdict.WAITING, "waiting for 1 of 1 new pods to start (ContainersReady) before checking targets; "
        "1 Pending, PodScheduled=False Unschedulable: no node can take it", needed=1, starting=1, unschedulable=1)


def waiting_pods() -> tuple[list[Pod], dict[str, list[TargetHealth]]]:
    """One healthy pod, two initial, two not registered, and their targets in two groups."""
    pods = [pod("web-a", "10.0.1.1", created_at=1), pod("web-b", "10.0.1.2", created_at=2),
            pod("web-c", "10.0.1.3", created_at=3), pod("web-d", "10.0.1.4", created_at=4),
            pod("web-e", "10.0.1.5", created_at=5)]
    health = {
        ARN: [target("10.0.1.1", HEALTHY), target("10.0.1.2", INITIAL), target("10.0.1.3", HEALTHY)],
        ARN2: [target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY), target("10.0.1.3", INITIAL)],
    }
    return pods, health


def test_a_waiting_gate_counts_each_pod_once_by_its_worst_group():
    pods, health = waiting_pods()
    starting = pod("web-f", None, ready=False)
    assert gate([*pods, starting], 2, health) == GateResult(
        Verdict.WAITING,
        "1/2 new targets healthy in every target group (2 initial, 2 not registered yet, 1 pods starting)",
        needed=2, healthy=1, initial=2, unhealthy=0, unregistered=2, starting=1, polled_targets=True)


def test_a_waiting_gate_names_the_pods_no_node_can_take_after_its_counts():
    pods, health = waiting_pods()
    starting = [pod("web-f", None, ready=False, unschedulable=True), pod("web-g", None, ready=False,
                                                                          unschedulable=True)]
    result = gate([*pods, *starting], 2, health)
    assert result.reason == (
        "1/2 new targets healthy in every target group (2 initial, 2 not registered yet, 2 pods starting, "
        "2 Pending, PodScheduled=False Unschedulable: no node can take them)")


def test_an_unhealthy_target_without_reason_fails_the_gate_with_every_count():
    # Given two unhealthy new pods (the older one without a reason) and one still starting
    candidates = [pod("web-b", "10.0.1.2", created_at=2), pod("web-a", "10.0.1.1", created_at=1),
                  pod("web-c", None, ready=False)]
    health = {ARN: [target("10.0.1.1", UNHEALTHY),
                    target("10.0.1.2", UNHEALTHY, "Target.Timeout", "Request timed out")]}
    # Then the older pod is named, with "no reason" and nothing after it
    assert gate(candidates, 2, health) == GateResult(
        Verdict.FAILED, f"new pod web-a (10.0.1.1) is unhealthy in {ARN}: no reason",
        needed=2, healthy=0, initial=0, unhealthy=2, unregistered=0, starting=1, polled_targets=True)


def test_an_unhealthy_target_is_named_with_its_reason_and_description():
    health = {ARN: [target("10.0.1.1", UNHEALTHY, "Target.ResponseCodeMismatch",
                           "Health checks failed with these codes: [500]")]}
    result = gate([pod("web-a", "10.0.1.1")], 1, health)
    assert result.reason == (f"new pod web-a (10.0.1.1) is unhealthy in {ARN}: Target.ResponseCodeMismatch - "
                             "Health checks failed with these codes: [500]")


def test_a_passed_gate_releases_the_oldest_healthy_pods_and_keeps_its_counts():
    candidates = [pod("web-b", "10.0.1.2", created_at=2), pod("web-a", "10.0.1.1", created_at=1)]
    health = {ARN: [target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY)],
              ARN2: [target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY)]}
    assert gate(candidates, 1, health) == GateResult(
        Verdict.PASSED, "1 new pod(s) healthy in all 2 target group(s)", needed=1, healthy=2, initial=0,
        unhealthy=0, unregistered=0, starting=0, release=("web-a",), polled_targets=True)


# ---------------------------------------------------------------------------------------------------------
# evaluate_drain
# ---------------------------------------------------------------------------------------------------------
def drain(old_pods: list[Pod], expected_old: int, watched: list[str],
          health: dict[str, list[TargetHealth]] | None) -> DrainResult:
    return evaluate_drain(old_pods=old_pods, expected_old=expected_old, watched_ips=watched, health=health,
                          now=NOW, deadline=NOW + 60)


def test_a_drain_waits_for_the_scale_down_with_the_ips_already_leaving():
    old = [old_pod("web-old-a", "10.0.0.1"), old_pod("web-old-b", "10.0.0.2"),
           old_pod("web-old-c", "10.0.0.3", terminating=True)]
    assert drain(old, 1, ["10.0.0.3", "10.0.0.2", "10.0.0.1"], None) == DrainResult(
        Verdict.WAITING, f"2 old pods still serving, 1 expected: {NOT_SCALED}", old_live=2, expected_old=1,
        leaving_ips=("10.0.0.3",))


def test_a_scaled_down_drain_without_targets_read_says_it_checks_them_next():
    old = [old_pod("web-old-a", "10.0.0.1"), old_pod("web-old-c", "10.0.0.3", terminating=True)]
    assert drain(old, 1, ["10.0.0.1", "10.0.0.3"], None) == DrainResult(
        Verdict.WAITING, "old pods scaled down; checking their targets next", old_live=1, expected_old=1,
        leaving_ips=("10.0.0.3",))


def test_a_drain_counts_every_leaving_target_still_registered_or_draining_in_every_group():
    old = [old_pod("web-old-a", "10.0.0.1")]
    health = {
        ARN: [target("10.0.0.3", DRAINING), target("10.0.0.4", HEALTHY), target("10.0.0.1", HEALTHY)],
        ARN2: [target("10.0.0.3", DRAINING), target("10.0.0.4", INITIAL), target("10.0.0.5", UNUSED)],
    }
    assert drain(old, 1, ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5"], health) == DrainResult(
        Verdict.WAITING, "2 old target(s) still in the pool (deregistration not started), 2 draining", old_live=1,
        expected_old=1, routable=2, draining=2, leaving_ips=("10.0.0.3", "10.0.0.4", "10.0.0.5"))


def test_a_drain_passes_once_the_leaving_targets_are_unused_or_gone():
    old = [old_pod("web-old-a", "10.0.0.1")]
    health = {ARN: [target("10.0.0.3", UNUSED), target("10.0.0.1", HEALTHY)], ARN2: []}
    assert drain(old, 1, ["10.0.0.1", "10.0.0.3"], health) == DrainResult(
        Verdict.PASSED, "1 old target(s) out of every target group's pool", old_live=1, expected_old=1, routable=0,
        draining=0, leaving_ips=("10.0.0.3",))


# ---------------------------------------------------------------------------------------------------------
# targets_to_register
# ---------------------------------------------------------------------------------------------------------
def register(since: dict[str, float], ports_by_group: dict[str, int]) -> Registration:
    return targets_to_register(candidates=[pod("web-a", "10.0.1.1")], health={ARN: [], ARN2: []},
                               ports_by_group=ports_by_group, since=since, now=NOW, grace=30)


def test_a_group_still_in_its_grace_does_not_keep_a_later_group_from_registering():
    assert register({ARN: NOW - 5, ARN2: NOW - 40}, {ARN: 8080, ARN2: 8443}) == Registration(
        register={ARN2: [("10.0.1.1", 8443)]}, missing_since={ARN: NOW - 5}, unknown_port=())


def test_a_group_without_a_known_port_does_not_keep_a_later_group_from_registering():
    assert register({ARN: NOW - 40, ARN2: NOW - 40}, {ARN2: 8443}) == Registration(
        register={ARN2: [("10.0.1.1", 8443)]}, missing_since={ARN: NOW - 40}, unknown_port=(ARN,))


# ---------------------------------------------------------------------------------------------------------
# A fake cluster and load balancer for the use cases
# ---------------------------------------------------------------------------------------------------------
def replica_set(name: str, template_hash: str, image: str, revision: int, *, gated: bool) -> ReplicaSet:
    template = PodTemplate(containers=(Container("web", image),), readiness_gates=(ALBGATE_GATE,) if gated else ())
    return ReplicaSet(namespace=NS, name=name, revision=revision, pod_template_hash=template_hash, replicas=1,
                      ready_replicas=0, available_replicas=0, template=template, created_at=0.0)


class Kube:
    def __init__(self, pods: list[Pod], conditions: tuple[DeploymentCondition, ...], new_rs: bool) -> None:
        self.pods = pods
        self.deployment = Deployment(
            namespace=NS, name="web", uid="uid-web", replicas=3, selector={"app": "web"},
            template=PodTemplate(containers=(Container("web", NEW),), readiness_gates=(ALBGATE_GATE,)),
            max_surge=1, max_unavailable=0, conditions=conditions)
        self.replica_sets = [replica_set("web-old", "old", OLD, 4, gated=False)]
        if new_rs:
            self.replica_sets.append(replica_set("web-new", "new", NEW, 5, gated=True))
        self.deployment_reads = 0
        self.conditions_set: list[tuple[str, str, str, str, str, str]] = []
        self.same_status: list[bool] = []  # per write: only the reason or message changed

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        self.deployment_reads += 1
        return self.deployment

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]:
        return list(self.replica_sets)

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        return list(self.pods)

    def set_pod_condition(self, namespace: str, pod: str, type_: str, status: str, reason: str, message: str, *,
                          same_status: bool = False) -> None:
        self.conditions_set.append((namespace, pod, type_, status, reason, message))
        self.same_status.append(same_status)

    def list_services(self, namespace: str) -> list:
        return []

    def list_target_group_bindings(self, namespace: str) -> list:
        return []


class Elb:
    def __init__(self, health: dict[str, list[TargetHealth]], throttled: bool) -> None:
        self.health = health
        self.throttled = throttled
        self.health_reads = 0
        self.deregistered: list[tuple[str, list[tuple[str, int]]]] = []

    def describe_target_health(self, target_group_arn: str) -> list[TargetHealth]:
        self.health_reads += 1
        if self.throttled:
            raise ThrottledError("Rate exceeded")
        return list(self.health.get(target_group_arn, []))

    def deregister_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        self.deregistered.append((target_group_arn, list(targets)))

    def register_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        raise AssertionError(f"nothing is due for registration here, yet {targets} in {target_group_arn}")


@dataclass(frozen=True)
class Clock:
    at: float

    def now(self) -> float:
        return self.at


@dataclass
class Budget:
    """albgate's share of the Describe* calls: ``wait`` seconds before the next look may go (0: now)."""

    wait: float = 0.0
    throttles: int = 0  # throttled calls reported to the share

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        return self.wait

    def throttled(self) -> None:
        self.throttles += 1

    def short(self) -> bool:
        return bool(getattr(self, "is_short", False))

    def controller_late(self) -> None:
        self.lates = getattr(self, "lates", 0) + 1


@dataclass
class World:
    kube: Kube
    elb: Elb
    ports: Ports = field(init=False)
    now: float = NOW
    budget: float = 0.0

    def __post_init__(self) -> None:
        self.ports = Ports(kube=self.kube, elb=self.elb, clock=Clock(self.now), budget=Budget(self.budget))


def world(pods: list[Pod], health: dict[str, list[TargetHealth]] | None = None, *, throttled: bool = False,
          conditions: tuple[DeploymentCondition, ...] = (), new_rs: bool = True, now: float = NOW,
          budget: float = 0.0) -> World:
    return World(Kube(pods, conditions, new_rs), Elb(health or {}, throttled), now=now, budget=budget)


def group(arn: str = ARN, delay: int = 30, port: int | None = None) -> TargetGroupInfo:
    return TargetGroupInfo(arn=arn, service="web", health_check_interval_seconds=INTERVAL, healthy_threshold=2,
                           deregistration_delay_seconds=delay, target_port=port)


def mixed_ports() -> TargetGroupInfo:
    """A group whose targets ELB showed on several ports: no blind DeregisterTargets proves a drain there, a look does
    (rollout.drain)."""
    return group().model_copy(update={"ports_mixed": True})


def rollout(*, step: int = 0, plan: tuple[int, ...] = (1, 3), polls: int = 0, step_deadline: float = 1000.0,
            drain_deadline: float = 1000.0, pending: int | None = None, more_steps: bool = True, bake: int = 0,
            throttles: int = 0, observed_at: float | None = None, watched: tuple[str, ...] = (),
            release: tuple[str, ...] = (), groups: tuple[TargetGroupInfo, ...] = ()) -> RolloutState:
    """The state of step ``step`` (0-based) of a rollout of 3 replicas, started at 50 s."""
    request = RolloutRequest(cluster="prod", namespace=NS, deployment="web", container="web", image=NEW,
                             policy=RolloutPolicy(bake_seconds=bake))
    steps = [StepRecord(step=i + 1, mode="rollout", target=plan[i], started_at=50.0 if i == step else 10.0 * i,
                        polls=polls if i == step else 0, observed_at=observed_at if i == step else None)
             for i in range(step + 1)]
    return RolloutState(
        request=request, execution_name="exec-1", started_at=0.0, replicas=3, plan=list(plan), target_image=NEW,
        previous_image=OLD, previous_revision=4, original_max_surge=1, original_max_unavailable=0,
        target_groups=list(groups or (group(),)), next_step=step + 1, step=step, step_deadline=step_deadline,
        drain_deadline=drain_deadline, pending_drain_step=pending, watched_ips=list(watched),
        more_steps=more_steps, throttles=throttles, steps=steps,
        gate=GateResult(Verdict.WAITING, "not started", release=release))


# ---------------------------------------------------------------------------------------------------------
# Targets Healthy? (check_target_health)
# ---------------------------------------------------------------------------------------------------------
def test_a_look_reads_the_deployment_once_counts_itself_and_waits_one_interval_for_the_next_check():
    w = world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking")]})
    s = check_target_health(w.ports, rollout(polls=2))
    assert w.kube.deployment_reads == 1
    assert (s.gate.status, s.steps[-1].polls, s.steps[-1].observed_at) == (Verdict.WAITING, 3, NOW)
    assert s.steps[-1].gate_passed_at is None
    assert s.wait_seconds == INTERVAL


def test_a_passed_look_records_when_and_goes_on_at_once():
    w = world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, rollout())
    assert (s.gate.status, s.gate.release, s.steps[-1].gate_passed_at, s.wait_seconds) == (
        Verdict.PASSED, ("web-new-a",), NOW, 0)


def test_a_look_before_the_new_replica_set_exists_waits_a_pod_start():
    w = world([], new_rs=False)
    s = check_target_health(w.ports, rollout())
    assert s.gate == GateResult(Verdict.WAITING, "waiting for the Deployment controller to create the new ReplicaSet")
    assert s.wait_seconds == pod_poll_seconds("exec-1/rollout/0/rs/1")


@pytest.mark.parametrize("now", [1000.0, 1500.0], ids=["at-the-deadline", "after-it"])
def test_a_step_whose_replica_set_never_appeared_fails_at_its_deadline_and_goes_on_at_once(now):
    w = world([], new_rs=False, now=now)
    s = check_target_health(w.ports, rollout(step_deadline=1000.0))
    assert s.gate == GateResult(Verdict.FAILED, "step deadline passed before the new ReplicaSet appeared")
    assert (s.wait_seconds, s.rollback_allowed) == (0, True)


def progressing(reason: str, message: str, updated: float | None) -> tuple[DeploymentCondition, ...]:
    return (DeploymentCondition("Available", "True"),
            DeploymentCondition("Progressing", "False", reason, message, last_update_time=updated))


def test_a_progress_deadline_raised_as_the_step_started_fails_the_gate_with_kubernetes_words():
    message = 'ReplicaSet "web-new" has timed out progressing.'
    w = world([pod("web-new-a", None, ready=False)], conditions=progressing("ProgressDeadlineExceeded", message, 50.0))
    s = check_target_health(w.ports, rollout())
    # Then the gate fails on it alone, not blind (no throttle, nothing booked): a rollback stays allowed
    assert s.gate == GateResult(Verdict.FAILED, f"Kubernetes reports ProgressDeadlineExceeded: {message}")
    assert (s.rollback_allowed, s.wait_seconds) == (True, 0)


def test_a_progress_deadline_while_every_step_pod_is_up_and_held_by_gates_leaves_the_step_to_its_own_deadline():
    # Given the step's one pod ContainersReady, its target still checked, and Kubernetes' progress deadline passed
    # (only gates hold the pod: the controller's, throttled, and albgate's)
    w = world([pod("web-new-a", "10.0.1.1")], {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking")]},
              conditions=progressing("ProgressDeadlineExceeded", "timed out", 50.0))
    s = check_target_health(w.ports, rollout())
    # Then the gate looks and waits as any other: albgate's step deadline decides
    assert s.gate.status is Verdict.WAITING and w.elb.health_reads == 1


@pytest.mark.parametrize("pods", [
    [pod("web-new-a", "10.0.1.1"), pod("web-new-b", "10.0.1.2", ready=False)],
    [pod("web-new-a", "10.0.1.1")],
], ids=["one-not-containers-ready", "fewer-pods-than-the-step-needs"])
def test_a_progress_deadline_fails_the_step_while_some_of_its_pods_are_not_up(pods):
    w = world(pods, {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking")]},
              conditions=progressing("ProgressDeadlineExceeded", "timed out", 50.0))
    s = check_target_health(w.ports, rollout(step=1, plan=(1, 2, 3)))
    assert s.gate == GateResult(Verdict.FAILED, "Kubernetes reports ProgressDeadlineExceeded: timed out")


def test_a_progress_deadline_without_a_message_says_no_progress():
    w = world([pod("web-new-a", None, ready=False)], conditions=progressing("ProgressDeadlineExceeded", "", None))
    s = check_target_health(w.ports, rollout())
    assert s.gate == GateResult(Verdict.FAILED, "Kubernetes reports ProgressDeadlineExceeded: no progress")


def test_progressing_false_for_another_reason_does_not_fail_the_gate():
    conditions = progressing("ReplicaSetCreateError", 'pods "web-new-a" is forbidden: exceeded quota', 60.0)
    w = world([pod("web-new-a", None, ready=False)], conditions=conditions)
    s = check_target_health(w.ports, rollout())
    assert (s.gate.status, s.gate.reason) == (
        Verdict.WAITING, "waiting for 1 of 1 new pods to start (ContainersReady) before checking targets")


def test_a_step_without_pods_yet_waits_a_pod_start_not_a_node():
    w = world([])
    s = check_target_health(w.ports, rollout())
    assert (s.gate.status, s.gate.starting) == (Verdict.WAITING, 0)
    assert s.wait_seconds == pod_poll_seconds("exec-1/rollout/0/pods/1")


def test_a_step_whose_pods_are_released_passes_without_reading_targets():
    w = world([pod("web-new-a", "10.0.1.1", released=True)], {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, rollout())
    assert s.gate == GateResult(Verdict.PASSED, "this step's pods are already released", needed=0)
    assert (w.elb.health_reads, s.describe_target_health_calls) == (0, 0)


def test_a_look_booked_past_the_deadline_fails_blind():
    w = world([pod("web-new-a", "10.0.1.1")], now=1500.0, budget=7.0)
    s = check_target_health(w.ports, rollout(step_deadline=1000.0))
    assert s.gate.status is Verdict.FAILED
    assert s.gate.reason == "step deadline passed while albgate waited for its share of the Describe* calls" + BLIND
    assert (s.rollback_allowed, w.elb.health_reads) == (False, 0)


def test_a_throttled_look_counts_the_throttle_and_backs_off():
    w = world([pod("web-new-a", "10.0.1.1")], throttled=True)
    s = check_target_health(w.ports, rollout())
    assert s.gate == GateResult(Verdict.WAITING, "DescribeTargetHealth throttled (1x); backing off")
    assert s.throttles == 1
    assert w.ports.budget.throttles == 1  # and the share was told: the bucket is short
    assert s.wait_seconds == target_poll_seconds(INTERVAL, "exec-1/rollout/0/throttled/1", 1)


def test_a_step_throttled_past_its_deadline_without_ever_seeing_its_targets_forbids_a_rollback():
    w = world([pod("web-new-a", "10.0.1.1")], throttled=True, now=1500.0)
    s = check_target_health(w.ports, rollout(step_deadline=1000.0))
    assert s.gate == GateResult(Verdict.FAILED, "step deadline passed while DescribeTargetHealth was throttled" + BLIND)
    assert (s.throttles, s.rollback_allowed, s.wait_seconds) == (1, False, 0)


@pytest.mark.parametrize("seen_ago", [5.0, 4 * INTERVAL], ids=["5-s-ago", "exactly-4-intervals-ago"])
def test_a_step_throttled_past_its_deadline_but_seen_recently_may_roll_back(seen_ago):
    w = world([pod("web-new-a", "10.0.1.1")], throttled=True, now=1500.0)
    s = check_target_health(w.ports, rollout(step_deadline=1000.0, observed_at=1500.0 - seen_ago))
    assert s.gate == GateResult(Verdict.FAILED, "step deadline passed while DescribeTargetHealth was throttled")
    assert s.rollback_allowed is True


# ---------------------------------------------------------------------------------------------------------
# The gate of step 2 following step 1's drain (handed over)
# ---------------------------------------------------------------------------------------------------------
def handed_over(**kw) -> RolloutState:
    """Step 2 of plan [1, 2, 3], step 1's old target 10.0.0.1 handed over still draining (2 old pods may stay)."""
    return rollout(step=1, plan=(1, 2, 3), pending=1, watched=("10.0.0.1",), **kw)


def test_a_step_with_its_pods_released_still_waits_for_the_handed_over_drain():
    # the handed-over target is back in the pool on this look (named on a port that was not its own)
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2", released=True),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.1", HEALTHY), target("10.0.1.1", HEALTHY), target("10.0.1.2", HEALTHY)]})
    s = check_target_health(w.ports, handed_over(polls=17))
    assert s.gate.status is Verdict.WAITING
    assert s.gate.reason == (
        "this step's pods are already released; waiting for step 1's old targets to leave the pool (1 old target(s) "
        "still in the pool (deregistration not started), 0 draining)")
    assert (s.pending_drain_step, w.elb.health_reads) == (1, 1)
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])]
    # And the 18th look's next comes at the drain's pace, jittered by a key naming what it waits for
    assert s.wait_seconds == drain_poll_seconds(INTERVAL, "exec-1/rollout/1/handed-over-drain/18") == 6


def test_the_handed_over_drain_waits_while_more_old_pods_serve_than_step_one_leaves():
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2"),
            old_pod("web-old-a", "10.0.0.1"), old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.1.2", HEALTHY)]})
    s = check_target_health(w.ports, handed_over())
    assert s.drain == DrainResult(Verdict.WAITING, f"3 old pods still serving, 2 expected: {NOT_SCALED}",
                                  old_live=3, expected_old=2, leaving_ips=(), step=1)
    assert (s.gate.status, s.gate.release, s.pending_drain_step) == (Verdict.WAITING, (), 1)


def test_a_handed_over_drain_past_its_deadline_fails_the_gate_and_releases_nothing():
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2"),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.1", HEALTHY), target("10.0.1.2", HEALTHY)]})
    s = check_target_health(w.ports, handed_over(drain_deadline=NOW - 10))
    assert (s.gate.status, s.gate.release) == (Verdict.FAILED, ())
    assert s.gate.reason == ("step 1's old targets did not leave the pool: drain deadline passed: 1 old target(s) "
                             "still in the pool (deregistration not started), 0 draining")


def test_a_handed_over_drain_shown_draining_is_verified_and_the_gate_releases():
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2"),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.1", DRAINING), target("10.0.1.2", HEALTHY)]})
    s = check_target_health(w.ports, handed_over())
    assert (s.gate.status, s.gate.release, s.pending_drain_step) == (Verdict.PASSED, ("web-new-b",), None)
    step_1 = next(r for r in s.steps if r.step == 1)
    assert (s.drain.status, s.drain.draining, step_1.drained_at) == (Verdict.PASSED, 1, NOW)


def test_a_handed_over_target_nobody_deregistered_is_deregistered_by_the_gate():
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2"),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.1", HEALTHY), target("10.0.1.2", INITIAL, "Elb.InitialHealthChecking")]})
    s = check_target_health(w.ports, handed_over())
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])]
    assert s.steps[0].deregistered == [f"{ARN}|10.0.0.1"]


def test_a_handed_over_target_is_deregistered_on_the_port_elb_shows_in_a_group_without_one_port():
    # Given a group whose targets show on two ports (no single port names a target unseen), the handed-over
    # target still healthy on its own port
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2"),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [dataclasses.replace(target("10.0.0.1", HEALTHY), port=9090),
                           target("10.0.1.2", INITIAL, "Elb.InitialHealthChecking")]})
    s = check_target_health(w.ports, handed_over())
    assert s.target_groups[0].ports_mixed and s.target_groups[0].target_port is None
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 9090)])]


def test_a_handed_over_drain_that_ended_lets_the_gate_pass_and_is_no_longer_followed():
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2"),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.1.2", HEALTHY)]})
    s = check_target_health(w.ports, handed_over())
    assert s.gate.status is Verdict.PASSED and s.gate.release == ("web-new-b",)
    assert s.pending_drain_step is None and s.drain.status is Verdict.PASSED and s.steps[0].drained_at == NOW
    assert s.gate.groups is not None and s.gate.groups[0].healthy == 1


def test_a_handed_over_drain_is_not_read_while_the_step_still_needs_a_starting_pod():
    pods = [pod("web-new-a", "10.0.1.1", released=True), pod("web-new-b", "10.0.1.2", ready=False),
            old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.1", DRAINING)]})
    s = check_target_health(w.ports, handed_over())
    assert (w.elb.health_reads, s.gate.status, s.pending_drain_step) == (0, Verdict.WAITING, 1)
    assert s.drain == DrainResult(Verdict.WAITING, "not started")


# ---------------------------------------------------------------------------------------------------------
# Release Old Pods
# ---------------------------------------------------------------------------------------------------------
def test_release_opens_the_gate_of_each_live_passed_pod_and_sets_the_drain_deadline_from_the_longest_delay():
    pods = [pod("web-new-a", "10.0.1.1"), old_pod("web-old-a", "10.0.0.1"),
            old_pod("web-old-b", "10.0.0.2", terminating=True), old_pod("web-old-c", None)]
    w = world(pods)
    s = rollout(release=("web-new-gone", "web-new-a"), groups=(group(ARN, 30), group(ARN2, 45)))
    s.wait_seconds = 7
    s = release_old_pods(w.ports, s)
    # Then the pod gone since the gate looked is skipped, and the live one released
    assert w.kube.conditions_set == [
        (NS, "web-new-a", ALBGATE_GATE, "True", "TargetHealthy",
         "albgate exec-1: target healthy in all 2 target group(s)")]
    assert s.watched_ips == ["10.0.0.1", "10.0.0.2"]
    assert s.drain_deadline == NOW + 45 + 120  # the longest deregistration delay plus the margin
    assert (s.drain, s.wait_seconds) == (DrainResult(Verdict.WAITING, "old pods released"), 0)


# ---------------------------------------------------------------------------------------------------------
# Verify Drain
# ---------------------------------------------------------------------------------------------------------
def test_a_passed_drain_records_when_bakes_and_clears_the_throttles():
    pods = [old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.2", HEALTHY), target("10.0.0.3", HEALTHY)]})
    s = verify_drain(w.ports, rollout(polls=2, bake=60, throttles=2, watched=("10.0.0.1", "10.0.0.2", "10.0.0.3")))
    assert s.drain == DrainResult(Verdict.PASSED, "1 old target(s) out of every target group's pool", old_live=2,
                                  expected_old=2, routable=0, draining=0, leaving_ips=("10.0.0.1",))
    assert (s.steps[-1].polls, s.steps[-1].drained_at, s.bake_seconds, s.wait_seconds, s.throttles) == (
        3, NOW, 60, 0, 0)


def test_the_last_steps_passed_drain_does_not_bake():
    w = world([], {ARN: []})
    s = verify_drain(w.ports, rollout(step=1, bake=60, more_steps=False, watched=("10.0.0.1",)))
    assert (s.drain.status, s.bake_seconds, s.wait_seconds) == (Verdict.PASSED, 0, 0)


def test_while_old_pods_still_serve_the_drain_neither_reads_nor_deregisters_and_waits_a_pod_start():
    # Given one released old pod already terminating (its target's port known) and one old pod too many
    pods = [old_pod("web-old-a", "10.0.0.1", terminating=True), old_pod("web-old-b", "10.0.0.2"),
            old_pod("web-old-c", "10.0.0.3"), old_pod("web-old-d", "10.0.0.4")]
    w = world(pods, {ARN: [target("10.0.0.1", HEALTHY)]})
    s = verify_drain(w.ports, rollout(bake=60, watched=("10.0.0.1",), groups=(group(port=8080),)))
    assert s.drain.reason == f"3 old pods still serving, 2 expected: {NOT_SCALED}"
    assert (w.elb.health_reads, w.elb.deregistered) == (0, [])
    assert (s.steps[-1].drained_at, s.bake_seconds) == (None, 0)
    assert s.wait_seconds == pod_poll_seconds("exec-1/rollout/0/scale-down/1")


def test_the_last_steps_drain_passes_on_targets_shown_draining():
    # ELB shows a deregistered target draining until its delay ends, whatever it serves: out of the pool is all a
    # look can see
    w = world([], {ARN: [target("10.0.0.1", DRAINING)]})
    s = verify_drain(w.ports, rollout(step=1, more_steps=False, watched=("10.0.0.1",)))
    assert (s.drain.status, s.drain.draining, s.drain.routable, s.pending_drain_step) == (Verdict.PASSED, 1, 0, None)
    assert "1 shown draining until their deregistration delay ends" in s.drain.reason
    assert (s.wait_seconds, s.steps[-1].drained_at, w.elb.health_reads) == (0, NOW, 1)


def test_a_last_drain_look_that_deregisters_a_target_still_in_the_pool_waits_the_lag_again():
    # Given the last step's released target still in the pool on ELB's port though albgate named it (on another)
    w = world([], {ARN: [target("10.0.0.1", HEALTHY), target("10.0.0.2", DRAINING)]})
    s = rollout(step=1, more_steps=False, watched=("10.0.0.1", "10.0.0.2"), groups=(group(port=8080),))
    s.steps[-1].deregistered = [f"{ARN}|10.0.0.1", f"{ARN}|10.0.0.2"]  # named already: this look asks ELB
    s = verify_drain(w.ports, s)
    # Then the look deregisters it on the port ELB shows, and the look that verifies it comes after the lag
    assert (s.drain.status, s.drain.routable, s.drain.draining) == (Verdict.WAITING, 1, 1)
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and s.changed_at == NOW
    assert s.wait_seconds == deregistered_poll_seconds("exec-1/rollout/1/deregistered/1") >= 10


def test_a_last_drain_look_that_names_nothing_waits_at_the_drains_pace_though_albgate_changed_targets_before():
    # Given the last step's released target `unavailable` (in no state albgate deregisters), albgate having
    # deregistered targets earlier in the rollout
    w = world([], {ARN: [target("10.0.0.1", UNAVAILABLE)]})
    s = rollout(step=1, more_steps=False, watched=("10.0.0.1",), groups=(mixed_ports(),))
    s.steps[-1].deregistered = [f"{ARN}|10.0.0.1"]
    s.changed_at = NOW - 30
    s = verify_drain(w.ports, s)
    # Then it waits for the target to leave the pool at the drain's pace: it named nothing, so no lag to wait for
    assert (s.drain.status, s.drain.routable, w.elb.deregistered) == (Verdict.WAITING, 1, [])
    assert s.wait_seconds == drain_poll_seconds(INTERVAL, "exec-1/rollout/1/drain/1")


def test_a_throttled_look_at_the_last_drain_backs_off():
    w = world([], throttled=True)
    s = rollout(step=1, more_steps=False, throttles=1, watched=("10.0.0.1",), groups=(mixed_ports(),))
    s.steps[-1].deregistered = [f"{ARN}|10.0.0.1"]  # named already, but the group's ports are mixed: this look asks ELB
    s.changed_at = NOW - DEREGISTRATION_LAG_SECONDS - 1
    s = verify_drain(w.ports, s)
    assert s.throttles == 2 and s.wait_seconds == drain_poll_seconds(INTERVAL, "exec-1/rollout/1/drain/1", 2)


def test_the_last_drain_deregisters_unseen_waits_the_lag_then_backs_off_per_throttle():
    w = world([], throttled=True)
    # the first look after the scale-down names the released target at once and does not look
    s = verify_drain(w.ports, rollout(step=1, more_steps=False, throttles=1, watched=("10.0.0.1",),
                                      groups=(group(port=8080),)))
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and w.elb.health_reads == 0
    assert s.throttles == 1 and w.ports.budget.throttles == 0
    assert s.wait_seconds == deregistered_poll_seconds("exec-1/rollout/1/deregistered/1")
    assert s.drain.status is Verdict.WAITING
    # the next one looks, is throttled, and backs off, naming nothing again
    s = verify_drain(w.ports, s)
    assert s.throttles == 2 and w.ports.budget.throttles == 1
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])]
    assert s.wait_seconds == drain_poll_seconds(INTERVAL, "exec-1/rollout/1/drain/2", 2)


def test_a_drain_left_only_to_wait_is_handed_over_to_the_next_steps_gate():
    # the released target still in the pool on this look: albgate deregisters it on the port ELB shows, and the
    # next gate sees it out of the pool
    pods = [old_pod("web-old-b", "10.0.0.2"), old_pod("web-old-c", "10.0.0.3")]
    w = world(pods, {ARN: [target("10.0.0.1", HEALTHY), target("10.0.0.2", HEALTHY)]})
    s = verify_drain(w.ports, rollout(bake=60, watched=("10.0.0.1", "10.0.0.2", "10.0.0.3")))
    assert s.drain.status is Verdict.DRAINING and w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])]
    assert s.drain.reason == ("1 old target(s) deregistered by albgate; step 2's gate releases nothing until a look "
                              "shows them out of every target group's pool")
    assert (s.pending_drain_step, s.steps[-1].drained_at, s.bake_seconds, s.wait_seconds) == (1, None, 60, 0)
