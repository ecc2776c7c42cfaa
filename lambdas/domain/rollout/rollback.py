"""Roll Back: turn a failed rollout into a one-step rollback that is gated like any step.

Invariant: only a rollout that changed the template rolls back; a failed rollback never starts another.
"""

from __future__ import annotations

import json

from lambdas.domain.gate import DrainResult, GateResult, Verdict
from lambdas.domain.ports import Ports
from lambdas.domain.state import RolloutState


def describe_failure(failure: dict | None) -> str:
    """A caught error's {Error, Cause} as one line; Lambda causes are JSON with errorMessage."""
    if not failure:
        return "unknown failure"
    error = failure.get("Error", "Error")
    cause = failure.get("Cause", "")
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            cause = parsed.get("errorMessage", cause)
    except (TypeError, ValueError):
        pass
    return f"{error}: {cause}"


def roll_back(ports: Ports, s: RolloutState) -> RolloutState:
    where = f"at step {s.step + 1}/{len(s.plan)}" if s.step >= 0 else "before the first step"
    s.failure_summary = f"{s.mode} failed {where}: {describe_failure(s.failure)}"
    if not s.template_changed or s.mode == "rollback":
        s.rollback_needed = False
        s.outcome = "failed"
        return s
    s.mode = "rollback"
    s.rollback_needed = True
    s.target_image = s.previous_image
    # One step: the previous ReplicaSet still serves, so bring it back to full size at once; the drain
    # check then watches every pod of the failed version leave the target groups.
    s.plan = [s.replicas]
    s.next_step = 0
    s.step = -1
    # Targets a rollout step handed over still draining are on their way out and belong to the version the
    # rollback brings back: its own drain check watches the failed version's pods instead.
    s.pending_drain_step = None
    s.carried_ips = []
    s.more_steps = True
    s.approval_required = False
    s.bake_seconds = 0
    s.gate = GateResult(Verdict.WAITING, "rollback not started")
    s.drain = DrainResult(Verdict.WAITING, "rollback not started")
    return s
