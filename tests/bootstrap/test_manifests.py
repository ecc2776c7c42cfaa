"""Manifest hardening (lambdas/domain/manifests.py): pure, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.manifests import (
    DEREGISTRATION_DELAY,
    HC_INTERVAL,
    HC_TIMEOUT,
    TARGET_TYPE,
    TG_ATTRIBUTES,
    HardeningPolicy,
    harden,
    parse_attributes,
    pre_stop_sleep_seconds,
)
from tests.bootstrap.conftest import clone, deployment, ingress, service

POLICY = HardeningPolicy(pre_stop_seconds=30, max_request_seconds=30, health_check_interval_seconds=10)


def run(dep=None, svc=None, ing=None, policy: HardeningPolicy = POLICY, container: str | None = "web"):
    dep = deployment() if dep is None else dep
    svc = service() if svc is None else svc
    ing = ingress() if ing is None else ing
    return harden(dep, svc, ing, policy, namespace="shop", container=container)


def fields(result) -> dict[str, Any]:
    return {f"{c.object} {c.field}": c.after for c in result.changes}


# --- each hardening rule -------------------------------------------------------------------------------------
CASES = [
    pytest.param(dict(), {"Deployment/web spec.strategy.rollingUpdate.maxUnavailable": 0}, id="default-25%-unavailable-becomes-0"),
    pytest.param(dict(dep=deployment(strategy={"type": "Recreate"})),
                 {"Deployment/web spec.strategy.type": "RollingUpdate"}, id="recreate-becomes-rolling-update"),
    pytest.param(dict(dep=deployment(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})),
                 {"Deployment/web spec.strategy.rollingUpdate.maxSurge": 1}, id="surge-0-with-unavailable-0-becomes-1"),
    pytest.param(dict(), {"Deployment/web spec.template.spec.containers[0](web).lifecycle.preStop": {"sleep": {"seconds": 30}}},
                 id="native-sleep-prestop-added"),
    pytest.param(dict(policy=HardeningPolicy(native_sleep=False)),
                 {"Deployment/web spec.template.spec.containers[0](web).lifecycle.preStop": {"exec": {"command": ["sleep", "30"]}}},
                 id="exec-sleep-before-1.30"),
    pytest.param(dict(dep=deployment(pod={"containers": [{"name": "web", "image": "a:1", "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}]})),
                 {"Deployment/web spec.template.spec.containers[0](web).lifecycle.preStop": {"sleep": {"seconds": 30}}},
                 id="short-sleep-raised"),
    pytest.param(dict(), {"Deployment/web spec.template.spec.terminationGracePeriodSeconds": 60}, id="grace-covers-prestop-plus-request"),
    pytest.param(dict(policy=HardeningPolicy(max_request_seconds=400)),
                 {f"Ingress/web metadata.annotations[{TG_ATTRIBUTES}]": f"{DEREGISTRATION_DELAY}=400"},
                 id="delay-raised-above-default-300-for-long-requests"),
    pytest.param(dict(ing=ingress(annotations={TARGET_TYPE: "ip", TG_ATTRIBUTES: f"stickiness.enabled=true,{DEREGISTRATION_DELAY}=10"})),
                 {f"Ingress/web metadata.annotations[{TG_ATTRIBUTES}]": f"stickiness.enabled=true,{DEREGISTRATION_DELAY}=30"},
                 id="short-delay-raised-other-attributes-kept"),
    pytest.param(dict(ing=ingress(annotations={})), {f"Ingress/web metadata.annotations[{TARGET_TYPE}]": "ip"},
                 id="missing-target-type-becomes-ip"),
    pytest.param(dict(), {f"Ingress/web metadata.annotations[{HC_INTERVAL}]": "10"}, id="interval-written"),
    pytest.param(dict(ing=ingress(annotations={TARGET_TYPE: "ip", HC_TIMEOUT: "12"})),
                 {f"Ingress/web metadata.annotations[{HC_INTERVAL}]": "13"}, id="interval-kept-above-timeout"),
]


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_each_rule_makes_its_change(given: dict, expected: dict) -> None:
    # Given the manifests and policy of the case
    given = dict(given)  # the parametrized case stays as it was, for a rerun in the same process
    policy = given.pop("policy", POLICY)
    # When they are hardened
    result = run(policy=policy, **given)
    # Then the change list holds the expected field with the expected value, and the manifest carries it
    changed = fields(result)
    for key, value in expected.items():
        assert changed.get(key) == value, f"{key}: {changed}"


def test_every_change_is_in_the_returned_manifests() -> None:
    # Given an app like the example app
    # When hardened
    r = run()
    # Then the hardened manifests carry what the changes say
    pod = r.deployment["spec"]["template"]["spec"]
    assert r.deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 30}}
    assert pod["terminationGracePeriodSeconds"] == 60
    assert r.ingress["metadata"]["annotations"][HC_INTERVAL] == "10"
    assert all(m["metadata"]["namespace"] == "shop" for m in r.manifests())
    assert [m["kind"] for m in r.manifests()] == ["Service", "Ingress", "Deployment"]


KEEP = [
    pytest.param(deployment(strategy={"rollingUpdate": {"maxUnavailable": "0%"}}), "maxUnavailable", id="0%-unavailable-kept"),
    pytest.param(deployment(pod={"terminationGracePeriodSeconds": 120, "containers": [{"name": "web", "image": "a:1"}]}),
                 "terminationGracePeriodSeconds", id="longer-grace-kept"),
    pytest.param(deployment(pod={"containers": [{"name": "web", "image": "a:1", "lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": 80}}}}]}),
                 "preStop", id="own-non-sleep-prestop-kept"),
    pytest.param(deployment(pod={"containers": [{"name": "web", "image": "a:1", "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 45; nginx -s quit"]}}}}]}),
                 "preStop", id="longer-shell-sleep-kept"),
]


@pytest.mark.parametrize(("dep", "field"), KEEP)
def test_safe_values_are_kept(dep: dict, field: str) -> None:
    # Given a Deployment whose field is already safe
    # When hardened
    r = run(dep=dep)
    # Then nothing about that field changes
    assert not [c for c in r.changes if field in c.field], r.changes


def test_grace_counts_a_kept_non_sleep_prestop_as_the_policy_seconds() -> None:
    # Given a container with its own httpGet drain and the default grace period
    dep = deployment(pod={"containers": [{"name": "web", "image": "a:1", "lifecycle": {"preStop": {"httpGet": {"path": "/q", "port": 80}}}}]})
    # When hardened
    r = run(dep=dep)
    # Then the grace period still covers the policy's preStop plus the longest request
    assert r.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60


def test_hardening_twice_changes_nothing_the_second_time() -> None:
    # Given manifests hardened once
    first = run(ing=ingress(annotations={}), dep=deployment(strategy={"type": "Recreate"}))
    # When the result is hardened again
    second = run(dep=first.deployment, svc=first.service, ing=first.ingress)
    # Then there is no change (a bootstrap re-run applies nothing new)
    assert first.changes and second.changes == []
    assert second.deployment == first.deployment and second.ingress == first.ingress


def test_inputs_are_not_mutated() -> None:
    # Given manifests and a copy of them
    dep, svc, ing = deployment(), service(), ingress(annotations={})
    before = clone((dep, svc, ing))
    # When hardened
    run(dep=dep, svc=svc, ing=ing)
    # Then the inputs are as they were
    assert (dep, svc, ing) == before


def test_opting_out_returns_the_manifests_unchanged_with_findings() -> None:
    # Given the policy harden=False
    # When hardened
    r = run(policy=HardeningPolicy(harden=False))
    # Then nothing changed but every would-be change is a finding
    assert r.changes == []
    assert len(r.findings) >= 4
    assert "lifecycle" not in r.deployment["spec"]["template"]["spec"]["containers"][0]
    assert r.deployment["metadata"]["namespace"] == "shop"


REFUSED = [
    pytest.param(ingress(annotations={TARGET_TYPE: "instance"}), service(), "Ingress", id="ingress-instance"),
    pytest.param(ingress(annotations={TARGET_TYPE: "ip"}),
                 {**service(), "metadata": {"name": "web", "annotations": {TARGET_TYPE: "instance"}}}, "Service",
                 id="service-annotation-wins"),
]


@pytest.mark.parametrize(("ing", "svc", "where"), REFUSED)
def test_instance_targets_are_refused_for_gated_apps_with_the_reason(ing: dict, svc: dict, where: str) -> None:
    # Given a gated app that asks for instance targets
    # When hardened
    with pytest.raises(UnsafeConfigurationError) as e:
        run(ing=ing, svc=svc)
    # Then the error names where it was asked and why IP targets are needed
    assert where in str(e.value) and "IP targets" in str(e.value) and "readiness gate" in str(e.value)


def test_instance_targets_are_allowed_for_an_ungated_app() -> None:
    # Given an app that is not gated
    # When hardened with instance targets
    r = run(ing=ingress(annotations={TARGET_TYPE: "instance"}), policy=HardeningPolicy(gated=False))
    # Then the target type is left alone
    assert r.ingress["metadata"]["annotations"][TARGET_TYPE] == "instance"


INVALID = [
    pytest.param(dict(dep=[]), "deployment: expected a Deployment manifest", id="not-a-mapping"),
    pytest.param(dict(dep={**deployment(), "apiVersion": "extensions/v1beta1"}), "deployment: apiVersion/kind", id="wrong-api-version"),
    pytest.param(dict(dep={**deployment(), "metadata": {"name": "Web"}}), "deployment.metadata.name", id="bad-name"),
    pytest.param(dict(svc={**service(), "metadata": {"name": "1web"}}), "service.metadata.name", id="service-name-dns1035"),
    pytest.param(dict(dep={**deployment(), "metadata": {"name": "web", "namespace": "other"}}), "deployment.metadata.namespace", id="other-namespace"),
    pytest.param(dict(dep=deployment(labels={"app": "web"}) | {"spec": {**deployment()["spec"], "selector": {}}}), "deployment.spec.selector.matchLabels", id="no-selector"),
    pytest.param(dict(dep=deployment(replicas=-1)), "deployment.spec.replicas", id="negative-replicas"),
    pytest.param(dict(dep=deployment(pod={"containers": []})), "deployment.spec.template.spec.containers", id="no-containers"),
    pytest.param(dict(dep=deployment(pod={"containers": [{"name": "web"}]})), "containers[0].image", id="no-image"),
    pytest.param(dict(dep=deployment(pod={"containers": [{"name": "a", "image": "x:1"}]})), "no container named 'web'", id="app-container-missing"),
    pytest.param(dict(dep=deployment(strategy={"rollingUpdate": {"maxUnavailable": "lots"}})), "rollingUpdate.maxUnavailable", id="bad-unavailable"),
    pytest.param(dict(svc=service(selector={"app": "other"})), "service.spec.selector", id="service-misses-pods"),
    pytest.param(dict(svc={**service(), "spec": {"selector": {"app": "web"}, "ports": [{"port": 0}]}}), "service.spec.ports[0].port", id="bad-port"),
    pytest.param(dict(ing=ingress(backend="other")), "no backend names Service 'web'", id="ingress-misses-service"),
    pytest.param(dict(ing=ingress(port=8080)), "backend port 8080", id="ingress-wrong-port"),
    pytest.param(dict(ing=ingress(annotations={HC_INTERVAL: "ten"})), HC_INTERVAL, id="interval-not-a-number"),
    pytest.param(dict(ing=ingress(annotations={TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=4000"})), "must be 0-3600", id="delay-out-of-range"),
]


@pytest.mark.parametrize(("given", "names"), INVALID)
def test_invalid_manifests_are_refused_naming_the_field(given: dict, names: str) -> None:
    # Given one malformed manifest
    # When hardened
    with pytest.raises(InvalidInputError) as e:
        run(**given)
    # Then the error names the field
    assert names in str(e.value)


def test_every_problem_is_reported_at_once() -> None:
    # Given a Deployment with two problems
    dep = deployment(replicas=-1, pod={"containers": [{"name": "web"}]})
    # When hardened
    with pytest.raises(InvalidInputError) as e:
        run(dep=dep)
    # Then both are in the one message
    assert "spec.replicas" in str(e.value) and "containers[0].image" in str(e.value)


SLEEPS = [
    pytest.param({"lifecycle": {"preStop": {"sleep": {"seconds": 20}}}}, 20, id="native"),
    pytest.param({"lifecycle": {"preStop": {"exec": {"command": ["sleep", "15"]}}}}, 15, id="exec"),
    pytest.param({"lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 1m && kill 1"]}}}}, 60, id="shell-minutes"),
    pytest.param({"lifecycle": {"preStop": {"exec": {"command": ["/app/drain"]}}}}, None, id="not-a-sleep"),
    pytest.param({}, None, id="none"),
]


@pytest.mark.parametrize(("container", "seconds"), SLEEPS)
def test_prestop_sleep_is_read_like_the_adapter(container: dict, seconds: int | None) -> None:
    # Given a container's lifecycle / When read / Then the sleep seconds (or None)
    assert pre_stop_sleep_seconds(container) == seconds


def test_attributes_round_trip() -> None:
    assert parse_attributes("a=1, b=2,,c=") == {"a": "1", "b": "2", "c": ""}
