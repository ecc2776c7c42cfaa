"""Lambda `Apply Workloads`: server-side apply of the hardened manifests, in two phases.

Thin: the state and a phase in; ``services`` (dry-run every manifest, then apply Services and Ingresses) or
``deployments`` (apply the Deployments, once their binding exists); the state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.domain.errors import InvalidInputError
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports, cluster_of_state, log_changes

PHASES = {"services": bootstrap.apply_services_and_ingresses, "deployments": bootstrap.apply_deployments}


@task("Apply Workloads")
def handler(event: dict, context: Any) -> dict:
    phase = event.get("phase") if isinstance(event, dict) else None
    if phase not in PHASES:
        raise InvalidInputError(f"phase: {phase!r}; the state machine passes one of {sorted(PHASES)}")
    state = event["state"]
    ports = bootstrap_ports(cluster_of_state(state))
    return log_changes("Apply Workloads", state, PHASES[phase](ports.kube, ports.clock, state))
