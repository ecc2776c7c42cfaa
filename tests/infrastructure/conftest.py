"""Fixtures of the infrastructure layer: more configurations (private endpoint with aws-auth; private endpoint with
the controller's chart and image mirrored to ECR and no account, as an offline synth has), each synthesized once.

Invariant: each configuration is synthesized once per session; tests only read the results.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Synthesized, synthesize

PRIVATE_VPC = "vpc-0123456789abcdef0"
PRIVATE_SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
PRIVATE_SGS = ["sg-0123456789abcdef0"]
MIRROR_ACCOUNT = "123456789012"
MIRROR_REGISTRY = f"{MIRROR_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
MIRROR_CONTROLLER = {
    "chart_repository": f"oci://{MIRROR_REGISTRY}/mirrors/charts",
    "chart_version": "3.5.0",
    "image_repository": f"{MIRROR_REGISTRY}/mirrors/eks/aws-load-balancer-controller",
}


def private_config_map_variant(example: dict[str, Any]) -> dict[str, Any]:
    """The example, but its cluster has a private endpoint and still authenticates with the aws-auth ConfigMap."""
    config = copy.deepcopy(example)
    config["clusters"][0].update(
        authentication_mode="CONFIG_MAP",
        endpoint_private=True,
        vpc_id=PRIVATE_VPC,
        subnet_ids=PRIVATE_SUBNETS,
        security_group_ids=PRIVATE_SGS,
        account="123456789012",
    )
    return config


def private_mirror_variant(example: dict[str, Any], *, account: str | None = None) -> dict[str, Any]:
    """The example with a private endpoint and no NAT in mind: the controller's chart and image come from an ECR
    mirror in the cluster's Region (docs/foundation.md, "Private endpoints"); no account unless given, as a synth
    without credentials has it."""
    config = copy.deepcopy(example)
    config["clusters"][0].update(
        endpoint_private=True,
        vpc_id=PRIVATE_VPC,
        subnet_ids=PRIVATE_SUBNETS,
        security_group_ids=PRIVATE_SGS,
        controller=dict(MIRROR_CONTROLLER),
    )
    config["clusters"][0].pop("account", None)
    if account:
        config["clusters"][0]["account"] = account
    return config


@pytest.fixture(scope="session")
def private_synth(cdk_app, example_config, tmp_path_factory) -> Synthesized:
    return synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out.private"), private_config_map_variant(example_config))


OWN_ROLE = "arn:aws:iam::123456789012:role/platform/aws-load-balancer-controller"


@pytest.fixture(scope="session")
def offline_private_synth(cdk_app, example_config, tmp_path_factory) -> Iterator[Synthesized]:
    """The private mirror variant synthesized as on a machine without AWS credentials: no account in the config
    nor in CDK_DEFAULT_ACCOUNT, so the stack is account-agnostic and its ARNs carry ``${AWS::AccountId}``. Its
    controller runs with an IRSA role of the operator's own (``controller.role_arn``)."""
    config = private_mirror_variant(example_config)
    config["clusters"][0]["controller"]["role_arn"] = OWN_ROLE
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
        yield synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out.offline"), config)
