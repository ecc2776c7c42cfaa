"""Lambda `Start Step`: let Kubernetes create a step's new pods behind albgate's gate.

Thin: the state in, one use case (lambdas.domain.rollout.step.start_step), the new state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import step
from lambdas.domain.state import RolloutState
from lambdas.handlers._runtime import cluster_of, ports_for, task


@task("Start Step")
def handler(event: dict, context: Any) -> dict:
    state = step.start_step(ports_for(cluster_of(event)), RolloutState.model_validate(event)).dump()
    return state
