"""Lambda `Verify Drain`: check that the step's old targets left every target group's pool (draining or gone).

Thin: the state in, one use case (lambdas.domain.rollout.drain.verify_drain, watching the pods between its looks for
up to policy.watch_seconds), the new state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import drain
from lambdas.domain.state import RolloutState
from lambdas.handlers._runtime import cluster_of, ports_for, task


@task("Verify Drain")
def handler(event: dict, context: Any) -> dict:
    rollout = RolloutState.model_validate(event)
    watch = rollout.request.policy.watch_seconds
    state = drain.verify_drain(ports_for(cluster_of(event)), rollout, watch_seconds=watch).dump()
    return state
