"""Lambda `Label Namespaces`: label each app namespace for the controller's readiness gate (creating it if new).

Thin: the state in, lambdas.domain.bootstrap.label_namespaces (refuses kube-system and the controller's own
namespace), the state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports, cluster_of_state, log_changes


@task("Label Namespaces")
def handler(event: dict, context: Any) -> dict:
    state = bootstrap.label_namespaces(bootstrap_ports(cluster_of_state(event)).kube, event)
    return log_changes("Label Namespaces", event, state)
