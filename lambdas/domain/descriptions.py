"""Target groups described once for many Preflights: one DescribeTargetGroups call for every rollout waiting for
its turn in albgate's share of the account's Describe* bucket.

Job: Preflight needs two things of each target group that only ELB knows: its settings (DescribeTargetGroups:
target type, health check, load balancers) and its deregistration delay (DescribeTargetGroupAttributes). That is
two Describe* calls a group, and when many rollouts start together their Preflights are what waits longest for a
turn (docs/benchmarks.md section 3). The attributes call names one group, but one DescribeTargetGroups call
describes up to ``MAX_GROUPS_PER_CALL`` (docs/facts.md, "ELBv2 DescribeTargetGroups: 20 groups a call"). So the
Preflights that must wait share a board (a ``Board``, in the budget's table):
- the groups they want described (``wanted``), and the turn of the Preflight that will describe the next of them
  (``describer_at``) with the room left in its call (``room``): a Preflight that must wait and finds no describer
  to come with room books one call more than its groups' attributes and becomes the describer; at its turn it
  describes its own groups and the others wanted, oldest first, up to the call's limit;
- the answers (``described``), which a Preflight reads instead of calling.
A Preflight that must wait while a describer's turn is still to come and its call has room joins it, if its own
turn would come within ``JOIN_WAIT_SECONDS``: it books its attributes only, and takes room in the call. Turns are
booked in order (lambdas/domain/budget.py), so the describer's comes before its joiners', and an earlier
describer's before a later one's: the wanted groups are described in the order they were wanted.

Rules:
- An answer stands in for a call when it is at most ``FRESH_SECONDS`` old and shows a group Preflight accepts
  (IP targets, attached to a load balancer); one that would refuse the rollout is asked again, so a refusal always
  rests on the execution's own answer.
- A Preflight whose turn comes with its groups still not described (the describer went another way) books the
  call it is missing: no call goes without a turn in the share.
- A group wanted for longer than ``WANTED_SECONDS`` is no longer described for anyone (its Preflight ended another
  way), and the next describer takes it off the board with the answers too old to use (``done_with``).
What it does not claim: a shared answer is as new as the describer's call, seconds before the Preflight's own
turn; settings changed in between are the gate's to meet, as they would be a second after an own call.
Pure: the caller supplies the clock; the store is a port (``SharedDescriptions``: DynamoDB in Lambda, memory here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lambdas.domain.budget import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND

if TYPE_CHECKING:  # the ports module hands NoDescriptions out as the default store
    from lambdas.domain.ports import TargetGroupSettings

# ELB refuses a DescribeTargetGroups call naming more target groups (docs/facts.md).
MAX_GROUPS_PER_CALL = 20
# An answer older than this is not used: a Preflight that joined reads it within seconds of the describer's call
# (its turn comes after the describer's, a few seconds apart at the share's rate).
FRESH_SECONDS = 60.0
# A group wanted this long ago without being described is dropped: its Preflight's turn has long come.
WANTED_SECONDS = 120.0
# Answers made up to this long before a describer's booked turn end that turn on the board (a turn may go a little
# early: looks.BOOKED_EARLY_SECONDS); a turn that passed without answers stays until a new describer replaces it.
DESCRIBER_SLACK_SECONDS = 2.0
# A Preflight joins a describer only when its own turn would come within this many seconds: the time albgate's
# default share takes to refill its burst. A longer queue is the share spacing out the starts of many rollouts, and
# each start brings its controller's registrations; joining there brings the starts together, which measured with
# a thousand rollouts at once made the last end much later and the controllers throttled more (docs/benchmarks.md
# section 3).
JOIN_WAIT_SECONDS = DEFAULT_BURST / DEFAULT_RATE_PER_SECOND


@dataclass(frozen=True)
class Described:
    settings: TargetGroupSettings
    at: float  # when the describer's call was made (epoch seconds)


@dataclass(frozen=True)
class Board:
    """What the Preflights share: groups wanted (ARN -> when first wanted), the describer's booked turn (None: no
    describer known), and the answers (ARN -> ``Described``)."""

    wanted: dict[str, float] = field(default_factory=dict)
    describer_at: float | None = None
    described: dict[str, Described] = field(default_factory=dict)
    room: int = 0  # groups the describer's call still takes for Preflights that join it


def acceptable(settings: TargetGroupSettings) -> bool:
    """Whether Preflight would accept the group as described: IP targets, attached to a load balancer."""
    return settings.target_type == "ip" and bool(settings.load_balancer_arns)


def fresh(board: Board, arns: Sequence[str], now: float) -> dict[str, TargetGroupSettings]:
    """The groups of ``arns`` whose answer on the board may stand in for a call now."""
    known = {}
    for arn in arns:
        d = board.described.get(arn)
        if d is not None and 0 <= now - d.at <= FRESH_SECONDS and acceptable(d.settings):
            known[arn] = d.settings
    return known


def calls_for(missing: Sequence[str]) -> int:
    """DescribeTargetGroups calls that describe ``missing`` (none when nothing is)."""
    return math.ceil(len(missing) / MAX_GROUPS_PER_CALL)


def still_wanted(board: Board, now: float) -> list[str]:
    """The groups wanted and not yet answered, oldest first (ties by ARN), those wanted too long ago left out."""
    rows = [(at, arn) for arn, at in board.wanted.items()
            if now - at <= WANTED_SECONDS and not fresh(board, [arn], now)]
    return [arn for _, arn in sorted(rows)]


def may_join(board: Board, missing: Sequence[str], now: float) -> bool:
    """Whether a Preflight that must wait for ``missing`` may leave their description to the describer whose turn
    is on the board: that turn is still to come, and its call has room for them."""
    if not missing or board.describer_at is None or board.describer_at <= now:
        return False
    return board.room >= len(set(missing))


def batches(board: Board, missing: Sequence[str], now: float) -> list[list[str]]:
    """The DescribeTargetGroups calls that describe ``missing``: the last one filled up with the groups others
    want, oldest first, to the call's limit."""
    own = list(dict.fromkeys(missing))
    calls = [own[i:i + MAX_GROUPS_PER_CALL] for i in range(0, len(own), MAX_GROUPS_PER_CALL)]
    if calls:
        room = MAX_GROUPS_PER_CALL - len(calls[-1])
        calls[-1] += [arn for arn in still_wanted(board, now) if arn not in own][:room]
    return calls


