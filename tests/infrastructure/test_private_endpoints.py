"""A private cluster without a NAT, as deployed: the stack synthesizes offline without an account, the install may
log in to and pull from the configured ECR mirror only, Check Network gets the endpoints the functions need, and
the deployed bootstrap carries the cluster's controller settings (an execution cannot pick them).

docs/foundation.md, "Private endpoints", shows the same endpoint list (checked here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from albgate.sfn_local.extract import extract_state_machine
from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, state_machine_id
from lambdas.domain.network import NetworkSpec
from stacks.config import parse_config
from stacks.constructs.lambda_function import ENI_WILDCARD, TARGET_GROUP_WILDCARD
from stacks.constructs.specs import ALL_HANDLERS
from stacks.constructs.vpc_endpoints import FLAG_NEEDS, endpoint_table, spec_flags, vpc_endpoint_needs
from tests.infrastructure.conftest import (
    MIRROR_ACCOUNT,
    MIRROR_CONTROLLER,
    OWN_ROLE,
    PRIVATE_SUBNETS,
    PRIVATE_VPC,
    private_mirror_variant,
)

ROOT = Path(__file__).resolve().parents[2]
CHART_REPOSITORY_NAME = "mirrors/charts/aws-load-balancer-controller"


def role_statements(synth: Any, function: str) -> list[dict[str, Any]]:
    fn = synth.stack.functions[function].function
    role = synth.template["Resources"][synth.stack.get_logical_id(fn.node.default_child)]["Properties"]["Role"]
    return [s for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role["Fn::GetAtt"][0]} in
            p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def flat(value: Any) -> str:
    """A resource as a string, the partition's Ref read as ``aws`` (the only token such an ARN holds)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(flat(part) for part in value["Fn::Join"][1])
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    raise AssertionError(f"unexpected token in a resource: {value}")


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def bootstrap_states(synth: Any) -> dict[str, Any]:
    template = synth.template
    return extract_state_machine(template, state_machine_id(template, BOOTSTRAP_STATE_MACHINE_PREFIX)).definition[
        "States"]


# --- offline synth ------------------------------------------------------------------------------------------------
def test_a_private_config_without_an_account_synthesizes_offline_without_findings(offline_private_synth) -> None:
    # Given the private mirror config, no account anywhere (the stack is account-agnostic)
    assert offline_private_synth.stack.account.startswith("${Token")
    # When synthesized with cdk-nag / Then nothing is left unacknowledged
    assert offline_private_synth.problems == []


@pytest.mark.parametrize("acknowledgment", [ENI_WILDCARD, TARGET_GROUP_WILDCARD], ids=["eni", "target-group"])
@pytest.mark.parametrize("account", ["123456789012", "<AWS::AccountId>"], ids=["account", "agnostic"])
@pytest.mark.parametrize("partition", ["aws", "aws-cn", "<AWS::Partition>"], ids=["aws", "aws-cn", "token"])
def test_the_wildcard_acknowledgments_match_with_or_without_an_account(acknowledgment, account, partition) -> None:
    # Given the finding cdk-nag reports for the wildcard, with the account as a number or as the unresolved token
    resource = "network-interface/*" if acknowledgment is ENI_WILDCARD else "targetgroup/*/*"
    service = "ec2" if acknowledgment is ENI_WILDCARD else "elasticloadbalancing"
    finding = f"Resource::arn:{partition}:{service}:us-east-1:{account}:{resource}"
    # Then the acknowledgment's regex (a JavaScript /.../g literal) matches it
    pattern = re.fullmatch(r"/(.*)/g", acknowledgment.regex).group(1)
    assert re.fullmatch(pattern, finding)


