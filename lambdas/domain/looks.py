"""Looks at a target group shared between albgate's executions: one DescribeTargetHealth answer serves every
rollout that watches the same group for a moment.

Job: decide whether an answer another execution got (a ``Look``) may stand in for a call of this one. Two
Deployments behind one Service (a canary beside its stable version, two tiers of one app) roll behind the same
target group, and each rollout's gate would otherwise ask ELB about the same group every interval, spending two
tokens of the account's Describe* bucket (docs/facts.md, ELB API throttling) for one answer.

Rule: a look may be used when it is recent and news to the user.
- Recent: made at most half the group's health-check interval ago (``MAX_AGE_INTERVALS``). The load balancer
  changes a target's health state only on a health check, once an interval per target (docs/facts.md, ALB
  target health: each check's result holds for the whole interval), and the gate looks once an interval; an
  answer half an interval old is as good as a look the gate's own jitter had put half an interval later. Two
  executions looking at one group every interval thus lock in step: whichever looks second finds the other's
  answer recent enough, and about half the calls are saved.
- News: made after this execution's own last look at the group (it never goes back in time) and after the last
  thing it did that moves its targets' states (released pods, registered or deregistered targets): an answer
  from before shows the world before that change, and would only make it repeat or wait.
Where albgate's share of the bucket is spent, looks wait for booked turns, seconds to minutes apart, and another
execution's answer is seldom recent when a turn comes. So an execution that books a call for a group says when
(``GroupNews.booked_at``), and another that must call for the same group and would wait longer for a turn of its
own follows that booking instead (``follows``): it books nothing, comes back just after it
(``FOLLOW_SLACK_SECONDS``) and reads the answer. One booked call then answers for every rollout of the group. A
follow that finds no answer (the other's look went another way) is not followed by another: the next look books
its own turn.
What it does not claim: a shared answer says nothing the execution's own call at the same time would not; the
gate and the drain decide on it exactly as on their own (lambdas/domain/rollout/gate.py, drain.py).
Pure: the caller supplies the clock; the store is a port (``SharedLooks``: DynamoDB in Lambda, memory here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the ports module hands NoLooks out as the default store
    from lambdas.domain.ports import TargetHealth

# An answer older than this many of the group's health-check intervals is not used for another execution.
MAX_AGE_INTERVALS = 0.5
# A follower comes back this long after the booked call it follows: a booked look goes at its turn or up to a
# second later (a Wait state's whole seconds), and its Lambda takes a moment more.
FOLLOW_SLACK_SECONDS = 2
# A booked look goes when a Wait state brings it back within half a second of its turn (rollout.observe.booked_wait).
BOOKED_EARLY_SECONDS = 0.5


@dataclass(frozen=True)
class Look:
    """One DescribeTargetHealth answer for a target group, and when it was made (epoch seconds)."""

    observed_at: float
    targets: tuple[TargetHealth, ...]


@dataclass(frozen=True)
class GroupNews:
    """What the executions share about one target group: the newest answer, and the earliest call still booked for
    it (epoch seconds; None: none known)."""

    look: Look | None = None
    booked_at: float | None = None


def follows(booked_at: float | None, now: float, own_wait: float) -> bool:
    """Whether a look that must wait ``own_wait`` seconds for a turn of its own follows another execution's call
    booked for ``booked_at`` instead: that call is still to come, and no later than the look's own turn."""
    return booked_at is not None and now < booked_at <= now + own_wait


def usable(look: Look | None, now: float, interval_seconds: int, since: float | None,
           awaited: float | None = None) -> bool:
    """Whether ``look`` may stand in for a call now: made after ``since`` (the execution's own last look or last
    change of its targets; None: nothing yet), and within ``MAX_AGE_INTERVALS`` of the group's interval or, when
    the look follows a booked call (``awaited``: its time), by that call or a later one: that answer is what it
    waited for, however short the interval (a booked call may go up to ``BOOKED_EARLY_SECONDS`` before its time)."""
    if look is None or look.observed_at > now:
        return False
    if since is not None and look.observed_at <= since:
        return False
    if awaited is not None and look.observed_at >= awaited - BOOKED_EARLY_SECONDS:
        return True
    return now - look.observed_at <= MAX_AGE_INTERVALS * interval_seconds


class LocalLooks:
    """Shared looks in one process's memory, on a given clock: what the simulation and the tests use. Every
    execution that shares the object shares the looks, as every Lambda shares the DynamoDB table. It keeps the
    newest look per group, and the earliest booking still to come (a booking already past is replaced)."""

    def __init__(self, clock: object) -> None:
        self._clock = clock
        self._looks: dict[str, Look] = {}
        self._booked: dict[str, float] = {}
        self.shared = 0  # looks stored

    def news(self, target_group_arn: str) -> GroupNews:
        return GroupNews(self._looks.get(target_group_arn), self._booked.get(target_group_arn))

    def share(self, target_group_arn: str, look: Look) -> None:
        old = self._looks.get(target_group_arn)
        if old is None or look.observed_at > old.observed_at:  # as the table's condition: the first of a time stays
            self._looks[target_group_arn] = look
            self.shared += 1

    def book(self, target_group_arn: str, at: float) -> None:
        old = self._booked.get(target_group_arn)
        if old is None or old < self._clock.now() or at < old:  # type: ignore[attr-defined]
            self._booked[target_group_arn] = at


class NoLooks:
    """Nothing shared: every look calls ELB (a deployment without the budget table; tests that do not care)."""

    def news(self, target_group_arn: str) -> GroupNews:
        return GroupNews()

    def share(self, target_group_arn: str, look: Look) -> None:
        """Nobody to share with."""

    def book(self, target_group_arn: str, at: float) -> None:
        """Nobody to follow it."""
