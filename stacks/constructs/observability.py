"""What a release engineer watches: a dashboard of rollouts and an alarm on failed or rolled-back ones; and what
the state machines' logs may carry.

Invariant: every metric here is one the handlers really emit (names and dimensions as written by
``lambdas/handlers``: Powertools adds the ``service`` dimension to each) or one Step Functions publishes for the
state machine; a rolled-back rollout ends in a Fail state, so ExecutionsFailed counts it as well as a failure.

Execution data: both state machines log every event (level ALL) to CloudWatch Logs; with ``includeExecutionData``
each entry also carries the state's input and output (docs/facts.md, "Step Functions execution data in logs"),
which holds the `Wait For Approval` task's token and every rollout and bootstrap input. The config's
``include_execution_data`` (default true) decides it for every state machine of the stack at once
(``ExecutionDataLogging``); the execution history keeps the data either way.
"""

from __future__ import annotations

import jsii
from aws_cdk import Aspects, Duration, IAspect, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

NAMESPACE = "albgate"
SERVICE = "albgate"


def _metric(name: str, stat: str, **dims: str) -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE, **dims},
        statistic=stat,
        period=Duration.minutes(5),
    )


@jsii.implements(IAspect)
class ExecutionDataLogging:
    """Sets ``LoggingConfiguration.IncludeExecutionData`` of every state machine that logs, wherever it is built."""

    def __init__(self, include: bool) -> None:
        self.include = include

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, sfn.CfnStateMachine) and node.logging_configuration is not None:
            node.add_property_override("LoggingConfiguration.IncludeExecutionData", self.include)


class RolloutObservability(Construct):
    """The dashboard and the alarm of the rollout state machine; and ``include_execution_data`` for every state
    machine of the stack (given, else the stack's config's, else true)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        include_execution_data: bool | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if include_execution_data is None:
            config = getattr(Stack.of(self), "config", None)  # AlbgateStack keeps its validated AlbgateConfig
            include_execution_data = getattr(config, "include_execution_data", True)
        self.include_execution_data = include_execution_data
        Aspects.of(Stack.of(self)).add(ExecutionDataLogging(include_execution_data))
        failed = state_machine.metric_failed(period=Duration.minutes(5), statistic="Sum")
        self.alarm = cw.Alarm(
            self,
            "FailedOrRolledBack",
            alarm_description="An albgate rollout failed or was rolled back: open the execution in the Step "
            "Functions console; its Fail state names the step and the reason",
            metric=failed,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        outcomes = ("succeeded", "rolled_back")
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.days(7))
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Rollouts by outcome",
                left=[_metric("Rollouts", "Sum", outcome=o).with_(label=o) for o in outcomes]
                + [failed.with_(label="failed or rolled back (executions)")],
                width=12,
            ),
            cw.GraphWidget(
                title="Gate wait per step (s)",
                left=[_metric("GateWaitSeconds", stat, mode="rollout").with_(label=stat) for stat in ("p50", "Maximum")],
                right=[_metric("GateWaitSeconds", "Maximum", mode="rollback").with_(label="rollback max")],
                width=12,
            ),
            cw.GraphWidget(
                title="Rollbacks and DescribeTargetHealth calls",
                left=[_metric("Rollbacks", "Sum").with_(label="rollbacks")],
                right=[
                    _metric("DescribeTargetHealthCalls", "Sum", outcome=o).with_(label=f"calls ({o})")
                    for o in outcomes
                ] + [_metric("SharedTargetHealthLooks", "Sum", outcome=o).with_(label=f"shared answers ({o})")
                     for o in outcomes],
                width=12,
            ),
            cw.AlarmStatusWidget(alarms=[self.alarm], title="Alarm", width=12),
        )
