"""Lambda `Release Old Pods`: open albgate's gate on the step's healthy pods so old pods may go.

Thin: the state in, one use case (lambdas.domain.rollout.drain.release_old_pods), the new state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import drain
from lambdas.domain.state import RolloutState
from lambdas.handlers._runtime import cluster_of, ports_for, task


@task("Release Old Pods")
def handler(event: dict, context: Any) -> dict:
    state = drain.release_old_pods(ports_for(cluster_of(event)), RolloutState.model_validate(event)).dump()
    return state
