"""Lambda `Finish Rollout`: restore maxSurge and record the outcome.

Thin: the state in, one use case (lambdas.domain.rollout.finish.finish_rollout), the new state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import finish
from lambdas.domain.state import RolloutState
from lambdas.handlers._runtime import cluster_of, ports_for, task
from lambdas.handlers._observability import metrics
from aws_lambda_powertools.metrics import MetricUnit


@task("Finish Rollout")
def handler(event: dict, context: Any) -> dict:
    state = finish.finish_rollout(ports_for(cluster_of(event)), RolloutState.model_validate(event)).dump()
    metrics.add_dimension(name="outcome", value=state["outcome"])
    metrics.add_metric(name="Rollouts", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RolloutSeconds", unit=MetricUnit.Seconds, value=state["finished_at"] - state["started_at"])
    metrics.add_metric(name="DescribeTargetHealthCalls", unit=MetricUnit.Count, value=state["describe_target_health_calls"])
    # answers of other rollouts of the same target groups used instead of calls (lambdas/domain/looks.py)
    metrics.add_metric(name="SharedTargetHealthLooks", unit=MetricUnit.Count, value=state["shared_looks"])
    return state
