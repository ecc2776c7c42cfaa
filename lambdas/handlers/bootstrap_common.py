"""Shared glue of the bootstrap Lambdas (not a Lambda itself): the bootstrap's ports for a cluster.

Job: hand each bootstrap handler a Kubernetes port with the bootstrap's calls (``BootstrapKubernetesPort``)
and, for the install, a helm port. In Lambda these are the real adapters (``lambdas.adapters.
kubernetes_bootstrap``, imported late so a cold start pays only when used); locally, when a ports provider is
installed (``_runtime.use_ports``, as the simulation does) and its Kubernetes port already has the bootstrap's
calls, that one is used, and ``use_helm`` installs the helm port.

Invariant: nothing below the handlers reads ``os.environ``: the Region comes from ``_runtime.settings()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdas.domain.bootstrap import BootstrapKubernetesPort, HelmPort
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.ports import Clock, ElbPort, MetricsPort
from lambdas.handlers._observability import logger
from lambdas.handlers._runtime import ports_for, settings

HelmProvider = Callable[[str], HelmPort]
_helm_provider: HelmProvider | None = None


@dataclass(frozen=True)
class BootstrapPorts:
    kube: BootstrapKubernetesPort
    elb: ElbPort
    clock: Clock
    metrics: MetricsPort | None = None  # the target groups' ALB metrics (the preflight report's longest requests)


def use_helm(provider: HelmProvider | None) -> None:
    """Install a helm provider (tests, the simulation); None restores the real helm binary."""
    global _helm_provider
    _helm_provider = provider


def bootstrap_ports(cluster: str) -> BootstrapPorts:
    ports = ports_for(cluster)
    kube: Any = ports.kube
    if not isinstance(kube, BootstrapKubernetesPort):
        from lambdas.adapters.kubernetes_bootstrap import real_bootstrap_kube

        kube = real_bootstrap_kube(cluster, settings().region)
    return BootstrapPorts(kube=kube, elb=ports.elb, clock=ports.clock, metrics=ports.metrics)


def helm_for(cluster: str) -> HelmPort:
    if _helm_provider is not None:
        return _helm_provider(cluster)
    from lambdas.adapters.kubernetes_bootstrap import real_helm

    return real_helm(cluster, settings().region)


def cluster_of_state(event: Any) -> str:
    try:
        return str(event["request"]["cluster"])
    except (KeyError, TypeError) as exc:
        raise InvalidInputError(
            "request.cluster: the state has no bootstrap request; start the execution with a bootstrap input"
        ) from exc


def log_changes(step: str, before: Any, after: dict[str, Any]) -> dict[str, Any]:
    """Log every cluster change a step made (the state's ``changes`` that are new), one line each."""
    seen = len((before or {}).get("changes") or []) if isinstance(before, dict) else 0
    new = (after.get("changes") or [])[seen:]
    for change in new:
        logger.info(f"{step}: {change['change']} {change['object']}", extra={"change": change})
    if not new:
        logger.info(f"{step}: nothing changed")
    return after
