"""Lambda `Check Target Health`: the gate: every new pod of the step healthy in every target group.

Thin: the state in, one use case (lambdas.domain.rollout.gate.check_target_health, watching the cluster between its
looks for up to policy.watch_seconds), the new state out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import gate
from lambdas.domain.state import RolloutState
from lambdas.handlers._runtime import cluster_of, ports_for, task
from lambdas.handlers._observability import metrics
from aws_lambda_powertools.metrics import MetricUnit


@task("Check Target Health")
def handler(event: dict, context: Any) -> dict:
    rollout = RolloutState.model_validate(event)
    watch = rollout.request.policy.watch_seconds
    state = gate.check_target_health(ports_for(cluster_of(event)), rollout, watch_seconds=watch).dump()
    if state["gate"]["status"] == "PASSED":
        step = state["steps"][-1]
        metrics.add_dimension(name="mode", value=state["mode"])
        metrics.add_metric(name="GateWaitSeconds", unit=MetricUnit.Seconds, value=step["gate_passed_at"] - step["started_at"])
    return state
