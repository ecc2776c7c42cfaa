"""The release stack: the release state machine in the home account and Region, and where each release reaches.

Invariant: built from a validated ``AlbgateConfig`` with releases; every ARN a release reaches is fixed at synth
from the config (``release_targets``): the rollout state machine each environment's stack names
(``rollout_state_machine_name``) and, in another account, the role that stack creates for the release
(``release_role_name``). Nothing is looked up at synth.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from lambdas.domain.release import ReleaseSpec, ReleaseTarget, WaveSpec
from stacks.config import AlbgateConfig
from stacks.release_names import partition_of, release_role_name, release_stack_name, rollout_state_machine_name
from stacks.constructs.release_trigger import RELEASE_TRIGGER, ReleaseTrigger
from stacks.constructs.release_workflow import ReleaseWorkflow, releases_file

def release_targets(config: AlbgateConfig) -> list[ReleaseSpec]:
    """The configured releases as the release functions read them (every cluster resolved to its ARNs)."""
    home_account, _ = config.home
    specs: list[ReleaseSpec] = []
    for r in config.releases:
        waves = []
        for w in r.waves:
            targets = []
            for name, namespace, deployment in w.resolved(r):
                c = config.cluster(name)
                app = next(a for a in config.applications
                           if a.cluster == name and a.namespace == namespace and a.deployment == deployment)
                account = c.account or home_account or ""
                env_stack = config.environment_stack_name(c.account, c.region)
                arn = (f"arn:{partition_of(c.region)}:states:{c.region}:{account}:stateMachine:"
                       f"{rollout_state_machine_name(env_stack)}")
                role = (f"arn:{partition_of(c.region)}:iam::{account}:role/{release_role_name(env_stack)}"
                        if account != home_account else None)
                targets.append(ReleaseTarget(cluster=name, namespace=app.namespace, deployment=app.deployment,
                                             container=app.container, account=account, region=c.region,
                                             state_machine_arn=arn, role_arn=role))
            waves.append(WaveSpec(name=w.name, targets=targets, max_concurrency=w.max_concurrency or len(targets),
                                  bake_seconds=w.bake_seconds, approval=w.approval))
        specs.append(ReleaseSpec(name=r.name, waves=waves, rollback_completed_waves=r.rollback_completed_waves,
                                 policy=config.rollout_policy.model_dump(mode="json"),
                                 ecr_repository=r.ecr_repository, tag_pattern=r.tag_pattern))
    return specs


class ReleaseStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AlbgateConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.specs = release_targets(config)
        targets = [t for s in self.specs for w in s.waves for t in w.targets]
        self.workflow = ReleaseWorkflow(
            self, "Release",
            releases_json=releases_file([s.model_dump(mode="json") for s in self.specs]),
            # another account's rollouts are reached through its release role only (its own policy grants them)
            rollout_state_machine_arns=[t.state_machine_arn for t in targets if not t.role_arn],
            child_role_arns=[t.role_arn for t in targets if t.role_arn],
            log_level=config.log_level, log_retention_days=config.log_retention_days,
            include_execution_data=config.include_execution_data,
            bus_name=f"{config.stack_name}-releases",
        )
        self.state_machine = self.workflow.state_machine
        self.functions = dict(self.workflow.functions)
        repositories = [s.ecr_repository for s in self.specs if s.ecr_repository]
        self.trigger = (
            ReleaseTrigger(self, "Trigger", state_machine=self.state_machine, code=self.workflow.code,
                           releases_layer=self.workflow.releases_layer, bus=self.workflow.event_bus,
                           repositories=repositories, log_level=config.log_level,
                           log_retention_days=config.log_retention_days)
            if repositories else None
        )
        if self.trigger is not None:
            self.functions[RELEASE_TRIGGER.name] = self.trigger.function
        CfnOutput(self, "ReleaseStateMachineArn", value=self.state_machine.state_machine_arn)
