"""The health gate and the drain check, table-driven over target states (domain/gate.py)."""

from __future__ import annotations

import pytest

from lambdas.domain.gate import Verdict, evaluate_drain, evaluate_gate, pods_needing_targets
from lambdas.domain.ports import ALBGATE_GATE, Pod, PodCondition, TargetHealth

TG_A = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1"
TG_B = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/2"


def pod(name: str, ip: str | None, *, ready: bool = True, created: float = 0.0, waiting: str = "", terminating=False) -> Pod:
    return Pod(
        namespace="readiness",
        name=name,
        uid=name,
        ip=ip,
        labels={},
        phase="Running",
        readiness_gates=(ALBGATE_GATE,),
        conditions=(PodCondition("ContainersReady", "True" if ready else "False"),),
        terminating=terminating,
        restart_count=3 if waiting else 0,
        created_at=created,
        waiting_reason=waiting,
    )


def th(ip: str, state: str, reason: str = "") -> TargetHealth:
    return TargetHealth(target_id=ip, port=80, state=state, reason=reason)


P1, P2, P3 = pod("p1", "10.0.0.1", created=1), pod("p2", "10.0.0.2", created=2), pod("p3", "10.0.0.3", created=3)

GATE_CASES = [
    # id, candidates, needed, health, expected status, expected release
    ("all-healthy", [P1, P2], 2, {TG_A: [th(P1.ip, "healthy"), th(P2.ip, "healthy")]}, Verdict.PASSED, ("p1", "p2")),
    (
        "one-initial-is-not-enough",
        [P1, P2],
        2,
        {TG_A: [th(P1.ip, "healthy"), th(P2.ip, "initial", "Elb.InitialHealthChecking")]},
        Verdict.WAITING,
        (),
    ),
    (
        "one-unhealthy-fails",
        [P1, P2],
        2,
        {TG_A: [th(P1.ip, "healthy"), th(P2.ip, "unhealthy", "Target.ResponseCodeMismatch")]},
        Verdict.FAILED,
        (),
    ),
    (
        # Enough other new targets healthy never excuses an unhealthy one: the version fails its check
        "one-unhealthy-fails-even-with-enough-healthy",
        [P1, P2, P3],
        2,
        {TG_A: [th(P1.ip, "healthy"), th(P2.ip, "healthy"), th(P3.ip, "unhealthy", "Target.ResponseCodeMismatch")]},
        Verdict.FAILED,
        (),
    ),
    ("unused-is-unregistered", [P1], 1, {TG_A: [th(P1.ip, "unused", "Target.NotRegistered")]}, Verdict.WAITING, ()),
    ("absent-is-unregistered", [P1], 1, {TG_A: []}, Verdict.WAITING, ()),
    ("draining-new-target-is-not-healthy", [P1], 1, {TG_A: [th(P1.ip, "draining")]}, Verdict.WAITING, ()),
    (
        "healthy-in-one-group-only",
        [P1],
        1,
        {TG_A: [th(P1.ip, "healthy")], TG_B: [th(P1.ip, "initial")]},
        Verdict.WAITING,
        (),
    ),
    (
        "healthy-in-every-group",
        [P1],
        1,
        {TG_A: [th(P1.ip, "healthy")], TG_B: [th(P1.ip, "healthy")]},
        Verdict.PASSED,
        ("p1",),
    ),
    (
        "releases-only-the-step-oldest-first",
        [P3, P1, P2],
        2,
        {TG_A: [th(P1.ip, "healthy"), th(P2.ip, "healthy"), th(P3.ip, "healthy")]},
        Verdict.PASSED,
        ("p1", "p2"),
    ),
    ("nothing-needed-passes", [P1], 0, None, Verdict.PASSED, ()),
    ("not-polled-waits", [P1], 1, None, Verdict.WAITING, ()),
    ("crash-loop-fails", [pod("px", None, ready=False, waiting="CrashLoopBackOff")], 1, None, Verdict.FAILED, ()),
]


