"""Released targets left to the Load Balancer Controller: proven deregistered by its conditions, or deregistered by
albgate itself in time.

Job: a step whose gate the controller's own conditions opened leaves its released targets to the controller
(rollout.drain, ``_left_to_the_controller``), so that albgate does not spend a token of the account's
RegisterTargets/DeregisterTargets bucket on a call the controller makes anyway. Nothing shows that call; a
controller that went down after opening the gate would never make it, and the released pods would exit at the end
of their preStop with their targets still in the pool. So the next gate, which reads the new pods anyway, follows
the left targets until one of two things:

- **Proof.** The controller's reconcile of a TargetGroupBinding deregisters every target no current endpoint
  matches, then registers the new endpoints, then writes the pods' target-health conditions, and stops at the
  first call that fails (v3.5.0 ``reconcileWithIPTargetType``; docs/facts.md, "Load Balancer Controller: the
  target-health pod condition"). A condition of a binding's gate on one of the rollout's pods whose
  lastTransitionTime is no earlier than the moment the step left the drain was written by a reconcile that began
  after the released pods were terminating, so it deregistered their targets in that group first. The API keeps
  whole seconds and truncates, which can only make a write look earlier than it was: a proof may be missed, never
  made up. Every group's binding must show one. (The controller's reconcile checkpoint would prove it too, often
  sooner; taken as proof here it measured worse with two hundred rollouts at once: docs/benchmarks.md.)
- **Time.** Without that proof ``LEFT_TO_CONTROLLER_SECONDS`` after the step left the drain, albgate says so to
  every execution in the account (``budget.controller_late``: none leaves a drain for a minute) and deregisters
  itself, blind, as it would have at once: the carried targets and every terminating pod's (each live pod's IP
  apart). A rollback forgets the carried targets (its drain watches the failed version's pods), but the pods that
  matter are still terminating, their preStop not over: their IPs are in the API.

A look of the gate at ELB settles them too: it deregisters any carried target still in the pool, and any
terminating pod's (``drain.check_leaving``).
Invariant: pure; reads only the pods the gate read; at most one DeregisterTargets call per target group. While
something is left, no wait of the rollout runs past the deadline (``observe.next_look``).
"""

from __future__ import annotations

from lambdas.domain.poll import LEFT_TO_CONTROLLER_SECONDS
from lambdas.domain.ports import LBC_GATE_PREFIX, Pod, Ports
from lambdas.domain.rollout.targets import deregister_released, held_ips
from lambdas.domain.state import RolloutState


def controller_went_past(s: RolloutState, pods: list[Pod]) -> bool:
    """Whether, for every target group, a condition of its binding's gate on one of ``pods`` changed no earlier than
    ``s.left_at``: the controller reconciled every binding since the released pods were terminating."""
    if s.left_at is None:
        return False
    for group in s.target_groups:
        if not group.binding:
            return False
        gate = LBC_GATE_PREFIX + group.binding
        if not any(c.type == gate and c.last_transition_time is not None and c.last_transition_time >= s.left_at
                   for p in pods for c in p.conditions):
            return False
    return True


def follow_left(ports: Ports, s: RolloutState, mine: list[Pod], others: list[Pod], now: float) -> None:
    """Settle the targets a step left to the controller, if it did (``s.left_at``): proven deregistered by the
    controller, nothing to do; past ``LEFT_TO_CONTROLLER_SECONDS`` without proof, albgate deregisters the carried
    targets itself (the drain's reason then says so)."""
    if s.left_at is None:
        return
    if controller_went_past(s, mine + others):
        s.left_at = None
        return
    if now < s.left_at + LEFT_TO_CONTROLLER_SECONDS:
        return
    s.left_at = None
    ports.budget.controller_late()  # every execution deregisters itself for a while (budget.CONTROLLER_LATE_SECONDS)
    leaving = sorted(set(s.carried_ips) | {p.ip for p in mine + others if p.terminating and p.ip})
    deregister_released(ports, s, tuple(leaving), None, held=held_ips(mine, others), record=s.steps[-1])
