"""The two decisions of a step: may old pods go (the health gate), and have they gone (the drain check).

Invariant: the gate passes only with at least the step's number of new pods whose target is ``healthy`` in EVERY
target group; ``initial`` (registered, no check passed) never counts (Argo Rollouts' registration-only check is the
bug this avoids: docs/facts.md, Argo Rollouts target group verification). A new target ``unhealthy``, a
crash-looping new pod or a passed deadline fails the step. Decisions are data (``PASSED | WAITING | FAILED`` with
counts), never exceptions. Both functions are pure: the caller reads the cluster and the target groups and hands the
snapshots in. So are the two that say which targets albgate changes itself where the Load Balancer Controller did
not: the released ones it deregisters (``targets_to_deregister``) and the new ones it registers
(``targets_to_register``, only what the controller's own rule would register, so that the two never undo each
other).
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from lambdas.domain.contract import DRAIN_NOT_VERIFIED, TARGETS_NOT_HEALTHY, Verdict
from lambdas.domain.ports import (
    DRAINING,
    HEALTHY,
    INITIAL,
    REGISTRATION_IN_PROGRESS,
    UNHEALTHY,
    UNUSED,
    Pod,
    TargetHealth,
)

# How long a step's ContainersReady pod may be missing from a target group before albgate registers it itself.
# The controller registers such a pod at its first reconcile after the pod turned ContainersReady; with its own
# gate on the pod a watch event starts that reconcile, and while any gate of the binding is pending it comes
# every 15 s anyway (docs/facts.md, "Load Balancer Controller: registration and timing": the requeue, and
# "Load Balancer Controller: requeue and back-off by version": what is watched). So one requeue plus as long
# again for the watch, the reconcile's own Describe* and RegisterTargets calls (no figure is published for
# that latency) is left to the controller; only a pod nothing makes it reconcile for (no controller gate, in a
# namespace without the inject label, or the controller down or backing off) waits longer than this.
CONTROLLER_REQUEUE_SECONDS = 15
CONTROLLER_RECONCILE_ALLOWANCE_SECONDS = 15
REGISTRATION_GRACE_SECONDS = CONTROLLER_REQUEUE_SECONDS + CONTROLLER_RECONCILE_ALLOWANCE_SECONDS

# Waiting reasons of a container that will not become ready by waiting (kubelet's reasons).
STUCK_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}
)


# The results are carried in the rollout's state as they are (``RolloutState.gate`` and ``.drain``): what the
# state machine's Choice states read is ``status``; fields marked ``exclude`` are for the deciding handler only.
_RESULT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_RESULT)
class GroupCounts:
    """One target group's view of the step's started new pods (what `albgate watch` shows).

    ``unregistered``: the pod is ContainersReady but its target is not (yet) in that group."""

    target_group: str
    service: str
    healthy: int = 0
    initial: int = 0
    unhealthy: int = 0
    draining: int = 0
    unregistered: int = 0


@dataclass(frozen=True, config=_RESULT)
class GateResult:
    status: Verdict
    reason: str
    needed: int = 0
    healthy: int = 0
    initial: int = 0
    unhealthy: int = 0
    unregistered: int = 0
    starting: int = 0
    # of the starting pods, those the scheduler cannot place
    unschedulable: int = Field(default=0, exclude=True)
    release: tuple[str, ...] = ()  # pod names to open albgate's gate on, oldest first
    # False: decided from Kubernetes alone, no DescribeTargetHealth needed
    polled_targets: bool = Field(default=False, exclude=True)
    groups: tuple[GroupCounts, ...] | None = None  # per target group, when this look read them
    error: str = TARGETS_NOT_HEALTHY  # the error name of a FAILED gate (`Record Gate Failure`)


def pods_needing_targets(candidates: list[Pod], needed: int) -> bool:
    """True when enough candidates are ContainersReady for DescribeTargetHealth to be worth a call.

    The controller registers a pod only once it is ContainersReady (docs/facts.md, Load Balancer Controller:
    registration and timing), so before that no target can be healthy and polling ELB would only spend the account's
    shared Describe* tokens.
    """
    return needed > 0 and sum(1 for p in candidates if p.containers_ready and p.ip) >= needed


def targets_by_ip(targets: list[TargetHealth]) -> dict[str, list[TargetHealth]]:
    """A target group's targets per IP. ELB names a target by its Id and Port, so one pod IP may be several
    targets of one group (a pod serving two ports, or a stale port left registered); each is counted."""
    out: dict[str, list[TargetHealth]] = {}
    for t in targets:
        out.setdefault(t.target_id, []).append(t)
    return out


def pod_target_state(targets: list[TargetHealth]) -> str:
    """One pod's state in one target group, from every target its IP has there: ``healthy`` only when it has
    targets and all are healthy; else the first that tells against it: ``unhealthy``, then ``initial``, then
    ``draining``; ``unused`` (not registered) when it has none or only unused ones."""
    states = {t.state for t in targets}
    if states and states == {HEALTHY}:
        return HEALTHY
    for state in (UNHEALTHY, INITIAL, DRAINING):
        if state in states:
            return state
    return UNUSED


def all_registering(candidates: list[Pod], health: dict[str, list[TargetHealth]]) -> bool:
    """True when every started candidate's target is `initial` with Elb.RegistrationInProgress in every group.

    No health check has run on any of them then, and none will before the load balancer finishes registering
    (the poll module paces the gate's looks by how long that has taken). A target not registered at all is not
    counted as registering: the controller registers within a reconcile, or is down, and either way the
    next look should come at the usual pace.
    """
    started = [p for p in candidates if p.containers_ready and p.ip]
    if not started or not health:
        return False
    by_group = [targets_by_ip(targets) for targets in health.values()]
    for pod in started:
        for targets in by_group:
            mine = targets.get(pod.ip or "", [])
            if not mine or any(t.state != INITIAL or t.reason != REGISTRATION_IN_PROGRESS for t in mine):
                return False
    return True


def evaluate_gate(
    *,
    candidates: list[Pod],
    needed: int,
    health: dict[str, list[TargetHealth]] | None,
    now: float,
    deadline: float,
) -> GateResult:
    """Decide a step's gate.

    candidates: the new ReplicaSet's pods that are not terminating and whose albgate gate is still closed.
    needed: how many of them this step releases (plan target minus pods already released).
    health: DescribeTargetHealth per target group ARN, or None when it was not polled this turn.
    """
    if needed <= 0:
        return GateResult(Verdict.PASSED, "this step's pods are already released", needed=0)

    stuck = sorted((p for p in candidates if p.waiting_reason in STUCK_REASONS), key=lambda p: p.name)
    if stuck:
        p = stuck[0]
        return GateResult(
            Verdict.FAILED,
            f"new pod {p.name} is {p.waiting_reason} (restarts: {p.restart_count}); the new version does not start",
            needed=needed,
        )

    starting = [p for p in candidates if not (p.containers_ready and p.ip)]
    ready = sorted((p for p in candidates if p.containers_ready and p.ip), key=lambda p: (p.created_at, p.name))
    pending = _unschedulable_note(starting)
    if health is None:
        result = GateResult(
            Verdict.WAITING,
            f"waiting for {needed - len(ready)} of {needed} new pods to start (ContainersReady) before checking targets"
            f"{'; ' + pending if pending else ''}",
            needed=needed,
            starting=len(starting),
            unschedulable=sum(1 for p in starting if is_unschedulable(p)),
        )
        return _with_deadline(result, now, deadline)

    by_group = {arn: targets_by_ip(targets) for arn, targets in health.items()}
    healthy_pods: list[Pod] = []
    initial = unhealthy = unregistered = 0
    worst: tuple[Pod, str, TargetHealth] | None = None
    for pod in ready:
        states = []
        for arn, targets in by_group.items():
            mine = targets.get(pod.ip or "", [])
            states.append(pod_target_state(mine))
            bad = next((t for t in mine if t.state == UNHEALTHY), None)
            if bad is not None and worst is None:
                worst = (pod, arn, bad)
        if all(s == HEALTHY for s in states):
            healthy_pods.append(pod)
        elif UNHEALTHY in states:
            unhealthy += 1
        elif any(s == INITIAL for s in states):
            initial += 1
        else:
            unregistered += 1

    counts = dict(
        needed=needed,
        healthy=len(healthy_pods),
        initial=initial,
        unhealthy=unhealthy,
        unregistered=unregistered,
        starting=len(starting),
        polled_targets=True,
    )
    if worst is not None:
        pod, arn, t = worst
        return GateResult(
            Verdict.FAILED,
            f"new pod {pod.name} ({pod.ip}) is unhealthy in {arn}: {t.reason or 'no reason'}"
            f"{' - ' + t.description if t.description else ''}",
            **counts,
        )
    if len(healthy_pods) >= needed:
        release = tuple(p.name for p in healthy_pods[:needed])
        return GateResult(
            Verdict.PASSED,
            f"{needed} new pod(s) healthy in all {len(by_group)} target group(s)",
            release=release,
            **counts,
        )
    result = GateResult(
        Verdict.WAITING,
        f"{len(healthy_pods)}/{needed} new targets healthy in every target group "
        f"({initial} initial, {unregistered} not registered yet, {len(starting)} pods starting"
        f"{', ' + pending if pending else ''})",
        **counts,
    )
    return _with_deadline(result, now, deadline)


def is_unschedulable(pod: Pod) -> bool:
    """PodScheduled=False with reason Unschedulable (kubernetes core/v1 PodReasonUnschedulable): the scheduler
    found no node for the pod right now."""
    return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable" for c in pod.conditions)


def _unschedulable_note(pods: list[Pod]) -> str:
    """Reason text naming the pods the scheduler cannot place, so a release engineer sees why a step waits;
    "" when none."""
    n = sum(1 for p in pods if is_unschedulable(p))
    if not n:
        return ""
    return f"{n} Pending, PodScheduled=False Unschedulable: no node can take {'it' if n == 1 else 'them'}"


def _with_deadline(result: GateResult, now: float, deadline: float) -> GateResult:
    if now < deadline:
        return result
    return replace(result, status=Verdict.FAILED, reason=f"step deadline passed: {result.reason}")


@dataclass(frozen=True, config=_RESULT)
class DrainResult:
    status: Verdict
    reason: str
    old_live: int = 0
    expected_old: int = 0
    routable: int = 0
    draining: int = 0
    leaving_ips: tuple[str, ...] = Field(default=(), exclude=True)
    # Set while the next step's gate follows this drain (handed over, ``Verdict.DRAINING``): the step (1-based).
    step: int | None = None
    error: str = DRAIN_NOT_VERIFIED  # the error name of a FAILED drain (`Record Drain Failure`)


def evaluate_drain(
    *,
    old_pods: list[Pod],
    expected_old: int,
    watched_ips: list[str],
    health: dict[str, list[TargetHealth]] | None,
    now: float,
    deadline: float,
) -> DrainResult:
    """Decide whether a step's old pods have gone: scaled down by Kubernetes, and their targets out of every target
    group's pool: `draining`, `unused` or gone. ELB completes the deregistration of a target with nothing in flight
    at once but shows it `draining` until the deregistration delay has run out, and tells nothing of the requests it
    still serves (docs/facts.md, "Deregistration and draining"), so a look can see no more than that: deregistration
    has begun on every leaving target, and none is back in the pool. The requests they still serve are the pods'
    to finish within their preStop and grace period.

    old_pods: pods of the other ReplicaSets (terminating ones included).
    expected_old: how many old pods may stay serving after this step (replicas minus the plan target).
    watched_ips: the old pods' IPs recorded when the step released its new pods.
    """
    live = [p for p in old_pods if not p.terminating]
    live_ips = {p.ip for p in live if p.ip}
    leaving = sorted(ip for ip in watched_ips if ip not in live_ips)
    if len(live) > expected_old:
        result = DrainResult(
            Verdict.WAITING,
            f"{len(live)} old pods still serving, {expected_old} expected: the Deployment controller has not "
            "scaled the old ReplicaSet down yet",
            old_live=len(live),
            expected_old=expected_old,
            leaving_ips=tuple(leaving),
        )
        return _drain_deadline(result, now, deadline)
    if health is None:
        return DrainResult(
            Verdict.WAITING,
            "old pods scaled down; checking their targets next",
            old_live=len(live),
            expected_old=expected_old,
            leaving_ips=tuple(leaving),
        )
    routable = draining = 0
    for targets in health.values():
        for t in targets:
            if t.target_id not in leaving:
                continue
            if t.state == DRAINING:
                draining += 1
            elif t.state != UNUSED:
                routable += 1
    counts = dict(old_live=len(live), expected_old=expected_old, routable=routable, draining=draining)
    if routable == 0:
        shown = f" ({draining} shown draining until their deregistration delay ends)" if draining else ""
        return DrainResult(
            Verdict.PASSED,
            f"{len(leaving)} old target(s) out of every target group's pool{shown}",
            leaving_ips=tuple(leaving),
            **counts,
        )
    result = DrainResult(
        Verdict.WAITING,
        f"{routable} old target(s) still in the pool (deregistration not started), {draining} draining",
        leaving_ips=tuple(leaving),
        **counts,
    )
    return _drain_deadline(result, now, deadline)


def _drain_deadline(result: DrainResult, now: float, deadline: float) -> DrainResult:
    if now < deadline:
        return result
    return replace(result, status=Verdict.FAILED, reason=f"drain deadline passed: {result.reason}")


def targets_to_deregister(
    *,
    leaving_ips: tuple[str, ...] | list[str],
    held_ips: set[str],
    health: dict[str, list[TargetHealth]] | None,
    blind_ports: dict[str, int],
    already: set[str],
) -> dict[str, list[tuple[str, int]]]:
    """The (IP, port) targets albgate deregisters itself, per target group, for old pods it released.

    A released pod is terminating: Kubernetes has taken it out of the Service's endpoints, so the only right
    state for its target is `draining` or gone. The Load Balancer Controller normally deregisters it within a
    reconcile; when the controller is down or throttled nobody does, and the pod exits after its preStop
    while the ALB still routes to it. So every leaving target that is still `initial`, `healthy` or
    `unhealthy` is deregistered here. An IP held again by a live pod is never touched (IP reuse).

    health: the targets as DescribeTargetHealth showed them now; None when albgate has not looked (it
    deregisters as soon as the old ReplicaSet is scaled down) or the call was throttled, in which case each
    leaving IP is deregistered once, unseen, on the port the group's targets use (``blind_ports``; a group whose
    port is unknown is skipped). ``already`` holds "arn|ip" keys deregistered before.
    """
    wanted = [ip for ip in leaving_ips if ip and ip not in held_ips]
    out: dict[str, list[tuple[str, int]]] = {}
    if health is None:
        for arn, port in blind_ports.items():
            todo = [(ip, port) for ip in wanted if f"{arn}|{ip}" not in already]
            if todo:
                out[arn] = todo
        return out
    for arn, targets in health.items():
        todo = [(t.target_id, t.port) for t in targets
                if t.target_id in wanted and t.state in (INITIAL, HEALTHY, UNHEALTHY)]
        if todo:
            out[arn] = todo
    return out


@dataclasses.dataclass(frozen=True)
class Registration:
    """What ``targets_to_register`` decided on one look.

    register: per target group ARN, the (IP, port) targets to register now.
    missing_since: per target group ARN, since when every look has found some started candidate without a target
    there (what the next look hands back as ``since``); a group where none is missing, or where every missing one
    is registered now, is left out.
    unknown_port: the groups with targets due whose port albgate does not know (nothing registered there)."""

    register: dict[str, list[tuple[str, int]]]
    missing_since: dict[str, float]
    unknown_port: tuple[str, ...] = ()


def targets_to_register(
    *,
    candidates: list[Pod],
    health: dict[str, list[TargetHealth]],
    ports_by_group: dict[str, int],
    since: dict[str, float],
    now: float,
    grace: float,
) -> Registration:
    """The (IP, port) targets albgate registers itself, per target group, for the step's new pods.

    The Load Balancer Controller registers every ContainersReady pod that is not terminating, gated or not
    (docs/facts.md, "Load Balancer Controller: requeue and back-off by version", which not-ready pods become
    targets), but only when something it watches changes: a pod held by albgate's gate alone turning
    ContainersReady changes nothing it watches, so in a namespace without the controller's inject label nobody
    registers it. Here a candidate that is ContainersReady with an IP and not terminating, and has no target in a
    group but perhaps a `draining` one (an old pod's that held the IP before: ELB shows it so until its delay ends,
    and the controller, too, registers over it), is missing there. Once every look
    for ``grace`` seconds has found a pod missing in a group (``since``: per group ARN, from the last look), the
    controller is not registering for that group, and every pod missing there now is registered on
    ``ports_by_group[arn]``, the port the group's targets use. The same rule as the controller's, so its next
    reconcile finds the target already there and leaves it; registering one a little before the controller
    would have is the only difference.

    health: DescribeTargetHealth per group ARN, as this look read it.
    """
    register: dict[str, list[tuple[str, int]]] = {}
    missing_since: dict[str, float] = {}
    unknown: list[str] = []
    started = sorted({p.ip for p in candidates if p.ip and p.containers_ready and not p.terminating})
    for arn, targets in health.items():
        present = {t.target_id for t in targets if t.state != DRAINING}
        missing = [ip for ip in started if ip not in present]
        if not missing:
            continue
        first = missing_since[arn] = min(since.get(arn, now), now)
        if now - first < grace:
            continue
        if arn not in ports_by_group:
            unknown.append(arn)
            continue
        register[arn] = [(ip, ports_by_group[arn]) for ip in missing]
        del missing_since[arn]  # a target missing there again later is given the grace again
    return Registration(register=register, missing_since=missing_since, unknown_port=tuple(unknown))
