"""IAM from recorded calls, for the release functions: each role allows every AWS call made with its credentials, and
nothing more, across accounts.

The release config (config/releases-example.json) is synthesized once; the stories (tests/iam/release_stories.py)
drive Plan Release, Release Wave and the Release Trigger through their real adapters on moto, each function with its
own role's credentials in the home account, and every call is filed with the key that signed it. A call signed
with a function's own keys is checked against that function's role in the release stack (plus what Lambda needs
for it on AWS: tests/iam/aws_only.py); a call signed with the keys of another account's release role, which Release
Wave assumed, is checked against that role in the environment stack of its account and Region. Both directions:
a call the role does not allow fails (AccessDenied on AWS), and so does a grant no call uses.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from stacks.config import parse_config
from stacks.release_stack import release_targets
from tests.conftest import ROOT, SKIP_BUNDLING
from tests.iam.aws_only import aws_only_requests
from tests.iam.check import RoleReport, judge
from tests.iam.policy import (
    Request,
    Statement,
    TemplateResolver,
    conditions_hold,
    role_statements,
)
from tests.iam.recorder import RecordedCall
from tests.iam.release_stories import HOME, OTHER, STORIES, ReleaseWorld, record_releases
from tests.iam.requests import NO_PERMISSION_NEEDED, iam_action, requests_for
from tests.iam.world import story_unmet

CONFIG = ROOT / "config" / "releases-example.json"
FUNCTIONS = ["PlanRelease", "ReleaseTrigger", "ReleaseWave"]
ACCESS_ROLES = [f"arn:aws:iam::{OTHER}:role/Albgate-{OTHER}-{region}-Release" for region in ("us-east-1", "eu-west-1")]


# ---------------------------------------------------------------------------------------------------------
# The synthesized release config, the recording, the check
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(cdk_app: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], Path]:
    out = tmp_path_factory.mktemp("release-iam.out")
    app, stack = cdk_app.build_app({**cdk_app.cdk_json_context(), **SKIP_BUNDLING, "albgate_config": str(CONFIG)},
                                   outdir=str(out))
    cdk_app.synthesis_problems(app, stack)  # synthesizes every stack of the app into ``out``
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in out.glob("*.template.json")}
    return templates, out


@pytest.fixture(scope="module")
def release_recording(released: tuple[dict[str, dict[str, Any]], Path]) -> ReleaseWorld:
    templates, out = released
    return record_releases(templates, out)


@pytest.fixture(scope="module")
def statements_of(release_recording: ReleaseWorld) -> dict[str, list[Statement]]:
    """Each release function's role statements and each other account's release role's, by function or role ARN."""
    w = release_recording
    out = {name: role_statements(w.template, fn.role_id, w.resolver) for name, fn in w.functions.items()}
    for arn, role in w.access_roles.items():
        out[arn] = role_statements(w.templates[role.stack], role.role_id, role.resolver)
    return out


def requests_of(call: RecordedCall, resolver: TemplateResolver) -> list[Request]:
    """What IAM is asked for a recorded call; ``sts:AssumeRole`` is authorized on the role it names (the ``role``
    resource type of the Service Authorization Reference for AWS STS), which tests/iam/requests.py has no entry
    for because no environment function assumes a role."""
    if iam_action(call) == "sts:AssumeRole":
        return [Request("sts:AssumeRole", str(call.params["RoleArn"]))]
    return requests_for(call, resolver.placeholders, {})


def check(label: str, statements: Sequence[Statement], calls: Sequence[RecordedCall], resolver: TemplateResolver,
          properties: dict[str, Any] | None = None) -> RoleReport:
    """tests/iam/check.py's ``check_role`` with ``requests_of``: the requests of ``calls`` (and, for a function,
    what Lambda asks with its role) the statements refuse, and the grants none of them uses."""
    report = RoleReport(label)
    asked: list[tuple[str, Request]] = []
    for call in calls:
        if call.action in NO_PERMISSION_NEEDED:
            continue
        asked += [(f"recorded call {call.action} {sorted(call.params)}", r) for r in requests_of(call, resolver)]
    asked += [(f"AWS-only: {entry.name} ({entry.source})", r)
              for entry, r in aws_only_requests(properties or {}, resolver)]
    return judge(report, statements, asked)


def function_report(w: ReleaseWorld, statements: Sequence[Statement], function: str) -> RoleReport:
    return check(function, statements, w.own_calls(function), w.resolver, w.functions[function].properties)


def access_report(w: ReleaseWorld, statements: Sequence[Statement], role_arn: str) -> RoleReport:
    return check(role_arn, statements, w.calls_as(role_arn), w.access_roles[role_arn].resolver)


