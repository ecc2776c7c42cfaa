"""Which Lambdas albgate deploys and what each may touch: the single list the stack, IAM and the tests share.

Invariant: one entry per module in ``lambdas/handlers`` that is deployed; each function gets only the AWS
actions and Kubernetes access its entry names (least privilege), nothing is granted by default. An entry names
exactly what its handler calls: tests/iam records every AWS call each deployed handler makes through its real
adapters and fails on a call its role does not allow, and on a grant no recorded call uses (docs/foundation.md,
"IAM from recorded calls").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KubeAccess = Literal["none", "read", "pods", "rollout"]


@dataclass(frozen=True)
class HandlerSpec:
    name: str  # construct id and function name suffix, e.g. "CheckTargetHealth"
    module: str  # lambdas.handlers.<module>
    # read: get/list/watch in app namespaces; pods: + patch pods and pods/status; rollout: + patch deployments too
    kube: KubeAccess
    # One flag per ElbPort method (lambdas/domain/ports.py), each granting exactly the ELBv2 actions it calls:
    # elb_read: describe_target_group = DescribeTargetGroups + DescribeTargetGroupAttributes (a group's settings)
    elb_read: bool
    # elb_health: describe_target_health = DescribeTargetHealth (the gate's and the drain check's look)
    elb_health: bool = False
    ecr_read: bool = False  # ecr:DescribeImages on the configured repositories (pin a tag to its digest)
    # elb_deregister: deregister_targets = DeregisterTargets on the configured clusters' controller-managed target
    # groups: start the drain of a released pod's target when the Load Balancer Controller has not (down or
    # throttled). Verify Drain does it, and so does the next step's gate for a drain Verify Drain handed over.
    elb_deregister: bool = False
    # elb_register: register_targets = RegisterTargets on the same target groups as elb_deregister: register a step's
    # ContainersReady new pod that nobody registered (no reconcile of the controller came for it: a namespace
    # without its inject label, or the controller down). Only the gate does it (lambdas/domain/rollout/gate.py).
    elb_register: bool = False
    # One flag per AlarmPort method (lambdas/domain/ports.py), on this account's CloudWatch alarms in the stack's Region
    # (the narrowest the Service Authorization Reference allows for an alarm chosen at run time, by the policy):
    # alarms_read: describe_alarms = cloudwatch:DescribeAlarms, the alarms a rollout's policy.alarms names
    alarms_read: bool = False
    # alarms_history: state_changes = cloudwatch:DescribeAlarmHistory: what an alarm did since the previous step's gate
    # passed (its drain, bake and any approval wait); only Start Step asks (lambdas/domain/rollout/alarms.py)
    alarms_history: bool = False
    # metrics_read: target_group_minutes = cloudwatch:GetMetricData ("*": the Service Authorization Reference lists
    # it without resource types): the target groups' ALB metrics a rollout's policy.analysis compares with the
    # minutes before it (lambdas/domain/rollout/analysis.py); Preflight reads the baseline, the looks the rest
    metrics_read: bool = False
    # dynamodb:GetItem/UpdateItem on the Describe* budget table: takes its turn in albgate's share of the
    # account's Describe* bucket before each call (lambdas/domain/budget.py), and shares its answers with the
    # other executions looking at the same target group there (lambdas/domain/looks.py)
    describe_budget: bool = False
    # dynamodb:GetItem/PutItem on the Deployment lease table and states:DescribeExecution on the rollout state
    # machine's executions: takes a Deployment's lease for its execution (stacks/constructs/deployment_leases.py)
    deployment_lease: bool = False
    # ec2:DescribeVpcEndpoints/DescribeRouteTables ("*": no resource types), only when the functions run in a VPC:
    # reads whether the VPC reaches every service they call (lambdas/domain/network.py)
    network_read: bool = False
    # pulls the controller's chart: from a private ECR mirror that is ecr:GetAuthorizationToken ("*") for the
    # registry login and ecr:BatchGetImage/GetDownloadUrlForLayer on the chart's repository only, granted only when
    # a configured cluster's chart_repository is such a mirror (AlbgateFunction.grant_chart_pull)
    chart_pull: bool = False
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
        kube="read",  # reads only: a refused rollout changed nothing (hardening is applied by Start Step)
        elb_read=True,  # the target groups' settings; Preflight never looks at target health
        describe_budget=True,
        ecr_read=True,
        deployment_lease=True,  # one rollout per Deployment: the lease comes before anything is read
        alarms_read=True,  # refuses an alarm of the policy that is missing or already in ALARM
        metrics_read=True,  # policy.analysis: each target group's baseline
        description="take the Deployment's lease, validate input, find target groups, check (or harden) settings",
    ),
    HandlerSpec(
        "RequestApproval",
        "request_approval",
        kube="none",
        elb_read=False,
        description="publish a step's approval request with its task token",
    ),
    HandlerSpec(
        "StartStep",
        "start_step",
        kube="rollout",
        elb_read=False,
        # a rollout's step is not written when an alarm of the policy was in ALARM since the previous step's gate
        alarms_read=True,
        alarms_history=True,
        metrics_read=True,  # policy.analysis: the metrics since the previous step's gate passed
        description="let Kubernetes create a step's pods",
    ),
    HandlerSpec(
        "CheckTargetHealth",
        "check_target_health",
        # writes pods only: albgate's gate condition False with a note when it nudges the controller
        # (lambdas/domain/rollout/nudge.py), and the serving label of the old pods it takes out of service before
        # their replacements are released (lambdas/domain/rollout/out_of_service.py)
        kube="pods",
        elb_read=False,  # the target groups' settings come with the state (Preflight read them)
        elb_health=True,
        describe_budget=True,
        # the drain Verify Drain handed over (Verdict.DRAINING) is followed on the gate's looks, and a released
        # target still in the pool is deregistered there (lambdas/domain/rollout/gate.py, _follow_handed_over_drain);
        # and the old pods it took out of service, once the controller has not deregistered them within a minute
        # (lambdas/domain/rollout/out_of_service.py, deregister_out)
        elb_deregister=True,
        # a new pod's target nobody registered within the grace is registered on the gate's look
        # (lambdas/domain/rollout/targets.py, register_missing)
        elb_register=True,
        alarms_read=True,  # an alarm of the policy in ALARM fails the step
        metrics_read=True,  # policy.analysis: a regression in the ALB metrics fails the step
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
        elb_read=False,
        elb_health=True,
        describe_budget=True,
        elb_deregister=True,
        alarms_read=True,  # an alarm of the policy in ALARM fails the step
        metrics_read=True,  # policy.analysis: a regression in the ALB metrics fails the step
        description="old targets went draining (deregistered here if nobody had) and left the target group",
    ),
    HandlerSpec(
        "RollBack",
        "roll_back",
        # decides on the state alone: the rollback's own Start Step changes the Deployment, gated like a rollout
        kube="none",
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
        elb_health=True,
        describe_budget=True,
        description="open albgate's readiness gate on healthy pods created outside a rollout (scale-ups)",
    ),
)
