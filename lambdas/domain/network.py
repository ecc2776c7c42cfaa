"""Can the functions placed in the cluster's VPC reach every AWS service they call? Decided before the bootstrap
changes anything.

Job: given what the deployment needs (``EndpointNeed``: one per VPC endpoint, computed at synth from the specs
of the functions placed in the VPC, stacks/constructs/vpc_endpoints.py) and what the VPC has (its endpoints and
the route tables of the functions' subnets, read through ``NetworkPort``), name every need that no endpoint and
no egress route meets, from every subnet it is not met from.

A need is met from a subnet by:
- an interface endpoint of the service, ``available``, with private DNS on (the SDKs call the service's
  default host name, which resolves to the endpoint only then);
- a gateway endpoint of the service (S3, DynamoDB) on the subnet's route table;
- or an egress route: ``0.0.0.0/0``, active, to a NAT gateway, a transit gateway, a Cloud WAN core network, a
  NAT instance or appliance (instance or network interface) or a Gateway Load Balancer endpoint. A route to an
  internet gateway does not count: a function's network interfaces in a VPC have no public IP address
  (docs/facts.md, "VPC endpoints for the functions in a VPC").
A subnet without an explicit route table association uses the VPC's main route table.

Invariant: pure; reading the VPC is the port's job, and a VPC whose EC2 API cannot be reached is data
(``NetworkView.reachable`` False), answered with every need left unverified rather than a retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from lambdas.domain.errors import InvalidInputError

EndpointKind = Literal["Interface", "Gateway", "Internet"]
EGRESS_DESTINATION = "0.0.0.0/0"
# Route targets that can carry a function's traffic out of the VPC (DescribeRouteTables' Route fields).
EGRESS_TARGETS = ("nat-gateway", "transit-gateway", "core-network", "instance", "network-interface",
                  "gateway-load-balancer-endpoint")


@dataclass(frozen=True)
class EndpointNeed:
    """A VPC endpoint the functions need: ``service`` is the endpoint service's last part (``ecr.dkr`` of
    ``com.amazonaws.<region>.ecr.dkr``); kind ``Internet`` is a host only an egress route reaches. ``clusters``
    limits the need to bootstraps of those clusters (the chart's registry); empty means every bootstrap."""

    service: str
    kind: EndpointKind
    used_by: tuple[str, ...]
    why: str
    clusters: tuple[str, ...] = ()

    def endpoint_name(self, region: str) -> str:
        return self.service if self.kind == "Internet" else f"com.amazonaws.{region}.{self.service}"

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "kind": self.kind, "used_by": list(self.used_by), "why": self.why,
                "clusters": list(self.clusters)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "EndpointNeed":
        return cls(str(data["service"]), data["kind"], tuple(data.get("used_by") or ()), str(data.get("why", "")),
                   tuple(data.get("clusters") or ()))


@dataclass(frozen=True)
class VpcEndpoint:
    service_name: str  # com.amazonaws.<region>.<service>
    kind: str  # Interface | Gateway | GatewayLoadBalancer | ...
    state: str  # available | pending | ...
    private_dns: bool
    route_table_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    destination: str  # CIDR or prefix list id
    target: str  # one of EGRESS_TARGETS, or "internet-gateway", "local", "vpc-peering", ...
    state: str  # active | blackhole


@dataclass(frozen=True)
class RouteTable:
    id: str
    main: bool
    subnet_ids: tuple[str, ...]
    routes: tuple[Route, ...]

    def has_egress(self) -> bool:
        return any(r.destination == EGRESS_DESTINATION and r.state == "active" and r.target in EGRESS_TARGETS
                   for r in self.routes)


@dataclass(frozen=True)
class NetworkView:
    """What the EC2 API shows of the VPC; ``reachable`` False when the API itself could not be reached."""

    reachable: bool
    endpoints: tuple[VpcEndpoint, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    error: str = ""


class NetworkPort(Protocol):
    def read(self, vpc_id: str) -> NetworkView:
        """The VPC's endpoints and route tables (DescribeVpcEndpoints, DescribeRouteTables)."""
        ...


@dataclass(frozen=True)
class NetworkSpec:
    """What the deployment put in the state machine definition: where the functions run, what they need."""

    region: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    needs: tuple[EndpointNeed, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "NetworkSpec":
        try:
            return cls(str(data["region"]), str(data["vpc_id"]), tuple(data["subnet_ids"]),
                       tuple(EndpointNeed.from_json(n) for n in data.get("endpoints") or ()))
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"network: the state machine passes region, vpc_id, subnet_ids and endpoints, not {data!r}"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "vpc_id": self.vpc_id, "subnet_ids": list(self.subnet_ids),
                "endpoints": [n.to_json() for n in self.needs]}


def route_table_of(subnet: str, tables: Sequence[RouteTable]) -> RouteTable | None:
    """The subnet's route table: its explicit association, else the VPC's main table."""
    explicit = next((t for t in tables if subnet in t.subnet_ids), None)
    return explicit or next((t for t in tables if t.main), None)


def _endpoints_of(need: EndpointNeed, region: str, endpoints: Iterable[VpcEndpoint]) -> list[VpcEndpoint]:
    """The VPC's available endpoints of the needed service (China's names carry a ``cn.`` prefix)."""
    name = need.endpoint_name(region)
    return [e for e in endpoints
            if (e.service_name == name or e.service_name.endswith("." + name)) and e.state == "available"]


def unmet_needs(spec: NetworkSpec, view: NetworkView, cluster: str) -> list[str]:
    """One line per need some function subnet cannot reach, naming the endpoint, the subnets and who needs it."""
    problems: list[str] = []
    tables = view.route_tables
    for need in spec.needs:
        if need.clusters and cluster not in need.clusters:
            continue
        found = [] if need.kind == "Internet" else _endpoints_of(need, spec.region, view.endpoints)
        # An interface endpoint with private DNS serves the whole VPC (S3 and DynamoDB have those too); a gateway
        # endpoint serves the subnets whose route table it is on.
        interface = [e for e in found if e.kind == "Interface"]
        gateway = [e for e in found if e.kind == "Gateway"]
        note = ""
        if interface and not any(e.private_dns for e in interface):
            note = " (the endpoint exists but private DNS is off, so the SDK's host name does not reach it)"
        blocked = []
        for subnet in spec.subnet_ids:
            table = route_table_of(subnet, tables)
            if any(e.private_dns for e in interface):
                continue
            if table is not None and any(table.id in e.route_table_ids for e in gateway):
                continue
            if table is not None and table.has_egress():
                continue
            blocked.append(subnet if table is not None else f"{subnet} (no route table in {spec.vpc_id})")
        if blocked:
            what = (f"{need.kind.lower()} endpoint {need.endpoint_name(spec.region)}" if need.kind != "Internet"
                    else f"{need.service} (on the internet: no VPC endpoint reaches it)")
            problems.append(
                f"{what}{note}: subnet(s) {', '.join(blocked)} have neither it nor a NAT route "
                f"({EGRESS_DESTINATION} to a NAT gateway, transit gateway or NAT instance); needed by "
                f"{', '.join(need.used_by)} ({need.why})"
            )
    return problems


def check_network(port: NetworkPort | None, state: dict[str, Any], network: dict[str, Any] | None,
                  cluster: str) -> dict[str, Any]:
    """The state with ``network`` recorded; InvalidInputError naming every unmet need when one is left.

    ``network`` None: the functions are not in a VPC, they reach AWS like any function outside one."""
    out = dict(state)
    if network is None:
        out["network"] = {"status": "SKIPPED", "reason": "the functions are not in a VPC"}
        return out
    spec = NetworkSpec.from_json(network)
    if port is None:
        raise InvalidInputError("network: no port to read the VPC with")
    view = port.read(spec.vpc_id)
    if not view.reachable:
        needed = [n.endpoint_name(spec.region) for n in spec.needs if not n.clusters or cluster in n.clusters]
        raise InvalidInputError(
            f"network: the EC2 API could not be reached from the functions' subnets in {spec.vpc_id} "
            f"({view.error}); Check Network reads the VPC through the interface endpoint "
            f"com.amazonaws.{spec.region}.ec2 or a NAT route. The functions need: {', '.join(needed)} "
            "(docs/foundation.md, Private endpoints)"
        )
    problems = unmet_needs(spec, view, cluster)
    if problems:
        raise InvalidInputError(
            f"network: the functions in {spec.vpc_id} cannot reach what they call; nothing was changed. Add: "
            + " | ".join(problems)
            + " (docs/foundation.md, Private endpoints)"
        )
    out["network"] = {"status": "PASSED", "vpc_id": spec.vpc_id,
                      "reached": [n.endpoint_name(spec.region) for n in spec.needs
                                  if not n.clusters or cluster in n.clusters]}
    return out
