"""Lambda `Install Controller`: the controller's service account, then `helm upgrade --install` of the pinned chart.

Thin: the state in, lambdas.domain.bootstrap.install_controller (skips helm when the release already has the
pinned chart and values), the state out. Needs helm from the aws-cdk kubectl/helm layer and cluster-admin
Kubernetes rights (docs/bootstrap.md).
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports, cluster_of_state, helm_for, log_changes


@task("Install Controller")
def handler(event: dict, context: Any) -> dict:
    cluster = cluster_of_state(event)
    ports = bootstrap_ports(cluster)
    state = bootstrap.install_controller(ports.kube, helm_for(cluster), ports.clock, event)
    return log_changes("Install Controller", event, state)
