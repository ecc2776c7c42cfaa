"""The AWS limits albgate must stay within, and the worst cases it holds against them, before anything changes.

Job: name each limit once (Lambda's 4 KB of environment, Step Functions' 25,000 history events, 256 KB per
state and the executions' timeouts) and compute, from a rollout policy and its plan, the worst case a rollout
execution can reach: how many history events it records and how long it runs. Preflight refuses a rollout
whose worst case is over a limit (``lambdas.domain.rollout.preflight.check_limits``), the CDK config refuses a default
policy that is over one at synth (``stacks/config.py``), and the ECR trigger's functions keep their
environment small by construction (``stacks/constructs/ecr_trigger.py``).

How the history is counted: Step Functions records a fixed number of events for each state it runs (a Lambda
task five: entered, scheduled, started, succeeded, exited; a Choice, Wait or Pass two), so an execution's
history is the sum over the states it visits. ``ROLLOUT_SEGMENTS`` lists which states the rollout state
machine visits for each part of a rollout (a gate's look, a drain's look, a step's start and end, the
rollback); the tests check every segment against the synthesized definition and a whole execution's count
against the history moto records for it (tests/unit/test_limits.py, tests/workflow/test_history_limit.py).
A gate or drain loop makes at most ``max_looks(deadline)`` looks: it fails at its first look past its deadline,
and the waits between its looks are never shorter than ``MIN_LOOK_WAIT_SECONDS`` (``lambdas/domain/poll.py``).

Invariant: pure arithmetic over albgate's own constants and the documented limits (docs/facts.md, "AWS limits
albgate checks"); nothing here reads the clock, the environment or the network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lambdas.domain.models import RolloutPolicy
from lambdas.domain.poll import (
    CONDITIONS_POLL_SECONDS,
    CONDITIONS_QUICK_LOOKS,
    JITTER,
    MIN_DRAIN_POLL_SECONDS,
    OUT_OF_SERVICE_QUICK_POLL_SECONDS,
    OUT_OF_SERVICE_QUICK_SECONDS,
    POD_START_POLL_SECONDS,
    SCALE_DOWN_QUICK_POLL_SECONDS,
    SCALE_DOWN_QUICK_SECONDS,
    THROTTLE_CAP_SECONDS,
)

# ---------------------------------------------------------------------------------------------------------
# The limits (docs/facts.md, "AWS limits albgate checks")
# ---------------------------------------------------------------------------------------------------------
# Lambda: all environment variables of a function together, measured as the compact JSON of the Variables map.
LAMBDA_ENVIRONMENT_MAX_BYTES = 4096
# Step Functions, Standard workflows.
HISTORY_MAX_EVENTS = 25_000
STATE_PAYLOAD_MAX_BYTES = 262_144  # a state's input or output, UTF-8; over it: States.DataLimitExceeded
STANDARD_MAX_EXECUTION_SECONDS = 365 * 24 * 3600
CAUSE_MAX_CHARS = 32_768  # the cause of a failed task (TaskFailedEventDetails), what a Catch puts in $.failure
ERROR_MAX_CHARS = 256
# The ALB's shortest health-check interval (HealthCheckIntervalSeconds 5-300): the gate's target polls are never
# shorter.
ALB_MIN_HEALTH_CHECK_INTERVAL_SECONDS = 5

# albgate's own choices for its state machines.
ROLLOUT_TIMEOUT_SECONDS = 48 * 3600  # the rollout state machine's TimeoutSeconds (the workflow reads it from here)
# `Wait For Approval`'s TimeoutSeconds (the workflow reads it from here); Start Step holds the gates through it.
APPROVAL_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_DEREGISTRATION_DELAY_SECONDS = 300  # ELB's default: what the drain deadline defaults from when unknown
DRAIN_MARGIN_SECONDS = 120  # a drain deadline defaults to the deregistration delay + this (drain_deadline_seconds)

# The most applications one cluster may have in the CDK config and in one bootstrap input: each is a few
# entries in every state the bootstrap carries (tests/bootstrap/test_state_size.py runs this many).
MAX_APPLICATIONS_PER_CLUSTER = 60

# What albgate keeps below each limit. Retries are not in the event model: each retried attempt of a task adds
# three events (scheduled, started, failed); the reserve is 500 such attempts, twenty tasks that exhaust all 25
# of their Retry clauses' attempts. States carry no more than seven eighths of the payload limit.
HISTORY_RESERVE_EVENTS = 1_500
HISTORY_BUDGET_EVENTS = HISTORY_MAX_EVENTS - HISTORY_RESERVE_EVENTS
STATE_PAYLOAD_BUDGET_BYTES = STATE_PAYLOAD_MAX_BYTES * 7 // 8
# Time a rollout spends outside its deadlines: Lambda run time, Retry back-offs, Preflight's booked turns.
DURATION_MARGIN_SECONDS = 1_800


def lambda_environment_bytes(variables: Mapping[str, str]) -> int:
    """The size Lambda measures against ``LAMBDA_ENVIRONMENT_MAX_BYTES``: the Variables map as compact JSON, UTF-8."""
    return len(json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def payload_bytes(value: Any) -> int:
    """A state's size as Step Functions counts it (UTF-8 JSON); measured with the separators Python's json
    writes by default, which a Lambda's answer carries, so never less than Step Functions' own count."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


