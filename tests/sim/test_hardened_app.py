"""The simulated hardened app is what the bootstrap applies: albgate/sim/manifests.py passes the scenario's app
through the product's own ``manifests.harden`` and back, so no second copy of the rules can drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate.sim import load_scenario
from albgate.sim.manifests import bootstrap_hardened, hardened_manifests, scenario_manifests
from lambdas.domain import safety
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