@pytest.mark.parametrize(
    "candidates,needed,health,status,release", [c[1:] for c in GATE_CASES], ids=[c[0] for c in GATE_CASES]
)
def test_gate_decision(candidates, needed, health, status, release):
    # Given the new pods and what DescribeTargetHealth says about them
    # When the gate decides before its deadline
    result = evaluate_gate(candidates=candidates, needed=needed, health=health, now=0, deadline=100)
    # Then the verdict and the pods it releases are as the rules say
    assert result.status is status, result.reason
    assert result.release == release


def test_gate_fails_after_deadline_with_the_reason_it_was_waiting():
    # Given a target still initial
    health = {TG_A: [th(P1.ip, "initial", "Elb.RegistrationInProgress")]}
    # When the deadline has passed
    result = evaluate_gate(candidates=[P1], needed=1, health=health, now=100, deadline=100)
    # Then the gate fails and says what it was waiting for
    assert result.status is Verdict.FAILED
    assert "deadline" in result.reason and "initial" in result.reason


def test_unhealthy_reason_names_pod_group_and_code():
    result = evaluate_gate(
        candidates=[P1], needed=1, health={TG_A: [th(P1.ip, "unhealthy", "Target.Timeout")]}, now=0, deadline=9
    )
    assert "p1" in result.reason and TG_A in result.reason and "Target.Timeout" in result.reason


@pytest.mark.parametrize(
    "candidates,needed,expected",
    [([P1, P2], 2, True), ([P1, pod("s", None, ready=False)], 2, False), ([P1], 0, False)],
    ids=["all-containers-ready", "one-starting", "nothing-needed"],
)
def test_targets_are_polled_only_when_enough_pods_can_be_registered(candidates, needed, expected):
    assert pods_needing_targets(candidates, needed) is expected


OLD1, OLD2 = pod("o1", "10.1.0.1"), pod("o2", "10.1.0.2")
OLD1_GONE = pod("o1", "10.1.0.1", terminating=True)

DRAIN_CASES = [
    ("controller-not-scaled-yet", [OLD1, OLD2], 1, None, Verdict.WAITING),
    ("still-registered", [OLD1_GONE, OLD2], 1, {TG_A: [th("10.1.0.1", "healthy")]}, Verdict.WAITING),
    ("draining-is-out-of-the-pool", [OLD1_GONE, OLD2], 1, {TG_A: [th("10.1.0.1", "draining")]}, Verdict.PASSED),
    ("initial-is-in-the-pool", [OLD1_GONE, OLD2], 1, {TG_A: [th("10.1.0.1", "initial")]}, Verdict.WAITING),
    ("left-the-group", [OLD1_GONE, OLD2], 1, {TG_A: [th("10.1.0.2", "healthy")]}, Verdict.PASSED),
    ("unused-counts-as-left", [OLD2], 1, {TG_A: [th("10.1.0.1", "unused")]}, Verdict.PASSED),
    (
        "draining-in-second-group",
        [OLD2],
        1,
        {TG_A: [], TG_B: [th("10.1.0.1", "draining")]},
        Verdict.PASSED,
    ),
    (
        "unhealthy-in-second-group",
        [OLD2],
        1,
        {TG_A: [th("10.1.0.1", "draining")], TG_B: [th("10.1.0.1", "unhealthy")]},
        Verdict.WAITING,
    ),
]


@pytest.mark.parametrize("old,expected_old,health,status", [c[1:] for c in DRAIN_CASES], ids=[c[0] for c in DRAIN_CASES])
def test_drain_decision(old, expected_old, health, status):
    # Given old pods o1 (being removed) and o2 (staying), watched since release
    # When the drain check looks
    result = evaluate_drain(
        old_pods=old, expected_old=expected_old, watched_ips=["10.1.0.1", "10.1.0.2"], health=health, now=0, deadline=9
    )
    # Then it passes only once o1's target is out of every group's pool (draining, unused or gone)
    assert result.status is status, result.reason