# ---------------------------------------------------------------------------------------------------------
# History events
# ---------------------------------------------------------------------------------------------------------
TASK, TOKEN_TASK, CHOICE, WAIT, PASS, SUCCEED, FAIL = "Task", "TokenTask", "Choice", "Wait", "Pass", "Succeed", "Fail"
# Events Step Functions records per visit of a state of each kind, the execution's own start and end apart.
# A task waiting for a token also records TaskSubmitted.
EVENTS_PER_STATE = {TASK: 5, TOKEN_TASK: 6, CHOICE: 2, WAIT: 2, PASS: 2, SUCCEED: 2, FAIL: 1}
EXECUTION_START_EVENTS = 1  # ExecutionStarted
EXECUTION_END_EVENTS = 1  # ExecutionSucceeded / ExecutionFailed
RETRY_EVENTS = 3  # one more attempt of a task: scheduled, started, failed

Segment = tuple[tuple[str, str], ...]  # (state name, kind) in the order an execution visits them

# The rollout state machine, part by part (stacks/constructs/rollout_workflow.py builds it; the tests hold each
# segment to the synthesized definition: these states, of these kinds, each the next of the one before).
ROLLOUT_SEGMENTS: dict[str, Segment] = {
    "preflight": (("Preflight", TASK), ("Describe Turn Booked?", CHOICE)),
    "preflight_turn": (("Wait For Describe Turn", WAIT), ("Preflight", TASK), ("Describe Turn Booked?", CHOICE)),
    "step_entry": (("Approval Needed?", CHOICE),),  # rollout steps only
    "approval": (("Wait For Approval", TOKEN_TASK),),
    "start": (("Start Step", TASK),),
    "gate_look": (("Check Target Health", TASK), ("Targets Healthy?", CHOICE)),
    "gate_wait": (("Wait For Health Check", WAIT),),
    "release": (("Release Old Pods", TASK),),
    "drain_look": (("Verify Drain", TASK), ("Old Targets Drained?", CHOICE)),
    "drain_wait": (("Wait For Drain", WAIT),),
    "step_passed": (("Announce Step Passed", TASK), ("Bake Step", WAIT), ("More Steps?", CHOICE)),
    "all_passed": (("All Steps Passed", PASS),),
    "succeeded": (("Finish Rollout", TASK), ("Rollout Succeeded", SUCCEED)),
    "gate_failed": (("Record Gate Failure", PASS),),
    "drain_failed": (("Record Drain Failure", PASS),),
    "roll_back": (("Roll Back?", CHOICE), ("Roll Back", TASK), ("Anything To Roll Back?", CHOICE)),
    "rolled_back": (("Record Rollback", TASK), ("Rollout Rolled Back", FAIL)),
    # Shorter ends, which the worst case never takes: refused by Preflight, failed without a rollback.
    "refused": (("Rollout Refused", FAIL),),
    "failed": (("Roll Back?", CHOICE), ("Rollout Failed", FAIL)),
}
# Segments of a step the model counts on the rollback path too, under the prefixed names (a rollback step that
# fails ends the execution sooner than one that passes, so the model never counts its failure).
STEP_SEGMENTS = ("start", "gate_look", "gate_wait", "release", "drain_look", "drain_wait", "step_passed",
                 "all_passed")
