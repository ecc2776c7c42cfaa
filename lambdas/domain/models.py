"""Typed input of a gated rollout, validated once, shared by the Lambdas, the CDK config and the albgate command.

Invariant: a ``RolloutRequest`` that validates names a real-looking Deployment and a policy whose shape is
sound: counts grow among themselves, percentages grow to 100 %, a plan is given one way (``steps`` or
``batch_size``), approvals name distinct steps the list can have, booleans are JSON booleans. Anything else
raises ``InvalidInputError`` naming the field and the fix, before any call touches the cluster. What needs the
Deployment's replica count (a count against a percentage, the plan's length) is Preflight's to check
(``lambdas.domain.plan.step_problems``); a message quotes at most ``documents.MAX_QUOTED`` characters of a
bad value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from lambdas.domain.documents import quote
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.image_reference import ImageReference, ImageReferenceError

# RFC 1123 label / subdomain as Kubernetes validates names (namespaces and Deployments).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_STEP = re.compile(r"^(?P<n>[0-9]{1,3})%$")


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


def pods(n: int) -> str:
    return f"{n} pod" if n == 1 else f"{n} pods"


def _refuse_booleans(name: str, raw: Any) -> Any:
    """A list of numbers given a JSON boolean is refused: lax int validation would read true as 1 (docs/facts.md,
    Strict inputs)."""
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if isinstance(item, bool):
                raise ValueError(
                    f"item {i + 1} is {str(item).lower()}, a boolean; {name} holds numbers"
                    + (" or percentages like '25%'" if name == "steps" else "")
                )
    return raw


class RolloutPolicy(_Strict):
    """How a rollout proceeds; every default is documented in docs/rollout.md."""

    # The shape is checked here; whether the steps grow on a given replica count, and whether an approval names
    # a step of the plan resolved for it, Preflight checks (lambdas.domain.plan.step_problems).

    steps: list[StepSpec] = Field(
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
        description="old targets must have left the target group by then; default: deregistration delay + 120 s",
    )
    approval_before_steps: list[int] = Field(
        default_factory=list,
        description="distinct 1-based numbers of the plan's steps that wait for a person's approval (task "
        "token); each must be a step of the plan resolved for the Deployment's replicas",
    )
    # StrictBool: a lax bool reads "yes", "0" or 1 as a boolean (docs/facts.md, Strict inputs).
    harden: StrictBool = Field(
        default=False,
        description="let albgate fix unsafe settings (maxUnavailable, preStop, grace period) instead of stopping",
    )
    rollback_on_failure: StrictBool = Field(
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

    @field_validator("steps", "approval_before_steps", mode="before")
    @classmethod
    def _no_booleans(cls, raw: Any, info: ValidationInfo) -> Any:
        return _refuse_booleans(str(info.field_name), raw)

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
            m = _STEP.match(s)
            if not m or not 1 <= int(m.group("n")) <= 100:
                hint = f"write the pod count as a number ({s}), not a string" if s.isdigit() else (
                    "write a pod count or a percentage from '1%' to '100%'"
                )
                raise ValueError(f"step {i} is {quote(s)}; {hint}")
            pct = int(m.group("n"))
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

    cluster: str = Field(min_length=1, max_length=100, description="EKS cluster name")
    namespace: str = Field(description="namespace of the Deployment")
    deployment: str = Field(description="Deployment to roll")
    container: str = Field(description="container whose image changes")
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

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, v: str) -> str:
        if not re.match(r"^[0-9A-Za-z][A-Za-z0-9\-_]*$", v):
            raise ValueError("an EKS cluster name has letters, digits, '-' and '_' and starts with a letter or digit")
        return v

    @field_validator("namespace", "container")
    @classmethod
    def _label(cls, v: str) -> str:
        if not DNS1123_LABEL.match(v):
            raise ValueError(f"{quote(v)} is not a Kubernetes name: lower-case letters, digits and '-', at most 63")
        return v

    @field_validator("deployment")
    @classmethod
    def _subdomain(cls, v: str) -> str:
        if not DNS1123_SUBDOMAIN.match(v):
            raise ValueError(f"{quote(v)} is not a Kubernetes object name: lower-case letters, digits, '-' and '.'")
        return v

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
