"""Finish Rollout: put back any pod still out of service, give the Deployment back its own maxSurge, clear albgate's
hold, record the outcome."""

from __future__ import annotations

from lambdas.domain.ports import DeploymentPatch, Ports
from lambdas.domain.rollout.out_of_service import put_back
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.state import RolloutState


def finish_rollout(ports: Ports, s: RolloutState) -> RolloutState:
    req = s.request
    if any(r.out_at is not None for r in s.steps):
        # a pod a step took out of service that Kubernetes then left running (it removed another) serves again
        dep = ports.kube.get_deployment(req.namespace, req.deployment)
        put_back(ports, s, ports.kube.list_pods(req.namespace, dep.selector))
    ports.kube.patch_deployment(
        req.namespace,
        req.deployment,
        DeploymentPatch(max_surge=s.original_max_surge, annotations={ROLLOUT_ANNOTATION: ""}),
    )
    s.outcome = "succeeded" if s.mode == "rollout" else "rolled_back"
    s.finished_at = ports.clock.now()
    return s
