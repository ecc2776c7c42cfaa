"""The bootstrap state machine and the controller's IAM, synthesized in a small stack (once per module)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from lambdas.domain.bootstrap import CONTROLLER_VERSION, IAM_POLICY_SOURCE  # noqa: E402
from lambdas.domain.errors import permanent_error_names, retryable_error_names  # noqa: E402

OIDC = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
CLUSTERS = {"c1": {"region": "us-east-1", "chart_version": "3.5.0",
                   "chart_repository": "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/charts"}}
NETWORK = {"region": "us-east-1", "vpc_id": "vpc-0123456789abcdef0", "subnet_ids": ["subnet-0123456789abcdef0"],
           "endpoints": [{"service": "eks", "kind": "Interface", "used_by": ["BootstrapCheckController"],
                          "why": "eks:DescribeCluster", "clusters": []}]}


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    from aws_cdk import App, Aspects, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Annotations, Match
    from cdk_nag import AwsSolutionsChecks

    from stacks.constructs.bootstrap_workflow import REQUIRED_FUNCTIONS, BootstrapWorkflow
    from stacks.constructs.lbc_iam import LbcIdentity

    app = App(context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Boot", env={"region": "us-east-1", "account": "123456789012"})
    # One stand-in function for every task keeps the synth small; the stack wires one AlbgateFunction per spec.
    stand_in = lambda_.Function(stack, "StandIn", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                                code=lambda_.Code.from_inline("# never invoked"))
    fns = {n: stand_in for n in REQUIRED_FUNCTIONS}
    BootstrapWorkflow(stack, "Bootstrap", functions=fns,
                      rollout_state_machine="arn:aws:states:us-east-1:123456789012:stateMachine:albgate-rollout",
                      clusters=CLUSTERS, network=NETWORK)
    LbcIdentity(stack, "PodIdentity", cluster_name="c1")
    LbcIdentity(stack, "Irsa", cluster_name="c1", oidc_provider_arn=OIDC)
    Aspects.of(app).add(AwsSolutionsChecks())
    template = app.synth().get_stack_by_name("Boot").template
    # cdk-nag findings on the bootstrap constructs (the dummy functions stand in for AlbgateFunction, which has its
    # own)
    findings = [f"{e.id}: {e.entry.data}" for e in
                Annotations.from_stack(stack).find_error("*", Match.string_like_regexp(".*"))
                if "/Bootstrap/" in e.id or "/PodIdentity/" in e.id or "/Irsa/" in e.id]
    [machine] = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    definition = json.loads("".join(p if isinstance(p, str) else "ARN" for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1]))
    return {"template": template, "definition": definition, "findings": findings}


def states(definition: dict) -> dict[str, dict]:
    """Every state, Map item processors included."""
    found: dict[str, dict] = {}
    for name, s in definition["States"].items():
        found[name] = s
        if "ItemProcessor" in s:
            found.update(states(s["ItemProcessor"]))
    return found


def test_the_graph_reads_as_the_bootstrap_in_order(synthesized) -> None:
    # Given the synthesized definition / When following Next from the start / Then the steps come in this order
    d = synthesized["definition"]
    path, name = [], d["StartAt"]
    while name:
        path.append(name)
        s = d["States"][name]
        name = s.get("Next") or (s.get("Default") if s["Type"] == "Choice" and "Wait" not in s.get("Default", "") else None)
        if s["Type"] == "Choice":
            name = next(c["Next"] for c in s["Choices"] if c.get("StringEquals") == "PASSED" or c.get("BooleanEquals") is True)
    assert [p for p in path if not p.endswith(": Yes")] == [
        "Validate Input", "Check Network", "Install Controller", "Check Controller", "Controller Working?",
        "Label Namespaces For Readiness Gates", "Apply Services And Ingresses", "Check Bindings",
        "Bound And Injecting?", "Apply Deployments", "Find Pods Born Before The Label", "Deployments Settled?",
        "Restart Pods Born Before The Label", "Preflight Report", "No Risk Left?", "Bootstrap Succeeded",
    ]


@pytest.mark.parametrize(("choice", "check", "wait", "error"), [
    ("Controller Working?", "Check Controller", "Wait For Controller", "ControllerNotWorking"),
    ("Bound And Injecting?", "Check Bindings", "Wait For Bindings", "BindingsNotReady"),
    ("Deployments Settled?", "Find Pods Born Before The Label", "Wait For Deployments", "DeploymentsNotSettled"),
])
def test_every_wait_loop_is_bounded_and_fails_explicitly(synthesized, choice: str, check: str, wait: str, error: str) -> None:
    s = synthesized["definition"]["States"]
    # WAITING waits $.wait_seconds and checks again
    assert s[choice]["Default"] == wait and s[wait]["SecondsPath"] == "$.wait_seconds" and s[wait]["Next"] == check
    # FAILED (the handler's deadline) records the reason and ends in the Fail state
    failed = next(c["Next"] for c in s[choice]["Choices"] if c.get("StringEquals") == "FAILED")
    assert s[failed]["Parameters"]["Error"] == error
    assert s[s[failed]["Next"]]["Type"] == "Fail"


def test_every_lambda_task_retries_the_retryable_names_and_catches_the_rest(synthesized) -> None:
    tasks = {n: s for n, s in synthesized["definition"]["States"].items()
             if s["Type"] == "Task" and s["Resource"] == "ARN"}  # payloadResponseOnly: the function ARN itself
    assert len(tasks) == 10
    for name, s in tasks.items():
        assert set(retryable_error_names()) <= set(s["Retry"][0]["ErrorEquals"]), name
        caught = [set(c["ErrorEquals"]) for c in s["Catch"]]
        assert set(permanent_error_names()) in caught and {"States.ALL"} in caught, name


def test_validation_failures_end_in_refused_before_any_change(synthesized) -> None:
    s = synthesized["definition"]["States"]
    # Given the two checks before the first change / Then each ends in Bootstrap Refused when it fails
    for name in ("Validate Input", "Check Network"):
        assert {c["Next"] for c in s[name]["Catch"]} == {"Bootstrap Refused"}, name
    assert s["Bootstrap Refused"]["Type"] == "Fail"
    assert s["Validate Input"]["Next"] == "Check Network" and s["Check Network"]["Next"] == "Install Controller"


def test_the_deployed_settings_are_in_the_definition_not_in_the_input(synthesized) -> None:
    s = synthesized["definition"]["States"]
    # Given the definition / Then Validate Input gets the configured clusters' controller settings from it,
    # and Check Network the VPC and the endpoints the functions need; only the request comes from the input
    assert s["Validate Input"]["Parameters"]["controller_defaults"] == CLUSTERS
    assert s["Validate Input"]["Parameters"]["request.$"] == "$"
    assert s["Check Network"]["Parameters"] == {"state.$": "$", "network": NETWORK}


def test_restarts_start_the_rollout_state_machine_and_wait_one_at_a_time(synthesized) -> None:
    s = states(synthesized["definition"])
    restart_map = s["Restart Pods Born Before The Label"]
    assert restart_map["ItemsPath"] == "$.restarts" and restart_map["MaxConcurrency"] == 1
    task = s["Restart Through The Gates"]
    assert task["Resource"].endswith(":states:startExecution.sync:2")
    assert task["Parameters"]["StateMachineArn"].endswith(":stateMachine:albgate-rollout")
    assert task["Parameters"]["Input.$"] == "$"  # the restart request itself: {"kind": "restart", ...}
    assert {c["Next"] for c in restart_map["Catch"]} == {"Record Restart Failure"}


def test_the_apply_phases_share_one_function(synthesized) -> None:
    s = synthesized["definition"]["States"]
    phases = [s[n]["Parameters"]["phase"] for n in ("Apply Services And Ingresses", "Apply Deployments")]
    assert phases == ["services", "deployments"]


def test_no_unacknowledged_cdk_nag_finding(synthesized) -> None:
    assert synthesized["findings"] == []


# --- the controller's IAM -------------------------------------------------------------------------------------
def by_type(template: dict, rtype: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == rtype]


def test_the_policy_is_the_documented_one_for_the_pinned_version(synthesized) -> None:
    from stacks.constructs.lbc_iam import policy_statements

    # Given the statements / Then 16 Allow statements, ~80 actions (86 at v3.5.0: docs/facts.md, Load Balancer
    # Controller: install), conditions on the cluster tag
    statements = policy_statements("aws")
    actions = [a for s in statements for a in s["Action"]]
    assert len(statements) == 16 and all(s["Effect"] == "Allow" for s in statements)
    assert 80 <= len(actions) <= 90
    assert "elasticloadbalancing:RegisterTargets" in actions and "ec2:DescribeRouteTables" in actions
    tagged = [s for s in statements if "elbv2.k8s.aws/cluster" in json.dumps(s.get("Condition", {}))]
    assert len(tagged) == 7
    # And the version and source are named on the deployed policy
    policies = by_type(synthesized["template"], "AWS::IAM::ManagedPolicy")
    assert len(policies) == 2
    assert all(CONTROLLER_VERSION in p["Properties"]["Description"] and IAM_POLICY_SOURCE in p["Properties"]["Description"]
               for p in policies)
    assert CONTROLLER_VERSION in IAM_POLICY_SOURCE


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_partitions_are_substituted(partition: str) -> None:
    from stacks.constructs.lbc_iam import lbc_policy_document

    text = json.dumps(lbc_policy_document(partition))
    arns = re.findall(r'"arn:([a-z-]+):', text)
    assert arns and set(arns) == {partition}


def test_pod_identity_by_default_irsa_with_an_oidc_provider(synthesized) -> None:
    t = synthesized["template"]
    [association] = by_type(t, "AWS::EKS::PodIdentityAssociation")
    assert association["Properties"]["Namespace"] == "kube-system"
    assert association["Properties"]["ServiceAccount"] == "aws-load-balancer-controller"
    trusts = [r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0] for r in by_type(t, "AWS::IAM::Role")
              if "Principal" in r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]]
    pod_identity = [s for s in trusts if s["Principal"].get("Service") == "pods.eks.amazonaws.com"]
    irsa = [s for s in trusts if s["Principal"].get("Federated") == OIDC]
    assert pod_identity and set(pod_identity[0]["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    assert irsa and irsa[0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    issuer = "oidc.eks.us-east-1.amazonaws.com/id/ABC"
    assert irsa[0]["Condition"]["StringEquals"] == {
        f"{issuer}:sub": "system:serviceaccount:kube-system:aws-load-balancer-controller",
        f"{issuer}:aud": "sts.amazonaws.com"}
