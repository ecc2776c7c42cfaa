"""The role a release in another account assumes to start and read this stack's rollouts.

Invariant: trusted by the release stack's roles only (the home account, ``aws:PrincipalArn`` under the release
stack's name), allowed StartExecution on this stack's rollout state machine and DescribeExecution on its
executions, nothing else.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.release_names import partition_of


class ReleaseAccess(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, state_machine: sfn.StateMachine, home_account: str,
                 role_name: str, release_stack: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        partition = partition_of(stack.region)
        trusted = f"arn:{partition}:iam::{home_account}:role/{release_stack}-*"
        self.role = iam.Role(
            self, "Role", role_name=role_name,
            description="albgate: the release state machine of the home account starts and reads this stack's rollouts",
            assumed_by=iam.AccountPrincipal(home_account).with_conditions({"ArnLike": {"aws:PrincipalArn": trusted}}),
        )
        self.role.add_to_policy(iam.PolicyStatement(sid="StartRollouts", actions=["states:StartExecution"],
                                                    resources=[state_machine.state_machine_arn]))
        executions = stack.format_arn(service="states", resource="execution",
                                      resource_name=f"{state_machine.state_machine_name}:*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.role.add_to_policy(iam.PolicyStatement(sid="ReadRollouts", actions=["states:DescribeExecution"],
                                                    resources=[executions]))
        NagSuppressions.add_resource_suppressions(self.role, [NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="states:DescribeExecution on this stack's rollout state machine's executions: the release reads "
            "the executions it started, whose names are made at run time",
        )], apply_to_children=True)
