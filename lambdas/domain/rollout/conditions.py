"""Target health as the Load Balancer Controller already wrote it on the pods: its readiness gate's condition.

Job: where every new pod that waits for the gate carries the controller's own gate for every target group
(``target-health.elbv2.k8s.aws/<TargetGroupBinding>``), the controller has asked ELB about each of those targets and
written the answer on the pod (docs/facts.md, "Load Balancer Controller: the target-health pod condition"): the
gate can read the targets' health from the pods it reads anyway, through the cluster's API, instead of spending a
DescribeTargetHealth call of the account's shared Describe* bucket. ``health_from_conditions`` turns the conditions
into the health a DescribeTargetHealth answer would give, or says it cannot.

What a condition tells, and what it does not:
- ``True`` is written only from a `healthy` answer, so the target was healthy at that answer; the controller does
  not look again while it stays True, so it can be older than the target's state now. A new pod's condition starts
  absent or False and turns True during its step, so at the gate it is recent. A True whose message says the
  TargetGroupBinding was deleted says nothing about the target: such a pod is not read from its conditions.
- ``False`` carries the ELB reason code: ``Elb.*`` (registration in progress, initial health checking) is a target
  still `initial`; ``Target.*`` (failed health checks, a timeout, a response code mismatch) is `unhealthy`, which
  the gate fails fast on as it would on ELB's answer.
- An absent or ``Unknown`` condition (the controller has not answered yet), a pod without the controller's gate
  for some target group, a target group whose binding albgate does not know: the conditions cannot tell, and the
  gate asks ELB as before.
Invariant: pure; never reports a target healthy that a condition did not say True for.
"""

from __future__ import annotations

from lambdas.domain.ports import HEALTHY, INITIAL, LBC_GATE_PREFIX, UNHEALTHY, Pod, TargetHealth
from lambdas.domain.state import TargetGroupInfo

# What the controller writes on every gated pod when their TargetGroupBinding is deleted (v3.5.0,
# updatePodAsHealthyForDeletedTGB).
DELETED_BINDING_MESSAGE = "Target Group Binding is deleted"
# Reason codes of a False condition that mean the target is still `initial` (ELB's TargetHealthReasonEnum).
INITIAL_REASON_PREFIX = "Elb."
UNHEALTHY_REASON_PREFIX = "Target."


def target_state(pod: Pod, gate: str) -> tuple[str, str] | None:
    """(ELB state, reason) of one pod's target as its condition ``gate`` says it, or None when it cannot say."""
    if gate not in pod.readiness_gates:
        return None
    c = next((c for c in pod.conditions if c.type == gate), None)
    if c is None:
        return None
    if c.status == "True":
        return None if DELETED_BINDING_MESSAGE in c.message else (HEALTHY, "")
    if c.status == "False" and c.reason.startswith(UNHEALTHY_REASON_PREFIX):
        return UNHEALTHY, c.reason
    if c.status == "False" and c.reason.startswith(INITIAL_REASON_PREFIX):
        return INITIAL, c.reason
    return None


def carries_controller_gates(groups: list[TargetGroupInfo], candidates: list[Pod]) -> bool:
    """Whether the controller's conditions can come to tell: every group's binding is known and every started
    candidate carries the controller's gate for each (its condition may not be written yet)."""
    started = [p for p in candidates if p.containers_ready and p.ip]
    if not groups or not started or any(not g.binding for g in groups):
        return False
    return all(LBC_GATE_PREFIX + g.binding in p.readiness_gates for p in started for g in groups)


def health_from_conditions(groups: list[TargetGroupInfo], candidates: list[Pod], *,
                           unwritten: bool = False) -> dict[str, list[TargetHealth]] | None:
    """DescribeTargetHealth's view of the candidates' targets, per target group ARN, read from their conditions; None
    when some ContainersReady candidate's condition cannot say (then the gate asks ELB). Candidates still starting
    have no target yet and are left out, as ELB would. ``unwritten``: a candidate that carries the controller's gate
    for a group but no condition of it yet is left out of that group too, as not registered: a reconcile registers
    the new endpoints and then writes their pods' conditions (docs/facts.md, "Load Balancer Controller: the
    target-health pod condition"), so no reconcile has finished with this target yet; it is not registered, or
    only just, and no gate passes on it."""
    if not groups or any(not g.binding for g in groups):
        return None
    health: dict[str, list[TargetHealth]] = {g.arn: [] for g in groups}
    for pod in candidates:
        if not (pod.containers_ready and pod.ip):
            continue
        for g in groups:
            gate = LBC_GATE_PREFIX + g.binding
            if unwritten and not_written(pod, gate):
                continue
            said = target_state(pod, gate)
            if said is None:
                return None
            state, reason = said
            health[g.arn].append(TargetHealth(pod.ip, g.target_port or 0, state, reason))
    return health


def not_written(pod: Pod, gate: str) -> bool:
    """Whether ``pod`` carries the readiness gate ``gate`` but no condition of it yet."""
    return gate in pod.readiness_gates and all(c.type != gate for c in pod.conditions)


def unwritten_groups(groups: list[TargetGroupInfo], candidates: list[Pod]) -> list[str]:
    """The ARNs of the groups where some started candidate carries the controller's gate but no condition of it yet:
    no reconcile has registered its target there (``health_from_conditions``, ``unwritten``). Pure; in the groups'
    order."""
    started = [p for p in candidates if p.containers_ready and p.ip]
    return [g.arn for g in groups if g.binding and any(not_written(p, LBC_GATE_PREFIX + g.binding) for p in started)]


def registration_lag(groups: list[TargetGroupInfo], pods: list[Pod]) -> float | None:
    """How long, at most, the controller took to act on the slowest of ``pods`` once it was ContainersReady: the
    largest gap between a pod's ContainersReady and a condition of a group's binding gate, by their
    lastTransitionTime. The controller writes a gated pod's condition first in the reconcile that registers its
    endpoint, and a condition's time moves only with its status, later: so each gap bounds that pod's wait from
    above, and is closest while the condition is still its first. None when some ContainersReady pod has no such
    condition yet, or a time is missing."""
    if not groups or any(not g.binding for g in groups):
        return None
    gaps = []
    for pod in pods:
        if not (pod.containers_ready and pod.ip):
            continue
        ready = pod.transitioned_at("ContainersReady")
        for g in groups:
            written = pod.transitioned_at(LBC_GATE_PREFIX + g.binding)
            if ready is None or written is None:
                return None
            gaps.append(written - ready)
    return max(gaps) if gaps else None
