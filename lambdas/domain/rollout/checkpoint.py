"""The Load Balancer Controller's reconcile checkpoint: a drain proven from the Kubernetes API, without a Describe*
call.

Job: a drain ends when every released target is out of every target group's pool. Asking ELB costs a token of
the account's Describe* bucket. The controller already says it another way: after every reconcile of a
TargetGroupBinding that completes, it writes on the binding the annotation ``elbv2.k8s.aws/checkpoint``, whose
first half is a digest of the endpoints that reconcile worked from (docs/facts.md, "Load Balancer Controller: the
reconcile checkpoint"). A completed reconcile deregistered every target in the group, not already draining, that
none of those endpoints matches; one that mutates clears the annotation before its first call, and one that
fails or still waits for a target's health leaves it cleared or as it was. So when the annotation's endpoints are
exactly the endpoints the Service has now, every target that is not one of them (a terminating pod's above all)
is `draining` or gone in that group.

Rules:
- The endpoints are computed as the controller resolves them: the Service's pods with an IP, not terminating and
  ContainersReady (Ready implies it), each written ``ip:port:creation-milliseconds``; the list sorted, joined
  with commas, hashed with SHA-256 and written in unpadded base64url. The API keeps creation times in whole
  seconds, so the milliseconds are a whole number of seconds times 1,000.
- Not after albgate registered targets itself in the execution (the controller was down or late): those are in the
  pool without any reconcile of the controller, so its checkpoint says nothing of them.
- Only a digest that matches proves anything: an older controller without the annotation, a Service that selects
  pods albgate does not see, a port albgate does not know, a pod the controller has not cached yet: each gives
  another digest, and albgate asks ELB as before. A proof can be missed, never made up (short of a SHA-256
  collision).
Invariant: reads the Kubernetes API only (the bindings, then the Services while every binding has an annotation);
never a Describe* call.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable

from lambdas.domain.ports import Pod, Ports, TargetGroupBinding
from lambdas.domain.rollout.targets import binding_target_port
from lambdas.domain.state import RolloutState


def endpoints_digest(endpoints: Iterable[tuple[str, int, float]]) -> str:
    """The controller's digest of ``(ip, port, creation time in epoch seconds)`` endpoints."""
    ids = sorted(f"{ip}:{port}:{math.floor(created) * 1000}" for ip, port, created in endpoints)
    digest = hashlib.sha256(",".join(ids).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def resolved_endpoints(pods: Iterable[Pod], port: int) -> list[tuple[str, int, float]]:
    """The endpoints the controller resolves from these pods of the Service, on the target ``port``."""
    return [(p.ip, port, p.created_at) for p in pods
            if p.ip and not p.terminating and p.phase not in ("Succeeded", "Failed") and p.containers_ready]


def reconciled(binding: TargetGroupBinding, pods: Iterable[Pod], port: int | None) -> bool:
    """Whether the controller's last completed reconcile of ``binding`` worked from exactly the endpoints ``pods``
    give on ``port`` (the pods the binding's Service selects, terminating ones included or not)."""
    if port is None or not binding.checkpoint or "/" not in binding.checkpoint:
        return False
    return binding.checkpoint.split("/", 1)[0] == endpoints_digest(resolved_endpoints(pods, port))


def drain_proven(ports: Ports, s: RolloutState, pods: list[Pod]) -> bool:
    """Whether, for every target group of the rollout, the controller's last completed reconcile of its binding
    worked from the endpoints ``pods`` give now (those the binding's Service selects): every target that is not one
    of them, each released pod's among them, is `draining` or gone in every group. The port is the group's, as ELB
    showed it or else as the binding's Service gives it. False when a group has no known binding or target port."""
    groups = s.target_groups
    if not groups or any(not g.binding or g.ports_mixed for g in groups):
        return False
    if any(r.registered_total for r in s.steps):
        return False  # albgate registered targets itself: the controller may never have seen them
    ns = s.request.namespace
    bindings = {b.name: b for b in ports.kube.list_target_group_bindings(ns)}
    if any(g.binding not in bindings or not bindings[g.binding].checkpoint for g in groups):
        return False  # no completed reconcile to read (an older controller, or one mutating now)
    services = {v.name: v for v in ports.kube.list_services(ns)}
    for g in groups:
        binding = bindings[g.binding]
        service = services.get(binding.service_name)
        if service is None or not service.selector:
            return False
        selected = [p for p in pods if all(p.labels.get(k) == v for k, v in service.selector.items())]
        port = g.target_port if g.target_port is not None else binding_target_port(binding, list(services.values()))
        if not reconciled(binding, selected, port):
            return False
    return True
