"""A release: one image rolled through ordered waves of clusters, each cluster with its own gated rollout.

Job: the decisions of a Release execution, as pure functions on its state (``ReleaseState``, the release state
machine's ``$.release``):

* ``plan_release`` turns a configured release (``ReleaseSpec``) and an image into the waves' children: one
  rollout execution of the cluster's own rollout state machine per (wave, cluster), each named after the release
  execution so that a retried start finds the same child;
* ``start_children`` says which children to start now: the current wave's, no more than its ``max_concurrency``
  running at once, none once one of them failed;
* ``record_statuses`` folds the children's statuses in and gives the wave's verdict: ``WAITING`` while any child
  runs or waits to start, ``PASSED`` when every child succeeded, ``FAILED`` once one failed and no child of the
  wave still runs (the others finish or roll back by themselves: a release never stops a rollout midway, so
  each cluster ends gated, in a known state);
* ``plan_rollback`` lists, when the release asks for it, the children that succeeded, newest wave first, as
  rollouts back to the image each of them replaced: the same gated rollout, in reverse order.

Invariant: a wave starts only when every earlier wave passed; after a failure no child of a later wave starts;
the state says at every moment which executions exist (their ARNs) so that nothing is started twice.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.image_reference import ImageReference, ImageReferenceError
from lambdas.domain.models import validation_message
from lambdas.domain.ports import ChildExecutions

# Execution names: 1-80 characters; albgate uses letters, digits, "-" and "_" (docs/facts.md, "Releases across
# accounts and Regions").
MAX_EXECUTION_NAME = 80
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# How long the release waits between two looks at a wave's children: a rollout step takes minutes, and every
# look costs one DescribeExecution per running child and three state transitions.
WAVE_POLL_SECONDS = 30

# Terminal statuses of an execution (DescribeExecution; docs/facts.md, "Releases across accounts and Regions").
SUCCEEDED = "SUCCEEDED"
RUNNING = "RUNNING"
PENDING = "PENDING"  # not started yet (albgate's own: no execution exists)
ENDED_BADLY = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


class WaveVerdict(str, Enum):
    """``$.release.verdict``, as the release's Choice states compare it."""

    WAITING = "WAITING"
    PASSED = "PASSED"
    FAILED = "FAILED"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReleaseTarget(_Model):
    """Where one child runs: a configured application in one cluster, and that cluster's rollout state machine."""

    cluster: str
    namespace: str
    deployment: str
    container: str
    account: str
    region: str
    state_machine_arn: str = Field(description="the rollout state machine of the cluster's account and Region")
    role_arn: str | None = Field(
        default=None, description="the role the release assumes to start and read the child (another account)"
    )


class WaveSpec(_Model):
    """One configured wave."""

    name: str
    targets: list[ReleaseTarget] = Field(min_length=1)
    max_concurrency: int = Field(ge=1)
    bake_seconds: int = Field(ge=0)
    approval: bool = False


class ReleaseSpec(_Model):
    """One configured release, resolved against the clusters and applications (stacks/config.py)."""

    name: str
    waves: list[WaveSpec] = Field(min_length=1)
    rollback_completed_waves: bool = False
    policy: dict[str, Any] = Field(default_factory=dict, description="the rollout policy every child runs with")
    ecr_repository: str | None = Field(default=None, description="a push here starts the release (its trigger)")
    tag_pattern: str = "*"


class Child(_Model):
    """One rollout execution of the release, and what the release knows of it."""

    target: ReleaseTarget
    name: str
    image: str
    status: str = PENDING
    execution_arn: str | None = None
    error: str | None = None
    cause: str | None = None
    previous_image: str | None = None  # from a succeeded child's output: what a rollback rolls back to

    @property
    def ended(self) -> bool:
        return self.status == SUCCEEDED or self.status in ENDED_BADLY

    @property
    def running(self) -> bool:
        """Started and not ended. Any status but the terminal ones counts: PENDING_REDRIVE (a failed child a person
        redrives) has not succeeded, so the wave waits for it and keeps reading it."""
        return self.status != PENDING and not self.ended

    def rollout_input(self, policy: dict[str, Any]) -> dict[str, Any]:
        """The child's execution input: the rollout request the rollout state machine takes."""
        t = self.target
        return {"cluster": t.cluster, "namespace": t.namespace, "deployment": t.deployment,
                "container": t.container, "image": self.image, "policy": policy}


class Wave(_Model):
    name: str
    max_concurrency: int
    bake_seconds: int
    approval: bool
    children: list[Child]


class Failure(_Model):
    wave: str
    child: str
    cluster: str
    status: str
    error: str | None = None
    cause: str | None = None


