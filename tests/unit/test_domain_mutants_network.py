"""Check Network's answers, word for word: outside a VPC, with no port, with the EC2 API out of reach, with needs
left unmet, and when everything is reachable; and the network spec's round trip through the state machine.

Given the network section the deployment writes into the state machine and what the EC2 API shows of the VPC,
when Check Network runs, then it skips outside a VPC, passes naming each endpoint reached, and otherwise refuses
with one sentence that lists, per unmet need, the endpoint, the blocked subnets and who needs it, so a person
knows which endpoint to add; nothing is changed before that.
"""

from __future__ import annotations

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.network import (
    EndpointNeed, NetworkSpec, NetworkView, Route, RouteTable, VpcEndpoint, check_network, unmet_needs,
)

REGION = "eu-west-1"
NEEDS = (EndpointNeed("eks", "Interface", ("Preflight", "Start Step"), "the Kubernetes API token"),
         EndpointNeed("ecr.dkr", "Interface", ("Install Controller",), "the controller image", ("prod",)),
         EndpointNeed("charts.example.com", "Internet", ("Install Controller",), "the chart", ("edge",)))
SPEC = NetworkSpec(REGION, "vpc-1", ("subnet-a", "subnet-b"), NEEDS)
MAIN = RouteTable("rtb-main", True, (), (Route("10.0.0.0/16", "local", "active"),))


class Port:
    def __init__(self, view: NetworkView) -> None:
        self.view, self.asked = view, []

    def read(self, vpc_id: str) -> NetworkView:
        self.asked.append(vpc_id)
        return self.view


def endpoint(service: str, *, dns: bool = True) -> VpcEndpoint:
    return VpcEndpoint(f"com.amazonaws.{REGION}.{service}", "Interface", "available", dns)


def test_outside_a_vpc_the_check_is_skipped_saying_why():
    out = check_network(None, {"request": {}}, None, "prod")
    assert out == {"request": {}, "network": {"status": "SKIPPED", "reason": "the functions are not in a VPC"}}


def test_a_vpc_without_a_port_to_read_it_is_refused():
    with pytest.raises(InvalidInputError, match="^network: no port to read the VPC with$"):
        check_network(None, {}, SPEC.to_json(), "prod")


def test_everything_reachable_passes_naming_the_endpoints_this_cluster_needs():
    port = Port(NetworkView(True, (endpoint("eks"), endpoint("ecr.dkr")), (MAIN,)))
    out = check_network(port, {"request": {}}, SPEC.to_json(), "prod")
    assert port.asked == ["vpc-1"]
    assert out["network"] == {"status": "PASSED", "vpc_id": "vpc-1",
                              "reached": [f"com.amazonaws.{REGION}.eks", f"com.amazonaws.{REGION}.ecr.dkr"]}


def test_an_unreachable_ec2_api_is_refused_naming_every_need_of_the_cluster():
    port = Port(NetworkView(False, error="connect timeout"))
    with pytest.raises(InvalidInputError) as caught:
        check_network(port, {}, SPEC.to_json(), "edge")
    assert str(caught.value) == (
        "network: the EC2 API could not be reached from the functions' subnets in vpc-1 (connect timeout); Check "
        f"Network reads the VPC through the interface endpoint com.amazonaws.{REGION}.ec2 or a NAT route. The "
        f"functions need: com.amazonaws.{REGION}.eks, charts.example.com (docs/foundation.md, Private endpoints)")


def test_unmet_needs_are_refused_in_one_sentence_naming_each():
    # Given the eks endpoint with private DNS off, no route out, and the edge cluster's chart host on the internet
    port = Port(NetworkView(True, (endpoint("eks", dns=False),), (MAIN,)))
    with pytest.raises(InvalidInputError) as caught:
        check_network(port, {}, SPEC.to_json(), "edge")
    assert str(caught.value) == (
        "network: the functions in vpc-1 cannot reach what they call; nothing was changed. Add: interface endpoint "
        f"com.amazonaws.{REGION}.eks (the endpoint exists but private DNS is off, so the SDK's host name does not "
        "reach it): subnet(s) subnet-a, subnet-b have neither it nor a NAT route (0.0.0.0/0 to a NAT gateway, "
        "transit gateway or NAT instance); needed by Preflight, Start Step (the Kubernetes API token) | "
        "charts.example.com (on the internet: no VPC endpoint reaches it): subnet(s) subnet-a, subnet-b have neither "
        "it nor a NAT route (0.0.0.0/0 to a NAT gateway, transit gateway or NAT instance); needed by Install "
        "Controller (the chart) (docs/foundation.md, Private endpoints)")


def test_an_internet_need_with_a_same_named_endpoint_is_still_unmet_without_a_route_out():
    # Given an interface endpoint whose name happens to end like the internet host
    spec = NetworkSpec(REGION, "vpc-1", ("subnet-a",), (NEEDS[2],))
    view = NetworkView(True, (VpcEndpoint("com.amazonaws.x.charts.example.com", "Interface", "available", True),),
                       (MAIN,))
    assert len(unmet_needs(spec, view, "edge")) == 1


def test_a_china_endpoint_name_with_its_prefix_counts():
    spec = NetworkSpec("cn-north-1", "vpc-1", ("subnet-a",), (NEEDS[0],))
    view = NetworkView(True, (VpcEndpoint("cn.com.amazonaws.cn-north-1.eks", "Interface", "available", True),), (MAIN,))
    assert unmet_needs(spec, view, "prod") == []
    other = NetworkView(True, (VpcEndpoint("cn.com.amazonaws.cn-north-1Xeks", "Interface", "available", True),),
                        (MAIN,))
    assert len(unmet_needs(spec, other, "prod")) == 1


def test_needs_of_other_clusters_do_not_stop_the_check_of_the_rest():
    # Given the first need is another cluster's and the second unmet for this one
    spec = NetworkSpec(REGION, "vpc-1", ("subnet-a",), (NEEDS[1], NEEDS[0]))
    problems = unmet_needs(spec, NetworkView(True, (), (MAIN,)), "edge")
    assert len(problems) == 1 and problems[0].startswith(f"interface endpoint com.amazonaws.{REGION}.eks:")


def test_a_need_round_trips_through_the_state_machine_definition():
    need = NEEDS[1]
    assert need.to_json() == {"service": "ecr.dkr", "kind": "Interface", "used_by": ["Install Controller"],
                              "why": "the controller image", "clusters": ["prod"]}
    assert EndpointNeed.from_json(need.to_json()) == need
    assert EndpointNeed.from_json({"service": "s3", "kind": "Gateway"}) == EndpointNeed("s3", "Gateway", (), "", ())
    assert NetworkSpec.from_json(SPEC.to_json()) == SPEC


def test_a_malformed_network_section_is_refused_quoting_it():
    with pytest.raises(InvalidInputError, match=r"^network: the state machine passes region, vpc_id, subnet_ids and "
                                                r"endpoints, not \{'region': 'eu-west-1'\}$"):
        NetworkSpec.from_json({"region": REGION})
