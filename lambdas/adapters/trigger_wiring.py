"""Wiring: the real ``TriggerPorts`` the two trigger Lambdas (ECR push, execution events) hand to the use case.

Job: build the Deployment lease table (DynamoDB), Step Functions (StartExecution, DescribeExecution), albgate's
event bus when the stack has one, and ECR's push times, for the stack's Region, with a wall clock and the
handler's log.

Invariant: building the ports calls no AWS API (the clients connect on their first call); this and the adapters
it builds are the only trigger code that imports boto3 (lambdas/domain/trigger_use_case.py sees the ports only).
"""

from __future__ import annotations

import time

from lambdas.adapters.dynamodb_lock import DynamoDbLock
from lambdas.adapters.ecr import EcrAdapter
from lambdas.adapters.eventbus import EventBusPublisher
from lambdas.adapters.stepfunctions import StepFunctionsExecutions, StepFunctionsStarter
from lambdas.domain.trigger_ports import DecisionLog
from lambdas.domain.trigger_use_case import TriggerPorts


def real_trigger_ports(lock_table: str, event_bus: str, region: str, log: DecisionLog) -> TriggerPorts:
    """The ports over AWS; ``event_bus`` "" when the stack has no albgate bus (nothing is then published)."""
    return TriggerPorts(
        DynamoDbLock(lock_table, region=region),
        StepFunctionsStarter(region=region),
        EventBusPublisher(event_bus, region=region) if event_bus else None,
        time.time,
        executions=StepFunctionsExecutions(region=region),
        images=EcrAdapter(),
        log=log,
    )
