"""The target groups that serve a Deployment, what ELB says of their targets, and albgate's own deregistrations.

Invariant: only IP targets attached to a load balancer are accepted; a target whose IP belongs to a live pod of
the Deployment is never deregistered.
"""

from __future__ import annotations

from dataclasses import replace

from lambdas.domain.errors import NotFoundError, UnsafeConfigurationError
from lambdas.domain.gate import GroupCounts, pod_target_state, targets_by_ip, targets_to_deregister
from lambdas.domain.ports import Deployment, Pod, Ports, TargetGroupBinding, TargetHealth
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo


def target_group_bindings(ports: Ports, dep: Deployment) -> list[TargetGroupBinding]:
    """The TargetGroupBindings of the Services that select the Deployment's pods (Kubernetes reads only): one
    per target group that serves them."""
    kube, ns = ports.kube, dep.namespace
    pod_labels = dep.template.labels or dep.selector
    services = [
        s
        for s in kube.list_services(ns)
        if s.selector and all(pod_labels.get(k) == v for k, v in s.selector.items())
    ]
    if not services:
        raise NotFoundError(
            f"no Service in {ns} selects the pods of Deployment {dep.name} (labels {pod_labels}); "
            "albgate gates on the ALB targets behind a Service"
        )
    names = {s.name for s in services}
    bindings = [b for b in kube.list_target_group_bindings(ns) if b.service_name in names]
    if not bindings:
        raise NotFoundError(
            f"no TargetGroupBinding in {ns} for Service(s) {', '.join(sorted(names))}: the Load Balancer "
            "Controller creates one per backend of an Ingress with ingressClassName alb; is the controller "
            "running and the Ingress applied?"
        )
    return bindings


def describe_target_groups(ports: Ports, ns: str, bindings: list[TargetGroupBinding]) -> list[TargetGroupInfo]:
    """Each binding's target group as ELB describes it (2 Describe* calls each); unsafe target types refused."""
    groups: list[TargetGroupInfo] = []
    for b in sorted(bindings, key=lambda b: b.name):
        tg = ports.elb.describe_target_group(b.target_group_arn)
        if b.target_type != "ip" or tg.target_type != "ip":
            raise UnsafeConfigurationError(
                f"TargetGroupBinding {ns}/{b.name} uses target type {tg.target_type}: only IP targets map one "
                "pod to one target, so only they can be gated; set the Ingress annotation "
                "alb.ingress.kubernetes.io/target-type: ip"
            )
        if not tg.load_balancer_arns:
            raise UnsafeConfigurationError(
                f"target group {tg.arn} is not attached to a load balancer listener, so no target in it can "
                "ever become healthy (aws-load-balancer-controller#3753); check the Ingress rules"
            )
        groups.append(
            TargetGroupInfo(
                arn=tg.arn,
                service=b.service_name,
                health_check_interval_seconds=tg.health_check_interval_seconds,
                healthy_threshold=tg.healthy_threshold,
                deregistration_delay_seconds=tg.deregistration_delay_seconds,
            )
        )
    return groups


def describe_health(ports: Ports, s: RolloutState) -> dict[str, list[TargetHealth]]:
    health: dict[str, list[TargetHealth]] = {}
    for g in s.target_groups:
        s.describe_target_health_calls += 1
        health[g.arn] = ports.elb.describe_target_health(g.arn)
        if health[g.arn] and g.target_port is None:
            g.target_port = health[g.arn][0].port  # kept for a deregistration while Describe* is throttled
    return health


def group_summary(
    groups: list[TargetGroupInfo], candidates: list[Pod], health: dict[str, list[TargetHealth]]
) -> tuple[GroupCounts, ...]:
    """Per target group, the states of the step's started new pods' targets (what `albgate watch` shows), each
    pod counted once per group by ``pod_target_state`` (all its targets there, whatever their ports)."""
    started = [p.ip for p in candidates if p.containers_ready and p.ip]
    out = []
    for g in groups:
        by_ip = targets_by_ip(health.get(g.arn, []))
        counts = {"healthy": 0, "initial": 0, "unhealthy": 0, "draining": 0, "unregistered": 0}
        for ip in started:
            state = pod_target_state(by_ip.get(ip, []))
            counts[state if state in counts else "unregistered"] += 1
        name = g.arn.split(":targetgroup/")[-1].split("/")[0]
        out.append(GroupCounts(target_group=name, service=g.service, **counts))
    return tuple(out)


def held_ips(mine: list[Pod], others: list[Pod]) -> set[str]:
    """IPs of the Deployment's live pods: a target with such an IP is never deregistered (its pod serves)."""
    return {p.ip for p in mine + others if p.ip and not p.terminating}


def deregister_released(
    ports: Ports,
    s: RolloutState,
    leaving: tuple[str, ...],
    health: dict[str, list[TargetHealth]] | None,
    held: set[str],
    record: StepRecord,
) -> None:
    """Start the drain of released pods' targets that nobody deregistered (see ``targets_to_deregister``).

    ``record``: the step that released them (its ``deregistered`` list keeps a blind deregistration to once)."""
    todo = targets_to_deregister(
        leaving_ips=leaving,
        held_ips=held,
        health=health,
        blind_ports={g.arn: g.target_port for g in s.target_groups if g.target_port is not None},
        already=set(record.deregistered),
    )
    for arn, targets in todo.items():
        ports.elb.deregister_targets(arn, targets)
        record.deregistered.extend(f"{arn}|{ip}" for ip, _ in targets if f"{arn}|{ip}" not in record.deregistered)
    if todo:
        n = sum(len(t) for t in todo.values())
        s.drain = replace(s.drain, reason=f"{s.drain.reason}; albgate started the drain of {n} released target(s) "
                          "the Load Balancer Controller had not deregistered yet")
