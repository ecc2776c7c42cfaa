"""A config with a release over five clusters in two accounts and two Regions (config/releases-example.json),
synthesized once: one stack per account and Region plus the release stack, each cdk-nag clean; the release
reaches exactly the rollout state machines it names (directly in its own account, through each other account's
release role); the release definition passes asl-validator, statelint and cfn-lint, reads only fields of its
state, and its graph is the reviewed one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from albgate.sfn_local.extract import extract_state_machine
from albgate.template import RELEASE_STATE_MACHINE_PREFIX, state_machine_id
from lambdas.domain.contract import RELEASE_STOPPED_ERROR
from lambdas.domain.release import ReleaseState, WaveVerdict, parse_specs
from stacks.config import parse_config
from stacks.release_stack import release_targets
from tests.conftest import ROOT, SKIP_BUNDLING
from tests.infrastructure.cfn import with_plain_definitions
from tests.infrastructure.test_asl_validators import asl_validator, is_statelint_limitation, statelint, write_definition
from tests.infrastructure.test_cfn_lint import cfn_lint
from tests.infrastructure.test_contract import json_paths, resolves
from tests.infrastructure.test_state_machine_graph import edges

CONFIG = ROOT / "config" / "releases-example.json"
HOME, OTHER = "111111111111", "222222222222"


@pytest.fixture(scope="module")
def released(cdk_app, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("release.out")
    app, _ = cdk_app.build_app({**cdk_app.cdk_json_context(), **SKIP_BUNDLING, "albgate_config": str(CONFIG)},
                               outdir=str(out))
    problems = cdk_app.synthesis_problems(app, _)
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in Path(out).glob("*.template.json")}
    return {"problems": problems, "templates": templates, "out": out, "app": app}


def resources(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def statements(template: dict, sid: str) -> list[dict]:
    return [s for p in resources(template, "AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == sid]


@pytest.fixture(scope="module")
def release_template(released) -> dict:
    return released["templates"]["Albgate-Release"]


@pytest.fixture(scope="module")
def release_definition(release_template) -> dict:
    return extract_state_machine(release_template, state_machine_id(release_template, RELEASE_STATE_MACHINE_PREFIX)).definition


def test_one_stack_per_account_and_region_plus_the_release_stack_all_nag_clean(released):
    # Given the five clusters in (111, us-east-1), (222, us-east-1), (222, eu-west-1)
    # Then there is one stack each, the release stack, and no unacknowledged finding in any of them
    assert sorted(released["templates"]) == ["Albgate-111111111111-us-east-1", "Albgate-222222222222-eu-west-1",
                                             "Albgate-222222222222-us-east-1", "Albgate-Release"]
    assert released["problems"] == []


def test_released_environments_name_their_rollout_state_machine_and_only_other_accounts_get_a_role(released):
    for name, template in released["templates"].items():
        if name == "Albgate-Release":
            continue
        machines = {v["Properties"].get("StateMachineName") for v in resources(template, "AWS::StepFunctions::StateMachine").values()}
        assert f"{name}-Rollout" in machines
        roles = [v for v in resources(template, "AWS::IAM::Role").values()
                 if v["Properties"].get("RoleName") == f"{name}-Release"]
        assert len(roles) == (1 if OTHER in name else 0), name
        for role in roles:
            (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert trust["Principal"] == {"AWS": f"arn:aws:iam::{HOME}:root"}
            assert trust["Condition"] == {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{HOME}:role/Albgate-Release-*"}}


def test_the_release_reaches_its_own_account_directly_and_the_other_through_its_roles(release_template):
    (start,) = statements(release_template, "StartRollouts")
    (read,) = statements(release_template, "ReadRollouts")
    (assume,) = statements(release_template, "ReachOtherAccounts")
    own = f"arn:aws:states:us-east-1:{HOME}:stateMachine:Albgate-{HOME}-us-east-1-Rollout"
    assert start["Action"] == "states:StartExecution" and start["Resource"] == own
    assert read["Resource"] == own.replace(":stateMachine:", ":execution:") + ":*"
    assert sorted(assume["Resource"]) == [f"arn:aws:iam::{OTHER}:role/Albgate-{OTHER}-eu-west-1-Release",
                                          f"arn:aws:iam::{OTHER}:role/Albgate-{OTHER}-us-east-1-Release"]


def test_the_releases_file_in_the_layer_is_the_resolved_config(released):
    # Given the layer folder the release functions read
    files = list((ROOT / ".albgate-cache" / "releases").glob("*/albgate/releases.json"))
    texts = {f.read_text() for f in files}
    expected = release_targets(parse_config(json.loads(CONFIG.read_text())))
    # Then one of them holds exactly the resolved releases (waves, clusters, ARNs)
    parsed = [parse_specs(t) for t in texts]
    assert {"nginx-app": expected[0]} in parsed


def test_the_release_definition_passes_both_asl_validators(release_definition, tmp_path):
    path = write_definition(tmp_path, "release", release_definition)
    run = asl_validator(path)
    assert run.returncode == 0 and "is valid" in run.stdout, run.stdout + run.stderr
    assert [p for p in statelint(path) if not is_statelint_limitation(p)] == []


def test_every_release_template_is_cfn_lint_clean(released):
    for name, template in released["templates"].items():
        assert cfn_lint(with_plain_definitions(template)) == [], name


def test_every_path_the_release_reads_names_a_field_of_its_state(release_definition):
    paths = json_paths(release_definition)
    assert len(paths) > 10
    # The state is {"release": ReleaseState} (after Plan Release) or a caught error at $.failure
    unknown = sorted((s, k, p) for s, k, p in paths
                     if not (p.startswith("$.failure") or (p.startswith("$.release") and resolves(ReleaseState, "$" + p[len("$.release"):]))))
    assert unknown == []


def test_the_release_graph(release_definition):
    states = release_definition["States"]
    assert release_definition["StartAt"] == "Plan Release"
    assert edges(states["Plan Release"])["next"] == "Announce Release Started"
    assert edges(states["Approve Wave?"]) == {"$.release.approval_needed=True": "Wait For Wave Approval",
                                              "default": "Start Wave Rollouts"}
    assert edges(states["Wave Passed?"]) == {f"$.release.verdict={WaveVerdict.WAITING.value}": "Wait For Wave Rollouts",
                                             f"$.release.verdict={WaveVerdict.PASSED.value}": "Announce Wave Passed",
                                             "default": "Roll Back Completed Waves?"}
    assert edges(states["More Waves?"]) == {"$.release.more_waves=True": "Bake Before Next Wave",
                                            "default": "Announce Release Succeeded"}
    assert edges(states["Bake Before Next Wave"])["next"] == "Approve Wave?"
    assert edges(states["Roll Back Completed Waves?"]) == {"$.release.rollback_needed=True": "Start Rollbacks",
                                                           "default": "Announce Release Stopped"}
    assert states["Release Stopped"]["Error"] == RELEASE_STOPPED_ERROR
    # every loop has an explicit end: each Fail has an error and a cause
    for name, s in states.items():
        if s["Type"] == "Fail":
            assert ("Error" in s or "ErrorPath" in s) and ("Cause" in s or "CausePath" in s), name
    # every state is reachable
    seen, todo = set(), [release_definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges(states[name]).values())
    assert seen == set(states)


def test_a_push_to_the_releases_repository_reaches_the_release_trigger_with_its_least_rights(release_template):
    # Given the example release names ecr_repository nginx-app
    rules = resources(release_template, "AWS::Events::Rule")
    patterns = [r["Properties"]["EventPattern"] for r in rules.values()]
    push = next(p for p in patterns if p.get("source") == ["aws.ecr"])
    ended = next(p for p in patterns if p.get("source") == ["aws.states"])
    # Then pushes of that repository in the home account, and the release state machine's ends, reach the trigger
    assert push["detail"] == {"action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": ["nginx-app"]}
    assert push["account"] == [HOME]
    assert sorted(ended["detail"]["status"]) == ["ABORTED", "FAILED", "SUCCEEDED", "TIMED_OUT"]
    # and the trigger may do exactly what the release trigger does, on its own resources
    sids = {s["Sid"]: s for s in statements(release_template, "StartRelease") + statements(release_template, "ReleaseLeases")
            + statements(release_template, "PushTimes")}
    assert sids["StartRelease"]["Action"] == "states:StartExecution"
    assert sids["StartRelease"]["Resource"] == {"Ref": state_machine_id(release_template, RELEASE_STATE_MACHINE_PREFIX)}
    assert sorted(sids["ReleaseLeases"]["Action"]) == ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem",
                                                       "dynamodb:UpdateItem"]
    assert sids["PushTimes"]["Resource"] == f"arn:aws:ecr:us-east-1:{HOME}:repository/nginx-app"


def test_the_summary_names_every_environments_stack(cdk_app, released):
    # Given the app of the release example, When its environments' stacks are summarised as `python app.py` does
    stacks = cdk_app.environment_stacks(released["app"])
    lines = [cdk_app.summary(st.config, st, "cdk.out").splitlines()[0] for st in stacks]
    # Then each account and Region's stack is there, in config order, with its own account and Region
    assert lines == [
        f"albgate: synthesized stack Albgate-{HOME}-us-east-1 to cdk.out/ (account {HOME}, region us-east-1)",
        f"albgate: synthesized stack Albgate-{OTHER}-us-east-1 to cdk.out/ (account {OTHER}, region us-east-1)",
        f"albgate: synthesized stack Albgate-{OTHER}-eu-west-1 to cdk.out/ (account {OTHER}, region eu-west-1)",
    ]
