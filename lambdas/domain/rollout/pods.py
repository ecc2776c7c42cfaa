"""Which pods a rollout step is about: the new ReplicaSet's, the others, and when a pod counts as serving.

Invariant: reads only; the target ReplicaSet is the newest one running the target image (behind albgate's gate on
a rollout; on a restart, carrying this execution's restart marker).
"""

from __future__ import annotations

from lambdas.domain.documents import quote
from lambdas.domain.ports import ALBGATE_GATE, Deployment, Pod, Ports, ReplicaSet
from lambdas.domain.state import RolloutState


POD_TEMPLATE_HASH = "pod-template-hash"
# A ReplicaFailure message quoted in the gate's reason is cut to this many characters (an API server's refusal
# names the webhook and its URL; the reason is shown in the console and kept in the execution's state).
MESSAGE_LIMIT = 300


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


def replica_failure(dep: Deployment) -> str:
    """What Kubernetes says when it cannot create (or delete) the Deployment's pods, as a note for the gate's
    reason: its ``ReplicaFailure`` condition, copied from a ReplicaSet whose last sync failed (reason
    ``FailedCreate``, the API server's refusal as the message: an admission webhook that is down, a quota;
    docs/facts.md, "Kubernetes Deployment controller", ReplicaFailure); empty while it is absent or not True. The
    condition stays until a sync creates what it must, so a failure that has already healed may show until the
    ReplicaSet's next sync. Pure."""
    c = dep.condition("ReplicaFailure")
    if c is None or c.status != "True":
        return ""
    return f"Kubernetes reports ReplicaFailure {c.reason or 'True'}: {quote(c.message, MESSAGE_LIMIT)}"


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
