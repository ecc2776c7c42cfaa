"""Lambda `Check Controller`: is the controller available, its webhook serving with the wanted failure policy?

Thin: the state in, lambdas.domain.bootstrap.check_controller, the state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports, cluster_of_state


@task("Check Controller")
def handler(event: dict, context: Any) -> dict:
    ports = bootstrap_ports(cluster_of_state(event))
    return bootstrap.check_controller(ports.kube, ports.clock, event)
