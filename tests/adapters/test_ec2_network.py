"""The EC2 network adapter reads a VPC's endpoints and route tables (moto) the way Check Network judges them; an
EC2 API it cannot reach is data, not a retry; what EC2 refuses is mapped."""

from __future__ import annotations

import socket
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.adapters.ec2_network import Ec2Network, route_target
from lambdas.domain.errors import AccessDeniedError
from lambdas.domain.network import EndpointNeed, NetworkSpec, unmet_needs

REGION = "eu-west-1"
NEEDS = (
    EndpointNeed("eks", "Interface", ("BootstrapCheckController",), "eks:DescribeCluster"),
    EndpointNeed("ecr.dkr", "Interface", ("BootstrapInstallController",), "helm pulls the chart"),
    EndpointNeed("s3", "Gateway", ("BootstrapInstallController",), "chart layers"),
    EndpointNeed("dynamodb", "Gateway", ("GateKeeper",), "budget table"),
)


class Vpc:
    """A VPC in moto with two private subnets, each with its own route table and no egress route."""

    def __init__(self) -> None:
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.id = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets, self.tables = [], []
        for i, az in ((1, "a"), (2, "b")):
            subnet = self.ec2.create_subnet(VpcId=self.id, CidrBlock=f"10.0.{i}.0/24",
                                            AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
            table = self.ec2.create_route_table(VpcId=self.id)["RouteTable"]["RouteTableId"]
            self.ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
            self.subnets.append(subnet)
            self.tables.append(table)

    def interface_endpoint(self, service: str, *, private_dns: bool = True) -> None:
        self.ec2.create_vpc_endpoint(VpcId=self.id, ServiceName=f"com.amazonaws.{REGION}.{service}",
                                     VpcEndpointType="Interface", SubnetIds=self.subnets,
                                     PrivateDnsEnabled=private_dns)

    def gateway_endpoint(self, service: str, tables: list[str]) -> None:
        self.ec2.create_vpc_endpoint(VpcId=self.id, ServiceName=f"com.amazonaws.{REGION}.{service}",
                                     VpcEndpointType="Gateway", RouteTableIds=tables)

    def nat_route(self, table: str) -> None:
        public = self.ec2.create_subnet(VpcId=self.id, CidrBlock="10.0.100.0/24")["Subnet"]["SubnetId"]
        allocation = self.ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat = self.ec2.create_nat_gateway(SubnetId=public, AllocationId=allocation)["NatGateway"]["NatGatewayId"]
        self.ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)

    def internet_gateway_route(self, table: str) -> None:
        igw = self.ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        self.ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=self.id)
        self.ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)

    def unmet(self) -> list[str]:
        view = Ec2Network(REGION).read(self.id)
        assert view.reachable
        return unmet_needs(NetworkSpec(REGION, self.id, tuple(self.subnets), NEEDS), view, "c1")


def _missing(problems: list[str]) -> list[str]:
    return [p.split(":")[0] for p in problems]


@mock_aws
def test_a_vpc_without_endpoints_or_nat_misses_everything() -> None:
    # Given private subnets with no endpoint and no NAT
    vpc = Vpc()
    # When the adapter reads the VPC and the needs are judged / Then each endpoint is named, for both subnets
    problems = vpc.unmet()
    assert _missing(problems) == [f"interface endpoint com.amazonaws.{REGION}.eks",
                                  f"interface endpoint com.amazonaws.{REGION}.ecr.dkr",
                                  f"gateway endpoint com.amazonaws.{REGION}.s3",
                                  f"gateway endpoint com.amazonaws.{REGION}.dynamodb"]
    assert all(f"subnet(s) {vpc.subnets[0]}, {vpc.subnets[1]} have" in p for p in problems)


@mock_aws
def test_endpoints_read_back_as_created_meet_their_needs() -> None:
    # Given every interface endpoint with private DNS, and the gateway endpoints on both route tables
    vpc = Vpc()
    vpc.interface_endpoint("eks")
    vpc.interface_endpoint("ecr.dkr")
    vpc.gateway_endpoint("s3", vpc.tables)
    vpc.gateway_endpoint("dynamodb", vpc.tables)
    # Then nothing is missing
    assert vpc.unmet() == []


