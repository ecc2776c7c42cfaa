"""One albgate Lambda function with the project's defaults, and exactly the AWS permissions its HandlerSpec names.

Invariant: every function runs Python 3.12 on x86_64 (the platform the asset is bundled for), traces with
X-Ray, logs to its own log group with a retention, carries the Powertools environment, and has its own role
with no managed policy: logs, X-Ray, ENI (only in a VPC), the ELB actions of the ``ElbPort`` methods the spec
names (``elb_read``, ``elb_health``, ``elb_deregister``, ``elb_register``), ``ecr:DescribeImages`` (``ecr_read``),
``cloudwatch:DescribeAlarms``/``DescribeAlarmHistory`` on the account's alarms in its Region (``alarms_read``,
``alarms_history``), ``cloudwatch:GetMetricData`` (``metrics_read``, "*"),
``ec2:DescribeVpcEndpoints/DescribeRouteTables`` (``network_read``, in a VPC only), the chart pull from a private
ECR mirror (``chart_pull``, through ``grant_chart_pull``, only when a cluster's chart is on one) and
``eks:DescribeCluster`` on the configured clusters (only when ``spec.kube`` is not "none"). Every ``*``
resource left is for an action the Service Authorization Reference lists without resource types, and carries
a cdk-nag acknowledgment saying so. tests/iam checks each role against the AWS calls its handler was recorded
making (docs/foundation.md, "IAM from recorded calls").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from stacks.constructs.handler_specs import HandlerSpec
from stacks.constructs.lbc_iam import CLUSTER_TAG

RUNTIME = lambda_.Runtime.PYTHON_3_12  # the asset's wheels are cp312 (lambda_asset.PYTHON_VERSION)
ARCHITECTURE = lambda_.Architecture.X86_64  # the asset's wheels are manylinux2014_x86_64
SERVICE_NAME = "albgate"

# CloudWatch Logs retention in days -> the CDK enum (whose Python values are names, not numbers).
RETENTION = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS, 120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS, 545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS, 1096: logs.RetentionDays.THREE_YEARS, 1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS, 2557: logs.RetentionDays.SEVEN_YEARS, 2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS, 3653: logs.RetentionDays.TEN_YEARS,
}  # fmt: skip

# Elastic Load Balancing v2 Describe* actions have no resource types in the Service Authorization Reference
# ("Actions, resources, and condition keys for Elastic Load Balancing V2"), so they only work with "*".
# ElbPort.describe_target_group (spec.elb_read) and ElbPort.describe_target_health (spec.elb_health):
ELB_TARGET_GROUP_READ_ACTIONS = [
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
]
ELB_HEALTH_READ_ACTIONS = ["elasticloadbalancing:DescribeTargetHealth"]
# Every ELB read albgate makes; each function is granted only the part its spec names (elb_read_actions).
ELB_READ_ACTIONS = ELB_HEALTH_READ_ACTIONS + ELB_TARGET_GROUP_READ_ACTIONS
# Lambda creates the function's ENIs with the execution role (Lambda developer guide, "Giving Lambda functions
# access to resources in an Amazon VPC"); DescribeNetworkInterfaces/DescribeSubnets only work on "*".
ENI_DESCRIBE_ACTIONS = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
# cdk-nag shows a resource with its tokens unresolved: the account of an account-agnostic stack (no account in the
# config or the environment, e.g. an offline synth) is "<AWS::AccountId>", whose "::" a "[^:]+" cannot match.
_PARTITION = r"(aws[a-z-]*|<AWS::Partition>)"
_REGION = r"([a-z0-9-]+|<AWS::Region>)"
_ACCOUNT = r"(\d{12}|<AWS::AccountId>)"
ENI_WILDCARD = RegexAppliesTo(regex=rf"/^Resource::arn:{_PARTITION}:ec2:{_REGION}:{_ACCOUNT}:network-interface\/\*$/g")
TARGET_GROUP_WILDCARD = RegexAppliesTo(
    regex=rf"/^Resource::arn:{_PARTITION}:elasticloadbalancing:{_REGION}:{_ACCOUNT}:targetgroup\/\*\/\*$/g"
)
# CloudWatch alarms, per AlarmPort method (spec.alarms_read, spec.alarms_history). Both actions take the `alarm`
# resource type, arn:${Partition}:cloudwatch:${Region}:${Account}:alarm:${AlarmName} (docs/facts.md, "CloudWatch
# alarms albgate watches"); a policy names its alarms at run time, so the grant is every alarm of this account and
# Region. Composite alarms would need "*" and are not watched.
ALARM_READ_ACTIONS = ["cloudwatch:DescribeAlarms"]
ALARM_HISTORY_ACTIONS = ["cloudwatch:DescribeAlarmHistory"]
ALARM_WILDCARD = RegexAppliesTo(regex=rf"/^Resource::arn:{_PARTITION}:cloudwatch:{_REGION}:{_ACCOUNT}:alarm:\*$/g")
# Neither has resource types in the Service Authorization Reference for Amazon EC2 (docs/facts.md, "VPC endpoints
# for the functions in a VPC"): Check Network reads the VPC with them.
NETWORK_READ_ACTIONS = ["ec2:DescribeVpcEndpoints", "ec2:DescribeRouteTables"]
# What pulling the chart from a private ECR mirror takes (docs/facts.md, "Private ECR mirror of the controller"):
# the registry login's token (no resource types), then the manifest and the layers of the chart's repository.
ECR_LOGIN_ACTIONS = ["ecr:GetAuthorizationToken"]
ECR_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
ENI_MANAGE_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


@dataclass(frozen=True)
class VpcPlacement:
    """Where the functions run when a cluster endpoint is private (from the config)."""

    vpc: ec2.IVpc
    subnets: Sequence[ec2.ISubnet]
    security_groups: Sequence[ec2.ISecurityGroup]
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]


def elb_read_actions(spec: HandlerSpec) -> list[str]:
    """The ELBv2 Describe* actions of the ``ElbPort`` reads the spec names, in ``ELB_READ_ACTIONS`` order."""
    return (ELB_HEALTH_READ_ACTIONS if spec.elb_health else []) + (
        ELB_TARGET_GROUP_READ_ACTIONS if spec.elb_read else []
    )


def alarm_actions(spec: HandlerSpec) -> list[str]:
    """The CloudWatch actions of the ``AlarmPort`` methods the spec names."""
    return (ALARM_READ_ACTIONS if spec.alarms_read else []) + (ALARM_HISTORY_ACTIONS if spec.alarms_history else [])


def powertools_environment(log_level: str) -> dict[str, str]:
    """The environment Powertools Logger/Tracer/Metrics read at cold start (one service, one namespace)."""
    return {
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": SERVICE_NAME,
        "LOG_LEVEL": log_level,
    }


class AlbgateFunction(Construct):
    """Role + log group + Function for one HandlerSpec; exposes ``function``, ``role`` and ``log_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: HandlerSpec,
        code: lambda_.Code,
        cluster_arns: Sequence[str],
        log_level: str = "INFO",
        log_retention_days: int = 30,
        vpc: VpcPlacement | None = None,
        extra_environment: Mapping[str, str] | None = None,
        ecr_repository_arns: Sequence[str] = (),
        cluster_names: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        stack = Stack.of(self)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=RETENTION[log_retention_days],
            # Kept on stack deletion: a rollout's log is its audit trail.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"albgate {spec.name}: {spec.description}"[:1000],
        )
        # Instead of AWSLambdaBasicExecutionRole (logs:* on every log group): write to this log group only.
        self.log_group.grant_write(self.role)

        wildcard_reasons: list[str] = [
            "xray:PutTraceSegments/PutTelemetryRecords (added by Tracing.ACTIVE) have no resource types in the "
            "Service Authorization Reference for AWS X-Ray, so they require Resource '*'"
        ]
        elb_reads = elb_read_actions(spec)
        if elb_reads and spec.metrics_read:
            # One statement for the reads "*" must grant: a second would push the largest configurations' role
            # policy past its size into an overflow policy.
            self.role.add_to_policy(iam.PolicyStatement(sid="ReadElbAndAlbMetrics",
                                                        actions=[*elb_reads, "cloudwatch:GetMetricData"],
                                                        resources=["*"]))
        elif elb_reads:
            self.role.add_to_policy(iam.PolicyStatement(sid="ReadElb", actions=elb_reads, resources=["*"]))
            wildcard_reasons.append(
                f"{'/'.join(elb_reads)} have no resource types in the Service Authorization Reference for "
                "Elastic Load Balancing V2 (read-only; target groups are chosen at run time by the Ingress)"
            )
        # ELB writes only on target groups the Load Balancer Controller of a configured cluster manages: it tags each
        # one with elbv2.k8s.aws/cluster = the cluster's name (the tag its own IAM policy conditions on).
        target_group_writes = [
            (spec.elb_deregister, "DrainReleasedTargets", "elasticloadbalancing:DeregisterTargets"),
            (spec.elb_register, "RegisterMissedTargets", "elasticloadbalancing:RegisterTargets"),
        ]
        for wanted, sid, action in target_group_writes:
            if not (wanted and cluster_names):
                continue
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid=sid,
                    actions=[action],
                    resources=[
                        stack.format_arn(service="elasticloadbalancing", resource="targetgroup", resource_name="*/*")
                    ],
                    conditions={"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": sorted(set(cluster_names))}},
                )
            )
            wildcard_reasons.append(
                f"{action} on targetgroup/*/* of this account and Region, conditioned on the {CLUSTER_TAG} tag "
                "naming a configured cluster: the controller creates and names its target groups at run time, so "
                "the tag is the narrowest fixed selector"
            )
        alarm_reads = alarm_actions(spec)
        if alarm_reads:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadAlarms",
                    actions=alarm_reads,
                    resources=[stack.format_arn(service="cloudwatch", resource="alarm", resource_name="*",
                                                arn_format=ArnFormat.COLON_RESOURCE_NAME)],
                )
            )
            wildcard_reasons.append(
                f"{'/'.join(alarm_reads)} on alarm:* of this account and Region: the rollout's policy names its "
                "alarms at run time, and the alarm resource type is the narrowest the Service Authorization "
                "Reference gives these read-only actions"
            )
        if spec.metrics_read:
            if not elb_reads:
                self.role.add_to_policy(
                    iam.PolicyStatement(sid="ReadAlbMetrics", actions=["cloudwatch:GetMetricData"], resources=["*"])
                )
            wildcard_reasons.append(
                "cloudwatch:GetMetricData has no resource types in the Service Authorization Reference for Amazon "
                "CloudWatch (read-only; the target groups whose ALB metrics a rollout's policy.analysis reads are "
                "chosen at run time)"
            )
        if spec.ecr_read and ecr_repository_arns:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="PinImageTags", actions=["ecr:DescribeImages"], resources=list(ecr_repository_arns)
                )
            )
        if spec.kube != "none":
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="DescribeCluster", actions=["eks:DescribeCluster"], resources=list(cluster_arns)
                )
            )
        if spec.network_read and vpc is not None:
            self.role.add_to_policy(
                iam.PolicyStatement(sid="ReadVpcNetwork", actions=NETWORK_READ_ACTIONS, resources=["*"])
            )
            wildcard_reasons.append(
                f"{'/'.join(NETWORK_READ_ACTIONS)} have no resource types in the Service Authorization Reference "
                "for Amazon EC2 (read-only: whether the functions' VPC reaches the services they call)"
            )
        if vpc is not None:
            self.role.add_to_policy(
                iam.PolicyStatement(sid="DescribeEnis", actions=ENI_DESCRIBE_ACTIONS, resources=["*"])
            )

            def ec2_arn(kind: str, name: str) -> str:
                return stack.format_arn(service="ec2", resource=kind, resource_name=name)

            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="ManageEnis",
                    actions=ENI_MANAGE_ACTIONS,
                    resources=[ec2_arn("network-interface", "*")]
                    + [ec2_arn("subnet", s) for s in vpc.subnet_ids]
                    + [ec2_arn("security-group", g) for g in vpc.security_group_ids],
                )
            )
            wildcard_reasons.append(
                "ec2:DescribeNetworkInterfaces/DescribeSubnets only work with Resource '*' (Lambda developer guide, "
                "VPC access); the ENI actions are scoped to network-interface/* in this account and Region because "
                "Lambda picks the ENI ids, plus the configured subnets and security groups"
            )

        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=code,
            description=spec.description[:256],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            environment={**powertools_environment(log_level), **(extra_environment or {})},
            vpc=vpc.vpc if vpc else None,
            vpc_subnets=ec2.SubnetSelection(subnets=list(vpc.subnets)) if vpc else None,
            security_groups=list(vpc.security_groups) if vpc else None,
        )

        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="; ".join(wildcard_reasons),
                    applies_to=["Resource::*"]
                    + ([ENI_WILDCARD] if vpc else [])
                    + ([TARGET_GROUP_WILDCARD] if (spec.elb_deregister or spec.elb_register) and cluster_names
                       else [])
                    + ([ALARM_WILDCARD] if alarm_reads else []),
                )
            ],
            apply_to_children=True,
        )
        self._chart_pull_granted = False
        NagSuppressions.add_resource_suppressions(
            self.function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Pinned to Python 3.12 on purpose: the code asset's native wheels (pydantic-core) are "
                    "bundled for CPython 3.12 (lambda_asset.PYTHON_VERSION); a runtime upgrade is a deliberate "
                    "change together with the bundling target and its tests, not an automatic one",
                )
            ],
        )

    def grant_chart_pull(self, repository_arns: Sequence[str]) -> None:
        """Pull the controller's chart from these private ECR repositories: the registry login's token and the
        repositories' manifests and layers. Only a spec with ``chart_pull`` may, once, with at least one ARN."""
        if not self.spec.chart_pull:
            raise ValueError(f"{self.spec.name} does not pull charts (HandlerSpec.chart_pull)")
        if self._chart_pull_granted or not repository_arns:
            raise ValueError(f"{self.spec.name}: grant_chart_pull takes the chart repositories once, at least one")
        self._chart_pull_granted = True
        self.role.add_to_policy(iam.PolicyStatement(sid="LogInToChartRegistry", actions=ECR_LOGIN_ACTIONS,
                                                    resources=["*"]))
        self.role.add_to_policy(iam.PolicyStatement(sid="PullChart", actions=ECR_PULL_ACTIONS,
                                                    resources=sorted(set(repository_arns))))
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken has no resource types in the Service Authorization Reference "
                    "for Amazon ECR: the registry login before helm pulls the controller's chart from the "
                    "configured private ECR mirror; the pull itself (BatchGetImage/GetDownloadUrlForLayer) is "
                    "granted on the chart's repository only",
                    applies_to=["Resource::*"],
                )
            ],
            apply_to_children=True,
        )
