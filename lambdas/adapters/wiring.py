"""Wiring: the real ``Ports`` a handler hands to the domain in Lambda.

Job: build the ELB adapter, a wall clock, and a Kubernetes port for one cluster, once per warm Lambda.

Invariant: importing this module, or calling ``real_ports``, imports no kubernetes client and calls no AWS
API. The Kubernetes port connects on its first call (eks:DescribeCluster once per cluster, then an EKS token
refreshed before it expires) and sends every request, reads and writes alike, over ``kube_http``'s urllib3
transport, so no rollout Lambda ever loads the ``kubernetes`` package (tests/adapters/test_kube_http.py checks
Check Target Health and Verify Drain, first invocation included, in a fresh interpreter). The adapter is the
same ``KubernetesAdapter`` the bootstrap drives over the kubernetes client; its tests run on both transports.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3

from lambdas.adapters.dynamodb_budget import DynamoDbBudget
from lambdas.adapters.dynamodb_descriptions import DynamoDbDescriptions
from lambdas.adapters.dynamodb_looks import DynamoDbLooks
from lambdas.adapters.ecr import EcrAdapter
from lambdas.adapters.elbv2 import ElbAdapter
from lambdas.domain.budget import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, BudgetSpec, UnlimitedBudget
from lambdas.domain.descriptions import NoDescriptions
from lambdas.domain.looks import NoLooks
from lambdas.domain.ports import (
    DescribeBudget,
    Deployment,
    DeploymentPatch,
    Ingress,
    KubernetesPort,
    Namespace,
    Pod,
    Ports,
    ReplicaSet,
    Service,
    SharedDescriptions,
    SharedLooks,
    TargetGroupBinding,
)

if TYPE_CHECKING:
    from lambdas.adapters.kubernetes import KubernetesAdapter


@dataclass(frozen=True)
class SystemClock:
    """The Lambda's wall clock (the simulation has its own virtual one)."""

    def now(self) -> float:
        return time.time()


class LazyKubernetes:
    """A ``KubernetesPort`` that connects on its first call, over ``kube_http`` (no kubernetes client)."""

    def __init__(self, cluster_name: str, region: str, session: boto3.Session, clock: SystemClock) -> None:
        self._cluster = cluster_name
        self._region = region
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._adapter: KubernetesAdapter | None = None

    @property
    def loaded(self) -> bool:
        return self._adapter is not None

    def adapter(self) -> KubernetesAdapter:
        """The adapter on the light HTTP transport, built on the first call (DescribeCluster, then a token)."""
        with self._lock:
            if self._adapter is None:
                from lambdas.adapters.kube_http import EksClusters
                from lambdas.adapters.kubernetes import KubernetesAdapter

                clusters = EksClusters(self._region, session=self._session, now=self._clock.now)
                self._adapter = KubernetesAdapter(clusters.http_transport(self._cluster), now=self._clock.now)
            return self._adapter

    def get_namespace(self, name: str) -> Namespace:
        return self.adapter().get_namespace(name)

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        return self.adapter().get_deployment(namespace, name)

    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> Deployment:
        return self.adapter().patch_deployment(namespace, name, patch)

    def rollback_deployment(
        self, namespace: str, name: str, to_revision: int, add_readiness_gates: tuple[str, ...] = (),
        *, expected_resource_version: str | None = None,
    ) -> Deployment:
        return self.adapter().rollback_deployment(namespace, name, to_revision, add_readiness_gates,
                                                  expected_resource_version=expected_resource_version)

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]:
        return self.adapter().list_replica_sets(namespace, deployment)

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        return self.adapter().list_pods(namespace, selector)

    def set_pod_condition(self, namespace: str, pod: str, type_: str, status: str, reason: str, message: str, *,
                          same_status: bool = False) -> None:
        self.adapter().set_pod_condition(namespace, pod, type_, status, reason, message, same_status=same_status)

    def set_pod_serving(self, namespace: str, pod: str, serving: bool) -> None:
        self.adapter().set_pod_serving(namespace, pod, serving)

    def list_services(self, namespace: str) -> list[Service]:
        return self.adapter().list_services(namespace)

    def list_ingresses(self, namespace: str) -> list[Ingress]:
        return self.adapter().list_ingresses(namespace)

    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]:
        return self.adapter().list_target_group_bindings(namespace)

    def wait_for_pods(self, namespace: str, selector: dict[str, str], seconds: int) -> bool:
        return self.adapter().wait_for_pods(namespace, selector, seconds)

    def wait_for_bindings(self, namespace: str, seconds: int) -> bool:
        return self.adapter().wait_for_bindings(namespace, seconds)


def _kube_port(port: LazyKubernetes) -> KubernetesPort:
    return port  # checked by mypy/pyright: LazyKubernetes satisfies the Protocol


@functools.lru_cache(maxsize=8)
def real_ports(
    cluster_name: str,
    region: str,
    budget_table: str = "",
    budget_rate: float = DEFAULT_RATE_PER_SECOND,
    budget_burst: int = DEFAULT_BURST,
) -> Ports:
    """The ports for one cluster and Region, cached for the life of a warm Lambda. With a budget table, every
    Describe* call of a rollout first takes its turn in albgate's share of the account's bucket."""
    session = boto3.Session(region_name=region)
    clock = SystemClock()
    budget: DescribeBudget = UnlimitedBudget()
    looks: SharedLooks = NoLooks()
    descriptions: SharedDescriptions = NoDescriptions()
    if budget_table:
        # the executions that share the budget share their DescribeTargetHealth answers in the same table, and
        # their Preflights the target groups' descriptions
        looks = DynamoDbLooks(budget_table, clock.now, session=session, region=region)
        descriptions = DynamoDbDescriptions(budget_table, clock.now, session=session, region=region)
        budget = DynamoDbBudget(
            budget_table,
            BudgetSpec(budget_rate, budget_burst),
            clock.now,
            session=session,
            region=region,
        )
    return Ports(
        kube=_kube_port(LazyKubernetes(cluster_name, region, session, clock)),
        elb=ElbAdapter.for_region(region, session),
        clock=clock,
        images=EcrAdapter(session),
        budget=budget,
        looks=looks,
        descriptions=descriptions,
    )
