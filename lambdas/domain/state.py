"""The state a rollout execution carries from task to task (the JSON the console shows as each state's output).

Invariant: the fields the state machine's Choice and Wait states read (``gate.status``, ``drain.status``,
``wait_seconds``, ``bake_seconds``, ``more_steps``, ``approval_required``, ``rollback_needed``,
``rollback_allowed``, ``failure_summary``) are always present and typed; everything a
handler needs to resume after a retry is in here, never in Lambda memory.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lambdas.domain.models import RolloutRequest


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetGroupInfo(_Model):
    arn: str
    service: str
    health_check_interval_seconds: int
    healthy_threshold: int
    deregistration_delay_seconds: int
    target_port: int | None = None  # the port its targets are registered on, as DescribeTargetHealth showed it


class StepRecord(_Model):
    step: int  # 1-based
    mode: Literal["rollout", "rollback"]
    target: int
    started_at: float
    gate_passed_at: float | None = None
    drained_at: float | None = None
    polls: int = 0
    observed_at: float | None = None  # when a DescribeTargetHealth last answered during this step
    # Since when every target the gate waits for has been `initial` (Elb.RegistrationInProgress), as the gate saw
    # it; None when not (domain/poll.py paces the looks by it).
    registering_since: float | None = None
    # Released pods whose targets albgate deregistered itself because nobody else had (controller down or
    # throttled): "target group ARN|IP".
    deregistered: list[str] = Field(default_factory=list)


class RolloutState(_Model):
    request: RolloutRequest
    execution_name: str
    mode: Literal["rollout", "rollback"] = "rollout"
    started_at: float
    replicas: int
    plan: list[int]
    target_image: str  # what the pods must run at the end of the current mode
    previous_image: str
    previous_revision: int
    original_max_surge: int | str
    original_max_unavailable: int | str
    hardening: dict[str, Any] = Field(default_factory=dict)  # DeploymentPatch fields applied on step 1
    findings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # worth knowing, not blocking (e.g. a tag left unpinned)
    requested_image: str = ""  # the image as the input named it (a tag is pinned to target_image's digest)
    target_groups: list[TargetGroupInfo]
    template_changed: bool = False

    next_step: int = 0  # 0-based index of the step Start Step begins next
    step: int = -1  # 0-based index of the current step
    step_deadline: float = 0.0
    drain_deadline: float = 0.0
    watched_ips: list[str] = Field(default_factory=list)
    # The step (1-based) whose Verify Drain handed its still-draining targets over to the next step's gate
    # (Verdict.DRAINING); None once they have left. watched_ips and drain_deadline are still that step's.
    pending_drain_step: int | None = None

    gate: dict[str, Any] = Field(default_factory=lambda: {"status": "WAITING", "reason": "not started"})
    drain: dict[str, Any] = Field(default_factory=lambda: {"status": "WAITING", "reason": "not started"})
    wait_seconds: int = 0
    bake_seconds: int = 0
    more_steps: bool = True
    approval_required: bool = False
    rollback_needed: bool = False
    # False when rolling back would be blind: albgate never saw this step's targets (throttled throughout), so
    # it cannot tell whether the pods a rollback removes are serving. The state machine then stops instead.
    rollback_allowed: bool = True
    throttles: int = 0
    # When the Describe* calls of the next look are booked in albgate's share of the account's bucket (epoch
    # seconds; None: nothing booked). Set only while that share is spent (lambdas/domain/budget.py).
    describe_slot_at: float | None = None

    describe_target_health_calls: int = 0
    steps: list[StepRecord] = Field(default_factory=list)
    failure: dict[str, Any] | None = None
    failure_summary: str = ""
    rollback_error: dict[str, Any] | None = None
    rollback_failure: dict[str, Any] | None = None
    outcome: Literal["in_progress", "succeeded", "rolled_back", "failed"] = "in_progress"
    finished_at: float | None = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
