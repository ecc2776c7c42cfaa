"""The synthesized bootstrap state machine itself (not the handlers called in order by a test) executed by moto's
Step Functions interpreter (``albgate.sfn_local``), every Lambda task dispatched to the real handler, against the
simulated cluster: from a cluster without the controller to the example app serving, then a re-run that changes
nothing. Waits advance the simulation's virtual clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from albgate.sim.albgate_strategy import LAMBDA_SECONDS, SimClock
from albgate.sfn_local.extract import extract_state_machine
from albgate.sfn_local.runner import ExecutionResult, LocalStateMachine
from albgate.sim import Simulation
from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, state_machine_id, synthesized_template
from lambdas.domain.ports import INJECT_LABEL, LBC_GATE_PREFIX
from tests.bootstrap.test_end_to_end_sim import (  # noqa: F401  (the module's fixtures: quiet Powertools, a world)
    FIRST_RUN_CHANGES,
    NAMESPACE,
    SEED_INPUT,
    _quiet_powertools,
    cluster,
)


def run_synthesized(sim: Simulation, request: dict[str, Any], name: str) -> ExecutionResult:
    """Run the deployed bootstrap with ``request`` aimed at the example config's cluster (the state machine only
    takes configured clusters; the simulated ports serve any name)."""
    template = synthesized_template()
    request = {**request, "cluster": EXAMPLE_CLUSTER}
    extracted = extract_state_machine(template, state_machine_id(template, BOOTSTRAP_STATE_MACHINE_PREFIX))

    def invoke(logical_id: str, handler: str, event: Any) -> Any:
        sim.advance(LAMBDA_SECONDS)
        return machine.invoke_handler(logical_id, handler, event)

    with LocalStateMachine(extracted, SimClock(sim), invoke=invoke) as machine:
        return machine.run(request, name=name)


EXAMPLE_CLUSTER = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]["albgate"][
    "clusters"][0]["name"]
ORDER = [
    "Validate Input", "Check Network", "Install Controller", "Controller Working: Yes",
    "Label Namespaces For Readiness Gates",
    "Apply Services And Ingresses", "Bound And Injecting: Yes", "Apply Deployments", "Deployments Settled: Yes",
    "Restart Pods Born Before The Label", "Preflight Report", "Bootstrap Succeeded",
]


def test_the_synthesized_bootstrap_installs_labels_applies_and_reruns_as_a_no_op(cluster, caplog) -> None:
    sim, kube, helm = cluster
    # Given a cluster without the controller and no namespace `shop`
    assert NAMESPACE not in sim.cluster.namespaces
    # When the deployed bootstrap state machine runs
    first = run_synthesized(sim, SEED_INPUT, "boot-1")
    # Then it succeeds through its states in order, waiting (in virtual time) for the controller to work, the
    # bindings to exist before any pod is created, and the Deployment to settle
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    names = list(first.visited)
    assert [n for n in names if n in ORDER] == ORDER
    assert {"Wait For Controller", "Wait For Bindings", "Wait For Deployments"} <= set(names)
    out = first.output or {}
    assert [(c["change"], c["object"]) for c in out["changes"]] == FIRST_RUN_CHANGES
    assert kube.get_namespace(NAMESPACE).labels[INJECT_LABEL] == "enabled"
    [binding] = kube.list_target_group_bindings(NAMESPACE)
    pods = kube.list_pods(NAMESPACE, {"app": "nginx"})
    assert len(pods) == 3 and all(p.ready and LBC_GATE_PREFIX + binding.name in p.readiness_gates for p in pods)
    assert out["report"]["ok"], out["report"]
    # And the app serves through the ALB
    tg = sim.alb.target_group(binding.target_group_arn)
    assert sorted(t.state for t in tg.targets.values()) == ["healthy"] * 3
    # And every change was logged by the Lambda that made it, one line each
    logged = [r.getMessage() for r in caplog.records]
    assert "Install Controller: install helm release kube-system/aws-load-balancer-controller" in logged
    assert "Apply Workloads: created Deployment/shop/nginx-app" in logged

    # When it runs again / Then nothing changes: no helm run, no apply that changed anything
    second = run_synthesized(sim, SEED_INPUT, "boot-2")
    assert second.status == "SUCCEEDED", (second.error, second.cause)
    assert (second.output or {})["changes"] == [] and len(helm.runs) == 1


def test_a_bad_request_fails_the_execution_before_anything_is_touched(cluster) -> None:
    sim, kube, helm = cluster
    bad = {**SEED_INPUT, "applications": [{**SEED_INPUT["applications"][0], "namespace": "kube-system"}]}
    result = run_synthesized(sim, bad, "boot-bad")
    assert result.status == "FAILED" and "kube-system" in (result.cause or "")
    assert helm.runs == [] and NAMESPACE not in sim.cluster.namespaces and kube.applied == []


def test_an_input_that_picks_the_chart_is_refused_before_anything_is_touched(cluster) -> None:
    sim, kube, helm = cluster
    # Given an input that names its own chart repository (what runs with cluster-admin rights)
    bad = {**SEED_INPUT, "controller": {**SEED_INPUT["controller"], "chart_repository": "oci://evil.example/charts"}}
    # When the deployed bootstrap runs / Then Validate Input refuses it, naming the config field, and nothing ran
    result = run_synthesized(sim, bad, "boot-chart")
    assert result.status == "FAILED" and result.error == "InvalidInputError"
    assert "clusters[].controller.chart_repository" in (result.cause or "")
    assert list(result.visited)[-1] == "Bootstrap Refused" and helm.runs == [] and kube.applied == []


def test_a_cluster_the_stack_was_not_deployed_for_is_refused(cluster) -> None:
    sim, kube, helm = cluster
    template = synthesized_template()
    extracted = extract_state_machine(template, state_machine_id(template, BOOTSTRAP_STATE_MACHINE_PREFIX))
    with LocalStateMachine(extracted, SimClock(sim), invoke=lambda logical_id, handler, event: machine.invoke_handler(
            logical_id, handler, event)) as machine:
        result = machine.run({**SEED_INPUT, "cluster": "not-configured"}, name="boot-other")
    assert result.status == "FAILED" and "'not-configured' is not a cluster of this deployment" in (result.cause or "")
    assert helm.runs == [] and kube.applied == []