def test_drain_fails_after_deadline():
    result = evaluate_drain(
        old_pods=[OLD1_GONE],
        expected_old=0,
        watched_ips=["10.1.0.1"],
        health={TG_A: [th("10.1.0.1", "healthy")]},
        now=10,
        deadline=10,
    )
    assert result.status is Verdict.FAILED and "still in the pool" in result.reason


# --- albgate's own deregistration of released targets ----------------------------------------------------
from lambdas.domain.gate import targets_to_deregister  # noqa: E402

DEREG_CASES = [
    # id, leaving, held, health, blind ports, already, expected
    ("controller-did-it", ["10.0.0.1"], set(), {TG_A: [th("10.0.0.1", "draining")]}, {}, set(), {}),
    ("nobody-did-it", ["10.0.0.1"], set(), {TG_A: [th("10.0.0.1", "healthy")]}, {}, set(), {TG_A: [("10.0.0.1", 80)]}),
    ("unhealthy-and-initial-too", ["10.0.0.1", "10.0.0.2"], set(),
     {TG_A: [th("10.0.0.1", "unhealthy"), th("10.0.0.2", "initial")]}, {}, set(),
     {TG_A: [("10.0.0.1", 80), ("10.0.0.2", 80)]}),
    ("gone-or-unused", ["10.0.0.1", "10.0.0.2"], set(), {TG_A: [th("10.0.0.2", "unused")]}, {}, set(), {}),
    ("only-leaving-ips", ["10.0.0.1"], set(), {TG_A: [th("10.0.0.1", "healthy"), th("10.0.0.3", "healthy")]}, {},
     set(), {TG_A: [("10.0.0.1", 80)]}),
    ("ip-reused-by-a-live-pod", ["10.0.0.1"], {"10.0.0.1"}, {TG_A: [th("10.0.0.1", "healthy")]}, {}, set(), {}),
    ("every-group", ["10.0.0.1"], set(), {TG_A: [th("10.0.0.1", "draining")], TG_B: [th("10.0.0.1", "healthy")]},
     {}, set(), {TG_B: [("10.0.0.1", 80)]}),
    ("throttled-blind-once", ["10.0.0.1", "10.0.0.2"], set(), None, {TG_A: 8080}, {f"{TG_A}|10.0.0.2"},
     {TG_A: [("10.0.0.1", 8080)]}),
    ("throttled-port-never-seen", ["10.0.0.1"], set(), None, {}, set(), {}),
]


@pytest.mark.parametrize("leaving,held,health,ports,already,expected", [c[1:] for c in DEREG_CASES],
                         ids=[c[0] for c in DEREG_CASES])
def test_which_released_targets_albgate_deregisters(leaving, held, health, ports, already, expected):
    assert targets_to_deregister(leaving_ips=leaving, held_ips=held, health=health, blind_ports=ports,
                                 already=already) == expected


# --- a ProgressDeadlineExceeded left over from an earlier attempt ---------------------------------------
from lambdas.domain.ports import DeploymentCondition  # noqa: E402
from lambdas.domain.rollout.gate import _deadline_exceeded_during_step  # noqa: E402

EXCEEDED = "ProgressDeadlineExceeded"


@pytest.mark.parametrize(
    "condition,expected",
    [
        (None, False),
        (DeploymentCondition("Progressing", "True", "ReplicaSetUpdated", "", 150.0), False),
        (DeploymentCondition("Progressing", "False", EXCEEDED, "", 150.0), True),  # raised during the step
        (DeploymentCondition("Progressing", "False", EXCEEDED, "", 99.0), False),  # before it: the abandoned RS
        (DeploymentCondition("Progressing", "False", EXCEEDED, "", None), True),  # no time given: trusted
    ],
    ids=["none", "progressing", "during-step", "left-over", "no-time"],
)
def test_progress_deadline_counts_only_when_raised_during_the_step(condition, expected):
    assert _deadline_exceeded_during_step(condition, step_started_at=100.0) is expected