def done_with(board: Board, now: float) -> list[str]:
    """What the board holds that nobody will use: answers too old to stand in for a call, and groups wanted too
    long ago to be described for anyone (their Preflight ended another way). The next writer removes them, so
    the board stays the size of the Preflights of the last minutes."""
    stale = {arn for arn, d in board.described.items() if now - d.at > FRESH_SECONDS}
    stale |= {arn for arn, at in board.wanted.items() if now - at > WANTED_SECONDS}
    return sorted(stale)


class LocalDescriptions:
    """The board in one process's memory: what the simulation and the tests use. Every execution that shares the
    object shares the board, as every Lambda shares the DynamoDB item."""

    def __init__(self) -> None:
        self._wanted: dict[str, float] = {}
        self._describer_at: float | None = None
        self._room = 0
        self._described: dict[str, Described] = {}
        self.offered = 0  # answers written

    def board(self) -> Board:
        return Board(dict(self._wanted), self._describer_at, dict(self._described), self._room)

    def want(self, arns: Sequence[str], at: float, describer_at: float | None = None) -> None:
        arns = list(dict.fromkeys(arns))
        if describer_at is not None:  # a new describer: its turn and its call's room replace the board's
            self._describer_at, self._room = describer_at, MAX_GROUPS_PER_CALL - len(arns)
        elif self._room >= len(arns):  # a join takes room in the describer's call
            self._room -= len(arns)
        else:
            return  # no room left: not wanted; the Preflight describes its groups at its own turn
        for arn in arns:
            self._wanted.setdefault(arn, at)

    def offer(self, answers: Sequence[TargetGroupSettings], at: float, forget: Sequence[str] = ()) -> None:
        for s in answers:
            self._described[s.arn] = Described(s, at)
            self.offered += 1
            self._wanted.pop(s.arn, None)
        answered = {s.arn for s in answers}
        for arn in forget:
            if arn not in answered:
                self._wanted.pop(arn, None)
                self._described.pop(arn, None)
        if self._describer_at is not None and self._describer_at <= at + DESCRIBER_SLACK_SECONDS:
            self._describer_at, self._room = None, 0


class NoDescriptions:
    """Nothing shared: every Preflight describes its own groups (a deployment without the budget table; tests
    that do not care)."""

    def board(self) -> Board:
        return Board()

    def want(self, arns: Sequence[str], at: float, describer_at: float | None = None) -> None:
        """Nobody to describe them."""

    def offer(self, answers: Sequence[TargetGroupSettings], at: float, forget: Sequence[str] = ()) -> None:
        """Nobody to read them."""
