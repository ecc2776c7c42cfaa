"""Finish Rollout: give the Deployment back its own maxSurge, clear albgate's hold, record the outcome."""

from __future__ import annotations

from lambdas.domain.ports import DeploymentPatch, Ports
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.state import RolloutState


def finish_rollout(ports: Ports, s: RolloutState) -> RolloutState:
    req = s.request
    ports.kube.patch_deployment(
        req.namespace,
        req.deployment,
        DeploymentPatch(max_surge=s.original_max_surge, annotations={ROLLOUT_ANNOTATION: ""}),
    )
    s.outcome = "succeeded" if s.mode == "rollout" else "rolled_back"
    s.finished_at = ports.clock.now()
    return s