# Without albgate's event bus (no ECR trigger configured) the state machine has no `Announce Step Passed`.
ANNOUNCE = "Announce Step Passed"


def segment_events(segment: Segment, *, announce: bool = True) -> int:
    return sum(EVENTS_PER_STATE[kind] for name, kind in segment if announce or name != ANNOUNCE)


def _events(name: str, *, announce: bool = True) -> int:
    return segment_events(ROLLOUT_SEGMENTS[name], announce=announce)


@dataclass(frozen=True)
class StepVisit:
    """What one step of a rollout (or of its rollback) ran: its gate's and its drain's looks.

    ``drain_looks`` 0: the gate failed, nothing was released. ``passed`` False: the step failed (at its gate,
    or at its drain when it has drain looks) and the execution went to the rollback decision."""

    gate_looks: int
    drain_looks: int
    approval: bool = False
    passed: bool = True


def loop_events(looks: int, look: str, wait: str) -> int:
    """A poll loop: ``looks`` looks with a wait between each two."""
    if looks < 1:
        return 0
    return looks * _events(look) + (looks - 1) * _events(wait)


def step_events(step: StepVisit, *, rollout: bool, announce: bool = True) -> int:
    """History events of one step, from `Approval Needed?` (rollout steps) to `More Steps?` or its failure."""
    n = _events("step_entry") if rollout else 0
    n += _events("approval") if step.approval else 0
    n += _events("start")
    n += loop_events(step.gate_looks, "gate_look", "gate_wait")
    if step.drain_looks:
        n += _events("release") + loop_events(step.drain_looks, "drain_look", "drain_wait")
    if step.passed:
        return n + _events("step_passed", announce=announce)
    return n + _events("drain_failed" if step.drain_looks else "gate_failed")


def rollout_events(
    steps: Sequence[StepVisit],
    *,
    rollback: Sequence[StepVisit] = (),
    preflight_turns: int = 0,
    announce: bool = True,
) -> int:
    """History events of a whole rollout execution that visits these steps, retries apart.

    Every step passed: the execution succeeded. The last step failed: it rolled back through ``rollback``
    (which must then be given, every step of it passed) and ended in `Rollout Rolled Back`."""
    n = EXECUTION_START_EVENTS + _events("preflight") + preflight_turns * _events("preflight_turn")
    n += sum(step_events(s, rollout=True, announce=announce) for s in steps)
    if all(s.passed for s in steps):
        return n + _events("all_passed") + _events("succeeded") + EXECUTION_END_EVENTS
    if not rollback or any(not s.passed for s in steps[:-1]) or not all(s.passed for s in rollback):
        raise ValueError("a rollout that rolls back fails at its last step and passes every rollback step")
    n += _events("roll_back")
    n += sum(step_events(s, rollout=False, announce=announce) for s in rollback)
    return n + _events("all_passed") + _events("rolled_back") + EXECUTION_END_EVENTS


