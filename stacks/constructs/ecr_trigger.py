"""ECR push -> gated rollout: the push rule, the EcrTrigger Lambda, its configuration layer and albgate's event bus.

Job: one construct the stack adds with one call. It creates
- the ``albgate`` custom event bus, where albgate publishes Rollout Started / Queued / Order Unknown / Succeeded /
  Rolled Back / Failed;
- the ``EcrTrigger`` Lambda and the rule that sends it ``aws.ecr`` ``ECR Image Action`` events (PUSH, SUCCESS,
  the configured repositories, this account), dead-lettering into the queue it is given.
The Deployment lease table the trigger queues pushes on, the ``ExecutionEvents`` Lambda that releases a lease
when its execution ends (and starts the waiting push), and the dead-letter queue with its alarm belong to every
stack, with or without ECR repositories: ``stacks/constructs/deployment_leases.py``.

The trigger's configuration (the applications a push may roll and the rollout policy, ``TriggerConfig``) is a
JSON file in a small Lambda layer made at synth (``TriggerConfigLayer``, ``/opt/albgate/trigger.json``), not
in the environment: Lambda keeps at most 4 KB of environment per function (docs/facts.md, "AWS limits albgate
checks"), about twenty applications' worth. A layer holds up to the function's 250 MB, is deployed with the
stack (a new version whenever the configuration changes, which updates the function) and is read once per
container, like the environment. The environment keeps only names and ARNs, whatever the config holds: each
function's, at the longest those can resolve to, is checked against the 4 KB at synth
(``environment_problem``; tests/infrastructure/test_lambda_environment.py measures every function of a
60-application stack).

Invariant: least privilege, nothing on ``*`` beyond what ``AlbgateFunction`` already acknowledges (X-Ray):
states:StartExecution on the rollout state machine and states:DescribeExecution on its executions only,
GetItem/PutItem/UpdateItem/DeleteItem on the lease table only, ecr:DescribeImages on the configured repositories
only, events:PutEvents on the albgate bus only, sqs:SendMessage on the DLQ only. cdk-nag AwsSolutions stays
clean without any new acknowledgment. When no application names an ``ecr_repository`` the construct creates
nothing (``enabled`` is False), so the stack can always add it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.domain.limits import LAMBDA_ENVIRONMENT_MAX_BYTES, lambda_environment_bytes
from lambdas.domain.trigger import (
    ECR_DETAIL_TYPE,
    ECR_SOURCE,
    TRIGGER_CONFIG_ENV,
    TRIGGER_CONFIG_PATH,
    TriggerApplication,
    TriggerConfig,
)
from stacks.config import AlbgateConfig, ConfigError
from stacks.constructs.bus_policy import guard_albgate_source
from stacks.constructs.config_layer import layer_dir, layer_version
from stacks.constructs.lambda_asset import PROJECT_ROOT
from stacks.constructs.lambda_function import AlbgateFunction, powertools_environment
from stacks.constructs.deployment_leases import MAX_EVENT_AGE, acknowledge_executions_wildcard, executions_arn
from stacks.constructs.trigger_specs import ECR_TRIGGER

EVENT_BUS_NAME = "albgate"
LOCK_KEY = "lock_key"  # lambdas/adapters/dynamodb_lock.py
LOCK_TTL_ATTRIBUTE = "expires_at"
# The lease table's item actions the trigger calls: take or take over a lease (PutItem), queue a push on a held
# one (UpdateItem), let go of one taken for a push rolled long ago (DeleteItem). ExecutionEvents' are in
# deployment_leases.py.
LOCK_ITEM_ACTIONS = {
    "EcrTrigger": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
}
# A push older than this (deployment_leases.MAX_EVENT_AGE, 6 h) is not worth rolling any more.
# Environment variables both handlers validate at cold start (lambdas/handlers/_trigger_settings.py:EventSettings).
ENV_STATE_MACHINE = "ALBGATE_STATE_MACHINE_ARN"
ENV_LOCK_TABLE = "ALBGATE_LOCK_TABLE"
ENV_EVENT_BUS = "ALBGATE_EVENT_BUS"
ENV_TRIGGER_CONFIG = TRIGGER_CONFIG_ENV  # the trigger's configuration file, in its layer
# The longest value each deploy-time reference in the environment can resolve to (docs/facts.md, "AWS limits
# albgate checks"): a state machine ARN (StartExecution's stateMachineArn), a DynamoDB table name, an event bus
# name.
TOKEN_MAX_CHARS = {ENV_STATE_MACHINE: 256, ENV_LOCK_TABLE: 255, ENV_EVENT_BUS: 256}
CONFIG_CACHE_DIR = PROJECT_ROOT / ".albgate-cache" / "trigger-config"


def trigger_applications(config: AlbgateConfig) -> list[dict]:
    """The applications a push may roll, as the trigger Lambda reads them."""
    return [
        TriggerApplication(
            cluster=a.cluster,
            namespace=a.namespace,
            deployment=a.deployment,
            container=a.container,
            ecr_repository=a.ecr_repository,
            tag_pattern=a.tag_pattern,
            replicas=a.replicas,
        ).model_dump()
        for a in config.applications
        if a.ecr_repository
    ]


def trigger_config(config: AlbgateConfig) -> TriggerConfig:
    """What the trigger Lambda reads at cold start (``TRIGGER_CONFIG_PATH``)."""
    return TriggerConfig.model_validate({"applications": trigger_applications(config), "policy": config.rollout_policy})


def trigger_config_layer_dir(content: str, cache_dir: Path = CONFIG_CACHE_DIR) -> Path:
    """A folder holding only the configuration file where a layer puts it under /opt, one per content (made
    once: a later synth of the same configuration finds it)."""
    return layer_dir(content, TRIGGER_CONFIG_PATH, cache_dir)


def environment_problem(name: str, environment: Mapping[str, str], token_max_chars: Mapping[str, int]) -> str | None:
    """Why a function's environment could be over Lambda's 4 KB once deployed (None: it fits), measuring each
    value that is resolved at deploy time at the longest it can be (``token_max_chars``)."""
    longest = {}
    for key, value in environment.items():
        if Token.is_unresolved(value):
            if key not in token_max_chars:
                return f"{name}: environment variable {key} is resolved at deploy time and has no known longest value"
            value = "x" * token_max_chars[key]
        longest[key] = value
    size = lambda_environment_bytes(longest)
    if size <= LAMBDA_ENVIRONMENT_MAX_BYTES:
        return None
    return (
        f"{name}: its environment could reach {size} bytes, over Lambda's limit of {LAMBDA_ENVIRONMENT_MAX_BYTES} "
        "bytes for all of a function's environment variables together; put what grows with the config in the "
        "trigger's configuration layer instead"
    )


class TriggerConfigLayer(Construct):
    """``layer``: a LayerVersion holding only ``/opt/albgate/trigger.json``, the trigger's configuration."""

    def __init__(self, scope: Construct, construct_id: str, *, config: TriggerConfig) -> None:
        super().__init__(scope, construct_id)
        self.folder = folder = trigger_config_layer_dir(config.model_dump_json())
        self.layer = layer_version(
            self,
            "Layer",
            folder,
            f"albgate ECR trigger configuration ({len(config.applications)} applications, the rollout policy) at "
            f"{TRIGGER_CONFIG_PATH}",
        )