# --- pods Kubernetes cannot create: the gate's reason quotes the Deployment's ReplicaFailure ----------------
from lambdas.domain.ports import Deployment, PodTemplate  # noqa: E402
from lambdas.domain.rollout.pods import MESSAGE_LIMIT, replica_failure  # noqa: E402

REFUSED = 'Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": ' + "x" * 400


def _with(*conditions: DeploymentCondition) -> Deployment:
    return Deployment(namespace="ns", name="app", uid="u", replicas=3, selector={"app": "a"},
                      template=PodTemplate(containers=()), max_surge=1, max_unavailable=0, conditions=conditions)


@pytest.mark.parametrize(
    "conditions,expected",
    [
        ((), ""),
        ((DeploymentCondition("Progressing", "True", "ReplicaSetUpdated"),), ""),
        ((DeploymentCondition("ReplicaFailure", "False", "FailedCreate", "old"),), ""),
        ((DeploymentCondition("ReplicaFailure", "True", "FailedCreate", "quota exceeded"),),
         "Kubernetes reports ReplicaFailure FailedCreate: 'quota exceeded'"),
        ((DeploymentCondition("ReplicaFailure", "True", "", "no reason given"),),
         "Kubernetes reports ReplicaFailure True: 'no reason given'"),
    ],
    ids=["none", "other-condition", "false", "failed-create", "no-reason"],
)
def test_replica_failure_is_noted_only_while_true(conditions, expected):
    assert replica_failure(_with(*conditions)) == expected


def test_a_long_replica_failure_message_is_cut():
    note = replica_failure(_with(DeploymentCondition("ReplicaFailure", "True", "FailedCreate", REFUSED)))
    assert note.startswith("Kubernetes reports ReplicaFailure FailedCreate: 'Internal error occurred: failed calling")
    assert note.endswith("…") and len(note) == len("Kubernetes reports ReplicaFailure FailedCreate: ") + MESSAGE_LIMIT


# --- pods the scheduler cannot place: the WAITING reason says so (decisions unchanged) -------------------
from dataclasses import replace  # noqa: E402


def _unscheduled(name: str, created: float = 0.0) -> Pod:
    return Pod(namespace="readiness", name=name, uid=name, ip=None, labels={}, phase="Pending",
               readiness_gates=(ALBGATE_GATE,), conditions=(PodCondition("PodScheduled", "False", "Unschedulable"),),
               terminating=False, restart_count=0, created_at=created)


def test_waiting_for_unschedulable_pods_names_them_and_keeps_the_decision():
    # Given one step pod that no node can take, and one that is merely starting (no IP yet, no reason)
    stuck, starting = _unscheduled("p9", 9), pod("p8", None, ready=False, created=8)
    # When the gate waits before polling targets
    r = evaluate_gate(candidates=[stuck, starting], needed=2, health=None, now=0.0, deadline=100.0)
    # Then the reason counts only the unschedulable pod, and the decision and counts are as without it
    assert r.status is Verdict.WAITING and r.starting == 2 and r.unschedulable == 1 and not r.release
    assert "1 Pending, PodScheduled=False Unschedulable: no node can take it" in r.reason
    plain = evaluate_gate(candidates=[starting, starting], needed=2, health=None, now=0.0, deadline=100.0)
    assert "Unschedulable" not in plain.reason and plain.status is r.status


