"""``NetworkPort`` over Amazon EC2: a VPC's endpoints and route tables, as ``lambdas.domain.network`` reads them.

Job: ``DescribeVpcEndpoints`` and ``DescribeRouteTables`` filtered on the VPC (every page), turned into the
domain's ``VpcEndpoint`` and ``RouteTable``; each route's target named by the field that carries it
(``NatGatewayId`` -> ``nat-gateway``, an ``igw-`` gateway -> ``internet-gateway``, ...).

Invariant: an EC2 API that cannot be reached (no ``ec2`` endpoint and no NAT route from the function's subnet)
is answered as data, ``NetworkView(reachable=False)``, after a short connect timeout and one retry: the check
then names what is missing instead of the state machine retrying a call that cannot work. Every other AWS
error becomes a domain error through the ELB adapter's mapping, raised ``from`` its cause.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from lambdas.adapters.elbv2 import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, map_aws_error
from lambdas.domain.network import NetworkView, Route, RouteTable, VpcEndpoint

# Two attempts: a subnet without a way to EC2 is not transient, and the check must answer well inside its Lambda's
# timeout (2 x 5 s connect timeout plus backoff).
EC2_ATTEMPTS = 2
_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)


def route_target(route: dict[str, Any]) -> str:
    """Which kind of target a DescribeRouteTables route points at."""
    gateway = str(route.get("GatewayId") or "")
    for key, kind in (("NatGatewayId", "nat-gateway"), ("TransitGatewayId", "transit-gateway"),
                      ("CoreNetworkArn", "core-network"), ("InstanceId", "instance"),
                      ("VpcPeeringConnectionId", "vpc-peering"), ("EgressOnlyInternetGatewayId", "egress-only"),
                      ("CarrierGatewayId", "carrier-gateway"), ("LocalGatewayId", "local-gateway"),
                      ("NetworkInterfaceId", "network-interface")):
        if route.get(key):
            return kind
    if gateway == "local":
        return "local"
    prefixes = {"igw-": "internet-gateway", "vgw-": "vpn-gateway", "vpce-": "gateway-load-balancer-endpoint"}
    return next((kind for prefix, kind in prefixes.items() if gateway.startswith(prefix)), "other")


def _route(route: dict[str, Any]) -> Route:
    destination = route.get("DestinationCidrBlock") or route.get("DestinationPrefixListId") or \
        route.get("DestinationIpv6CidrBlock") or ""
    return Route(str(destination), route_target(route), str(route.get("State", "active")))


def _table(table: dict[str, Any]) -> RouteTable:
    associations = table.get("Associations") or []
    return RouteTable(
        id=str(table["RouteTableId"]),
        main=any(a.get("Main") for a in associations),
        subnet_ids=tuple(str(a["SubnetId"]) for a in associations if a.get("SubnetId")),
        routes=tuple(_route(r) for r in table.get("Routes") or []),
    )


def _endpoint(endpoint: dict[str, Any]) -> VpcEndpoint:
    return VpcEndpoint(
        service_name=str(endpoint.get("ServiceName", "")),
        kind=str(endpoint.get("VpcEndpointType", "")),
        state=str(endpoint.get("State", "")).lower(),
        private_dns=bool(endpoint.get("PrivateDnsEnabled")),
        route_table_ids=tuple(endpoint.get("RouteTableIds") or ()),
    )


class Ec2Network:
    """Reads one VPC's endpoints and route tables in ``region``."""

    def __init__(self, region: str, session: boto3.Session | None = None, client: Any = None) -> None:
        config = Config(retries={"mode": "standard", "total_max_attempts": EC2_ATTEMPTS},
                        connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)
        self._client = client or (session or boto3.Session(region_name=region)).client(
            "ec2", region_name=region, config=config)

    def _pages(self, operation: str, key: str, vpc_id: str) -> list[dict[str, Any]]:
        paginator = self._client.get_paginator(operation)
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]):
            items.extend(page.get(key) or [])
        return items

    def read(self, vpc_id: str) -> NetworkView:
        action = f"read the endpoints and route tables of {vpc_id}"
        try:
            endpoints = self._pages("describe_vpc_endpoints", "VpcEndpoints", vpc_id)
            tables = self._pages("describe_route_tables", "RouteTables", vpc_id)
        except _UNREACHABLE as e:
            return NetworkView(reachable=False, error=f"{type(e).__name__}: {e}")
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"ec2: {action}") from e
        return NetworkView(
            reachable=True,
            endpoints=tuple(_endpoint(e) for e in endpoints),
            route_tables=tuple(_table(t) for t in tables),
        )
