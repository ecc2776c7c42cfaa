"""The synthesized template: one traced Python 3.12 Lambda per handler spec, least-privilege roles, the state
machine with logging and tracing, access entries scoped to the app namespaces."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import LOG_RETENTION_DAYS
from stacks.constructs.cluster_access import VIEW_POLICY, groups_for, needs_cluster_admin
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS, HandlerSpec
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER
from stacks.constructs.lambda_function import RETENTION, elb_read_actions
from albgate.template import state_machine_id
from lambdas.adapters.dynamodb_looks import EXPIRES_AT
from tests.infrastructure.cfn import definition, walk_states
from tests.infrastructure.conftest import PRIVATE_SGS, PRIVATE_SUBNETS

SPEC_IDS = [s.name for s in ALL_HANDLERS]


def function_of(synth, spec: HandlerSpec) -> tuple[str, dict[str, Any]]:
    """The Lambda built for a spec: the construct path is <Stack>/<spec.name>/Function."""
    fn = synth.stack.functions[spec.name].function
    logical_id = synth.stack.get_logical_id(fn.node.default_child)
    return logical_id, synth.template["Resources"][logical_id]


def policy_statements(synth, role_logical_id: str) -> list[dict[str, Any]]:
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for s in statements:
        found.update([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return found


def budget_table_id(synth) -> str:
    (table,) = [k for k in synth.resources("AWS::DynamoDB::Table") if k.startswith("DescribeBudget")]
    return table


def lease_table_id(synth) -> str:
    (table,) = [k for k in synth.resources("AWS::DynamoDB::Table") if k.startswith("Leases")]
    return table


def test_one_function_per_handler_spec(synth):
    # Given the handler specs / When the stack is synthesized / Then there is exactly one Lambda per spec
    handlers = sorted(f["Properties"]["Handler"] for f in synth.resources("AWS::Lambda::Function").values())
    assert handlers == sorted(s.handler for s in ALL_HANDLERS + TRIGGER)


@pytest.mark.parametrize("spec", ALL_HANDLERS, ids=SPEC_IDS)
def test_function_defaults(synth, spec):
    # Given a handler spec / When its function is synthesized
    _, fn = function_of(synth, spec)
    props = fn["Properties"]
    # Then it runs the platform the asset is bundled for, traced, with the spec's size and Powertools settings
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["x86_64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Handler"] == f"lambdas.handlers.{spec.module}.handler"
    assert props["MemorySize"] == spec.memory_mb
    assert props["Timeout"] == spec.timeout_seconds
    budget = (
        {
            "ALBGATE_DESCRIBE_BUDGET_TABLE": {"Ref": budget_table_id(synth)},
            "ALBGATE_DESCRIBE_BUDGET_RATE": "4.5",
            "ALBGATE_DESCRIBE_BUDGET_BURST": "30",
        }
        if spec.describe_budget
        else {}
    )
    lease = {"ALBGATE_LOCK_TABLE": {"Ref": lease_table_id(synth)}} if spec.deployment_lease else {}
    assert props["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "albgate",
        "POWERTOOLS_METRICS_NAMESPACE": "albgate",
        "LOG_LEVEL": "INFO",
        "ALBGATE_ALLOW_LIST": "/opt/albgate/allow-list.json",
        **budget,
        **lease,
    }
    # Powertools comes from the bundled asset, never also from the managed layer; every function carries the
    # allow-list layer, and the controller install the helm-only layer too
    layers = [json.dumps(layer) for layer in props["Layers"]]
    assert ["AllowList" in layer for layer in layers].count(True) == 1
    others = [layer for layer in layers if "AllowList" not in layer]
    if spec.name == "BootstrapInstallController":
        (helm,) = others
        assert "HelmLayer" in helm
    else:
        assert others == []
    assert "VpcConfig" not in props  # the example cluster's endpoint is public


@pytest.mark.parametrize("spec", ALL_HANDLERS, ids=SPEC_IDS)
def test_function_logs_to_its_own_log_group_with_retention(synth, spec):
    _, fn = function_of(synth, spec)
    log_group_id = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = synth.template["Resources"][log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == 30


def test_the_functions_of_one_asset_family_share_one_code_asset(synth):
    # Given every function of the template, grouped by the family its spec names
    from stacks.constructs.specs import asset_family

    codes: dict[str, set[str]] = {}
    for spec in ALL_HANDLERS:
        _, fn = function_of(synth, spec)
        codes.setdefault(asset_family(spec).name, set()).add(json.dumps(fn["Properties"]["Code"], sort_keys=True))
    # Then each family is one asset, and the two families are two
    assert {name: len(c) for name, c in codes.items()} == {"core": 1, "kubernetes": 1}
    assert len(set().union(*codes.values())) == 2


def test_retention_table_covers_every_accepted_value():
    assert sorted(RETENTION) == sorted(LOG_RETENTION_DAYS)


@pytest.mark.parametrize("spec", ALL_HANDLERS, ids=SPEC_IDS)
def test_role_grants_exactly_what_the_spec_names(synth, spec):
    # Given a spec / When its role is synthesized
    _, fn = function_of(synth, spec)
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    role = synth.template["Resources"][role_id]
    statements = policy_statements(synth, role_id)
    # Then no managed policy, and only logs + X-Ray + what the spec names
    assert "ManagedPolicyArns" not in role["Properties"]
    expected = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    expected |= set(elb_read_actions(spec))
    if spec.kube != "none":
        expected |= {"eks:DescribeCluster"}
    if spec.ecr_read:  # the example config names an ECR repository
        expected |= {"ecr:DescribeImages"}
    if spec.elb_deregister:
        expected |= {"elasticloadbalancing:DeregisterTargets"}
    if spec.elb_register:
        expected |= {"elasticloadbalancing:RegisterTargets"}
    if spec.describe_budget:
        expected |= {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    if spec.deployment_lease:  # take the Deployment's lease; prove a holder ended before taking it over
        expected |= {"dynamodb:GetItem", "dynamodb:PutItem", "states:DescribeExecution"}
    if spec.alarms_read:  # the policy's CloudWatch alarms, read at every look
        expected |= {"cloudwatch:DescribeAlarms"}
    if spec.alarms_history:  # what an alarm did during a bake, read before the next step
        expected |= {"cloudwatch:DescribeAlarmHistory"}
    if spec.metrics_read:  # policy.analysis: the target groups' ALB metrics
        expected |= {"cloudwatch:GetMetricData"}
    assert actions(statements) == expected


def test_the_describe_budget_is_shared_by_every_function_that_polls_elb_in_a_rollout(synth):
    # Given the specs / Then every rollout function and the gate keeper that read ELB take their turn first
    polling = {s.name for s in ALL_HANDLERS if s.describe_budget}
    assert polling == {"Preflight", "CheckTargetHealth", "VerifyDrain", "GateKeeper"}
    assert all(elb_read_actions(s) for s in ALL_HANDLERS if s.describe_budget)
    # And their DynamoDB actions reach the budget table only
    table = budget_table_id(synth)
    for spec in ALL_HANDLERS:
        if not spec.describe_budget:
            continue
        _, fn = function_of(synth, spec)
        statements = policy_statements(synth, fn["Properties"]["Role"]["Fn::GetAtt"][0])
        budget_grants = [s for s in statements if "dynamodb:GetItem" in s["Action"]
                         and json.dumps(s["Resource"]).count(table)]
        (grant,) = budget_grants
        assert sorted(grant["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        resources = grant["Resource"] if isinstance(grant["Resource"], list) else [grant["Resource"]]
        assert resources and all(r == {"Fn::GetAtt": [table, "Arn"]} or r == {"Ref": "AWS::NoValue"} for r in resources)


def test_the_budget_table_deletes_expired_shared_looks(synth):
    # Given the budget table / Then DynamoDB's TTL deletes the items whose expires_at has passed (the shared looks')
    table = synth.resources("AWS::DynamoDB::Table")[budget_table_id(synth)]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": EXPIRES_AT, "Enabled": True}


def test_only_the_drain_paths_may_deregister_and_only_the_clusters_target_groups(synth):
    # Given the rollout functions / Then the two that drain may deregister targets: Verify Drain, and Check
    # Target Health, which follows a drain Verify Drain handed over while the controller is down or throttled, and
    # deregisters the old pods it took out of service when the controller is late
    specs = [s for s in ALL_HANDLERS if s.elb_deregister]
    assert sorted(s.name for s in specs) == ["CheckTargetHealth", "VerifyDrain"]
    for spec in specs:
        # And only on target groups tagged by a configured cluster's Load Balancer Controller
        _, fn = function_of(synth, spec)
        statements = policy_statements(synth, fn["Properties"]["Role"]["Fn::GetAtt"][0])
        (dereg,) = [s for s in statements if s["Action"] == "elasticloadbalancing:DeregisterTargets"]
        assert dereg["Condition"] == {"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": ["my-cluster"]}}
        assert json.dumps(dereg["Resource"]).endswith(':targetgroup/*/*"]]}')


@pytest.mark.parametrize("spec", [s for s in ALL_HANDLERS if s.kube != "none"], ids=lambda s: s.name)
def test_describe_cluster_is_scoped_to_the_configured_cluster(synth, spec):
    _, fn = function_of(synth, spec)
    statements = policy_statements(synth, fn["Properties"]["Role"]["Fn::GetAtt"][0])
    (describe,) = [s for s in statements if s["Action"] == "eks:DescribeCluster"]
    assert describe["Resource"] == {
        "Fn::Join": ["", ["arn:aws:eks:us-east-1:", {"Ref": "AWS::AccountId"}, ":cluster/my-cluster"]]
    }


def _access_entries_by_function(synth) -> dict[str, dict[str, Any]]:
    by_role = {}
    for entry in synth.resources("AWS::EKS::AccessEntry").values():
        by_role[entry["Properties"]["PrincipalArn"]["Fn::GetAtt"][0]] = entry["Properties"]
    out = {}
    for spec in ALL_HANDLERS:
        _, fn = function_of(synth, spec)
        role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        if role_id in by_role:
            out[spec.name] = by_role[role_id]
    return out


def test_access_entry_for_every_function_that_talks_to_kubernetes(synth):
    entries = _access_entries_by_function(synth)
    assert sorted(entries) == sorted(s.name for s in ALL_HANDLERS if s.kube != "none")


@pytest.mark.parametrize("spec", [s for s in ALL_HANDLERS if s.kube != "none"], ids=lambda s: s.name)
def test_access_entry_is_namespace_scoped_view_plus_rollout_group(synth, spec):
    # Given a function that reads (or rolls) Deployments / When its access entry is synthesized
    entry = _access_entries_by_function(synth)[spec.name]
    # Then it sees only the app namespace, and only rollout functions get the rollout group
    assert entry["ClusterName"] == "my-cluster"
    assert entry["Type"] == "STANDARD"
    policy, *admin = entry["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "namespace", "Namespaces": ["readiness"]}
    # The Region is known (us-east-1), so CDK writes the partition as a literal (@aws-cdk/core:enablePartitionLiterals)
    assert policy["PolicyArn"] == f"arn:aws:eks::aws:cluster-access-policy/{VIEW_POLICY}"
    assert entry.get("KubernetesGroups", []) == groups_for(spec, access_entry=True)
    # Only the controller install is cluster admin (helm creates CRDs, ClusterRoles, webhook configurations)
    if needs_cluster_admin(spec):
        assert admin == [
            {
                "AccessScope": {"Type": "cluster"},
                "PolicyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            }
        ]
    else:
        assert admin == []


@pytest.mark.parametrize("prefix", ["RolloutStateMachine", "BootstrapStateMachine"])
def test_state_machine_logs_everything_and_traces(synth, prefix):
    machine = synth.template["Resources"][state_machine_id(synth.template, prefix)]
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    (destination,) = props["LoggingConfiguration"]["Destinations"]
    log_group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert synth.template["Resources"][log_group_id]["Type"] == "AWS::Logs::LogGroup"


def lambda_target(state: dict[str, Any]) -> str | None:
    """The function a Task calls: directly (payloadResponseOnly) or through the lambda:invoke integration."""
    if state["Type"] != "Task":
        return None
    if state["Resource"].startswith("arn:aws:lambda:"):
        return state["Resource"]
    if ":states:::lambda:invoke" in state["Resource"]:
        return state["Parameters"]["FunctionName"]
    return None


def test_state_machine_invokes_only_the_stack_functions_and_all_of_them(synth):
    # Given the definition with placeholder ARNs named after logical ids
    asl = definition(synth.template)
    invoked = {
        target.rsplit(":", 1)[-1] for _, state in walk_states(asl["States"]) if (target := lambda_target(state))
    }
    # Then every task calls a function of this stack, and every function is called
    assert invoked == {function_of(synth, s)[0] for s in ROLLOUT_HANDLERS}


def test_outputs_name_the_state_machine(synth):
    assert "StateMachineArn" in synth.template["Outputs"]


# --- private endpoint + aws-auth (CONFIG_MAP) variant -------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_HANDLERS, ids=SPEC_IDS)
def test_private_endpoint_puts_functions_in_the_cluster_vpc(private_synth, spec):
    _, fn = function_of(private_synth, spec)
    vpc = fn["Properties"]["VpcConfig"]
    assert vpc["SubnetIds"] == PRIVATE_SUBNETS
    assert vpc["SecurityGroupIds"] == PRIVATE_SGS


@pytest.mark.parametrize("spec", ALL_HANDLERS, ids=SPEC_IDS)
def test_private_endpoint_eni_permissions_are_scoped(private_synth, spec):
    # Given a function in a VPC / Then it may manage ENIs only in its account and Region, its subnets and SGs
    _, fn = function_of(private_synth, spec)
    statements = policy_statements(private_synth, fn["Properties"]["Role"]["Fn::GetAtt"][0])
    (manage,) = [s for s in statements if s.get("Sid") == "ManageEnis"]
    resources = json.dumps(manage["Resource"])
    assert "network-interface/*" in resources
    for subnet in PRIVATE_SUBNETS:
        assert f"subnet/{subnet}" in resources
    assert f"security-group/{PRIVATE_SGS[0]}" in resources
    assert '"*"' not in resources
    (describe,) = [s for s in statements if s.get("Sid") == "DescribeEnis"]
    assert describe["Resource"] == "*"


def test_config_map_cluster_gets_aws_auth_output_instead_of_access_entries(private_synth):
    # Given a cluster that authenticates with aws-auth only / Then no access entry (the API would refuse it)
    assert private_synth.resources("AWS::EKS::AccessEntry") == {}
    # And the stack outputs the mapRoles entries, one per function that talks to Kubernetes
    outputs = private_synth.template["Outputs"]
    (output,) = [v for k, v in outputs.items() if k.startswith("ClusterAccessAwsAuthMapRoles")]
    text = json.dumps(output["Value"])
    kube_specs = [s for s in ALL_HANDLERS if s.kube != "none"]
    assert text.count("- rolearn: ") == len(kube_specs)
    assert text.count("    - albgate-rollout") == sum(s.kube == "rollout" for s in kube_specs)
    assert text.count("    - albgate-pods") == sum(s.kube in ("pods", "rollout") for s in kube_specs)
    assert text.count("    - albgate-read\\n") == len(kube_specs)
    assert text.count("    - albgate-read-extra") == len(kube_specs)
    assert "username: albgate:{{SessionName}}" in text


def test_private_variant_is_nag_clean_too(private_synth):
    assert private_synth.problems == []


def test_image_pinning_reads_only_the_configured_repositories(synth):
    # Given the example config's application with ecr_repository "myapp"
    (spec,) = [s for s in ALL_HANDLERS if s.ecr_read]
    _, fn = function_of(synth, spec)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    (statement,) = [s for s in policy_statements(synth, role) if s.get("Sid") == "PinImageTags"]
    # Then DescribeImages is granted on that repository's ARN only, nothing else may call ECR
    assert statement["Action"] == "ecr:DescribeImages"
    assert "repository/myapp" in json.dumps(statement["Resource"])
    others = [s for s in ALL_HANDLERS if not s.ecr_read]
    for other in others:
        _, ofn = function_of(synth, other)
        orole = ofn["Properties"]["Role"]["Fn::GetAtt"][0]
        assert "ecr:DescribeImages" not in actions(policy_statements(synth, orole))
