"""Kubernetes adapter reads, over HTTP against the fake API server: wire JSON -> the ports' dataclasses."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.adapters.kubernetes import KubernetesAdapter
from lambdas.domain.errors import NotFoundError
from lambdas.domain.ports import (
    Container,
    IngressBackend,
    PodCondition,
    ServicePort,
    TargetGroupBinding,
)
from tests.adapters import k8s_objects as k8s
from tests.adapters.fake_apiserver import FakeApiServer

NS = "readiness"


def test_namespace_labels(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a namespace labelled for the controller's gate injection
    apiserver.put("namespaces", k8s.namespace(NS, {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}))
    # When it is read
    ns = kube.get_namespace(NS)
    # Then its labels come back
    assert ns.name == NS and ns.labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    assert apiserver.requests[-1].path == f"/api/v1/namespaces/{NS}"


@pytest.mark.parametrize(
    "lifecycle,expected",
    [
        (None, None),
        ({"preStop": {"sleep": {"seconds": 25}}}, 25),
        ({"preStop": {"exec": {"command": ["sleep", "30"]}}}, 30),
        ({"preStop": {"exec": {"command": ["/bin/sleep", "15"]}}}, 15),
        ({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 20 && nginx -s quit"]}}}, 20),
        ({"preStop": {"exec": {"command": ["sh", "-c", "sleep 2m"]}}}, 120),
        ({"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}, None),
        ({"preStop": {"httpGet": {"path": "/drain", "port": 80}}}, None),
        ({"postStart": {"exec": {"command": ["sleep", "5"]}}}, None),
    ],
    ids=[
        "none",
        "native-sleep",
        "exec-sleep",
        "exec-abs-path",
        "shell-sleep-then-quit",
        "shell-minutes",
        "exec-not-sleep",
        "http-get",
        "post-start-only",
    ],
)
def test_pre_stop_sleep_is_read_from_native_or_exec_forms(
    apiserver: FakeApiServer, kube: KubernetesAdapter, lifecycle: dict[str, Any] | None, expected: int | None
) -> None:
    # Given a Deployment whose container has this lifecycle
    extra: dict[str, Any] = {"lifecycle": lifecycle} if lifecycle else {}
    apiserver.put("deployments", k8s.deployment(tpl=k8s.template([k8s.container(**extra)])), "apps")
    # When it is read
    (container,) = kube.get_deployment(NS, "nginx-app").template.containers
    # Then the preStop sleep seconds are recognised, or None
    assert container.pre_stop_sleep_seconds == expected


@pytest.mark.parametrize(
    "strategy,surge,unavailable",
    [
        ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, 1, 0),
        ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%"}}, "50%", "25%"),
        ({"type": "RollingUpdate"}, "25%", "25%"),
        ({"type": "Recreate"}, 0, "100%"),
    ],
    ids=["explicit", "partly-defaulted", "defaulted", "recreate"],
)
def test_rolling_update_settings_as_written_or_defaulted(
    apiserver: FakeApiServer, kube: KubernetesAdapter, strategy: dict[str, Any], surge: Any, unavailable: Any
) -> None:
    # Given a Deployment with this strategy
    apiserver.put("deployments", k8s.deployment(strategy=strategy), "apps")
    # When it is read
    d = kube.get_deployment(NS, "nginx-app")
    # Then maxSurge/maxUnavailable are as written, Kubernetes' 25 % defaults, or what Recreate amounts to
    assert (d.max_surge, d.max_unavailable) == (surge, unavailable)


def test_deployment_fields(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment mid-rollout, with the controller's gate, a sidecar without readiness probe, paused
    sidecar = k8s.container("envoy", "envoy:1.30")
    del sidecar["readinessProbe"]
    raw = k8s.deployment(
        tpl=k8s.template([k8s.container(), sidecar], gates=[k8s.LBC_GATE], grace=None),
        revision=7,
        paused=True,
        status={
            "observedGeneration": 3,
            "updatedReplicas": 1,
            "readyReplicas": 3,
            "availableReplicas": 2,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "Unknown",
                    "reason": "DeploymentPaused",
                    "message": "Deployment is paused",
                    "lastUpdateTime": "2026-11-27T10:00:05Z",
                    "lastTransitionTime": "2026-11-27T09:00:00Z",
                }
            ],
        },
    )
    raw["spec"]["minReadySeconds"] = 10
    stored = apiserver.put("deployments", raw, "apps")
    # When it is read
    d = kube.get_deployment(NS, "nginx-app")
    # Then every field the domain uses is carried over
    assert d.template.containers == (
        Container("nginx", "nginx:1.27", None, True),
        Container("envoy", "envoy:1.30", None, False),
    )
    assert d.template.readiness_gates == (k8s.LBC_GATE,)
    assert d.template.termination_grace_period_seconds == 30  # defaulted
    assert (d.revision, d.paused, d.min_ready_seconds, d.replicas, d.selector) == (7, True, 10, 3, {"app": "nginx"})
    assert (d.generation, d.observed_generation, d.updated_replicas, d.ready_replicas, d.available_replicas) == (
        4,
        3,
        1,
        3,
        2,
    )
    assert d.condition("Progressing").reason == "DeploymentPaused"  # type: ignore[union-attr]
    # lastUpdateTime, not lastTransitionTime: a ProgressDeadlineExceeded counts from its last update
    assert d.condition("Progressing").last_update_time == 1795773605.0  # type: ignore[union-attr]
    assert d.resource_version == stored["metadata"]["resourceVersion"] and d.uid == "uid-deploy-nginx-app"


def test_replica_sets_are_the_ones_the_deployment_controls_in_revision_order(
    apiserver: FakeApiServer, kube: KubernetesAdapter
) -> None:
    # Given two revisions of the Deployment and a ReplicaSet of another Deployment with a matching selector
    d = k8s.deployment()
    apiserver.put("deployments", d, "apps")
    old_tpl = k8s.template([k8s.container(image="nginx:1.26")])
    apiserver.put("replicasets", k8s.replica_set(d, 2, "aaa222", replicas=3), "apps")
    apiserver.put("replicasets", k8s.replica_set(d, 1, "zzz111", old_tpl, replicas=0), "apps")
    stranger = k8s.replica_set(d, 9, "zzz999", owner_uid="uid-someone-else")
    stranger["metadata"]["name"] = "other-app-zzz999"
    apiserver.put("replicasets", stranger, "apps")
    # When its ReplicaSets are listed
    rss = kube.list_replica_sets(NS, "nginx-app")
    # Then only its own come back, oldest revision first, with hash, template and counts
    assert [(rs.revision, rs.pod_template_hash, rs.replicas) for rs in rss] == [(1, "zzz111", 0), (2, "aaa222", 3)]
    assert rss[0].template.containers[0].image == "nginx:1.26"
    assert rss[0].created_at < rss[1].created_at
    # and the list asked the server for the Deployment's selector
    assert apiserver.requests[-1].query["labelSelector"] == ["app=nginx"]


def test_replica_sets_of_a_selector_with_expressions(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Deployment selecting with matchExpressions as well as matchLabels
    d = k8s.deployment()
    d["spec"]["selector"]["matchExpressions"] = [{"key": "tier", "operator": "In", "values": ["web", "edge"]}]
    apiserver.put("deployments", d, "apps")
    rs = k8s.replica_set(d, 1, "aaa111")
    rs["metadata"]["labels"]["tier"] = "web"
    apiserver.put("replicasets", rs, "apps")
    # When its ReplicaSets are listed
    rss = kube.list_replica_sets(NS, "nginx-app")
    # Then the selector sent is the query form of both parts
    assert apiserver.requests[-1].query["labelSelector"] == ["app=nginx,tier in (web,edge)"]
    assert [r.name for r in rss] == ["nginx-app-aaa111"]


def test_pods_by_selector(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a gated new pod, a terminating old one, a crash-looping one without IP, and a pod of another app
    apiserver.put("pods", k8s.pod("new-1", gates=[k8s.LBC_GATE]))
    apiserver.put(
        "pods",
        k8s.pod(
            "old-1",
            ip="10.0.2.20",
            deleting=True,
            owner_rs="nginx-app-old",
            conditions=[{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        ),
    )
    apiserver.put(
        "pods",
        k8s.pod(
            "crashy",
            ip=None,
            phase="Pending",
            container_statuses=[
                {
                    "name": "nginx",
                    "ready": False,
                    "restartCount": 4,
                    "image": "x",
                    "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
                {
                    "name": "envoy",
                    "ready": True,
                    "restartCount": 1,
                    "image": "y",
                    "imageID": "",
                    "state": {"running": {}},
                },
            ],
        ),
    )
    apiserver.put("pods", k8s.pod("other", labels={"app": "other"}))
    # When pods are listed by the Deployment's selector
    pods = {p.name: p for p in kube.list_pods(NS, {"app": "nginx"})}
    # Then only matching pods come back, with what the gate logic reads
    assert sorted(pods) == ["crashy", "new-1", "old-1"]
    new, old, crashy = pods["new-1"], pods["old-1"], pods["crashy"]
    assert (new.ip, new.readiness_gates, new.containers_ready, new.ready) == ("10.0.1.10", (k8s.LBC_GATE,), True, False)
    # each condition with when its status last changed, in epoch seconds (2026-01-02T03:04:05Z), or None
    assert new.conditions[-1] == PodCondition("Ready", "False", "ReadinessGatesNotReady", "", 1_767_323_045.0)
    assert new.conditions[1].last_transition_time == 1_767_323_049.0
    assert all(c.last_transition_time is None for c in old.conditions)
    assert (new.owner_replica_set, new.terminating, new.phase) == ("nginx-app-abc123", False, "Running")
    assert (old.terminating, old.ready, old.owner_replica_set) == (True, True, "nginx-app-old")
    assert (crashy.ip, crashy.restart_count, crashy.waiting_reason, crashy.phase) == (
        None,
        5,
        "CrashLoopBackOff",
        "Pending",
    )
    assert new.created_at == 1_767_323_045.0  # 2026-01-02T03:04:05Z
    assert apiserver.requests[-1].query["labelSelector"] == ["app=nginx"]


def test_services(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a Service with a named target port, one defaulted, and a selector-less Service
    apiserver.put(
        "services",
        k8s.service(
            selector={"app": "nginx"},
            ports=[
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"},
            ],
        ),
    )
    apiserver.put("services", k8s.service("external", ports=[{"port": 443, "targetPort": 8443}]))
    # When Services are listed
    services = {s.name: s for s in kube.list_services(NS)}
    # Then selector and ports come back (targetPort defaults to port)
    assert services["nginx-svc"].selector == {"app": "nginx"}
    assert services["nginx-svc"].ports == (ServicePort(80, "web", "http"), ServicePort(9090, 9090, "metrics"))
    assert services["external"].selector == {} and services["external"].ports == (ServicePort(443, 8443, ""),)


def test_ingresses(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given the example app's ALB Ingress (class by field) and a legacy one (class by annotation) with a default
    # backend
    apiserver.put(
        "ingresses",
        k8s.ingress(
            ingressClassName="alb",
            annotations={"alb.ingress.kubernetes.io/target-type": "ip"},
            rules=[
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "nginx-svc", "port": {"number": 80}}},
                            },
                            {
                                "path": "/api",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "api", "port": {"name": "http"}}},
                            },
                            {
                                "path": "/again",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "nginx-svc", "port": {"number": 80}}},
                            },
                            {
                                "path": "/static",
                                "pathType": "Prefix",
                                "backend": {
                                    "resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "static"}
                                },
                            },
                        ]
                    }
                }
            ],
        ),
        "networking.k8s.io",
    )
    apiserver.put(
        "ingresses",
        k8s.ingress(
            "legacy",
            annotations={"kubernetes.io/ingress.class": "alb"},
            defaultBackend={"service": {"name": "fallback", "port": {"number": 8080}}},
        ),
        "networking.k8s.io",
    )
    # When Ingresses are listed
    ingresses = {i.name: i for i in kube.list_ingresses(NS)}
    # Then class, annotations and the Service backends (each once, in order) come back
    seed = ingresses["nginx-ingress"]
    assert seed.ingress_class == "alb" and seed.annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert seed.backends == (IngressBackend("nginx-svc", 80), IngressBackend("api", "http"))
    assert ingresses["legacy"].ingress_class == "alb"
    assert ingresses["legacy"].backends == (IngressBackend("fallback", 8080),)


def test_target_group_bindings_come_from_the_crd(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a TargetGroupBinding made by the controller for the example app's Service
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s-readines-nginxsvc/0123456789abcdef"
    apiserver.put(
        "targetgroupbindings",
        k8s.target_group_binding(targetGroupARN=arn, targetType="ip", serviceRef={"name": "nginx-svc", "port": 80}),
        "elbv2.k8s.aws",
    )
    # When bindings are listed
    bindings = kube.list_target_group_bindings(NS)
    # Then they are read from elbv2.k8s.aws/v1beta1 targetgroupbindings
    assert bindings == [TargetGroupBinding(NS, "k8s-readines-nginxsvc-0123456789", arn, "ip", "nginx-svc", 80)]
    assert apiserver.requests[-1].path == f"/apis/elbv2.k8s.aws/v1beta1/namespaces/{NS}/targetgroupbindings"


def test_a_bindings_checkpoint_annotation_is_read_as_the_controller_wrote_it(apiserver: FakeApiServer,
                                                                             kube: KubernetesAdapter) -> None:
    # Given a binding the controller has reconciled (its checkpoint and timestamp annotations) and one it has not
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s-readines-nginxsvc/0123456789abcdef"
    done = k8s.target_group_binding(targetGroupARN=arn, targetType="ip", serviceRef={"name": "nginx-svc", "port": 80})
    done["metadata"]["annotations"] = {"elbv2.k8s.aws/checkpoint": "wc742sJEKaWzavy-jbpJO78b_r5N5xp1oXhWKPaWaSI/spec",
                                       "elbv2.k8s.aws/checkpoint-timestamp": "1767225601"}
    apiserver.put("targetgroupbindings", done, "elbv2.k8s.aws")
    apiserver.put("targetgroupbindings", k8s.target_group_binding(
        name="fresh", targetGroupARN=arn, targetType="ip", serviceRef={"name": "nginx-svc", "port": 80}),
        "elbv2.k8s.aws")
    # When bindings are listed / Then the checkpoint is kept whole, and "" where there is none
    got = {b.name: b.checkpoint for b in kube.list_target_group_bindings(NS)}
    assert got == {"k8s-readines-nginxsvc-0123456789": "wc742sJEKaWzavy-jbpJO78b_r5N5xp1oXhWKPaWaSI/spec", "fresh": ""}


def test_missing_crd_says_to_install_the_controller(apiserver: FakeApiServer, kube: KubernetesAdapter) -> None:
    # Given a cluster without the Load Balancer Controller's CRDs
    apiserver.crds_installed = False
    # When bindings are listed / Then NotFoundError says what to install
    with pytest.raises(NotFoundError, match="install the AWS Load Balancer Controller"):
        kube.list_target_group_bindings(NS)


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.get_namespace("nope"),
        lambda k: k.get_deployment(NS, "nope"),
        lambda k: k.list_replica_sets(NS, "nope"),
    ],
    ids=["namespace", "deployment", "replica-sets-of-missing-deployment"],
)
def test_missing_objects_are_not_found(kube: KubernetesAdapter, call: Any) -> None:
    # Given an empty cluster / When a named object is read / Then NotFoundError quotes the server's message
    with pytest.raises(NotFoundError, match='"nope" not found'):
        call(kube)
