"""Release Old Pods and Verify Drain: open the gates the step passed, then watch the old targets leave the pool.

Invariant: before a later step releases an old pod, every target released earlier is out of the pool: seen
`draining` or gone, deregistered by albgate itself (once the old ReplicaSet is scaled down albgate deregisters
every released target, never a live pod's), or left to a Load Balancer Controller that had just opened the step's
gate, which the next gate sees prove it went past them or else deregisters them itself within
``left.LEFT_TO_CONTROLLER_SECONDS``; an execution ends only after every target it released is known out of every
group's pool (the last step's drain, or the rollback's): `draining` or gone, seen by a look made once the load
balancer stops sending new requests to a target albgate deregistered, known so from albgate's own DeregisterTargets
that went through once that lag has passed (``_deregistered_by_albgate``: a rollout's last drain only), or proven
by the controller's checkpoint on every binding (``checkpoint.drain_proven``, tried before every look at ELB, after
albgate's own decision to leave the drain or deregister). ELB shows a deregistered target `draining` for its whole deregistration delay, whatever it
still serves (docs/facts.md, "Deregistration and draining"), so no look can tell more. During a rollout every look
of the drain first reads the CloudWatch alarms the policy names (``alarms.during``): one failing
fails the step. A wait for the old ReplicaSet's scale-down is watched inside the task, up to the policy's
``watch_seconds`` (``verify_drain``).
"""

from __future__ import annotations

import math
from dataclasses import replace

from lambdas.domain import limits
from lambdas.domain.poll import DEREGISTRATION_LAG_SECONDS
from lambdas.domain.gate import DrainResult, Verdict, evaluate_drain
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, UNUSED, Pod, Ports, TargetHealth
from lambdas.domain.rollout.checkpoint import drain_proven
from lambdas.domain.rollout.watched import watch_failure
from lambdas.domain.rollout.observe import NOW, Pace, budget_wait, next_look
from lambdas.domain.rollout.pods import split_pods
from lambdas.domain.rollout.out_of_service import proof_name, proven_out
from lambdas.domain.rollout.targets import deregister_released, held_ips, look_or_throttled, shared_health
from lambdas.domain.state import RolloutState, StepRecord

# The longest the controller may have taken to register a step's pods, once ContainersReady, for the step to leave
# its drain to it: a reconcile a second or so after the pod's change, plus up to a second lost to the API's whole
# seconds, plus a few seconds' queue in its client-side limiter for RegisterTargets/DeregisterTargets (4 a second:
# docs/facts.md, "Load Balancer Controller: registration and timing"). Longer says the queue is long, and the
# deregistration it would make waits in the same queue.
PROMPT_REGISTRATION_SECONDS = 5


def release_old_pods(ports: Ports, s: RolloutState) -> RolloutState:
    req = s.request
    _, mine, others = split_pods(ports, s)
    # Every pod of the other ReplicaSets, terminating ones included: Kubernetes may already be removing one
    # (an ungated pod turned Ready by itself), and its target must leave the groups like the others. And the
    # targets earlier steps handed over unseen, until a look sees them gone (an IP a new pod holds again apart).
    serving = {p.ip for p in mine if p.ip and not p.terminating}
    s.watched_ips = sorted(({p.ip for p in others if p.ip} | set(s.carried_ips)) - serving)
    live_names = {p.name for p in mine if not p.terminating}
    for name in s.gate.release:
        if name not in live_names:
            continue  # gone since the gate looked: the next gate turn re-counts
        ports.kube.set_pod_condition(
            req.namespace,
            name,
            ALBGATE_GATE,
            "True",
            "TargetHealthy",
            f"albgate {s.execution_name}: target healthy in all {len(s.target_groups)} target group(s)",
        )
    now = ports.clock.now()
    s.changed_at = now  # released pods leave their groups: an answer from before shows them serving
    delay = max(g.deregistration_delay_seconds for g in s.target_groups)
    s.drain_deadline = now + limits.drain_deadline_seconds(req.policy, delay)
    s.drain = DrainResult(Verdict.WAITING, "old pods released")
    s.wait_seconds = 0
    return s


