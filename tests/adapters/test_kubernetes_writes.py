"""Kubernetes adapter writes over HTTP: the strategic merge patch, kubectl-style undo, and pods/status."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.adapters.kubernetes import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE, KubernetesAdapter
from lambdas.domain.errors import ConflictError, InvalidInputError, NotFoundError
from lambdas.domain.ports import ALBGATE_GATE, POD_DELETION_COST, SERVING_LABEL, DeploymentPatch
from tests.adapters import k8s_objects as k8s
from tests.adapters.conftest import api_client_for
from tests.adapters.fake_apiserver import FakeApiServer, Recorded

NS, NAME = "readiness", "nginx-app"
DEPLOY_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"


def two_container_deployment(**kwargs: Any) -> dict[str, Any]:
    sidecar = k8s.container("envoy", "envoy:1.30", lifecycle={"preStop": {"exec": {"command": ["/drain.sh"]}}})
    return k8s.deployment(tpl=k8s.template([k8s.container(), sidecar], gates=[k8s.LBC_GATE]), **kwargs)


def stored_containers(apiserver: FakeApiServer) -> dict[str, dict[str, Any]]:
    spec = apiserver.get("deployments", NS, NAME, "apps")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def only_patch(apiserver: FakeApiServer) -> Recorded:
    (patch,) = [r for r in apiserver.writes() if r.path == DEPLOY_PATH]
    return patch


# --- patch_deployment --------------------------------------------------------------------------------------
def test_image_change_merges_containers_by_name(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment with an app container and a sidecar
    apiserver.put("deployments", two_container_deployment(), "apps")
    # When the app container's image is patched
    d = kube.patch_deployment(NS, NAME, DeploymentPatch(images={"nginx": "nginx:1.28"}))
    # Then a strategic merge patch names only that container, and the sidecar is untouched on the server
    sent = only_patch(apiserver)
    assert sent.content_type == STRATEGIC_MERGE
    assert sent.body == {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}}
    containers = stored_containers(apiserver)
    assert containers["nginx"]["image"] == "nginx:1.28" and containers["nginx"]["readinessProbe"]
    assert containers["envoy"]["image"] == "envoy:1.30"
    assert [c.image for c in d.template.containers] == ["nginx:1.28", "envoy:1.30"]


def test_readiness_gate_is_added_beside_the_existing_ones(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment whose pods carry the controller's gate
    stored = apiserver.put("deployments", two_container_deployment(), "apps")
    # When albgate adds its own gate
    d = kube.patch_deployment(NS, NAME, DeploymentPatch(add_readiness_gates=(ALBGATE_GATE,)))
    # Then both gates remain (the list is atomic, so the patch carries both), conditional on the version read
    assert d.template.readiness_gates == (k8s.LBC_GATE, ALBGATE_GATE)
    sent = only_patch(apiserver).body
    assert sent["spec"]["template"]["spec"]["readinessGates"] == [
        {"conditionType": k8s.LBC_GATE},
        {"conditionType": ALBGATE_GATE},
    ]
    assert sent["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_gate_already_there_sends_nothing(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment that already has albgate's gate
    apiserver.put("deployments", k8s.deployment(tpl=k8s.template(gates=[ALBGATE_GATE])), "apps")
    # When the gate is added again
    d = kube.patch_deployment(NS, NAME, DeploymentPatch(add_readiness_gates=(ALBGATE_GATE,)))
    # Then no write happens (no new revision) and the Deployment is returned as it is
    assert apiserver.writes() == [] and d.template.readiness_gates == (ALBGATE_GATE,)


def test_gates_added_while_another_writer_moved_the_object_conflict(
    apiserver: FakeApiServer, kube: KubernetesAdapter
) -> None:
    # Given a writer that changes the Deployment between albgate's read and its patch
    apiserver.put("deployments", two_container_deployment(), "apps")
    apiserver.before("PATCH", DEPLOY_PATH, lambda: apiserver.touch("deployments", NS, NAME, "apps"))
    # When albgate adds its gate / Then the server's 409 becomes ConflictError (retryable), no gate is lost
    with pytest.raises(ConflictError, match="has been modified"):
        kube.patch_deployment(NS, NAME, DeploymentPatch(add_readiness_gates=(ALBGATE_GATE,)))
    assert apiserver.get("deployments", NS, NAME, "apps")["spec"]["template"]["spec"]["readinessGates"] == [
        {"conditionType": k8s.LBC_GATE}
    ]


@pytest.mark.parametrize(
    "expected_version,outcome",
    [("current", "patched"), ("stale", "ConflictError")],
    ids=["expected-version-matches", "expected-version-stale"],
)
def test_expected_resource_version_makes_the_patch_conditional(
    apiserver: FakeApiServer, kube: KubernetesAdapter, expected_version: str, outcome: str
) -> None:
    # Given the caller read the Deployment at some version
    stored = apiserver.put("deployments", two_container_deployment(), "apps")
    version = stored["metadata"]["resourceVersion"] if expected_version == "current" else "1"
    # When it patches with that version expected
    try:
        kube.patch_deployment(NS, NAME, DeploymentPatch(paused=True, expected_resource_version=version))
        result = "patched"
    except ConflictError:
        result = "ConflictError"
    # Then the server applies it only if nothing moved on, and the version travelled in the patch
    assert result == outcome
    assert only_patch(apiserver).body["metadata"]["resourceVersion"] == version


@pytest.mark.parametrize(
    "server_version,expected_pre_stop",
    [((1, 31), {"sleep": {"seconds": 30}}), ((1, 29), {"exec": {"command": ["sleep", "30"]}})],
    ids=["native-sleep-from-1.30", "exec-sleep-before-1.30"],
)
def test_pre_stop_sleep_replaces_the_previous_handler(
    apiserver: FakeApiServer, server_version: tuple[int, int], expected_pre_stop: dict[str, Any]
) -> None:
    # Given a sidecar whose preStop runs a script, on a cluster of some version
    apiserver.version = server_version
    apiserver.put("deployments", two_container_deployment(), "apps")
    kube = KubernetesAdapter(api_client_for(apiserver.url))
    # When albgate hardens it with a 30 s preStop sleep
    d = kube.patch_deployment(NS, NAME, DeploymentPatch(pre_stop_sleep_seconds={"envoy": 30}))
    # Then the preStop is only the sleep (a handler may have one action; the server would answer 422)
    assert stored_containers(apiserver)["envoy"]["lifecycle"]["preStop"] == expected_pre_stop
    assert d.template.container("envoy").pre_stop_sleep_seconds == 30  # type: ignore[union-attr]


def test_rollout_settings_and_annotations(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Recreate Deployment
    apiserver.put("deployments", two_container_deployment(strategy={"type": "Recreate"}), "apps")
    # When albgate sets the rolling update it needs, grace period, minReadySeconds, pause and annotations
    d = kube.patch_deployment(
        NS,
        NAME,
        DeploymentPatch(
            max_surge=1,
            max_unavailable=0,
            min_ready_seconds=5,
            paused=False,
            termination_grace_period_seconds=75,
            template_annotations={"albgate.io/rollout": "exec-1"},
            annotations={"albgate.io/owner": "exec-1"},
        ),
    )
    # Then all of it lands, the strategy switched to RollingUpdate so the server accepts it
    assert (d.max_surge, d.max_unavailable, d.min_ready_seconds, d.paused) == (1, 0, 5, False)
    assert d.template.termination_grace_period_seconds == 75
    assert d.template.annotations == {"albgate.io/rollout": "exec-1"}
    assert d.annotations["albgate.io/owner"] == "exec-1" and d.revision == 2
    assert "resourceVersion" not in only_patch(apiserver).body.get("metadata", {})


def test_unknown_container_is_refused_before_any_write(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment with containers nginx and envoy
    apiserver.put("deployments", two_container_deployment(), "apps")
    # When a patch names a container it does not have
    # Then NotFoundError lists the real ones and nothing is sent (a merge would have added a container)
    with pytest.raises(NotFoundError, match=r"no container named web.*\['nginx', 'envoy'\]"):
        kube.patch_deployment(NS, NAME, DeploymentPatch(images={"web": "web:2"}))
    assert apiserver.writes() == []


def test_server_validation_error_is_invalid_input(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment
    apiserver.put("deployments", two_container_deployment(), "apps")
    # When the patch asks for maxSurge 0 and maxUnavailable 0 (the API server rejects it)
    # Then InvalidInputError carries the server's field message
    with pytest.raises(InvalidInputError, match="may not be 0 when `maxSurge` is 0"):
        kube.patch_deployment(NS, NAME, DeploymentPatch(max_surge=0, max_unavailable=0))


# --- rollback_deployment -----------------------------------------------------------------------------------
def history(apiserver: FakeApiServer, paused: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Revision 1 (nginx:1.26, change-cause v1) and revision 2, the current one (nginx:1.27)."""
    old_tpl = k8s.template([k8s.container(image="nginx:1.26")], gates=[k8s.LBC_GATE])
    old_tpl["spec"]["futureField"] = {"keep": "me"}  # a field newer than the client's models
    current = k8s.deployment(
        tpl=k8s.template(gates=[k8s.LBC_GATE]),
        revision=2,
        paused=paused,
        annotations={"kubernetes.io/change-cause": "v2", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
    )
    apiserver.put("deployments", current, "apps")
    rs1 = k8s.replica_set(current, 1, "aaa111", old_tpl, annotations={"kubernetes.io/change-cause": "v1"})
    apiserver.put("replicasets", rs1, "apps")
    apiserver.put("replicasets", k8s.replica_set(current, 2, "bbb222", replicas=3), "apps")
    return current, rs1


@pytest.mark.parametrize("to_revision", [1, 0], ids=["explicit-revision", "previous-revision"])
def test_undo_copies_the_revision_template_back_like_kubectl(
    apiserver: FakeApiServer, kube: KubernetesAdapter, to_revision: int
) -> None:
    # Given revisions 1 and 2, 2 current
    _, rs1 = history(apiserver)
    # When albgate rolls back to revision 1 (explicitly, or as "the previous one")
    d = kube.rollback_deployment(NS, NAME, to_revision)
    # Then the template is revision 1's without its pod-template-hash label, sent as a JSON patch
    sent = only_patch(apiserver)
    assert sent.content_type == JSON_PATCH
    stored = apiserver.get("deployments", NS, NAME, "apps")
    expected_tpl = rs1["spec"]["template"]
    del expected_tpl["metadata"]["labels"]["pod-template-hash"]
    assert stored["spec"]["template"] == expected_tpl  # futureField survived: the JSON was copied, not a model
    assert d.template.containers[0].image == "nginx:1.26"
    # and annotations: revision and last-applied kept from the Deployment, change-cause copied from revision 1
    assert stored["metadata"]["annotations"] == {
        "deployment.kubernetes.io/revision": "2",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "kubernetes.io/change-cause": "v1",
    }


def test_undo_can_add_readiness_gates_in_the_same_write(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given revisions 1 and 2
    history(apiserver)
    # When albgate rolls back and asks for its gate in the restored template
    d = kube.rollback_deployment(NS, NAME, 1, add_readiness_gates=(ALBGATE_GATE,))
    # Then one write restores revision 1 with both gates, so no restored pod is born ungated
    assert len(apiserver.writes()) == 1
    assert d.template.readiness_gates == (k8s.LBC_GATE, ALBGATE_GATE)
    assert d.template.containers[0].image == "nginx:1.26"


def test_undo_of_a_paused_deployment_is_refused(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a paused Deployment
    history(apiserver, paused=True)
    # When a rollback is asked for / Then it is refused as kubectl does, saying how to resume, and nothing is sent
    with pytest.raises(InvalidInputError, match="kubectl rollout resume deployment/nginx-app -n readiness"):
        kube.rollback_deployment(NS, NAME, 1)
    assert apiserver.writes() == []


@pytest.mark.parametrize(
    "setup,to_revision,match",
    [("history", 5, "no revision 5"), ("only-current", 0, "no previous revision")],
    ids=["unknown-revision", "no-previous-revision"],
)
def test_undo_to_a_missing_revision_is_not_found(
    apiserver: FakeApiServer, kube: KubernetesAdapter, setup: str, to_revision: int, match: str
) -> None:
    # Given a history without that revision
    if setup == "history":
        history(apiserver)
    else:
        d = k8s.deployment()
        apiserver.put("deployments", d, "apps")
        apiserver.put("replicasets", k8s.replica_set(d, 2, "bbb222"), "apps")
    # When the rollback is asked for / Then NotFoundError says which revisions exist
    with pytest.raises(NotFoundError, match=match):
        kube.rollback_deployment(NS, NAME, to_revision)


def test_undo_to_the_current_template_is_skipped(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given revisions 1 and 2 / When albgate "rolls back" to revision 2, the current one
    history(apiserver)
    d = kube.rollback_deployment(NS, NAME, 2)
    # Then nothing is written, as kubectl skips it
    assert apiserver.writes() == [] and d.template.containers[0].image == "nginx:1.27"


def test_undo_conflicts_when_the_deployment_moved_on(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a writer that changes the Deployment between albgate's read and its patch
    history(apiserver)
    apiserver.before("PATCH", DEPLOY_PATH, lambda: apiserver.touch("deployments", NS, NAME, "apps"))
    # When albgate rolls back / Then ConflictError (retryable) and the template is unchanged
    with pytest.raises(ConflictError):
        kube.rollback_deployment(NS, NAME, 1)
    assert stored_image(apiserver) == "nginx:1.27"


def stored_image(apiserver: FakeApiServer) -> str:
    return stored_containers(apiserver)["nginx"]["image"]


# --- set_pod_condition -------------------------------------------------------------------------------------
def test_pod_condition_is_merged_by_type_into_pod_status(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a gated pod whose kubelet conditions say ContainersReady, not Ready
    apiserver.put("pods", k8s.pod("new-1", gates=[ALBGATE_GATE]))
    # When albgate opens its gate, then (say, on a retry) writes the same condition again
    for _ in range(2):
        kube.set_pod_condition(NS, "new-1", ALBGATE_GATE, "True", "TargetHealthy", "healthy in 1 target group")
    # Then pods/status got a strategic merge patch, the kubelet's conditions are untouched, the gate's is there once
    sent = apiserver.writes()
    assert [r.path for r in sent] == [f"/api/v1/namespaces/{NS}/pods/new-1/status"] * 2
    assert {r.content_type for r in sent} == {STRATEGIC_MERGE}
    conditions = {c["type"]: c for c in apiserver.get("pods", NS, "new-1")["status"]["conditions"]}
    assert sorted(conditions) == ["ContainersReady", "PodScheduled", "Ready", ALBGATE_GATE]
    assert conditions[ALBGATE_GATE] == {
        "type": ALBGATE_GATE,
        "status": "True",
        "reason": "TargetHealthy",
        "message": "healthy in 1 target group",
        "lastTransitionTime": "2026-01-02T03:00:00Z",  # FIXED_NOW, the adapter's clock
    }
    assert apiserver.get("pods", NS, "new-1")["spec"]["readinessGates"] == [{"conditionType": ALBGATE_GATE}]


def test_pod_condition_can_be_closed_again(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a pod whose albgate condition is True
    apiserver.put("pods", k8s.pod("new-1", gates=[ALBGATE_GATE]))
    kube.set_pod_condition(NS, "new-1", ALBGATE_GATE, "True", "TargetHealthy", "")
    # When albgate sets it False
    kube.set_pod_condition(NS, "new-1", ALBGATE_GATE, "False", "TargetUnhealthy", "unhealthy")
    # Then the one condition of that type is False
    gate = [c for c in apiserver.get("pods", NS, "new-1")["status"]["conditions"] if c["type"] == ALBGATE_GATE]
    assert [(c["status"], c["reason"]) for c in gate] == [("False", "TargetUnhealthy")]


def test_a_condition_whose_status_stays_keeps_its_transition_time(apiserver: FakeApiServer,
                                                                    kube: KubernetesAdapter) -> None:
    # Given a pod whose albgate condition was written False at the adapter's clock
    apiserver.put("pods", k8s.pod("new-1", gates=[ALBGATE_GATE]))
    kube.set_pod_condition(NS, "new-1", ALBGATE_GATE, "False", "Waiting", "first")
    stored = apiserver.get("pods", NS, "new-1")
    next(c for c in stored["status"]["conditions"] if c["type"] == ALBGATE_GATE)["lastTransitionTime"] = (
        "2026-01-01T00:00:00Z")  # as if written a day earlier
    apiserver.put("pods", stored)
    # When only its message changes
    kube.set_pod_condition(NS, "new-1", ALBGATE_GATE, "False", "Waiting", "second", same_status=True)
    # Then the patch leaves lastTransitionTime out and the stored one stays
    assert "lastTransitionTime" not in apiserver.writes()[-1].body["status"]["conditions"][0]
    gate = next(c for c in apiserver.get("pods", NS, "new-1")["status"]["conditions"] if c["type"] == ALBGATE_GATE)
    assert (gate["message"], gate["lastTransitionTime"]) == ("second", "2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "pod,status,error",
    [("gone", "True", NotFoundError), ("new-1", "yes", InvalidInputError)],
    ids=["pod-gone", "bad-status"],
)
def test_pod_condition_failures(
    apiserver: FakeApiServer, kube: KubernetesAdapter, pod: str, status: str, error: type[Exception]
) -> None:
    # Given one pod / When a condition is set on a missing pod or with a status that is not True/False/Unknown
    apiserver.put("pods", k8s.pod("new-1"))
    # Then the domain error says so
    with pytest.raises(error):
        kube.set_pod_condition(NS, pod, ALBGATE_GATE, status, "r", "m")


# --- set_pod_serving ---------------------------------------------------------------------------------------
def test_a_pod_is_taken_out_of_service_and_back_by_one_label_and_its_deletion_cost(
        apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a serving pod with labels and an annotation of its own
    pod = k8s.pod("old-1")
    pod["metadata"]["labels"] = {"app": "nginx", SERVING_LABEL: "true"}
    pod["metadata"]["annotations"] = {"team": "web"}
    apiserver.put("pods", pod)
    # When albgate takes it out of service
    kube.set_pod_serving(NS, "old-1", False)
    # Then a merge patch of the pod itself set the label to "false" and the lowest deletion cost, nothing else
    sent = apiserver.writes()[-1]
    assert (sent.path, sent.content_type) == (f"/api/v1/namespaces/{NS}/pods/old-1", MERGE_PATCH)
    meta = apiserver.get("pods", NS, "old-1")["metadata"]
    assert meta["labels"] == {"app": "nginx", SERVING_LABEL: "false"}
    assert meta["annotations"] == {"team": "web", POD_DELETION_COST: "-2147483648"}
    # When it is put back
    kube.set_pod_serving(NS, "old-1", True)
    # Then the label says "true" again and the deletion cost is gone
    meta = apiserver.get("pods", NS, "old-1")["metadata"]
    assert meta["labels"] == {"app": "nginx", SERVING_LABEL: "true"}
    assert meta["annotations"] == {"team": "web"}


def test_taking_a_gone_pod_out_of_service_says_it_is_gone(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given no such pod / When albgate takes it out of service / Then NotFoundError names it
    with pytest.raises(NotFoundError, match="old-9"):
        kube.set_pod_serving(NS, "old-9", False)
