"""IAM from recorded calls: each function's role allows every AWS call its handler makes, and nothing more.

The stories (tests/iam/stories.py) drive every deployed handler through its real adapters on moto and the fake
Kubernetes API server; every AWS call is recorded under the function that made it. Here each function's role,
as synthesized, is checked against those calls: a call the role does not allow fails (AccessDenied on AWS), and
so does a grant no recorded call and no AWS-only entry (tests/iam/aws_only.py) uses.
"""

from __future__ import annotations

import copy

import pytest

from stacks.constructs.lbc_iam import CLUSTER_TAG
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER
from tests.iam.check import check_role
from tests.iam.policy import Statement
from tests.iam.private_stories import PRIVATE_STORIES
from tests.iam.stories import STORIES
from tests.iam.world import World, story_unmet

FUNCTIONS = sorted(s.name for s in ALL_HANDLERS + TRIGGER)


def report_for(recording: World, statements: list[Statement], function: str):
    fn = recording.functions[function]
    return check_role(function, fn.properties, statements, recording.recorder.calls_of(function),
                      recording.resolver, recording.resource_tags)


@pytest.mark.parametrize("story", sorted(STORIES))
def test_every_step_of_the_story_reached_its_path(recording: World, story: str) -> None:
    # Given the story told through the real handlers and adapters
    # Then it ran to its end, and every step reached the path whose calls it is meant to record
    failed = story_unmet(recording.steps, story)
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("story", sorted(PRIVATE_STORIES))
def test_every_step_of_the_private_story_reached_its_path(private_recording: World, story: str) -> None:
    # Given the private deployment's bootstrap told through the real handlers and adapters
    # Then it ran to its end: the VPC was read, the registry logged in to, the chart pulled from the mirror
    failed = story_unmet(private_recording.steps, story)
    assert not failed, "\n".join(failed)


def test_every_deployed_function_was_exercised(recording: World) -> None:
    # Given every Lambda of the synthesized template / Then each ran at least once in a story
    ran = {s.function for s in recording.steps if s.ok}
    assert sorted(recording.functions) == FUNCTIONS
    assert sorted(set(recording.functions) - ran) == []


def test_no_call_is_made_outside_a_function(recording: World) -> None:
    # Given every recorded call / Then each was made by the handler being exercised, none by the world itself
    assert [c.action for c in recording.recorder.calls if c.function is None] == []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_recorded_call_is_allowed_by_the_function_role(recording, statements_of, function: str) -> None:
    # Given the AWS calls the function was recorded making, and its role as synthesized
    report = report_for(recording, statements_of[function], function)
    # Then the role allows each (action, resource, condition keys), and what Lambda needs for it on AWS
    assert not report.missing, report.describe_missing()


# Known over-grants, each a change to make in the stack, not a grant to keep: the test runs and must fail
# (strict), so the entry goes as soon as the stack is fixed.
# Grants a function has that no recorded call uses, each with why it is still there (none today).
OVER_GRANTED: dict[str, str] = {}


@pytest.mark.parametrize(
    "function",
    [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=OVER_GRANTED[f])) if f in OVER_GRANTED else f
     for f in FUNCTIONS],
)
def test_nothing_is_granted_that_no_recorded_call_uses(recording, statements_of, function: str) -> None:
    # Given the function's role and its recorded calls
    report = report_for(recording, statements_of[function], function)
    # Then every grant is used by a recorded call or by the Lambda service (the documented AWS-only list)
    assert not report.unused, report.describe_unused()


@pytest.mark.parametrize(
    ("function", "action", "sid"),
    [
        ("CheckTargetHealth", "elasticloadbalancing:DeregisterTargets", "DrainReleasedTargets"),
        ("CheckTargetHealth", "elasticloadbalancing:RegisterTargets", "RegisterMissedTargets"),
        ("VerifyDrain", "elasticloadbalancing:DeregisterTargets", "DrainReleasedTargets"),
        ("Preflight", "ecr:DescribeImages", "PinImageTags"),
        ("GateKeeper", "elasticloadbalancing:DescribeTargetHealth", "ReadElb"),
        ("EcrTrigger", "states:StartExecution", "StartRollout"),
    ],
    ids=["gate-drain-hand-over", "gate-registers-missed-targets", "verify-drain", "preflight-pins-tags",
         "gate-keeper-health", "trigger-starts"],
)
def test_a_role_missing_a_grant_is_reported_naming_the_action(
    recording, statements_of, function: str, action: str, sid: str
) -> None:
    # Given a deliberately broken copy of the function's role: the statement granting the action removed
    broken = [s for s in copy.deepcopy(statements_of[function]) if s.sid != sid]
    assert len(broken) < len(statements_of[function]), f"{function} has no statement {sid}"
    # When the recorded calls are checked against it
    report = report_for(recording, broken, function)
    # Then the check reports the action the handler calls and the role no longer allows
    assert action in {r.action for _, r in report.missing}, report.describe_missing()


