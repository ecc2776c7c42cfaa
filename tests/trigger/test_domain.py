"""Pure decisions of the trigger: execution names, tag globs, lock decisions and lifetimes, settings errors."""

from __future__ import annotations

import json
import re

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.trigger import (
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
from tests.trigger.conftest import DIGEST_A, DIGEST_B, settings_env

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


@pytest.mark.parametrize(
    ("policy", "replicas", "expected"),
    [
        # 4 steps x (900 step + 420 drain) x 2 (rollback) + 600 margin
        pytest.param({}, None, 4 * 1320 * 2 + 600, id="default-policy"),
        pytest.param({"batch_size": 2}, 5, 3 * 1320 * 2 + 600, id="batches-of-known-replicas"),
        pytest.param({"steps": ["100%"], "drain_deadline_seconds": 60, "bake_seconds": 40}, None,
                     1 * 1000 * 2 + 600, id="one-step-own-drain-and-bake"),
        pytest.param({"approval_before_steps": [2]}, None, 48 * 3600 + 600, id="approval-waits-up-to-48h"),
        pytest.param({"steps": [f"{p}%" for p in range(5, 101, 5)], "step_deadline_seconds": 86400}, None,
                     48 * 3600 + 600, id="capped-by-the-state-machine-timeout"),
    ],
)
def test_lock_lifetime_covers_the_longest_rollout_the_policy_allows(policy, replicas, expected):
    assert lock_seconds(RolloutPolicy(**policy), replicas) == expected


ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Rollout"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param({"ALBGATE_STATE_MACHINE_ARN": None}, "ALBGATE_STATE_MACHINE_ARN", id="arn-missing"),
        pytest.param({"ALBGATE_STATE_MACHINE_ARN": "Rollout"}, "ALBGATE_STATE_MACHINE_ARN", id="arn-bad"),
        pytest.param({"ALBGATE_LOCK_TABLE": None}, "ALBGATE_LOCK_TABLE", id="table-missing"),
        pytest.param({"ALBGATE_TRIGGER_APPLICATIONS": "[{"}, "ALBGATE_TRIGGER_APPLICATIONS", id="apps-not-json"),
        pytest.param({"ALBGATE_TRIGGER_APPLICATIONS": json.dumps([{"cluster": "c"}])},
                     "ALBGATE_TRIGGER_APPLICATIONS.0.namespace", id="app-field-missing"),
        pytest.param({"ALBGATE_ROLLOUT_POLICY": json.dumps({"steps": [1]})}, "ALBGATE_ROLLOUT_POLICY.steps",
                     id="policy-invalid"),
    ],
)
def test_a_bad_environment_fails_naming_the_variable(change, named):
    env = {**settings_env(ARN), **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(InvalidInputError) as exc:
        TriggerSettings.from_environ(env)
    assert f"{named}:" in str(exc.value)


def test_settings_take_account_and_region_from_the_state_machine_arn():
    s = TriggerSettings.from_environ(settings_env(ARN))
    assert (s.account, s.region) == ("123456789012", "us-east-1")
