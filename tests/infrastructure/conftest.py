"""Fixtures of the infrastructure layer: a second configuration (private endpoint, aws-auth) synthesized once.

Invariant: each configuration is synthesized once per session; tests only read the results.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import Synthesized, synthesize

PRIVATE_VPC = "vpc-0123456789abcdef0"
PRIVATE_SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
PRIVATE_SGS = ["sg-0123456789abcdef0"]


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


@pytest.fixture(scope="session")
def private_synth(cdk_app, example_config, tmp_path_factory) -> Synthesized:
    return synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out.private"), private_config_map_variant(example_config))