def test_a_handler_spec_without_the_drain_grant_fails_the_check(recording, statements_of) -> None:
    # Given Check Target Health's role as it was before it could deregister (no elb_deregister in its spec)
    without = [s for s in statements_of["CheckTargetHealth"]
               if "elasticloadbalancing:DeregisterTargets" not in s.actions]
    # When the calls of the drain hand-over are checked against it
    report = report_for(recording, without, "CheckTargetHealth")
    # Then exactly that call is missing, on the target group the handler drained
    assert {(r.action, r.resource.split(":targetgroup/")[0]) for _, r in report.missing} == {
        ("elasticloadbalancing:DeregisterTargets",
         f"arn:aws:elasticloadbalancing:{recording.region}:{recording.placeholders.account}")
    }


def test_the_gate_changes_targets_only_in_groups_a_configured_clusters_controller_tagged(
    recording, statements_of
) -> None:
    # Given the gate's recorded calls, and its target groups as if another cluster's controller had tagged them
    fn = recording.functions["CheckTargetHealth"]
    foreign = {arn: {**tags, CLUSTER_TAG: "another-cluster"} for arn, tags in recording.resource_tags.items()}
    # When they are checked against its role
    report = check_role("CheckTargetHealth", fn.properties, statements_of["CheckTargetHealth"],
                        recording.recorder.calls_of("CheckTargetHealth"), recording.resolver, foreign)
    # Then the registration of the missed target and the drain's deregistration are refused, the reads are not
    assert {r.action for _, r in report.missing} == {
        "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"
    }


@pytest.mark.parametrize(
    "function",
    [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=OVER_GRANTED[f])) if f in OVER_GRANTED else f
     for f in FUNCTIONS],
)
def test_in_a_vpc_the_role_differs_only_by_what_lambda_needs_there(
    recording, private_recording, vpc_roles, function: str
) -> None:
    # Given the stack for a private cluster endpoint whose chart is on ECR (every function runs in its VPC)
    fn = vpc_roles.functions[function]
    # When its role is checked against the same recorded calls, plus those only a private deployment makes
    # (Check Network reading the VPC, the install's registry login and chart pull)
    calls = recording.recorder.calls_of(function) + private_recording.recorder.calls_of(function)
    report = check_role(function, fn.properties, vpc_roles.statements[function], calls, vpc_roles.resolver,
                        recording.resource_tags)
    # Then the calls are allowed, and the only grants beyond them are the network interfaces Lambda manages there
    assert not report.missing, report.describe_missing()
    assert not report.unused, report.describe_unused()


@pytest.mark.parametrize(("function", "action", "sid"), [
    ("BootstrapInstallController", "ecr:GetAuthorizationToken", "LogInToChartRegistry"),
    ("BootstrapInstallController", "ecr:BatchGetImage", "PullChart"),
    ("BootstrapCheckNetwork", "ec2:DescribeVpcEndpoints", "ReadVpcNetwork"),
], ids=["registry-login", "chart-pull", "network-read"])
def test_a_private_role_missing_a_grant_is_reported_naming_the_action(
    private_recording, vpc_roles, function: str, action: str, sid: str
) -> None:
    # Given the private deployment's role without the statement that grants the action
    full = vpc_roles.statements[function]
    broken = [s for s in copy.deepcopy(full) if s.sid != sid]
    assert len(broken) < len(full), f"{function} has no statement {sid}"
    # When the private story's calls are checked against it / Then the action is reported missing
    report = check_role(function, vpc_roles.functions[function].properties, broken,
                        private_recording.recorder.calls_of(function), vpc_roles.resolver, {})
    assert action in {r.action for _, r in report.missing}, report.describe_missing()


def test_in_the_vpc_variant_every_function_that_reaches_the_cluster_is_in_the_vpc(vpc_roles) -> None:
    # Given the private-endpoint stack / Then the network-interface grants above were checked where they matter
    kube = sorted(s.name for s in ALL_HANDLERS + TRIGGER if s.kube != "none")
    assert [f for f in kube if not vpc_roles.functions[f].properties.get("VpcConfig")] == []
