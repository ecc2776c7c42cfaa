"""One rollout per Deployment: the lease table, who may take a lease, and the function that releases it.

Job: one construct every stack adds, whatever its config. It creates
- the Deployment lease table (one item per cluster/namespace/deployment, shared with the ECR trigger's queue of
  pushes; PAY_PER_REQUEST, point-in-time recovery, TTL on ``expires_at`` for items nobody can hold any more);
- for every function whose spec says ``deployment_lease`` (Preflight), the table's name in its
  environment and a policy of its own: dynamodb:GetItem/PutItem on this table, states:DescribeExecution on the
  rollout state machine's executions (a separate ``AWS::IAM::Policy``: the state machine invokes that function,
  and a statement naming the state machine in the function's default policy would make a dependency cycle);
- the ``ExecutionEvents`` function and the rule that sends it the rollout state machine's terminal ``Step
  Functions Execution Status Change`` events (SUCCEEDED, FAILED, TIMED_OUT, ABORTED): it releases the lease of
  the execution that ended or hands it to the waiting push, and publishes the outcome on albgate's bus when the
  stack has one;
- one encrypted, SSL-only SQS dead-letter queue for the rule's target and the function's asynchronous
  invocations (the ECR trigger uses it too), with an alarm as soon as a message is in it.

Invariant: least privilege, nothing on ``*`` beyond what ``AlbgateFunction`` already acknowledges; cdk-nag
AwsSolutions stays clean without any new acknowledgment. tests/iam records every call each function makes and
fails on a call its role does not allow or a grant no call uses.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from lambdas.domain.trigger import STATES_DETAIL_TYPE, STATES_SOURCE, TERMINAL_STATUSES
from stacks.config import AlbgateConfig, ConfigError
from stacks.constructs.lambda_function import AlbgateFunction, powertools_environment
from stacks.constructs.tables import small_table
from stacks.constructs.trigger_specs import EXECUTION_EVENTS

LEASE_KEY = "lock_key"  # lambdas/adapters/dynamodb_lock.py KEY
LEASE_TTL_ATTRIBUTE = "expires_at"
ENV_STATE_MACHINE = "ALBGATE_STATE_MACHINE_ARN"
ENV_LEASE_TABLE = "ALBGATE_LOCK_TABLE"  # lambdas/handlers/_lease.py, lambdas/handlers/_trigger_settings.py
ENV_EVENT_BUS = "ALBGATE_EVENT_BUS"
# What Preflight does with the table: read the item, write it conditionally (take, take over).
TAKE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem"]
# What ExecutionEvents does with it: read, hand a lease over (PutItem), release it (DeleteItem).
RELEASE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
# Lambda retries a failed asynchronous invocation twice (its default); EventBridge retries delivery (185 attempts,
# its maximum) for up to this age; what still fails lands in the DLQ.
MAX_EVENT_AGE = Duration.hours(6)
# The longest value each deploy-time reference in the environment can resolve to (docs/facts.md, "AWS limits
# albgate checks"): a state machine ARN, a DynamoDB table name.
TOKEN_MAX_CHARS = {ENV_STATE_MACHINE: 256, ENV_LEASE_TABLE: 255, ENV_EVENT_BUS: 256}


# The one wildcard the lease adds: every execution of the rollout state machine (cdk-nag AwsSolutions-IAM5).
EXECUTIONS_WILDCARD = RegexAppliesTo(regex=r"/^Resource::arn:[^:]+:states:[^:]+:(\d{12}|<AWS::AccountId>):execution:.+:\*$/g")


def acknowledge_executions_wildcard(resource: Construct) -> None:
    """cdk-nag: states:DescribeExecution on ``execution:<rollout state machine>:*`` is as narrow as it gets."""
    NagSuppressions.add_resource_suppressions(
        resource,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="states:DescribeExecution on the executions of albgate's rollout state machine only: a "
                "Deployment lease names its holder by execution, and execution names are chosen at run time",
                applies_to=[EXECUTIONS_WILDCARD],
            )
        ],
        apply_to_children=True,
    )


def executions_arn(scope: Construct, state_machine: sfn.IStateMachine) -> str:
    """arn:<partition>:states:<region>:<account>:execution:<state machine name>:* (every execution of it)."""
    stack = Stack.of(scope)
    name = stack.split_arn(state_machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
    return stack.format_arn(service="states", resource="execution", resource_name=f"{name}:*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)


class DeploymentLeases(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AlbgateConfig,
        state_machine: sfn.IStateMachine,
        code: lambda_.Code,
        functions: Iterable[AlbgateFunction],
        event_bus_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # Holds only leases and the pushes waiting on them: nothing to keep once the stack is gone.
        self.table = small_table(self, "Table", partition_key=LEASE_KEY, time_to_live_attribute=LEASE_TTL_ATTRIBUTE)
        self.executions_arn = executions_arn(self, state_machine)

        for f in functions:
            if not f.spec.deployment_lease:
                continue
            f.function.add_environment(ENV_LEASE_TABLE, self.table.table_name)
            policy = iam.Policy(
                self,
                f"{f.spec.name}Lease",
                roles=[f.role],
                statements=[
                    iam.PolicyStatement(sid="DeploymentLease", actions=TAKE_ACTIONS, resources=[self.table.table_arn]),
                    iam.PolicyStatement(sid="LeaseHolderStatus", actions=["states:DescribeExecution"],
                                        resources=[self.executions_arn]),
                ],
            )
            acknowledge_executions_wildcard(policy)

        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),  # the SQS maximum: time to look and redrive
        )
        self.dead_letter_alarm = cw.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_description="albgate: a rollout's end or an ECR push could not be handled (see the DLQ messages "
            "and the ExecutionEvents / EcrTrigger logs); a lease may wait for its next taker, a queued push may "
            "not have started, a push may not have rolled: redrive the messages (docs/ecr-trigger.md)",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

        env = {ENV_STATE_MACHINE: state_machine.state_machine_arn, ENV_LEASE_TABLE: self.table.table_name}
        if event_bus_name:
            env[ENV_EVENT_BUS] = event_bus_name
        from stacks.constructs.ecr_trigger import environment_problem  # one measure of the 4 KB for both

        problem = environment_problem(
            EXECUTION_EVENTS.name, {**powertools_environment(config.log_level), **env}, TOKEN_MAX_CHARS
        )
        if problem:
            raise ConfigError(problem)
        self.release = AlbgateFunction(
            self,
            EXECUTION_EVENTS.name,
            spec=EXECUTION_EVENTS,
            code=code,
            cluster_arns=[],
            log_level=config.log_level,
            log_retention_days=config.log_retention_days,
            extra_environment=env,
        )
        role = self.release.role
        role.add_to_policy(iam.PolicyStatement(sid="StartQueuedPush", actions=["states:StartExecution"],
                                               resources=[state_machine.state_machine_arn]))
        role.add_to_policy(iam.PolicyStatement(sid="DeploymentLeases", actions=RELEASE_ACTIONS,
                                               resources=[self.table.table_arn]))
        if event_bus_name:
            bus_arn = stack.format_arn(service="events", resource="event-bus", resource_name=event_bus_name)
            role.add_to_policy(iam.PolicyStatement(sid="PublishEvents", actions=["events:PutEvents"],
                                                   resources=[bus_arn]))
        role.add_to_policy(iam.PolicyStatement(sid="DeadLetters", actions=["sqs:SendMessage"],
                                               resources=[self.dead_letters.queue_arn]))
        cfn = self.release.function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.dead_letter_config = lambda_.CfnFunction.DeadLetterConfigProperty(target_arn=self.dead_letters.queue_arn)
        self.release.function.configure_async_invoke(max_event_age=MAX_EVENT_AGE, retry_attempts=2)

        self.execution_rule = events.Rule(
            self,
            "ExecutionEndedRule",
            description="albgate: a rollout execution ended: release its Deployment's lease, publish its outcome",
            event_pattern=events.EventPattern(
                source=[STATES_SOURCE],
                detail_type=[STATES_DETAIL_TYPE],
                detail={"status": list(TERMINAL_STATUSES), "stateMachineArn": [state_machine.state_machine_arn]},
            ),
            targets=[
                targets.LambdaFunction(
                    self.release.function,
                    dead_letter_queue=self.dead_letters,
                    max_event_age=MAX_EVENT_AGE,
                    retry_attempts=185,  # EventBridge's maximum: delivery is retried, then dead-lettered
                )
            ],
        )