class ReleaseState(_Model):
    """``$.release``: everything the release state machine and its Lambdas read and write."""

    release: str
    execution_name: str
    image: str
    policy: dict[str, Any]
    rollback_completed_waves: bool
    waves: list[Wave]
    wave: int = 0  # index of the current wave (== len(waves) once every wave passed)
    phase: Literal["rollout", "rollback"] = "rollout"
    verdict: WaveVerdict = WaveVerdict.WAITING
    more_waves: bool = True
    approval_needed: bool = False  # the current wave asks a person first
    bake_seconds: int = 0  # the wait before the current wave starts (the previous wave's bake)
    wait_seconds: int = WAVE_POLL_SECONDS
    failure: Failure | None = None
    rollback: list[Child] = Field(default_factory=list)
    rollback_needed: bool = False
    cause: str = ""  # why the release stopped, once it did (the `Release Stopped` Fail state's cause)
    passed_wave: str = ""  # the name of the wave that passed last (the `Release Wave Passed` event names it)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def parse(cls, data: Any) -> "ReleaseState":
        if not isinstance(data, dict):
            raise InvalidInputError("release: the state has no release; start the execution with a release input")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            # Only domain errors leave a handler: the state machine's Catch clauses name them.
            raise InvalidInputError(f"release: {validation_message(exc)}; the state is the one Plan Release "
                                    "wrote: start a new release execution") from None

    @property
    def current(self) -> Wave | None:
        return self.waves[self.wave] if self.wave < len(self.waves) else None

    def active(self) -> list[Child]:
        """The children the current phase looks after: the current wave's, or the rollbacks."""
        if self.phase == "rollback":
            return self.rollback
        wave = self.current
        return wave.children if wave is not None else []


# --- planning ---------------------------------------------------------------------------------------------
def release_image(image: str) -> str:
    """The image a release rolls: a digest, so that every cluster, in every wave, runs the same bytes (a tag can
    move between the first wave and the last)."""
    if not isinstance(image, str) or not image:
        raise InvalidInputError("image: missing; name the image by digest, e.g. '<repository>@sha256:<64 hex>'")
    try:
        ref = ImageReference.parse(image)
    except ImageReferenceError as exc:
        raise InvalidInputError(f"image: {exc}") from None
    if ref.digest is None:
        raise InvalidInputError(
            f"image: {image!r} has no digest; a release rolls one image through every wave, and a tag can move "
            "between waves: give '<repository>@sha256:<64 hex>' (`aws ecr describe-images` prints it)"
        )
    return image


def child_name(execution_name: str, wave: int, index: int, *, rollback: bool = False) -> str:
    """A child's execution name: unique per release execution (whose name Step Functions keeps unique), the same
    on every retry of its start, at most 80 characters of the allowed ones."""
    suffix = f"-{'rb' if rollback else 'w'}{wave + 1}-{index + 1}"
    base = _NAME_UNSAFE.sub("-", execution_name)
    # A hash of the whole name when it is cut or when a character was replaced: 'a.b' and 'a-b' are two release
    # executions, and the same child name for both would make the second one adopt the first one's child (a
    # start of an existing name answers that execution's ARN).
    if base != execution_name or len(base) + len(suffix) > MAX_EXECUTION_NAME:
        digest = hashlib.sha256(execution_name.encode()).hexdigest()[:8]
        base = f"{base[:MAX_EXECUTION_NAME - len(suffix) - 9]}-{digest}"
    return base + suffix


def plan_release(spec: ReleaseSpec, image: str, execution_name: str) -> ReleaseState:
    """The release's state before its first wave: every child named, none started."""
    image = release_image(image)
    if not execution_name:
        raise InvalidInputError("execution_name: missing; the release state machine passes $$.Execution.Name")
    waves = [
        Wave(name=w.name, max_concurrency=w.max_concurrency, bake_seconds=w.bake_seconds, approval=w.approval,
             children=[Child(target=t, name=child_name(execution_name, i, k), image=image)
                       for k, t in enumerate(w.targets)])
        for i, w in enumerate(spec.waves)
    ]
    return ReleaseState(release=spec.name, execution_name=execution_name, image=image, policy=spec.policy,
                        rollback_completed_waves=spec.rollback_completed_waves, waves=waves,
                        approval_needed=waves[0].approval)


# --- a wave's progress ------------------------------------------------------------------------------------
def concurrency(state: ReleaseState) -> int:
    wave = state.current
    if state.phase == "rollback" or wave is None:
        return 1  # rollbacks run one at a time, in the order planned (newest wave first)
    return wave.max_concurrency


def start_children(state: ReleaseState) -> list[Child]:
    """The children to start now: pending ones, in order, up to the concurrency; none after a failure (a failed
    rollback stops the rollbacks too: a person looks before anything else changes)."""
    children = state.active()
    if any(c.status in ENDED_BADLY for c in children):
        return []
    running = sum(1 for c in children if c.running)
    pending = [c for c in children if c.status == PENDING]
    return pending[: max(0, concurrency(state) - running)]


def mark_started(child: Child, execution_arn: str) -> None:
    child.execution_arn = execution_arn
    child.status = RUNNING


def record_status(child: Child, status: str, *, error: str | None = None, cause: str | None = None,
                  output: Any = None) -> None:
    """Fold one DescribeExecution answer in. A succeeded child's output names the image it replaced."""
    child.status = status
    if status in ENDED_BADLY:
        child.error, child.cause = error or status, cause
    if status == SUCCEEDED and isinstance(output, dict) and isinstance(output.get("previous_image"), str):
        child.previous_image = output["previous_image"]


