"""Which pods a rollout step is about: the new ReplicaSet's, the others, and when a pod counts as serving.

Invariant: reads only; the target ReplicaSet is the newest one running the target image (behind albgate's gate on
a rollout; on a restart, carrying this execution's restart marker).
"""

from __future__ import annotations

from lambdas.domain.ports import ALBGATE_GATE, Deployment, Pod, Ports, ReplicaSet
from lambdas.domain.state import RolloutState


POD_TEMPLATE_HASH = "pod-template-hash"


# Marks a Deployment as being rolled by albgate until a deadline, so the gate keeper leaves its gates alone:
# "<execution name>@<epoch seconds>". Cleared (empty) when the execution finishes; an execution that died
# leaves a deadline that expires by itself.
ROLLOUT_ANNOTATION = "albgate.io/rollout"


def _target_replica_set(
    rs_list: list[ReplicaSet], container: str, image: str, *, gated: bool, restart_marker: str | None
) -> ReplicaSet | None:
    """The newest ReplicaSet whose template runs ``image`` (behind albgate's gate when ``gated``)."""
    matching = []
    for rs in rs_list:
        c = rs.template.container(container)
        if c is None or c.image != image:
            continue
        if gated and ALBGATE_GATE not in rs.template.readiness_gates:
            continue
        if restart_marker and rs.template.annotations.get("albgate.io/restarted-by") != restart_marker:
            continue
        matching.append(rs)
    return max(matching, key=lambda rs: rs.revision, default=None)


def is_released(pod: Pod) -> bool:
    """A pod counts as serving the step once albgate opened its gate, or, without the gate, once it is Ready."""
    if ALBGATE_GATE in pod.readiness_gates:
        return pod.condition(ALBGATE_GATE) == "True"
    return pod.ready


def split_pods(
    ports: Ports, s: RolloutState, dep: Deployment | None = None
) -> tuple[ReplicaSet | None, list[Pod], list[Pod]]:
    """(target ReplicaSet, its pods, every other pod of the Deployment); ``dep`` if the caller has read it."""
    req = s.request
    kube = ports.kube
    dep = dep or kube.get_deployment(req.namespace, req.deployment)
    marker = s.execution_name if req.kind == "restart" and s.mode == "rollout" else None
    target = _target_replica_set(
        kube.list_replica_sets(req.namespace, req.deployment),
        req.container,
        s.target_image,
        gated=s.mode == "rollout",
        restart_marker=marker,
    )
    pods = kube.list_pods(req.namespace, dep.selector)
    if target is None:
        return None, [], pods
    mine = [p for p in pods if p.labels.get(POD_TEMPLATE_HASH) == target.pod_template_hash]
    others = [p for p in pods if p.labels.get(POD_TEMPLATE_HASH) != target.pod_template_hash]
    return target, mine, others
