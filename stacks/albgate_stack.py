"""The albgate stack: one function per rollout handler, their cluster access, and the rollout state machine.

Invariant: the stack is built only from a validated ``AlbgateConfig`` and makes no AWS call while it is built
(the VPC, subnets and security groups are imported by id, never looked up). It creates exactly one Lambda per
entry of ``ALL_HANDLERS``, each from its family's code asset (``specs.asset_family``), and hands the rollout's to
``RolloutWorkflow`` and the bootstrap's to ``BootstrapWorkflow``.
"""

from __future__ import annotations

from aws_cdk import Annotations, CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from lambdas.domain.network import NetworkSpec
from stacks.config import AlbgateConfig, ClusterConfig
from stacks.release_names import release_role_name, rollout_state_machine_name
from stacks.constructs.bootstrap_specs import BOOTSTRAP_HANDLERS
from stacks.constructs.bootstrap_workflow import BootstrapWorkflow
from stacks.constructs.cluster_access import ClusterAccess, cluster_arn
from stacks.constructs.deployment_leases import DeploymentLeases
from stacks.constructs.describe_budget import DescribeBudgetTable
from stacks.constructs.ecr_trigger import EVENT_BUS_NAME, EcrTrigger, trigger_applications
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS
from stacks.constructs.helm_layer import HelmLayer
from stacks.constructs.lambda_asset import CORE, FAMILIES, lambdas_code
from stacks.constructs.lambda_function import AlbgateFunction, VpcPlacement
from stacks.constructs.lbc_iam import LbcIdentity
from stacks.constructs.observability import RolloutObservability
from stacks.constructs.release_access import ReleaseAccess
from stacks.constructs.rollout_workflow import RolloutWorkflow
from stacks.constructs.specs import ALL_HANDLERS, asset_family
from stacks.constructs.vpc_endpoints import vpc_endpoint_needs


class AlbgateStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AlbgateConfig,
                 release_home_account: str | None = None, released: bool = False, release_stack: str = "",
                 **kwargs) -> None:
        """``released``: a release rolls a cluster of this stack: the rollout state machine gets its fixed name
        (stacks/release_stack.py), and in an account other than ``release_home_account`` a role for the release."""
        super().__init__(scope, construct_id, **kwargs)
        self.config = config

        codes = {family.name: lambdas_code(family) for family in FAMILIES}
        cluster_arns = [cluster_arn(self, c) for c in config.clusters]
        placement = self._vpc_placement(config)
        # Preflight pins an image tag to its digest: DescribeImages on the configured repositories only.
        ecr_arns = sorted(
            {
                self.format_arn(service="ecr", resource="repository", resource_name=a.ecr_repository)
                for a in config.applications
                if a.ecr_repository
            }
        )

        self.functions: dict[str, AlbgateFunction] = {
            spec.name: AlbgateFunction(
                self,
                spec.name,
                spec=spec,
                code=codes[asset_family(spec).name],
                cluster_arns=cluster_arns,
                log_level=config.log_level,
                log_retention_days=config.log_retention_days,
                vpc=placement,
                ecr_repository_arns=ecr_arns,
                cluster_names=[c.name for c in config.clusters],
            )
            for spec in ALL_HANDLERS
        }
        self.cluster_access = ClusterAccess(self, "ClusterAccess", config=config, functions=self.functions)
        # All rollouts together keep to a share of the account's Describe* bucket (lambdas/domain/budget.py)
        self.describe_budget = (
            DescribeBudgetTable(self, "DescribeBudget", config=config.describe_budget, functions=self.functions.values())
            if config.describe_budget.enabled
            else None
        )

        # albgate's event bus exists when the ECR trigger does (it is created there); the state machine then
        # announces every passed step on it. Referenced by name: the trigger needs the state machine first.
        bus = (
            events.EventBus.from_event_bus_name(self, "AlbgateEvents", EVENT_BUS_NAME)
            if trigger_applications(config)
            else None
        )
        self.workflow = RolloutWorkflow(
            self,
            "Rollout",
            functions={name: f.function for name, f in self.functions.items()},
            specs=ROLLOUT_HANDLERS,
            event_bus=bus,
            state_machine_name=rollout_state_machine_name(config.stack_name) if released else None,
        )
        self.state_machine = self.workflow.state_machine
        self.release_role = (
            ReleaseAccess(self, "ReleaseAccess", state_machine=self.state_machine, home_account=release_home_account,
                          role_name=release_role_name(config.stack_name), release_stack=release_stack).role
            if released and release_home_account and release_home_account != config.account
            else None
        )
        self.observability = RolloutObservability(self, "Observability", state_machine=self.state_machine)
        # One rollout per Deployment, whoever starts it: the lease table, its takers' grants, and the function
        # that releases a lease when its execution ends (docs/rollout.md, "One rollout per Deployment")
        self.leases = DeploymentLeases(
            self, "Leases", config=config, state_machine=self.state_machine, code=codes[CORE.name],
            functions=self.functions.values(), event_bus_name=EVENT_BUS_NAME if trigger_applications(config) else None,
        )
        # ECR pushes start rollouts by themselves: one per (Deployment, digest), queued on the Deployment's lease
        self.ecr_trigger = EcrTrigger(self, "EcrTrigger", config=config, state_machine=self.state_machine,
                                    code=codes[CORE.name], lease_table=self.leases.table,
                                    dead_letters=self.leases.dead_letters)

        # Pods created outside a rollout (scale-ups) carry albgate's gate too: open it once their target is
        # healthy, as the controller does for its own gate. Once a minute, with the applications as input.
        events.Rule(
            self,
            "GateKeeperSchedule",
            description="albgate: open the readiness gate of healthy pods created outside a rollout",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[
                targets.LambdaFunction(
                    self.functions["GateKeeper"].function,
                    event=events.RuleTargetInput.from_object(
                        {
                            "applications": [
                                {"cluster": a.cluster, "namespace": a.namespace, "deployment": a.deployment}
                                for a in config.applications
                            ]
                        }
                    ),
                    retry_attempts=0,  # the next minute is the retry
                )
            ],
        )
        # LambdaInvoke grants lambda:InvokeFunction on each function ARN and on "<ARN>:*" (its versions and
        # aliases); cdk-nag flags the ":*" suffix.
        NagSuppressions.add_resource_suppressions(
            self.state_machine,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="lambda:InvokeFunction on '<function ARN>:*' only covers the versions and aliases of "
                    "albgate's own functions (granted by LambdaInvoke); the function ARNs are explicit",
                    applies_to=[
                        f"Resource::<{self.get_logical_id(f.function.node.default_child)}.Arn>:*"
                        for f in self.functions.values()
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Resource '*' only for actions without resource types: the CloudWatch Logs vended-log "
                    "delivery actions (logs:CreateLogDelivery/GetLogDelivery/UpdateLogDelivery/DeleteLogDelivery/"
                    "ListLogDeliveries/PutResourcePolicy/DescribeResourcePolicies/DescribeLogGroups) that the Step "
                    "Functions developer guide ('IAM policies for logging to CloudWatch Logs') requires on '*' for "
                    "logging level ALL, and the X-Ray tracing actions (PutTraceSegments/PutTelemetryRecords/"
                    "GetSamplingRules/GetSamplingTargets), which the Service Authorization Reference lists without "
                    "resource types",
                    applies_to=["Resource::*"],
                ),
            ],
            apply_to_children=True,
        )

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        self._bootstrap(config)

    def _bootstrap(self, config: AlbgateConfig) -> None:
        """The controller's identity per cluster and the bootstrap state machine (docs/bootstrap.md)."""
        # albgate's controller role (Pod Identity, or IRSA with an OIDC provider), unless the cluster's config names
        # an IRSA role of its own (controller.role_arn)
        self.lbc = {
            c.name: LbcIdentity(self, f"Lbc-{c.name}", cluster_name=c.name, oidc_provider_arn=c.oidc_provider_arn)
            for c in config.clusters
            if c.controller.role_arn is None
        }
        install = self.functions["BootstrapInstallController"]
        # helm alone, from the pinned aws-cdk kubectl/helm layer package (never downloaded at run time)
        install.function.add_layers(HelmLayer(self, "HelmLayer").layer)
        mirrors = [m for c in config.clusters if (m := c.ecr_chart_mirror) is not None]
        if mirrors:
            # The registry login and the pull of the configured charts' repositories only
            install.grant_chart_pull([
                self.format_arn(service="ecr", region=m.region, account=m.account, resource="repository",
                                resource_name=m.repository)
                for m in mirrors
            ])
        network = None
        if self.vpc_placement is not None:
            # Every function joins the VPC (the loop in __init__): the endpoints their specs call
            network = NetworkSpec(config.region, self.vpc_placement.vpc.vpc_id, tuple(self.vpc_placement.subnet_ids),
                                  tuple(vpc_endpoint_needs(ALL_HANDLERS, config))).to_json()
        self.bootstrap = BootstrapWorkflow(
            self,
            "Bootstrap",
            functions={s.name: self.functions[s.name].function for s in BOOTSTRAP_HANDLERS},
            rollout_state_machine=self.state_machine,
            clusters={c.name: self._controller_settings(c) for c in config.clusters},
            network=network,
            specs=BOOTSTRAP_HANDLERS,
        )
        CfnOutput(self, "BootstrapStateMachineArn", value=self.bootstrap.state_machine.state_machine_arn)

    def _controller_settings(self, cluster: ClusterConfig) -> dict[str, str]:
        """What the bootstrap installs on this cluster, fixed at deploy time (an execution cannot change it)."""
        c = cluster.controller
        settings = {"region": cluster.region, "chart_repository": c.chart_repository, "chart_version": c.chart_version}
        if cluster.vpc_id:
            settings["vpc_id"] = cluster.vpc_id
        if c.image_repository:
            settings["image_repository"] = c.image_repository
        identity = self.lbc.get(cluster.name)
        role = c.role_arn or (identity.role_arn if identity is not None and identity.mode == "irsa" else None)
        if role:
            settings["role_arn"] = role
        return settings

    def _vpc_placement(self, config: AlbgateConfig) -> VpcPlacement | None:
        """Import the private clusters' VPC by id (no lookup: synth stays offline)."""
        vpc_id = config.private_vpc_id
        self.vpc_placement: VpcPlacement | None = None
        if vpc_id is None:
            return None
        subnet_ids = config.vpc_subnet_ids
        sg_ids = config.vpc_security_group_ids
        vpc = ec2.Vpc.from_vpc_attributes(self, "ClusterVpc", vpc_id=vpc_id, availability_zones=[""])
        subnets = [ec2.Subnet.from_subnet_id(self, f"Subnet-{s}", s) for s in subnet_ids]
        for subnet in subnets:
            # Only the subnet id reaches the template (Lambda VpcConfig); nothing here reads its route table.
            Annotations.of(subnet).acknowledge_warning(
                "@aws-cdk/aws-ec2:noSubnetRouteTableId", "albgate only passes subnet ids to Lambda VpcConfig"
            )
        groups = [ec2.SecurityGroup.from_security_group_id(self, f"Sg-{g}", g, mutable=False) for g in sg_ids]
        self.vpc_placement = VpcPlacement(vpc=vpc, subnets=subnets, security_groups=groups, subnet_ids=subnet_ids,
                                          security_group_ids=sg_ids)
        return self.vpc_placement
