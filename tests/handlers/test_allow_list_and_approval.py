"""The handlers' own guards: what they may touch (the allow-list) and what they never log (the approval token).

Allow-list: with ``ALBGATE_ALLOW_LIST`` naming a list (as every deployed function has it), an event that names an
unconfigured cluster, namespace or Deployment is refused with a permanent ``InvalidInputError`` before the handler
makes a single call to the cluster; without a list, the real ports are never built (fail closed). The cluster is
the simulated one, behind a port that counts every call made to it.

Approval: the task token never reaches a log line or the function's answer, at any log level, even with
Powertools' event logging switched on in the environment; the request says where the token is read instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from albgate.sim import Simulation, load_scenario
from albgate.sim.strategies import bootstrap_hardened
from lambdas.domain.allow_list import ALLOW_LIST_ENV
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.ports import Ports
from lambdas.handlers import (
    _runtime,
    bootstrap_validate,
    gate_keeper,
    preflight,
    preflight_report,
    request_approval,
    start_step,
)
from lambdas.handlers._observability import logger

SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAb1SecretApprovalTokenThatMustNeverBeLogged0123456789"


class CountingKube:
    """The simulated cluster's port, counting every call made to it."""

    def __init__(self, kube: Any) -> None:
        self._kube, self.calls = kube, []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._kube, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return target(*args, **kwargs)

        return call


@pytest.fixture()
def sim():
    s = Simulation(bootstrap_hardened(load_scenario(SEED_APP)))
    s.run_until(s.rollout_start)
    s.counting = CountingKube(s.kube)
    _runtime.use_ports(lambda cluster: Ports(kube=s.counting, elb=s.elb, clock=s.clock))
    yield s
    _runtime.use_ports(None)


@pytest.fixture()
def allow_list(tmp_path, monkeypatch):
    """``write(data)``: the function's allow-list file, as the stack's layer holds it."""

    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / "allow-list.json"
        path.write_text(json.dumps(data))
        monkeypatch.setenv(ALLOW_LIST_ENV, str(path))
        _runtime.configured_allow_list.cache_clear()
        return path

    yield write
    _runtime.configured_allow_list.cache_clear()


CONFIGURED = {
    "clusters": ["my-cluster"],
    "applications": [{"cluster": "my-cluster", "namespace": "readiness", "deployment": "nginx-app",
                      "service": "nginx-svc", "ingress": "myapp-ingress"}],
}


def rollout_input(sim, **change: str) -> dict:
    return {"request": {**sim.rollout_request().model_dump(mode="json"), **change}, "execution_name": "t1"}


def test_a_configured_rollout_passes(sim, allow_list) -> None:
    # Given the allow-list of the simulated app / When Preflight runs / Then it reads the cluster as usual
    allow_list(CONFIGURED)
    state = preflight.handler(rollout_input(sim), None)
    assert state["plan"] and sim.counting.calls


def _bootstrap(namespace: str = "readiness", deployment: str = "nginx-app", **app: Any) -> dict:
    return {"request": {"cluster": "my-cluster", "applications": [
        {"namespace": namespace, "deployment": deployment, "container": "nginx", **app}]}, "execution_name": "b1"}


def _manifests(service: str, ingress: str) -> dict:
    return {"manifests": {
        "deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-app"}},
        "service": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service}},
        "ingress": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": ingress}}}}


REFUSALS = [
    pytest.param(preflight, lambda sim: rollout_input(sim, deployment="payments"),
                 "request: Deployment 'readiness/payments' of cluster 'my-cluster' is not an application",
                 id="rollout-of-another-deployment"),
    pytest.param(preflight, lambda sim: rollout_input(sim, namespace="kube-system"),
                 "'kube-system/nginx-app'", id="rollout-in-another-namespace"),
    pytest.param(preflight, lambda sim: rollout_input(sim, cluster="prod-eu"),
                 "cluster: 'prod-eu' is not a cluster this albgate stack manages (it manages my-cluster)",
                 id="rollout-on-another-cluster"),
    pytest.param(start_step, lambda sim: state_for_another_deployment(sim),
                 "'readiness/payments'", id="a-state-made-up-for-another-deployment"),
    pytest.param(gate_keeper, lambda sim: {"applications": [
        {"cluster": "my-cluster", "namespace": "readiness", "deployment": "nginx-app"},
        {"cluster": "my-cluster", "namespace": "readiness", "deployment": "payments"}]},
                 "input.applications.1: Deployment 'readiness/payments'", id="gate-keeper-input"),
    pytest.param(bootstrap_validate, lambda sim: _bootstrap(namespace="shop", deployment="web"),
                 "request.applications.0: Deployment 'shop/web'", id="bootstrap-of-another-app"),
    pytest.param(bootstrap_validate, lambda sim: {**_bootstrap(), "request": {
        **_bootstrap()["request"], "namespaces": ["kube-public"]}},
                 "request.namespaces.0: namespace 'kube-public' of cluster 'my-cluster' has no application",
                 id="bootstrap-labelling-another-namespace"),
    pytest.param(bootstrap_validate, lambda sim: _bootstrap(**_manifests("payments-svc", "myapp-ingress")),
                 "the Service manifest of readiness/nginx-app is named 'payments-svc'", id="bootstrap-other-service"),
    pytest.param(preflight_report, lambda sim: {"cluster": "my-cluster", "namespaces": ["default"]},
                 "input.namespaces.0: namespace 'default'", id="report-of-another-namespace"),
]