# ---------------------------------------------------------------------------------------------------------
# Worst cases
# ---------------------------------------------------------------------------------------------------------
# The shortest wait a gate or drain loop puts between two looks, its few quick looks apart (below): pods still
# starting (3 s, plus jitter); the other waits are longer (a health-check interval, at least 5 s on an ALB; a
# drain poll, at least 5 s; after a throttle, twice the interval).
MIN_LOOK_WAIT_SECONDS = min(POD_START_POLL_SECONDS, MIN_DRAIN_POLL_SECONDS, ALB_MIN_HEALTH_CHECK_INTERVAL_SECONDS)
# A few waits of a loop are shorter than that: a drain's first waits after its gate passed (a second each, for
# poll.SCALE_DOWN_QUICK_SECONDS), a gate's quick looks at the controller's conditions (poll.CONDITIONS_*) and its
# first looks once it took old pods out of service (poll.OUT_OF_SERVICE_QUICK_*; that wait ends by the step's
# deadline, lambdas/domain/rollout/out_of_service.py, so its looks are the gate's). The
# k-th look still comes at least (k - 1) shortest waits after the first, less what those quick waits saved, so a
# loop's looks are counted over its deadline plus these seconds.
DRAIN_QUICK_SAVED_SECONDS = (math.ceil(SCALE_DOWN_QUICK_SECONDS / SCALE_DOWN_QUICK_POLL_SECONDS)
                             * (MIN_LOOK_WAIT_SECONDS - SCALE_DOWN_QUICK_POLL_SECONDS))
GATE_QUICK_SAVED_SECONDS = (CONDITIONS_QUICK_LOOKS * (MIN_LOOK_WAIT_SECONDS - CONDITIONS_POLL_SECONDS)
                            + math.ceil(OUT_OF_SERVICE_QUICK_SECONDS / OUT_OF_SERVICE_QUICK_POLL_SECONDS)
                            * (MIN_LOOK_WAIT_SECONDS - OUT_OF_SERVICE_QUICK_POLL_SECONDS))
# How far a loop can run past its deadline: its longest wait (the throttle cap, jittered) before the look that
# sees the deadline passed.
LOOK_OVERSHOOT_SECONDS = THROTTLE_CAP_SECONDS + math.ceil(THROTTLE_CAP_SECONDS * JITTER)


def max_looks(deadline_seconds: float, min_wait_seconds: float = MIN_LOOK_WAIT_SECONDS) -> int:
    """The most looks a loop with this deadline makes: it goes on only while its last look came before the
    deadline, and the k-th look comes at least (k - 1) waits after the first."""
    return math.ceil(deadline_seconds / min_wait_seconds) + 1


def drain_deadline_seconds(policy: RolloutPolicy, deregistration_delay_seconds: int | None = None) -> int:
    """A step's drain deadline: the policy's, else the deregistration delay (ELB's default when not known yet)
    plus ``DRAIN_MARGIN_SECONDS``."""
    if policy.drain_deadline_seconds is not None:
        return policy.drain_deadline_seconds
    delay = DEFAULT_DEREGISTRATION_DELAY_SECONDS if deregistration_delay_seconds is None else deregistration_delay_seconds
    return delay + DRAIN_MARGIN_SECONDS


@dataclass(frozen=True)
class WorstCase:
    """The most a rollout of ``steps`` steps under a policy can cost (retries apart), and how it adds up."""

    steps: int
    step_events: int  # one rollout step that runs out both its deadlines
    events: int
    seconds: int
    gate_looks: int
    drain_looks: int
    approvals: int
    breakdown: dict[str, int] = field(default_factory=dict)


