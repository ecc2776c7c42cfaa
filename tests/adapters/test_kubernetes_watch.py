"""The adapter's watches (``wait_for_pods``, ``wait_for_bindings``) over both transports, against the fake API
server's watch: from the collection's current resourceVersion, ended by the server's timeoutSeconds, True at the
first event of a selected object."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from lambdas.adapters.kubernetes import KubernetesAdapter
from lambdas.domain.errors import AccessDeniedError
from tests.adapters import k8s_objects as k8s
from tests.adapters.fake_apiserver import FakeApiServer

NS = "readiness"
APP = {"app": "nginx"}
TGB_GROUP = "elbv2.k8s.aws"


def later(seconds: float, change: Callable[[], object]) -> threading.Thread:
    """Another writer (the kubelet, the controller) changes the cluster ``seconds`` from now."""
    thread = threading.Thread(target=lambda: (time.sleep(seconds), change()), daemon=True)
    thread.start()
    return thread


@pytest.fixture
def pods(apiserver: FakeApiServer) -> FakeApiServer:
    apiserver.put("namespaces", k8s.namespace(NS))
    apiserver.put("pods", k8s.pod("nginx-app-abc123-aaaaa", labels=APP))
    apiserver.put("pods", k8s.pod("other-xyz", labels={"app": "other"}, ip="10.0.1.99"))
    return apiserver


def test_a_watch_without_a_change_ends_after_its_seconds_and_says_so(pods: FakeApiServer,
                                                                     kube: KubernetesAdapter) -> None:
    started = time.monotonic()
    assert kube.wait_for_pods(NS, APP, 1) is False
    assert 0.9 <= time.monotonic() - started < 5
    # It read the collection's resourceVersion with a one-item list, then watched from it for that many seconds
    listed, watched = [r for r in pods.requests if r.path == f"/api/v1/namespaces/{NS}/pods"][-2:]
    assert listed.query["limit"] == ["1"] and listed.query["labelSelector"] == ["app=nginx"]
    assert "watch" not in listed.query
    assert watched.query["watch"] == ["true"] and watched.query["timeoutSeconds"] == ["1"]
    assert watched.query["labelSelector"] == ["app=nginx"]
    assert watched.query["resourceVersion"] == [str(int(pods.get("pods", NS, "other-xyz")["metadata"]
                                                        ["resourceVersion"]))]


def test_a_selected_pod_changing_ends_the_watch_at_once(pods: FakeApiServer, kube: KubernetesAdapter) -> None:
    def ready(pod: dict) -> None:
        pod["status"]["conditions"] = [{"type": "target-health.elbv2.k8s.aws/tg", "status": "True"}]

    later(0.3, lambda: pods.update("pods", NS, "nginx-app-abc123-aaaaa", ready))
    started = time.monotonic()
    assert kube.wait_for_pods(NS, APP, 20) is True
    assert time.monotonic() - started < 5


def test_a_pod_the_selector_does_not_select_wakes_nothing(pods: FakeApiServer, kube: KubernetesAdapter) -> None:
    later(0.2, lambda: pods.touch("pods", NS, "other-xyz"))
    assert kube.wait_for_pods(NS, APP, 1) is False


def test_a_new_or_deleted_pod_ends_the_watch(pods: FakeApiServer, kube: KubernetesAdapter) -> None:
    later(0.2, lambda: pods.put("pods", k8s.pod("nginx-app-abc123-bbbbb", labels=APP, ip="10.0.1.11")))
    assert kube.wait_for_pods(NS, APP, 20) is True
    later(0.2, lambda: pods.serve("DELETE", f"/api/v1/namespaces/{NS}/pods/nginx-app-abc123-aaaaa", {}, b""))
    assert kube.wait_for_pods(NS, APP, 20) is True


def test_a_binding_annotated_by_the_controller_ends_its_watch(apiserver: FakeApiServer,
                                                              kube: KubernetesAdapter) -> None:
    apiserver.put("namespaces", k8s.namespace(NS))
    apiserver.put("targetgroupbindings", k8s.target_group_binding(
        targetGroupARN="arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s/0123456789abcdef",
        targetType="ip", serviceRef={"name": "nginx-svc", "port": 80}), TGB_GROUP)
    assert kube.wait_for_bindings(NS, 1) is False

    def checkpoint(tgb: dict) -> None:
        tgb["metadata"]["annotations"] = {"elbv2.k8s.aws/checkpoint": "digest"}

    later(0.3, lambda: apiserver.update("targetgroupbindings", NS, "k8s-readines-nginxsvc-0123456789", checkpoint,
                                        TGB_GROUP))
    assert kube.wait_for_bindings(NS, 20) is True


def test_a_watch_refused_says_what_was_being_done(pods: FakeApiServer, kube: KubernetesAdapter) -> None:
    pods.fail_next("GET", f"/api/v1/namespaces/{NS}/pods$", 403, "pods is forbidden: cannot watch")
    with pytest.raises(AccessDeniedError, match=f"watch Pods in {NS} matching app=nginx"):
        kube.wait_for_pods(NS, APP, 1)


def test_a_watch_shorter_than_a_second_is_refused(pods: FakeApiServer, kube: KubernetesAdapter) -> None:
    with pytest.raises(ValueError, match="at least 1 s"):
        kube.wait_for_pods(NS, APP, 0)
    assert not [r for r in pods.requests if r.path.endswith("/pods")]