def test_a_polled_wait_and_the_deadline_keep_the_unschedulable_note():
    # Given one healthy new target and two pods that cannot be scheduled, three needed
    pods = [P1, _unscheduled("p9", 9), _unscheduled("p10", 10)]
    health = {TG_A: [th(P1.ip, "healthy")]}
    waiting = evaluate_gate(candidates=pods, needed=3, health=health, now=0.0, deadline=100.0)
    assert waiting.status is Verdict.WAITING and waiting.healthy == 1
    assert waiting.reason.endswith(
        "2 pods starting, 2 Pending, PodScheduled=False Unschedulable: no node can take them)")
    # When the step deadline has passed, it fails with the same explanation
    late = evaluate_gate(candidates=pods, needed=3, health=health, now=100.0, deadline=100.0)
    assert late.status is Verdict.FAILED and late.reason == f"step deadline passed: {waiting.reason}"


def test_a_pod_scheduled_false_for_another_reason_is_not_called_unschedulable():
    gated = replace(_unscheduled("p9"), conditions=(PodCondition("PodScheduled", "False", "SchedulingGated"),))
    r = evaluate_gate(candidates=[gated], needed=1, health=None, now=0.0, deadline=100.0)
    assert r.status is Verdict.WAITING and "Unschedulable" not in r.reason


from lambdas.domain.gate import all_registering  # noqa: E402


@pytest.mark.parametrize(
    "case,health,expected",
    [
        ("both registering in both groups", {TG_A: [th(P1.ip, "initial", "Elb.RegistrationInProgress"), th(P2.ip, "initial", "Elb.RegistrationInProgress")],
                                             TG_B: [th(P1.ip, "initial", "Elb.RegistrationInProgress"), th(P2.ip, "initial", "Elb.RegistrationInProgress")]}, True),
        ("one already checking", {TG_A: [th(P1.ip, "initial", "Elb.RegistrationInProgress"), th(P2.ip, "initial", "Elb.InitialHealthChecking")]}, False),
        ("one healthy", {TG_A: [th(P1.ip, "initial", "Elb.RegistrationInProgress"), th(P2.ip, "healthy")]}, False),
        ("one not registered at all", {TG_A: [th(P1.ip, "initial", "Elb.RegistrationInProgress")]}, False),
        ("registered in one group only", {TG_A: [th(P1.ip, "initial", "Elb.RegistrationInProgress"), th(P2.ip, "initial", "Elb.RegistrationInProgress")],
                                          TG_B: []}, False),
        ("nothing polled", {}, False),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_gate_knows_when_every_target_it_waits_for_is_still_registering(case, health, expected):
    assert all_registering([P1, P2], health) is expected


def test_pods_still_starting_are_not_registering():
    assert all_registering([pod("p1", None, ready=False)], {TG_A: []}) is False


# --- the pods a step is about are the Deployment's, found by its selector --------------------------------------
import dataclasses  # noqa: E402

from lambdas.domain.rollout.pods import split_pods  # noqa: E402
from tests.unit.test_domain_mutants_gate_drain import Kube, old_pod, rollout, world  # noqa: E402
from tests.unit.test_domain_mutants_gate_drain import pod as new_pod  # noqa: E402


class _SelectingKube(Kube):
    """The fake API server, listing only the pods whose labels match the selector, as a label selector does."""

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list:
        return [p for p in self.pods if all(p.labels.get(k) == v for k, v in selector.items())]


def test_the_pods_of_a_step_are_the_deployments_not_every_pod_of_the_namespace():
    # Given the Deployment's new and old pods, and another app's pod in the same namespace
    stranger = dataclasses.replace(old_pod("cache-1", "10.0.9.9"), labels={"app": "cache", "pod-template-hash": "x"})
    w = world([new_pod("web-new-a", "10.0.1.1"), old_pod("web-old-a", "10.0.0.1"), stranger])
    kube = _SelectingKube(w.kube.pods, (), True)
    # When the step's pods are split / Then the other app's pod is in neither list
    _, mine, others = split_pods(dataclasses.replace(w.ports, kube=kube), rollout())
    assert [p.name for p in mine] == ["web-new-a"] and [p.name for p in others] == ["web-old-a"]
