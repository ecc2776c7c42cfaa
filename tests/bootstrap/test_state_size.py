"""The bootstrap's states stay under Step Functions' 256 KB per state: the largest bootstrap albgate accepts, run.

Given a cluster with the most applications albgate takes (``MAX_APPLICATIONS_PER_CLUSTER``): half of them new,
with manifests that fill the request up to ``MAX_REQUEST_BYTES``, half already running with pods born before
the label (each then restarted through the gates), when the bootstrap runs through the real handlers in the
state machine's order on the simulated cluster, then every state a step hands to the next, the one the restart
Map leaves for the report included, is within ``STATE_PAYLOAD_BUDGET_BYTES`` (7/8 of the limit). A request
over the limits is refused by Validate Input, naming the limit, before anything changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from albgate.sim import Simulation
from albgate.sim.bootstrap_ports import SimBootstrapKubernetes, SimHelm
from lambdas.domain.bootstrap import CHANGE_LOG_MAX_BYTES, HARDENING_MAX_BYTES, MAX_REQUEST_BYTES, validate_input
from lambdas.domain.errors import InvalidInputError, ThrottledError
from lambdas.domain.limits import MAX_APPLICATIONS_PER_CLUSTER, STATE_PAYLOAD_BUDGET_BYTES, payload_bytes
from lambdas.domain.ports import Ports
from lambdas.handlers import (
    bootstrap_apply_workloads,
    bootstrap_check_bindings,
    bootstrap_check_controller,
    bootstrap_check_network,
    bootstrap_find_ungated_pods,
    bootstrap_install_controller,
    bootstrap_label_namespaces,
    bootstrap_validate,
    preflight_report,
)
from lambdas.handlers._runtime import use_ports
from lambdas.handlers.bootstrap_check_network import use_network
from lambdas.handlers.bootstrap_common import use_helm
from tests.bootstrap.conftest import CLUSTER, deployment, ingress, service, world
from tests.bootstrap.test_check_network import FULL_NETWORK, AllReachable

# The longest controller settings a deployment hands Validate Input: every field set, at the lengths the config
# allows in practice (an ECR mirror with a nested path, an image mirror, an IRSA role with a path).
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
LARGEST_DEPLOYED = {CLUSTER: {
    "region": "us-east-1", "vpc_id": "vpc-0123456789abcdef0", "chart_version": "3.5.0",
    "chart_repository": f"oci://{ECR}/platform/mirrors/kubernetes-sigs/charts",
    "image_repository": f"{ECR}/platform/mirrors/eks/aws-load-balancer-controller",
    "role_arn": "arn:aws:iam::123456789012:role/platform/eks/clusters/aws-load-balancer-controller-sim-cluster",
}}

NEW = MAX_APPLICATIONS_PER_CLUSTER // 2
RUNNING = MAX_APPLICATIONS_PER_CLUSTER - NEW


@pytest.fixture(autouse=True, scope="module")
def _quiet_powertools():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        mp.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        mp.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
        yield


def names(i: int) -> tuple[str, str]:
    """(namespace, deployment) of application i: as long as Kubernetes names usually get."""
    return f"team-{i:02d}-storefront-checkout-services", f"checkout-api-{i:02d}-payments-gateway"


def manifests(i: int, padding: int) -> dict[str, Any]:
    ns, name = names(i)
    dep = deployment(name, labels={"app": name})
    dep["metadata"]["annotations"] = {"example.com/notes": "n" * padding}  # what real manifests carry more of
    return {"deployment": dep, "service": service(name, selector={"app": name}),
            "ingress": ingress(name, backend=name, annotations={
                "alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/target-type": "ip"})}


def largest_request(padding: int | None = None) -> dict[str, Any]:
    """NEW applications with manifests, RUNNING without; the manifests padded to just under MAX_REQUEST_BYTES."""
    def build(pad: int) -> dict[str, Any]:
        apps = [{"namespace": names(i)[0], "deployment": names(i)[1], "container": names(i)[1],
                 "manifests": manifests(i, pad)} for i in range(NEW)]
        apps += [{"namespace": names(i)[0], "deployment": names(i)[1], "container": names(i)[1]}
                 for i in range(NEW, MAX_APPLICATIONS_PER_CLUSTER)]
        return {"cluster": CLUSTER, "controller": {"region": "us-east-1"}, "applications": apps}

    if padding is not None:
        return build(padding)
    bare = payload_bytes(validate_input(build(0), "x", 0.0, LARGEST_DEPLOYED)["request"])
    return build((MAX_REQUEST_BYTES - bare - 512) // NEW)


@pytest.fixture
def crowded() -> Iterator[tuple[Simulation, SimBootstrapKubernetes, SimHelm]]:
    """A cluster whose RUNNING applications already serve behind the controller, their pods without gates
    (their namespaces are not labelled yet)."""
    sim, kube, helm = world()
    for i in range(NEW, MAX_APPLICATIONS_PER_CLUSTER):
        ns, name = names(i)
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for manifest in manifests(i, 0).values():
            manifest["metadata"]["namespace"] = ns
            kube.apply(manifest)
    sim.advance(60)  # their pods start, and the controller binds their Services
    use_ports(lambda cluster: Ports(kube=kube, elb=sim.elb, clock=sim.clock))
    use_helm(lambda cluster: helm)
    yield sim, kube, helm
    use_ports(None)
    use_helm(None)


def until(sim: Simulation, step: Any, state: dict, key: str, sizes: list[int]) -> dict:
    for _ in range(300):
        state = step(state, None)
        sizes.append(payload_bytes(state))
        if state[key]["status"] != "WAITING":
            assert state[key]["status"] == "PASSED", state[key]
            return state
        sim.advance(state["wait_seconds"])
    raise AssertionError(f"{key} never decided")


class PatientElb:
    """The simulated ELB, each Describe* call retried a second later while throttled: the report reads every
    application's target groups in one invocation, more calls than the account's bucket holds at once."""

    def __init__(self, sim: Simulation) -> None:
        self.sim, self.elb = sim, sim.elb

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.elb, name)

        def patient(*args: Any) -> Any:
            while True:
                try:
                    return method(*args)
                except ThrottledError:
                    self.sim.advance(1)

        return patient


def test_the_largest_bootstrap_keeps_every_state_within_the_budget(crowded, monkeypatch):
    sim, _, _ = crowded
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # Lambda sets it; the network check asks the Region's endpoints
    request = largest_request()
    # Given the largest request albgate takes
    validated = validate_input(request, "x", 0.0, LARGEST_DEPLOYED)["request"]
    assert MAX_REQUEST_BYTES - 2048 < payload_bytes(validated) <= MAX_REQUEST_BYTES
    sizes: list[int] = []
    # When the bootstrap runs step by step, as the state machine does, in a VPC that reaches everything
    state = bootstrap_validate.handler({"request": request, "execution_name": "largest",
                                        "controller_defaults": LARGEST_DEPLOYED}, None)
    sizes.append(payload_bytes(state))
    use_network(lambda region: AllReachable())
    try:
        state = bootstrap_check_network.handler({"state": state, "network": FULL_NETWORK}, None)
    finally:
        use_network(None)
    sizes.append(payload_bytes(state))
    state = bootstrap_install_controller.handler(state, None)
    sizes.append(payload_bytes(state))
    state = until(sim, bootstrap_check_controller.handler, state, "controller", sizes)
    state = bootstrap_label_namespaces.handler(state, None)
    sizes.append(payload_bytes(state))
    state = bootstrap_apply_workloads.handler({"phase": "services", "state": state}, None)
    sizes.append(payload_bytes(state))
    state = until(sim, bootstrap_check_bindings.handler, state, "bindings", sizes)
    state = bootstrap_apply_workloads.handler({"phase": "deployments", "state": state}, None)
    sizes.append(payload_bytes(state))
    state = until(sim, bootstrap_find_ungated_pods.handler, state, "settle", sizes)
    # Then every running application's pods were born before the label: each is restarted through the gates
    assert len(state["restarts"]) == RUNNING
    # And the Map leaves one result per restart (what startExecution.sync's result_selector keeps) for the report
    state["restart_results"] = [
        {"status": "SUCCEEDED", "execution": "arn:aws:states:us-east-1:123456789012:execution:"
         f"RolloutStateMachine0123456789AB-abcdefghijkl:{'0' * 8}-{'0' * 4}-{'0' * 4}-{'0' * 4}-{'0' * 12}"}
        for _ in state["restarts"]]
    sizes.append(payload_bytes(state))
    kube = crowded[1]
    use_ports(lambda cluster: Ports(kube=kube, elb=PatientElb(sim), clock=sim.clock))
    state = preflight_report.handler(state, None)
    sizes.append(payload_bytes(state))
    # Then no state is over the budget, the last (the report's) included
    assert max(sizes) <= STATE_PAYLOAD_BUDGET_BYTES, sizes
    # And what grows with the applications stayed within its own budget
    assert payload_bytes(state["changes"]) <= CHANGE_LOG_MAX_BYTES
    assert payload_bytes(state["hardening"]) <= HARDENING_MAX_BYTES + 64 * MAX_APPLICATIONS_PER_CLUSTER
    assert all(len(s["pods"]) <= 3 and s["pod_count"] == 3 for s in state["stale_pods"])
    listed = len(state["changes"]) + state.get("changes_not_listed", 0)
    assert listed >= MAX_APPLICATIONS_PER_CLUSTER + 3 * NEW  # every change counted, listed or not


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(lambda r: r["applications"].append({**r["applications"][-1], "deployment": "one-more"}),
                     f"applications: List should have at most {MAX_APPLICATIONS_PER_CLUSTER} items",
                     id="one-application-too-many"),
        pytest.param(lambda r: r["applications"][0]["manifests"]["deployment"]["metadata"]["annotations"].update(
            more="m" * 4096), f"albgate takes at most {MAX_REQUEST_BYTES // 1024} KiB", id="request-over-the-limit"),
        pytest.param(lambda r: r.update(namespaces=[f"extra-{i}" for i in range(MAX_APPLICATIONS_PER_CLUSTER + 1)]),
                     "namespaces: List should have at most", id="too-many-namespaces"),
    ],
)
def test_a_request_over_the_limits_is_refused_before_anything_changes(change, named):
    # Given the largest request albgate takes, made larger in one way
    request = json.loads(json.dumps(largest_request()))
    change(request)
    # When Validate Input reads it / Then it refuses, naming the field or the limit (Bootstrap Refused)
    with pytest.raises(InvalidInputError) as exc:
        validate_input(request, "too-large", 0.0)
    assert named in str(exc.value)