def verify_drain(ports: Ports, s: RolloutState, *, watch_seconds: int = 0) -> RolloutState:
    """One look of the drain, and, with ``watch_seconds`` (the policy's ``watch_seconds``), the looks
    that follow while it waits for Kubernetes to scale the old ReplicaSet down and the wait ends within that many
    seconds of the task: between them the task watches the Deployment's pods, and looks again as soon as one
    changes or the wait is over (as the gate does: ``gate.check_target_health``). Waits for ELB or for a time are
    the Wait state's."""
    until = ports.clock.now() + watch_seconds
    selector: dict[str, str] | None = None
    while True:
        pace = _verify(ports, s)
        if pace.wait_for != "scale-down" or s.wait_seconds <= 0 or ports.clock.now() + s.wait_seconds > until:
            return s
        if selector is None:
            selector = ports.kube.get_deployment(s.request.namespace, s.request.deployment).selector
        ports.kube.wait_for_pods(s.request.namespace, selector, s.wait_seconds)


def _verify(ports: Ports, s: RolloutState) -> Pace:
    now = ports.clock.now()
    record = s.steps[-1]
    record.polls += 1
    drain, pace = _look(ports, s, record, now)
    if drain.status is Verdict.PASSED:
        record.drained_at = now
        s.carried_ips = []  # they were watched too
    if drain.status in (Verdict.PASSED, Verdict.DRAINING):
        s.bake_seconds = s.request.policy.bake_seconds if (s.more_steps and s.mode == "rollout") else 0
    s.drain = drain
    s.wait_seconds = next_look(s, pace, now) if drain.status is Verdict.WAITING else 0
    return pace


