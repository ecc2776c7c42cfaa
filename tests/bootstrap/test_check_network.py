"""Check Network (lambdas/domain/network.py and its handler): the bootstrap refuses to start, naming each endpoint,
when a function subnet reaches a service it needs through neither a VPC endpoint nor a NAT route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.network import (
    EndpointNeed,
    NetworkSpec,
    NetworkView,
    Route,
    RouteTable,
    VpcEndpoint,
    check_network,
    unmet_needs,
)
from lambdas.handlers import bootstrap_check_network
from lambdas.handlers.bootstrap_check_network import use_network
from stacks.config import parse_config
from stacks.constructs.specs import ALL_HANDLERS
from stacks.constructs.vpc_endpoints import vpc_endpoint_needs
from tests.bootstrap.conftest import CLUSTER
from tests.infrastructure.conftest import PRIVATE_SUBNETS, PRIVATE_VPC, private_mirror_variant

REGION = "us-east-1"
A, B = "subnet-a", "subnet-b"
NEEDS = (
    EndpointNeed("eks", "Interface", ("BootstrapInstallController",), "eks:DescribeCluster"),
    EndpointNeed("ecr.dkr", "Interface", ("BootstrapInstallController",), "helm pulls the chart", ("c1",)),
    EndpointNeed("s3", "Gateway", ("BootstrapInstallController",), "chart layers", ("c1",)),
    EndpointNeed("aws.github.io", "Internet", ("BootstrapInstallController",), "eks-charts", ("c2",)),
)
SPEC = NetworkSpec(REGION, "vpc-1", (A, B), NEEDS)
LOCAL = Route("10.0.0.0/16", "local", "active")


def endpoint(service: str, kind: str = "Interface", *, dns: bool = True, tables: tuple[str, ...] = (),
             state: str = "available") -> VpcEndpoint:
    return VpcEndpoint(f"com.amazonaws.{REGION}.{service}", kind, state, dns and kind == "Interface", tables)


def table(id: str, *routes: Route, main: bool = False, subnets: tuple[str, ...] = ()) -> RouteTable:
    return RouteTable(id, main, subnets, (LOCAL, *routes))


EVERY_ENDPOINT = (endpoint("eks"), endpoint("ecr.dkr"), endpoint("s3", "Gateway", tables=("rtb-main",)))
MAIN_ONLY = (table("rtb-main", main=True),)


def nat(target: str = "nat-gateway", state: str = "active") -> Route:
    return Route("0.0.0.0/0", target, state)


CASES = [
    pytest.param("c1", EVERY_ENDPOINT, MAIN_ONLY, [], id="every-endpoint-no-nat"),
    pytest.param("c1", (), (table("rtb-main", nat(), main=True),), [], id="nat-gateway-only"),
    pytest.param("c1", (), (table("rtb-main", nat("transit-gateway"), main=True),), [], id="central-egress-via-tgw"),
    pytest.param("c1", (), (table("rtb-main", nat("internet-gateway"), main=True),),
                 ["com.amazonaws.us-east-1.eks", "com.amazonaws.us-east-1.ecr.dkr", "com.amazonaws.us-east-1.s3"],
                 id="internet-gateway-is-no-egress-for-lambda"),
    pytest.param("c1", (), (table("rtb-main", nat(state="blackhole"), main=True),),
                 ["com.amazonaws.us-east-1.eks", "com.amazonaws.us-east-1.ecr.dkr", "com.amazonaws.us-east-1.s3"],
                 id="blackhole-nat-route"),
    pytest.param("c1", (endpoint("eks", dns=False), *EVERY_ENDPOINT[1:]), MAIN_ONLY,
                 ["com.amazonaws.us-east-1.eks (the endpoint exists but private DNS is off"], id="private-dns-off"),
    pytest.param("c1", (endpoint("eks", state="pending"), *EVERY_ENDPOINT[1:]), MAIN_ONLY,
                 ["com.amazonaws.us-east-1.eks"], id="endpoint-still-pending"),
    pytest.param("c1", EVERY_ENDPOINT, (*MAIN_ONLY, table("rtb-b", subnets=(B,))),
                 ["gateway endpoint com.amazonaws.us-east-1.s3: subnet(s) subnet-b have"], id="gateway-not-on-b"),
    pytest.param("c1", (*EVERY_ENDPOINT[:2], endpoint("s3", "Interface")), MAIN_ONLY, [],
                 id="s3-interface-endpoint-serves-too"),
    pytest.param("c2", (endpoint("eks"),), MAIN_ONLY,
                 ["aws.github.io (on the internet: no VPC endpoint reaches it)"], id="eks-charts-needs-a-nat"),
    pytest.param("c2", (endpoint("eks"),), (table("rtb-main", nat("instance"), main=True),), [],
                 id="eks-charts-through-a-nat-instance"),
    pytest.param("c1", EVERY_ENDPOINT, (), ["subnet-a (no route table in vpc-1), subnet-b (no route table"],
                 id="subnets-not-in-the-vpc"),
]


@pytest.mark.parametrize(("cluster", "endpoints", "tables", "named"), CASES)
def test_each_unmet_need_is_named_with_its_subnets(cluster: str, endpoints: tuple, tables: tuple,
                                                   named: list[str]) -> None:
    # Given the VPC as EC2 shows it / When the needs of a bootstrap of `cluster` are checked
    problems = unmet_needs(SPEC, NetworkView(True, endpoints, tables), cluster)
    # Then exactly the unmet ones are named (the others are met by an endpoint or an egress route)
    assert len(problems) == len(named), problems
    for problem, expected in zip(problems, named, strict=True):
        assert expected in problem, problem
        assert "needed by BootstrapInstallController" in problem


class FixedView:
    def __init__(self, view: NetworkView) -> None:
        self.view, self.read_vpcs = view, []

    def read(self, vpc_id: str) -> NetworkView:
        self.read_vpcs.append(vpc_id)
        return self.view


STATE = {"request": {"cluster": "c1"}, "changes": []}


def test_a_network_that_reaches_everything_is_recorded_and_the_state_goes_on() -> None:
    port = FixedView(NetworkView(True, EVERY_ENDPOINT, MAIN_ONLY))
    out = check_network(port, STATE, SPEC.to_json(), "c1")
    assert port.read_vpcs == ["vpc-1"]
    assert out["network"]["status"] == "PASSED" and out["request"] == STATE["request"]
    assert out["network"]["reached"] == ["com.amazonaws.us-east-1.eks", "com.amazonaws.us-east-1.ecr.dkr",
                                         "com.amazonaws.us-east-1.s3"]


def test_an_unmet_need_refuses_before_anything_changes() -> None:
    port = FixedView(NetworkView(True, (), MAIN_ONLY))
    with pytest.raises(InvalidInputError, match=r"cannot reach what they call; nothing was changed.*"
                                                r"com\.amazonaws\.us-east-1\.eks.*\| .*ecr\.dkr.*\| .*s3"):
        check_network(port, STATE, SPEC.to_json(), "c1")


def test_an_unreachable_ec2_api_names_its_endpoint_and_every_need() -> None:
    # Given subnets from which even the EC2 API cannot be reached
    port = FixedView(NetworkView(False, error="ConnectTimeoutError: Connect timeout on endpoint URL"))
    # Then the refusal names the ec2 endpoint the check reads with, and everything the bootstrap needs
    with pytest.raises(InvalidInputError, match=r"EC2 API could not be reached.*com\.amazonaws\.us-east-1\.ec2 .*"
                                                r"need: com\.amazonaws\.us-east-1\.eks, .*ecr\.dkr, .*s3"):
        check_network(port, STATE, SPEC.to_json(), "c1")


def test_outside_a_vpc_nothing_is_read() -> None:
    out = check_network(None, STATE, None, "c1")
    assert out["network"]["status"] == "SKIPPED"


# ---------------------------------------------------------------------------------------------------------
# The handler, with the network the stack computes for the private example with an ECR mirror
# ---------------------------------------------------------------------------------------------------------
EXAMPLE = json.loads((Path(__file__).resolve().parents[2] / "config" / "example.json").read_text())
_PRIVATE = private_mirror_variant({**EXAMPLE, "clusters": [{**EXAMPLE["clusters"][0], "name": CLUSTER}],
                                   "applications": [{**a, "cluster": CLUSTER} for a in EXAMPLE["applications"]]})
FULL_NETWORK = NetworkSpec(REGION, PRIVATE_VPC, tuple(PRIVATE_SUBNETS),
                           tuple(vpc_endpoint_needs(ALL_HANDLERS, parse_config(_PRIVATE)))).to_json()


class AllReachable:
    """A VPC with every endpoint the needs name (interface ones with private DNS) and no NAT."""

    def read(self, vpc_id: str) -> NetworkView:
        needs = NetworkSpec.from_json(FULL_NETWORK).needs
        endpoints = tuple(endpoint(n.service, n.kind, tables=("rtb-main",)) for n in needs if n.kind != "Internet")
        return NetworkView(True, endpoints, MAIN_ONLY)


@pytest.fixture
def network_port() -> Any:
    ports: list[Any] = []
    use_network(lambda region: ports[-1])
    yield ports
    use_network(None)


def test_the_handler_reads_the_vpc_and_passes(network_port: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    network_port.append(AllReachable())
    out = bootstrap_check_network.handler({"state": {**STATE, "request": {"cluster": CLUSTER}},
                                           "network": FULL_NETWORK}, None)
    assert out["network"]["status"] == "PASSED"


@pytest.mark.parametrize(("event", "message"), [
    pytest.param({"network": None}, "state: expected the bootstrap state", id="no-state"),
    pytest.param({"state": STATE, "network": ["eks"]}, "network: expected the deployment's network", id="bad-network"),
])
def test_the_handler_refuses_a_payload_the_state_machine_never_sends(event: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        bootstrap_check_network.handler(event, None)
