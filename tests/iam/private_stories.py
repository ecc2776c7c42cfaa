"""The bootstrap of a private cluster without a NAT, its controller chart mirrored to ECR, told in a world of its own.

Job: what the deployed bootstrap state machine hands its first steps (``bootstrap_payloads``: Validate Input's
``controller_defaults``, Check Network's ``network``, read from the synthesized definition, never written here);
the cluster's VPC in moto under the ids the config names, with every endpoint the network lists
(``build_private_vpc``); and the story that records, through the real handlers and adapters, the calls only a
private deployment makes: Check Network reading the VPC (``ec2:DescribeVpcEndpoints``/``DescribeRouteTables``),
the install's registry login (``ecr:GetAuthorizationToken``) and helm's pull of the chart from the mirror
(``ecr:BatchGetImage``/``GetDownloadUrlForLayer``, filed by tests/iam/recorder.py).

Invariant: the VPC is built with the world's own clients before recording starts; the story's inputs come from
the template (the configured clusters, the computed endpoints), so a change to either is recorded as deployed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from albgate.sfn_local.extract import extract_state_machine
from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, state_machine_id
from tests.adapters import k8s_objects as k8s
from tests.iam.recorder import RecordedCall
from tests.iam.world import StoryAborted, World, called


def bootstrap_payloads(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Validate Input's ``controller_defaults`` and Check Network's ``network`` as the definition passes them."""
    states = extract_state_machine(template, state_machine_id(template, BOOTSTRAP_STATE_MACHINE_PREFIX)).definition[
        "States"]
    # CDK leaves a null value out of the task's parameters: no "network" when the functions are not in a VPC
    return states["Validate Input"]["Parameters"]["controller_defaults"], states["Check Network"]["Parameters"].get(
        "network")


@contextmanager
def _moto_names(vpc_id: str, subnet_ids: list[str]) -> Iterator[None]:
    """moto names the next VPC and subnets as the config does (it has no way to choose an id)."""
    subnets = iter(subnet_ids)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("moto.ec2.models.vpcs.random_vpc_id", lambda: vpc_id)
        mp.setattr("moto.ec2.models.subnets.random_subnet_id", lambda: next(subnets))
        yield


def build_private_vpc(world: World) -> None:
    """The configured VPC and subnets, no NAT, and an endpoint for each need the network lists (interface ones
    with private DNS in the subnets; gateway ones on the VPC's main route table, which the subnets use)."""
    _, network = bootstrap_payloads(world.template)
    assert network is not None, "the private variant's functions are not in a VPC"
    with _moto_names(network["vpc_id"], list(network["subnet_ids"])):
        vpc = world.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [world.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24",
                                           AvailabilityZone=f"{world.region}{az}")["Subnet"]["SubnetId"]
                   for i, az in ((1, "a"), (2, "b"))]
    assert (vpc, subnets) == (network["vpc_id"], list(network["subnet_ids"]))
    (main,) = world.ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
    for need in network["endpoints"]:
        name = f"com.amazonaws.{network['region']}.{need['service']}"
        if need["kind"] == "Interface":
            world.ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=name, VpcEndpointType="Interface",
                                          SubnetIds=subnets, PrivateDnsEnabled=True)
        elif need["kind"] == "Gateway":
            world.ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=name, VpcEndpointType="Gateway",
                                          RouteTableIds=[main["RouteTableId"]])


def _all(*checks: tuple[bool, str]) -> str:
    return "; ".join(message for ok, message in checks if not ok)


def private_bootstrap_story(world: World) -> None:
    cluster = world.config.clusters[0]
    defaults, network = bootstrap_payloads(world.template)
    mirror = cluster.ecr_chart_mirror
    assert mirror is not None, "the private variant's chart comes from an ECR mirror"
    world.apiserver.put("namespaces", k8s.namespace("kube-system"))
    step = world.step
    state = step("private-validate", "BootstrapValidate",
                 {"request": {"cluster": cluster.name, "controller": {"region": world.region}},
                  "execution_name": "iam-private", "controller_defaults": defaults},
                 lambda out, calls: _all(
                     (not calls, f"AWS called while validating: {calls}"),
                     (out["request"]["controller"]["chart_repository"] == cluster.controller.chart_repository,
                      "the configured chart repository was not taken")))
    state = step("private-check-network", "BootstrapCheckNetwork", {"state": state, "network": network},
                 lambda out, calls: _all(
                     (out["network"]["status"] == "PASSED", f"network {out['network']}"),
                     (bool(called(calls, "ec2:DescribeVpcEndpoints")), "the VPC's endpoints were not read"),
                     (bool(called(calls, "ec2:DescribeRouteTables")), "the route tables were not read")))

    def installed(out: Any, calls: list[RecordedCall]) -> str:
        verbs = [r[:2] for r in world.helm_runs]
        return _all(
            (verbs[-2:] == [["registry", "login"], ["upgrade", "--install"]], f"helm ran {world.helm_runs}"),
            (bool(called(calls, "ecr:GetAuthorizationToken")), "no ECR token was asked for the login"),
            ({c.params.get("repositoryName") for c in called(calls, "ecr:BatchGetImage")} == {mirror.repository},
             "the chart was not pulled from the mirror's repository"))

    with world.helm_process():
        step("private-install-controller", "BootstrapInstallController", state, installed)


PRIVATE_STORIES: dict[str, Callable[[World], None]] = {"private-bootstrap": private_bootstrap_story}


def tell_private(world: World) -> None:
    for name, story in PRIVATE_STORIES.items():
        world.story = name
        try:
            story(world)
        except StoryAborted:
            continue