def _look(ports: Ports, s: RolloutState, record: StepRecord, now: float) -> tuple[DrainResult, Pace]:
    """This look's drain and what it waits for; deregisters the released targets (once each, or again when a look
    shows one still in the pool)."""
    watched = watch_failure(ports, s, f"during step {s.step + 1}'s drain", now)
    if watched:
        return DrainResult(Verdict.FAILED, watched[1], error=watched[0]), NOW
    _, mine, others = split_pods(ports, s)
    expected_old = s.replicas - s.plan[s.step]
    health = None
    booked = 0
    scaled_down = sum(1 for p in others if not p.terminating) <= expected_old
    named = len(record.deregistered)
    if scaled_down and record.out_proven_at is not None:
        # the step took its old pods out of service and the controller showed them out of the pool before they were
        # released (rollout.out_of_service): if they are the ones Kubernetes removed, nothing is left to prove
        probe = evaluate_drain(old_pods=others, expected_old=expected_old, watched_ips=s.watched_ips, health=None,
                               now=now, deadline=s.drain_deadline)
        if probe.leaving_ips and set(probe.leaving_ips) <= proven_out(s):
            drain = evaluate_drain(old_pods=others, expected_old=expected_old, watched_ips=s.watched_ips,
                                   health={}, now=now, deadline=s.drain_deadline)
            return replace(drain, reason=(
                f"{len(drain.leaving_ips)} old target(s) out of every target group's pool: taken out of service "
                "and deregistered by the Load Balancer Controller before their pods were released "
                f"({proof_name(record)})")), NOW
    if scaled_down and record.left_at is None and _left_to_the_controller(ports, s, record, others, now):
        record.left_at = now
        if not s.more_steps:
            # the last drain: its look comes once the load balancer would have stopped sending the targets new
            # requests had the controller deregistered them at once, and deregisters any it still shows in the pool
            return s.drain, Pace("deregistered")
        s.carried_ips = sorted(set(s.drain.leaving_ips) - held_ips(mine, others))
        s.left_at = now
        return DrainResult(
            Verdict.DRAINING,
            f"the Load Balancer Controller deregisters the {len(s.carried_ips)} released target(s): its conditions "
            "opened this step's gate on time; the last drain sees them out of every target group's pool",
            old_live=s.drain.old_live, expected_old=expected_old, leaving_ips=s.drain.leaving_ips), NOW
    if scaled_down and record.left_at is None and _started_by_albgate(ports, s, record, mine, others, now):
        leaving = s.drain.leaving_ips
        s.carried_ips = sorted(set(leaving) - held_ips(mine, others))
        return DrainResult(
            Verdict.DRAINING,
            f"albgate deregistered the {len(s.carried_ips)} released target(s) itself: out of the pool, draining; "
            "the last drain sees them out of every target group's pool",
            old_live=s.drain.old_live, expected_old=expected_old, leaving_ips=leaving), NOW
    if scaled_down and len(record.deregistered) > named:
        # albgate has just started the drain: the look that verifies it waits until the load balancer stops
        # sending the targets new requests (poll.DEREGISTRATION_LAG_SECONDS); where no look will be needed then,
        # exactly that long (no call to spread out)
        lag_over = (s.changed_at or now) + DEREGISTRATION_LAG_SECONDS
        if _deregistered_by_albgate(s, record, others, held_ips(mine, others), lag_over):
            return s.drain, Pace("lag", seconds=math.ceil(lag_over - now))
        return s.drain, Pace("deregistered")
    if scaled_down and _deregistered_by_albgate(s, record, others, held_ips(mine, others), now):
        # the last drain, every released target deregistered by albgate's own call that went through, the load
        # balancer's lag ago: ELB could show no more than that
        drain = evaluate_drain(old_pods=others, expected_old=expected_old, watched_ips=s.watched_ips, health={},
                               now=now, deadline=s.drain_deadline)
        return replace(drain, reason=(
            f"{len(drain.leaving_ips)} old target(s) out of every target group's pool: albgate's own "
            "DeregisterTargets made them `draining`, and the load balancer has stopped sending them new requests "
            "since")), NOW
    if scaled_down and drain_proven(ports, s, mine + others):
        # instead of a look at ELB, the controller's checkpoint: a completed reconcile from today's endpoints. Only
        # here, after albgate has left the drain or deregistered: read before that decision it changes who
        # deregisters, and at two hundred rollouts at once that lost requests (docs/benchmarks.md)
        drain = evaluate_drain(old_pods=others, expected_old=expected_old, watched_ips=s.watched_ips, health={},
                               now=now, deadline=s.drain_deadline)
        reason = (f"{len(drain.leaving_ips)} old target(s) out of every target group's pool: the Load Balancer "
                  "Controller's last completed reconcile of every binding worked from the endpoints left (its "
                  "checkpoint)")
        return replace(drain, reason=reason), NOW
    if scaled_down:
        view = shared_health(ports, s, now)
        booked, _ = budget_wait(ports, s, now, view.to_call, view.booked_at)  # its own turn, or another's call
        if not booked:
            health = look_or_throttled(ports, s, now, view.health)
    drain = evaluate_drain(
        old_pods=others,
        expected_old=expected_old,
        watched_ips=s.watched_ips,
        health=health,
        now=now,
        deadline=s.drain_deadline,
    )
    if drain.status is not Verdict.WAITING:
        return drain, NOW
    named_again = False
    if drain.leaving_ips and health is not None:  # unseen, they were named once already (_started_by_albgate)
        s.drain = drain
        before = s.changed_at
        deregister_released(ports, s, drain.leaving_ips, health, held=held_ips(mine, others), record=record)
        drain = s.drain
        named_again = s.changed_at != before
    if health is not None and _may_hand_over(s, drain, health, record):
        s.pending_drain_step = record.step
        return replace(drain, status=Verdict.DRAINING, reason=(
            f"{len(drain.leaving_ips)} old target(s) deregistered by albgate; step {record.step + 1}'s "
            "gate releases nothing until a look shows them out of every target group's pool")), NOW
    if booked:
        return drain, Pace("booked", booked)
    if not scaled_down:
        # waiting for Kubernetes: no Describe* call was made, so no throttling an earlier look met slows this one
        return drain, Pace("scale-down")
    if named_again:
        # this look deregistered a target still in the pool: the look that verifies it waits for the lag too
        return drain, Pace("deregistered")
    return drain, Pace("drain")


