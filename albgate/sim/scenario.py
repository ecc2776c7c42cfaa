"""Simulation scenarios: the YAML schema, its defaults and its validation.

Job: turn a scenario file into a typed, frozen ``Scenario``; every default is a documented number (docs/facts.md
where it gives one, a stated assumption where it does not: docs/simulation.md lists which is which).
Invariant: a ``Scenario`` that validates can be simulated; anything else raises ``ScenarioError`` whose message
names the field (``app.replicas: ...``) and the file. Times in ``faults`` are seconds after the rollout starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lambdas.domain.documents import DocumentError, decode_utf8, quote
from lambdas.domain.models import RolloutPolicy, parse_image, validation_message
from lambdas.domain.validators import (
    AccountId,
    AlarmName,
    AwsRegion,
    ClusterName,
    IntOrPercent,
    KubernetesName,
    KubernetesObjectName,
)

# ALB annotations the simulation reads (aws-load-balancer-controller docs/guide/ingress/annotations.md).
A_TARGET_TYPE = "alb.ingress.kubernetes.io/target-type"
A_HC_INTERVAL = "alb.ingress.kubernetes.io/healthcheck-interval-seconds"
A_HC_TIMEOUT = "alb.ingress.kubernetes.io/healthcheck-timeout-seconds"
A_HEALTHY = "alb.ingress.kubernetes.io/healthy-threshold-count"
A_UNHEALTHY = "alb.ingress.kubernetes.io/unhealthy-threshold-count"
A_TG_ATTRIBUTES = "alb.ingress.kubernetes.io/target-group-attributes"


class ScenarioError(ValueError):
    """A scenario file that cannot be simulated; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Bounds that keep a simulation finite: no scenario may ask for more simulated time than a rollout execution may
# last (the state machine's 48 h timeout), nor for so many requests that a run takes hours of real time.
MAX_SECONDS = 48 * 3600
# traffic.rate_per_second x the fleet's Services (fleet.deployments / fleet.per_service, rounded up: each Service has
# its own clients) x (rollout.start_at_seconds + horizon_seconds)
MAX_REQUESTS = 5_000_000
MAX_DEPLOYMENTS = 2000  # copies of the app in one simulated world (fleet.deployments)
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]


class ClusterSpec(_Strict):
    name: ClusterName = Field(default="sim-cluster", description="EKS cluster name (RolloutRequest.cluster)")
    region: AwsRegion = "us-east-1"
    account_id: AccountId = "123456789012"
    auto_mode: bool = Field(
        default=False, description="EKS Auto Mode: no readiness gate injection at all (aws/containers-roadmap#2511)"
    )


class NamespaceSpec(_Strict):
    name: KubernetesName = "readiness"
    inject_label: Literal["none", "before_pods", "after_pods"] = Field(
        default="none",
        description="elbv2.k8s.aws/pod-readiness-gate-inject=enabled: never, before the pods were created, or "
        "after (then the existing pods have no gate: the webhook acts only at pod CREATE)",
    )
    labelled_at_seconds: float | None = Field(
        default=None, ge=-MAX_SECONDS, le=MAX_SECONDS,
        description="with inject_label none: the label is applied this many seconds after the rollout starts "
        "(negative: before); pods created from then on get the controller's gate, earlier ones keep none",
    )

    @model_validator(mode="after")
    def _one_way_to_label(self) -> "NamespaceSpec":
        if self.labelled_at_seconds is not None and self.inject_label != "none":
            raise ValueError(f"labelled_at_seconds is set and inject_label is {self.inject_label!r}: give one of them "
                             "(labelled_at_seconds with inject_label none)")
        return self

    @property
    def unlabelled(self) -> bool:
        """Never labelled in this scenario (no label at the start, none applied later)."""
        return self.inject_label == "none" and self.labelled_at_seconds is None


class ReadinessProbeSpec(_Strict):
    """Kubernetes readinessProbe defaults: period 10 s, success 1, failure 3 (core/v1 Probe)."""

    initial_delay_seconds: Seconds = 0
    period_seconds: float = Field(default=10, ge=1, le=3600)  # Kubernetes: minimum 1
    success_threshold: int = Field(default=1, ge=1, le=100)
    failure_threshold: int = Field(default=3, ge=1, le=100)


