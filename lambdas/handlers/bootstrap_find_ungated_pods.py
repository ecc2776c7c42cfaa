"""Lambda `Find Pods Born Before The Label`: once the Deployments settled, which still run pods without the controller's gate?

Thin: the state in, lambdas.domain.bootstrap.find_pods_born_before_label, the state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports, cluster_of_state


@task("Find Pods Born Before The Label")
def handler(event: dict, context: Any) -> dict:
    ports = bootstrap_ports(cluster_of_state(event))
    return bootstrap.find_pods_born_before_label(ports.kube, ports.clock, event)
