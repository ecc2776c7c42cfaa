"""ECR push -> release: the ReleaseTrigger Lambda, the release lease table, its two rules and its dead letters.

Job: created by the release stack when a release names an ``ecr_repository``:
- the release lease table (one item per release name: who runs it, the newest push waiting for it);
- the ``ReleaseTrigger`` function (lambdas/handlers/release_trigger.py) with the releases file's layer;
- a rule for successful ECR pushes to the releases' repositories in the home account (ECR sends its events to its
  own account and Region: the repositories live where the release stack does), and a rule for the release state
  machine's terminal status events, both to that function;
- one encrypted, SSL-only dead-letter queue for both rules and the function's asynchronous invocations, with an
  alarm as soon as a message is in it.

Invariant: least privilege: states:StartExecution on the release state machine and DescribeExecution on its
executions, GetItem/PutItem/UpdateItem/DeleteItem on the release lease table, ecr:DescribeImages on the releases'
repositories, events:PutEvents on the release bus, sqs:SendMessage on the dead letters; nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.domain.trigger import ECR_DETAIL_TYPE, ECR_SOURCE, STATES_DETAIL_TYPE, STATES_SOURCE, TERMINAL_STATUSES
from lambdas.handlers._release import RELEASES_ENV, RELEASES_PATH
from stacks.constructs.deployment_leases import (
    ENV_EVENT_BUS,
    ENV_LEASE_TABLE,
    ENV_STATE_MACHINE,
    LEASE_KEY,
    LEASE_TTL_ATTRIBUTE,
    MAX_EVENT_AGE,
    acknowledge_executions_wildcard,
    executions_arn,
)
from stacks.constructs.handler_specs import HandlerSpec
from stacks.constructs.lambda_function import AlbgateFunction
from stacks.constructs.tables import small_table

RELEASE_TRIGGER = HandlerSpec(
    "ReleaseTrigger", "release_trigger", kube="none", elb_read=False, timeout_seconds=30,
    description="ECR push: start the release of the image, one execution per release at a time, newest push next",
)
# What the trigger does with the lease table: read, take or take over (PutItem), queue a push (UpdateItem), let go
# (DeleteItem), as lambdas/domain/trigger_use_case.py's claim and finish_holder do.
LEASE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]


class ReleaseTrigger(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, state_machine: sfn.StateMachine,
                 code: lambda_.Code, releases_layer: lambda_.ILayerVersion, bus: events.IEventBus,
                 repositories: Sequence[str], log_level: str, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.table = small_table(self, "Leases", partition_key=LEASE_KEY, time_to_live_attribute=LEASE_TTL_ATTRIBUTE)
        self.dead_letters = sqs.Queue(self, "DeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14))
        self.dead_letter_alarm = cw.Alarm(
            self, "DeadLettersAlarm",
            alarm_description="albgate: an ECR push for a release, or a release's end, could not be handled (see the "
            "DLQ messages and the ReleaseTrigger logs): a push may not have started its release, a queued one may "
            "wait: redrive the messages (docs/releases.md)",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(period=Duration.minutes(1),
                                                                                   statistic="Maximum"),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        fn = AlbgateFunction(
            self, RELEASE_TRIGGER.name, spec=RELEASE_TRIGGER, code=code, cluster_arns=[], log_level=log_level,
            log_retention_days=log_retention_days,
            extra_environment={ENV_STATE_MACHINE: state_machine.state_machine_arn,
                               ENV_LEASE_TABLE: self.table.table_name, ENV_EVENT_BUS: bus.event_bus_name,
                               RELEASES_ENV: RELEASES_PATH},
        )
        fn.function.add_layers(releases_layer)
        role = fn.role
        role.add_to_policy(iam.PolicyStatement(sid="StartRelease", actions=["states:StartExecution"],
                                               resources=[state_machine.state_machine_arn]))
        role.add_to_policy(iam.PolicyStatement(sid="LeaseHolderStatus", actions=["states:DescribeExecution"],
                                               resources=[executions_arn(self, state_machine)]))
        role.add_to_policy(iam.PolicyStatement(sid="ReleaseLeases", actions=LEASE_ACTIONS,
                                               resources=[self.table.table_arn]))
        role.add_to_policy(iam.PolicyStatement(
            sid="PushTimes", actions=["ecr:DescribeImages"],
            resources=[stack.format_arn(service="ecr", resource="repository", resource_name=r)
                       for r in sorted(set(repositories))]))
        role.add_to_policy(iam.PolicyStatement(sid="PublishEvents", actions=["events:PutEvents"],
                                               resources=[bus.event_bus_arn]))
        role.add_to_policy(iam.PolicyStatement(sid="DeadLetters", actions=["sqs:SendMessage"],
                                               resources=[self.dead_letters.queue_arn]))
        acknowledge_executions_wildcard(role)
        cfn = fn.function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.dead_letter_config = lambda_.CfnFunction.DeadLetterConfigProperty(target_arn=self.dead_letters.queue_arn)
        fn.function.configure_async_invoke(max_event_age=MAX_EVENT_AGE, retry_attempts=2)
        self.function = fn

        def target() -> targets.LambdaFunction:
            return targets.LambdaFunction(fn.function, dead_letter_queue=self.dead_letters,
                                          max_event_age=MAX_EVENT_AGE, retry_attempts=185)

        self.push_rule = events.Rule(
            self, "EcrPushRule",
            description="albgate: a successful ECR push to a release's repository starts the release",
            event_pattern=events.EventPattern(
                source=[ECR_SOURCE], detail_type=[ECR_DETAIL_TYPE], account=[stack.account],
                detail={"action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": sorted(set(repositories))},
            ),
            targets=[target()],
        )
        self.ended_rule = events.Rule(
            self, "ReleaseEndedRule",
            description="albgate: a release execution ended: let its lease go or start the push waiting for it",
            event_pattern=events.EventPattern(
                source=[STATES_SOURCE], detail_type=[STATES_DETAIL_TYPE],
                detail={"status": list(TERMINAL_STATUSES), "stateMachineArn": [state_machine.state_machine_arn]},
            ),
            targets=[target()],
        )