class StartupSpec(_Strict):
    """Pod start-up of a small image: assumptions within what is published (docs/facts.md, Load Balancer
    Controller: requeue and back-off by version: Kubernetes' start-up SLO, at most 5 s to containers started
    at p99 without the image pull; users of gated ALB rollouts report 30-60 s for their containers)."""

    schedule_seconds: Seconds = Field(default=1.0, description="create -> scheduled with an IP")
    container_start_seconds: tuple[Seconds, Seconds] = Field(
        default=(2.0, 6.0), description="scheduled -> container running, uniform in [min, max] (seeded)"
    )
    app_start_seconds: Seconds = Field(default=1.0, description="container running -> app accepts connections")

    @model_validator(mode="after")
    def _range(self) -> "StartupSpec":
        lo, hi = self.container_start_seconds
        if hi < lo:
            raise ValueError(f"container_start_seconds [{lo}, {hi}]: the maximum is below the minimum")
        return self


class AppSpec(_Strict):
    deployment: KubernetesObjectName = "nginx-app"
    labels: dict[str, str] = Field(default_factory=lambda: {"app": "nginx"})
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="labels the pod template carries beyond `labels` (the Deployment's selector), e.g. the serving "
                    "label the hardening adds (albgate.io/serving: \"true\"), which a Service may select")
    replicas: int = Field(default=3, ge=1, le=2000)
    container: KubernetesName = "nginx"
    image: str = "ikubernetes/myapp:v1"
    port: int = Field(default=80, ge=1, le=65535)
    max_surge: IntOrPercent = "25%"  # Deployment default (docs/facts.md, Kubernetes Deployment controller)
    max_unavailable: IntOrPercent = "25%"  # Deployment default (docs/facts.md, Kubernetes Deployment controller)
    min_ready_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    # Deployment defaults (docs/facts.md, Kubernetes Deployment controller)
    progress_deadline_seconds: int = Field(default=600, ge=1, le=MAX_SECONDS)
    revision_history_limit: int = Field(default=10, ge=0, le=1000)
    # Kubernetes default (docs/facts.md, Pod readiness and termination)
    termination_grace_period_seconds: int = Field(default=30, ge=0, le=MAX_SECONDS)
    pre_stop_sleep_seconds: int | None = Field(default=None, ge=0, le=MAX_SECONDS,
                                               description="None: no preStop hook (the example app)")
    readiness_probe: ReadinessProbeSpec | None = Field(default=None, description="None: no probe (the example app)")
    startup: StartupSpec = Field(default_factory=StartupSpec)
    sigterm: Literal["graceful", "immediate"] = Field(
        default="graceful",
        description="graceful: on SIGTERM stop accepting, finish in-flight requests, exit; immediate: exit at once",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        parse_image(v)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("give the pods at least one label; the Service selects them by it")
        return v

    @model_validator(mode="after")
    def _pod_labels(self) -> "AppSpec":
        both = sorted(set(self.labels) & set(self.pod_labels))
        if both:
            raise ValueError(f"pod_labels repeat the selector's label(s) {both}: give each label in one of them")
        return self

    @property
    def template_labels(self) -> dict[str, str]:
        """What every pod of the template carries: the selector's labels and ``pod_labels``."""
        return {**self.labels, **self.pod_labels}


class ServiceSpec(_Strict):
    name: KubernetesObjectName = "nginx-svc"
    port: int = 80
    selector: dict[str, str] | None = Field(default=None, description="None: the app's labels")


class IngressSpec(_Strict):
    name: KubernetesObjectName = "myapp-ingress"
    ingress_class: str = "alb"
    registration_seconds: tuple[Seconds, Seconds] | None = Field(
        default=None, description="this Ingress's load balancer's registration time (as alb.registration_seconds); "
        "None: alb.registration_seconds",
    )
    annotations: dict[str, str] = Field(
        default_factory=lambda: {A_TARGET_TYPE: "ip", "alb.ingress.kubernetes.io/scheme": "internet-facing"}
    )

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        tt = v.get(A_TARGET_TYPE, "instance")
        if tt not in ("ip", "instance"):
            raise ValueError(f"{A_TARGET_TYPE} is {tt!r}; the controller accepts 'ip' or 'instance'")
        for key in (A_HC_INTERVAL, A_HC_TIMEOUT, A_HEALTHY, A_UNHEALTHY):
            if key in v and not str(v[key]).isdigit():
                raise ValueError(f"{key} is {v[key]!r}; write a whole number")
        if A_TG_ATTRIBUTES in v:
            _parse_attributes(v[A_TG_ATTRIBUTES])
        return v

    def target_type(self) -> str:
        # The controller's default target type is instance (annotations.md); the example app sets ip.
        return self.annotations.get(A_TARGET_TYPE, "instance")

    def health_check(self) -> tuple[int, int, int, int]:
        """(interval, timeout, healthy threshold, unhealthy threshold): LBC defaults 15/5/2/2 (docs/facts.md,
        Service annotations override the Ingress's)."""
        a = self.annotations
        return (int(a.get(A_HC_INTERVAL, 15)), int(a.get(A_HC_TIMEOUT, 5)), int(a.get(A_HEALTHY, 2)),
                int(a.get(A_UNHEALTHY, 2)))

    def deregistration_delay(self) -> int:
        """deregistration_delay.timeout_seconds, default 300 s (docs/facts.md, Service annotations override the
        Ingress's)."""
        return int(_parse_attributes(self.annotations.get(A_TG_ATTRIBUTES, "")).get(
            "deregistration_delay.timeout_seconds", 300))


def _parse_attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"target-group-attributes part {part!r} is not key=value")
        k, val = part.split("=", 1)
        out[k.strip()] = val.strip()
    d = out.get("deregistration_delay.timeout_seconds")
    if d is not None and (not d.isdigit() or not 0 <= int(d) <= 3600):
        raise ValueError(f"deregistration_delay.timeout_seconds is {d!r}; it must be 0-3600 "
                         "(docs/facts.md, Service annotations override the Ingress's)")
    return out


