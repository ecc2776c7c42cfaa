"""The ports: what albgate needs from Kubernetes, from ELBv2, from CloudWatch and from a clock, as plain data and
Protocols.

Invariant: the domain and the handlers see only these types. Two families implement them and must behave
alike: the real adapters (``lambdas/adapters``, the only code that imports boto3 or the kubernetes client) and
the simulated cluster and load balancer (``albgate/sim``). Values are immutable snapshots; a method that
changes something returns nothing and raises a domain error (``domain/errors.py``) on failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lambdas.domain.budget import UnlimitedBudget
from lambdas.domain.descriptions import Board, NoDescriptions
from lambdas.domain.looks import GroupNews, Look, NoLooks

# Condition type of albgate's own readiness gate. albgate adds it to the pod template of every Deployment it
# rolls, so each new pod stays not-Ready (and holds the old pods, maxUnavailable 0) until albgate has seen its
# target healthy in every target group. It works where the controller's gate does not exist (EKS Auto Mode,
# namespaces labelled after their pods were born) because albgate, not the webhook, owns it.
ALBGATE_GATE = "albgate.io/target-healthy"

# Prefix of the Load Balancer Controller's gates: target-health.elbv2.k8s.aws/<targetgroupbinding-name>
# (docs/facts.md, Load Balancer Controller: readiness gate).
LBC_GATE_PREFIX = "target-health.elbv2.k8s.aws/"
# Namespace label that makes the controller's webhook inject its gates (docs/facts.md, Load Balancer Controller:
# readiness gate).
INJECT_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"
# The controller's annotation on a TargetGroupBinding with the digest of its last completed reconcile (docs/facts.md,
# Load Balancer Controller: the reconcile checkpoint).
LBC_CHECKPOINT_ANNOTATION = "elbv2.k8s.aws/checkpoint"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# The pod label a hardened app's Service selects on beside the app's own labels, which its Deployment's selector does
# not: albgate sets it to OUT_OF_SERVICE on an old pod to take that pod out of the Service's endpoints (the Load
# Balancer Controller then deregisters its target) while the pod keeps running, before its replacement is released
# (docs/rollout.md, "Out of service before release"). The pod template carries it as IN_SERVICE.
SERVING_LABEL = "albgate.io/serving"
IN_SERVICE, OUT_OF_SERVICE = "true", "false"
# The annotation the ReplicaSet controller ranks pods by when it scales down, lowest first among pods alike in
# scheduling, phase and readiness (docs/facts.md, "Kubernetes ReplicaSet: which pods a scale-down removes"); albgate
# puts OUT_OF_SERVICE_DELETION_COST, the lowest value the API accepts, on a pod it takes out of service.
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
OUT_OF_SERVICE_DELETION_COST = -2147483648


# ---------------------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Container:
    name: str
    image: str
    pre_stop_sleep_seconds: int | None = None  # None: no preStop; a sleep action or `sleep N` exec counts
    has_readiness_probe: bool = True


@dataclass(frozen=True)
class PodTemplate:
    containers: tuple[Container, ...]
    readiness_gates: tuple[str, ...] = ()
    termination_grace_period_seconds: int = 30  # Kubernetes default (docs/facts.md, Pod readiness and termination)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)


@dataclass(frozen=True)
class DeploymentCondition:
    type: str  # Available | Progressing | ReplicaFailure
    status: str  # True | False | Unknown
    reason: str = ""
    message: str = ""
    last_update_time: float | None = None  # epoch seconds; a ProgressDeadlineExceeded counts from here


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    uid: str
    replicas: int
    selector: dict[str, str]
    template: PodTemplate
    max_surge: int | str  # as written: 1 or "25%"
    max_unavailable: int | str
    min_ready_seconds: int = 0
    progress_deadline_seconds: int = 600
    paused: bool = False
    revision: int = 0  # deployment.kubernetes.io/revision
    generation: int = 1
    observed_generation: int = 1
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    conditions: tuple[DeploymentCondition, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str = ""

    def condition(self, type_: str) -> DeploymentCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass(frozen=True)
class ReplicaSet:
    namespace: str
    name: str
    revision: int
    pod_template_hash: str
    replicas: int  # spec.replicas (desired)
    ready_replicas: int
    available_replicas: int
    template: PodTemplate
    created_at: float  # epoch seconds


@dataclass(frozen=True)
class PodCondition:
    type: str  # ContainersReady | Ready | PodScheduled | <readiness gate type>
    status: str  # True | False
    reason: str = ""
    message: str = ""
    # lastTransitionTime (epoch seconds; the API writes whole seconds): when the status last changed, or the
    # condition first appeared. None when the object does not say.
    last_transition_time: float | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    ip: str | None
    labels: dict[str, str]
    phase: str  # Pending | Running | Succeeded | Failed
    readiness_gates: tuple[str, ...]
    conditions: tuple[PodCondition, ...]
    terminating: bool  # metadata.deletionTimestamp is set
    restart_count: int
    created_at: float
    owner_replica_set: str | None = None
    waiting_reason: str = ""  # e.g. CrashLoopBackOff, ImagePullBackOff

    def condition(self, type_: str) -> str:
        c = next((c for c in self.conditions if c.type == type_), None)
        return c.status if c else "False"

    def transitioned_at(self, type_: str) -> float | None:
        """The condition's lastTransitionTime; None when the pod has no such condition or it does not say."""
        return next((c.last_transition_time for c in self.conditions if c.type == type_), None)

    @property
    def containers_ready(self) -> bool:
        return self.condition("ContainersReady") == "True"

    @property
    def ready(self) -> bool:
        return self.condition("Ready") == "True"


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str
    name: str = ""


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: dict[str, str]
    ports: tuple[ServicePort, ...]


