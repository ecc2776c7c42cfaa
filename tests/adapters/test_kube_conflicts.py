"""Conflicts the real API server answers by itself, on the fake API server (tests/adapters/fake_apiserver.py).

- Optimistic concurrency: a controller's status write between albgate's read and its conditional write makes the
  write 409 (docs/facts.md, "Kubelet and controllers: Ready after a gate, status writes"); albgate's Start Step
  reads again and its write lands, also when the write that met the 409 followed an undo that had landed.
- Server-side apply (docs/facts.md, "Server-side apply: associative lists"): a field a manager stopped applying is
  pruned, a field another manager owns is a 409 unless forced, and associative lists merge by key while atomic
  lists are owned whole.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from lambdas.adapters.kubernetes import JSON_PATCH, STRATEGIC_MERGE, KubernetesAdapter
from lambdas.domain.errors import ConflictError
from lambdas.domain.models import parse_request
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch, Ports
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.rollout.step import start_step
from lambdas.domain.state import RolloutState, TargetGroupInfo
from tests.adapters import k8s_objects as k8s
from tests.adapters.conftest import FIXED_NOW
from tests.adapters.fake_apiserver import APPLY_PATCH, FakeApiServer

NS, NAME = "readiness", "nginx-app"
DEPLOY_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
REVISION, HISTORY = "deployment.kubernetes.io/revision", "deployment.kubernetes.io/revision-history"


class FixedClock:
    def now(self) -> float:
        return FIXED_NOW


def controller_status_write(apiserver: FakeApiServer) -> None:
    """What the Deployment controller writes after any change: observedGeneration and the replica counts."""

    def status(obj: dict[str, Any]) -> None:
        obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
        obj["status"]["readyReplicas"] = obj["status"].get("readyReplicas", 0) - 1

    apiserver.update("deployments", NS, NAME, status, "apps")


def state_for(dep: dict[str, Any], **changes: Any) -> RolloutState:
    """Start Step's input for the first step on ``dep``, as Preflight leaves it."""
    container = dep["spec"]["template"]["spec"]["containers"][0]
    request = {"cluster": "c", "namespace": NS, "deployment": NAME, "container": container["name"],
               "image": "nginx:1.28"}
    base: dict[str, Any] = dict(
        request=parse_request(request), execution_name="exec-1", started_at=FIXED_NOW, replicas=3, plan=[1, 2, 3],
        target_image="nginx:1.28", previous_image=container["image"],
        previous_revision=int(dep["metadata"]["annotations"][REVISION]),
        original_max_surge="25%", original_max_unavailable="25%",
        target_groups=[TargetGroupInfo(arn="arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s/1",
                                       service="nginx-svc", health_check_interval_seconds=5, healthy_threshold=2,
                                       deregistration_delay_seconds=30)],
    )
    return RolloutState(**{**base, **changes})


def ports_for(kube: KubernetesAdapter) -> Ports:
    # Start Step calls the Kubernetes port and the clock only; it has no load balancer to call
    return Ports(kube=kube, elb=None, clock=FixedClock())  # type: ignore[arg-type]


def deployment_writes(apiserver: FakeApiServer) -> list[tuple[str, int]]:
    return [(r.content_type, r.status) for r in apiserver.writes() if r.path == DEPLOY_PATH]