def report_for(w: ReleaseWorld, statements: Sequence[Statement], role: str) -> RoleReport:
    """A release function's report (``role`` names it) or another account's release role's (``role`` is its ARN)."""
    return function_report(w, statements, role) if role in FUNCTIONS else access_report(w, statements, role)


def role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


# ---------------------------------------------------------------------------------------------------------
# The stories reached their paths
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("story", sorted(STORIES))
def test_every_step_of_the_release_story_reached_its_path(release_recording: ReleaseWorld, story: str) -> None:
    # Given the story told through the real release handlers and adapters on moto
    # Then it ran to its end, and every step reached the path whose calls it is meant to record
    failed = story_unmet(release_recording.steps, story)
    assert not failed, "\n".join(failed)


def test_every_release_function_was_exercised(release_recording: ReleaseWorld) -> None:
    # Given every Lambda of the synthesized release stack / Then each ran in a story
    ran = {s.function for s in release_recording.steps if s.ok}
    assert sorted(release_recording.functions) == FUNCTIONS
    assert sorted(set(FUNCTIONS) - ran) == []


def test_the_releases_file_the_functions_read_is_the_resolved_config(release_recording: ReleaseWorld) -> None:
    # Given the releases file in the functions' layer as synthesized (ALBGATE_RELEASES points there)
    expected = release_targets(parse_config(json.loads(CONFIG.read_text())))
    # Then it holds exactly the configured releases, every child's state machine and role resolved
    assert release_recording.specs == {s.name: s for s in expected}


def test_plan_release_makes_no_aws_call(release_recording: ReleaseWorld) -> None:
    # Given Plan Release's run in the release story / Then it called no AWS API: its role needs nothing but Lambda's
    assert [s.id for s in release_recording.steps if s.function == "PlanRelease" and s.ok] == ["plan-release"]
    assert [c.action for c in release_recording.recorder.calls_of("PlanRelease")] == []


def test_every_call_is_signed_by_its_function_role_or_a_role_release_wave_assumed(
    release_recording: ReleaseWorld,
) -> None:
    # Given every recorded call and the key that signed it
    w = release_recording
    strays = []
    for call in w.recorder.calls:
        principal = w.principal_of(call)
        own = call.function is not None and principal == w.role_arns[call.function]
        assumed = call.function == "ReleaseWave" and principal in w.access_roles
        if not (own or assumed):
            strays.append((call.function, call.action, principal or "no role's keys"))
    # Then each was made by a function with its own role's keys, or by Release Wave with a release role's keys
    assert strays == []
    # And every release role was assumed by Release Wave with its own keys, in both Regions of the other account
    assumes = [c for c in w.recorder.calls if c.action == "sts:AssumeRole"]
    assert {w.principal_of(c) for c in assumes} == {w.role_arns["ReleaseWave"]}
    assert sorted(str(c.params["RoleArn"]) for c in assumes) == sorted(ACCESS_ROLES)
    assert sorted(w.access_roles) == sorted(ACCESS_ROLES)


# ---------------------------------------------------------------------------------------------------------
# The release stack's function roles
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_call_of_a_release_function_is_allowed_by_its_role(release_recording, statements_of, function) -> None:
    # Given the calls the function made with its own role's keys, and that role as synthesized
    report = function_report(release_recording, statements_of[function], function)
    # Then the role allows each (action, resource), and what Lambda needs for the function on AWS
    assert not report.missing, report.describe_missing()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_nothing_is_granted_to_a_release_function_that_no_call_uses(release_recording, statements_of, function) -> None:
    # Given the function's role and the calls made with its keys
    report = function_report(release_recording, statements_of[function], function)
    # Then every grant is used by a recorded call or by the Lambda service (the documented AWS-only list)
    assert not report.unused, report.describe_unused()


# ---------------------------------------------------------------------------------------------------------
# The other account's release roles
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role_arn", ACCESS_ROLES, ids=role_name)
def test_every_call_made_with_a_release_role_is_allowed_by_it(release_recording, statements_of, role_arn) -> None:
    # Given the calls Release Wave made with the keys of the other account's release role, and that role as its
    # environment stack synthesizes it
    calls = release_recording.calls_as(role_arn)
    assert {c.action for c in calls} == {"states:StartExecution", "states:DescribeExecution"}
    report = access_report(release_recording, statements_of[role_arn], role_arn)
    # Then the role allows each of them
    assert not report.missing, report.describe_missing()


@pytest.mark.parametrize("role_arn", ACCESS_ROLES, ids=role_name)
def test_nothing_is_granted_to_a_release_role_that_no_call_uses(release_recording, statements_of, role_arn) -> None:
    # Given the other account's release role and the calls made with its keys
    report = access_report(release_recording, statements_of[role_arn], role_arn)
    # Then every grant is used by one of them
    assert not report.unused, report.describe_unused()