class ControllerSpec(_Strict):
    """The Load Balancer Controller: its version decides how it requeues and backs off (albgate.sim.lbc.rules_for;
    docs/facts.md, Load Balancer Controller: requeue and back-off by version)."""

    version: str = Field(
        description="the controller's version, v2.0.0 or later; default: the one albgate installs "
        "(lambdas/domain/bootstrap.py CONTROLLER_VERSION)",
    )
    webhook_failure_policy: Literal["Ignore", "Fail"] = Field(
        description="podMutatorWebhookConfig.failurePolicy; default: the version's, Fail up to v2.11.0 and Ignore "
        "after (docs/facts.md, Load Balancer Controller: readiness gate)",
    )
    # docs/facts.md, Load Balancer Controller: registration and timing
    requeue_seconds: float = Field(default=15, ge=1, le=MAX_SECONDS,
                                   description="--targetgroupbinding-requeue-duration (v3.2.0 and later)")
    max_backoff_seconds: float = Field(
        default=1000, ge=1, le=MAX_SECONDS,
        description="--targetgroupbinding-max-exponential-backoff-delay, 16m40s (v2.2.1 and later)",
    )
    reconcile_latency_seconds: Seconds = Field(
        default=1.0, description="pod change -> EndpointSlice -> controller watch -> reconcile (assumption)"
    )
    request_seconds: float = Field(
        default=0.02, ge=0, le=10,
        description="each request a reconcile makes (DescribeTargetHealth, RegisterTargets or DeregisterTargets, a "
        "pod's condition patch) holds the binding this long (assumption: tens of milliseconds, docs/facts.md, Load "
        "Balancer Controller: requeue and back-off by version)",
    )
    leader_election_seconds: Seconds = Field(
        default=15, description="pause after the controller comes back (docs/facts.md, Load Balancer Controller: "
        "registration and timing: 15 s to 2 min)"
    )

    @model_validator(mode="before")
    @classmethod
    def _version_defaults(cls, data: Any) -> Any:
        """The version albgate installs unless one is named; the webhook's failure policy of that version."""
        from albgate.sim.lbc import INSTALLED_VERSION, rules_for

        if not isinstance(data, dict):
            return data
        data = {"version": INSTALLED_VERSION, **data}
        if isinstance(data["version"], str) and "webhook_failure_policy" not in data:
            try:
                data["webhook_failure_policy"] = rules_for(data["version"]).default_failure_policy
            except ValueError:  # the version check below names the problem; no second error for this one
                data["webhook_failure_policy"] = rules_for(INSTALLED_VERSION).default_failure_policy
        return data

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        from albgate.sim.lbc import rules_for

        rules_for(v)  # ValueError names what is wrong
        return v

    @model_validator(mode="after")
    def _flags_exist(self) -> "ControllerSpec":
        """A flag the named version does not have cannot be set (its behaviour is the built-in one)."""
        from albgate.sim.lbc import DEFAULT_MAX_BACKOFF_SECONDS, DEFAULT_REQUEUE_SECONDS, rules_for

        rules = rules_for(self.version)
        if not rules.requeue_flag and self.requeue_seconds != DEFAULT_REQUEUE_SECONDS:
            raise ValueError(f"requeue_seconds: {self.version} has no --targetgroupbinding-requeue-duration (added in "
                             f"v3.2.0); it requeues after {DEFAULT_REQUEUE_SECONDS:g} s")
        if not rules.backoff_flag and self.max_backoff_seconds != DEFAULT_MAX_BACKOFF_SECONDS:
            raise ValueError(f"max_backoff_seconds: {self.version} has no "
                             "--targetgroupbinding-max-exponential-backoff-delay (added in v2.2.1); its back-off "
                             f"is capped at {DEFAULT_MAX_BACKOFF_SECONDS:g} s")
        return self


