"""The gate keeper: opens albgate's readiness gate on pods created outside a rollout (scale-ups, evictions).

Once a Deployment has been rolled by albgate its template carries the ``albgate.io/target-healthy`` gate, so every
pod the ReplicaSet creates later (an autoscaler scaling up, a node drained) waits for it. Outside a rollout nobody
else opens it; this does, with the same rule as the controller's own gate (docs/facts.md, Load Balancer Controller:
readiness gate: True only when the target is ``healthy``), in every target group.

Invariant: it never touches a Deployment that a live rollout holds (``ROLLOUT_ANNOTATION`` with a deadline in
the future): there the state machine alone decides which pods may turn Ready. It opens a gate only on a pod
whose target is healthy in every group, and it spends no Describe* call when no gate is closed.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdas.domain.gate import Verdict, evaluate_gate
from lambdas.domain.ports import ALBGATE_GATE, Ports
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.rollout.targets import describe_target_groups, target_group_bindings


@dataclass(frozen=True)
class KeeperReport:
    deployment: str
    closed: int
    opened: tuple[str, ...]
    skipped_reason: str = ""

    def as_dict(self) -> dict:
        return {
            "deployment": self.deployment,
            "closed": self.closed,
            "opened": list(self.opened),
            "skipped_reason": self.skipped_reason,
        }


def rollout_holds(annotation: str, now: float) -> bool:
    """True while the annotation names an execution whose hold deadline has not passed."""
    if not annotation or "@" not in annotation:
        return False
    try:
        return float(annotation.rsplit("@", 1)[1]) > now
    except ValueError:
        return False


def keep_gates(ports: Ports, namespace: str, deployment: str) -> KeeperReport:
    kube = ports.kube
    name = f"{namespace}/{deployment}"
    dep = kube.get_deployment(namespace, deployment)
    now = ports.clock.now()
    if ALBGATE_GATE not in dep.template.readiness_gates:
        return KeeperReport(name, 0, (), "template has no albgate gate")
    if rollout_holds(dep.annotations.get(ROLLOUT_ANNOTATION, ""), now):
        return KeeperReport(name, 0, (), f"rollout {dep.annotations[ROLLOUT_ANNOTATION]} holds the gates")
    closed = [
        p
        for p in kube.list_pods(namespace, dep.selector)
        if not p.terminating and ALBGATE_GATE in p.readiness_gates and p.condition(ALBGATE_GATE) != "True"
    ]
    ready = [p for p in closed if p.containers_ready and p.ip]
    if not ready:
        return KeeperReport(name, len(closed), ())
    bindings = target_group_bindings(ports, dep)
    # DescribeTargetGroups + Attributes and DescribeTargetHealth per group, in albgate's share of the Describe*
    # calls; nothing is booked when it is spent: the next minute's run is the retry
    if ports.budget.acquire(3 * len(bindings), reserve=False) > 0:
        return KeeperReport(name, len(closed), (), "albgate's share of the Describe* calls is spent; next run")
    groups = describe_target_groups(ports, namespace, bindings)
    health = {g.arn: ports.elb.describe_target_health(g.arn) for g in groups}
    healthy = []
    for pod in ready:
        result = evaluate_gate(candidates=[pod], needed=1, health=health, now=now, deadline=float("inf"))
        if result.status is Verdict.PASSED:
            healthy.append(pod.name)
            kube.set_pod_condition(
                namespace, pod.name, ALBGATE_GATE, "True", "TargetHealthy",
                "albgate gate keeper: target healthy in all target groups",
            )
    return KeeperReport(name, len(closed), tuple(healthy))
