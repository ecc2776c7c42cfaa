"""Pure decisions of the trigger: execution names, tag globs, lock decisions and lifetimes, settings errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.trigger import (
    TRIGGER_CONFIG_PATH,
    LockDecision,
    LockItem,
    Pending,
    TriggerApplication,
    decide,
    execution_name,
    lock_seconds,
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


def _lock(name="held", pushed_at="2025-01-01T10:00:00Z", expires_at=2000, pending=None):
    return LockItem("k", name, "{}", expires_at, pushed_at, "img", pending)


def _pending(name="waiting", pushed_at="2025-01-01T10:05:00Z"):
    return Pending(name, "{}", pushed_at, "img", 600)


@pytest.mark.parametrize(
    ("item", "name", "pushed_at", "now", "expected"),
    [
        pytest.param(None, "new", "2025-01-01T11:00:00Z", 1000, LockDecision.ACQUIRE, id="free"),
        pytest.param(_lock(), "held", "2025-01-01T10:00:00Z", 1000, LockDecision.HELD_BY_SELF, id="replay-holder"),
        pytest.param(_lock(), "new", "2025-01-01T11:00:00Z", 2000, LockDecision.ACQUIRE, id="expired-takeover"),
        pytest.param(_lock(), "new", "2025-01-01T11:00:00Z", 1999, LockDecision.QUEUE, id="held-queue"),
        pytest.param(_lock(pending=_pending()), "waiting", "2025-01-01T10:05:00Z", 1000,
                     LockDecision.ALREADY_PENDING, id="replay-pending"),
        pytest.param(_lock(pending=_pending()), "newer", "2025-01-01T10:06:00Z", 1000, LockDecision.QUEUE,
                     id="newer-replaces-pending"),
        pytest.param(_lock(pending=_pending()), "older", "2025-01-01T10:04:00Z", 1000, LockDecision.STALE,
                     id="older-than-pending"),
        pytest.param(_lock(), "older", "2025-01-01T09:00:00Z", 1000, LockDecision.STALE, id="older-than-holder"),
    ],
)
def test_lock_decisions(item, name, pushed_at, now, expected):
    assert decide(item, name, pushed_at, now).kind is expected


# A step at its worst: its step deadline, its drain deadline (420 s: ELB's default 300 s delay + 120 s) and twice
# the longest wait a loop may overshoot its deadline by (144 s: the throttle cap, jittered); then a one-step
# rollback like it, 30 min for Lambda run time and retries, and the lock's own 10 min.
STEP = 900 + 420 + 2 * 144
MARGINS = 1800 + 600


@pytest.mark.parametrize(
    ("policy", "replicas", "expected"),
    [
        pytest.param({}, None, 4 * STEP + STEP + MARGINS, id="default-policy"),
        pytest.param({"batch_size": 2}, 5, 3 * STEP + STEP + MARGINS, id="batches-of-known-replicas"),
        pytest.param({"steps": ["100%"], "drain_deadline_seconds": 60, "bake_seconds": 40}, None,
                     (900 + 60 + 288) * 2 + MARGINS, id="one-step-own-drain-no-bake-after-the-last"),
        pytest.param({"steps": [1, "100%"], "bake_seconds": 40}, None, 2 * STEP + 40 + STEP + MARGINS,
                     id="bake-between-steps"),
        pytest.param({"approval_before_steps": [2]}, None, 4 * STEP + 24 * 3600 + STEP + MARGINS,
                     id="approval-waits-up-to-24h"),
        pytest.param({"steps": [f"{p}%" for p in range(5, 101, 5)], "step_deadline_seconds": 86400}, None,
                     48 * 3600 + 600, id="capped-by-the-state-machine-timeout"),
    ],
)
def test_lock_lifetime_covers_the_longest_rollout_the_policy_allows(policy, replicas, expected):
    # Given a policy (and the replicas, for batches) / Then the lock outlives its worst-case rollout
    assert lock_seconds(RolloutPolicy(**policy), replicas) == expected


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