@dataclass(frozen=True)
class IngressBackend:
    service_name: str
    service_port: int | str


@dataclass(frozen=True)
class Ingress:
    namespace: str
    name: str
    ingress_class: str | None
    annotations: dict[str, str]
    backends: tuple[IngressBackend, ...]


@dataclass(frozen=True)
class TargetGroupBinding:
    namespace: str
    name: str
    target_group_arn: str
    target_type: str  # ip | instance
    service_name: str
    service_port: int | str
    # The controller's annotation elbv2.k8s.aws/checkpoint ("" when absent): a digest of the endpoints of its last
    # completed reconcile, then of the binding's spec (lambdas/domain/rollout/checkpoint.py).
    checkpoint: str = ""


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class DeploymentPatch:
    """A change to a Deployment, rendered by the real adapter as a strategic merge patch.

    Only fields that are not None change. ``images`` maps container name to image. ``add_readiness_gates``
    are added to the pod template if absent (never removed). ``expected_resource_version`` makes the patch
    conditional (409 ConflictError when the object moved on).
    """

    images: dict[str, str] | None = None
    add_readiness_gates: tuple[str, ...] = ()
    max_surge: int | str | None = None
    max_unavailable: int | str | None = None
    min_ready_seconds: int | None = None
    paused: bool | None = None
    termination_grace_period_seconds: int | None = None
    pre_stop_sleep_seconds: dict[str, int] | None = None  # container -> seconds
    template_annotations: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    expected_resource_version: str | None = None


class KubernetesPort(Protocol):
    """The Kubernetes API calls albgate makes, in domain terms."""

    def get_namespace(self, name: str) -> Namespace: ...
    def get_deployment(self, namespace: str, name: str) -> Deployment: ...
    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> Deployment: ...
    def rollback_deployment(
        self, namespace: str, name: str, to_revision: int, *, expected_resource_version: str | None = None
    ) -> Deployment:
        """Copy the template of the ReplicaSet with that revision back into the Deployment (kubectl undo).

        ``expected_resource_version`` makes it conditional, as for ``DeploymentPatch`` (409 ConflictError)."""
        ...

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]: ...
    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]: ...
    def set_pod_condition(self, namespace: str, pod: str, type_: str, status: str, reason: str, message: str, *,
                          same_status: bool = False) -> None:
        """Patch pods/status so a readiness gate condition becomes True or False. ``same_status``: the condition
        already has this status and only its reason or message changes, so its lastTransitionTime stays."""
        ...

    def set_pod_serving(self, namespace: str, pod: str, serving: bool) -> None:
        """Patch the pod's metadata: ``SERVING_LABEL`` to ``IN_SERVICE`` and no ``POD_DELETION_COST`` (serving
        True), or ``SERVING_LABEL`` to ``OUT_OF_SERVICE`` and ``POD_DELETION_COST`` to
        ``OUT_OF_SERVICE_DELETION_COST`` (False). Nothing else of the pod changes."""
        ...

    def list_services(self, namespace: str) -> list[Service]: ...
    def list_ingresses(self, namespace: str) -> list[Ingress]: ...
    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]: ...

    def wait_for_pods(self, namespace: str, selector: dict[str, str], seconds: int) -> bool:
        """Watch the pods ``selector`` matches from now for up to ``seconds`` (whole, at least 1): True as soon as
        one is added, changed or deleted, False when the time passed without a change. A change made just before
        the call may go unseen; the caller's look after ``seconds`` sees it."""
        ...

    def wait_for_bindings(self, namespace: str, seconds: int) -> bool:
        """``wait_for_pods`` for the namespace's TargetGroupBindings (the controller's checkpoint annotation is
        written on them)."""
        ...


