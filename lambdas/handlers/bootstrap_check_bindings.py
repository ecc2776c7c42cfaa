"""Lambda `Check Bindings`: is every Service bound to an IP target group, and does a dry-run pod get the gate?

Thin: the state in, lambdas.domain.bootstrap.check_bindings, the state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import bootstrap
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports, cluster_of_state


@task("Check Bindings")
def handler(event: dict, context: Any) -> dict:
    ports = bootstrap_ports(cluster_of_state(event))
    return bootstrap.check_bindings(ports.kube, ports.clock, event)
