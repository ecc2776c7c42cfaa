"""Nudge the Load Balancer Controller: make a controller that backs off look at a step's pods now.

Job: the controller writes its target-health condition, and registers a new pod's target, only when it reconciles
the pod's TargetGroupBinding. When its own DescribeTargetHealth calls are throttled it retries with an exponential
back-off of up to 1000 s (docs/facts.md, "Load Balancer Controller: requeue and back-off by version"), so in an
account whose Describe* bucket is short, a target that ELB already calls healthy can wait longer than the step's
deadline for the condition that lets its pod turn Ready. From v3.4.0 the controller watches the pods carrying its
gate, and any change of such a pod's conditions adds the binding to its workqueue at once, beside the delayed
retry (same section, "What is watched" and "The workqueue"). So when a look at ELB finds a new pod's target
healthy, or not registered, while the controller's condition on the pod still is not True, albgate writes its own
gate's condition on that pod again: still False, its message saying what ELB showed and when. The write is a
watch event; the controller reconciles within its latency and writes the condition, or registers the target. A
look that cannot ask ELB (its turn in albgate's share is booked, its call was throttled, or it still backs off
after one) nudges too once the conditions are overdue: the controller's own DescribeTargetHealth then answers for
the look albgate cannot make. And the first look that finds them overdue while they say ELB health-checks every
target nudges instead of asking ELB at all (``rollout.gate.health_checked``, ``rollout.gate.elb_asked_at``).

Invariant: albgate's gate stays closed (the pod stays out of Ready), and nothing but the message changes on a pod
that already carries the False condition. At most one nudge per step every ``CONTROLLER_REQUEUE_SECONDS``, and none
before the step's first pod has been ContainersReady that long: a controller that does not back off looks that
often by itself. A controller older than v3.4.0 does not watch pods: the write changes only the message.
"""

from __future__ import annotations

from lambdas.domain.errors import NotFoundError
from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, HEALTHY, LBC_GATE_PREFIX, Pod, Ports, TargetHealth
from lambdas.domain.rollout.alarms import utc
from lambdas.domain.rollout.targets import group_name
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo

NUDGE_REASON = "WaitingForLoadBalancerController"


def late_for_the_controller(
    groups: list[TargetGroupInfo], candidates: list[Pod], health: dict[str, list[TargetHealth]] | None
) -> list[tuple[Pod, str]]:
    """The candidates whose controller condition lags, each with what shows it: a started pod carrying the
    controller's gate for a group whose condition is not True while ELB calls its target there healthy, or does not
    list it (nobody registered it). ``health`` None: no ELB answer this look, and the caller knows the conditions
    are overdue (``rollout.gate.conditions_overdue_seconds``): every such pod whose condition is not True. Pods
    without that gate are not the controller's to write. Pure; in the candidates' order."""
    late = []
    for pod in candidates:
        if not (pod.containers_ready and pod.ip):
            continue
        seen = []
        for g in groups:
            # a group whose binding albgate does not know names the bare prefix, which no pod's gate can be (a
            # condition type does not end in "/")
            gate = LBC_GATE_PREFIX + g.binding
            if gate not in pod.readiness_gates or pod.condition(gate) == "True":
                continue
            if health is None:
                seen.append(f"not written healthy in {group_name(g.arn)}, overdue")
                continue
            states = {t.state for t in health.get(g.arn, []) if t.target_id == pod.ip}
            if HEALTHY in states:
                seen.append(f"healthy in {group_name(g.arn)}")
            elif not states - {DRAINING}:
                seen.append(f"not registered in {group_name(g.arn)}")
        if seen:
            late.append((pod, ", ".join(seen)))
    return late


def _already_false(pod: Pod) -> bool:
    """Whether albgate's gate condition is on the pod and False (``Pod.condition`` says False for an absent one too):
    then a nudge changes only its reason and message, not when its status last changed."""
    return any(c.type == ALBGATE_GATE and c.status == "False" for c in pod.conditions)


def nudge_due(record: StepRecord, now: float) -> bool:
    """Whether this step may nudge now: its first pod was seen ContainersReady at least one controller requeue ago,
    and its last nudge (if any) was at least one requeue ago."""
    if record.first_ready_at is None or now - record.first_ready_at < CONTROLLER_REQUEUE_SECONDS:
        return False
    return record.nudged_at is None or now - record.nudged_at >= CONTROLLER_REQUEUE_SECONDS


def nudge_the_controller(
    ports: Ports, s: RolloutState, record: StepRecord, candidates: list[Pod],
    health: dict[str, list[TargetHealth]] | None, now: float,
) -> str:
    """Nudge the controller about the candidates it is late for (``late_for_the_controller``; ``health`` None when
    this look could not ask ELB and the conditions are overdue) when one is due; returns what was done, for the
    gate's reason ("" when nothing was)."""
    if not nudge_due(record, now):
        return ""
    late = late_for_the_controller(s.target_groups, candidates, health)
    nudged = 0
    for pod, seen in late:
        shows = f"ELB shows this pod's target {seen}" if health is not None else f"its target {seen}"
        message = (f"albgate {s.execution_name}: at {utc(now)} {shows}; waiting for the "
                   "Load Balancer Controller to write its target-health condition")
        try:
            ports.kube.set_pod_condition(s.request.namespace, pod.name, ALBGATE_GATE, "False", NUDGE_REASON, message,
                                         same_status=_already_false(pod))
        except NotFoundError:
            continue  # gone since the look: the next look counts again
        nudged += 1
    if not nudged:
        return ""
    record.nudged_at = now
    record.nudges += nudged
    lag = "whose target ELB shows ahead of its condition" if health is not None else "whose condition is overdue"
    return (f"nudged the Load Balancer Controller about {nudged} pod(s) {lag} (a write on the pod makes it look "
            "again at once)")