# ---------------------------------------------------------------------------------------------------------
# ELBv2
# ---------------------------------------------------------------------------------------------------------
# DescribeTargetHealth states (docs/facts.md, ALB target health).
INITIAL, HEALTHY, UNHEALTHY, UNUSED, DRAINING, UNAVAILABLE = (
    "initial",
    "healthy",
    "unhealthy",
    "unused",
    "draining",
    "unavailable",
)
# The reason of an `initial` target the load balancer is still registering: no health check has run yet.
REGISTRATION_IN_PROGRESS = "Elb.RegistrationInProgress"
# The reason of an `initial` target the load balancer has registered and is health-checking.
INITIAL_HEALTH_CHECKING = "Elb.InitialHealthChecking"


@dataclass(frozen=True)
class TargetHealth:
    target_id: str  # the pod IP for IP targets
    port: int
    state: str
    reason: str = ""
    description: str = ""


@dataclass(frozen=True)
class TargetGroupSettings:
    """A target group as one DescribeTargetGroups call describes it (its attributes are another call)."""

    arn: str
    target_type: str  # ip | instance | lambda | alb
    protocol: str
    port: int
    health_check_interval_seconds: int
    health_check_timeout_seconds: int
    healthy_threshold: int
    unhealthy_threshold: int
    load_balancer_arns: tuple[str, ...]

    def with_delay(self, deregistration_delay_seconds: int) -> TargetGroup:
        """The whole ``TargetGroup``, given the attribute DescribeTargetGroupAttributes answered."""
        return TargetGroup(**_fields_of(self), deregistration_delay_seconds=deregistration_delay_seconds)


@dataclass(frozen=True)
class TargetGroup(TargetGroupSettings):
    """The settings and the one attribute albgate reads (DescribeTargetGroupAttributes)."""

    deregistration_delay_seconds: int  # target group attribute deregistration_delay.timeout_seconds

    def settings(self) -> TargetGroupSettings:
        """What DescribeTargetGroups alone says of the group."""
        return TargetGroupSettings(**_fields_of(self))


def _fields_of(group: TargetGroupSettings) -> dict[str, Any]:
    return {f: getattr(group, f) for f in TargetGroupSettings.__dataclass_fields__}