def _left_to_the_controller(ports: Ports, s: RolloutState, record: StepRecord, others: list[Pod], now: float) -> bool:
    """Whether a scaled-down step of a rollout may leave its released targets to the Load Balancer Controller; True
    sets ``s.drain`` to the unseen drain. Between two steps the drain is then handed over to the next gate without
    a call (``Verdict.DRAINING``); the last step's look waits as after a deregistration of albgate's.

    Only when the controller has just shown it keeps up: its target-health conditions opened this step's gate
    (``StepRecord.opened_by_controller``: its reconcile of the step's bindings went through); it registered the
    step's pods promptly (``StepRecord.registration_lag`` at most ``PROMPT_REGISTRATION_SECONDS``: its client-side
    queue of RegisterTargets/DeregisterTargets is short); and the account's Describe* bucket is not short, neither
    for this rollout's calls (``s.throttles``) nor for any albgate execution's lately (``budget.short``): a
    controller whose calls are throttled backs off, and its reconcile asks ELB about the targets it deregistered
    before it deregisters the next. The controller deregisters a terminating pod's target in its next reconcile,
    which the pod's change starts. albgate's own DeregisterTargets would take a token from the account's
    RegisterTargets/DeregisterTargets bucket, 20 refilled at 4 a second, which the controllers' registrations need
    (docs/facts.md, "ELB API throttling"), to do what the controller does anyway.
    The targets are carried (``carried_ips``) as after albgate's own deregistration: a later gate's look at ELB
    that still shows one in the pool deregisters it, and the last drain sees every one out of the pool."""
    if s.mode != "rollout" or not record.opened_by_controller or s.throttles:
        return False
    if record.registration_lag is None or record.registration_lag > PROMPT_REGISTRATION_SECONDS:
        return False
    if ports.budget.short():
        return False
    drain = evaluate_drain(old_pods=others, expected_old=s.replicas - s.plan[s.step], watched_ips=s.watched_ips,
                           health=None, now=now, deadline=s.drain_deadline)
    if not drain.leaving_ips:
        return False
    s.drain = drain
    return True


def _started_by_albgate(ports: Ports, s: RolloutState, record: StepRecord, mine: list[Pod], others: list[Pod],
                        now: float) -> bool:
    """Deregister every released target of a scaled-down step at once, without a look; True when the step may then
    hand its drain over to the next gate on that alone (``Verdict.DRAINING``, no Describe* call).

    The released pods are terminating, so the only right state for their targets is `draining` or gone, whoever
    starts it: albgate does not wait for the Load Balancer Controller (which may be throttled by the very calls
    many rollouts make) but names each target itself, once, on its group's port (learnt from an earlier answer, or
    from the TargetGroupBinding and Service). DeregisterTargets' success makes a registered target `draining`, so
    the targets are known out of the pool without asking ELB. Only between two steps of a rollout may the step go
    on from there (as ``_may_hand_over``). The next gate does not wait for them: they receive no new request once
    the load balancer has caught up, and their pods keep serving what they have for the preStop sleep. They are
    carried (``carried_ips``): every later drain watches them, so the last one sees them out of the pool, and a
    gate's look at ELB that still shows one in the pool deregisters it again on the port ELB shows."""
    # scaled down and not looked at: WAITING, with the leaving IPs (no deadline is read before a look)
    drain = evaluate_drain(old_pods=others, expected_old=s.replicas - s.plan[s.step], watched_ips=s.watched_ips,
                           health=None, now=now, deadline=s.drain_deadline)
    s.drain = drain
    if not drain.leaving_ips:
        return False
    held = held_ips(mine, others)
    # deregistered by an earlier step already, unless a step left them to the controller without proof since; or
    # taken out of service and proven out of the pool before their release (rollout.out_of_service)
    carried = set() if s.left_at is not None else set(s.carried_ips)
    out = proven_out(s)
    deregister_released(ports, s, tuple(ip for ip in drain.leaving_ips if ip not in carried and ip not in out), None,
                        held=held, record=record)
    if s.mode != "rollout" or not s.more_steps:
        return False
    done = set(record.deregistered)
    return all(ip in held or ip in carried or ip in out or f"{g.arn}|{ip}" in done
               for g in s.target_groups for ip in drain.leaving_ips)


