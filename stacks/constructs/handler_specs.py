"""Which Lambdas albgate deploys and what each may touch: the single list the stack, IAM and the tests share.

Invariant: one entry per module in ``lambdas/handlers`` that is deployed; each function gets only the AWS
actions and Kubernetes access its entry names (least privilege), nothing is granted by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KubeAccess = Literal["none", "read", "rollout"]


@dataclass(frozen=True)
class HandlerSpec:
    name: str  # construct id and function name suffix, e.g. "CheckTargetHealth"
    module: str  # lambdas.handlers.<module>
    kube: KubeAccess  # read: get/list/watch in app namespaces; rollout: + patch deployments and pods/status
    elb_read: bool  # elasticloadbalancing:DescribeTargetHealth / DescribeTargetGroups / DescribeTargetGroupAttributes
    ecr_read: bool = False  # ecr:DescribeImages on the configured repositories (pin a tag to its digest)
    # elasticloadbalancing:DeregisterTargets on the configured clusters' controller-managed target groups: start
    # the drain of a released pod's target when the Load Balancer Controller has not (down or throttled)
    elb_deregister: bool = False
    # dynamodb:GetItem/UpdateItem on the Describe* budget table: takes its turn in albgate's share of the
    # account's Describe* bucket before each call (lambdas/domain/budget.py)
    describe_budget: bool = False
    memory_mb: int = 256
    timeout_seconds: int = 60
    description: str = ""

    @property
    def handler(self) -> str:
        return f"lambdas.handlers.{self.module}.handler"


ROLLOUT_HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec(
        "Preflight",
        "preflight",
        kube="rollout",
        elb_read=True,
        describe_budget=True,
        ecr_read=True,
        description="validate input, find target groups, check (or harden) zero-downtime settings",
    ),
    HandlerSpec(
        "RequestApproval",
        "request_approval",
        kube="none",
        elb_read=False,
        description="publish a step's approval request with its task token",
    ),
    HandlerSpec(
        "StartStep", "start_step", kube="rollout", elb_read=False, description="let Kubernetes create a step's pods"
    ),
    HandlerSpec(
        "CheckTargetHealth",
        "check_target_health",
        kube="read",
        elb_read=True,
        describe_budget=True,
        description="gate: every new pod's target healthy in every target group",
    ),
    HandlerSpec(
        "ReleaseOldPods",
        "release_old_pods",
        kube="rollout",
        elb_read=False,
        description="open albgate's readiness gate on the step's healthy pods so old pods may go",
    ),
    HandlerSpec(
        "VerifyDrain",
        "verify_drain",
        kube="read",
        elb_read=True,
        describe_budget=True,
        elb_deregister=True,
        description="old targets went draining (deregistered here if nobody had) and left the target group",
    ),
    HandlerSpec(
        "RollBack",
        "roll_back",
        kube="rollout",
        elb_read=False,
        description="restore the previous revision, to be gated the same way",
    ),
    HandlerSpec(
        "FinishRollout",
        "finish_rollout",
        kube="rollout",
        elb_read=False,
        description="record the outcome and emit metrics",
    ),
)


# Functions that run on a schedule, outside the state machine.
SCHEDULED_HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec(
        "GateKeeper",
        "gate_keeper",
        kube="rollout",
        elb_read=True,
        describe_budget=True,
        description="open albgate's readiness gate on healthy pods created outside a rollout (scale-ups)",
    ),
)
