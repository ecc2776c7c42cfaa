"""The target groups that serve a Deployment, what ELB says of their targets, and albgate's own deregistrations
and registrations.

Invariant: only IP targets attached to a load balancer are accepted; a target whose IP belongs to a live pod of
the Deployment is never deregistered; a new target is registered only as the Load Balancer Controller's own rule
would register it (``gate.targets_to_register``), on the port the group's targets use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lambdas.domain.errors import NotFoundError, ThrottledError, UnsafeConfigurationError
from lambdas.domain.gate import (
    REGISTRATION_GRACE_SECONDS,
    GroupCounts,
    Registration,
    pod_target_state,
    targets_by_ip,
    targets_to_deregister,
    targets_to_register,
)
from lambdas.domain.looks import Look, usable
from lambdas.domain.ports import (
    IN_SERVICE,
    SERVING_LABEL,
    Deployment,
    Pod,
    Ports,
    Service,
    TargetGroup,
    TargetGroupBinding,
    TargetHealth,
)
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo


def target_group_bindings(ports: Ports, dep: Deployment) -> list[TargetGroupBinding]:
    """The TargetGroupBindings of the Services that select the Deployment's pods (Kubernetes reads only): one
    per target group that serves them."""
    kube, ns = ports.kube, dep.namespace
    pod_labels = dep.template.labels or dep.selector
    found = kube.list_services(ns)
    services = [s for s in found if s.selector and all(pod_labels.get(k) == v for k, v in s.selector.items())]
    unlabelled = [s.name for s in found if s.selector.get(SERVING_LABEL) and
                  all(pod_labels.get(k) == v for k, v in s.selector.items() if k != SERVING_LABEL)]
    if not services and unlabelled:
        raise UnsafeConfigurationError(
            f"Service(s) {', '.join(sorted(unlabelled))} in {ns} select {SERVING_LABEL}: "
            f"{IN_SERVICE!r}, which the pod template of Deployment {dep.name} does not carry: its "
            f"pods would never serve. Add {SERVING_LABEL}: {IN_SERVICE!r} to spec.template.metadata.labels (the "
            "bootstrap's hardening does), or take it out of the Services' selector"
        )
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
    return [group_info(ns, b, ports.elb.describe_target_group(b.target_group_arn))
            for b in sorted(bindings, key=lambda b: b.name)]


def group_info(ns: str, b: TargetGroupBinding, tg: TargetGroup) -> TargetGroupInfo:
    """What a rollout keeps of the binding's target group, once it is known to be one albgate can gate: IP
    targets, attached to a load balancer (UnsafeConfigurationError names what is not)."""
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
    return TargetGroupInfo(
        arn=tg.arn,
        service=b.service_name,
        health_check_interval_seconds=tg.health_check_interval_seconds,
        healthy_threshold=tg.healthy_threshold,
        deregistration_delay_seconds=tg.deregistration_delay_seconds,
        load_balancer_arn=tg.load_balancer_arns[0],
        binding=b.name,
    )


@dataclass(frozen=True)
class SharedView:
    """What the other executions offer this look: their recent answers, per group (``health``), the groups the
    look must still call for (``to_call``), and when another execution's booked call covers every one of those
    (``booked_at``; None: not every one)."""

    health: dict[str, list[TargetHealth]]
    to_call: tuple[str, ...]
    booked_at: float | None


def shared_health(ports: Ports, s: RolloutState, now: float) -> SharedView:
    """Per target group, another execution's recent answer this look may use instead of a call
    (lambdas/domain/looks.py), and the bookings it may follow for the rest. A look whose own call is booked reads
    nothing: others may be following that booking, so it calls at its turn."""
    if s.describe_slot_at is not None:
        return SharedView({}, tuple(g.arn for g in s.target_groups), None)
    since = max((t for t in (s.looked_at, s.changed_at) if t is not None), default=None)
    health: dict[str, list[TargetHealth]] = {}
    bookings: list[float | None] = []
    for g in s.target_groups:
        news = ports.looks.news(g.arn)
        if news.look is not None and usable(news.look, now, g.health_check_interval_seconds, since, s.followed_at):
            health[g.arn] = list(news.look.targets)
        else:
            bookings.append(news.booked_at)
    booked_at = None
    if bookings and all(b is not None for b in bookings):
        booked_at = max(b for b in bookings if b is not None)
    return SharedView(health, tuple(g.arn for g in s.target_groups if g.arn not in health), booked_at)


def describe_health(ports: Ports, s: RolloutState, now: float,
                    shared: dict[str, list[TargetHealth]] | None = None) -> dict[str, list[TargetHealth]]:
    """Every group's targets: ``shared``'s answer where it has one (``shared_health``), else a DescribeTargetHealth
    call, whose answer is offered to the other executions."""
    health: dict[str, list[TargetHealth]] = {}
    for g in s.target_groups:
        if shared and g.arn in shared:
            s.shared_looks += 1
            health[g.arn] = shared[g.arn]
        else:
            s.describe_target_health_calls += 1
            health[g.arn] = ports.elb.describe_target_health(g.arn)
            ports.looks.share(g.arn, Look(now, tuple(health[g.arn])))
        seen = {t.port for t in health[g.arn]}
        if len(seen) > 1 or (g.target_port is not None and seen - {g.target_port}):
            # old and new pods on different ports (a named targetPort whose container port changed): no single
            # port can name a target unseen
            g.ports_mixed, g.target_port = True, None
        elif seen and g.target_port is None and not g.ports_mixed:
            g.target_port = seen.pop()  # kept to name targets unseen (the drain's at once, or while throttled)
    s.looked_at = now
    s.followed_at = None
    return health


def look_or_throttled(ports: Ports, s: RolloutState, now: float,
                      shared: dict[str, list[TargetHealth]] | None = None) -> dict[str, list[TargetHealth]] | None:
    """``describe_health``, or None where the account's bucket throttled a call: counted in ``s.throttles`` (the
    next waits back off by it) and told to albgate's share, which steps back (lambdas/domain/budget.py). A look
    whose calls went through clears both the count and any back-off (``s.elb_after``): the bucket has room again."""
    try:
        health = describe_health(ports, s, now, shared)
    except ThrottledError:
        s.throttles += 1
        ports.budget.throttled()
        return None
    if shared is None or any(g.arn not in shared for g in s.target_groups):  # a call went through
        s.throttles = 0
        s.elb_after = None
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
        name = group_name(g.arn)
        out.append(GroupCounts(target_group=name, service=g.service, **counts))
    return tuple(out)


def group_name(arn: str) -> str:
    """A target group's name, from its ARN (…:targetgroup/<name>/<id>)."""
    return arn.split(":targetgroup/")[-1].split("/")[0]


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
    """Start the drain of released pods' targets (see ``targets_to_deregister``): with ``health`` None, each once,
    unseen; with a look's answer, those it still shows in the pool.

    ``record``: the step that released them (its ``deregistered`` list keeps a blind deregistration to once).
    A blind one needs each group's target port: one the gate never saw on ELB (it read the controller's conditions)
    is learnt from the group's TargetGroupBinding and Service first (Kubernetes reads only). A call the account's
    bucket throttles (ThrottledError, after the client's own retries) records nothing and says so in the drain's
    reason: the next look names those targets again, and the step does not fail for it."""
    if health is None:
        unknown = tuple(g.arn for g in s.target_groups if g.target_port is None)
        if unknown:
            learn_target_ports(ports, s, unknown)
    todo = targets_to_deregister(
        leaving_ips=leaving,
        held_ips=held,
        health=health,
        blind_ports={g.arn: g.target_port for g in s.target_groups if g.target_port is not None},
        already=set(record.deregistered),
    )
    done, refused = deregister_each(ports, s, record, todo)
    if done:
        s.drain = replace(s.drain, reason=f"{s.drain.reason}; albgate started the drain of {done} released target(s) "
                          "the Load Balancer Controller had not deregistered yet")
    if refused:
        s.drain = replace(s.drain, reason=f"{s.drain.reason}; DeregisterTargets throttled for {refused} released "
                          "target(s): the next look asks again")


