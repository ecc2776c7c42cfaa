"""Fixtures for the bootstrap tests: manifests built in code, simulated worlds, and a driver that runs the
bootstrap's use cases in the state machine's order on the simulated cluster, advancing virtual time while a
check answers WAITING (what the Wait states do)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from albgate.sim import Simulation, parse_scenario
from albgate.sim.bootstrap_ports import SimBootstrapKubernetes, SimController, SimHelm, bootstrap_ports

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

CLUSTER = "sim-cluster"  # the scenario default's cluster name
IMAGE = "ikubernetes/myapp:v1"
# What a deployment hands Validate Input for the simulated cluster (its ``controller_defaults``): the controller
# settings fixed at deploy time, here the pinned eks-charts chart (the simulated helm installs anything).
DEPLOYED = {CLUSTER: {"region": "us-east-1", "chart_repository": "https://aws.github.io/eks-charts",
                      "chart_version": "3.5.0"}}


def deployment(name: str = "web", *, replicas: int = 3, labels: dict[str, str] | None = None, **spec: Any) -> dict:
    labels = labels or {"app": name}
    pod: dict[str, Any] = {"containers": [{"name": name, "image": IMAGE}]}
    pod.update(spec.pop("pod", {}))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}, **spec},
    }


def service(name: str = "web", *, selector: dict[str, str] | None = None, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector or {"app": name}, "ports": [{"port": port, "targetPort": 80}]}}


def ingress(name: str = "web", *, backend: str = "web", port: int | str = 80,
            annotations: dict[str, str] | None = None) -> dict:
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": dict(annotations if annotations is not None
                                                       else {"alb.ingress.kubernetes.io/target-type": "ip"})},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": backend, "port": port_ref}}}]}}]},
    }


def app_request(namespace: str = "shop", name: str = "web", **request: Any) -> dict:
    """A bootstrap input with one application and its three manifests."""
    return {
        "cluster": CLUSTER,
        "applications": [{"namespace": namespace, "deployment": name, "container": name,
                          "manifests": {"deployment": deployment(name), "service": service(name),
                                        "ingress": ingress(name, backend=name)}}],
        **request,
    }


def world(lbc: SimController | None = None, /, **sections: Any) -> tuple[Simulation, SimBootstrapKubernetes, SimHelm]:
    """The example app (scenario defaults, namespace `readiness` unlabelled) at its steady state, no traffic."""
    sc = parse_scenario({"name": "bootstrap", "traffic": {"rate_per_second": 0}, **sections})
    sim = Simulation(sc)
    sim.run_until(sim.rollout_start)
    kube, helm = bootstrap_ports(sim, controller=lbc)
    return sim, kube, helm


def until_decided(sim: Simulation, step: Callable[[dict], dict], state: dict, key: str, max_polls: int = 300) -> dict:
    """Run a check until it is not WAITING, sleeping ``wait_seconds`` of virtual time between checks."""
    for _ in range(max_polls):
        state = step(state)
        if state[key]["status"] != "WAITING":
            return state
        sim.advance(state["wait_seconds"])
    raise AssertionError(f"{key} still WAITING after {max_polls} polls: {state[key]}")


@pytest.fixture
def fresh() -> Iterator[tuple[Simulation, SimBootstrapKubernetes, SimHelm]]:
    """A cluster with no controller installed (the e2e start)."""
    yield world(SimController(installed=False))


def clone(obj: Any) -> Any:
    return copy.deepcopy(obj)
