"""Pure decisions of the trigger: execution names, tag globs, lease decisions, settings errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.trigger import (
    TRIGGER_CONFIG_PATH,
    LockDecision,
    LockItem,
    Pending,
    TriggerApplication,
    START_WINDOW_SECONDS,
    decide,
    execution_name,
    holder_running,
    matching_applications,
)
from lambdas.handlers.ecr_trigger import TriggerSettings
from tests.trigger.conftest import APPLICATIONS, DIGEST_A, DIGEST_B, settings_env, write_trigger_config

SFN_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")  # StartExecution name, restricted to what CloudWatch Logs accepts


@pytest.mark.parametrize(
    ("cluster", "namespace", "deployment"),
    [
        pytest.param("prod", "readiness", "nginx-app", id="short"),
        pytest.param("c" * 100, "n" * 63, "d" * 253, id="longest-names"),
        pytest.param("prod_eu-1", "ns", "api.v2.internal", id="dots-and-underscores"),
    ],
)
def test_execution_names_fit_step_functions_rules_and_are_deterministic(cluster, namespace, deployment):
    name = execution_name(cluster, namespace, deployment, DIGEST_A)
    assert SFN_NAME.match(name), name
    assert name == execution_name(cluster, namespace, deployment, DIGEST_A)


def test_execution_names_differ_when_any_part_differs():
    base = ("prod", "readiness", "nginx-app", DIGEST_A)
    variants = [base, ("staging", *base[1:]), (base[0], "other", *base[2:]), (*base[:2], "nginx-app2", base[3]),
                (*base[:3], DIGEST_B), ("p", "rod", *base[2:])]
    assert len({execution_name(*v) for v in variants}) == len(variants)


def test_long_deployments_sharing_a_prefix_still_get_distinct_names():
    a = execution_name("prod", "ns", "x" * 200 + "-a", DIGEST_A)
    b = execution_name("prod", "ns", "x" * 200 + "-b", DIGEST_A)
    assert a != b and len(a) <= 80 and len(b) <= 80


APPS = [
    TriggerApplication(cluster="prod", namespace="n", deployment="a", container="c", ecr_repository="app",
                       tag_pattern="v*"),
    TriggerApplication(cluster="prod", namespace="n", deployment="b", container="c", ecr_repository="app",
                       tag_pattern="v[0-9].[0-9]"),
    TriggerApplication(cluster="dev", namespace="n", deployment="a", container="c", ecr_repository="app"),
]


@pytest.mark.parametrize(
    ("repository", "tag", "expected"),
    [
        pytest.param("app", "v1.2", ["prod/n/a", "prod/n/b", "dev/n/a"], id="all-three"),
        pytest.param("app", "v10.2", ["prod/n/a", "dev/n/a"], id="one-char-class"),
        pytest.param("app", "V1.2", ["dev/n/a"], id="case-sensitive"),
        pytest.param("app", "latest", ["dev/n/a"], id="star-only"),
        pytest.param("other", "v1.2", [], id="other-repository"),
    ],
)
def test_tags_match_globs_case_sensitively(repository, tag, expected):
    assert [a.lock_key for a in matching_applications(APPS, repository, tag)] == expected


T0, T1 = "2025-01-01T10:00:00Z", "2025-01-01T10:05:00Z"  # the event times of two pushes (whole seconds)


def _lock(name="held", pushed_at=T0, pending=None, image="img-held", claimed_at=1000):
    return LockItem("k", name, "{}", 99999, pushed_at, image, pending, claimed_at=claimed_at)


def _push(name, pushed_at, image=None):
    return Pending(name, "{}", pushed_at, image or f"img-{name}")


def _pushed_at(times):
    return lambda image: times.get(image)


NO_ECR = _pushed_at({})


@pytest.mark.parametrize(
    ("item", "push", "running", "pushed_at", "expected", "starts"),
    [
        pytest.param(None, _push("new", T1), None, NO_ECR, LockDecision.ACQUIRE, None, id="free"),
        pytest.param(_lock(), _push("held", T0), None, NO_ECR, LockDecision.HELD_BY_SELF, None, id="replay-holder"),
        pytest.param(_lock(), _push("new", T1), True, NO_ECR, LockDecision.QUEUE, None, id="held-queue"),
        pytest.param(_lock(pushed_at=""), _push("new", T0), True, NO_ECR, LockDecision.QUEUE, None,
                     id="held-by-a-hand-started-rollout-queue"),
        pytest.param(_lock(pending=_push("waiting", T1)), _push("waiting", T1), True, NO_ECR,
                     LockDecision.ALREADY_PENDING, None, id="replay-pending"),
        pytest.param(_lock(pending=_push("waiting", T1)), _push("newer", "2025-01-01T10:06:00Z"), True, NO_ECR,
                     LockDecision.QUEUE, None, id="newer-replaces-pending"),
        pytest.param(_lock(pending=_push("waiting", T1)), _push("older", "2025-01-01T10:04:00Z"), True, NO_ECR,
                     LockDecision.STALE, None, id="older-than-pending"),
        pytest.param(_lock(), _push("older", "2025-01-01T09:00:00Z"), True, NO_ECR, LockDecision.STALE, None,
                     id="older-than-holder"),
        # The holder is proven not running (its end event late or lost): a takeover, never by a clock alone
        pytest.param(_lock(), _push("new", T1), False, NO_ECR, LockDecision.TAKE_OVER, "new",
                     id="holder-ended-this-push-starts"),
        pytest.param(_lock(pending=_push("waiting", T1)), _push("new", "2025-01-01T10:06:00Z"), False, NO_ECR,
                     LockDecision.TAKE_OVER, "new", id="holder-ended-newer-push-supersedes-the-pending-one"),
        pytest.param(_lock(pending=_push("waiting", T1)), _push("older", "2025-01-01T10:04:00Z"), False, NO_ECR,
                     LockDecision.TAKE_OVER, "waiting", id="holder-ended-the-pending-push-starts-not-lost"),
        pytest.param(_lock(), _push("older", "2025-01-01T09:00:00Z"), False, NO_ECR, LockDecision.STALE, None,
                     id="holder-ended-older-push-stays-stale"),
        # Two pushes in the same second: ECR's imagePushedAt orders them, or albgate refuses to guess
        pytest.param(_lock(pending=_push("waiting", T1, "img-w")), _push("same", T1, "img-s"), True,
                     _pushed_at({"img-w": 100.25, "img-s": 100.75}), LockDecision.QUEUE, None,
                     id="same-second-ecr-says-newer"),
        pytest.param(_lock(pending=_push("waiting", T1, "img-w")), _push("same", T1, "img-s"), True,
                     _pushed_at({"img-w": 100.75, "img-s": 100.25}), LockDecision.STALE, None,
                     id="same-second-ecr-says-older"),
        pytest.param(_lock(pending=_push("waiting", T1, "img-w")), _push("same", T1, "img-s"), True, NO_ECR,
                     LockDecision.UNORDERED, None, id="same-second-ecr-cannot-tell"),
        pytest.param(_lock(pushed_at=T1, image="img-h"), _push("same", T1, "img-s"), True,
                     _pushed_at({"img-h": 5.0, "img-s": 5.0}), LockDecision.UNORDERED, None,
                     id="same-second-as-the-running-image-same-push-time"),
    ],
)
def test_lock_decisions(item, push, running, pushed_at, expected, starts):
    decision = decide(item, push, running=running, pushed_at=pushed_at)
    assert decision.kind is expected, decision.reason
    assert (decision.start.execution_name if decision.start else None) == starts


@pytest.mark.parametrize(
    ("status", "since_claim", "running"),
    [
        pytest.param("RUNNING", 10_000, True, id="running"),
        pytest.param("PENDING_REDRIVE", 10_000, True, id="about-to-be-redriven"),
        pytest.param("SUCCEEDED", 1, False, id="succeeded"),
        pytest.param("FAILED", 1, False, id="failed"),
        pytest.param("TIMED_OUT", 1, False, id="timed-out"),
        pytest.param("ABORTED", 1, False, id="aborted"),
        pytest.param(None, 30, True, id="claimed-and-starting"),
        pytest.param(None, START_WINDOW_SECONDS, False, id="claimed-and-never-started"),
    ],
)
def test_only_a_proof_frees_a_lease(status, since_claim, running):
    # Given a lease claimed at t=1000 and DescribeExecution's answer about its holder (None: no such execution)
    item = _lock(claimed_at=1000)
    # Then the holder may run unless it ended, or never started although a start would have happened by now
    assert holder_running(item, status, 1000 + since_claim) is running


ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Rollout"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param({"ALBGATE_STATE_MACHINE_ARN": None}, "ALBGATE_STATE_MACHINE_ARN", id="arn-missing"),
        pytest.param({"ALBGATE_STATE_MACHINE_ARN": "Rollout"}, "ALBGATE_STATE_MACHINE_ARN", id="arn-bad"),
        pytest.param({"ALBGATE_LOCK_TABLE": None}, "ALBGATE_LOCK_TABLE", id="table-missing"),
    ],
)
def test_a_bad_environment_fails_naming_the_variable(tmp_path, change, named):
    env = {**settings_env(ARN, write_trigger_config(tmp_path / "trigger.json")), **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(InvalidInputError) as exc:
        TriggerSettings.from_environ(env)
    assert f"{named}:" in str(exc.value)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        pytest.param("[{", "Invalid JSON", id="not-json"),
        pytest.param(json.dumps({"applications": [{"cluster": "c"}], "policy": {}}), "applications.0.namespace:",
                     id="app-field-missing"),
        pytest.param(json.dumps({"applications": [], "policy": {}}), "applications:", id="no-application"),
        pytest.param(json.dumps({"applications": APPLICATIONS, "policy": {"steps": [1]}}), "policy.steps:",
                     id="policy-invalid"),
        pytest.param(json.dumps({"applications": APPLICATIONS}), "policy:", id="policy-missing"),
    ],
)
def test_a_bad_configuration_file_fails_naming_the_file_and_the_field(tmp_path, content, named):
    # Given the trigger's configuration file with one thing wrong
    config = tmp_path / "trigger.json"
    config.write_text(content)
    # When the trigger reads its settings / Then it fails naming the file and the field
    with pytest.raises(InvalidInputError) as exc:
        TriggerSettings.from_environ(settings_env(ARN, config))
    assert str(exc.value).startswith(f"trigger configuration {config}: ") and named in str(exc.value)


def test_a_missing_configuration_file_names_the_file_and_the_layer(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(InvalidInputError) as exc:
        TriggerSettings.from_environ(settings_env(ARN, missing))
    assert f"trigger configuration {missing}: cannot be read" in str(exc.value) and "layer" in str(exc.value)


def test_without_the_variable_the_configuration_is_read_where_the_layer_puts_it():
    # Given no ALBGATE_TRIGGER_CONFIG (this machine has no /opt/albgate/trigger.json)
    env = {k: v for k, v in settings_env(ARN, Path("unused")).items() if k != "ALBGATE_TRIGGER_CONFIG"}
    # Then the layer's path is the one read
    with pytest.raises(InvalidInputError) as exc:
        TriggerSettings.from_environ(env)
    assert f"trigger configuration {TRIGGER_CONFIG_PATH}:" in str(exc.value)


def test_settings_take_account_and_region_from_the_state_machine_arn(tmp_path):
    s = TriggerSettings.from_environ(settings_env(ARN, write_trigger_config(tmp_path / "trigger.json")))
    assert (s.account, s.region) == ("123456789012", "us-east-1")
    assert [a.deployment for a in s.applications] == [a["deployment"] for a in APPLICATIONS]
    assert s.policy.steps == [1, "50%", "100%"]
