"""Lambda `Preflight`: take the Deployment's lease, validate the input, find the target groups, refuse an unsafe
rollout before changing anything.

Thin: the execution input, name and ARN in; the Deployment's lease for this execution first (lambdas/handlers/
_lease.py: one rollout per Deployment, whoever started it; refused naming the holder), then
lambdas.domain.rollout.preflight.preflight; the first state out. Taking the lease again when Preflight comes back from
`Wait For Describe Turn` finds it already this execution's.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import preflight
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import parse_request
from lambdas.handlers import _lease
from lambdas.handlers._runtime import ports_for, task


@task("Preflight")
def handler(event: dict, context: Any) -> dict:
    raw = event.get("request") if isinstance(event, dict) else None
    if not isinstance(raw, dict):
        raise InvalidInputError("input: expected a JSON object with cluster, namespace, deployment, container, image")
    cluster = raw.get("cluster")
    if not isinstance(cluster, str) or not cluster:
        raise InvalidInputError("cluster: missing; name the EKS cluster the Deployment runs in")
    _lease.take(event)  # before anything is read: what Preflight reads, no other rollout changes until it ends
    request = parse_request(raw)
    waited = preflight.PreflightWaiting.parse(event.get("state"))  # back from `Wait For Describe Turn`
    return preflight.preflight(ports_for(cluster), request, event.get("execution_name", "local"), waited).dump()
