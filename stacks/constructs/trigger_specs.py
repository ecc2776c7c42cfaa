"""The ECR trigger's Lambdas: what each runs and may touch (the trigger's part of handler_specs.py's list).

Invariant: neither function talks to Kubernetes or the ELB API (``kube="none"``, ``elb_read=False``); their
only AWS permissions are granted by their constructs, the trigger's by ``stacks/constructs/ecr_trigger.py`` and
the execution-events function's by ``stacks/constructs/deployment_leases.py``: states:StartExecution on the
rollout state machine and DescribeExecution on its executions, each its own item actions on the lease table,
events:PutEvents on albgate's bus, sqs:SendMessage on the DLQ (and the trigger ecr:DescribeImages for push
times).
"""

from __future__ import annotations

from stacks.constructs.handler_specs import HandlerSpec

ECR_TRIGGER = HandlerSpec(
    "EcrTrigger",
    "ecr_trigger",
    kube="none",
    elb_read=False,
    timeout_seconds=30,
    description="ECR push: start one gated rollout per matching application, pinned by digest, one per Deployment",
)
EXECUTION_EVENTS = HandlerSpec(
    "ExecutionEvents",
    "execution_events",
    kube="none",
    elb_read=False,
    timeout_seconds=30,
    description="rollout ended: publish its outcome, release the Deployment's lock, start the queued push",
)

TRIGGER_HANDLERS: tuple[HandlerSpec, ...] = (ECR_TRIGGER, EXECUTION_EVENTS)
