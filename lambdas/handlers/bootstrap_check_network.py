"""Lambda `Check Network`: before the bootstrap changes anything, can the functions in the cluster's VPC reach every
AWS service they call?

Thin: the state and the deployment's network in (the state machine's definition carries it: the VPC, the
functions' subnets and the endpoints they need, computed at synth by stacks/constructs/vpc_endpoints.py),
lambdas.domain.network.check_network, the state out. ``network`` null (no function in a VPC): no AWS call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.network import NetworkPort, check_network
from lambdas.handlers._runtime import settings, task

NetworkProvider = Callable[[str], NetworkPort]
_network_provider: NetworkProvider | None = None


def use_network(provider: NetworkProvider | None) -> None:
    """Install a network port provider (Region -> port) for tests; None restores the EC2 adapter."""
    global _network_provider
    _network_provider = provider


def _port(region: str) -> NetworkPort:
    if _network_provider is not None:
        return _network_provider(region)
    from lambdas.adapters.ec2_network import Ec2Network  # imported late: only a function in a VPC pays for it

    return Ec2Network(region)


@task("Check Network")
def handler(event: dict, context: Any) -> dict:
    state = event.get("state") if isinstance(event, dict) else None
    if not isinstance(state, dict):
        raise InvalidInputError("state: expected the bootstrap state; the state machine passes it after Validate Input")
    network = event.get("network")
    if network is not None and not isinstance(network, dict):
        raise InvalidInputError(f"network: expected the deployment's network or null, got {type(network).__name__}")
    # The cluster from the request Validate Input checked (not through bootstrap_common: this function reaches no
    # cluster and runs the lean asset, without the kubernetes client)
    cluster = (state.get("request") or {}).get("cluster") if isinstance(state.get("request"), dict) else None
    if not isinstance(cluster, str) or not cluster:
        raise InvalidInputError("request.cluster: the state has no bootstrap request; start with Validate Input")
    port = _port(settings().region) if network is not None else None
    return check_network(port, state, network, cluster)
