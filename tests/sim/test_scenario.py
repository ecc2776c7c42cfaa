"""Scenario files: every shipped one validates, and a bad one is refused with the field named."""

from __future__ import annotations

import pytest

from albgate.sim import ScenarioError, load_scenario, parse_scenario
from tests.sim.conftest import SCENARIOS

SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.yaml"))
REQUIRED = {
    "seed-app.yaml", "large-deployment.yaml", "slow-registration.yaml", "controller-down-mid-rollout.yaml",
    "controller-never-recovers.yaml", "broken-image.yaml", "auto-mode.yaml", "labelled-after-pods.yaml",
}


def test_every_required_scenario_is_shipped():
    assert REQUIRED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_validates(name):
    # Given a shipped file / When it is loaded / Then it is a scenario named like its file
    sc = load_scenario(SCENARIOS / name)
    assert sc.name == name.removesuffix(".yaml")


def test_seed_app_is_the_seeds_app():
    sc = load_scenario(SCENARIOS / "seed-app.yaml")
    assert (sc.namespace.name, sc.app.deployment, sc.app.replicas, sc.service.name) == (
        "readiness", "nginx-app", 3, "nginx-svc")
    assert (sc.app.image, sc.rollout.image) == ("ikubernetes/myapp:v1", "ikubernetes/myapp:v2")
    assert sc.ingress.target_type() == "ip" and sc.namespace.inject_label == "none"


BAD = [
    ("replicas-zero", {"app": {"replicas": 0}}, "app.replicas"),
    ("unknown-field", {"app": {"replica": 3}}, "app.replica"),
    ("bad-surge", {"app": {"max_surge": "25"}}, "app.max_surge"),
    ("bad-image", {"rollout": {"image": "nginx"}}, "rollout.image"),
    ("policy-steps", {"rollout": {"policy": {"steps": [1, "50%"]}}}, "rollout.policy.steps"),
    ("target-type", {"ingress": {"annotations": {"alb.ingress.kubernetes.io/target-type": "lambda"}}}, "ingress.annotations"),
    ("delay-range", {"ingress": {"annotations": {
        "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=4000"}}},
     "ingress.annotations"),
    ("label-when", {"namespace": {"inject_label": "sometimes"}}, "namespace.inject_label"),
    ("kube-method", {"faults": {"kube_api_errors": [{"at_seconds": 0, "methods": ["delete_everything"]}]}},
     "faults.kube_api_errors.0.methods"),
    ("start-range", {"app": {"startup": {"container_start_seconds": [5, 1]}}}, "app.startup"),
]


@pytest.mark.parametrize("case,changes,field", BAD, ids=[b[0] for b in BAD])
def test_bad_scenario_names_the_field(case, changes, field):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario({"name": "bad", **changes}, "bad.yaml")
    assert f"bad.yaml: {field}" in str(exc.value)


def test_missing_file_and_bad_yaml_are_scenario_errors(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("- a list")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(tmp_path / "y.yaml")


def test_ingress_annotations_give_health_check_and_delay():
    sc = parse_scenario({"name": "t", "ingress": {"annotations": {
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/healthcheck-interval-seconds": "10",
        "alb.ingress.kubernetes.io/healthy-threshold-count": "3",
        "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=45",
    }}})
    assert sc.ingress.health_check() == (10, 5, 3, 2)
    assert sc.ingress.deregistration_delay() == 45
    # LBC defaults (docs/facts.md, Service annotations override the Ingress's)
    assert parse_scenario({"name": "t"}).ingress.health_check() == (15, 5, 2, 2)
    assert parse_scenario({"name": "t"}).ingress.deregistration_delay() == 300
