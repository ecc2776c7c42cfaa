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
the look albgate cannot make. And where they say ELB health-checks every target the step waits for, the gate nudges
instead of asking ELB at all: one health-check interval after a look first read them so (a registered target needs
one passing check, and the controller, which wrote that after a look of its own, would look again only a requeue
later), or at the first look that finds them overdue if that comes sooner (``rollout.gate.health_checked``,
``rollout.gate.checked_nudge_at``, ``rollout.gate.elb_asked_at``).

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
    groups: list[TargetGroupInfo], candidates: list[Pod], health: dict[str, list[TargetHealth]] | None,
    *, checked: bool = False,
) -> list[tuple[Pod, str]]:
    """The candidates whose controller condition lags, each with what shows it: a started pod carrying the
    controller's gate for a group whose condition is not True while ELB calls its target there healthy, or does not
    list it (nobody registered it). ``health`` None: no ELB answer this look, and the caller knows the conditions
    are overdue (``rollout.gate.conditions_overdue_seconds``), or ``checked``: that they said ELB health-checks
    every target one health-check interval ago (``rollout.gate.checked_nudge_at``): every such pod whose condition
    is not True. Pods without that gate are not the controller's to write. Pure; in the candidates' order."""
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
                why = "checked by ELB since the controller last looked" if checked else "overdue"
                seen.append(f"not written healthy in {group_name(g.arn)}, {why}")
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
    health: dict[str, list[TargetHealth]] | None, now: float, *, checked: bool = False,
) -> str:
    """Nudge the controller about the candidates it is late for (``late_for_the_controller``; ``health`` None when
    this look could not ask ELB and the conditions are overdue, or ``checked``: they said ELB health-checks every
    target an interval ago) when one is due; returns what was done, for the gate's reason ("" when nothing was)."""
    if not nudge_due(record, now):
        return ""
    late = late_for_the_controller(s.target_groups, candidates, health, checked=checked)
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
    if health is not None:
        lag = "whose target ELB shows ahead of its condition"
    elif checked:
        lag = ("whose target has had its one health check since the controller last looked: one health-check "
               "interval after its condition said ELB checks it")
    else:
        lag = "whose condition is overdue"
    return (f"nudged the Load Balancer Controller about {nudged} pod(s) {lag} (a write on the pod makes it look "
            "again at once)")