@pytest.mark.parametrize("role_arn", ACCESS_ROLES, ids=role_name)
def test_the_release_role_trusts_release_wave_and_no_role_outside_the_release_stack(
    release_recording: ReleaseWorld, role_arn: str
) -> None:
    # Given the release role's trust policy (which moto does not evaluate) as its environment stack synthesizes it
    role = release_recording.access_roles[role_arn]
    document = role.resolver.resolve(
        release_recording.templates[role.stack]["Resources"][role.role_id]["Properties"]["AssumeRolePolicyDocument"])
    (trust,) = document["Statement"]
    conditions = {op: {k: tuple(v if isinstance(v, list) else [v]) for k, v in keys.items()}
                  for op, keys in trust["Condition"].items()}

    def admits(principal_arn: str) -> bool:
        return conditions_hold(conditions, {"aws:PrincipalArn": (principal_arn,)})

    # Then it lets the home account assume it, and only a role of the release stack: Release Wave's, as
    # CloudFormation names it, and not an environment stack's role of the home account
    assert (trust["Effect"], trust["Action"], trust["Principal"]) == (
        "Allow", "sts:AssumeRole", {"AWS": f"arn:aws:iam::{HOME}:root"})
    assert admits(release_recording.role_arns["ReleaseWave"])
    assert not admits(f"arn:aws:iam::{HOME}:role/Albgate-{HOME}-us-east-1-ReleaseWaveRole")


def test_the_home_role_alone_reaches_none_of_the_other_accounts_children(release_recording, statements_of) -> None:
    # Given the calls made with the release roles' keys, checked as if Release Wave's own keys had made them
    w = release_recording
    calls = [c for arn in ACCESS_ROLES for c in w.calls_as(arn)]
    report = check("ReleaseWave", statements_of["ReleaseWave"], calls, w.resolver)
    # Then every one of them is refused: the children in 222222222222 are reached through its roles only
    asked = {(r.action, r.resource) for c in calls for r in requests_of(c, w.resolver)}
    assert {r.resource.split(":")[4] for _, r in report.missing} == {OTHER}
    assert {(r.action, r.resource) for _, r in report.missing} == asked


# ---------------------------------------------------------------------------------------------------------
# Negative controls: a role without a statement a recorded call needs is reported
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "sid", "action"),
    [
        ("ReleaseWave", "ReachOtherAccounts", "sts:AssumeRole"),
        ("ReleaseWave", "StartRollouts", "states:StartExecution"),
        ("ReleaseWave", "ReadRollouts", "states:DescribeExecution"),
        ("ReleaseTrigger", "PushTimes", "ecr:DescribeImages"),
        ("ReleaseTrigger", "LeaseHolderStatus", "states:DescribeExecution"),
        ("ReleaseTrigger", "ReleaseLeases", "dynamodb:UpdateItem"),
        ("ReleaseTrigger", "PublishEvents", "events:PutEvents"),
        (ACCESS_ROLES[0], "StartRollouts", "states:StartExecution"),
        (ACCESS_ROLES[1], "ReadRollouts", "states:DescribeExecution"),
    ],
    ids=["wave-assume", "wave-start", "wave-read", "trigger-push-times", "trigger-holder", "trigger-queue",
         "trigger-queued-event", "use1-role-start", "euw1-role-read"],
)
def test_a_role_missing_a_grant_is_reported_naming_the_action(
    release_recording: ReleaseWorld, statements_of: dict[str, list[Statement]], role: str, sid: str, action: str
) -> None:
    # Given a deliberately broken copy of the role: the statement granting the action removed
    broken = [s for s in copy.deepcopy(statements_of[role]) if s.sid != sid]
    assert len(broken) < len(statements_of[role]), f"{role} has no statement {sid}"
    # When the calls made with its keys are checked against it
    report = report_for(release_recording, broken, role)
    # Then the check reports the action the handler calls and the role no longer allows
    assert action in {r.action for _, r in report.missing}, report.describe_missing()



@pytest.mark.parametrize("role", ["ReleaseWave", ACCESS_ROLES[1]], ids=["wave", "euw1-role"])
def test_a_grant_no_call_uses_is_reported(
    release_recording: ReleaseWorld, statements_of: dict[str, list[Statement]], role: str
) -> None:
    # Given the role with one more statement: stopping the rollouts it starts, which no release code does
    (start,) = [s for s in statements_of[role] if s.sid == "StartRollouts"]
    extra = Statement("StopRollouts", "Allow", ("states:StopExecution",), start.resources)
    # When the calls made with its keys are checked against it
    report = report_for(release_recording, [*statements_of[role], extra], role)
    # Then exactly that grant is reported unused
    assert [(g.sid, g.action) for g in report.unused] == [("StopRollouts", "states:StopExecution")]
