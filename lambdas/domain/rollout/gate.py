"""Check Target Health: may this step's old pods go? The gate over every new pod's target in every group.

Invariant: the decision itself is ``lambdas.domain.gate.evaluate_gate`` (pure); this use case reads the cluster
and, only when a look can change the answer, the target groups, then returns the state with the gate's result
and the wait before the next look (``observe.next_look``). A step's gate passes only once the drain the previous
step handed over has ended too. On the same looks, a new pod's target that nobody registered is registered
(``targets.register_missing``): no Describe* call is added for it. During a rollout every look first reads the
CloudWatch alarms the policy names (``alarms.during``): one failing fails the step. A gate that passes on its new
targets first takes the old pods the step removes out of service and passes again only once the controller has
deregistered them (``rollout.out_of_service``); its looks meanwhile ask ELB nothing. Between looks, a wait for
what only the cluster shows is watched inside the task, up to the policy's ``watch_seconds`` (``Watched``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from lambdas.domain.poll import (
    CONDITIONS_QUICK_LOOKS,
    EXPECTED_TURN_EARLY_FRACTION,
    POD_START_POLL_SECONDS,
)
from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, GateResult, Verdict, all_registering, evaluate_drain, evaluate_gate, pods_needing_targets
from lambdas.domain.ports import (
    ALBGATE_GATE,
    HEALTHY,
    INITIAL_HEALTH_CHECKING,
    LBC_GATE_PREFIX,
    Deployment,
    DeploymentCondition,
    Pod,
    Ports,
    TargetHealth,
)
from lambdas.domain.rollout.conditions import (
    carries_controller_gates,
    health_from_conditions,
    registration_lag,
    unwritten_groups,
)
from lambdas.domain.rollout.drain import check_leaving
from lambdas.domain.rollout.left import follow_left
from lambdas.domain.rollout import out_of_service
from lambdas.domain.rollout.nudge import nudge_the_controller
from lambdas.domain.rollout.watched import watch_failure
from lambdas.domain.rollout.observe import (
    NOW,
    STALE_OBSERVATION_INTERVALS,
    Pace,
    budget_wait,
    interval,
    next_look,
    throttled_back_off,
)
from lambdas.domain.rollout.pods import is_released, replica_failure, split_pods
from lambdas.domain.rollout.targets import (
    deregister_released,
    group_summary,
    held_ips,
    look_or_throttled,
    register_missing,
    shared_health,
)
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo

Health = dict[str, list[TargetHealth]]


def check_target_health(ports: Ports, s: RolloutState, *, watch_seconds: int = 0) -> RolloutState:
    """One look of the gate, and, with ``watch_seconds`` (the policy's ``watch_seconds``), the looks
    that follow while the gate waits for something only the cluster shows and the wait ends within that many
    seconds of the task: between them the task watches those objects (``Watched``), and looks again as soon as
    one changes or the wait is over. It returns when the gate passed or failed, or its wait is for ELB, for a
    time, or longer than the task has left: the Wait state then waits ``s.wait_seconds`` as it always did."""
    until = ports.clock.now() + watch_seconds
    while True:
        watched = _check(ports, s)
        if watched is None or ports.clock.now() + s.wait_seconds > until:
            return s
        if watched.bindings:
            ports.kube.wait_for_bindings(s.request.namespace, s.wait_seconds)
        else:
            ports.kube.wait_for_pods(s.request.namespace, watched.selector, s.wait_seconds)


@dataclass(frozen=True)
class Watched:
    """What a gate's wait is for, where the cluster shows it: the Deployment's pods (``selector``: the new pods
    starting, the controller's conditions on them), or the namespace's TargetGroupBindings (``bindings``: the
    controller's checkpoint once old pods went out of service)."""

    selector: dict[str, str]
    bindings: bool = False


# What a gate's pace waits for (``observe.Pace.wait_for``) that a change in the cluster ends; the rest are waits
# for ELB (an answer, a turn of the account's bucket) or for a time, which no watch can end sooner. Pods starting
# are watched only where the look that finds them up reads the controller's conditions (``Pace.elb_next``): else
# that look asks ELB, and coming sooner would only spend its Describe* token sooner.
_PODS_WAITS = frozenset({"rs", "pods", "conditions"})
_BINDINGS_WAITS = frozenset({"out-of-service"})


def _check(ports: Ports, s: RolloutState) -> Watched | None:
    """One look (sets ``s.gate`` and ``s.wait_seconds``); what the wait that follows may be watched on, or None."""
    if s.gate.status is Verdict.FAILED:
        # Start Step found an alarm since the previous step's gate and wrote nothing: there is nothing to look at,
        # and `Targets Healthy?` takes the failure to the rollback decision.
        s.wait_seconds = 0
        return None
    now = ports.clock.now()
    record = s.steps[-1]
    record.polls += 1
    if record.out_at is not None:
        gate, pace, selector = _settle_out_of_service(ports, s, record, now)
    else:
        gate, pace, selector = _look(ports, s, record, now)
        if gate.status is Verdict.PASSED:
            _, _, others = split_pods(ports, s)
            gate, pace = out_of_service.take_out(ports, s, record, gate, others, now)
    if gate.status is Verdict.FAILED:
        gate = _failed(s, gate, now)
    elif gate.status is Verdict.PASSED:
        record.gate_passed_at = now
    s.gate = gate
    s.wait_seconds = next_look(s, pace, now) if gate.status is Verdict.WAITING else 0
    if s.wait_seconds <= 0 or selector is None:
        return None
    if pace.wait_for in _PODS_WAITS and not pace.elb_next:
        return Watched(selector)
    if pace.wait_for in _BINDINGS_WAITS and record.out_at is not None:
        return Watched(selector, bindings=True)
    return None


def _conditions_to_come(s: RolloutState, candidates: list[Pod]) -> bool:
    """Whether the look that finds the step's pods up will read the controller's conditions rather than ask ELB: the
    policy reads them, every group's binding is known, and every candidate carries the controller's gate for each
    (the webhook injects it when the pod is created, so pods still starting carry it too)."""
    groups = s.target_groups
    return (s.request.policy.read_controller_conditions and bool(groups) and bool(candidates)
            and all(g.binding for g in groups)
            and all(LBC_GATE_PREFIX + g.binding in p.readiness_gates for p in candidates for g in groups))


def _settle_out_of_service(ports: Ports, s: RolloutState, record: StepRecord,
                           now: float) -> tuple[GateResult, Pace, dict[str, str] | None]:
    """A look after the step's gate took old pods out of service (rollout.out_of_service): the policy's alarms and
    metrics as on every look, then whether the controller has shown them out of the pool. Also the Deployment's
    pod selector, once read."""
    watched = watch_failure(ports, s, f"during step {s.step + 1}'s gate", now)
    if watched:
        return GateResult(Verdict.FAILED, watched[1], error=watched[0]), NOW, None
    dep = ports.kube.get_deployment(s.request.namespace, s.request.deployment)
    _, mine, others = split_pods(ports, s, dep)
    return *out_of_service.settle(ports, s, record, mine, others, dep, now), dep.selector


def _look(ports: Ports, s: RolloutState, record: StepRecord,
          now: float) -> tuple[GateResult, Pace, dict[str, str] | None]:
    """This look's gate (its verdict before the blind check), what it waits for, and the Deployment's pod selector
    once read. A gate that has not passed says so when Kubernetes cannot create the Deployment's pods
    (``replica_failure``): "waiting for the new pods" alone would not tell a release engineer that none can be
    created."""
    watched = watch_failure(ports, s, f"during step {s.step + 1}'s gate", now)
    if watched:
        return GateResult(Verdict.FAILED, watched[1], error=watched[0]), NOW, None
    dep = ports.kube.get_deployment(s.request.namespace, s.request.deployment)  # one GET for pods and conditions
    gate, pace = _look_at(ports, s, record, now, dep)
    failing = replica_failure(dep)
    if failing and gate.status is not Verdict.PASSED:
        gate = replace(gate, reason=f"{gate.reason}; {failing}")
    return gate, pace, dep.selector


def _look_at(ports: Ports, s: RolloutState, record: StepRecord, now: float,
             dep: Deployment) -> tuple[GateResult, Pace]:
    target, mine, others = split_pods(ports, s, dep)
    if target is None:
        return _unseen(s, "waiting for the Deployment controller to create the new ReplicaSet",
                       "before the new ReplicaSet appeared", now), Pace("rs")
    follow_left(ports, s, mine, others, now)
    live = [p for p in mine if not p.terminating]
    progressing = dep.condition("Progressing")
    if _deadline_exceeded_during_step(progressing, record.started_at) and _pods_not_up(live, s.plan[s.step]):
        reason = f"Kubernetes reports ProgressDeadlineExceeded: {progressing.message or 'no progress'}"
        return replace(s.gate, status=Verdict.FAILED, reason=reason), NOW

    released = [p for p in live if is_released(p)]
    # Only pods behind albgate's gate wait for it; a rollback's ungated pods turn Ready by themselves.
    candidates = [p for p in live if not is_released(p) and ALBGATE_GATE in p.readiness_gates]
    needed = s.plan[s.step] - len(released)
    handed_over = s.pending_drain_step is not None

    health: Health | None = None
    seen: Health | None = None
    previous_look: float | None = None
    look_at: float | None = None
    # the step's own pods are up and what they wait for is their targets (not the previous step's drain alone)
    started = not handed_over and pods_needing_targets(candidates, needed)
    if started and record.first_ready_at is None:
        record.first_ready_at = now
    if started and s.request.policy.read_controller_conditions:
        # The controller's own conditions on the pods, when they can tell (lambdas/domain/rollout/conditions.py):
        # no call of the account's Describe* bucket; ELB is asked only when they cannot.
        ask_at = elb_asked_at(s, record)
        # until they are overdue, a condition the controller has not written yet is a target not registered yet
        seen = health_from_conditions(s.target_groups, candidates, unwritten=now < ask_at)
        if seen is not None:
            # the groups where a target is missing so (none once they are overdue: an unwritten condition then
            # sends the look to ELB), since when: the first look at ELB registers the targets nobody registered
            # once the grace has passed since then (rollout.targets.register_missing)
            missing = unwritten_groups(s.target_groups, candidates)
            record.unregistered_since = {arn: min(record.unregistered_since.get(arn, now), now) for arn in missing}
            if record.registration_lag is None:
                record.registration_lag = registration_lag(s.target_groups, candidates)
            gate = evaluate_gate(candidates=candidates, needed=needed, health=seen, now=now, deadline=s.step_deadline)
            nudge_at = ask_at  # the next deadline of this look's pace: the nudge, or ELB asked; never after ask_at
            checked = health_checked(s.target_groups, candidates, seen)
            if not checked:
                record.checked_at = None  # a target still registering (or a new pod's) has had no check yet
            if gate.status is Verdict.WAITING and record.nudged_at is None and checked:
                # the controller has written that ELB health-checks every target the gate waits for: once each has
                # had its one check, or once they are overdue, the controller's own look, nudged, answers for
                # albgate's
                nudge_at = checked_nudge_at(s, record, now, ask_at)
                if now >= nudge_at:
                    nudged = nudge_the_controller(ports, s, record, candidates, None, now, checked=now < ask_at)
                    if nudged:
                        gate = replace(gate, reason=f"{gate.reason}; {nudged}")
                        ask_at = elb_asked_at(s, record)
                    nudge_at = ask_at
            if gate.status is not Verdict.WAITING or now < ask_at:
                return _from_conditions(s, record, candidates, gate, seen, now, nudge_at)
            # overdue even after a nudge: a healthy target's condition would be True by now; ELB tells why not (an
            # `unhealthy` target fails the step at once, where the controller may back off before it writes so)
    if pods_needing_targets(candidates, needed) or (handed_over and needed <= 0):
        # whether the controller's conditions tell, or may come to tell, while no call can be made
        readable = seen is not None or (started and s.request.policy.read_controller_conditions
                                        and carries_controller_gates(s.target_groups, candidates))
        look_at = expected_turn_at(s, record, candidates)
        if started and seen is None and look_at is not None and now + 0.5 < look_at:
            # earlier steps' targets needed this long after their pods started: a look sooner would spend a
            # Describe* token on an answer that cannot pass the gate yet
            gate = evaluate_gate(candidates=candidates, needed=needed, health=None, now=now, deadline=s.step_deadline)
            if gate.status is Verdict.WAITING:
                wait = max(1, math.ceil(look_at - now))
                turned = _quickest_turn(s, record)
                return replace(gate, reason=(
                    f"the new pods started; an earlier step's targets took {turned:.0f} s or more to turn healthy "
                    f"after theirs, so ELB is asked in {wait} s")), Pace("turn", seconds=wait)
            return gate, NOW
        # other executions' recent answers for the same groups stand in for calls (lambdas/domain/looks.py)
        view = shared_health(ports, s, now)
        if view.to_call and s.elb_after is not None and now + 0.5 < s.elb_after:
            # still backing off after a throttled call: no call yet, but the controller's conditions are read
            # (and it is nudged) meanwhile, as while a turn is booked
            backing_off = math.ceil(s.elb_after - now)
            gate = _unseen(s, f"DescribeTargetHealth throttled ({s.throttles}x); backing off, the next call in "
                           f"{backing_off} s", "while DescribeTargetHealth was throttled", now)
            return _meanwhile(ports, s, record, candidates, gate, backing_off, readable, now)
        booked, following = budget_wait(ports, s, now, view.to_call, view.booked_at)
        if following:
            gate = _unseen(s, f"another albgate rollout of the same target group(s) has a DescribeTargetHealth call "
                           f"booked sooner than this one's turn; this look reads its answer in {booked} s",
                           "while albgate waited for another rollout's look at the same target group(s)", now)
            return _meanwhile(ports, s, record, candidates, gate, booked, readable, now)
        if booked:
            gate = _unseen(s, f"albgate's share of the account's Describe* calls is spent (other albgate rollouts "
                           f"are polling); this look is booked in {booked} s",
                           "while albgate waited for its share of the Describe* calls", now)
            return _meanwhile(ports, s, record, candidates, gate, booked, readable, now)
        health = look_or_throttled(ports, s, now, view.health)
        if health is None:
            gate = _unseen(s, f"DescribeTargetHealth throttled ({s.throttles}x); backing off",
                           "while DescribeTargetHealth was throttled", now)
            back_off = throttled_back_off(s, now)
            return _meanwhile(ports, s, record, candidates, gate, back_off, readable, now)
        previous_look, record.observed_at = record.observed_at, now
        if not handed_over:  # a handed-over drain is followed below, on the same answer
            check_leaving(ports, s, health, mine, others, record)
            s.left_at = None  # the targets left to the controller are seen, and named if still in the pool

    gate = evaluate_gate(candidates=candidates, needed=needed, health=health, now=now, deadline=s.step_deadline)
    if health is None:
        stuck = gate.starting > 0 and gate.unschedulable == gate.starting  # every starting pod waits for a node
        return gate, Pace("pods", unschedulable=stuck, elb_next=not _conditions_to_come(s, candidates))
    gate = replace(gate, groups=group_summary(s.target_groups, candidates, health))
    if gate.status is not Verdict.FAILED:  # nothing is added to a step that fails
        registered = register_missing(ports, s, candidates, health, record, now)
        # a gate that passes on ELB's answer alone releases the pods now, and that write is the nudge itself
        held = gate.status is Verdict.WAITING or seen is not None
        nudged = nudge_the_controller(ports, s, record, candidates, health, now) if held else ""
        for note in (registered, nudged):
            if note:
                gate = replace(gate, reason=f"{gate.reason}; {note}")
    targets_healthy = gate.status is Verdict.PASSED
    if targets_healthy and seen is None and record.turned_after is None:
        anchor = started_at(candidates, record)
        if anchor is not None:
            # the flip came after the look before this one (or, without one, after the pods started)
            before = previous_look if previous_look is not None and previous_look > anchor else anchor
            record.turned_after = round(before - anchor, 3)
    if handed_over and gate.status is not Verdict.FAILED:
        gate = _follow_handed_over_drain(ports, s, gate, mine, others, health, now)
    if all_registering(candidates, health):
        if record.registering_since is None:
            # a step whose first look waited for the turn (expected_turn_at) has had its targets registering since
            # its pods started, unseen meanwhile: its looks go on at the pace of that age, not from the start again
            waited_for_turn = look_at is not None and started and seen is None
            record.registering_since = min(now, started_at(candidates, record) or now) if waited_for_turn else now
        registering = True
    else:
        record.registering_since = None
        registering = False
    if gate.status is Verdict.PASSED and seen is not None:
        # the conditions said WAITING (on anything else the look went by them above), ELB says healthy
        return _held_by_the_controllers_gate(record, gate, now), Pace("conditions", seconds=conditions_overdue_seconds(s))
    if gate.status is Verdict.PASSED:
        return gate, NOW
    if targets_healthy:  # the new targets are healthy; the previous step's are still draining
        return gate, Pace("handed-over-drain")
    return gate, Pace("registering" if registering else "targets")


def _meanwhile(ports: Ports, s: RolloutState, record: StepRecord, candidates: list[Pod], gate: GateResult,
               wait: int, readable: bool, now: float) -> tuple[GateResult, Pace]:
    """A look that could not ask ELB: its turn is booked, its call was throttled, or it still backs off ``wait``
    seconds. Once the conditions are overdue it nudges the controller (rollout.nudge): the controller's own look
    answers for albgate's. Where the controller's conditions can tell (``readable``), or after a nudge, the pods are
    read again each controller requeue meanwhile: the controller may write the targets healthy before the call may
    go (none is made before it); otherwise the look waits the whole ``wait``."""
    nudged = ""
    overdue = record.first_ready_at is not None and now >= record.first_ready_at + conditions_overdue_seconds(s)
    if gate.status is Verdict.WAITING and overdue:
        nudged = nudge_the_controller(ports, s, record, candidates, None, now)
    if nudged:
        gate = replace(gate, reason=f"{gate.reason}; {nudged}")
    return gate, Pace("booked", min(wait, CONTROLLER_REQUEUE_SECONDS) if readable or nudged else wait)


def _held_by_the_controllers_gate(record: StepRecord, gate: GateResult, now: float) -> GateResult:
    """ELB called the targets healthy, but the controller's conditions on the pods do not say so yet: the gate
    WAITING. The controller's gate holds those pods out of Ready until it writes them healthy, so releasing them now
    would let no old pod go sooner; it would only start the drain's wait for a scale-down that comes when the
    controller writes, bounded by the drain deadline instead of the step's. The conditions are trusted again from
    now, until they are overdue once more (a throttled controller writes late, then writes)."""
    record.first_ready_at = now
    return replace(gate, status=Verdict.WAITING, release=(), reason=(
        f"{gate.reason}; the Load Balancer Controller has not written them healthy on the pods yet, and its gate "
        "holds them until it does"))


def health_checked(groups: list[TargetGroupInfo], candidates: list[Pod], seen: Health) -> bool:
    """Whether the conditions say that every started candidate's target in every group is registered and either
    healthy or in its initial health checks (``Elb.InitialHealthChecking``): the controller has reconciled since it
    registered them, and ELB has them, so a nudge gets the flip written by the controller's own look. A target the
    conditions still call ``Elb.RegistrationInProgress`` was not looked at since its registration, by a controller
    that backs off (throttled) or a load balancer still registering: there albgate's own look, in its share of the
    bucket, tells more, and adds no call to a controller whose calls may be refused."""
    started = [p.ip for p in candidates if p.containers_ready and p.ip]
    for g in groups:
        states = {t.target_id: t for t in seen.get(g.arn, [])}
        for ip in started:
            t = states.get(ip)
            if t is None or (t.state != HEALTHY and t.reason != INITIAL_HEALTH_CHECKING):
                return False
    return True


def checked_nudge_at(s: RolloutState, record: StepRecord, now: float, ask_at: float) -> float:
    """When a step whose conditions say ELB health-checks every target it waits for (``health_checked``) nudges the
    controller: one health-check interval after a look first read them so (``StepRecord.checked_at``, set here), and
    no later than once they are overdue (``ask_at``). The controller wrote `Elb.InitialHealthChecking` after a
    DescribeTargetHealth that found each target registered, and a registered target needs one passing check to be
    healthy, each check about an interval apart (docs/facts.md, "ALB target health"): a target that passes is healthy
    by then, while the controller would look again only one requeue (15 s) after its last look. With several groups,
    the shortest of their intervals: the nudge has the controller look at every binding of the pod, so the groups
    that check that often are written then and the others keep their own requeue (two load balancers, one checking
    every 15 s: 1.080 -> 1.066 of the lower bound at the median, where the longest interval gains nothing)."""
    if record.checked_at is None:
        record.checked_at = now
    due = record.checked_at + interval(s)
    if record.first_ready_at is not None:  # no nudge sooner than one requeue after the step's pods started
        due = max(due, record.first_ready_at + CONTROLLER_REQUEUE_SECONDS)
    return min(ask_at, due)


def expected_turn_at(s: RolloutState, record: StepRecord, candidates: list[Pod]) -> float | None:
    """When this step's gate first asks ELB, where no controller's gate is on its pods (EKS Auto Mode, a namespace
    not labelled): as long after its pods turned ContainersReady (``started_at``) as the quickest earlier step of the
    same mode took at least until its targets turned healthy (``StepRecord.turned_after``, the look before the one
    that saw them healthy), less a fifth of that (poll.EXPECTED_TURN_EARLY_FRACTION). None when no earlier step
    tells (the first step, steps that passed on the controller's conditions) or the pods carry the controller's gate
    (its conditions pace those looks, and ``policy.read_controller_conditions: false`` asks ELB every interval on
    purpose): the gate then looks as soon as its pods start, and once per interval after.

    A load balancer registers and health-checks one Deployment's pods alike from one step to the next (the same
    target group, health check and pods), and AWS documents no bound on registration (docs/facts.md, "ALB target
    health"), so the earlier steps are the one measure of it; registrations of one kind still vary by a fraction of
    their length (3-5 minutes where they are slow), hence the margin. A look sooner finds the targets still
    `initial` and spends a token of the account's Describe* bucket for nothing; a target that turns sooner still is
    seen that much later, and one that turns later at the next interval, as before (docs/benchmarks.md, section 3,
    has what it saves and costs)."""
    if any(gate.startswith(LBC_GATE_PREFIX) for p in candidates for gate in p.readiness_gates):
        return None
    anchor = started_at(candidates, record)
    quickest = _quickest_turn(s, record)
    if anchor is None or quickest is None:
        return None
    return anchor + quickest * (1 - EXPECTED_TURN_EARLY_FRACTION)


def started_at(candidates: list[Pod], record: StepRecord) -> float | None:
    """When the step's started candidates were all ContainersReady: the latest lastTransitionTime of their
    ContainersReady condition (whole seconds, as the API writes it), or the look that first saw them so
    (``first_ready_at``) where a pod does not say; None before either is known."""
    times = [p.transitioned_at("ContainersReady") for p in candidates if p.containers_ready and p.ip]
    if times and all(t is not None for t in times):
        return max(t for t in times if t is not None)
    return record.first_ready_at


def _quickest_turn(s: RolloutState, record: StepRecord) -> float | None:
    turns = [r.turned_after for r in s.steps
             if r is not record and r.mode == record.mode and r.turned_after is not None]
    return min(turns) if turns else None


def elb_asked_at(s: RolloutState, record: StepRecord) -> float:
    """When the gate of a step whose pods carry the controller's gate asks ELB, if the conditions have not told by
    then: once they are overdue (``conditions_overdue_seconds`` after the step's first pod was seen ContainersReady),
    and no sooner than one controller requeue after the step's last nudge. Where they say ELB health-checks every
    target (``health_checked``), the gate nudges the controller instead (rollout.nudge), an interval after it first
    read them so or at the first overdue look, whichever comes first (``checked_nudge_at``): a v3.4+ controller
    then reconciles at once and writes what its own DescribeTargetHealth answered, healthy or the reason it is not,
    so albgate's call would only repeat it. An older controller, or one
    that is down, does not answer a nudge: ELB is asked a requeue later."""
    assert record.first_ready_at is not None
    ask_at = record.first_ready_at + conditions_overdue_seconds(s)
    if record.nudged_at is not None:
        ask_at = max(ask_at, record.nudged_at + CONTROLLER_REQUEUE_SECONDS)
    return ask_at


def conditions_overdue_seconds(s: RolloutState) -> int:
    """How long after a look first saw one of the step's pods ContainersReady the controller's conditions should
    say `healthy` for a target that is: registration starts at ContainersReady at the earliest (the pod may have
    turned so up to a pods' look before), ELB needs HealthyThresholdCount passed checks one interval apart, the
    controller learns it at its next requeue of the pending gate (CONTROLLER_REQUEUE_SECONDS), and one interval
    of slack covers a late registration. Until then the gate reads only the conditions; after it, it asks ELB."""
    return (max(g.health_check_interval_seconds * (g.healthy_threshold + 1) for g in s.target_groups)
            + CONTROLLER_REQUEUE_SECONDS - POD_START_POLL_SECONDS)


def _from_conditions(s: RolloutState, record: StepRecord, candidates: list[Pod], gate: GateResult, seen: Health,
                     now: float, due_at: float) -> tuple[GateResult, Pace]:
    """The gate on the health the controller's conditions gave: released, failed fast, or waiting on the pods'
    pace (reading pods costs no Describe* call, and the controller writes a change as soon as it sees it), and no
    later than ``due_at``: the step's nudge (``checked_nudge_at``) or its first look at ELB (``elb_asked_at``),
    whichever comes first. ELB is not asked sooner: the controller already asks it for the very targets the gate
    waits for, and a look at ELB would only learn a change up to one requeue sooner (docs/facts.md, "Load Balancer
    Controller: the target-health pod condition")."""
    gate = replace(gate, groups=group_summary(s.target_groups, candidates, seen),
                   reason=f"{gate.reason} (read from the Load Balancer Controller's target-health conditions)")
    record.observed_at = now
    record.registering_since = None
    if gate.status is Verdict.PASSED:
        record.opened_by_controller = True
    if gate.status is not Verdict.WAITING:
        return gate, NOW
    quick = quick_conditions_look(record, now)
    if quick:
        record.quick_looks += 1
    return gate, Pace("conditions", seconds=max(1, math.ceil(due_at - now)), quick=quick)


def quick_conditions_look(record: StepRecord, now: float) -> bool:
    """Whether the next look at the controller's conditions comes at the quick pace (poll.CONDITIONS_*): once the
    controller's first requeue after the step's first pod turned ContainersReady could have written a target
    healthy (a pods' look after it, at the latest), for the step's first CONDITIONS_QUICK_LOOKS such looks."""
    if record.first_ready_at is None or record.quick_looks >= CONDITIONS_QUICK_LOOKS:
        return False
    return now >= record.first_ready_at + CONTROLLER_REQUEUE_SECONDS - POD_START_POLL_SECONDS


def _unseen(s: RolloutState, reason: str, late: str, now: float) -> GateResult:
    """The gate when this look could not see the targets: WAITING, or FAILED once the step's deadline passed."""
    if now >= s.step_deadline:
        return GateResult(Verdict.FAILED, f"step deadline passed {late}")
    return GateResult(Verdict.WAITING, reason)


def _follow_handed_over_drain(
    ports: Ports,
    s: RolloutState,
    gate: GateResult,
    mine: list[Pod],
    others: list[Pod],
    health: Health,
    now: float,
) -> GateResult:
    """Check the targets the previous step handed over still draining (``verify_drain``), on the gate's look.

    The step releases nothing until a look shows them out of every target group's pool, so a step's drain is
    verified before the next step lets any old pod go, as when Verify Drain waits for it, but on the same
    DescribeTargetHealth calls as the gate and while the new pods start. Returns the gate once the drain is
    counted: FAILED when the drain deadline passed, PASSED only when the gate passed and the targets are out of
    the pool, else WAITING (releasing nothing). Released targets still in the pool are deregistered, as in Verify Drain.
    """
    step = s.pending_drain_step
    assert step is not None
    record = next(r for r in reversed(s.steps) if r.step == step and r.mode == s.mode)
    drain = evaluate_drain(
        old_pods=others,
        expected_old=s.replicas - s.plan[step - 1],
        watched_ips=s.watched_ips,
        health=health,
        now=now,
        deadline=s.drain_deadline,
    )
    s.drain = replace(drain, step=step)
    if drain.status is Verdict.FAILED:
        return replace(gate, status=Verdict.FAILED, reason=f"step {step}'s old targets did not leave the pool: {drain.reason}",
                       release=())
    if drain.status is Verdict.PASSED:
        record.drained_at = now
        s.pending_drain_step = None
        return gate
    deregister_released(ports, s, drain.leaving_ips, health, held=held_ips(mine, others), record=record)
    if gate.status is Verdict.PASSED:
        reason = f"{gate.reason}; waiting for step {step}'s old targets to leave the pool ({drain.reason})"
        return replace(gate, status=Verdict.WAITING, reason=reason, release=())
    return gate


def _pods_not_up(live: list[Pod], target: int) -> bool:
    """Whether some of the pods the step needs are not up: fewer live new pods than the step's target, or one not
    ContainersReady (a crash, an image that does not pull, no node for it). Only then does Kubernetes'
    ProgressDeadlineExceeded fail the step. Once every one is up and only gates hold them (the controller's, which
    waits for target health, and albgate's), Kubernetes' clock measures the very wait that albgate's own step
    deadline bounds; Kubernetes itself only reports the condition and goes on (docs/facts.md, "Kubernetes
    Deployment controller": progress deadline). A throttled account's controllers can hold gates that long."""
    return len(live) < target or any(not p.containers_ready for p in live)


def _deadline_exceeded_during_step(progressing: DeploymentCondition | None, step_started_at: float) -> bool:
    """ProgressDeadlineExceeded raised by this step's pods, not left over from an earlier attempt.

    Kubernetes keeps the condition until the Deployment makes progress again (progress.go), so right after a
    rollback (or a new rollout over a timed-out one) it still describes the abandoned ReplicaSet. A condition
    whose lastUpdateTime predates the step is that leftover. Without a time the condition is trusted.
    """
    if not progressing or progressing.status != "False" or progressing.reason != "ProgressDeadlineExceeded":
        return False
    return progressing.last_update_time is None or progressing.last_update_time >= step_started_at


def _failed(s: RolloutState, gate: GateResult, now: float) -> GateResult:
    """A failed gate; when the targets were out of sight (blind), it also forbids an automatic rollback."""
    record = s.steps[-1]
    stale = record.observed_at is None or now - record.observed_at > STALE_OBSERVATION_INTERVALS * interval(s)
    blind = (s.throttles > 0 or s.describe_slot_at is not None) and stale
    if not blind:
        return gate
    s.rollback_allowed = False
    return replace(gate, reason=gate.reason + (
        "; albgate has not seen this step's targets for a while (DescribeTargetHealth throttled, or waiting for "
        "albgate's share of the account's Describe* calls), so it cannot tell whether "
        "a rollback would remove serving pods: it stops here with the old pods serving; roll back by hand "
        "once the account's Describe* calls are no longer throttled"
    ))
