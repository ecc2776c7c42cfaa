"""The preflight report against the simulated cluster: every risk, found where it is, with its fix."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from albgate.sim import Simulation
from albgate.sim.bootstrap_ports import SimBootstrapKubernetes, SimController
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.ports import DeploymentPatch
from lambdas.domain.preflight_report import ReportRequest, preflight_report, run_report
from tests.bootstrap.conftest import CLUSTER, world

SEED = {"namespace": "readiness", "deployment": "nginx-app", "container": "nginx"}
HARDENED_APP = {"pre_stop_sleep_seconds": 30, "termination_grace_period_seconds": 60, "max_unavailable": 0}
# A world with no risk left: the app hardened, the namespace labelled before its pods, the webhook on Fail.
CLEAN = {"app": HARDENED_APP, "namespace": {"inject_label": "before_pods"}, "controller": {"webhook_failure_policy": "Fail"}}


def report(sim: Simulation, kube: SimBootstrapKubernetes, **request):
    return preflight_report(kube, sim.elb, ReportRequest(cluster=CLUSTER, applications=[SEED], **request))


def detach_target_groups(sim: Simulation, kube: SimBootstrapKubernetes) -> None:
    for tg in sim.alb.tgs.values():
        tg.lb_arns = ()


def short_grace(sim: Simulation, kube: SimBootstrapKubernetes) -> None:
    kube.patch_deployment("readiness", "nginx-app", DeploymentPatch(termination_grace_period_seconds=40))


def wide_unavailable(sim: Simulation, kube: SimBootstrapKubernetes) -> None:
    sim.deployment().max_unavailable = 1


def no_change(sim: Simulation, kube: SimBootstrapKubernetes) -> None:
    return None


CASES = [
    # The grace period is judged with the preStop the app needs (30 s) plus the longest request, as Preflight does
    pytest.param({}, None, no_change, {"namespace-unlabelled", "missing-prestop", "grace-too-short",
                                       "pods-without-gates", "webhook-failure-policy-ignore"}, id="seed-app-as-is"),
    pytest.param(CLEAN, None, no_change, set(), id="clean"),
    pytest.param(CLEAN, SimController(installed=False), no_change, {"controller-missing"}, id="controller-missing"),
    pytest.param(CLEAN, SimController(version="v2.7.2"), no_change, {"controller-old"}, id="controller-old"),
    pytest.param(CLEAN, SimController(version="latest"), no_change, {"controller-version-unknown"}, id="controller-unversioned"),
    pytest.param({**CLEAN, "namespace": {"inject_label": "after_pods"}}, None, no_change, {"pods-without-gates"},
                 id="labelled-after-pods"),
    pytest.param({**CLEAN, "ingress": {"annotations": {"alb.ingress.kubernetes.io/target-type": "instance"}}}, None,
                 no_change, {"instance-targets"}, id="instance-targets"),
    pytest.param(CLEAN, None, detach_target_groups, {"target-group-not-attached"}, id="target-group-not-attached"),
    pytest.param(CLEAN, None, short_grace, {"grace-too-short"}, id="grace-shorter-than-drain"),
    pytest.param(CLEAN, None, wide_unavailable, {"max-unavailable"}, id="max-unavailable"),
    pytest.param({**CLEAN, "ingress": {"annotations": {"alb.ingress.kubernetes.io/target-type": "ip",
                                                       "alb.ingress.kubernetes.io/target-group-attributes":
                                                           "deregistration_delay.timeout_seconds=5"}}},
                 None, no_change, {"deregistration-delay-short"}, id="deregistration-delay-short"),
    pytest.param({**CLEAN, "app": {**HARDENED_APP, "pre_stop_sleep_seconds": 10}}, None, no_change,
                 {"short-prestop"}, id="short-prestop"),
]


@pytest.mark.parametrize(("sections", "controller", "change", "expected"), CASES)
def test_each_risk_is_found(sections: dict, controller: SimController | None,
                            change: Callable[[Simulation, SimBootstrapKubernetes], None], expected: set[str]) -> None:
    # Given a simulated cluster with one risk (or none)
    sim, kube, _ = world(controller, **sections)
    change(sim, kube)
    # When the report is made
    r = report(sim, kube)
    # Then it lists exactly the expected risks, each with a fix
    assert set(r.codes()) == expected, r.render()
    assert all(risk.fix for risk in r.risks)
    assert r.ok is not any(risk.severity == "error" for risk in r.risks)


def test_missing_namespace_and_deployment_are_risks_not_crashes() -> None:
    # Given a request naming things that do not exist
    sim, kube, _ = world(**CLEAN)
    r = preflight_report(kube, sim.elb, ReportRequest(
        cluster=CLUSTER, applications=[{"namespace": "readiness", "deployment": "gone"},
                                       {"namespace": "nowhere", "deployment": "web"}]))
    # Then each is one risk and the rest of the report still ran
    assert {"deployment-missing", "namespace-missing"} <= set(r.codes())
    assert "controller" in r.checked


def test_without_applications_every_deployment_of_the_namespace_is_checked() -> None:
    sim, kube, _ = world()
    r = preflight_report(kube, sim.elb, ReportRequest(cluster=CLUSTER, namespaces=["readiness"]))
    assert "Deployment readiness/nginx-app" in r.checked and "missing-prestop" in r.codes()


def test_policy_changes_what_counts_as_long_enough() -> None:
    # Given the clean world but a policy with 120 s requests
    sim, kube, _ = world(**CLEAN)
    r = report(sim, kube, policy=RolloutPolicy(max_request_seconds=120))
    # Then the 60 s grace period is too short
    assert "grace-too-short" in r.codes()


def test_the_report_reads_only() -> None:
    sim, kube, _ = world()
    before = dict(kube.calls)
    report(sim, kube)
    writes = {"apply", "patch_deployment", "set_pod_condition", "rollback_deployment"}
    assert not writes & {m for m, n in kube.calls.items() if n > before.get(m, 0)}


def test_text_and_exit_code_for_the_command() -> None:
    # Given the example app as is / When the command's report runs
    sim, kube, _ = world()
    text, code = run_report(kube, sim.elb, {"cluster": CLUSTER, "applications": [SEED]})
    # Then it prints each risk with its fix, and exits 1
    assert code == 1
    assert "[ERROR] namespace readiness" in text and "fix: kubectl label namespace readiness" in text
    # And a clean cluster exits 0
    sim, kube, _ = world(**CLEAN)
    assert run_report(kube, sim.elb, {"cluster": CLUSTER, "applications": [SEED]})[1] == 0


def test_requests_longer_than_declared_are_a_risk_and_the_drain_is_checked_for_them() -> None:
    # Given the clean world serving 100 s requests for ten minutes, the policy declaring none
    sim, kube, _ = world(traffic={"rate_per_second": 2, "mean_duration_seconds": 100, "max_duration_seconds": 100,
                                  "duration_distribution": "fixed"}, rollout={"start_at_seconds": 600}, **CLEAN)
    # When the report reads the target group's ALB metrics too
    r = preflight_report(kube, sim.elb, ReportRequest(cluster=CLUSTER, applications=[SEED]), sim.ports.metrics,
                         sim.clock.now())
    # Then it says the requests are longer than declared, and checks the 60 s grace period for them (30 s + 100 s)
    [long] = [x for x in r.risks if x.code == "requests-longer-than-declared"]
    assert long.severity == "warning" and "answered a request in 100 s in the last 60 minutes" in long.problem
    assert "declare max_request_seconds: 100" in long.fix
    [grace] = [x for x in r.risks if x.code == "grace-too-short"]
    assert "plus the longest request (100 s), 130 s" in grace.problem
    # (the ALB's default deregistration delay, 300 s, covers them)
    assert "deregistration-delay-short" not in r.codes()


def test_without_metrics_or_with_a_window_of_0_only_the_declared_length_counts() -> None:
    sim, kube, _ = world(traffic={"rate_per_second": 2, "mean_duration_seconds": 100, "max_duration_seconds": 100,
                                  "duration_distribution": "fixed"}, rollout={"start_at_seconds": 600}, **CLEAN)
    assert report(sim, kube).codes() == []
    off = ReportRequest(cluster=CLUSTER, applications=[SEED], policy=RolloutPolicy(long_requests_window_minutes=0))
    assert preflight_report(kube, sim.elb, off, sim.ports.metrics, sim.clock.now()).codes() == []
