"""The simulated hardened app is what the bootstrap applies: albgate/sim/manifests.py passes the scenario's app
through the product's own ``manifests.harden`` and back, so no second copy of the rules can drift."""

from __future__ import annotations

from pathlib import Path

import pytest

import albgate.sim.albgate_strategy  # noqa: F401 - registers the albgate strategy
import albgate.sim.argo_strategy  # noqa: F401 - registers the argo-rollouts strategy
from albgate.sim import load_scenario
from albgate.sim.manifests import bootstrap_hardened, hardened_manifests, scenario_manifests
from albgate.sim.strategies import get_strategy
from lambdas.domain import safety
from lambdas.domain.bootstrap import ControllerSettings, helm_values
from lambdas.domain.health_check import HARDENED
from lambdas.domain.lbc_annotations import HC_INTERVAL, HC_TIMEOUT, TARGET_TYPE
from lambdas.domain.ports import Container, Deployment, PodTemplate

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))


def as_deployment(scenario) -> Deployment:
    app = scenario.app
    return Deployment(namespace="ns", name=app.deployment, uid="u", replicas=app.replicas, selector=dict(app.labels),
                      template=PodTemplate(containers=(Container(app.container, app.image, app.pre_stop_sleep_seconds),),
                                           termination_grace_period_seconds=app.termination_grace_period_seconds),
                      max_surge=app.max_surge, max_unavailable=app.max_unavailable)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_app_hardened_is_safe_and_a_fixed_point(path):
    scenario = load_scenario(path)
    hardened = bootstrap_hardened(scenario)
    # Then safety finds nothing left, and hardening the hardened app changes nothing more
    assert safety.deployment_findings(as_deployment(hardened), scenario.rollout.policy) == []
    assert hardened_manifests(hardened).changes == []
    assert scenario_manifests(bootstrap_hardened(hardened)) == scenario_manifests(hardened)


def test_the_example_app_gets_the_products_drain_and_health_check():
    scenario = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
    app, annotations = bootstrap_hardened(scenario).app, bootstrap_hardened(scenario).ingress.annotations
    assert (app.pre_stop_sleep_seconds, app.termination_grace_period_seconds) == (30, 60)
    assert safety.unavailable_pods(app.max_unavailable, app.replicas) == 0  # 25 % of 3 pods rounds down to 0: kept
    assert annotations[HC_INTERVAL] == str(HARDENED[HC_INTERVAL]) and annotations[HC_TIMEOUT] == str(HARDENED[HC_TIMEOUT])


def test_an_instance_target_app_is_hardened_as_not_gated():
    scenario = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
    instance = scenario.with_changes(ingress={"annotations": {TARGET_TYPE: "instance"}})
    hardened = bootstrap_hardened(instance)
    assert hardened.ingress.annotations[TARGET_TYPE] == "instance" and hardened.app.pre_stop_sleep_seconds == 30


def test_the_world_albgate_runs_in_has_the_controller_its_bootstrap_installs():
    # Given the example app, whose controller is the chart's as the scenario leaves it, and the Helm values the
    # bootstrap writes for a default install
    scenario = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
    assert (scenario.controller.webhook_failure_policy, scenario.controller.max_backoff_seconds) == ("Ignore", 1000)
    values = helm_values(scenario.cluster.name, ControllerSettings())
    # When it is brought to where the bootstrap leaves it
    controller = bootstrap_hardened(scenario).controller
    # Then its webhook refuses pods while it is down, and its back-off is capped, as those values say
    assert controller.webhook_failure_policy == values["podMutatorWebhookConfig"]["failurePolicy"] == "Fail"
    assert values["targetgroupbindingMaxExponentialBackoffDelay"] == "60s" and controller.max_backoff_seconds == 60
    # and so does the world of every strategy that runs on the bootstrap's output, the oracle's bound included
    for name in ("albgate", "hardened-readiness-gate"):
        assert get_strategy(name).prepare(scenario).controller == controller


def test_a_controller_that_is_not_albgates_keeps_its_own_settings():
    # Given a world whose controller is another version (the user's own, installed without albgate), and the
    # example app for a tool whose users install the controller themselves
    scenario = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
    own = scenario.with_changes(controller={"version": "v2.7.1", "max_backoff_seconds": 300})
    # When each is brought to where the bootstrap leaves the app / Then the controller is the scenario's
    assert bootstrap_hardened(own).controller == own.controller
    assert bootstrap_hardened(scenario, controller=False).controller == scenario.controller
    assert get_strategy("argo-rollouts").prepare(scenario).controller == scenario.controller
