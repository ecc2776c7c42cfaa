"""The small DynamoDB tables albgate keeps state in: on demand, point-in-time recovery on, gone with the stack.

Job: one definition for the ECR trigger's lock table and the Describe* share's table, so both satisfy the same
cdk-nag rules (AwsSolutions-DDB3: point-in-time recovery) the same way.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct


def small_table(scope: Construct, construct_id: str, *, partition_key: str,
                time_to_live_attribute: str | None = None) -> dynamodb.Table:
    """A table keyed by one string attribute; what it holds is short-lived, so it is destroyed with the stack."""
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=time_to_live_attribute,
        removal_policy=RemovalPolicy.DESTROY,
    )
