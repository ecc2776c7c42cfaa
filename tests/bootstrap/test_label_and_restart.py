"""Label Namespaces and Find Pods Born Before The Label, on the simulated cluster."""

from __future__ import annotations

import pytest

from lambdas.domain import bootstrap as b
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import parse_request
from lambdas.domain.ports import INJECT_LABEL, LBC_GATE_PREFIX
from tests.bootstrap.conftest import CLUSTER, until_decided, world

SEED_APP = {"namespace": "readiness", "deployment": "nginx-app", "container": "nginx"}


def state_for(request: dict) -> dict:
    return b.validate_input(request, "boot-1", 0)


@pytest.mark.parametrize(("existing", "action"), [("readiness", "configured"), ("brand-new", "created")],
                         ids=["existing-namespace-labelled", "missing-namespace-created-labelled"])
def test_namespaces_are_labelled_once(existing: str, action: str) -> None:
    # Given a cluster (the example app's namespace `readiness` exists, unlabelled)
    sim, kube, _ = world()
    state = state_for({"cluster": CLUSTER, "namespaces": [existing]})
    # When the namespaces are labelled twice
    first = b.label_namespaces(kube, state)
    second = b.label_namespaces(kube, first)
    # Then the first run labels (or creates) it, the second changes nothing
    assert first["namespaces"] == [{"namespace": existing, "action": action}]
    assert second["namespaces"] == [{"namespace": existing, "action": "unchanged"}]
    assert kube.get_namespace(existing).labels[INJECT_LABEL] == "enabled"
    assert [c["change"] for c in second["changes"]] == [action]  # only the first run logged a change


@pytest.mark.parametrize("namespace", ["kube-system", "lbc-system"])
def test_the_controller_namespace_and_kube_system_are_never_labelled(namespace: str) -> None:
    # Given a state naming a protected namespace (as if validation had been skipped)
    sim, kube, _ = world()
    state = {"request": {"cluster": CLUSTER, "namespaces": [namespace], "controller": {"namespace": "lbc-system"}}}
    # When labelling
    with pytest.raises(InvalidInputError, match="refusing to label"):
        b.label_namespaces(kube, state)
    # Then nothing was applied
    assert kube.applied == []


def test_pods_born_before_the_label_become_gated_restart_inputs() -> None:
    # Given the example app running unlabelled, with the controller installed
    sim, kube, _ = world()
    state = state_for({"cluster": CLUSTER, "applications": [SEED_APP]})
    # When its namespace is labelled and the pods are checked
    state = b.label_namespaces(kube, state)
    state = until_decided(sim, lambda s: b.find_pods_born_before_label(kube, sim.clock, s), state, "settle")
    # Then its three pods are reported and one restart through the gates is prepared (it keeps the image the pods run)
    assert state["settle"]["status"] == "PASSED"
    assert state["stale_pods"][0]["deployment"] == "readiness/nginx-app" and len(state["stale_pods"][0]["pods"]) == 3
    [restart] = state["restarts"]
    request = parse_request(restart)
    assert (request.kind, request.deployment, request.image) == ("restart", "nginx-app", None)
    # And nothing was deleted
    assert all(not p.terminating for p in sim.cluster.pods.values())


@pytest.mark.parametrize(("label", "expected"), [("before_pods", 0), ("after_pods", 1)],
                         ids=["labelled-before-pods", "labelled-after-pods"])
def test_only_pods_without_the_gate_are_restarted(label: str, expected: int) -> None:
    # Given the namespace labelled before or after the pods were created
    sim, kube, _ = world(namespace={"inject_label": label})
    state = state_for({"cluster": CLUSTER, "applications": [SEED_APP]})
    # When the pods are checked
    state = until_decided(sim, lambda s: b.find_pods_born_before_label(kube, sim.clock, s), state, "settle")
    # Then only pods born before the label need a restart
    assert len(state["restarts"]) == expected
    gates = {g for p in sim.cluster.pods.values() for g in p.readiness_gates}
    assert any(g.startswith(LBC_GATE_PREFIX) for g in gates) is (label == "before_pods")


def test_restarts_are_not_started_when_the_input_says_so() -> None:
    sim, kube, _ = world()
    state = state_for({"cluster": CLUSTER, "applications": [SEED_APP], "restart_pods_born_before_label": False})
    state = until_decided(sim, lambda s: b.find_pods_born_before_label(kube, sim.clock, s), b.label_namespaces(kube, state), "settle")
    assert state["stale_pods"] and state["restarts"] == []


def test_auto_mode_has_no_gate_to_wait_for() -> None:
    # Given EKS Auto Mode (no gate injection) and an input that says so
    sim, kube, _ = world(cluster={"auto_mode": True})
    state = state_for({"cluster": CLUSTER, "applications": [SEED_APP], "controller": {"require_gate_injection": False}})
    # When the pods are checked
    state = until_decided(sim, lambda s: b.find_pods_born_before_label(kube, sim.clock, s), state, "settle")
    # Then no restart is asked for (albgate's own gate protects rollouts there)
    assert state["restarts"] == []


def test_a_deployment_that_does_not_settle_fails_at_its_deadline() -> None:
    # Given an app whose new pods crash (it never settles) after the apply changed it
    sim, kube, _ = world(faults={"broken_images": ["ikubernetes/myapp:v9"], "broken_mode": "crash"})
    from lambdas.domain.ports import DeploymentPatch

    kube.patch_deployment("readiness", "nginx-app", DeploymentPatch(images={"nginx": "ikubernetes/myapp:v9"}, max_unavailable=0))
    state = state_for({"cluster": CLUSTER, "applications": [SEED_APP]})
    state["settle"] = {"status": "WAITING", "deadline": sim.clock.now() + 120}
    # When checked until decided
    state = until_decided(sim, lambda s: b.find_pods_born_before_label(kube, sim.clock, s), state, "settle")
    # Then it fails naming the Deployment, and no restart is asked for
    assert state["settle"]["status"] == "FAILED" and "readiness/nginx-app" in state["settle"]["reason"]
    assert state["restarts"] == []

