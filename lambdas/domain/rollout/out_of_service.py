"""Out of service before release: the old pods a step will remove leave the load balancer before Kubernetes deletes
them.

Job: once a step's gate has seen its new targets healthy, and before albgate opens their gates (which lets the
Deployment controller remove as many old pods), take that many old pods out of their Service's endpoints, wait
until the Load Balancer Controller has deregistered their targets, and only then let the gate pass. Kubernetes then
deletes pods whose targets are already `draining`: however long the controller's queue of RegisterTargets and
DeregisterTargets calls, no old pod's process ends while its target still takes new requests. Without it, the
old pods go first and the controller deregisters them within their preStop sleep, or they lose requests (docs/
benchmarks.md, "The RegisterTargets/DeregisterTargets bucket").

How, with what Kubernetes and the controller already do (docs/facts.md):
- **Out of the endpoints.** A hardened app's Service selects ``SERVING_LABEL: IN_SERVICE`` beside the app's labels,
  and its pod template carries that label; the Deployment's selector does not name it. albgate sets the label to
  ``OUT_OF_SERVICE`` on a pod (``KubernetesPort.set_pod_serving``): the pod stays in its ReplicaSet, Running and
  Ready, but the Service selects it no more, so the controller's next reconcile deregisters its target ("Load
  Balancer Controller: registration and timing": it registers every ContainersReady endpoint, so nothing short of
  leaving the endpoints keeps a running pod out of the pool).
- **The pods Kubernetes will delete.** The same patch gives the pod the lowest ``controller.kubernetes.io/
  pod-deletion-cost``: among old pods alike in scheduling, phase and readiness the ReplicaSet removes the lowest
  cost first ("Kubernetes ReplicaSet: which pods a scale-down removes"). A pod that is not Ready goes before any
  Ready one whatever its cost, so those count first, and are out of the pool already.
- **Proof without a Describe\\* call.** The controller's reconcile checkpoint (``rollout.checkpoint``): once its last
  completed reconcile of every binding worked from the Service's endpoints without those pods, their targets are
  `draining` or gone.
- **Else by a look at ELB.** Where a binding of the rollout has no checkpoint when the gate passes (EKS Auto Mode's
  managed controller writes none, nor does an older one; or a reconcile is under way), a DescribeTargetHealth look
  in albgate's share of the account's bucket proves them: every target of those pods `draining` or gone in every
  group. The first comes ``poll.OUT_OF_SERVICE_FIRST_LOOK_SECONDS`` after they went out, when a controller that keeps
  up has deregistered them; later ones further apart each time (``poll.out_of_service_look_due``). A look costs a
  token of the Describe* bucket, which albgate paces, where releasing the pods unproven costs requests whenever the
  controller's RegisterTargets/DeregisterTargets calls queue (docs/benchmarks.md, two hundred rollouts in pairs on
  Auto Mode); albgate's own DeregisterTargets would spend the bucket those calls queue for. Where albgate registered
  targets itself in the execution (the controller down or late: ``rollout.targets.register_missing``), the
  checkpoint says nothing of those, and the controller is not waited for: albgate deregisters the pods' targets
  itself at once, and a look proves them out if that call is refused.
- **Bounded.** A proof that has not come ``OUT_OF_SERVICE_PROOF_SECONDS`` after the pods went out (a controller
  down, or queued behind many rollouts' calls) is made by albgate itself: it deregisters their targets (one
  DeregisterTargets call per target group; the pods are out of the endpoints, so the controller never registers
  them back), and the step goes on as if the controller had. Where that call cannot be made (the account's bucket
  throttles it, or a group's target port is one albgate cannot know) the gate keeps waiting for the checkpoint and
  asks again after twice as long each time; at ``OUT_OF_SERVICE_RELEASE_SECONDS``, or at the step's deadline if
  that comes first (it bounds the gate, this wait included), the step is released anyway, as without this: the
  drain then proves or deregisters the targets as it always did (poll.py has the figures).
- **Put back.** A pod out of service that is still running when it is no longer to go (a rollback, an execution
  that ended between the two, a scale-down Kubernetes made another way) is put back (``put_back``) by the next
  Start Step of a rollback, the first of a rollout, and Finish Rollout.
- **On a rollback too,** where its returning pods wait behind albgate's gate (the previous image patched back
  gated, or a previous template that carries the gate): its one step removes every pod of the failed version once
  they are healthy, and those are taken out of service first, like a rollout step's old pods. An undo to an ungated
  template holds nothing: its pods turn Ready, and let Kubernetes remove the failed ones, by themselves.

Invariant: the gate passes only with every pod it took out proven out of every group's pool, or past the bound;
no pod is taken out unless the gate has seen the step's new targets healthy (the pool never holds fewer serving
targets than the Deployment's replicas), and no more than the step removes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from lambdas.domain.errors import NotFoundError
from lambdas.domain.gate import GateResult, Verdict, targets_to_deregister
from lambdas.domain.poll import (
    DEREGISTRATION_LAG_SECONDS,
    OUT_OF_SERVICE_FIRST_LOOK_SECONDS,
    OUT_OF_SERVICE_PROOF_SECONDS,
    OUT_OF_SERVICE_RELEASE_SECONDS,
    out_of_service_look_due,
)
from lambdas.domain.ports import (
    DRAINING,
    IN_SERVICE,
    OUT_OF_SERVICE,
    SERVING_LABEL,
    UNUSED,
    Deployment,
    Pod,
    Ports,
    TargetGroupBinding,
)
from lambdas.domain.rollout.checkpoint import drain_proven
from lambdas.domain.rollout.observe import NOW, Pace, budget_wait, throttled_back_off
from lambdas.domain.rollout.targets import deregister_each, learn_target_ports, look_or_throttled, shared_health
from lambdas.domain.state import RolloutState, StepRecord


def serving_label_selected(ports: Ports, s: RolloutState,
                           bindings: dict[str, TargetGroupBinding] | None = None) -> bool:
    """Whether the Service of every target group's binding selects ``SERVING_LABEL: IN_SERVICE`` (the hardening's
    selector), so that a pod without it leaves the endpoints. Reads the Services, and the bindings unless given."""
    if not s.target_groups or any(not g.binding for g in s.target_groups):
        return False
    ns = s.request.namespace
    if bindings is None:
        bindings = {b.name: b for b in ports.kube.list_target_group_bindings(ns)}
    services = {v.name: v for v in ports.kube.list_services(ns)}
    for g in s.target_groups:
        binding = bindings.get(g.binding)
        service = services.get(binding.service_name) if binding else None
        if service is None or service.selector.get(SERVING_LABEL) != IN_SERVICE:
            return False
    return True


def _checkpointed(s: RolloutState, bindings: dict[str, TargetGroupBinding]) -> bool:
    """Whether the controller has written its reconcile checkpoint on every binding of the rollout. Pure."""
    return all(g.binding in bindings and bindings[g.binding].checkpoint for g in s.target_groups)


def in_service(pod: Pod) -> bool:
    """Whether the pod carries the serving label as the Service selects it (a pod without it serves nothing)."""
    return pod.labels.get(SERVING_LABEL) == IN_SERVICE


def choose_pods(old: list[Pod], count: int) -> list[Pod]:
    """The ``count`` old pods a step takes out: those serving nothing already (out of service, or not Ready: the
    ReplicaSet removes a pod that is not Ready before any Ready one), then the Ready ones the ReplicaSet would remove
    first by itself (Ready for less time: here the newer). Pure."""
    live = [p for p in old if not p.terminating]
    idle = [p for p in live if not in_service(p) or not p.ready]
    serving = sorted((p for p in live if in_service(p) and p.ready), key=lambda p: (-p.created_at, p.name))
    return (idle + serving)[:max(0, count)]


def take_out(ports: Ports, s: RolloutState, record: StepRecord, gate: GateResult, others: list[Pod],
             now: float) -> tuple[GateResult, Pace]:
    """The gate once it has PASSED on the new targets: PASSED as it is where nothing is to be taken out; else the
    old pods the step removes taken out of service now, and the gate WAITING for the proof (``settle``)."""
    if not gate.release or record.out_at is not None:
        return gate, NOW
    count = sum(1 for p in others if not p.terminating) - (s.replicas - s.plan[s.step])
    if count <= 0:
        return gate, NOW
    bindings = {b.name: b for b in ports.kube.list_target_group_bindings(s.request.namespace)}  # read once for both
    if not serving_label_selected(ports, s, bindings):
        return gate, NOW
    chosen = choose_pods(others, count)
    for pod in chosen:
        if in_service(pod):
            try:
                ports.kube.set_pod_serving(s.request.namespace, pod.name, False)
            except NotFoundError:
                continue  # gone since the look: Kubernetes removes it anyway
    record.out_of_service = [p.name for p in chosen]
    record.out_ips = sorted(p.ip for p in chosen if p.ip)
    record.out_release = list(gate.release)
    record.out_at = now
    # no checkpoint to read (Auto Mode, an older controller, a reconcile under way), or one that says nothing of the
    # targets albgate registered itself: a look at ELB proves them out
    record.out_by_look = _lagging(s) or not _checkpointed(s, bindings)
    s.changed_at = now
    # where a look is the proof, the gate comes back when it is due (or at once for albgate's own call)
    first = (1 if _lagging(s) else OUT_OF_SERVICE_FIRST_LOOK_SECONDS) if record.out_by_look else 0
    return _waiting(gate, f"took {len(chosen)} old pod(s) out of their Service's endpoints before releasing the new "
                    "ones: waiting for the Load Balancer Controller to deregister their targets"), \
        Pace("out-of-service", seconds=first)


def settle(ports: Ports, s: RolloutState, record: StepRecord, mine: list[Pod], others: list[Pod], dep: Deployment,
           now: float) -> tuple[GateResult, Pace]:
    """A look of a gate that took old pods out of service (``record.out_at``): PASSED, releasing the pods its
    passing look named, once the controller's checkpoint proves them out of every pool (and the load balancer's lag
    their preStop does not cover is over); once ``OUT_OF_SERVICE_PROOF_SECONDS`` passed without it, as soon as
    albgate deregistered their targets itself (``deregister_out``: then the lag too; a refused call is made again
    after twice as long each time); and at ``OUT_OF_SERVICE_RELEASE_SECONDS`` (or the step's deadline) without
    either; WAITING until then. Where the pods went out with no checkpoint to read (``record.out_by_look``), a look
    at ELB when one is due (``_look_out``) is the proof instead. It asks ELB for no new target's health: they were
    healthy, and the drain of the next steps watches them."""
    assert record.out_at is not None
    passed = replace(s.gate, status=Verdict.PASSED, release=tuple(record.out_release),
                     reason=f"the step's {len(record.out_release)} new pod(s) were healthy in every target group")
    n = len(record.out_of_service)
    if record.out_proven_at is None:
        unproven: Unproven | None = None
        if record.out_by_look:
            unproven = _look_out(ports, s, record, now)
            proven = unproven is None
        else:
            proven = drain_proven(ports, s, _selected(ports, s, mine + others))
        if proven:
            record.out_proven_at = now
        else:
            since = now - record.out_at
            waiting = (f"{n} old pod(s) out of their Service's endpoints for {math.floor(since)} s: waiting for the "
                       "Load Balancer Controller to deregister their targets ("
                       f"{unproven.note if unproven is not None else 'its reconcile checkpoint'})")
            # the last moment: the bound, or the step's deadline (which bounds a gate, its wait for the proof too)
            last = since >= OUT_OF_SERVICE_RELEASE_SECONDS or now >= s.step_deadline
            due = _next_try(record.out_deregister_tries, at_once=_lagging(s))
            if since < due and not last:
                if record.out_deregister_tries:
                    waiting = (f"{waiting}; albgate's own DeregisterTargets refused {record.out_deregister_tries} "
                               f"time(s), asked again in {math.ceil(due - since)} s")
                return _waiting(passed, waiting), _until(unproven, due - since)
            refused = deregister_out(ports, s, record)
            if not refused:
                record.out_proven_at = now
            else:
                record.out_deregister_tries += 1
                if last:
                    return replace(passed, reason=(
                        f"{passed.reason}; the Load Balancer Controller has not shown the {n} old pod(s) taken out "
                        f"of service out of the pool within {math.floor(since)} s, and albgate could not deregister "
                        f"them itself ({refused}): released anyway, the drain verifies them")), NOW
                again = _next_try(record.out_deregister_tries, at_once=_lagging(s)) - since
                return _waiting(passed, f"{waiting}; albgate could not deregister them itself ({refused}) and asks "
                                f"again in {math.ceil(again)} s"), _until(unproven, again)
    hold = record.out_proven_at + _lag_uncovered(dep, s.request.container) - now
    if hold > 0:
        return _waiting(passed, f"{n} old pod(s) out of the pool; their preStop sleep is shorter than the load "
                        "balancer's lag, so the release waits for the rest of it"), Pace("booked", math.ceil(hold))
    named = {entry.rpartition("|")[2] for entry in record.deregistered}  # a gate's look may name carried ones too
    if not named & set(record.out_ips):
        how = proof_name(record)
    elif _lagging(s):
        how = ("albgate deregistered their targets itself, as it had registered targets the Load Balancer Controller "
               "had not in time")
    else:
        how = (f"albgate deregistered their targets itself, the Load Balancer Controller not having done so within "
               f"{math.floor(record.out_proven_at - record.out_at)} s")
    return replace(passed, reason=f"{passed.reason}; {n} old pod(s) taken out of service first: out of every "
                   f"target group's pool before their pods go ({how})"), NOW


def proof_name(record: StepRecord) -> str:
    """How the controller's deregistration of the pods ``record`` took out of service is proven."""
    return "a look at ELB" if record.out_by_look else "the controller's checkpoint"


@dataclass(frozen=True)
class Unproven:
    """Why ``_look_out`` has not proven the pods out yet, and what the gate waits for meanwhile."""

    note: str
    pace: Pace


def _look_out(ports: Ports, s: RolloutState, record: StepRecord, now: float) -> Unproven | None:
    """The proof, where no checkpoint can give it, that the pods taken out of service left every target group's
    pool (None once it is made): a look at ELB once one is due (``poll.out_of_service_look_due``) and albgate's
    share of the account's Describe* bucket has a turn (another execution's answer for the same group, given since
    the pods went out, stands in for a call), showing none of their IPs as a target that is not `draining` or
    `unused`; a group that lists an IP no more has deregistered it past its delay. Until a look is due, the gate
    waits at the out-of-service pace, no later than when it is."""
    assert record.out_at is not None
    waiting = "a look at ELB shows them `draining`"
    due = out_of_service_look_due(record.out_at, s.looked_at)
    if now + 0.5 < due:
        return Unproven(waiting, _no_later(due - now))
    view = shared_health(ports, s, now)
    if view.to_call and s.elb_after is not None and now + 0.5 < s.elb_after:
        return Unproven(f"{waiting}; DescribeTargetHealth throttled ({s.throttles}x), backing off",
                        _no_later(s.elb_after - now))
    booked, _ = budget_wait(ports, s, now, view.to_call, view.booked_at)
    if booked:
        return Unproven(f"{waiting}; its look is booked in {booked} s in albgate's share of the account's Describe* "
                        "calls", Pace("booked", booked))
    health = look_or_throttled(ports, s, now, view.health)
    if health is None:
        return Unproven(f"{waiting}; DescribeTargetHealth throttled ({s.throttles}x), backing off",
                        _no_later(throttled_back_off(s, now)))
    out = set(record.out_ips)
    serving = sorted({t.target_id for targets in health.values() for t in targets
                      if t.target_id in out and t.state not in (DRAINING, UNUSED)})
    if serving:
        return Unproven(f"{waiting}; the last look still shows {len(serving)} in the pool",
                        _no_later(out_of_service_look_due(record.out_at, now) - now))
    return None


def _no_later(seconds: float) -> Pace:
    """The out-of-service pace, no later than ``seconds`` from now (at least a second)."""
    return Pace("out-of-service", seconds=max(1, math.ceil(seconds)))


def _until(unproven: Unproven | None, until_try: float) -> Pace:
    """The gate's wait while the pods out of service are not proven out: where a look proves them, what
    ``_look_out`` waits for, no later than albgate's own call is due, ``until_try`` seconds from now (a turn booked
    in albgate's share is kept); where the checkpoint does, the out-of-service pace."""
    if unproven is None:
        return Pace("out-of-service")
    pace = unproven.pace
    if pace.wait_for == "booked":
        return pace
    return _no_later(min(until_try, pace.seconds))


def _lagging(s: RolloutState) -> bool:
    """Whether albgate registered targets itself in the execution: the controller was down or late (rollout.targets,
    ``register_missing``), so its checkpoint says nothing of those targets, and it is not waited for."""
    return any(r.registered_total for r in s.steps)


def _next_try(refused: int, *, at_once: bool) -> float:
    """Seconds after the pods went out when albgate's own DeregisterTargets is due, after ``refused`` refusals:
    OUT_OF_SERVICE_PROOF_SECONDS, then twice as long each time, OUT_OF_SERVICE_RELEASE_SECONDS at the latest;
    ``at_once`` (a controller known to lag: ``_lagging``), at once, then from OUT_OF_SERVICE_PROOF_SECONDS on."""
    if at_once:
        return 0.0 if refused == 0 else min(OUT_OF_SERVICE_PROOF_SECONDS * 2 ** (refused - 1),
                                            OUT_OF_SERVICE_RELEASE_SECONDS)
    return min(OUT_OF_SERVICE_PROOF_SECONDS * 2 ** refused, OUT_OF_SERVICE_RELEASE_SECONDS)


def deregister_out(ports: Ports, s: RolloutState, record: StepRecord) -> str:
    """albgate's own DeregisterTargets for the targets of the pods ``record`` took out of service, in every target
    group, on the port the group's targets use (learnt from its binding and Service where no look saw it). An IP a
    pod the Services select holds again is left alone. Returns "" once every group's call went through, else why
    not (a call throttled by the account's bucket, a port albgate cannot know); each call that went through is
    recorded in ``record.deregistered``, so the drain does not make it again."""
    unknown = tuple(g.arn for g in s.target_groups if g.target_port is None)
    if unknown:
        learn_target_ports(ports, s, unknown)
    if any(g.target_port is None for g in s.target_groups):
        return "a target group's target port names a container port"
    held = {p.ip for p in _selected(ports, s, []) if p.ip and not p.terminating}
    todo = targets_to_deregister(leaving_ips=record.out_ips, held_ips=held, health=None,
                                 blind_ports={g.arn: g.target_port for g in s.target_groups},
                                 already=set(record.deregistered))
    done, refused = deregister_each(ports, s, record, todo)
    record.deregistered_total += done
    return "DeregisterTargets throttled by the account's bucket" if refused else ""


def _selected(ports: Ports, s: RolloutState, pods: list[Pod]) -> list[Pod]:
    """``pods`` and every other pod the rollout's Services select now: a Service may select the pods of other
    Deployments too (several behind one Service), and the controller's endpoints are all of them."""
    ns = s.request.namespace
    bindings = {b.name: b for b in ports.kube.list_target_group_bindings(ns)}
    wanted = {bindings[g.binding].service_name for g in s.target_groups if g.binding in bindings}
    seen = {p.name: p for p in pods}
    for service in ports.kube.list_services(ns):
        if service.name in wanted and service.selector:
            for p in ports.kube.list_pods(ns, service.selector):
                seen.setdefault(p.name, p)
    return list(seen.values())


def _waiting(gate: GateResult, note: str) -> GateResult:
    return replace(gate, status=Verdict.WAITING, release=(), reason=f"{gate.reason}; {note}")


def _lag_uncovered(dep: Deployment, container: str) -> int:
    """The part of the load balancer's lag (``poll.DEREGISTRATION_LAG_SECONDS``: new requests still come that long
    after a deregistration) that the old pods' preStop sleep does not cover once Kubernetes deletes them."""
    c = dep.template.container(container)
    sleep = c.pre_stop_sleep_seconds if c is not None and c.pre_stop_sleep_seconds is not None else 0
    return max(0, DEREGISTRATION_LAG_SECONDS - sleep)


def proven_out(s: RolloutState) -> set[str]:
    """The IPs of the pods the steps of the execution's present mode took out of service and saw proven out of every
    pool: a rollback's own, never those of the steps before it (their pods are gone, and a pod of the failed version
    may hold one of their IPs again)."""
    return {ip for r in s.steps if r.mode == s.mode and r.out_proven_at is not None for ip in r.out_ips}


def put_back(ports: Ports, s: RolloutState, pods: list[Pod]) -> int:
    """Put every running pod that is out of service back into its Service's endpoints; returns how many. Only albgate
    writes ``OUT_OF_SERVICE``, and one rollout runs per Deployment, so such a pod is one albgate took out for a step
    that did not remove it."""
    back = 0
    for pod in pods:
        if pod.terminating or pod.labels.get(SERVING_LABEL) != OUT_OF_SERVICE:
            continue
        try:
            ports.kube.set_pod_serving(s.request.namespace, pod.name, True)
            back += 1
        except NotFoundError:
            continue
    return back
