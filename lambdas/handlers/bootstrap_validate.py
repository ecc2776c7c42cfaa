"""Lambda `Validate Input`: check the bootstrap input, namespaces and manifests before touching any cluster.

Thin: the execution input in, lambdas.domain.bootstrap.validate_input, the first state out. No cluster call:
a refused input (a protected namespace, a malformed manifest, instance targets on a gated app) changes nothing.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.domain.errors import InvalidInputError
from lambdas.handlers._runtime import ports_for, task


@task("Validate Input")
def handler(event: dict, context: Any) -> dict:
    raw = event.get("request") if isinstance(event, dict) else None
    if not isinstance(raw, dict):
        raise InvalidInputError("input: expected a JSON object with cluster, applications and controller settings")
    cluster = raw.get("cluster")
    if not isinstance(cluster, str) or not cluster:
        raise InvalidInputError("cluster: missing; name the EKS cluster to bootstrap")
    clock = ports_for(cluster).clock  # no Kubernetes or AWS call: the ports connect on first use
    defaults = event.get("controller_defaults") if isinstance(event.get("controller_defaults"), dict) else None
    return bootstrap.validate_input(raw, event.get("execution_name", "local"), clock.now(), defaults)