class EcrTrigger(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AlbgateConfig,
        state_machine: sfn.IStateMachine,
        code: lambda_.Code,
        lease_table: dynamodb.ITable,
        dead_letters: sqs.IQueue,
        event_bus_name: str = EVENT_BUS_NAME,
    ) -> None:
        super().__init__(scope, construct_id)
        apps = trigger_applications(config)
        self.enabled = bool(apps)
        if not self.enabled:
            return
        stack = Stack.of(self)
        repositories = sorted({a["ecr_repository"] for a in apps})

        self.bus = events.EventBus(self, "Bus", event_bus_name=event_bus_name,
                                   description="albgate: rollout started, queued, succeeded, rolled back, failed")
        # Events with source "albgate" only from the roles this stack lets publish (stacks/constructs/bus_policy.py)
        guard_albgate_source(self.bus)
        # One lease per Deployment, shared with every other start path (stacks/constructs/deployment_leases.py).
        self.table = lease_table
        self.dead_letters = dead_letters

        env = {
            ENV_STATE_MACHINE: state_machine.state_machine_arn,
            ENV_LOCK_TABLE: self.table.table_name,
            ENV_EVENT_BUS: self.bus.event_bus_name,
            ENV_TRIGGER_CONFIG: TRIGGER_CONFIG_PATH,
        }
        self.config_layer = TriggerConfigLayer(self, "Config", config=trigger_config(config))
        self.functions: dict[str, AlbgateFunction] = {}
        spec = ECR_TRIGGER
        problem = environment_problem(spec.name, {**powertools_environment(config.log_level), **env}, TOKEN_MAX_CHARS)
        if problem:
            raise ConfigError(problem)
        fn = AlbgateFunction(
            self,
            spec.name,
            spec=spec,
            code=code,
            cluster_arns=[],
            log_level=config.log_level,
            log_retention_days=config.log_retention_days,
            extra_environment=env,
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(sid="StartRollout", actions=["states:StartExecution"],
                                resources=[state_machine.state_machine_arn])
        )
        # Whether a lease's holder still runs: only a proof that it does not lets a push take the lease over.
        fn.role.add_to_policy(
            iam.PolicyStatement(sid="LeaseHolderStatus", actions=["states:DescribeExecution"],
                                resources=[executions_arn(self, state_machine)])
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(sid="DeploymentLocks", actions=LOCK_ITEM_ACTIONS[spec.name],
                                resources=[self.table.table_arn])
        )
        # Two pushes of the same second are ordered by ECR's own imagePushedAt (DescribeImages).
        fn.role.add_to_policy(
            iam.PolicyStatement(
                sid="PushTimes",
                actions=["ecr:DescribeImages"],
                resources=[stack.format_arn(service="ecr", resource="repository", resource_name=r)
                           for r in repositories],
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(sid="PublishEvents", actions=["events:PutEvents"], resources=[self.bus.event_bus_arn])
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(sid="DeadLetters", actions=["sqs:SendMessage"],
                                resources=[self.dead_letters.queue_arn])
        )
        # A failed asynchronous invocation (after Lambda's two retries) goes to the same DLQ.
        cfn = fn.function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.dead_letter_config = lambda_.CfnFunction.DeadLetterConfigProperty(target_arn=self.dead_letters.queue_arn)
        fn.function.configure_async_invoke(max_event_age=MAX_EVENT_AGE, retry_attempts=2)
        fn.function.add_layers(self.config_layer.layer)
        acknowledge_executions_wildcard(fn.role)
        self.functions[spec.name] = fn

        self.push_rule = events.Rule(
            self,
            "EcrPushRule",
            description="albgate: a successful ECR push to a configured repository starts a gated rollout",
            event_pattern=events.EventPattern(
                source=[ECR_SOURCE],
                detail_type=[ECR_DETAIL_TYPE],
                account=[stack.account],
                detail={"action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": repositories},
            ),
            targets=[
                targets.LambdaFunction(
                    fn.function,
                    dead_letter_queue=self.dead_letters,
                    max_event_age=MAX_EVENT_AGE,
                    retry_attempts=185,  # EventBridge's maximum: delivery is retried, then dead-lettered
                )
            ],
        )
