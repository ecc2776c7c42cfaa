"""cdk-nag AwsSolutions: no unacknowledged finding, every acknowledgment carries a reviewable reason, and the
check really runs during synth (a stack with a bare wildcard fails it)."""

from __future__ import annotations

import json

from aws_cdk import App, Aspects, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks


def test_example_stack_has_no_unacknowledged_findings(synth):
    assert synth.problems == []


def _suppressions(template) -> list[tuple[str, dict]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        for s in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append((logical_id, s))
    return found


def test_every_acknowledgment_has_a_specific_reason(template):
    suppressions = _suppressions(template)
    assert suppressions, "expected the documented IAM5/L1 acknowledgments"
    for logical_id, s in suppressions:
        # Then each names what it allows (appliesTo) or is a whole-rule L1 pin, and says why at length
        assert len(s["reason"]) >= 80, (logical_id, s)
        assert s["id"] in {"AwsSolutions-IAM5", "AwsSolutions-L1"}, (logical_id, s["id"])
        if s["id"] == "AwsSolutions-IAM5":
            assert s.get("applies_to"), f"{logical_id}: IAM5 must be acknowledged per resource, not wholesale"


def test_no_action_wildcards_anywhere(template):
    # Acknowledgments cover resources only; no policy may say service:* or *
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            acts = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in acts if "*" in a], statement


def test_nag_runs_during_synth_and_reports_a_bare_wildcard(cdk_app, tmp_path):
    # Given a stack with an unacknowledged wildcard, checked the way app.py checks
    context = {k: v for k, v in cdk_app.cdk_json_context().items() if k.startswith("@aws-cdk")}
    app = App(outdir=str(tmp_path), context=context)
    stack = Stack(app, "Wild")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"]))
    Aspects.of(app).add(AwsSolutionsChecks())
    # When it is synthesized / Then app.synthesis_problems names the rule and the resource
    problems = cdk_app.synthesis_problems(app, stack)
    assert problems == ["error: Wild/Role/DefaultPolicy/Resource: AwsSolutions-IAM5[Resource::*]"], json.dumps(problems)
