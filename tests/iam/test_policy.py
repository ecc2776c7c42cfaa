"""The evaluator behind "IAM from recorded calls": matching, conditions, precedence, template resolution.

Pure functions over a small hand-written template: no synthesis, no AWS.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.iam.aws_only import aws_only_requests
from tests.iam.policy import (
    Placeholders,
    Request,
    Statement,
    TemplateResolver,
    UnsupportedPolicy,
    action_matches,
    evaluate,
    resource_matches,
    role_statements,
    unused_grants,
)
from tests.iam.recorder import RecordedCall, iam_prefix
from tests.iam.requests import UnknownCall, requests_for

P = Placeholders("aws", "us-east-1", "123456789012")
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-readines-nginxsvc/0123456789abcdef"
TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Locks": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "albgate"}},
        "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {}},
        "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {
            "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Ref": "Machine"}}]}}]}},
        "RolePolicy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {
            "Statement": [
                {"Sid": "Locks", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
                 "Resource": {"Fn::GetAtt": ["Locks", "Arn"]}},
                {"Sid": "Drain", "Effect": "Allow", "Action": "elasticloadbalancing:DeregisterTargets",
                 "Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":elasticloadbalancing:",
                                                {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                                                ":targetgroup/*/*"]]},
                 "Condition": {"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": ["my-cluster"]}}},
            ]}}},
        "OtherPolicy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Elsewhere"}],
                                                                   "PolicyDocument": {"Statement": []}}},
    }
}
RESOLVER = TemplateResolver(TEMPLATE, P)


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetHealth", True),
        ("elasticloadbalancing:describetargethealth", "elasticloadbalancing:DescribeTargetHealth", True),
        ("elasticloadbalancing:Describe*", "elasticloadbalancing:DescribeTargetGroups", True),
        ("elasticloadbalancing:Describe*", "elasticloadbalancing:DeregisterTargets", False),
        ("dynamodb:?etItem", "dynamodb:GetItem", True),
        ("*", "states:StartExecution", True),
        ("ecr:DescribeImages", "ecr:DescribeImageScanFindings", False),
    ],
    ids=["exact", "case-insensitive", "prefix-wildcard", "prefix-other", "one-character", "everything", "no-prefix"],
)
def test_action_patterns_match_as_iam_matches_them(pattern: str, action: str, matches: bool) -> None:
    assert action_matches(pattern, action) is matches


@pytest.mark.parametrize(
    ("pattern", "resource", "matches"),
    [
        ("*", TG, True),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*/*", TG, True),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*", TG, True),
        ("arn:aws:elasticloadbalancing:*:123456789012:targetgroup/*/*", TG, True),
        ("arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/*/*", TG, False),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/*", TG, False),
        ("arn:aws:elasticloadbalancing:us*1:123456789012:targetgroup/*/*", TG, True),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*", "*", False),
        ("arn:aws:dynamodb:us-east-1:123456789012:table/Locks", "arn:aws:dynamodb:us-east-1:123456789012:table/locks",
         False),
    ],
    ids=["star", "group-wildcards", "trailing-star-crosses-slashes", "any-region", "other-account",
         "other-resource-type", "inner-star-in-segment", "arn-never-grants-star", "case-sensitive"],
)
def test_resource_patterns_match_segment_by_segment(pattern: str, resource: str, matches: bool) -> None:
    assert resource_matches(pattern, resource) is matches


def test_a_star_inside_a_segment_does_not_cross_a_colon() -> None:
    # Given a "*" that is not the last character of its segment / Then it cannot swallow the colons after it
    assert not resource_matches("arn:aws:dynamodb:us-*-1:123456789012:table/x",
                                "arn:aws:dynamodb:us-east:9-1:123456789012:table/x")


def test_the_template_resolves_to_the_names_and_arns_aws_would_give() -> None:
    # Given a template's intrinsics / When resolved / Then Ref and Fn::GetAtt give each type's name or ARN
    assert RESOLVER.resolve({"Ref": "Locks"}) == "Locks"
    assert RESOLVER.resolve({"Fn::GetAtt": ["Locks", "Arn"]}) == "arn:aws:dynamodb:us-east-1:123456789012:table/Locks"
    assert RESOLVER.resolve({"Ref": "Bus"}) == "albgate"  # its Name property
    assert RESOLVER.resolve({"Fn::GetAtt": ["Bus", "Arn"]}) == "arn:aws:events:us-east-1:123456789012:event-bus/albgate"
    assert RESOLVER.resolve({"Ref": "Machine"}) == "arn:aws:states:us-east-1:123456789012:stateMachine:Machine"
    assert RESOLVER.resolve({"Ref": "Dlq"}) == "https://sqs.us-east-1.amazonaws.com/123456789012/Dlq"
    assert RESOLVER.resolve({"Fn::GetAtt": ["Logs", "Arn"]}) == "arn:aws:logs:us-east-1:123456789012:log-group:Logs:*"
    assert RESOLVER.resolve({"Fn::Select": [1, {"Fn::Split": [":", {"Ref": "Machine"}]}]}) == "aws"


@pytest.mark.parametrize(
    "value",
    [{"Fn::Sub": "arn:${AWS::Partition}:x"}, {"Fn::GetAtt": ["Locks", "StreamArn"]}, {"Ref": "Nowhere"},
     {"Fn::ImportValue": "x"}],
    ids=["sub", "other-attribute", "unknown-ref", "import"],
)
def test_what_the_resolver_does_not_know_is_refused(value: Any) -> None:
    with pytest.raises(UnsupportedPolicy):
        RESOLVER.resolve(value)


def test_a_role_has_its_inline_and_attached_statements_only() -> None:
    # Given a role with an inline policy and an AWS::IAM::Policy naming it (and one naming another role)
    statements = role_statements(TEMPLATE, "Role", RESOLVER)
    # Then both of its own policies' statements are read, resolved, and nothing of the other role's
    assert [(s.sid, s.actions) for s in statements] == [
        ("", ("states:StartExecution",)),
        ("Locks", ("dynamodb:GetItem", "dynamodb:PutItem")),
        ("Drain", ("elasticloadbalancing:DeregisterTargets",)),
    ]
    assert statements[2].resources == ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*/*",)


TAGGED = {"aws:ResourceTag/elbv2.k8s.aws/cluster": ("my-cluster",)}


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (Request("elasticloadbalancing:DeregisterTargets", TG, TAGGED), True),
        (Request("elasticloadbalancing:DeregisterTargets", TG, {"aws:ResourceTag/elbv2.k8s.aws/cluster": ("other",)}),
         False),
        (Request("elasticloadbalancing:DeregisterTargets", TG, {}), False),
        (Request("elasticloadbalancing:DeregisterTargets", TG,
                 {"AWS:RESOURCETAG/elbv2.k8s.aws/cluster": ("my-cluster",)}), True),
        (Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Locks"), True),
        (Request("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Locks"), False),
        (Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Other"), False),
        (Request("states:StartExecution", "arn:aws:states:us-east-1:123456789012:stateMachine:Machine"), True),
    ],
    ids=["tagged-by-the-cluster", "tagged-by-another-cluster", "untagged", "key-case-insensitive",
         "granted-item-action", "other-item-action", "other-table", "inline-policy"],
)
def test_requests_are_decided_as_iam_decides_them(request_: Request, allowed: bool) -> None:
    assert evaluate(role_statements(TEMPLATE, "Role", RESOLVER), request_).allowed is allowed


def test_an_explicit_deny_wins_over_any_allow() -> None:
    # Given an Allow and a Deny both covering the request
    statements = [
        Statement("Allow", "Allow", ("dynamodb:*",), ("*",)),
        Statement("NoDelete", "Deny", ("dynamodb:DeleteItem",), ("*",)),
    ]
    decision = evaluate(statements, Request("dynamodb:DeleteItem", "arn:aws:dynamodb:us-east-1:123456789012:table/x"))
    # Then it is denied, naming the Deny
    assert (decision.allowed, decision.denied_by) == (False, ("NoDelete",))


@pytest.mark.parametrize(
    "raw",
    [
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
         "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/x": "y"}}},
    ],
    ids=["not-action", "not-resource", "unknown-operator", "if-exists"],
)
def test_what_the_evaluator_cannot_decide_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedPolicy):
        Statement.parse(raw, RESOLVER)


def test_a_managed_policy_on_the_role_is_refused() -> None:
    template = {"Resources": {"R": {"Type": "AWS::IAM::Role",
                                    "Properties": {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/x"]}}}}
    with pytest.raises(UnsupportedPolicy, match="managed policies"):
        role_statements(template, "R", TemplateResolver(template, P))


def test_unused_grants_are_the_pairs_no_request_uses() -> None:
    # Given the role's statements and one recorded GetItem on its table
    statements = role_statements(TEMPLATE, "Role", RESOLVER)
    used = [Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Locks")]
    # Then every other (action, resource) pair is reported, the conditional drain grant included
    assert sorted(str(g) for g in unused_grants(statements, used)) == [
        "dynamodb:PutItem on arn:aws:dynamodb:us-east-1:123456789012:table/Locks (Sid Locks)",
        "elasticloadbalancing:DeregisterTargets on "
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*/* (Sid Drain)",
        "states:StartExecution on arn:aws:states:us-east-1:123456789012:stateMachine:Machine",
    ]


def test_a_conditional_grant_is_unused_when_its_condition_never_held() -> None:
    # Given the drain grant and a DeregisterTargets on a target group no configured cluster tagged
    statements = [s for s in role_statements(TEMPLATE, "Role", RESOLVER) if s.sid == "Drain"]
    untagged = Request("elasticloadbalancing:DeregisterTargets", TG, {})
    # Then the grant is not used by it
    assert [g.sid for g in unused_grants(statements, [untagged])] == ["Drain"]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (RecordedCall("F", "dynamodb:GetItem", "us-east-1", {"TableName": "Locks"}),
         [("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Locks", {})]),
        (RecordedCall("F", "elasticloadbalancing:DeregisterTargets", "us-east-1",
                      {"TargetGroupArn": TG, "Targets": []}),
         [("elasticloadbalancing:DeregisterTargets", TG, {"aws:ResourceTag/elbv2.k8s.aws/cluster": ("my-cluster",)})]),
        (RecordedCall("F", "elasticloadbalancing:DescribeTargetHealth", "us-east-1", {"TargetGroupArn": TG}),
         [("elasticloadbalancing:DescribeTargetHealth", "*", {})]),
        (RecordedCall("F", "ecr:DescribeImages", "eu-west-1",
                      {"registryId": "210987654321", "repositoryName": "team/app"}),
         [("ecr:DescribeImages", "arn:aws:ecr:eu-west-1:210987654321:repository/team/app", {})]),
        (RecordedCall("F", "eks:DescribeCluster", "us-east-1", {"name": "my-cluster"}),
         [("eks:DescribeCluster", "arn:aws:eks:us-east-1:123456789012:cluster/my-cluster", {})]),
        (RecordedCall("F", "events:PutEvents", "us-east-1", {"Entries": [{"EventBusName": "albgate"}, {}]}),
         [("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/albgate", {}),
          ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/default", {})]),
    ],
    ids=["table-by-name", "target-group-with-its-tags", "no-resource-types", "ecr-registry-of-the-uri", "eks-cluster",
         "one-request-per-bus"],
)
def test_a_recorded_call_asks_for_the_resources_its_parameters_name(call: RecordedCall, expected: list) -> None:
    tags = {TG: {"elbv2.k8s.aws/cluster": "my-cluster"}}
    assert [(r.action, r.resource, dict(r.context)) for r in requests_for(call, P, tags)] == expected


def test_a_call_whose_resource_is_not_described_is_refused() -> None:
    # Given a handler that starts calling an API the request table does not know
    call = RecordedCall("CheckTargetHealth", "elasticloadbalancing:ModifyTargetGroup", "us-east-1",
                        {"TargetGroupArn": TG})
    # Then the check refuses to guess its resource, naming the function and the action
    with pytest.raises(UnknownCall, match="CheckTargetHealth called elasticloadbalancing:ModifyTargetGroup"):
        requests_for(call, P, {})


def test_the_iam_prefix_is_the_signing_name_of_each_service_albgate_calls() -> None:
    # Given the botocore models of the services the adapters use / Then each IAM prefix is the documented one
    import botocore.session

    session = botocore.session.get_session()
    prefixes = {s: iam_prefix(session.get_service_model(s)) for s in
                ("elbv2", "dynamodb", "ecr", "eks", "events", "stepfunctions", "sts")}
    assert prefixes == {"elbv2": "elasticloadbalancing", "dynamodb": "dynamodb", "ecr": "ecr", "eks": "eks",
                        "events": "events", "stepfunctions": "states", "sts": "sts"}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"TracingConfig": {"Mode": "PassThrough"}}, []),
        ({"TracingConfig": {"Mode": "Active"}}, [("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")]),
        ({"LoggingConfig": {"LogGroup": {"Ref": "Logs"}}},
         [("logs:CreateLogStream", "arn:aws:logs:us-east-1:123456789012:log-group:Logs:*"),
          ("logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:Logs:*")]),
        ({"DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}}},
         [("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:Dlq")]),
    ],
    ids=["not-traced", "traced", "own-log-group", "dead-letter-queue"],
)
def test_aws_only_grants_follow_the_function_configuration(properties: dict, expected: list) -> None:
    # Given a function's template properties / Then Lambda's own needs are exactly what they configure
    assert [(r.action, r.resource) for _, r in aws_only_requests(properties, RESOLVER)] == expected


def test_every_aws_only_entry_says_why_and_where_aws_documents_it() -> None:
    from tests.iam.aws_only import AWS_ONLY

    assert all(e.reason and e.source.startswith("https://docs.aws.amazon.com/") for e in AWS_ONLY)