def deregister_each(ports: Ports, s: RolloutState, record: StepRecord,
                    todo: dict[str, list[tuple[str, int]]]) -> tuple[int, int]:
    """One DeregisterTargets call per target group of ``todo``; each that goes through is recorded in
    ``record.deregistered`` (and moves ``s.changed_at``). Returns how many targets were deregistered and how many
    the account's bucket refused: a throttled call (ThrottledError, after the client's own retries) deregistered
    nothing, so nothing is recorded and the next look names them again; the controller, whose queue is the same
    bucket, may get there first. Not a failure of the step."""
    done, refused = 0, 0
    for arn, targets in todo.items():
        try:
            ports.elb.deregister_targets(arn, targets)
        except ThrottledError:
            refused += len(targets)
            continue
        s.changed_at = ports.clock.now()
        done += len(targets)
        record.deregistered.extend(f"{arn}|{ip}" for ip, _ in targets if f"{arn}|{ip}" not in record.deregistered)
    return done, refused


def binding_target_port(binding: TargetGroupBinding, services: list[Service]) -> int | None:
    """The port a binding's targets are registered on, from its Service: the numeric ``targetPort`` of the Service
    port the binding names (by number or by name). None when the Service or the port is not there, or when the
    ``targetPort`` names a container port (each pod resolves it, and albgate does not read containers' ports)."""
    service = next((s for s in services if s.name == binding.service_name), None)
    for p in service.ports if service else ():
        if str(p.port) == str(binding.service_port) or (p.name and p.name == binding.service_port):
            target = p.target_port
            if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
                return int(target)
            return None
    return None


