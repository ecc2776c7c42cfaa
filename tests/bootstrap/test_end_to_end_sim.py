"""The bootstrap end to end on the simulated cluster, through the real handlers, in the state machine's order:
from a cluster without the controller and an empty namespace to the example app serving through the ALB; then a
second run that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from albgate.sim import Simulation
from albgate.sim.bootstrap_ports import SimBootstrapKubernetes, SimController, SimHelm
from lambdas.domain.bootstrap import HelmRelease
from lambdas.domain.errors import ConflictError
from lambdas.domain.ports import INJECT_LABEL, LBC_GATE_PREFIX, Ports
from lambdas.handlers import (
    bootstrap_apply_workloads,
    bootstrap_check_bindings,
    bootstrap_check_network,
    bootstrap_check_controller,
    bootstrap_find_ungated_pods,
    bootstrap_install_controller,
    bootstrap_label_namespaces,
    bootstrap_validate,
    preflight_report,
)
from lambdas.handlers._runtime import use_ports
from lambdas.handlers.bootstrap_common import use_helm
from tests.bootstrap.conftest import CLUSTER, DEPLOYED, deployment, ingress, service, world



@pytest.fixture(autouse=True, scope="module")
def _quiet_powertools():
    """No EMF output from the handlers here; restored afterwards so other test modules see a clean env."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        mp.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        yield

NAMESPACE = "shop"
# The example app: nginx-app behind nginx-svc and the ALB Ingress myapp-ingress, target-type ip.
SEED_INPUT = {
    "cluster": CLUSTER,
    "controller": {"region": "us-east-1", "vpc_id": "vpc-0123456789abcdef0"},
    "applications": [{
        "namespace": NAMESPACE, "deployment": "nginx-app", "container": "nginx",
        "manifests": {
            "deployment": deployment("nginx-app", labels={"app": "nginx"},
                                     pod={"containers": [{"name": "nginx", "image": "ikubernetes/myapp:v1",
                                                          "ports": [{"containerPort": 80}]}]}),
            "service": service("nginx-svc", selector={"app": "nginx"}),
            "ingress": ingress("myapp-ingress", backend="nginx-svc", annotations={
                "alb.ingress.kubernetes.io/scheme": "internet-facing",
                "alb.ingress.kubernetes.io/target-type": "ip"}),
        },
    }],
}


# What the first bootstrap of an empty cluster changes, in order (the execution's audit trail).
FIRST_RUN_CHANGES = [
    ("created", "ServiceAccount/kube-system/aws-load-balancer-controller"),
    ("install", "helm release kube-system/aws-load-balancer-controller"),
    ("created", "Namespace/shop"),
    ("created", "Service/shop/nginx-svc"),
    ("created", "Ingress/shop/myapp-ingress"),
    ("created", "Deployment/shop/nginx-app"),
]


@pytest.fixture
def cluster() -> Iterator[tuple[Simulation, SimBootstrapKubernetes, SimHelm]]:
    sim, kube, helm = world(SimController(installed=False))
    use_ports(lambda name: Ports(kube=kube, elb=sim.elb, clock=sim.clock))
    use_helm(lambda name: helm)
    yield sim, kube, helm
    use_ports(None)
    use_helm(None)


def wait_loop(sim: Simulation, handler: Any, state: dict, key: str) -> dict:
    """Check -> Choice -> Wait -> Check, as the state machine does; returns the decided state."""
    for _ in range(200):
        state = handler(state, None)
        if state[key]["status"] != "WAITING":
            assert state[key]["status"] == "PASSED", state[key]
            return state
        sim.advance(state["wait_seconds"])
    raise AssertionError(f"{key} never decided")


def run_bootstrap(sim: Simulation, request: dict, name: str) -> dict:
    state = bootstrap_validate.handler({"request": request, "execution_name": name, "controller_defaults": DEPLOYED},
                                       None)
    state = bootstrap_check_network.handler({"state": state, "network": None}, None)  # not in a VPC: no AWS call
    state = bootstrap_install_controller.handler(state, None)
    state = wait_loop(sim, bootstrap_check_controller.handler, state, "controller")
    state = bootstrap_label_namespaces.handler(state, None)
    state = bootstrap_apply_workloads.handler({"phase": "services", "state": state}, None)
    state = wait_loop(sim, bootstrap_check_bindings.handler, state, "bindings")
    state = bootstrap_apply_workloads.handler({"phase": "deployments", "state": state}, None)
    state = wait_loop(sim, bootstrap_find_ungated_pods.handler, state, "settle")
    return preflight_report.handler(state, None)


