"""Wiring: real_ports builds the ELB side at once and the Kubernetes side only on its first call."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from lambdas.adapters import wiring
from lambdas.adapters.dynamodb_budget import DynamoDbBudget
from lambdas.adapters.dynamodb_looks import DynamoDbLooks
from lambdas.adapters.eks_token import TOKEN_PREFIX
from lambdas.adapters.elbv2 import ElbAdapter
from lambdas.adapters.kube_http import ClusterEndpoint, EksClusters, HttpTransport
from lambdas.domain.budget import BudgetSpec, UnlimitedBudget
from lambdas.domain.looks import NoLooks
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch, KubernetesPort
from lambdas.handlers._runtime import HandlerSettings
from tests.adapters import k8s_objects as k8s
from tests.adapters.fake_apiserver import FakeApiServer


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    wiring.real_ports.cache_clear()


def test_ports_have_elb_clock_and_a_kubernetes_port() -> None:
    # Given a cluster and Region / When the ports are built
    ports = wiring.real_ports("demo", "eu-west-1")
    # Then ELB is the real adapter, the clock is the wall clock, and Kubernetes is a port not yet loaded
    assert isinstance(ports.elb, ElbAdapter)
    assert abs(ports.clock.now() - time.time()) < 1
    assert isinstance(ports.kube, wiring.LazyKubernetes) and not ports.kube.loaded
    kube: KubernetesPort = ports.kube  # the lazy port satisfies the Protocol (checked statically too)
    assert callable(kube.rollback_deployment)


def test_ports_are_cached_for_a_warm_lambda() -> None:
    # Given one warm process / When the ports are asked for twice, and for another cluster
    first, again, other = (
        wiring.real_ports("demo", "eu-west-1"),
        wiring.real_ports("demo", "eu-west-1"),
        wiring.real_ports("other", "eu-west-1"),
    )
    # Then the same ports come back for the same cluster only
    assert first is again and first is not other


def test_kubernetes_side_is_built_on_first_use(monkeypatch: pytest.MonkeyPatch, apiserver: FakeApiServer) -> None:
    # Given a cluster whose description points at the fake API server (plain HTTP, so no CA is used)
    described: list[str] = []

    def describe(self: EksClusters, cluster: str) -> ClusterEndpoint:
        described.append(cluster)
        return ClusterEndpoint(cluster, apiserver.url, b"")

    monkeypatch.setattr(EksClusters, "describe", describe)
    apiserver.put("namespaces", k8s.namespace("readiness"))
    ports = wiring.real_ports("demo", "eu-west-1")
    assert described == []
    # When two Kubernetes calls are made
    ports.kube.get_namespace("readiness")
    ports.kube.get_namespace("readiness")
    # Then the cluster was described once, and the calls reached the API server with an EKS token
    assert described == ["demo"] and [r.path for r in apiserver.requests] == ["/api/v1/namespaces/readiness"] * 2
    assert apiserver.requests[0].authorization.startswith(f"Bearer {TOKEN_PREFIX}")


def test_reads_and_writes_go_over_http_with_one_description_and_one_token(
    monkeypatch: pytest.MonkeyPatch, apiserver: FakeApiServer
) -> None:
    # Given a cluster whose description points at the fake API server, with a Deployment
    described: list[str] = []

    def describe(self: EksClusters, cluster: str) -> ClusterEndpoint:
        described.append(cluster)
        return ClusterEndpoint(cluster, apiserver.url, b"")

    monkeypatch.setattr(EksClusters, "describe", describe)
    apiserver.put("deployments", k8s.deployment(), "apps")
    kube = wiring.real_ports("demo", "eu-west-1").kube
    assert isinstance(kube, wiring.LazyKubernetes)
    # When the port reads, then writes
    kube.get_deployment("readiness", "nginx-app")
    kube.patch_deployment("readiness", "nginx-app", DeploymentPatch(add_readiness_gates=(ALBGATE_GATE,)))
    # Then both went over kube_http, with one DescribeCluster and one token between them
    assert isinstance(kube.adapter()._transport, HttpTransport)
    assert described == ["demo"]
    assert len({r.authorization for r in apiserver.requests}) == 1
    assert [r.method for r in apiserver.requests] == ["GET", "GET", "PATCH"]


def test_an_elb_only_handler_never_imports_the_kubernetes_client() -> None:
    # Given a fresh interpreter (imports are process-wide)
    code = (
        "import sys\n"
        "from lambdas.adapters.wiring import real_ports\n"
        "ports = real_ports('demo', 'eu-west-1')\n"
        "ports.clock.now()\n"
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))\n"
    )
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    # When a handler wires its ports and uses the ELB side only
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    # Then no kubernetes module was loaded
    assert out.strip() == "[]"


def test_the_describe_budget_is_the_dynamodb_one_when_the_stack_names_a_table() -> None:
    # Given no table / Then every call may go; Given a table / Then its rate and burst are the ones passed in
    assert isinstance(wiring.real_ports("demo", "eu-west-1").budget, UnlimitedBudget)
    budget = wiring.real_ports("demo", "eu-west-1", "budget-table", 2.5, 7).budget
    assert isinstance(budget, DynamoDbBudget) and budget.spec == BudgetSpec(2.5, 7)


def test_the_executions_that_share_the_budget_table_share_their_looks_in_it() -> None:
    # Given no table / Then nothing is shared; Given a table / Then the answers are kept in that table
    assert isinstance(wiring.real_ports("demo", "eu-west-1").looks, NoLooks)
    looks = wiring.real_ports("demo", "eu-west-1", "budget-table", 2.5, 7).looks
    assert isinstance(looks, DynamoDbLooks) and looks._table == "budget-table"


def test_the_handler_settings_read_the_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the environment the stack writes (stacks/constructs/describe_budget.py)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("ALBGATE_DESCRIBE_BUDGET_TABLE", "t")
    monkeypatch.setenv("ALBGATE_DESCRIBE_BUDGET_RATE", "5.0")
    monkeypatch.setenv("ALBGATE_DESCRIBE_BUDGET_BURST", "30")
    cfg = HandlerSettings.from_environ()
    assert (cfg.describe_budget_table, cfg.describe_budget_rate, cfg.describe_budget_burst) == ("t", 5.0, 30)
    # And a rate of 0 is refused with the variable named, before any port is built
    monkeypatch.setenv("ALBGATE_DESCRIBE_BUDGET_RATE", "0")
    with pytest.raises(InvalidInputError, match="describe_budget_rate"):
        HandlerSettings.from_environ()
