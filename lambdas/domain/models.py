"""Typed input of a gated rollout, validated once, shared by the Lambdas, the CDK config and the albgate command.

Invariant: a ``RolloutRequest`` that validates names a real-looking Deployment (the name rules are
lambdas/domain/validators.py's, shared with the config, the bootstrap and the trigger) and a policy whose shape is
sound: counts grow among themselves, percentages grow to 100 %, a plan is given one way (``steps`` or
``batch_size``), approvals name distinct steps the list can have, booleans are JSON booleans. Anything else
raises ``InvalidInputError`` naming the field and the fix, before any call touches the cluster. What needs the
Deployment's replica count (a count against a percentage, the plan's length) is Preflight's to check
(``lambdas.domain.plan.step_problems``); a message quotes at most ``documents.MAX_QUOTED`` characters of a
bad value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from lambdas.domain.documents import quote
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.image_reference import ImageReference, ImageReferenceError
from lambdas.domain.poll import MAX_WATCH_IN_TASK_SECONDS, WATCH_IN_TASK_SECONDS
from lambdas.domain.validators import (
    AlarmSelector,
    ClusterName,
    JsonBool,
    KubernetesName,
    KubernetesObjectName,
    alarm_prefix,
    no_boolean_items,
    percent,
)

# The Kubernetes name patterns, for modules that read them from here (lambdas/domain/manifests.py); the rules
# are lambdas/domain/validators.py's.


def parse_image(image: str) -> tuple[str, str | None, str | None]:
    """Split an image reference into (repository, tag, digest); raises ValueError when malformed or when it names
    neither a tag nor a digest (a rollout must say which bytes to run). The grammar is the runtimes' own
    (lambdas/domain/image_reference.py; docs/facts.md, "Image references")."""
    example = (
        "write e.g. 'redis:7', 'repo/app:v2' or '123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:<64 hex>'"
    )
    try:
        ref = ImageReference.parse(image)
    except ImageReferenceError as e:
        raise ValueError(f"{quote(image)} is not an image reference: {e}; {example}") from e
    if ref.tag is None and ref.digest is None:
        raise ValueError(f"{quote(image)} is not an image reference with a tag or digest; {example}")
    return ref.repository, ref.tag, ref.digest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


StepSpec = Annotated[int | str, Field(description="pods (an integer >= 1) or a percentage of replicas ('25%')")]
DEFAULT_STEPS: tuple[int | str, ...] = (1, "25%", "50%", "100%")


# How many entries ``policy.alarms`` may have, and how many of them may be prefixes. Ten is CodeDeploy's own limit
# of alarms per deployment group; each prefix costs one DescribeAlarms call per look (the names together cost one),
# so three keep a look at four calls (docs/facts.md, "CloudWatch alarms albgate watches").
MAX_ALARMS = 10
MAX_ALARM_PREFIXES = 3


def pods(n: int) -> str:
    return f"{n} pod" if n == 1 else f"{n} pods"


class AnalysisPolicy(_Strict):
    """Analysis of the ALB's own metrics during the rollout (docs/rollout.md, What the gate watches)."""

    max_error_ratio: float = Field(
        default=2.0, ge=1.1, le=1000,
        description="the new pods' 5xx rate (HTTPCode_Target_5XX_Count over RequestCount) may be at most this many "
        "times the baseline's before the step fails; it fails only when the excess is also significant",
    )
    max_latency_ratio: float = Field(
        default=1.5, ge=1.05, le=1000,
        description="the new pods' mean TargetResponseTime may be at most this many times the baseline's",
    )
    min_error_rate: float = Field(
        default=0.001, gt=0, le=0.5,
        description="the baseline's 5xx rate is taken as at least this (a baseline without errors would make one 5xx "
        "an infinite regression)",
    )
    baseline_minutes: int = Field(
        default=30, ge=3, le=180,
        description="the minutes before the rollout whose metrics are the baseline",
    )