def test_from_an_empty_namespace_to_the_seed_app_serving_then_a_rerun_changes_nothing(cluster) -> None:
    sim, kube, helm = cluster
    # Given a cluster without the controller and no namespace `shop`
    assert NAMESPACE not in sim.cluster.namespaces
    # When the bootstrap runs
    first = run_bootstrap(sim, SEED_INPUT, "boot-1")
    # Then it installed the controller, created and labelled the namespace, applied Service, Ingress, Deployment
    assert [(c["change"], c["object"]) for c in first["changes"]] == FIRST_RUN_CHANGES
    assert len(helm.runs) == 1 and helm.runs[0][:2] == ["upgrade", "--install"]
    assert kube.get_namespace(NAMESPACE).labels[INJECT_LABEL] == "enabled"
    # And the Deployment was applied only after the binding existed: every pod carries the controller's gate
    [binding] = kube.list_target_group_bindings(NAMESPACE)
    pods = kube.list_pods(NAMESPACE, {"app": "nginx"})
    assert len(pods) == 3 and all(LBC_GATE_PREFIX + binding.name in p.readiness_gates for p in pods)
    assert all(p.ready for p in pods)
    # And the hardening is live: preStop, grace period, maxUnavailable 0
    dep = kube.get_deployment(NAMESPACE, "nginx-app")
    assert dep.template.containers[0].pre_stop_sleep_seconds == 30
    assert dep.template.termination_grace_period_seconds == 60 and dep.max_unavailable == 0
    # And no restart was needed, and the report is clean
    assert first["restarts"] == [] and first["report"]["ok"], first["report"]
    # And the app serves through the ALB: every target healthy, clients get answers
    tg = sim.alb.target_group(binding.target_group_arn)
    assert sorted(t.state for t in tg.targets.values()) == ["healthy"] * 3
    clients = sim.traffic.streams[0]
    clients.tgs[:], clients.rate, clients.next_arrival = [tg], 20.0, sim.clock.t
    sim.advance(60)
    assert sim.traffic.requests > 1000 and sum(sim.traffic.failed.values()) == 0

    # When the bootstrap runs again
    applied_before = len(kube.applied)
    second = run_bootstrap(sim, SEED_INPUT, "boot-2")
    # Then it changes nothing: no helm run, every apply unchanged, no restart, still clean
    assert second["changes"] == []
    assert len(helm.runs) == 1
    assert {a.action for a in kube.applied[applied_before:]} == {"unchanged"}
    assert second["restarts"] == [] and second["report"]["ok"]
    assert second["controller"]["install"]["action"] == "unchanged"


def test_an_upgrade_is_an_ordinary_rerun(cluster) -> None:
    sim, kube, helm = cluster
    # Given a controller installed by hand with an older chart, the default failure policy and back-off cap
    kube.controller.installed = True
    sim.lbc.up = True
    assert sim.lbc.max_backoff_seconds == 1000
    # When the bootstrap runs
    state = run_bootstrap(sim, SEED_INPUT, "boot-up")
    # Then helm upgraded it to the pinned chart with failurePolicy Fail and the back-off capped at 60 s
    assert state["controller"]["install"]["action"] == "upgrade"
    assert helm.runs and sim.lbc.spec.webhook_failure_policy == "Fail"
    assert sim.lbc.max_backoff_seconds == 60


def pending_world(status: str, revision: int, written_ago: float) -> tuple[Simulation, SimBootstrapKubernetes, SimHelm]:
    """A cluster whose controller release a dead helm left ``status`` ``written_ago`` seconds ago."""
    sim, kube, helm = world(SimController())
    kube.controller.helm_release = HelmRelease("aws-load-balancer-controller", "kube-system", "1.7.2", status, {},
                                               revision=revision, updated_at=sim.clock.now() - written_ago)
    use_ports(lambda name: Ports(kube=kube, elb=sim.elb, clock=sim.clock))
    use_helm(lambda name: helm)
    return sim, kube, helm


@pytest.mark.parametrize(("status", "revision", "fix"), [("pending-upgrade", 3, "rollback"),
                                                         ("pending-install", 1, "uninstall")])
def test_a_release_a_dead_helm_left_pending_is_cleared_and_the_bootstrap_completes(status, revision, fix) -> None:
    # Given the controller's release left pending an hour ago
    sim, kube, helm = pending_world(status, revision, written_ago=3600)
    try:
        # When the bootstrap runs
        done = run_bootstrap(sim, SEED_INPUT, "boot-pending")
    finally:
        use_ports(None)
        use_helm(None)
    # Then it cleared the release first (in the audit trail, with what it was), then upgraded or installed it
    assert [run[0] for run in helm.runs] == [fix, "upgrade"]
    clear, install = [c for c in done["changes"] if c["object"].startswith("helm release")]
    assert (clear["change"], clear["detail"]["was"], clear["detail"]["revision"]) == (fix, status, revision)
    assert install["change"] == ("upgrade" if fix == "rollback" else "install")
    # And the controller works and the app was applied behind it, as on any first run
    assert kube.controller.helm_release is not None and kube.controller.helm_release.status == "deployed"
    assert done["report"]["ok"], done["report"]


def test_a_release_pending_for_minutes_is_left_to_the_helm_that_may_still_run() -> None:
    # Given a pending upgrade written a minute ago (another helm may still be writing it)
    sim, kube, helm = pending_world("pending-upgrade", 3, written_ago=60)
    try:
        state = bootstrap_validate.handler({"request": SEED_INPUT, "execution_name": "boot-young",
                                            "controller_defaults": DEPLOYED}, None)
        state = bootstrap_check_network.handler({"state": state, "network": None}, None)
        # When Install Controller runs / Then it stops with a retryable conflict and runs no helm command
        with pytest.raises(ConflictError, match="pending-upgrade .* another helm operation may still be running"):
            bootstrap_install_controller.handler(state, None)
    finally:
        use_ports(None)
        use_helm(None)
    assert helm.runs == []
