"""Is this Deployment safe to roll: the one rule set (lambdas/domain/safety.py) that Preflight, the preflight
report and manifest hardening share, and proof that they agree."""

from __future__ import annotations

import dataclasses

import pytest

from lambdas.domain import manifests, safety
from lambdas.domain.models import RolloutPolicy, RolloutRequest
from lambdas.domain.ports import Container, Deployment, PodTemplate
from lambdas.domain.preflight_report import deployment_risks
from lambdas.domain.rollout.preflight import assess

POLICY = RolloutPolicy()  # preStop 30 s, longest request 30 s


def deployment(*containers: Container, grace: int = 60, max_unavailable: int | str = 0, replicas: int = 4) -> Deployment:
    template = PodTemplate(containers=tuple(containers), termination_grace_period_seconds=grace)
    return Deployment(namespace="ns", name="web", uid="u1", replicas=replicas, selector={"app": "web"}, template=template,
                      max_surge=1, max_unavailable=max_unavailable)


APP = Container(name="app", image="r/app:v1", pre_stop_sleep_seconds=30)
CASES = [
    # id, deployment, the findings' codes, the patch that fixes them
    ("safe", deployment(APP), [], {}),
    ("max-unavailable-25%-of-4", deployment(APP, max_unavailable="25%"), ["max-unavailable"], {"max_unavailable": 0}),
    ("max-unavailable-25%-of-3-rounds-down", deployment(APP, max_unavailable="25%", replicas=3), [], {}),
    ("no-prestop-needs-grace-for-it-too", deployment(dataclasses.replace(APP, pre_stop_sleep_seconds=None)),
     ["missing-prestop"], {"pre_stop_sleep_seconds": {"app": 30}}),
    ("no-prestop-short-grace", deployment(dataclasses.replace(APP, pre_stop_sleep_seconds=None), grace=30),
     ["missing-prestop", "grace-too-short"],
     {"pre_stop_sleep_seconds": {"app": 30}, "termination_grace_period_seconds": 60}),
    ("short-prestop", deployment(dataclasses.replace(APP, pre_stop_sleep_seconds=5)), ["short-prestop"],
     {"pre_stop_sleep_seconds": {"app": 30}}),
    ("sidecar-without-prestop", deployment(APP, Container(name="proxy", image="r/proxy:1")), ["missing-prestop"],
     {"pre_stop_sleep_seconds": {"proxy": 30}}),
    ("two-containers-fixed-in-one-patch",
     deployment(Container(name="app", image="r/app:v1"), Container(name="proxy", image="r/proxy:1"), grace=59),
     ["missing-prestop", "missing-prestop", "grace-too-short"],
     {"pre_stop_sleep_seconds": {"app": 30, "proxy": 30}, "termination_grace_period_seconds": 60}),
    ("longest-prestop-sets-the-grace", deployment(dataclasses.replace(APP, pre_stop_sleep_seconds=45), grace=60),
     ["grace-too-short"], {"termination_grace_period_seconds": 75}),
]  # fmt: skip


@pytest.mark.parametrize("dep,codes,patch", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_findings_and_their_fix(dep, codes, patch):
    found = safety.deployment_findings(dep, POLICY)
    assert [f.code for f in found] == codes
    assert safety.hardening_patch(found) == patch
    assert all(f.fix and f.message for f in found)


@pytest.mark.parametrize("dep", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_preflight_and_the_report_find_the_same(dep):
    request = RolloutRequest.model_validate(
        {"cluster": "c", "namespace": "ns", "deployment": "web", "container": "app", "image": "r/app:v2"})
    hardening, findings = assess(request, dep, [])
    risks = deployment_risks(dep, POLICY)
    assert len(findings) == len(risks)
    assert hardening == safety.hardening_patch(safety.deployment_findings(dep, POLICY))
    assert all(r.severity == "error" for r in risks)  # each one drops requests: Preflight refuses on it


@pytest.mark.parametrize("delay,problem", [(29, True), (30, False), (300, False)])
def test_a_deregistration_delay_must_cover_the_longest_request(delay, problem):
    assert (safety.deregistration_delay_problem(delay, POLICY) is not None) is problem


def test_hardening_manifests_meets_the_same_rules():
    # Given a Deployment manifest with no preStop, the default grace period and the default strategy
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "app", "image": "r/app:v1"},
                                                         {"name": "proxy", "image": "r/proxy:1"}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    ing = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
           "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}
    hardened = manifests.harden(dep, svc, ing, manifests.HardeningPolicy.from_rollout_policy(POLICY, native_sleep=True),
                                namespace="ns")
    # When its result is read back as Kubernetes would run it / Then safety finds nothing left to fix
    spec = hardened.deployment["spec"]
    pod = spec["template"]["spec"]
    containers = tuple(Container(name=c["name"], image=c["image"],
                                 pre_stop_sleep_seconds=manifests.pre_stop_sleep_seconds(c)) for c in pod["containers"])
    back = deployment(*containers, grace=pod["terminationGracePeriodSeconds"],
                      max_unavailable=spec["strategy"]["rollingUpdate"]["maxUnavailable"])
    assert safety.deployment_findings(back, POLICY) == []