class RolloutPolicy(_Strict):
    """How a rollout proceeds; every default is documented in docs/rollout.md."""

    # The shape is checked here; whether the steps grow on a given replica count, and whether an approval names
    # a step of the plan resolved for it, Preflight checks (lambdas.domain.plan.step_problems).

    # A JSON boolean in a list of numbers is refused: the lax int would read true as 1 (validators.no_boolean_items).
    steps: Annotated[list[StepSpec], no_boolean_items("numbers or percentages like '25%'")] = Field(
        default_factory=lambda: list(DEFAULT_STEPS),
        description="cumulative new pods after each step: pod counts grow among themselves, percentages grow to "
        "a last '100%'; steps that resolve to the same count merge, a step that resolves to fewer pods than one "
        "before it is refused once the replicas are known; not together with batch_size",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="instead of steps: this many new pods per step until all are new; not together with steps",
    )
    bake_seconds: int = Field(default=0, ge=0, le=86_400, description="wait after a step passed, before the next")
    step_deadline_seconds: int = Field(
        default=900, ge=60, le=86_400, description="a step that has not passed its gate by then fails"
    )
    drain_deadline_seconds: int | None = Field(
        default=None,
        ge=30,
        le=7_200,
        description="old targets must be out of every target group's pool (draining or gone) by then; default: "
                    "deregistration delay + 120 s",
    )
    approval_before_steps: Annotated[list[int], no_boolean_items("numbers")] = Field(
        default_factory=list,
        description="distinct 1-based numbers of the plan's steps that wait for a person's approval (task "
        "token); each must be a step of the plan resolved for the Deployment's replicas",
    )
    harden: JsonBool = Field(
        default=False,
        description="let albgate fix unsafe settings (maxUnavailable, preStop, grace period) instead of stopping",
    )
    rollback_on_failure: JsonBool = Field(
        default=True, description="roll back, gated the same way, when a step fails"
    )
    pre_stop_seconds: int = Field(
        default=30,
        ge=0,
        le=3_600,
        description="preStop sleep albgate writes when hardening; covers the seconds the ALB still routes new "
        "requests to a deregistering target (docs/facts.md, Deregistration and draining: ~10 s reported, 25 s enough)",
    )
    max_request_seconds: int = Field(
        default=30, ge=1, le=3_600, description="the longest request the app serves, for the grace period"
    )
    alarms: list[AlarmSelector] = Field(
        default_factory=list,
        json_schema_extra={"maxItems": MAX_ALARMS},
        description=f"CloudWatch metric alarms watched during every step's gate, drain and bake: exact names, or a "
        f"name prefix ending in '*' (at most {MAX_ALARMS} entries, {MAX_ALARM_PREFIXES} of them prefixes); one in "
        "ALARM fails the step, and the rollout rolls back (docs/rollout.md, What the gate watches)",
    )
    insufficient_data_fails: JsonBool = Field(
        default=False,
        description="an alarm in INSUFFICIENT_DATA fails the step too; default: only ALARM does (an alarm without "
        "data says nothing about the new version)",
    )
    start_despite_alarms: JsonBool = Field(
        default=False,
        description="start even though an alarm is already in ALARM (e.g. to roll out its fix); such an alarm "
        "counts again once it has left that state. Default: Preflight refuses, naming the alarms",
    )
    long_requests_window_minutes: int = Field(
        default=60, ge=0, le=1440,
        description="Preflight reads the target groups' longest TargetResponseTime (Maximum) over this many minutes "
        "before the rollout and sizes the grace period and the deregistration delay check by it when it is longer "
        "than max_request_seconds; 0: only max_request_seconds counts",
    )
    read_controller_conditions: JsonBool = Field(
        default=True,
        description="where the Load Balancer Controller's readiness gate is on the new pods, read their targets' "
        "health from its conditions on the pods and ask ELB only once those are overdue (where they say ELB checks "
        "the targets, after a nudge of the controller): no Describe* call while "
        "the controller can tell, each step later by up to one of its requeues (15 s). false: ask ELB every "
        "health-check interval once a target could be healthy, and release on its answer (docs/rollout.md, Polling "
        "and cost)",
    )
    watch_seconds: int = Field(
        default=WATCH_IN_TASK_SECONDS,
        ge=0,
        le=MAX_WATCH_IN_TASK_SECONDS,
        description="longest a Check Target Health or Verify Drain task watches the pods (or the bindings) between "
        "its looks instead of returning to a Wait state, so it sees the controller's writes at once and saves the "
        "looks' state transitions; Lambda bills the time and a watching task is one more function running at once "
        "(docs/rollout.md, Watching instead of waiting). 0: every wait is a Wait state",
    )
    analysis: AnalysisPolicy | None = Field(
        default=None,
        description="compare the target groups' ALB metrics (5xx rate, response time) while the new version serves "
        "with the minutes before the rollout; a regression fails the step and the rollout rolls back. An empty "
        "object takes every default; absent: no analysis (docs/rollout.md, What the gate watches)",
    )

    @field_validator("steps")
    @classmethod
    def _steps_shape(cls, steps: list[int | str]) -> list[int | str]:
        """What holds whatever the replica count: each kind of step grows on its own, and the last is '100%'.
        A count against a percentage depends on the replicas ([1, '25%', 3] grows on 8, not on 20): Preflight."""
        if not steps:
            raise ValueError("give at least one step, e.g. [1, '25%', '50%', '100%']")
        last_count: tuple[int, int] | None = None  # (step number, pods)
        last_pct: tuple[int, int] | None = None  # (step number, percent)
        for i, s in enumerate(steps, start=1):
            if isinstance(s, int):
                if s < 1:
                    raise ValueError(f"step {i} is {s}; a pod count must be >= 1")
                if last_count is not None and s <= last_count[1]:
                    raise ValueError(
                        f"step {i} ({pods(s)}) must be larger than step {last_count[0]} ({pods(last_count[1])}): "
                        "steps count all new pods so far, so list counts in increasing order"
                    )
                if s == 1 and i > 1:
                    raise ValueError(
                        f"step {i} is 1 pod, which step {i - 1} already reaches (every step asks for at least "
                        "1 pod); drop it or put it first"
                    )
                last_count = (i, s)
                continue
            pct = percent(s)
            if pct is None or not 1 <= pct <= 100:
                hint = f"write the pod count as a number ({s}), not a string" if s.isdigit() else (
                    "write a pod count or a percentage from '1%' to '100%'"
                )
                raise ValueError(f"step {i} is {quote(s)}; {hint}")
            if last_pct is not None and pct <= last_pct[1]:
                raise ValueError(
                    f"step {i} ({s}) must be larger than step {last_pct[0]} ({last_pct[1]}%): steps count all new "
                    "pods so far, so list percentages in increasing order"
                )
            last_pct = (i, pct)
        if steps[-1] != "100%":
            raise ValueError("the last step must be '100%' so the rollout finishes")
        return steps

    @field_validator("approval_before_steps")
    @classmethod
    def _approvals_shape(cls, approvals: list[int], info: ValidationInfo) -> list[int]:
        seen: set[int] = set()
        for n in approvals:
            if n < 1:
                raise ValueError(f"has {n}; steps are numbered from 1")
            if n in seen:
                raise ValueError(f"names step {n} twice; name each step once")
            seen.add(n)
        steps = info.data.get("steps")
        if steps is not None and info.data.get("batch_size") is None and max(approvals, default=0) > len(steps):
            raise ValueError(
                f"names step {max(approvals)}, but steps lists {len(steps)}; name steps 1 to {len(steps)} "
                "(steps that resolve to the same count merge, so the plan may have fewer: Preflight checks that)"
            )
        return approvals

    @field_validator("alarms")
    @classmethod
    def _alarms_shape(cls, alarms: list[str]) -> list[str]:
        """At most MAX_ALARMS entries, MAX_ALARM_PREFIXES of them prefixes, each once: every entry costs
        DescribeAlarms calls on every look (lambdas/domain/rollout/alarms.py)."""
        if len(alarms) > MAX_ALARMS:
            raise ValueError(
                f"lists {len(alarms)} alarms; albgate watches at most {MAX_ALARMS}: name fewer, or cover several "
                "with one prefix ending in '*'"
            )
        prefixes = [a for a in alarms if alarm_prefix(a) is not None]
        if len(prefixes) > MAX_ALARM_PREFIXES:
            raise ValueError(
                f"has {len(prefixes)} prefixes ({quote(prefixes)}); at most {MAX_ALARM_PREFIXES} (each costs a "
                "DescribeAlarms call on every look): use a shorter common prefix, or name the alarms exactly"
            )
        seen: set[str] = set()
        for a in alarms:
            if a in seen:
                raise ValueError(f"names {quote(a)} twice; name each alarm or prefix once")
            seen.add(a)
        return alarms

    @model_validator(mode="after")
    def _one_way_to_size_steps(self) -> "RolloutPolicy":
        if self.batch_size is not None and "steps" in self.model_fields_set:
            raise ValueError(
                f"batch_size ({self.batch_size}) and steps ({quote(self.steps)}) are both given; a plan is "
                "either a fixed batch per step or a list of steps: remove one of them"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_unused_steps(self, handler: SerializerFunctionWrapHandler) -> Any:
        """With batch_size, ``steps`` is the unused default: leave it out, so a dumped policy validates again
        (both given would be refused; docs/facts.md, Strict inputs)."""
        data = handler(self)
        if self.batch_size is not None and isinstance(data, dict):
            data.pop("steps", None)
        return data


class RolloutRequest(_Strict):
    """The input of one gated rollout execution (JSON Schema: docs/rollout-input.schema.json)."""

    cluster: ClusterName = Field(description="EKS cluster name")
    namespace: KubernetesName = Field(description="namespace of the Deployment")
    deployment: KubernetesObjectName = Field(description="Deployment to roll")
    container: KubernetesName = Field(description="container whose image changes")
    # kind before image: whether an image is required depends on it (pydantic validates fields in this order).
    kind: Literal["rollout", "restart"] = Field(
        default="rollout", description="restart: re-create every pod through the same gates (same image)"
    )
    image: str | None = Field(
        default=None,
        validate_default=True,
        description="kind 'rollout' (required): the new image; a digest (@sha256:...) is preferred, a tag is "
        "resolved to one. kind 'restart': refused (a restart keeps the image the container runs)",
    )
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            if info.data.get("kind") == "rollout":
                raise ValueError(
                    "required for kind 'rollout': name the image to roll to, e.g. 'repo/app:v2'; to re-create "
                    "the pods with the image they run, use kind 'restart' without an image"
                )
            return v
        if info.data.get("kind") == "restart":
            raise ValueError(
                f"{quote(v)} given with kind 'restart', which re-creates the pods with the image they run now: leave "
                "image out to restart, or use kind 'rollout' to change the image"
            )
        parse_image(v)
        return v


# pydantic's own messages say what is wrong; these say what to write instead (the value quoted, cut short).
_FIXES = {
    "bool_type": "{value} is not a boolean; write true or false (a JSON boolean, not a string or a number)",
    "extra_forbidden": "no such field (given {value}); remove it or fix its spelling",
}


def validation_message(exc: ValidationError) -> str:
    """One line per problem: `field.path: what is wrong`, quoting at most ``MAX_QUOTED`` characters of a value."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "input"
        fix = _FIXES.get(err["type"])
        msg = fix.format(value=quote(err.get("input"))) if fix else err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def parse_request(data: Any) -> RolloutRequest:
    """Validate an execution input; InvalidInputError names every bad field."""
    try:
        return RolloutRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid rollout input: {validation_message(exc)}") from exc
