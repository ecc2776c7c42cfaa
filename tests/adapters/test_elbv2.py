"""ELBv2 adapter under moto: target health and target group settings of a real-shaped ALB setup."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas.adapters.elbv2 import ElbAdapter
from lambdas.domain.errors import InvalidInputError, NotFoundError
from lambdas.domain.ports import HEALTHY, TargetGroup, TargetHealth

REGION = "eu-west-1"


class Alb:
    """An ALB with an IP target group (LBC-style health checks) behind a listener, two pod IPs registered."""

    def __init__(self) -> None:
        ec2 = boto3.client("ec2", region_name=REGION)
        elbv2 = boto3.client("elbv2", region_name=REGION)
        self.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"][
                "SubnetId"
            ]
            for i, az in ((1, "a"), (2, "b"))
        ]
        self.lb = elbv2.create_load_balancer(Name="k8s-readines-alb", Subnets=subnets, Type="application")[
            "LoadBalancers"
        ][0]["LoadBalancerArn"]
        self.tg = elbv2.create_target_group(
            Name="k8s-readines-nginxsvc",
            Protocol="HTTP",
            Port=80,
            VpcId=self.vpc,
            TargetType="ip",
            HealthCheckIntervalSeconds=15,
            HealthCheckTimeoutSeconds=5,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=self.tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "45"}]
        )
        elbv2.create_listener(
            LoadBalancerArn=self.lb,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": self.tg}],
        )
        elbv2.register_targets(
            TargetGroupArn=self.tg, Targets=[{"Id": "10.0.1.10", "Port": 80}, {"Id": "10.0.2.20", "Port": 80}]
        )


@pytest.fixture(scope="module")
def alb() -> Iterator[Alb]:
    with mock_aws():
        yield Alb()


@pytest.fixture
def elb(alb: Alb) -> ElbAdapter:
    return ElbAdapter.for_region(REGION)


def test_target_health_lists_every_registered_pod_ip(alb: Alb, elb: ElbAdapter) -> None:
    # Given two pod IPs registered in the target group (moto reports every target healthy at once)
    # When target health is described
    health = elb.describe_target_health(alb.tg)
    # Then each target comes back as a TargetHealth with its IP, port and state
    assert sorted(health, key=lambda t: t.target_id) == [
        TargetHealth("10.0.1.10", 80, HEALTHY),
        TargetHealth("10.0.2.20", 80, HEALTHY),
    ]


def test_target_group_combines_settings_and_deregistration_delay(alb: Alb, elb: ElbAdapter) -> None:
    # Given an IP target group with LBC health checks, a 45 s deregistration delay, attached to the ALB
    # When it is described
    tg = elb.describe_target_group(alb.tg)
    # Then settings from DescribeTargetGroups and the attribute from DescribeTargetGroupAttributes are combined
    assert tg == TargetGroup(
        arn=alb.tg,
        target_type="ip",
        protocol="HTTP",
        port=80,
        health_check_interval_seconds=15,
        health_check_timeout_seconds=5,
        healthy_threshold=2,
        unhealthy_threshold=2,
        load_balancer_arns=(alb.lb,),
        deregistration_delay_seconds=45,
    )


def test_one_describe_call_answers_several_groups_in_the_order_asked(alb: Alb, elb: ElbAdapter) -> None:
    # Given a second target group in the account, not behind any listener
    other = boto3.client("elbv2", region_name=REGION).create_target_group(
        Name="k8s-other-websvc", Protocol="HTTP", Port=8080, VpcId=alb.vpc, TargetType="ip",
    )["TargetGroups"][0]["TargetGroupArn"]
    client = boto3.client("elbv2", region_name=REGION)
    adapter = ElbAdapter(client)
    calls = []
    client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    # When both are described in one call, the second first
    got = adapter.describe_target_group_settings([other, alb.tg, other])
    # Then one DescribeTargetGroups call answered both, in the order asked, each once
    assert calls == ["DescribeTargetGroups"]
    assert [s.arn for s in got] == [other, alb.tg]
    assert got[1].with_delay(45) == elb.describe_target_group(alb.tg) and got[0].load_balancer_arns == ()
    # and the delay is one DescribeTargetGroupAttributes call
    assert adapter.describe_deregistration_delay(alb.tg) == 45 and calls[1:] == ["DescribeTargetGroupAttributes"]


@pytest.mark.parametrize("count", [0, 21])
def test_a_describe_call_names_one_to_twenty_groups(alb: Alb, elb: ElbAdapter, count: int) -> None:
    # ELB refuses more than 20 (docs/facts.md, "ELBv2 DescribeTargetGroups: 20 groups a call"); moto does not,
    # so the adapter refuses before calling
    arns = [alb.tg[:-4] + f"{i:04x}" for i in range(count)]
    with pytest.raises(InvalidInputError, match=f"1 to 20 target groups, not {count}"):
        elb.describe_target_group_settings(arns)


def test_one_missing_group_fails_the_whole_describe_call(alb: Alb, elb: ElbAdapter) -> None:
    with pytest.raises(NotFoundError):
        elb.describe_target_group_settings([alb.tg, alb.tg[:-4] + "ffff"])


@pytest.mark.parametrize("call", ["describe_target_health", "describe_target_group"])
def test_unknown_target_group_is_not_found(alb: Alb, elb: ElbAdapter, call: str) -> None:
    # Given an ARN with no target group behind it
    missing = alb.tg[:-4] + "ffff"
    # When it is described / Then NotFoundError names it, caused by the AWS error
    with pytest.raises(NotFoundError, match="ffff") as caught:
        getattr(elb, call)(missing)
    assert isinstance(caught.value.__cause__, ClientError)


def test_deregister_starts_the_drain_of_exactly_the_named_targets(alb: Alb, elb: ElbAdapter) -> None:
    # Given a third pod IP registered next to the two others
    boto3.client("elbv2", region_name=REGION).register_targets(
        TargetGroupArn=alb.tg, Targets=[{"Id": "10.0.1.30", "Port": 80}]
    )
    # When albgate deregisters it
    elb.deregister_targets(alb.tg, [("10.0.1.30", 80)])
    # Then it is no longer serving (moto moves it out at once; ELB shows it draining) and the others are untouched
    states = {t.target_id: t.state for t in elb.describe_target_health(alb.tg)}
    assert states.get("10.0.1.30") in (None, "draining", "unused")
    assert states["10.0.1.10"] == states["10.0.2.20"] == HEALTHY


def test_register_adds_exactly_the_named_targets_on_their_port(alb: Alb, elb: ElbAdapter) -> None:
    # Given a pod IP nobody registered
    # When albgate registers it on the group's port
    elb.register_targets(alb.tg, [("10.0.1.40", 80)])
    # Then it is a target with that port, and the others are untouched
    health = {t.target_id: t for t in elb.describe_target_health(alb.tg)}
    assert (health["10.0.1.40"].port, health["10.0.1.40"].state) == (80, HEALTHY)  # moto: healthy at once
    assert health["10.0.1.10"].state == health["10.0.2.20"].state == HEALTHY
    # And an empty list makes no call at all
    elb.register_targets(alb.tg[:-4] + "ffff", [])
    elb.deregister_targets(alb.tg, [("10.0.1.40", 80)])  # the module's ALB as the other tests expect it


def test_register_in_an_unknown_group_is_not_found(alb: Alb, elb: ElbAdapter) -> None:
    with pytest.raises(NotFoundError, match="ffff"):
        elb.register_targets(alb.tg[:-4] + "ffff", [("10.0.1.41", 80)])


def test_deregistering_a_target_that_already_left_is_not_an_error(alb: Alb, elb: ElbAdapter) -> None:
    # Given an IP that is not (any more) registered / When it is deregistered / Then nothing is raised
    elb.deregister_targets(alb.tg, [("10.0.9.99", 80)])
    # and an empty list makes no call at all
    elb.deregister_targets(alb.tg[:-4] + "ffff", [])


def test_deregister_from_an_unknown_group_is_not_found(alb: Alb, elb: ElbAdapter) -> None:
    with pytest.raises(NotFoundError, match="ffff"):
        elb.deregister_targets(alb.tg[:-4] + "ffff", [("10.0.1.10", 80)])
