"""What a release engineer watches: a dashboard of rollouts and an alarm on failed or rolled-back ones.

Invariant: every metric here is one the handlers really emit (names and dimensions as written by
``lambdas/handlers``: Powertools adds the ``service`` dimension to each) or one Step Functions publishes for the
state machine; a rolled-back rollout ends in a Fail state, so ExecutionsFailed counts it as well as a failure.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

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


class RolloutObservability(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, state_machine: sfn.StateMachine) -> None:
        super().__init__(scope, construct_id)
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
                ],
                width=12,
            ),
            cw.AlarmStatusWidget(alarms=[self.alarm], title="Alarm", width=12),
        )