def worst_case(
    policy: RolloutPolicy,
    steps: int,
    drain_deadline: int,
    *,
    preflight_turns: int,
    announce: bool = True,
) -> WorstCase:
    """The worst rollout of ``steps`` steps: every gate and drain runs to its deadline at the shortest wait
    between looks (each step still passing at its last look), every approval waits out its timeout, the last
    step fails at its drain deadline, and the one-step rollback (lambdas/domain/rollout/rollback.py, ``roll_back``)
    runs to its deadlines too."""
    if steps < 1:
        raise ValueError("a rollout has at least one step")
    gate = max_looks(policy.step_deadline_seconds + GATE_QUICK_SAVED_SECONDS)
    drain = max_looks(drain_deadline + DRAIN_QUICK_SAVED_SECONDS)
    approvals = sorted({n for n in policy.approval_before_steps if 1 <= n <= steps})
    visits = [StepVisit(gate, drain, approval=i in approvals) for i in range(1, steps + 1)]
    visits[-1] = StepVisit(gate, drain, approval=steps in approvals, passed=False)
    rollback = [StepVisit(gate, drain)]
    events = rollout_events(visits, rollback=rollback, preflight_turns=preflight_turns, announce=announce)
    one_step = step_events(StepVisit(gate, drain, approval=False), rollout=True, announce=announce)
    step_seconds = policy.step_deadline_seconds + drain_deadline + 2 * LOOK_OVERSHOOT_SECONDS
    seconds = (
        steps * step_seconds
        + (steps - 1) * policy.bake_seconds
        + len(approvals) * APPROVAL_TIMEOUT_SECONDS
        + step_seconds  # the rollback
        + DURATION_MARGIN_SECONDS
    )
    breakdown = {
        "gate looks per step": gate,
        "drain looks per step": drain,
        "events per step": one_step,
        "rollback events": sum(step_events(s, rollout=False, announce=announce) for s in rollback),
    }
    return WorstCase(steps, one_step, events, seconds, gate, drain, len(approvals), breakdown)


def most_steps_within_history(
    policy: RolloutPolicy, drain_deadline: int, *, preflight_turns: int, announce: bool = True
) -> int:
    """The largest number of steps whose worst case stays within ``HISTORY_BUDGET_EVENTS`` (0: not even one)."""
    one = worst_case(policy, 1, drain_deadline, preflight_turns=preflight_turns, announce=announce)
    if one.events > HISTORY_BUDGET_EVENTS:
        return 0
    # Each step past the first adds the same number of events (approvals apart, which only add).
    steps = 1 + (HISTORY_BUDGET_EVENTS - one.events) // one.step_events
    while steps > 1 and worst_case(policy, steps, drain_deadline, preflight_turns=preflight_turns,
                                   announce=announce).events > HISTORY_BUDGET_EVENTS:
        steps -= 1
    return steps


def history_problem(worst: WorstCase, most_steps: int) -> str | None:
    """Why a rollout's worst case does not fit the execution history, with the fix; None when it fits."""
    if worst.events <= HISTORY_BUDGET_EVENTS:
        return None
    return (
        f"this rollout has {worst.steps} steps and could record {worst.events:,} history events (each "
        f"step up to {worst.step_events:,}: {worst.gate_looks} gate looks in step_deadline_seconds, "
        f"{worst.drain_looks} drain looks in the drain deadline, plus a rollback), over the "
        f"{HISTORY_BUDGET_EVENTS:,} albgate allows below Step Functions' limit of {HISTORY_MAX_EVENTS:,} events "
        "per execution; past that limit the execution fails mid-rollout, without a rollback. "
        + (
            f"Use fewer, larger steps (at most {most_steps} at these deadlines: a larger batch_size or fewer steps "
            "entries), or shorter step_deadline_seconds / drain_deadline_seconds (docs/rollout.md, Limits)"
            if most_steps
            else "Not even one step fits at these deadlines: use a shorter step_deadline_seconds or "
            "drain_deadline_seconds (docs/rollout.md, Limits)"
        )
    )


def duration_problem(worst: WorstCase, timeout_seconds: int = ROLLOUT_TIMEOUT_SECONDS) -> str | None:
    """Why a rollout's worst case outlasts the state machine's timeout, with the numbers; None when it fits."""
    if worst.seconds <= timeout_seconds:
        return None
    return (
        f"this rollout could run {worst.seconds / 3600:.1f} h ({worst.steps} steps of step_deadline_seconds "
        f"+ drain deadline + bake_seconds, {worst.approvals} approval(s) of up to {APPROVAL_TIMEOUT_SECONDS // 3600} "
        f"h each, a rollback and {DURATION_MARGIN_SECONDS // 60} min for Lambda run time and retries), longer than "
        f"the rollout state machine's timeout of {timeout_seconds // 3600} h; an execution that times out stops "
        "mid-rollout without a rollback. Use fewer approvals, fewer steps, a shorter bake_seconds or shorter "
        "deadlines (docs/rollout.md, Limits)"
    )
