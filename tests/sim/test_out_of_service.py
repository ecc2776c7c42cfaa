"""A pod taken out of its Service by its serving label (albgate.io/serving, docs/rollout.md, "Out of service before
release"), in the simulated cluster: out of the Service's endpoints, deregistered by the controller while it keeps
running, first to go when its ReplicaSet scales down, and back in when the label says so again."""

from __future__ import annotations

import pytest

from albgate.sim.ports import SimKubernetes
from lambdas.domain.errors import NotFoundError
from lambdas.domain.ports import SERVING_LABEL
from lambdas.domain.rollout.checkpoint import reconciled
from tests.sim.conftest import scenario, started

SERVED = {"app": {"pod_labels": {SERVING_LABEL: "true"}},
          "service": {"selector": {"app": "nginx", SERVING_LABEL: "true"}},
          "namespace": {"inject_label": "before_pods"}}


def _group(sim):
    return next(iter(sim.alb.tgs.values()))


def _state(sim, ip):
    t = _group(sim).targets.get(ip)
    return t.state if t else "gone"


def test_a_pod_out_of_service_leaves_the_endpoints_and_the_pool_and_keeps_running():
    sim = started(scenario(**SERVED), seed=2)
    kube = SimKubernetes(sim)
    ns = sim.deployment().namespace
    pod = sorted(sim.cluster.service_pods(next(iter(sim.cluster.services.values()))), key=lambda p: p.name)[0]
    assert _state(sim, pod.ip) == "healthy"
    # When albgate takes it out of service
    kube.set_pod_serving(ns, pod.name, False)
    # Then the Service selects it no more, and the controller deregisters its target within a reconcile or two
    assert pod not in sim.cluster.service_pods(next(iter(sim.cluster.services.values())))
    sim.advance(5.0)
    assert _state(sim, pod.ip) in ("draining", "gone")
    # while the pod itself runs on, Ready, and serves what it has
    assert pod.ready and not pod.terminating and pod.serving
    # and the controller's checkpoint is the digest of the endpoints without it
    b = kube.list_target_group_bindings(ns)[0]
    svc = next(s for s in kube.list_services(ns) if s.name == b.service_name)
    assert reconciled(b, kube.list_pods(ns, svc.selector), _group(sim).port)


def test_the_replica_set_removes_the_pod_out_of_service_first_and_a_pod_put_back_serves_again():
    sim = started(scenario(**SERVED), seed=2)
    kube = SimKubernetes(sim)
    d = sim.deployment()
    pods = [p for p in sim.cluster.all_pods if not p.terminating]
    # Given pods alike in every rank the ReplicaSet has before the deletion cost (the first would go), the first
    # out of service and put back, the last out of service
    kube.set_pod_serving(d.namespace, pods[0].name, False)
    kube.set_pod_serving(d.namespace, pods[-1].name, False)
    kube.set_pod_serving(d.namespace, pods[0].name, True)
    sim.advance(5.0)
    assert _state(sim, pods[0].ip) == "healthy" and _state(sim, pods[-1].ip) in ("draining", "gone")
    # When the Deployment is scaled down by one
    rs = pods[0].rs
    rs.spec -= 1
    sim.cluster._sync_rs(rs)
    # Then the pod out of service is the one deleted (its deletion cost is the lowest), whatever else ranks it
    assert [p.name for p in pods if p.terminating] == [pods[-1].name]


def test_taking_a_gone_pod_out_of_service_says_so():
    sim = started(scenario(**SERVED), seed=2)
    with pytest.raises(NotFoundError):
        SimKubernetes(sim).set_pod_serving(sim.deployment().namespace, "no-such-pod", False)