@mock_aws
def test_a_gateway_endpoint_serves_only_the_route_tables_it_is_on() -> None:
    vpc = Vpc()
    vpc.interface_endpoint("eks")
    vpc.interface_endpoint("ecr.dkr")
    vpc.gateway_endpoint("s3", vpc.tables[:1])
    vpc.gateway_endpoint("dynamodb", vpc.tables)
    problems = vpc.unmet()
    assert _missing(problems) == [f"gateway endpoint com.amazonaws.{REGION}.s3"]
    assert f"subnet(s) {vpc.subnets[1]} have" in problems[0]


@mock_aws
def test_an_interface_endpoint_without_private_dns_is_named_as_such() -> None:
    vpc = Vpc()
    vpc.interface_endpoint("eks", private_dns=False)
    problems = vpc.unmet()
    assert "com.amazonaws.eu-west-1.eks (the endpoint exists but private DNS is off" in problems[0]


@mock_aws
def test_a_nat_route_serves_its_subnet_an_internet_gateway_route_does_not() -> None:
    # Given subnet a behind a NAT gateway and subnet b with a route to an internet gateway only
    vpc = Vpc()
    vpc.nat_route(vpc.tables[0])
    vpc.internet_gateway_route(vpc.tables[1])
    # Then only subnet b is named, for every need (a function's network interface has no public IP)
    problems = vpc.unmet()
    assert len(problems) == len(NEEDS)
    assert all(f"subnet(s) {vpc.subnets[1]} have" in p for p in problems)


@mock_aws
def test_the_main_route_table_serves_subnets_without_an_association() -> None:
    # Given a subnet without its own route table, and a NAT route on the VPC's main table
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.2.0/24")["Subnet"]["SubnetId"]
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"])
    ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0",
                     NatGatewayId=nat["NatGateway"]["NatGatewayId"])
    # When read / Then the subnet reaches everything through the main table's NAT route
    view = Ec2Network(REGION).read(vpc)
    assert unmet_needs(NetworkSpec(REGION, vpc, (subnet,), NEEDS), view, "c1") == []


def test_an_ec2_api_out_of_reach_is_data_not_an_error() -> None:
    # Given an EC2 endpoint nobody answers (a subnet with neither an ec2 endpoint nor a NAT route)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = boto3.client("ec2", region_name=REGION, endpoint_url=url,
                          config=Config(retries={"total_max_attempts": 1}, connect_timeout=1))
    # When the adapter reads / Then it answers "unreachable", with the cause, instead of raising
    view = Ec2Network(REGION, client=client).read("vpc-0123456789abcdef0")
    assert not view.reachable and "EndpointConnectionError" in view.error


def test_what_ec2_refuses_is_a_domain_error() -> None:
    client = boto3.client("ec2", region_name=REGION)
    stub = Stubber(client)
    stub.add_client_error("describe_vpc_endpoints", service_error_code="UnauthorizedOperation",
                          service_message="You are not authorized to perform this operation.", http_status_code=403)
    stub.activate()
    with pytest.raises(AccessDeniedError, match="ec2: read the endpoints and route tables of vpc-1"):
        Ec2Network(REGION, client=client).read("vpc-1")


@pytest.mark.parametrize(("route", "target"), [
    ({"NatGatewayId": "nat-1"}, "nat-gateway"),
    ({"TransitGatewayId": "tgw-1"}, "transit-gateway"),
    ({"CoreNetworkArn": "arn:aws:networkmanager::1:core-network/c"}, "core-network"),
    ({"InstanceId": "i-1", "NetworkInterfaceId": "eni-1"}, "instance"),
    ({"NetworkInterfaceId": "eni-1"}, "network-interface"),
    ({"GatewayId": "igw-1"}, "internet-gateway"),
    ({"GatewayId": "vgw-1"}, "vpn-gateway"),
    ({"GatewayId": "vpce-1"}, "gateway-load-balancer-endpoint"),
    ({"GatewayId": "local"}, "local"),
    ({"VpcPeeringConnectionId": "pcx-1"}, "vpc-peering"),
    ({"EgressOnlyInternetGatewayId": "eigw-1"}, "egress-only"),
], ids=lambda v: v if isinstance(v, str) else next(iter(v)))
def test_each_route_target_is_named_by_the_field_that_carries_it(route: dict[str, Any], target: str) -> None:
    assert route_target(route) == target
