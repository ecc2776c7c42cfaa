"""The VPC endpoints the stack says its functions need (stacks/constructs/vpc_endpoints.py, in the deployed bootstrap
definition) are exactly those their recorded AWS calls go to: no call whose endpoint is missing from the list
(the function would time out in a VPC without a NAT), and no endpoint a listed function never calls."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.iam.private_stories import bootstrap_payloads
from tests.iam.recorder import RecordedCall
from tests.iam.world import World

# IAM service prefix -> the endpoint service its API is reached through
API_ENDPOINTS = {"eks": "eks", "elasticloadbalancing": "elasticloadbalancing", "ecr": "ecr.api", "dynamodb": "dynamodb",
                 "ec2": "ec2", "states": "states", "events": "events", "sqs": "sqs", "sts": "sts",
                 "monitoring": "monitoring"}  # CloudWatch's API (signed as monitoring)


def endpoints_of(call: RecordedCall) -> set[str]:
    """Where a recorded call goes from inside the VPC."""
    if call.params.get("presigned"):
        return set()  # the EKS token: presigned locally, sent to STS by the cluster, not by the function
    if call.params.get("via") == "helm registry pull":
        # The registry API (manifests, layer URLs) is ecr.dkr; the layer bytes come from S3 (docs/facts.md,
        # "VPC endpoints for the functions in a VPC")
        return {"ecr.dkr", "s3"} if call.operation == "GetDownloadUrlForLayer" else {"ecr.dkr"}
    return {API_ENDPOINTS[call.service]}


@pytest.fixture(scope="module")
def listed(vpc_synth) -> dict[str, set[str]]:
    """function -> the endpoints the deployed network lists for it."""
    _, network = bootstrap_payloads(vpc_synth.template)
    assert network is not None
    by_function: dict[str, set[str]] = defaultdict(set)
    for need in network["endpoints"]:
        if need["kind"] == "Internet":
            continue
        for function in need["used_by"]:
            by_function[function].add(need["service"])
    return by_function


@pytest.fixture(scope="module")
def called(recording: World, private_recording: World, vpc_roles) -> dict[str, set[str]]:
    """function in the VPC -> the endpoints its recorded calls (public and private stories) go to."""
    in_vpc = [name for name, fn in vpc_roles.functions.items() if fn.properties.get("VpcConfig")]
    return {name: {e for c in recording.recorder.calls_of(name) + private_recording.recorder.calls_of(name)
                   for e in endpoints_of(c)} for name in in_vpc}


def test_every_call_of_a_function_in_the_vpc_has_its_endpoint_listed(listed, called) -> None:
    # Given each function in the VPC and where its recorded calls go
    # Then the deployed list names each of those endpoints for that function
    missing = {name: sorted(needed - listed.get(name, set())) for name, needed in called.items()}
    assert {name: m for name, m in missing.items() if m} == {}


def test_every_listed_endpoint_is_one_its_functions_call(listed, called) -> None:
    # Given the deployed list / Then no function is listed for an endpoint none of its recorded calls goes to
    extra = {name: sorted(services - called.get(name, set())) for name, services in listed.items()}
    assert {name: e for name, e in extra.items() if e} == {}


def test_no_function_in_the_vpc_calls_sts() -> None:
    # The EKS token is presigned (lambdas/adapters/eks_token.py): signing it is no call, so no sts endpoint
    token = RecordedCall("BootstrapCheckController", "sts:GetCallerIdentity", "us-east-1", {"presigned": True})
    assert endpoints_of(token) == set()
