"""The config's releases (stacks/config.py) and what the release stack makes of them (stacks/release_stack.py).

Invariant under test: a release validates only if every cluster it rolls is configured, runs its application,
appears once in it and names its account; every problem is one line naming its field path and the fix. One stack
deploys to each (account, Region), named after both only when there are several; and every ARN a release reaches
is fixed from the config: the rollout state machine each environment's stack names, and a role only for another
account.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from stacks.config import DEFAULT_WAVE_BAKE_SECONDS, AlbgateConfig, ConfigError, parse_config
from stacks.release_names import release_role_name, rollout_state_machine_name
from stacks.release_stack import release_targets
from tests.conftest import ROOT

STAGING, PROD = "111111111111", "222222222222"


@pytest.fixture(scope="module")
def releases_example() -> dict[str, Any]:
    return json.loads((ROOT / "config" / "releases-example.json").read_text())


def changed(example: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = copy.deepcopy(example)
    change(config)
    return config


def problems(config: dict[str, Any]) -> list[str]:
    """The problem lines of the ConfigError the config raises."""
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    header, *lines = str(err.value).splitlines()
    assert header.startswith("albgate config is invalid")
    assert all(line.startswith("  - ") for line in lines), lines
    return [line.removeprefix("  - ") for line in lines]


def release(config: dict[str, Any]) -> dict[str, Any]:
    return config["releases"][0]


def set_wave(w: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: release(c)["waves"][w].update(values)


def second_release(c: dict[str, Any]) -> None:
    c["releases"].append(copy.deepcopy(release(c)))


def no_account(i: int) -> Callable[[dict[str, Any]], None]:
    return lambda c: c["clusters"][i].pop("account")


def ecr_clash(c: dict[str, Any]) -> None:
    release(c)["ecr_repository"] = "nginx-app"
    c["applications"][2]["ecr_repository"] = "nginx-app"


# (id, change, field path, words of the message)
BAD_RELEASES = [
    ("unknown-cluster", set_wave(0, clusters=["staging-old"]), "releases.0.waves.0.clusters.0",
     "'staging-old' is not in clusters; use one of ['staging', "),
    ("cluster-without-the-app", lambda c: release(c).update(deployment="cart"), "releases.0.waves.2.clusters.1",
     "readiness/cart is not an application of 'prod-euw1-a'; add it under applications"),
    ("cluster-twice", set_wave(2, clusters=["prod-use1-b", "staging"]), "releases.0.waves.2.clusters.1",
     "'staging' is already in an earlier place of this release"),
    ("cluster-twice-in-one-wave", set_wave(1, clusters=["prod-use1-a", "prod-use1-a"]),
     "releases.0.waves.1.clusters.1", "a Deployment is rolled once per release"),
    ("wave-name-twice", set_wave(2, name="staging"), "releases.0.waves.2.name",
     "'staging' is listed twice in this release"),
    ("release-name-twice", second_release, "releases.1.name", "'nginx-app' is listed twice; give each release"),
    ("ecr-repository-clash", ecr_clash, "releases.0.ecr_repository",
     "'nginx-app' also starts per-application rollouts of a Deployment this release rolls; a push must start one"),
    ("several-environments-without-an-account", no_account(3), "clusters.3.account",
     "required when clusters span several accounts or Regions"),
    ("released-cluster-without-an-account", no_account(3), "clusters.3.account",
     "required for a cluster a release rolls"),
    ("no-waves", lambda c: release(c).update(waves=[]), "releases.0.waves", "at least 1"),
    ("wave-without-clusters", set_wave(0, clusters=[]), "releases.0.waves.0", "a wave rolls something"),
    ("target-not-an-application", set_wave(0, targets=[{"cluster": "staging", "namespace": "shop"}]),
     "releases.0.waves.0.targets.0", "shop/nginx-app is not an application of 'staging'"),
    ("clusters-without-release-names", lambda c: release(c).pop("namespace"), "releases.0.waves.0.clusters.0",
     "names no namespace: set releases.0.namespace and .deployment, or give the target its own"),
    ("concurrency-zero", set_wave(2, max_concurrency=0), "releases.0.waves.2.max_concurrency",
     "greater than or equal to 1"),
    ("bake-over-a-day", set_wave(0, bake_seconds=86_401), "releases.0.waves.0.bake_seconds",
     "less than or equal to 86400"),
    ("approval-as-string", set_wave(1, approval="yes"), "releases.0.waves.1.approval", "'yes' is not a boolean"),
    ("unknown-wave-field", set_wave(1, clusterz=["staging"]), "releases.0.waves.1.clusterz", "fix its spelling"),
    ("home-region", lambda c: c["release_home"].update(region="eu-west"), "release_home.region",
     "write e.g. 'us-east-1'"),
]


@pytest.mark.parametrize(("change", "field", "words"), [pytest.param(*row[1:], id=row[0]) for row in BAD_RELEASES])
def test_a_bad_release_is_refused_naming_the_field_and_the_fix(releases_example, change, field, words):
    # Given the releases example with one thing wrong / When it is parsed
    lines = problems(changed(releases_example, change))
    # Then one line names the field and says what to do
    assert any(line.startswith(f"{field}: ") and words in line for line in lines), lines


def test_a_release_needs_its_clusters_accounts_even_in_one_environment(example_config):
    # Given the one-cluster example (no account: a synth without credentials) with a release of its cluster
    config = changed(example_config, lambda c: c.update(releases=[{
        "name": "nginx", "namespace": "readiness", "deployment": "nginx-app",
        "waves": [{"name": "only", "clusters": ["my-cluster"]}]}]))
    # Then the cluster's account is required: the release reaches its rollout state machine by an ARN
    assert problems(config) == [
        "clusters.0.account: required for a cluster a release rolls: the release reaches its rollout state machine "
        "by an ARN fixed at synth; write the 12-digit account"]


def test_every_release_problem_is_its_own_line(releases_example):
    # Given three independent mistakes in one release
    def three(c: dict[str, Any]) -> None:
        set_wave(0, clusters=["nowhere"])(c)
        set_wave(2, name="first-production")(c)
        ecr_clash(c)

    # When it is parsed / Then each is one line, with its own field path, none lost
    fields = [line.split(": ", 1)[0] for line in problems(changed(releases_example, three))]
    assert fields == ["releases.0.waves.0.clusters.0", "releases.0.waves.2.name", "releases.0.ecr_repository"]


# --- environments -------------------------------------------------------------------------------------------
def test_one_environment_keeps_the_stack_name(example_config):
    config = parse_config(example_config)
    assert config.environments() == [(None, "us-east-1")]
    assert config.environment_stack_name(None, "us-east-1") == "Albgate"
    assert config.for_environment(None, "us-east-1").stack_name == "Albgate"


def test_several_accounts_name_each_stack_after_its_account_and_region(releases_example):
    # Given clusters in two accounts and two Regions
    config = parse_config(releases_example)
    # Then one environment per (account, Region), in the order the clusters list them, each with its stack name
    assert config.environments() == [(STAGING, "us-east-1"), (PROD, "us-east-1"), (PROD, "eu-west-1")]
    assert [config.environment_stack_name(*e) for e in config.environments()] == [
        f"Albgate-{STAGING}-us-east-1", f"Albgate-{PROD}-us-east-1", f"Albgate-{PROD}-eu-west-1"]
    assert config.home == (STAGING, "us-east-1")


def test_several_regions_of_one_account_name_each_stack_after_its_region(releases_example):
    config = parse_config(changed(releases_example,
                                  lambda c: [cluster.update(account=PROD) for cluster in c["clusters"]]))
    assert config.environments() == [(PROD, "us-east-1"), (PROD, "eu-west-1")]
    assert [config.environment_stack_name(*e) for e in config.environments()] == ["Albgate-us-east-1",
                                                                                  "Albgate-eu-west-1"]


def test_an_environments_config_holds_its_own_clusters_and_apps_without_releases(releases_example):
    # Given the releases example / When the config of the production eu-west-1 environment is taken
    env = parse_config(releases_example).for_environment(PROD, "eu-west-1")
    # Then it has only that environment's clusters and their applications, no release, and its own stack name
    assert [c.name for c in env.clusters] == ["prod-euw1-a", "prod-euw1-b"]
    assert [a.cluster for a in env.applications] == ["prod-euw1-a", "prod-euw1-b"]
    assert (env.releases, env.stack_name) == ([], f"Albgate-{PROD}-eu-west-1")
    # And it is a config that validates on its own
    assert AlbgateConfig.model_validate(env.model_dump()).stack_name == env.stack_name


def test_the_release_home_defaults_to_the_first_cluster(releases_example):
    config = parse_config(changed(releases_example, lambda c: c.pop("release_home")))
    assert config.home == (STAGING, "us-east-1")


# --- what the release functions read ------------------------------------------------------------------------
def test_release_targets_fix_every_arn_from_the_config(releases_example):
    # Given the releases example (release home: the staging account, us-east-1)
    config = parse_config(releases_example)
    # When the release stack resolves its release
    (spec,) = release_targets(config)
    targets = {t.cluster: t for w in spec.waves for t in w.targets}
    # Then each child runs in its environment's rollout state machine, by ARN
    for cluster, account, region in [("staging", STAGING, "us-east-1"), ("prod-use1-a", PROD, "us-east-1"),
                                     ("prod-euw1-b", PROD, "eu-west-1")]:
        env_stack = config.environment_stack_name(account, region)
        t = targets[cluster]
        assert (t.account, t.region) == (account, region)
        assert t.state_machine_arn == (f"arn:aws:states:{region}:{account}:stateMachine:"
                                       f"{rollout_state_machine_name(env_stack)}")
        # And a role is assumed only in another account than the release's own
        expected_role = None if account == STAGING else f"arn:aws:iam::{account}:role/{release_role_name(env_stack)}"
        assert t.role_arn == expected_role
    assert targets["prod-use1-a"].state_machine_arn == (
        f"arn:aws:states:us-east-1:{PROD}:stateMachine:Albgate-{PROD}-us-east-1-Rollout")
    assert {(t.namespace, t.deployment, t.container) for t in targets.values()} == {("readiness", "nginx-app",
                                                                                       "nginx")}


def test_release_targets_keep_the_waves_as_configured(releases_example):
    config = parse_config(releases_example)
    (spec,) = release_targets(config)
    assert spec.name == "nginx-app" and spec.rollback_completed_waves is True
    assert [(w.name, [t.cluster for t in w.targets], w.max_concurrency, w.bake_seconds, w.approval)
            for w in spec.waves] == [
        ("staging", ["staging"], 1, 600, False),
        ("first-production", ["prod-use1-a"], 1, 1800, True),
        ("rest-of-production", ["prod-use1-b", "prod-euw1-a", "prod-euw1-b"], 2, DEFAULT_WAVE_BAKE_SECONDS, False),
    ]
    # And every child runs with the configured rollout policy, as the rollout state machine reads it
    assert spec.policy == config.rollout_policy.model_dump(mode="json")


def test_a_wave_without_max_concurrency_runs_all_its_clusters_at_once(releases_example):
    config = parse_config(changed(releases_example, lambda c: release(c)["waves"][2].pop("max_concurrency")))
    (spec,) = release_targets(config)
    assert spec.waves[2].max_concurrency == 3


def test_a_release_home_in_another_account_assumes_a_role_everywhere(releases_example):
    # Given the release state machine in a third account
    config = parse_config(changed(releases_example, lambda c: c["release_home"].update(account="333333333333")))
    (spec,) = release_targets(config)
    # Then every child, staging's included, is reached through its environment's release role
    assert all(t.role_arn and t.role_arn.startswith(f"arn:aws:iam::{t.account}:role/")
               for w in spec.waves for t in w.targets)


def test_a_wave_target_with_names_of_its_own_rolls_that_application(releases_example):
    # Given the canary wave also rolls shop/cart in prod-euw1-a, an application with other names there
    config = copy.deepcopy(releases_example)
    config["applications"].append({**config["applications"][0], "cluster": "prod-euw1-a", "namespace": "shop",
                                   "deployment": "cart", "container": "app"})
    release(config)["waves"][1]["targets"] = [{"cluster": "prod-euw1-a", "namespace": "shop", "deployment": "cart"}]
    # When the release is resolved for the release functions
    (spec,) = release_targets(parse_config(config))
    # Then the wave rolls its cluster's release Deployment, then that target, in its account and Region
    wave = spec.waves[1]
    assert [(t.cluster, t.namespace, t.deployment, t.container) for t in wave.targets] == [
        ("prod-use1-a", "readiness", "nginx-app", "nginx"), ("prod-euw1-a", "shop", "cart", "app")]
    assert wave.targets[1].state_machine_arn.endswith(":stateMachine:Albgate-222222222222-eu-west-1-Rollout")
    assert wave.max_concurrency == 2
