"""Typed input of a gated rollout, validated once, shared by the Lambdas, the CDK config and the albgate command.

Invariant: a ``RolloutRequest`` that validates names a real-looking Deployment and a policy whose steps grow
strictly to 100 %; anything else raises ``InvalidInputError`` naming the field and the fix, before any call
touches the cluster.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
        raise ValueError(f"{image!r} is not an image reference: {e}; {example}") from e
    if ref.tag is None and ref.digest is None:
        raise ValueError(f"{image!r} is not an image reference with a tag or digest; {example}")
    return ref.repository, ref.tag, ref.digest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


StepSpec = Annotated[int | str, Field(description="pods (an integer >= 1) or a percentage of replicas ('25%')")]


class RolloutPolicy(_Strict):
    """How a rollout proceeds; every default is documented in docs/rollout.md."""

    steps: list[StepSpec] = Field(
        default_factory=lambda: [1, "25%", "50%", "100%"],
        description="cumulative new pods after each step; the last step must reach 100%",
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="instead of steps: this many new pods per step until all are new"
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
        default_factory=list, description="1-based step numbers that wait for a person's approval (task token)"
    )
    harden: bool = Field(
        default=False,
        description="let albgate fix unsafe settings (maxUnavailable, preStop, grace period) instead of stopping",
    )
    rollback_on_failure: bool = Field(default=True, description="roll back, gated the same way, when a step fails")
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

    @field_validator("steps")
    @classmethod
    def _steps_grow_to_100(cls, steps: list[int | str]) -> list[int | str]:
        if not steps:
            raise ValueError("give at least one step, e.g. [1, '25%', '50%', '100%']")
        last_pct = None
        for i, s in enumerate(steps):
            if isinstance(s, bool):
                raise ValueError(f"step {i + 1} is a boolean; write a pod count or a percentage like '25%'")
            if isinstance(s, int):
                if s < 1:
                    raise ValueError(f"step {i + 1} is {s}; a pod count must be >= 1")
            else:
                m = _STEP.match(s)
                if not m or not 1 <= int(m.group("n")) <= 100:
                    raise ValueError(f"step {i + 1} is {s!r}; write a pod count or a percentage from '1%' to '100%'")
                pct = int(m.group("n"))
                if last_pct is not None and pct <= last_pct:
                    raise ValueError(f"step {i + 1} ({s}) must be larger than the step before it")
                last_pct = pct
        if steps[-1] != "100%":
            raise ValueError("the last step must be '100%' so the rollout finishes")
        return steps

    @model_validator(mode="after")
    def _approvals_name_steps(self) -> "RolloutPolicy":
        for n in self.approval_before_steps:
            if n < 1:
                raise ValueError(f"approval_before_steps has {n}; steps are numbered from 1")
        return self


class RolloutRequest(_Strict):
    """The input of one gated rollout execution (JSON Schema: docs/rollout-input.schema.json)."""

    cluster: str = Field(min_length=1, max_length=100, description="EKS cluster name")
    namespace: str = Field(description="namespace of the Deployment")
    deployment: str = Field(description="Deployment to roll")
    container: str = Field(description="container whose image changes")
    image: str = Field(description="new image; a digest (@sha256:...) is preferred, a tag is resolved to one")
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)
    kind: Literal["rollout", "restart"] = Field(
        default="rollout", description="restart: re-create every pod through the same gates (same image)"
    )

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
            raise ValueError(f"{v!r} is not a Kubernetes name: lower-case letters, digits and '-', at most 63")
        return v

    @field_validator("deployment")
    @classmethod
    def _subdomain(cls, v: str) -> str:
        if not DNS1123_SUBDOMAIN.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes object name: lower-case letters, digits, '-' and '.'")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        parse_image(v)
        return v


def validation_message(exc: ValidationError) -> str:
    """One line per problem: `field.path: what is wrong`."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "input"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def parse_request(data: Any) -> RolloutRequest:
    """Validate an execution input; InvalidInputError names every bad field."""
    try:
        return RolloutRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid rollout input: {validation_message(exc)}") from exc