# --- optimistic concurrency ---------------------------------------------------------------------------------
def test_a_status_write_between_read_and_conditional_patch_is_a_conflict(
    apiserver: FakeApiServer, kube: KubernetesAdapter
) -> None:
    # Given albgate's read, then the controller's status write
    apiserver.put("deployments", k8s.deployment(), "apps")
    read = kube.get_deployment(NS, NAME)
    controller_status_write(apiserver)
    # When albgate writes on condition of its read / Then 409 ConflictError, and the spec is untouched
    with pytest.raises(ConflictError, match="Somebody changed the object"):
        kube.patch_deployment(NS, NAME, DeploymentPatch(max_surge=1, expected_resource_version=read.resource_version))
    stored = apiserver.get("deployments", NS, NAME, "apps")
    assert deployment_writes(apiserver) == [(STRATEGIC_MERGE, 409)]
    assert stored["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"
    assert stored["metadata"]["generation"] == 4  # a status write is not a new generation


def test_start_step_reads_again_after_a_status_write_conflict_and_its_write_lands(
    apiserver: FakeApiServer, kube: KubernetesAdapter
) -> None:
    # Given the Deployment Preflight read, and a status write landing just before Start Step's first patch
    dep = apiserver.put("deployments", k8s.deployment(), "apps")
    apiserver.before("PATCH", DEPLOY_PATH, lambda: controller_status_write(apiserver))
    # When Start Step runs
    done = start_step(ports_for(kube), state_for(dep))
    # Then the first patch met 409, Start Step read again, and its second patch landed: image, gate, batch, hold
    assert deployment_writes(apiserver) == [(STRATEGIC_MERGE, 409), (STRATEGIC_MERGE, 200)]
    stored = apiserver.get("deployments", NS, NAME, "apps")
    spec = stored["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "nginx:1.28"
    assert {"conditionType": ALBGATE_GATE} in spec["readinessGates"]
    assert stored["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert stored["metadata"]["annotations"][ROLLOUT_ANNOTATION].startswith("exec-1@")
    assert done.next_step == 1


def test_a_restart_rollback_whose_undo_landed_before_the_conflict_finishes_on_the_retry(
    apiserver: FakeApiServer, kube: KubernetesAdapter
) -> None:
    # Given a restart (revision 2, its template stamped) to roll back to revision 1, the same image
    old_tpl = k8s.template(gates=[ALBGATE_GATE])
    restarted = k8s.template(gates=[ALBGATE_GATE], annotations={"kubectl.kubernetes.io/restartedAt": "2026-01-02"})
    dep = apiserver.put("deployments", k8s.deployment(tpl=restarted, revision=2), "apps")
    rs1 = apiserver.put("replicasets", k8s.replica_set(dep, 1, "aaa111", old_tpl), "apps")
    apiserver.put("replicasets", k8s.replica_set(dep, 2, "bbb222", replicas=3), "apps")

    def controller_reacts_to_the_undo() -> None:
        # revision 1's ReplicaSet is the new one again: the next revision, the old number kept in its history
        def renumber(rs: dict[str, Any]) -> None:
            rs["metadata"]["annotations"].update({REVISION: "3", HISTORY: "1"})

        def deployment(obj: dict[str, Any]) -> None:
            obj["metadata"]["annotations"][REVISION] = "3"
            obj["status"]["observedGeneration"] = obj["metadata"]["generation"]

        apiserver.update("replicasets", NS, rs1["metadata"]["name"], renumber, "apps")
        apiserver.update("deployments", NS, NAME, deployment, "apps")

    apiserver.after("PATCH", DEPLOY_PATH, controller_reacts_to_the_undo)
    request = parse_request({"cluster": "c", "namespace": NS, "deployment": NAME, "container": "nginx",
                             "kind": "restart"})
    state = state_for(dep, request=request, mode="rollback", plan=[3], target_image="nginx:1.27",
                      previous_image="nginx:1.27", previous_revision=1)
    # When the rollback's Start Step runs: its undo lands, the controller answers it, the next patch meets 409
    done = start_step(ports_for(kube), state)
    # Then the retry finds revision 1 under its new number, has no undo left to write, and its patch lands
    assert deployment_writes(apiserver) == [(JSON_PATCH, 200), (STRATEGIC_MERGE, 409), (STRATEGIC_MERGE, 200)]
    stored = apiserver.get("deployments", NS, NAME, "apps")
    assert "annotations" not in stored["spec"]["template"]["metadata"]  # revision 1's template, not restarted
    assert stored["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 3, "maxUnavailable": 0}
    assert stored["metadata"]["annotations"][ROLLOUT_ANNOTATION].startswith("exec-1@")
    assert done.next_step == 1


# --- server-side apply ----------------------------------------------------------------------------------------
APPS = "/apis/apps/v1/namespaces/apps/deployments/web"
SERVICE = "/api/v1/namespaces/apps/services/web"


@pytest.fixture
def server(apiserver: FakeApiServer) -> FakeApiServer:
    apiserver.put("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
    return apiserver


def apply(server: FakeApiServer, path: str, manager: str, body: dict[str, Any],
          force: bool = False) -> tuple[int, dict[str, Any]]:
    query = f"?fieldManager={manager}" + ("&force=true" if force else "")
    request = urllib.request.Request(server.url + path + query, data=json.dumps(body).encode(), method="PATCH",
                                     headers={"Content-Type": APPLY_PATCH})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def web(*containers: dict[str, Any], gates: list[str] | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment apply configuration holding only the fields its manager means to own."""
    pod: dict[str, Any] = {"containers": list(containers)}
    if gates is not None:
        pod["readinessGates"] = [{"conditionType": g} for g in gates]
    meta: dict[str, Any] = {"name": "web"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"template": {"spec": pod}}}


def pod_spec(server: FakeApiServer) -> dict[str, Any]:
    return server.get("deployments", "apps", "web", "apps")["spec"]["template"]["spec"]


CONTAINERS = ".spec.template.spec.containers"


def test_apply_prunes_what_its_manager_stopped_applying_but_not_what_another_still_owns(server: FakeApiServer) -> None:
    # Given "tool" applied two annotations and two containers with a variable each, and "mesh" applied the second
    # container's image too (the same value: shared) and a variable of its own
    log = {"name": "log", "image": "log:1", "env": [{"name": "TOOL", "value": "1"}]}
    tool = web({"name": "app", "image": "app:1"}, log, annotations={"a": "1", "b": "1"})
    assert apply(server, APPS, "tool", tool)[0] == 201
    mesh = web({"name": "log", "image": "log:1", "env": [{"name": "LEVEL", "value": "debug"}]})
    assert apply(server, APPS, "mesh", mesh)[0] == 200
    # When "tool" applies again without annotation b and without the log container (no force needed)
    status, _ = apply(server, APPS, "tool", web({"name": "app", "image": "app:1"}, annotations={"a": "1"}))
    # Then what only "tool" owned is gone (b, its variable); the log container stays with the fields "mesh" owns
    assert status == 200
    assert server.get("deployments", "apps", "web", "apps")["metadata"]["annotations"] == {"a": "1"}
    assert pod_spec(server)["containers"] == [
        {"name": "app", "image": "app:1"},
        {"name": "log", "image": "log:1", "env": [{"name": "LEVEL", "value": "debug"}]}]
    # And when "mesh" stops applying it too, the element goes with its last owned field
    assert apply(server, APPS, "mesh", web())[0] == 200
    assert [c["name"] for c in pod_spec(server)["containers"]] == ["app"]


def test_apply_of_a_field_another_applier_owns_is_a_conflict_unless_forced_or_equal(server: FakeApiServer) -> None:
    # Given "tool" applied the app container's image
    assert apply(server, APPS, "tool", web({"name": "app", "image": "app:1"}))[0] == 201
    # When "ci" applies another image without force / Then 409 names "tool" and the element's field, nothing changes
    status, answer = apply(server, APPS, "ci", web({"name": "app", "image": "app:2"}))
    assert (status, answer["reason"]) == (409, "Conflict")
    assert answer["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                            "message": 'conflict with "tool" using apps/v1',
                                            "field": f'{CONTAINERS}[name="app"].image'}]
    assert pod_spec(server)["containers"][0]["image"] == "app:1"
    # When it applies the same value / Then the field is shared, no conflict
    assert apply(server, APPS, "ci", web({"name": "app", "image": "app:1"}))[0] == 200
    assert server.managers("deployments", "apps", "web", "apps")[f'{CONTAINERS}[name="app"].image'] == \
        "ci (Apply), tool (Apply)"
    # When "tool" now changes the shared field / Then it conflicts with "ci", and forcing takes it over
    assert apply(server, APPS, "tool", web({"name": "app", "image": "app:3"}))[0] == 409
    assert apply(server, APPS, "tool", web({"name": "app", "image": "app:3"}), force=True)[0] == 200
    assert server.managers("deployments", "apps", "web", "apps")[f'{CONTAINERS}[name="app"].image'] == "tool (Apply)"


def test_associative_lists_merge_by_key(server: FakeApiServer) -> None:
    # Given "tool" applied the app container with port 80 and one variable
    app = {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]}
    assert apply(server, APPS, "tool", web(app))[0] == 201
    # When "mesh" applies its own container, and another port and variable on the app container (by its name)
    mesh = web({"name": "app", "ports": [{"containerPort": 9901}], "env": [{"name": "B", "value": "2"}]},
               {"name": "envoy", "image": "envoy:1"})
    assert apply(server, APPS, "mesh", mesh)[0] == 200
    # Then containers merged by name, ports by containerPort (protocol defaulted), env by name: nothing replaced
    (app_now, envoy) = pod_spec(server)["containers"]
    assert (app_now["name"], app_now["image"], envoy) == ("app", "app:1", {"name": "envoy", "image": "envoy:1"})
    assert app_now["ports"] == [{"containerPort": 80}, {"containerPort": 9901, "protocol": "TCP"}]
    assert app_now["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    owners = server.managers("deployments", "apps", "web", "apps")
    assert owners[f'{CONTAINERS}[name="app"].ports[containerPort=80,protocol="TCP"].containerPort'] == "tool (Apply)"
    assert owners[f'{CONTAINERS}[name="app"].ports[containerPort=9901,protocol="TCP"].containerPort'] == "mesh (Apply)"
    assert owners[f'{CONTAINERS}[name="envoy"].image'] == "mesh (Apply)"


def test_a_services_ports_merge_by_port_and_protocol(server: FakeApiServer) -> None:
    def service(*ports: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": list(ports)}}

    assert apply(server, SERVICE, "tool", service({"port": 80, "protocol": "TCP", "targetPort": 8080}))[0] == 201
    assert apply(server, SERVICE, "dns", service({"port": 53, "protocol": "UDP"}))[0] == 200
    ports = server.get("services", "apps", "web")["spec"]["ports"]
    assert [(p["port"], p["protocol"]) for p in ports] == [(80, "TCP"), (53, "UDP")]


def test_an_atomic_list_is_owned_and_replaced_whole(server: FakeApiServer) -> None:
    # Given "tool" applied the readiness gates (an atomic list)
    assert apply(server, APPS, "tool", web({"name": "app", "image": "app:1"}, gates=["a.example/one"]))[0] == 201
    # When "ci" applies other gates / Then the whole list conflicts, and forced it replaces the whole list
    status, answer = apply(server, APPS, "ci", web(gates=["b.example/two"]))
    assert status == 409 and answer["details"]["causes"][0]["field"] == ".spec.template.spec.readinessGates"
    assert apply(server, APPS, "ci", web(gates=["b.example/two"]), force=True)[0] == 200
    assert pod_spec(server)["readinessGates"] == [{"conditionType": "b.example/two"}]