def _deregistered_by_albgate(s: RolloutState, record: StepRecord, others: list[Pod], held: set[str],
                             now: float) -> bool:
    """Whether the last drain of a rollout is over without a look at ELB: every target it releases in every group
    was deregistered by albgate's own DeregisterTargets call that went through (``record.deregistered``; a throttled
    call records nothing), on the group's one port (``target_port``, which a look would have shown mixed), or was
    carried from an earlier step and this step's gate has looked at ELB since (a look deregisters again any carried
    target it still shows in the pool, into ``record.deregistered``); and the load balancer's lag has passed since
    the last such call (poll.DEREGISTRATION_LAG_SECONDS, from ``s.changed_at``).

    DeregisterTargets' success puts a registered target into `draining` at once, and ELB shows it so until its
    deregistration delay ends whatever it still serves (docs/facts.md, "Deregistration and draining"), so a look
    would show only what the call already said. A target left to the controller (``s.left_at``), or a step whose
    gate never looked at ELB, still ends on a look or on the controller's checkpoint."""
    if s.mode != "rollout" or s.more_steps or s.left_at is not None or not record.deregistered:
        return False
    if any(g.ports_mixed or g.target_port is None for g in s.target_groups):
        return False
    if s.changed_at is None or now < s.changed_at + DEREGISTRATION_LAG_SECONDS:
        return False
    drain = evaluate_drain(old_pods=others, expected_old=s.replicas - s.plan[s.step], watched_ips=s.watched_ips,
                           health=None, now=now, deadline=s.drain_deadline)
    carried = set(s.carried_ips) if record.observed_at is not None else set()
    done = set(record.deregistered)
    return all(ip in held or ip in carried or f"{g.arn}|{ip}" in done
               for g in s.target_groups for ip in drain.leaving_ips)


def _may_hand_over(s: RolloutState, drain: DrainResult, health: dict[str, list[TargetHealth]], record: StepRecord) -> bool:
    """Whether a step may leave its drain to the next step's gate (``Verdict.DRAINING``) instead of waiting.

    Only between two steps of a rollout (a rollback and the last step wait here, so the execution ends with
    the targets seen out of the pool), and only once nothing of the drain is left to do but look: Kubernetes has
    scaled the old ReplicaSet down, and every released target is `draining` or gone in every target group, or
    albgate has just deregistered it. Seeing that is then the same here or in the next step's gate, which checks
    it on the DescribeTargetHealth calls it makes anyway while the next pods start.
    """
    if s.mode != "rollout" or not s.more_steps or drain.old_live > drain.expected_old:
        return False
    deregistered = set(record.deregistered)
    leaving = set(drain.leaving_ips)
    return all(
        t.state in (DRAINING, UNUSED) or f"{arn}|{t.target_id}" in deregistered
        for arn, targets in health.items()
        for t in targets
        if t.target_id in leaving
    )


def check_leaving(ports: Ports, s: RolloutState, health: dict[str, list[TargetHealth]], mine: list[Pod],
                  others: list[Pod], record: StepRecord) -> None:
    """On a gate's look at ELB: a target still in the pool (`initial`, `healthy`, `unhealthy`) whose pod is going
    is deregistered on the port ELB shows: one carried (``carried_ips``: deregistered unseen, on a port that was
    not the target's), or a terminating pod's that Kubernetes removed by itself while its controller is down. A
    carried one no group shows any more is no longer carried: one shown `draining` stays carried until its delay
    ends, so that no later drain names it again (what a second DeregisterTargets does to a draining target is
    not documented: docs/facts.md, "ELBv2 DeregisterTargets")."""
    leaving = set(s.carried_ips) | {p.ip for p in others if p.terminating and p.ip}
    if leaving:
        deregister_released(ports, s, tuple(sorted(leaving)), health, held=held_ips(mine, others), record=record)
    present = {t.target_id for targets in health.values() for t in targets}
    s.carried_ips = [ip for ip in s.carried_ips if ip in present]