def learn_target_ports(ports: Ports, s: RolloutState, arns: tuple[str, ...]) -> None:
    """Set ``target_port`` of the groups ``arns`` that never showed a target, from their TargetGroupBinding and
    Service (Kubernetes reads only, made only while such a group has a new pod due; a port found stays in the
    state, so they are made once for it)."""
    ns = s.request.namespace
    bindings = {b.target_group_arn: b for b in ports.kube.list_target_group_bindings(ns)}
    services = ports.kube.list_services(ns)
    for g in s.target_groups:
        if g.arn in arns and g.target_port is None and not g.ports_mixed and g.arn in bindings:
            g.target_port = binding_target_port(bindings[g.arn], services)


def register_missing(
    ports: Ports,
    s: RolloutState,
    candidates: list[Pod],
    health: dict[str, list[TargetHealth]],
    record: StepRecord,
    now: float,
) -> str:
    """Register the step's new pods' targets that nobody registered (see ``targets_to_register``), on this look's
    DescribeTargetHealth answers; returns what was done, for the gate's reason ("" when nothing was due).

    ``record``: the current step (its ``unregistered_since`` carries the groups' first sightings to the next
    look, its ``registered_total`` counts what albgate registered)."""

    def decide() -> Registration:
        return targets_to_register(
            candidates=candidates,
            health=health,
            ports_by_group={g.arn: g.target_port for g in s.target_groups if g.target_port is not None},
            since=record.unregistered_since,
            now=now,
            grace=REGISTRATION_GRACE_SECONDS,
        )

    todo = decide()
    if todo.unknown_port:
        learn_target_ports(ports, s, todo.unknown_port)
        todo = decide()
    record.unregistered_since = dict(todo.missing_since)
    notes = []
    for arn, targets in todo.register.items():
        ports.elb.register_targets(arn, targets)
        s.changed_at = now
        record.registered_total += len(targets)
    if todo.register:
        n = sum(len(t) for t in todo.register.values())
        notes.append(f"albgate registered {n} new target(s) the Load Balancer Controller had not registered after "
                     f"{REGISTRATION_GRACE_SECONDS} s")
    if todo.unknown_port:
        names = ", ".join(group_name(arn) for arn in todo.unknown_port)
        notes.append(f"albgate cannot register the new pods missing from {names}: no target there shows the port, "
                     "and the Service's targetPort is not a number")
    return "; ".join(notes)