def state_for_another_deployment(sim) -> dict:
    """A real rollout state (made before the allow-list is set) with its request pointed at another Deployment."""
    state = preflight.handler(rollout_input(sim), None)
    return {**state, "request": {**state["request"], "deployment": "payments"}}


@pytest.mark.parametrize(("module", "event", "message"), REFUSALS)
def test_an_unconfigured_target_is_refused_before_any_call_to_the_cluster(sim, allow_list, module, event, message):
    # Given an event naming something the stack was not configured for
    raw = event(sim)
    sim.counting.calls.clear()
    allow_list(CONFIGURED)
    # When the handler is invoked
    with pytest.raises(InvalidInputError) as refused:
        module.handler(raw, None)
    # Then it is refused (a permanent error: Rollout Refused / Bootstrap Refused), naming it and the fix
    assert message in str(refused.value)
    assert "add it" in str(refused.value) or "name it so" in str(refused.value)
    # and the cluster was never asked anything
    assert sim.counting.calls == []


def test_without_an_allow_list_the_real_ports_are_never_built(monkeypatch) -> None:
    # Given no ports provider (Lambda) and no ALBGATE_ALLOW_LIST
    monkeypatch.delenv(ALLOW_LIST_ENV, raising=False)
    _runtime.configured_allow_list.cache_clear()
    # When a handler asks for a cluster's ports / Then it is refused, naming the variable
    with pytest.raises(InvalidInputError, match=ALLOW_LIST_ENV):
        _runtime.ports_for("my-cluster")


def test_the_real_ports_are_never_built_for_an_unconfigured_cluster(allow_list) -> None:
    allow_list(CONFIGURED)
    with pytest.raises(InvalidInputError, match="'prod-eu' is not a cluster this albgate stack manages"):
        _runtime.ports_for("prod-eu")


def test_an_unreadable_allow_list_is_a_refusal_naming_the_variable(allow_list) -> None:
    path = allow_list({"clusters": []})
    with pytest.raises(InvalidInputError, match=f"{ALLOW_LIST_ENV} {path}: clusters"):
        _runtime.ports_for("my-cluster")


# ---------------------------------------------------------------------------------------------------------
# The approval token
# ---------------------------------------------------------------------------------------------------------
def test_the_task_token_is_never_logged_nor_returned(sim, capfd, caplog, monkeypatch) -> None:
    # Given a step waiting for approval, DEBUG logging and Powertools' event logging asked for in the environment
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    state = start_step.handler(preflight.handler(rollout_input(sim), None), None)
    arn = "arn:aws:states:us-east-1:123456789012:execution:Rollout:t1"
    event = {"task_token": TOKEN, "execution_name": "t1", "execution_arn": arn, "state": state}
    level = logger.log_level
    logger.setLevel("DEBUG")
    try:
        with caplog.at_level(logging.DEBUG):
            answer = request_approval.handler(event, None)
    finally:
        logger.setLevel(level)
    # Then the token is in no log line, no log record's fields, and not in the answer Step Functions records
    out, err = capfd.readouterr()
    records = " ".join(str(vars(r)) for r in caplog.records)
    assert "approval needed" in out + records
    assert TOKEN not in out + err + records + json.dumps(answer)
    # And the request says how to answer, reading the token from the execution's history
    assert answer["approve"].startswith('aws stepfunctions send-task-success --task-token "$TASK_TOKEN"')
    assert answer["reject"].startswith('aws stepfunctions send-task-failure --task-token "$TASK_TOKEN"')
    assert answer["task_token"].startswith(f"TASK_TOKEN=$(aws stepfunctions get-execution-history --execution-arn {arn} ")
    assert answer["execution_arn"] == arn and answer["step"] == 2
