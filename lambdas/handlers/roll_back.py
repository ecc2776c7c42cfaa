"""Lambda `Roll Back`: restore the previous image, to be gated like the rollout.

Thin: the state in, one use case (lambdas.domain.rollout.rollback.roll_back), the new state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import rollback
from lambdas.domain.state import RolloutState
from lambdas.handlers._runtime import cluster_of, ports_for, task
from lambdas.handlers._observability import metrics
from aws_lambda_powertools.metrics import MetricUnit


@task("Roll Back")
def handler(event: dict, context: Any) -> dict:
    state = rollback.roll_back(ports_for(cluster_of(event)), RolloutState.model_validate(event)).dump()
    if state["rollback_needed"]:
        metrics.add_metric(name="Rollbacks", unit=MetricUnit.Count, value=1)
    return state