# --- the install's ECR rights -------------------------------------------------------------------------------------
def test_the_install_may_log_in_and_pull_the_mirrored_chart_only(offline_private_synth) -> None:
    statements = {s.get("Sid"): s for s in role_statements(offline_private_synth, "BootstrapInstallController")}
    # Then the login token on "*" (no resource types), the pull on the chart's repository, nothing else of ECR
    assert statements["LogInToChartRegistry"]["Action"] == "ecr:GetAuthorizationToken"
    assert statements["LogInToChartRegistry"]["Resource"] == "*"
    assert sorted(statements["PullChart"]["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert flat(statements["PullChart"]["Resource"]) == (
        f"arn:aws:ecr:us-east-1:{MIRROR_ACCOUNT}:repository/{CHART_REPOSITORY_NAME}")
    # And no other function may pull or log in
    others = {s.name for s in ALL_HANDLERS} - {"BootstrapInstallController"}
    for name in sorted(others):
        assert not actions_of(role_statements(offline_private_synth, name)) & {
            "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}, name


def test_without_an_ecr_mirror_the_install_gets_no_ecr_rights(synth) -> None:
    # Given the example (the chart from eks-charts) / Then the install has no ECR action at all
    assert not {a for a in actions_of(role_statements(synth, "BootstrapInstallController")) if a.startswith("ecr:")}


def test_only_check_network_reads_the_vpc_and_only_in_a_vpc(offline_private_synth, synth) -> None:
    reads = {"ec2:DescribeVpcEndpoints", "ec2:DescribeRouteTables"}
    assert [s.name for s in ALL_HANDLERS if actions_of(role_statements(offline_private_synth, s.name)) & reads] == [
        "BootstrapCheckNetwork"]
    assert not actions_of(role_statements(synth, "BootstrapCheckNetwork")) & reads


# --- what the deployed bootstrap carries --------------------------------------------------------------------------
def test_the_bootstrap_carries_the_clusters_controller_settings(offline_private_synth) -> None:
    states = bootstrap_states(offline_private_synth)
    cluster = offline_private_synth.stack.config.clusters[0]
    # Then Validate Input gets the configured chart, version, image and role of the one configured cluster
    assert states["Validate Input"]["Parameters"]["controller_defaults"] == {cluster.name: {
        "region": cluster.region, "vpc_id": PRIVATE_VPC, **MIRROR_CONTROLLER, "role_arn": OWN_ROLE}}
    # And with its own role, albgate creates no controller role or Pod Identity association for the cluster
    assert offline_private_synth.resources("AWS::EKS::PodIdentityAssociation") == {}


def test_check_network_gets_the_computed_endpoints_of_every_function_in_the_vpc(offline_private_synth) -> None:
    states = bootstrap_states(offline_private_synth)
    config = offline_private_synth.stack.config
    expected = NetworkSpec(config.region, PRIVATE_VPC, tuple(PRIVATE_SUBNETS),
                           tuple(vpc_endpoint_needs(ALL_HANDLERS, config))).to_json()
    assert states["Check Network"]["Parameters"]["network"] == expected
    services = [(n["service"], n["kind"]) for n in expected["endpoints"]]
    # With the chart on ECR: its registry, the login's API and the layers' S3; sts, logs and xray never
    assert {("ecr.api", "Interface"), ("ecr.dkr", "Interface"), ("s3", "Gateway"), ("eks", "Interface"),
            ("elasticloadbalancing", "Interface"), ("ec2", "Interface")} <= set(services)
    assert not {s for s, _ in services} & {"sts", "logs", "xray"}


def test_a_public_cluster_gets_no_network_to_check(synth) -> None:
    assert "network" not in bootstrap_states(synth)["Check Network"]["Parameters"]


@pytest.mark.parametrize(("controller", "chart_needs"), [
    pytest.param(MIRROR_CONTROLLER, {("ecr.api", "Interface"), ("ecr.dkr", "Interface"), ("s3", "Gateway")},
                 id="ecr-mirror"),
    pytest.param({}, {("aws.github.io", "Internet")}, id="eks-charts-needs-a-nat"),
    pytest.param({"chart_repository": "oci://harbor.internal.example/charts"}, set(), id="other-registry-unchecked"),
])
def test_the_charts_source_decides_what_the_install_needs(example_config, controller, chart_needs) -> None:
    config = private_mirror_variant(example_config)
    config["clusters"][0]["controller"] = dict(controller)
    needs = vpc_endpoint_needs(ALL_HANDLERS, parse_config(config))
    install = {(n.service, n.kind) for n in needs if "BootstrapInstallController" in n.used_by} - {("eks", "Interface")}
    assert install == chart_needs


def test_every_handler_spec_flag_names_what_it_calls() -> None:
    # A new HandlerSpec flag that calls AWS must say which endpoint it needs before the stack synthesizes
    assert sorted(spec_flags()) == sorted(FLAG_NEEDS)


# --- the docs show the same list ----------------------------------------------------------------------------------
def test_the_documented_endpoint_list_is_the_computed_one(example_config) -> None:
    # Given the endpoint list for the walkthrough's config (a private cluster, its chart and image on ECR)
    table = endpoint_table(vpc_endpoint_needs(ALL_HANDLERS, parse_config(private_mirror_variant(example_config))))
    # Then docs/foundation.md shows exactly that table
    assert table in (ROOT / "docs" / "foundation.md").read_text(), table