class ElbPort(Protocol):
    """DescribeTargetHealth, DescribeTargetGroups(+Attributes), RegisterTargets and DeregisterTargets. Throttling
    raises ThrottledError."""

    def describe_target_health(self, target_group_arn: str) -> list[TargetHealth]: ...
    def describe_target_group(self, target_group_arn: str) -> TargetGroup:
        """DescribeTargetGroups and DescribeTargetGroupAttributes of one group: two Describe* calls."""
        ...

    def describe_target_group_settings(self, target_group_arns: list[str]) -> list[TargetGroupSettings]:
        """One DescribeTargetGroups call for at most ``descriptions.MAX_GROUPS_PER_CALL`` groups, in any order;
        NotFoundError when any of them does not exist (ELB then answers for none)."""
        ...

    def describe_deregistration_delay(self, target_group_arn: str) -> int:
        """One DescribeTargetGroupAttributes call: the group's deregistration_delay.timeout_seconds."""
        ...

    def deregister_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        """Start draining these (IP, port) targets. A target that is not registered (any more) is not an error:
        the call is idempotent, as the ELB API treats it."""
        ...

    def register_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        """Register these (IP, port) targets: each starts `initial` (Elb.RegistrationInProgress), then is health
        checked (docs/facts.md, ALB target health)."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------
class ImagePort(Protocol):
    """Pins a tag to the digest the registry holds now (ECR DescribeImages)."""

    def resolve_digest(self, image: str) -> str | None:
        """``repo@sha256:...`` for ``repo:tag``; None when the registry is not one this port can ask.

        Raises NotFoundError when the registry answers that the tag or repository does not exist."""
        ...


# ---------------------------------------------------------------------------------------------------------
# CloudWatch alarms
# ---------------------------------------------------------------------------------------------------------
# An alarm's StateValue (docs/facts.md, "CloudWatch alarms albgate watches").
ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
ALARM_PAGE = 100  # the most alarms (DescribeAlarms) or history items (DescribeAlarmHistory) one answer holds


@dataclass(frozen=True)
class Alarm:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    state_since: float  # epoch seconds the state last changed (StateTransitionedTimestamp)
    reason: str = ""  # StateReason, as CloudWatch words it


@dataclass(frozen=True)
class AlarmPage:
    """One DescribeAlarms answer: at most ``ALARM_PAGE`` alarms; ``more`` when more matched (NextToken)."""

    alarms: tuple[Alarm, ...]
    more: bool = False


@dataclass(frozen=True)
class StateChange:
    at: float  # epoch seconds
    old: str
    new: str


@dataclass(frozen=True)
class StateChanges:
    """One DescribeAlarmHistory answer for one alarm: its state changes, newest first, at most ``ALARM_PAGE``;
    ``more`` when older ones in the window were left out (NextToken)."""

    changes: tuple[StateChange, ...]
    more: bool = False


class AlarmPort(Protocol):
    """CloudWatch DescribeAlarms and DescribeAlarmHistory, metric alarms only, one request per call. Throttling
    raises ThrottledError."""

    def describe_alarms(
        self, *, names: tuple[str, ...] = (), prefix: str | None = None, state: str | None = None
    ) -> AlarmPage:
        """The alarms named exactly (at most ``ALARM_PAGE`` names), or those whose name starts with ``prefix``
        (never both), only those in ``state`` when given; one page of at most ``ALARM_PAGE``."""
        ...

    def state_changes(self, name: str, start: float, end: float) -> StateChanges:
        """The state changes of alarm ``name`` between ``start`` and ``end`` (epoch seconds), newest first."""
        ...


# ---------------------------------------------------------------------------------------------------------
# CloudWatch metrics of a target group (lambdas/domain/rollout/analysis.py)
# ---------------------------------------------------------------------------------------------------------
# The ALB publishes its metrics per 60 s period, only for periods with requests (docs/facts.md, "ALB metrics
# albgate analyses").
METRIC_PERIOD_SECONDS = 60


@dataclass(frozen=True)
class MetricMinute:
    """One published 60 s period of a target group's AWS/ApplicationELB metrics (dimensions LoadBalancer and
    TargetGroup): RequestCount (Sum), HTTPCode_Target_5XX_Count (Sum; 0 when CloudWatch has no datapoint, which
    is how a period without 5xx looks) and TargetResponseTime (Average and Maximum, in seconds)."""

    start: float  # epoch seconds, the period's start (a multiple of METRIC_PERIOD_SECONDS)
    requests: float
    target_5xx: float
    response_time: float | None  # None: no datapoint
    response_time_max: float | None


class MetricsPort(Protocol):
    """CloudWatch GetMetricData for one target group. Throttling raises ThrottledError."""

    def target_group_minutes(
        self, target_group_arn: str, load_balancer_arn: str, start: float, end: float
    ) -> list[MetricMinute]:
        """The periods starting in [start, end) that CloudWatch has published by now, oldest first; a period
        without requests is absent. One GetMetricData request (four metrics)."""
        ...


# ---------------------------------------------------------------------------------------------------------
# albgate's share of the account's Describe* bucket (lambdas/domain/budget.py)
# ---------------------------------------------------------------------------------------------------------
class DescribeBudget(Protocol):
    def acquire(self, tokens: int, *, reserve: bool) -> float:
        """Seconds until ``tokens`` Describe* calls may go: 0 means now (they are counted); more means wait
        that long, with the calls booked for then if ``reserve`` (see ``budget.admit``)."""
        ...

    def throttled(self) -> None:
        """ELB throttled a call of albgate: the account's bucket is short; cut the share (``budget.after_throttle``)."""
        ...

    def controller_late(self) -> None:
        """A drain left to a Load Balancer Controller went without proof that it deregistered the targets in time
        (rollout.left): say so to every execution for ``budget.CONTROLLER_LATE_SECONDS``."""
        ...

    def short(self) -> bool:
        """Whether the account is short for the controllers: the share is cut now (ELB throttled a call of some
        albgate execution within the share's recovery time, so the controllers' calls are refused too), or a
        drain left to a controller went without proof lately (``controller_late``). True when the store cannot
        answer."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Looks at target groups shared between albgate's executions (lambdas/domain/looks.py)
# ---------------------------------------------------------------------------------------------------------
class SharedLooks(Protocol):
    def news(self, target_group_arn: str) -> GroupNews:
        """The newest DescribeTargetHealth answer any execution shared for the group, and the earliest call booked
        for it (each None when there is none, or the store cannot answer: a shared look is a saving, never a
        reason for a rollout to stop)."""
        ...

    def share(self, target_group_arn: str, look: Look) -> None:
        """Offer this execution's answer to the others (kept when it is the group's newest; failures ignored)."""
        ...

    def book(self, target_group_arn: str, at: float) -> None:
        """Say that this execution's next call for the group is booked for ``at`` (kept when no earlier booking is
        still to come; failures ignored)."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Target groups described once for many Preflights (lambdas/domain/descriptions.py)