class AlbSpec(_Strict):
    registration_seconds: tuple[Seconds, Seconds] = Field(
        default=(5.0, 15.0),
        description="RegisterTargets -> first health check may start, uniform (seeded). docs/facts.md (ALB target "
        "health) gives NLB 3-5 min (aws-load-balancer-controller#1834) and no ALB number; ALB seconds is an "
        "assumption, in line with users seeing ALB targets healthy as soon as the pod is ready (docs/facts.md, "
        "Load Balancer Controller: requeue and back-off by version)",
    )
    deregistration_lag_seconds: Seconds = Field(
        default=10.0,
        description="seconds the ALB still sends NEW requests after deregistration starts (docs/facts.md, "
        "Deregistration and draining: ~10 s, aws-load-balancer-controller#1719)",
    )
    # docs/facts.md, ELB API throttling
    describe_bucket_capacity: int = Field(default=40, ge=1, le=100_000, description="Describe* token bucket")
    describe_bucket_refill_per_second: float = Field(default=10, ge=0.01, le=10_000, description="Describe* refill")
    # docs/facts.md, ELB API throttling: RegisterTargets and DeregisterTargets share a bucket of their own
    mutating_bucket_capacity: int = Field(default=20, ge=1, le=100_000,
                                          description="RegisterTargets/DeregisterTargets token bucket")
    mutating_bucket_refill_per_second: float = Field(default=4, ge=0.01, le=10_000,
                                                     description="RegisterTargets/DeregisterTargets refill")


class TrafficSpec(_Strict):
    rate_per_second: float = Field(default=20, ge=0, le=2000, description="Poisson arrivals (seeded)")
    mean_duration_seconds: float = Field(default=0.2, gt=0, le=3600, description="mean request duration")
    max_duration_seconds: float = Field(default=30, gt=0, le=3600, description="the cap on one request's duration")
    duration_distribution: Literal["exponential", "fixed", "pareto"] = Field(
        default="exponential",
        description="exponential: short requests with a light tail; fixed: every request takes the mean (uploads, "
        "reports); pareto: heavy-tailed (most short, a few very long), with pareto_shape",
    )
    pareto_shape: float = Field(default=1.5, gt=1, le=10, description="the Pareto tail index (smaller: heavier tail)")
    error_rate: float = Field(
        default=0, ge=0, le=1,
        description="the share of the requests a pod answers that every version answers 5xx (the app's normal "
        "errors; faults.degraded_images sets another share for an image); drawn per request from its own seeded "
        "stream, so the clients' arrivals and durations stay the same",
    )
    error_rate_noise: float = Field(
        default=0, ge=0, le=5,
        description="coefficient of variation of a per-minute factor (gamma, mean 1) on every version's error rate "
        "in that 60 s period (a flaky dependency); 0: the rate is the same every minute",
    )

    @model_validator(mode="after")
    def _mean_within_cap(self) -> "TrafficSpec":
        if self.mean_duration_seconds > self.max_duration_seconds:
            raise ValueError(f"mean_duration_seconds ({self.mean_duration_seconds}) is above max_duration_seconds "
                             f"({self.max_duration_seconds}); raise the cap or lower the mean")
        return self
    settle_seconds: float = Field(
        default=30, ge=0, le=MAX_SECONDS, description="traffic keeps flowing this long after the rollout ends and drains settle"
    )