def verdict(state: ReleaseState) -> WaveVerdict:
    """The current phase's verdict from its children's statuses (see the module docstring)."""
    children = state.active()
    if any(c.running for c in children):
        return WaveVerdict.WAITING
    failed = [c for c in children if c.status in ENDED_BADLY]
    if failed:
        return WaveVerdict.FAILED
    if any(c.status == PENDING for c in children):
        return WaveVerdict.WAITING
    return WaveVerdict.PASSED


def conclude(state: ReleaseState) -> ReleaseState:
    """Set ``verdict`` and what the Choice states after it read: the next wave, its approval and bake, or the
    failure and whether a rollback follows."""
    state.verdict = verdict(state)
    if state.phase == "rollback":
        if state.verdict != WaveVerdict.WAITING:
            state.cause = failure_cause(state)
        return state
    if state.verdict == WaveVerdict.PASSED:
        passed = state.waves[state.wave]
        state.passed_wave = passed.name
        state.wave += 1
        state.more_waves = state.wave < len(state.waves)
        state.bake_seconds = passed.bake_seconds if state.more_waves else 0
        state.approval_needed = state.more_waves and state.waves[state.wave].approval
    elif state.verdict == WaveVerdict.FAILED:
        wave = state.waves[state.wave]
        bad = next(c for c in wave.children if c.status in ENDED_BADLY)
        state.failure = Failure(wave=wave.name, child=bad.name, cluster=bad.target.cluster, status=bad.status,
                                error=bad.error, cause=bad.cause)
        state.more_waves = False
        if state.rollback_completed_waves:
            state.rollback = plan_rollback(state)
        state.rollback_needed = bool(state.rollback)
        state.cause = failure_cause(state)
    return state


def plan_rollback(state: ReleaseState) -> list[Child]:
    """Rollouts back to each succeeded child's previous image: the failed wave's first, then the earlier waves,
    newest first (the reverse of the order they were rolled out in)."""
    out: list[Child] = []
    for i in range(min(state.wave, len(state.waves) - 1), -1, -1):
        done = [c for c in state.waves[i].children if c.status == SUCCEEDED and c.previous_image]
        for c in reversed(done):
            out.append(Child(target=c.target, name=child_name(state.execution_name, i, len(out), rollback=True),
                             image=c.previous_image or c.image))
    return out


def begin_rollback(state: ReleaseState) -> ReleaseState:
    state.phase = "rollback"
    state.verdict = WaveVerdict.WAITING
    return state


def failure_cause(state: ReleaseState) -> str:
    """The release's end, in one sentence a person can act on."""
    f = state.failure
    if f is None:
        return "the release stopped"
    what = f"wave {f.wave!r}: rollout {f.child} in cluster {f.cluster} ended {f.status}"
    why = f" ({f.error}: {f.cause})" if f.cause else (f" ({f.error})" if f.error else "")
    failed_at = next(i for i, w in enumerate(state.waves) if w.name == f.wave)
    later = [w.name for w in state.waves[failed_at + 1:]]
    tail = f"; waves not started: {', '.join(later)}" if later else ""
    if state.rollback:
        ok = sum(1 for c in state.rollback if c.status == SUCCEEDED)
        tail += f"; rolled back {ok} of {len(state.rollback)} completed rollout(s)"
    return what + why + tail


# --- one look at the children (the `Start Wave Rollouts` / `Check Wave Rollouts` Lambda) -----------------
def advance_release(executions: ChildExecutions, state: ReleaseState) -> ReleaseState:
    """Read every running child of the current phase, start what may start now, and conclude: the whole of a
    look. Children are read before any is started, so a slot freed by a child that just ended is used at once."""
    for child in state.active():
        if child.running and child.execution_arn:
            answer = executions.describe(child.execution_arn, child.target.role_arn)
            record_status(child, answer.status, error=answer.error, cause=answer.cause, output=answer.output)
    for child in start_children(state):
        arn = executions.start(child.target.state_machine_arn, child.target.role_arn, child.name,
                               child.rollout_input(state.policy))
        mark_started(child, arn)
    return conclude(state)


def parse_specs(text: str) -> dict[str, ReleaseSpec]:
    """The releases file the stack ships to the release functions: a JSON list of ``ReleaseSpec``."""
    import json

    redeploy = "the release stack writes this file from the config's releases: redeploy it"
    try:
        items = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"releases file: not JSON ({exc}); {redeploy}") from None
    try:
        # Validated as one list, so that a problem's path names the release's place in the file.
        specs = TypeAdapter(list[ReleaseSpec]).validate_python(items)
    except ValidationError as exc:
        raise InvalidInputError(f"releases file: {validation_message(exc)}; {redeploy}") from None
    return {s.name: s for s in specs}


def spec_named(specs: dict[str, ReleaseSpec], name: Any) -> ReleaseSpec:
    if not isinstance(name, str) or name not in specs:
        raise InvalidInputError(
            f"release: {name!r} is not a configured release; use one of {sorted(specs)} (config `releases`)"
        )
    return specs[name]
