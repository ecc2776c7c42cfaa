"""The names the state machines, the handlers and the tools that read executions must spell the same.

Job: one home for every string that crosses the line between the Step Functions definitions (stacks/), the code
they invoke (lambdas/) and what reads their executions and events (albgate/, the execution-events Lambda, the
ECR trigger): the verdicts the Choice states compare, the answer Preflight gives while it waits for its turn, the
error names of Fail states and of a person's answer, the prefix of the rollback's state names, and the detail
types of albgate's events.

Invariant: each name is written here once and imported everywhere it is used. The fields the definitions read
are checked the other way round: tests/infrastructure/test_contract.py walks every JSONPath of both synthesized
definitions and resolves it against the state models (lambdas/domain/state.py, bootstrap.py).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Verdict(str, Enum):
    """``$.gate.status`` and ``$.drain.status``, as the rollout's Choice states compare them."""

    PASSED = "PASSED"
    WAITING = "WAITING"
    FAILED = "FAILED"
    # Drain only: every released target has left the pool (draining or gone), or albgate has just deregistered
    # it, and more steps follow, so the step hands its drain over: deregistered unseen, the targets are carried and
    # the last drain sees them out of the pool; seen, the next step's gate releases nothing until a look shows it.
    DRAINING = "DRAINING"


# ``$.preflight`` when Preflight's Describe* calls are booked for later (`Describe Turn Booked?` sends it to
# `Wait For Describe Turn`, then back to Preflight).
PREFLIGHT_WAITING = "WAITING_FOR_DESCRIBE_TURN"

# Error names of a step that failed on what it watches (`Record Gate Failure` / `Record Drain Failure` read them
# from ``$.gate.error`` / ``$.drain.error``; docs/rollout.md, "What the gate watches").
TARGETS_NOT_HEALTHY = "TargetsNotHealthy"  # the gate: the step's new targets did not all turn healthy in time
DRAIN_NOT_VERIFIED = "DrainNotVerified"  # the drain: the released targets did not leave in time
ALARM_FIRED = "AlarmFired"  # a CloudWatch alarm the policy names was failing (policy.alarms)
ALB_METRICS_REGRESSED = "AlbMetricsRegressed"  # the ALB's metrics showed the new version answering worse

# Error names of an execution's end and of a person's answer (docs/rollout.md).
ROLLED_BACK_ERROR = "RolledBack"  # `Rollout Rolled Back`: the rollout failed and its rollback succeeded
APPROVAL_TIMED_OUT = "ApprovalTimedOut"  # nobody answered `Wait For Approval` in time: a rejection
APPROVAL_REJECTED = "ApprovalRejected"  # what `albgate` tells a person to send to reject a step

# The rollback runs the rollout's own step states again under names with this prefix.
ROLLBACK_PREFIX = "Rollback: "

# albgate's own events on its bus: source and detail types (docs/ecr-trigger.md, docs/rollout.md).
EVENT_SOURCE = "albgate"
ROLLOUT_STARTED = "Rollout Started"
ROLLOUT_STEP_PASSED = "Rollout Step Passed"  # published by the state machine itself (Announce Step Passed)
ROLLOUT_QUEUED = "Rollout Queued"
ROLLOUT_SUCCEEDED = "Rollout Succeeded"
ROLLOUT_ROLLED_BACK = "Rollout Rolled Back"
ROLLOUT_FAILED = "Rollout Failed"
# Two pushes for one Deployment in the same second that ECR's imagePushedAt cannot order either: albgate starts
# neither over the other and says so, naming both (docs/ecr-trigger.md).
ROLLOUT_ORDER_UNKNOWN = "Rollout Order Unknown"
# A release's events (docs/releases.md), published by the release state machine itself.
RELEASE_STARTED = "Release Started"
RELEASE_WAVE_AWAITS_APPROVAL = "Release Wave Awaits Approval"  # carries the task token `albgate release approve` answers
RELEASE_WAVE_PASSED = "Release Wave Passed"
RELEASE_SUCCEEDED = "Release Succeeded"
RELEASE_STOPPED = "Release Stopped"
RELEASE_STOPPED_ERROR = "ReleaseStopped"  # the error of the `Release Stopped` Fail state
RELEASE_QUEUED = "Release Queued"  # a push waits for the running release of the same name (the release trigger)
RELEASE_ORDER_UNKNOWN = "Release Order Unknown"  # two pushes of one second that ECR cannot order either


# ---------------------------------------------------------------------------------------------------------
# What the bootstrap state machine reads of its state
# ---------------------------------------------------------------------------------------------------------
class _Read(BaseModel):
    """Only the fields a definition reads are named; a handler may write more (extra is allowed)."""

    model_config = ConfigDict(extra="allow")


class BootstrapCheck(_Read):
    """``$.controller``, ``$.bindings``, ``$.settle``: a wait-or-decide check (lambdas/domain/bootstrap.py)."""

    status: Verdict
    reason: str


class BootstrapReport(_Read):
    """``$.report``: the preflight report's verdict and its risks (lambdas/domain/preflight_report.py)."""

    ok: bool
    risks: list[Any]


class BootstrapView(_Read):
    """The bootstrap state as `albgate-bootstrap`'s Choice, Wait, Map and Fail states read it."""

    controller: BootstrapCheck | None = None
    bindings: BootstrapCheck | None = None
    settle: BootstrapCheck | None = None
    report: BootstrapReport | None = None
    restarts: list[Any] | None = None
    restart_results: list[Any] | None = None
    wait_seconds: int | None = None
    failure: dict[str, Any] | None = None