class RolloutSpec(_Strict):
    image: str = "ikubernetes/myapp:v2"
    container: KubernetesName | None = Field(default=None, description="None: the app's container")
    start_at_seconds: float = Field(default=30, ge=0, le=MAX_SECONDS, description="steady traffic before the rollout starts")
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        parse_image(v)
        return v


class Window(_Strict):
    at_seconds: float = Field(ge=-MAX_SECONDS, le=MAX_SECONDS, description="seconds after the rollout starts (negative: before)")
    duration_seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS, description="None: until the end")

    def contains(self, rel: float) -> bool:
        return rel >= self.at_seconds and (self.duration_seconds is None or rel < self.at_seconds + self.duration_seconds)


class ControllerOutage(Window):
    pass


class ControllerSlowdown(Window):
    reconcile_latency_seconds: float = Field(gt=0, le=MAX_SECONDS)


class KubeApiErrors(Window):
    error: Literal["conflict", "unavailable"] = "unavailable"
    methods: list[str] | None = Field(default=None, description="KubernetesPort method names; None: every method")
    probability: float = Field(default=1.0, ge=0, le=1)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        from albgate.sim.ports import KUBE_METHODS

        for m in v or []:
            if m not in KUBE_METHODS:
                raise ValueError(f"{m!r} is not a KubernetesPort method; use one of {', '.join(KUBE_METHODS)}")
        return v


