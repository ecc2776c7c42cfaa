"""Grants a function's role needs on AWS that no handler code calls: the Lambda service uses them for the function.

Job: for a deployed function (as the template describes it), the requests the Lambda service makes with the
function's execution role because of the function's own configuration. They are checked like recorded calls:
the role must allow each, and a grant they use is not an unused grant. Each entry says why and where AWS
documents it (docs/facts.md, "IAM from recorded calls"); an entry applies only when the function's template
properties call for it, and only to the resources those properties name.

Invariant: nothing here is a call the handler code makes. A grant for the code's own calls is justified by a
recorded call, never by this list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.iam.policy import Request, TemplateResolver


@dataclass(frozen=True)
class AwsOnly:
    name: str
    actions: tuple[str, ...]
    reason: str
    source: str  # where AWS documents it
    # The resources the Lambda service uses these actions on for a function with these properties; () = none.
    resources: Callable[[dict[str, Any], TemplateResolver], tuple[str, ...]]

    def requests(self, properties: dict[str, Any], resolver: TemplateResolver) -> list[Request]:
        return [Request(a, r) for a in self.actions for r in self.resources(properties, resolver)]


def _own_log_group(props: dict[str, Any], resolver: TemplateResolver) -> tuple[str, ...]:
    group = (props.get("LoggingConfig") or {}).get("LogGroup")
    return (resolver.arn(group["Ref"]),) if isinstance(group, dict) and "Ref" in group else ()


def _traced(props: dict[str, Any], resolver: TemplateResolver) -> tuple[str, ...]:
    return ("*",) if (props.get("TracingConfig") or {}).get("Mode") == "Active" else ()


def _vpc_describe(props: dict[str, Any], resolver: TemplateResolver) -> tuple[str, ...]:
    return ("*",) if props.get("VpcConfig") else ()


def _vpc_manage(props: dict[str, Any], resolver: TemplateResolver) -> tuple[str, ...]:
    vpc = props.get("VpcConfig")
    if not vpc:
        return ()
    p = resolver.placeholders

    def ec2(kind: str, name: str) -> str:
        return f"arn:{p.partition}:ec2:{p.region}:{p.account}:{kind}/{name}"

    return (
        (ec2("network-interface", "*"),)
        + tuple(ec2("subnet", str(resolver.resolve(s))) for s in vpc.get("SubnetIds") or [])
        + tuple(ec2("security-group", str(resolver.resolve(g))) for g in vpc.get("SecurityGroupIds") or [])
    )


def _dead_letter_queue(props: dict[str, Any], resolver: TemplateResolver) -> tuple[str, ...]:
    target = (props.get("DeadLetterConfig") or {}).get("TargetArn")
    return (str(resolver.resolve(target)),) if target else ()


AWS_ONLY: tuple[AwsOnly, ...] = (
    AwsOnly(
        "function logs",
        ("logs:CreateLogStream", "logs:PutLogEvents"),
        "Lambda writes the function's output to its log group with the execution role's permissions",
        "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html",
        _own_log_group,
    ),
    AwsOnly(
        "active tracing",
        ("xray:PutTraceSegments", "xray:PutTelemetryRecords"),
        "with active tracing Lambda and the X-Ray SDK in the function send segments with the execution role; "
        "X-Ray lists these actions without resource types",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html",
        _traced,
    ),
    AwsOnly(
        "VPC network interfaces (describe)",
        ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"),
        "Lambda creates and manages the network interfaces of a function in a VPC with its execution role",
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html",
        _vpc_describe,
    ),
    AwsOnly(
        "VPC network interfaces (manage)",
        ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
         "ec2:UnassignPrivateIpAddresses"),
        "Lambda creates and manages the network interfaces of a function in a VPC with its execution role, in "
        "the function's subnets and security groups",
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html",
        _vpc_manage,
    ),
    AwsOnly(
        "dead-letter queue",
        ("sqs:SendMessage",),
        "Lambda sends an asynchronous event that failed every retry to the function's dead-letter queue with "
        "the execution role's permissions",
        "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html",
        _dead_letter_queue,
    ),
)


def aws_only_requests(properties: dict[str, Any], resolver: TemplateResolver) -> list[tuple[AwsOnly, Request]]:
    return [(entry, r) for entry in AWS_ONLY for r in entry.requests(properties, resolver)]