# ---------------------------------------------------------------------------------------------------------
class SharedDescriptions(Protocol):
    def board(self) -> Board:
        """What the Preflights share (an empty board when the store cannot answer: sharing is a saving, never a
        reason for a rollout to stop)."""
        ...

    def want(self, arns: Sequence[str], at: float, describer_at: float | None = None) -> None:
        """Ask for these groups to be described, each kept with the first time asked. ``describer_at``: this
        Preflight's booked turn, at which it describes what is wanted; it replaces the board's describer, with the
        room its call has left. Without it the Preflight joins the board's describer and takes room in its call;
        when there is none left, nothing is written (the Preflight describes its groups at its own turn).
        Failures ignored."""
        ...

    def offer(self, answers: Sequence[TargetGroupSettings], at: float, forget: Sequence[str] = ()) -> None:
        """Put these answers, made at ``at``, on the board and take them off the wanted list; take ``forget``
        (groups not answered here) off the board altogether; clear a describer's turn that has come (within
        ``descriptions.DESCRIBER_SLACK_SECONDS`` of ``at``). Failures ignored."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Clock
# ---------------------------------------------------------------------------------------------------------
class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (real time in Lambda, virtual time in the simulation)."""
        ...


@dataclass(frozen=True)
class Ports:
    """Everything a use case may touch, handed in by the handler's wiring."""

    kube: KubernetesPort
    elb: ElbPort
    clock: Clock
    images: ImagePort | None = None  # None: tags are recorded as given (no registry to ask)
    budget: DescribeBudget = field(default_factory=UnlimitedBudget)  # albgate's share of the Describe* bucket
    looks: SharedLooks = field(default_factory=NoLooks)  # answers shared between executions watching one group
    descriptions: SharedDescriptions = field(default_factory=NoDescriptions)  # groups described for many Preflights
    alarms: AlarmPort | None = None  # None: no CloudWatch; a policy that names alarms is refused
    metrics: MetricsPort | None = None  # None: no CloudWatch metrics; a policy that asks for analysis is refused


# ---------------------------------------------------------------------------------------------------------
# Step Functions executions (the Deployment lease asks whether its holder still runs)
# ---------------------------------------------------------------------------------------------------------
# DescribeExecution statuses (docs/facts.md, "One rollout per Deployment: leases"). Only RUNNING holds a
# Deployment; PENDING_REDRIVE is a FAILED execution that a redrive is about to resume.
EXECUTION_RUNNING = "RUNNING"
EXECUTION_PENDING_REDRIVE = "PENDING_REDRIVE"


class Executions(Protocol):
    """What albgate asks Step Functions about an execution of the rollout state machine."""

    def status(self, execution_arn: str) -> str | None:
        """DescribeExecution's ``status`` (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE);
        None when Step Functions has no such execution (never started, or its history expired)."""
        ...


class ImagePushTimes(Protocol):
    """When ECR received an image (DescribeImages ``imagePushedAt``)."""

    def pushed_at(self, image: str) -> float | None:
        """Epoch seconds of ``<registry>/<repository>@<digest>``'s push; None when ECR cannot say."""
        ...


# ---------------------------------------------------------------------------------------------------------
# A release's child executions (lambdas/domain/release.py): rollouts in other accounts and Regions
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildExecution:
    """DescribeExecution of one child: its status, and its output (SUCCEEDED) or error and cause (otherwise)."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None


class ChildExecutions(Protocol):
    """Start and read rollout executions where a release's targets live (their account and Region)."""

    def start(self, state_machine_arn: str, role_arn: str | None, name: str, input: dict) -> str:
        """StartExecution; the execution ARN. Starting the same name with the same input again returns the
        running execution's ARN (a retried start starts nothing new)."""
        ...

    def describe(self, execution_arn: str, role_arn: str | None) -> ChildExecution:
        ...