class PodsPending(Window):
    """New pods the scheduler cannot place (no node has room, or none matches): they stay phase Pending with
    PodScheduled=False reason Unschedulable and no IP (kubernetes core/v1 types.go: PodPending "includes time
    before being bound to a node"; PodReasonUnschedulable "can't schedule the pod right now, for example due
    to insufficient resources"). A pod whose scheduling falls in the window is scheduled when it ends."""

    images: Literal["new"] | list[str] = Field(
        default="new", description="'new': the rollout's image; or the images whose pods cannot be scheduled"
    )

    @field_validator("images", mode="before")
    @classmethod
    def _images(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v != "new":
                raise ValueError(f"{v!r}: write 'new' (the rollout's image) or a list of images like "
                                 "['ikubernetes/myapp:v2']")
            return v
        if not isinstance(v, list) or not v:
            raise ValueError("write 'new' (the rollout's image) or a non-empty list of images")
        for image in v:
            if not isinstance(image, str):
                raise ValueError(f"{image!r} is not an image reference")
            parse_image(image)
        return v


class DescribeLoad(Window):
    rate_per_second: float = Field(gt=0, le=1000, description="other callers' Describe* calls on the shared bucket")


class AlarmFault(Window):
    """A CloudWatch metric alarm of the simulated account in ALARM or INSUFFICIENT_DATA for a while. Every alarm
    named in ``faults.alarms`` exists from the start and is OK outside its windows (albgate/sim/alarms.py); a
    window may start before the rollout (negative ``at_seconds``). Windows of one alarm may not overlap: an alarm
    is in one state at a time."""

    name: AlarmName
    state: Literal["ALARM", "INSUFFICIENT_DATA"]


class DegradedImage(_Strict):
    """An image whose pods pass every health check (the kubelet's probe and the ALB's) but answer worse: a share
    of the real requests 5xx, and each request slower."""

    image: str
    error_rate: float | None = Field(
        default=None, ge=0, le=1,
        description="the share of the requests its pods answer 5xx, instead of traffic.error_rate; None: "
        "traffic.error_rate",
    )
    latency_factor: float = Field(
        default=1, gt=0, le=100, description="its pods take this many times the request's drawn duration"
    )

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        parse_image(v)
        return v


class FaultsSpec(_Strict):
    broken_images: list[str] = Field(default_factory=list, description="images whose app fails health checks")
    broken_mode: Literal["http_500", "crash", "health_path_404"] = Field(
        default="http_500", description="http_500: runs, answers 500; crash: exits after start (CrashLoopBackOff); "
        "health_path_404: serves requests and passes the kubelet's readiness probe, but answers 404 on the ALB's "
        "health-check path (the path moved in the new version, the Ingress still names the old one)",
    )
    controller_outages: list[ControllerOutage] = Field(default_factory=list)
    controller_slowdowns: list[ControllerSlowdown] = Field(default_factory=list)
    kube_api_errors: list[KubeApiErrors] = Field(default_factory=list)
    describe_load: list[DescribeLoad] = Field(default_factory=list)
    pods_pending: list[PodsPending] = Field(
        default_factory=list, description="windows in which pods of some images stay Pending (Unschedulable)"
    )
    alarms: list[AlarmFault] = Field(
        default_factory=list, max_length=100,
        description="CloudWatch metric alarms of the account and when each is not OK; a rollout's policy.alarms "
        "watches them by name or prefix",
    )
    degraded_images: list[DegradedImage] = Field(
        default_factory=list, max_length=100,
        description="images whose pods pass every health check but answer a share of the requests 5xx, or slower",
    )

    @model_validator(mode="after")
    def _degraded_once(self) -> "FaultsSpec":
        images = [d.image for d in self.degraded_images]
        for image in images:
            if images.count(image) > 1:
                raise ValueError(f"degraded_images names {quote(image)} twice; give each image once")
            if image in self.broken_images:
                raise ValueError(f"{quote(image)} is in broken_images and in degraded_images; an image is broken "
                                 "(fails its health checks) or degraded (passes them), not both")
        return self

    def degraded(self, image: str) -> DegradedImage | None:
        """The ``degraded_images`` entry of ``image``, or None."""
        return next((d for d in self.degraded_images if d.image == image), None)

    @field_validator("alarms")
    @classmethod
    def _one_state_at_a_time(cls, windows: list[AlarmFault]) -> list[AlarmFault]:
        by_name: dict[str, list[AlarmFault]] = {}
        for w in windows:
            by_name.setdefault(w.name, []).append(w)
        for name, ws in by_name.items():
            ws = sorted(ws, key=lambda w: w.at_seconds)
            for before, after in zip(ws, ws[1:]):
                if before.duration_seconds is None or after.at_seconds < before.at_seconds + before.duration_seconds:
                    raise ValueError(
                        f"alarm {quote(name)} has windows at {before.at_seconds:g} s and {after.at_seconds:g} s that "
                        "overlap; an alarm is in one state at a time: end the first before the second starts"
                    )
        return windows


class FleetSpec(_Strict):
    """Many copies of the app rolling at once in one account: one cluster, one Load Balancer Controller, one
    Describe* bucket, one albgate execution per copy."""

    deployments: int = Field(
        default=1, ge=1, le=MAX_DEPLOYMENTS,
        description="copies of the app in the namespace, each with its own Deployment, Service, Ingress and target "
        "group (names suffixed -1, -2, ... when more than one) and its own clients at traffic.rate_per_second",
    )
    start_within_seconds: float = Field(
        default=0, ge=0, le=3600,
        description="each copy's rollout starts at a seeded uniform time within this many seconds after "
        "rollout.start_at_seconds",
    )
    per_service: int = Field(
        default=1, ge=1, le=MAX_DEPLOYMENTS,
        description="copies behind one Service: 2 puts copies 1 and 2 behind one Service (and its Ingresses, target "
        "groups and clients), 3 and 4 behind the next, and so on; each copy keeps its own Deployment and rollout",
    )


class MetricAlarmSpec(_Strict):
    """A CloudWatch metric alarm on the app's target group's ALB metric (albgate/sim/alarms.py): each time a period is
    published it evaluates the last ``evaluation_periods`` periods, ALARM when every one of them is above
    ``threshold`` (GreaterThanThreshold), else OK; a period CloudWatch has no datapoint for counts as not breaching
    (TreatMissingData notBreaching)."""

    name: AlarmName
    metric: Literal["HTTPCode_Target_5XX_Count", "RequestCount", "TargetResponseTime"] = Field(
        description="of the app's first target group; TargetResponseTime is the period's Average, the counts its Sum")
    threshold: float = Field(ge=0, le=1e9)
    evaluation_periods: int = Field(default=1, ge=1, le=10)


class MetricsSpec(_Strict):
    """The ALB's CloudWatch metrics (albgate/sim/metrics.py), and alarms that evaluate them."""

    alarms: list[MetricAlarmSpec] = Field(
        default_factory=list, max_length=20,
        description="metric alarms evaluated on the app's target group's published periods; a rollout's "
        "policy.alarms watches them by name or prefix, like faults.alarms",
    )

    publication_delay_seconds: float = Field(
        default=120, ge=0, le=900,
        description="a 60 s period [m, m + 60) is visible in CloudWatch from m + 60 + this many seconds "
        "(assumption: the ALB sends a period's datapoints after it ends, CloudWatch shows them a little later)",
    )


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = 1
    horizon_seconds: float = Field(default=3600, gt=0, le=MAX_SECONDS, description="hard stop, seconds after the rollout starts")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    namespace: NamespaceSpec = Field(default_factory=NamespaceSpec)
    app: AppSpec = Field(default_factory=AppSpec)
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    ingress: IngressSpec = Field(default_factory=IngressSpec)
    extra_ingresses: list[IngressSpec] = Field(
        default_factory=list, max_length=4,
        description="more Ingresses with the same Service as backend: each its own load balancer and target group, "
        "with its own annotations (health check, attributes) and registration time; traffic is split evenly",
    )
    controller: ControllerSpec = Field(default_factory=ControllerSpec)
    alb: AlbSpec = Field(default_factory=AlbSpec)
    traffic: TrafficSpec = Field(default_factory=TrafficSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    faults: FaultsSpec = Field(default_factory=FaultsSpec)
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        both = {a.name for a in self.metrics.alarms} & {w.name for w in self.faults.alarms}
        if both:
            raise ValueError(f"alarm(s) {', '.join(sorted(both))} are both in metrics.alarms and faults.alarms; an "
                             "alarm either evaluates a metric or follows its windows: name them differently")
        container = self.rollout.container or self.app.container
        if container != self.app.container:
            raise ValueError(f"rollout.container {container!r} is not the app's container {self.app.container!r}")
        selector = self.service.selector or self.app.labels
        if any(self.app.template_labels.get(k) != v for k, v in selector.items()):
            raise ValueError(f"service.selector {selector} does not select the app's pod labels "
                             f"{self.app.template_labels}")
        if self.fleet.per_service > self.fleet.deployments:
            raise ValueError(f"fleet.per_service {self.fleet.per_service} is more than fleet.deployments "
                             f"{self.fleet.deployments}: put at most every copy behind one Service")
        names = [i.name for i in (self.ingress, *self.extra_ingresses)]
        if len(set(names)) != len(names):
            raise ValueError(f"ingress names must differ: {names}")
        services = -(-self.fleet.deployments // self.fleet.per_service)
        requests = self.traffic.rate_per_second * services * (self.rollout.start_at_seconds + self.horizon_seconds)
        if requests > MAX_REQUESTS:
            raise ValueError(
                f"traffic.rate_per_second x fleet.deployments (per fleet.per_service) x (rollout.start_at_seconds + "
                f"horizon_seconds) is {requests:,.0f} requests; a scenario may simulate at most {MAX_REQUESTS:,}: "
                "lower the rate, the number of deployments or the horizon"
            )
        return self

    @property
    def rollout_container(self) -> str:
        return self.rollout.container or self.app.container

    def with_changes(self, **sections: dict[str, Any]) -> "Scenario":
        """A copy with some fields of some sections replaced, validated again: with_changes(app={...})."""
        data = self.model_dump()
        for section, changes in sections.items():
            if isinstance(changes, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **changes}
            else:
                data[section] = changes
        return Scenario.model_validate(data)


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    """Validate a scenario mapping; ScenarioError names every bad field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a YAML mapping (name:, app:, rollout:, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {validation_message(exc)}") from exc


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last one
    silently, although YAML 1.2 section 3.2.1.1 requires mapping keys to be unique)."""


def _unique_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {quote(key)} is given twice in one mapping (first at line {seen[key]}); keep one",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_scenario_yaml(text: str, source: str) -> Any:
    """YAML text -> data, refusing duplicate keys; ScenarioError with the line of a problem."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{source}: not valid YAML ({problem}{where})") from None


def read_scenario_yaml(path: str | Path, what: str = "scenario") -> Any:
    """A scenario file's YAML, read strictly (UTF-8, no key twice); ScenarioError naming the file otherwise."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        text = decode_utf8(raw, str(p))
    except DocumentError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario_yaml(text, str(p))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; every problem is one ScenarioError line naming the file."""
    return parse_scenario(read_scenario_yaml(path), str(path))
