"""Builders of Kubernetes objects as the API server serializes them (camelCase JSON), for the fake API server.

Each builder returns a complete, valid object with the fields the real server fills in; keyword arguments
override the parts a test is about.
"""

from __future__ import annotations

import copy
from typing import Any

LBC_GATE = "target-health.elbv2.k8s.aws/k8s-readines-nginxsvc-0123456789"


def container(name: str = "nginx", image: str = "nginx:1.27", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5},
        "resources": {},
        "imagePullPolicy": "IfNotPresent",
    }
    c.update(extra)
    return c


def template(
    containers: list[dict[str, Any]] | None = None,
    gates: list[str] | None = None,
    labels: dict[str, str] | None = None,
    grace: int | None = 30,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers or [container()], "restartPolicy": "Always"}
    if gates is not None:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    meta: dict[str, Any] = {"labels": labels or {"app": "nginx"}}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": spec}


def deployment(
    name: str = "nginx-app",
    namespace: str = "readiness",
    replicas: int = 3,
    tpl: dict[str, Any] | None = None,
    revision: int = 2,
    strategy: dict[str, Any] | None = None,
    paused: bool = False,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": tpl or template(),
        "strategy": strategy
        or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-deploy-{name}",
            "generation": 4,
            "annotations": {"deployment.kubernetes.io/revision": str(revision), **(annotations or {})},
        },
        "spec": spec,
        "status": status
        or {
            "observedGeneration": 4,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "done"},
            ],
        },
    }


def replica_set(
    deploy: dict[str, Any],
    revision: int,
    pod_hash: str,
    tpl: dict[str, Any] | None = None,
    replicas: int = 0,
    annotations: dict[str, str] | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    t = copy.deepcopy(tpl or deploy["spec"]["template"])
    t["metadata"].setdefault("labels", {})["pod-template-hash"] = pod_hash
    name = deploy["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": deploy["metadata"]["namespace"],
            "labels": dict(t["metadata"]["labels"]),
            "annotations": {
                "deployment.kubernetes.io/revision": str(revision),
                "deployment.kubernetes.io/desired-replicas": str(deploy["spec"]["replicas"]),
                "deployment.kubernetes.io/max-replicas": str(deploy["spec"]["replicas"] + 1),
                **(annotations or {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": owner_uid or deploy["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "creationTimestamp": f"2026-01-0{revision}T00:00:00Z",
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**deploy["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}},
            "template": t,
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def pod(
    name: str,
    namespace: str = "readiness",
    ip: str | None = "10.0.1.10",
    labels: dict[str, str] | None = None,
    gates: list[str] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    owner_rs: str | None = "nginx-app-abc123",
    phase: str = "Running",
    deleting: bool = False,
    container_statuses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-pod-{name}",
        "labels": labels or {"app": "nginx", "pod-template-hash": "abc123"},
        "creationTimestamp": "2026-01-02T03:04:05Z",
    }
    if owner_rs:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner_rs,
                "uid": f"uid-rs-{owner_rs}",
                "controller": True,
            }
        ]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:10:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    spec: dict[str, Any] = {"containers": [container()]}
    if gates is not None:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        if conditions is not None
        else [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-02T03:04:09Z"},
            {
                "type": "Ready",
                "status": "False",
                "reason": "ReadinessGatesNotReady",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            },
        ],
        "containerStatuses": container_statuses
        if container_statuses is not None
        else [
            {
                "name": "nginx",
                "ready": True,
                "restartCount": 0,
                "image": "nginx:1.27",
                "imageID": "",
                "state": {"running": {"startedAt": "2026-01-02T03:04:08Z"}},
            }
        ],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def namespace(name: str = "readiness", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def service(name: str = "nginx-svc", namespace: str = "readiness", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterIP", "clusterIP": "172.20.1.1", **spec},
    }


def ingress(name: str = "nginx-ingress", namespace: str = "readiness", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if "annotations" in spec:
        meta["annotations"] = spec.pop("annotations")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def target_group_binding(
    name: str = "k8s-readines-nginxsvc-0123456789", namespace: str = "readiness", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
