"""The simulation implements albgate's ports: same methods, same snapshots, same domain errors."""

from __future__ import annotations

import inspect

import pytest

from lambdas.domain import ports as P
from lambdas.domain.errors import ConflictError, InvalidInputError, KubernetesUnavailableError, NotFoundError
from albgate.sim.engine import EPOCH
from albgate.sim.ports import KUBE_METHODS, SimElb, SimKubernetes
from tests.sim.conftest import scenario, started


def _public(proto) -> dict[str, inspect.Signature]:
    return {n: inspect.signature(f) for n, f in vars(proto).items() if callable(f) and not n.startswith("_")}


@pytest.mark.parametrize("proto,impl", [(P.KubernetesPort, SimKubernetes), (P.ElbPort, SimElb)],
                         ids=["kubernetes", "elb"])
def test_every_port_method_is_implemented_with_the_same_parameters(proto, impl):
    for name, sig in _public(proto).items():
        assert hasattr(impl, name), name
        assert list(inspect.signature(getattr(impl, name)).parameters) == list(sig.parameters), name


def test_kube_methods_list_matches_the_port():
    assert set(KUBE_METHODS) == set(_public(P.KubernetesPort))


def test_reads_return_the_ports_snapshots():
    sim = started(scenario())
    k = sim.kube
    assert isinstance(k.get_namespace("readiness"), P.Namespace)
    d = k.get_deployment("readiness", "nginx-app")
    assert isinstance(d, P.Deployment) and (d.replicas, d.revision, d.available_replicas) == (3, 1, 3)
    assert d.max_surge == "25%" and d.condition("Available").status == "True"
    pods = k.list_pods("readiness", d.selector)
    assert len(pods) == 3 and all(isinstance(p, P.Pod) and p.ready and p.ip for p in pods)
    rs = k.list_replica_sets("readiness", "nginx-app")
    assert [r.revision for r in rs] == [1] and all(p.labels["pod-template-hash"] == rs[0].pod_template_hash for p in pods)
    assert [s.name for s in k.list_services("readiness")] == ["nginx-svc"]
    ing = k.list_ingresses("readiness")[0]
    assert ing.ingress_class == "alb" and ing.backends[0].service_name == "nginx-svc"
    assert sim.clock.now() == EPOCH + 30
    assert isinstance(sim.ports, P.Ports)
    assert k.calls["list_pods"] == 1


def test_any_condition_type_can_be_set_but_not_the_kubelets():
    sim = started(scenario())
    pod = sim.kube.list_pods("readiness", {"app": "nginx"})[0]
    sim.kube.set_pod_condition("readiness", pod.name, "example.com/anything", "True", "Why", "msg")
    assert sim.kube.list_pods("readiness", {"app": "nginx"})[0].condition("example.com/anything") == "True"
    with pytest.raises(InvalidInputError):
        sim.kube.set_pod_condition("readiness", pod.name, "Ready", "True", "", "")
    with pytest.raises(NotFoundError):
        sim.kube.set_pod_condition("readiness", "no-such-pod", P.ALBGATE_GATE, "True", "", "")


NOT_FOUND = [
    ("namespace", lambda k: k.get_namespace("nope")),
    ("deployment", lambda k: k.get_deployment("readiness", "nope")),
    ("container", lambda k: k.patch_deployment("readiness", "nginx-app", P.DeploymentPatch(images={"nope": "a:b"}))),
    ("bindings-namespace", lambda k: k.list_target_group_bindings("nope")),
]


@pytest.mark.parametrize("case,call", NOT_FOUND, ids=[n[0] for n in NOT_FOUND])
def test_missing_objects_raise_not_found(case, call):
    with pytest.raises(NotFoundError):
        call(started(scenario()).kube)


FAULTS = [
    ("conflict-on-patch", "conflict", ["patch_deployment"], "patch_deployment", ConflictError),
    ("unavailable-on-status", "unavailable", ["set_pod_condition"], "set_pod_condition", KubernetesUnavailableError),
    ("unavailable-everything", "unavailable", None, "get_deployment", KubernetesUnavailableError),
]


@pytest.mark.parametrize("case,error,methods,method,exc", FAULTS, ids=[f[0] for f in FAULTS])
def test_injected_api_errors_raise_the_domain_errors_only_in_their_window(case, error, methods, method, exc):
    sim = started(scenario(faults={"kube_api_errors": [
        {"at_seconds": 0, "duration_seconds": 60, "error": error, "methods": methods}]}))
    calls = {
        "patch_deployment": lambda: sim.kube.patch_deployment("readiness", "nginx-app", P.DeploymentPatch(max_surge=1)),
        "set_pod_condition": lambda: sim.kube.set_pod_condition(
            "readiness", next(iter(sim.cluster.pods.values())).name, P.ALBGATE_GATE, "True", "", ""),
        "get_deployment": lambda: sim.kube.get_deployment("readiness", "nginx-app"),
    }
    with pytest.raises(exc):
        calls[method]()
    if methods:  # other methods are untouched
        sim.kube.list_services("readiness")
    sim.advance(61)
    calls[method]()  # after the window it works
    assert sim.kube.errors[method] == 1
