"""When a rollout looks at its targets: Describe* turns in albgate's share of the account's bucket, and pacing.

Invariant: a look that spends Describe* tokens goes only when albgate's share allows it (lambdas/domain/budget.py);
otherwise its turn is booked and the wait is returned, never slept here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lambdas.domain.poll import (
    CONDITIONS_POLL_SECONDS,
    LEFT_TO_CONTROLLER_SECONDS,
    POD_START_POLL_SECONDS,
    deregistered_poll_seconds,
    drain_poll_seconds,
    out_of_service_poll_seconds,
    pod_poll_seconds,
    registration_poll_seconds,
    scale_down_poll_seconds,
    target_poll_seconds,
)
from lambdas.domain.looks import BOOKED_EARLY_SECONDS, FOLLOW_SLACK_SECONDS, follows
from lambdas.domain.ports import Ports
from lambdas.domain.state import RolloutState


# A look booked for a time that has long passed (the look went another way meanwhile) is booked again.
STALE_SLOT_SECONDS = 10


def booked_wait(ports: Ports, slot: float | None, tokens: int, now: float) -> tuple[int, float | None]:
    """(0, None) when ``tokens`` Describe* calls may go now; else (whole seconds to wait, the booked slot).

    ``slot`` is a turn booked earlier in albgate's share of the account's bucket (lambdas/domain/budget.py):
    back for it (a Wait state waits whole seconds, so up to half a second early counts), the calls go without
    asking again; before it, the rest of the wait; long past it, it is booked again. A wait is never shorter
    than the pods' pace (``POD_START_POLL_SECONDS``): the worst-case history count (``limits.max_looks``)
    assumes no loop turns faster but for a step's few quick looks, and a slot waited for a little late is still
    valid."""
    if slot is not None and now <= slot + STALE_SLOT_SECONDS:
        if now + BOOKED_EARLY_SECONDS >= slot:
            return 0, None
        return max(POD_START_POLL_SECONDS, math.ceil(slot - now)), slot
    wait = ports.budget.acquire(tokens, reserve=True)
    if wait <= 0:
        return 0, None
    return max(POD_START_POLL_SECONDS, math.ceil(wait)), now + wait


def budget_wait(ports: Ports, s: RolloutState, now: float, to_call: tuple[str, ...],
                booked_at: float | None = None) -> tuple[int, bool]:
    """(0, False) when this look's DescribeTargetHealth calls, one per group of ``to_call``, may go now (none to make:
    other executions' answers stand in for all of them); else the whole seconds to wait, and whether the wait is
    for another execution's call booked for ``booked_at`` (lambdas/domain/looks.py, ``follows``) rather than for a
    turn of this look's own in albgate's share of the account's bucket (kept in ``s.describe_slot_at`` and told to
    the others, who may follow it)."""
    if not to_call:
        return 0, False
    if s.describe_slot_at is None and s.followed_at is None and booked_at is not None:
        own = ports.budget.acquire(len(to_call), reserve=False)
        if follows(booked_at, now, own):
            s.followed_at = booked_at
            return max(POD_START_POLL_SECONDS, math.ceil(booked_at - now) + FOLLOW_SLACK_SECONDS), True
    before = s.describe_slot_at
    wait, s.describe_slot_at = booked_wait(ports, before, len(to_call), now)
    if s.describe_slot_at is not None and s.describe_slot_at != before:
        for arn in to_call:
            ports.looks.book(arn, s.describe_slot_at)
    return wait, False


# What a look found it must wait for, which decides when the next look comes (``next_look``):
#   now           nothing: the state machine goes on at once (the verdict is in, or the drain was handed over)
#   rs            the Deployment controller to create the step's ReplicaSet (Kubernetes reads only)
#   pods          the step's pods to start (Kubernetes reads only); ``unschedulable``: all wait for a node
#   scale-down    the Deployment controller to scale the old ReplicaSet down (Kubernetes reads only): every
#                 second just after the gate passed, then at the pods' pace
#   booked        the Describe* turn booked in albgate's share of the bucket (``seconds``; no more than one
#                 controller requeue where its conditions are read again meanwhile: rollout.gate)
#   conditions    the controller's target-health conditions on the pods (Kubernetes reads only), at the pods'
#                 pace or, ``quick``, every CONDITIONS_POLL_SECONDS, but no later than when they are overdue and
#                 ELB is asked, ``seconds`` from now
#   throttled     DescribeTargetHealth was throttled: back off
#   targets       the new targets' next health check
#   turn          the time after the step's pods started that earlier steps' targets took to turn healthy
#                 (``seconds``; rollout.gate.expected_turn_at), the pods read meanwhile at the registration pace
#   registering   the load balancer to finish registering every new target (since ``registering_since``)
#   deregistered  targets albgate has just deregistered to stop receiving new requests (none leaves before)
#   lag           the same, where no look follows (rollout.drain: the last drain, every target deregistered by
#                 albgate's own call): exactly until then (``seconds``), without jitter, as nothing is called
#   handed-over-drain / drain   released targets still in the pool to leave it
#   out-of-service  the controller to deregister the old pods a step took out of service (rollout.out_of_service);
#                 where a look at ELB proves it, no later than that look is due (``seconds``)
WaitFor = Literal["now", "rs", "pods", "scale-down", "booked", "conditions", "throttled", "targets", "turn",
                  "registering", "deregistered", "lag", "handed-over-drain", "drain", "out-of-service"]


@dataclass(frozen=True)
class Pace:
    """What a look waits for (``WaitFor``), with what its wait depends on."""

    wait_for: WaitFor
    # booked: the wait for the booked turn; turn: until the expected turn; lag: until its end; out-of-service: until
    # the look at ELB that proves the old pods out is due (0: none is), no later than its pace
    seconds: int = 0
    unschedulable: bool = False  # pods: every starting pod waits for a node
    quick: bool = False  # conditions: a quick look (poll.CONDITIONS_POLL_SECONDS)
    # pods: the look that finds them up may ask ELB (no controller's conditions to read), so a task does not watch
    # the pods to make it sooner (rollout.gate.check_target_health)
    elb_next: bool = False


NOW = Pace("now")


def next_look(s: RolloutState, pace: Pace, now: float) -> int:
    """Whole seconds until the next look (the Wait states' SecondsPath), the one place the gate's and the drain's
    pacing is decided (lambdas/domain/poll.py has the rules). The jitter's key names the current step's look, so a
    retried task waits the same."""
    what = pace.wait_for
    if what == "now":
        return 0
    wait = _paced(s, pace, now)
    if s.left_at is not None:
        # targets left to the controller are settled at their deadline at the latest (rollout.left)
        wait = min(wait, max(1, math.ceil(s.left_at + LEFT_TO_CONTROLLER_SECONDS - now)))
    return wait


def _paced(s: RolloutState, pace: Pace, now: float) -> int:
    what = pace.wait_for
    if what == "booked":
        return pace.seconds
    key = poll_key(s, what)
    if what == "rs":
        return pod_poll_seconds(key)
    if what == "pods":
        return pod_poll_seconds(key, unschedulable=pace.unschedulable)
    if what == "conditions":
        return min(CONDITIONS_POLL_SECONDS if pace.quick else pod_poll_seconds(key), pace.seconds)
    if what == "scale-down":
        passed = s.steps[-1].gate_passed_at if s.steps else None
        return scale_down_poll_seconds(key, None if passed is None else now - passed)
    if what == "throttled":
        return target_poll_seconds(interval(s), key, s.throttles)
    if what == "targets":
        return target_poll_seconds(interval(s), key)
    if what == "turn":
        # no longer than the gate would wait between looks at targets still registering that long (poll.py)
        since = s.steps[-1].first_ready_at if s.steps else None
        longest = registration_poll_seconds(interval(s), now - (now if since is None else since), key)
        return turn_wait_seconds(pace.seconds, longest)
    if what == "lag":
        return max(POD_START_POLL_SECONDS, pace.seconds)
    if what == "deregistered":
        return deregistered_poll_seconds(key)
    if what == "out-of-service":
        out_at = s.steps[-1].out_at if s.steps else None
        since = None if out_at is None else now - out_at
        if pace.seconds:  # a look at ELB is the proof (when it is due): nothing to read every second meanwhile
            return max(1, min(out_of_service_poll_seconds(key, since, quick=False), pace.seconds))
        return out_of_service_poll_seconds(key, since)
    if what == "registering":
        since = s.steps[-1].registering_since
        return registration_poll_seconds(interval(s), now - (now if since is None else since), key)
    return drain_poll_seconds(interval(s), key, s.throttles if what == "drain" else 0)


def throttled_back_off(s: RolloutState, now: float) -> int:
    """After a throttled look at ELB: the whole seconds until the next call may go (the throttled wait, longer with
    each throttle in a row), kept in ``s.elb_after`` so that every look until then makes none."""
    wait = next_look(s, Pace("throttled"), now)
    s.elb_after = now + wait
    return wait


def turn_wait_seconds(until_turn: int, longest: int) -> int:
    """The wait of a gate holding its first look at ELB back for ``until_turn`` seconds (rollout.gate.expected_turn_at):
    no more than ``longest`` (the pods and the alarms are read meanwhile, as often as while targets register: an
    interval, longer once registration has taken long), and never shorter than the pods' pace, so that a loop turns
    no faster than the history's worst case counts (``booked_wait``): the last two waits before the turn split what
    is left rather than leave a second or two."""
    wait = min(longest, until_turn)
    if 0 < until_turn - wait < POD_START_POLL_SECONDS:
        wait = until_turn - POD_START_POLL_SECONDS
    return max(POD_START_POLL_SECONDS, wait)


def poll_key(s: RolloutState, what: str) -> str:
    polls = s.steps[-1].polls if s.steps else 0
    return f"{s.execution_name}/{s.mode}/{s.step}/{what}/{polls}"


def interval(s: RolloutState) -> int:
    return min(g.health_check_interval_seconds for g in s.target_groups)


# Older than this many health-check intervals, the last look at the targets says nothing about them now.
STALE_OBSERVATION_INTERVALS = 4
