"""albgate's share of the account's Describe* bucket: a rate every albgate execution in the account spends from.

Job: decide whether albgate may make a Describe* call now, and if not, how long until it may. The ELB Describe*
bucket (40 tokens, refilled at 10/s, per account and Region: docs/facts.md, ELB API throttling) is shared by every
caller, the Load Balancer Controllers included: they register the very targets a rollout waits for. Fifty short
rollouts started together ask for more than the refill (docs/benchmarks.md section 3), and each one's own back-off
only reacts after calls have been refused, the controllers' among them. So albgate holds all its executions together
to a smaller rate of its own, ``rate_per_second`` with bursts of ``burst`` calls, and leaves the rest of the bucket
to the controllers and other callers.

How: the generic cell rate algorithm (GCRA), a token bucket kept as one number, the theoretical arrival time
``tat`` of the next call at the steady rate. A call of ``tokens`` may go at ``now`` if the bucket, after it,
would not be ahead of ``now`` by more than the burst allows; it then moves ``tat`` on by ``tokens`` calls.
One number is what makes it shareable: the DynamoDB adapter keeps it in one item and changes it with a
conditional write. A call that must wait either books its place (a gate's next look, which will come back
anyway) or books nothing and learns how long to wait (Preflight, whose Retry decides when it comes back).

Adaptive: the share is a ceiling, not a promise. The bucket is the controllers' too, and their demand grows with
the rollouts in flight (every pod waiting for its gate is a target they look at), so when albgate's own calls are
throttled the bucket is short and albgate steps back: one throttled look cuts the share for every execution to
``decrease`` of what it was (at most once per ``cooldown_seconds``, however many executions saw the same
shortage), never below ``floor_rate_per_second``, and the share grows back linearly to ``rate_per_second`` over
``recovery_seconds`` without throttling: additive increase, multiplicative decrease, as TCP and botocore's
adaptive retry mode do for one client, here for all of albgate's in the account. The cut is one more pair of
numbers beside ``tat`` (``Cut``), kept the same way.

Invariant: over any window of w seconds, the calls let go (now, or at their booked time) number at most
``max(burst, largest request) + rate_per_second * w``, however many executions ask and in whatever order (a
request larger than the burst goes whole on a full bucket rather than never), cut or not; tests/unit/
test_budget.py checks it with hypothesis.
Pure: the caller supplies the clock and keeps ``tat`` and the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

# The share albgate takes by default: 4.5 calls/s with bursts of 30, of the bucket's 10/s and 40 (docs/facts.md, ELB
# API throttling). The rest is left to the controllers and to other callers. Chosen by replaying concurrent
# rollouts started within 10 s (docs/benchmarks.md section 3), which at the time showed fifty short rollouts
# throttling no call; with the controller modelled per version, its targets cache, and the bucket serving calls as
# they come, the controllers of fifty rollouts ask about 5 of the 10 tokens a second themselves. A larger share
# (5.5 calls/s, bursts of 40) was measured against it with fifty at once and left out: it throttles the controllers
# and helps no more rollouts within 1.10x of alone (docs/benchmarks.md section 3). A single rollout asks well under
# 1 call/s and never waits.
DEFAULT_RATE_PER_SECOND = 4.5
DEFAULT_BURST = 30
# The adaptive cut (see the module docstring). A look comes every few seconds per execution, so a shortage is seen
# by many executions within seconds: one cut per 10 s lets each halving act before the next. Half a call a second
# still lets a rollout's looks through (a seed-app rollout makes about 12 in 90 s), and 30 s to climb back from
# the floor is about one rollout step. Chosen by measuring 50 concurrent rollouts in one simulated account with
# several settings against the fixed share (docs/benchmarks.md, "Adaptive share").
DEFAULT_FLOOR_RATE_PER_SECOND = 0.5
DEFAULT_DECREASE = 0.5
DEFAULT_COOLDOWN_SECONDS = 10.0
DEFAULT_RECOVERY_SECONDS = 30.0
# How long one drain left to a Load Balancer Controller that did not show in time that it went past the targets
# (rollout.left) keeps every albgate execution in the account from leaving its drains: the controller's queue, or
# its back-off from throttled calls, lasts while many rollouts run, minutes rather than seconds (docs/benchmarks.md,
# "The RegisterTargets/DeregisterTargets bucket"). Each such drain starts it again.
CONTROLLER_LATE_SECONDS = 60.0


@dataclass(frozen=True)
class BudgetSpec:
    rate_per_second: float = DEFAULT_RATE_PER_SECOND
    burst: int = DEFAULT_BURST
    adaptive: bool = True  # False: a fixed share, whatever the throttling
    floor_rate_per_second: float = DEFAULT_FLOOR_RATE_PER_SECOND
    decrease: float = DEFAULT_DECREASE
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS
    recovery_seconds: float = DEFAULT_RECOVERY_SECONDS

    def __post_init__(self) -> None:
        if not self.rate_per_second > 0:
            raise ValueError(f"describe budget rate_per_second must be > 0, got {self.rate_per_second!r}")
        if self.burst < 1:
            raise ValueError(f"describe budget burst must be >= 1, got {self.burst!r}")
        if not self.floor_rate_per_second > 0:
            raise ValueError(f"describe budget floor_rate_per_second must be > 0, got {self.floor_rate_per_second!r}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"describe budget decrease must be between 0 and 1, got {self.decrease!r}")
        if self.cooldown_seconds < 0 or not self.recovery_seconds > 0:
            raise ValueError("describe budget cooldown_seconds must be >= 0 and recovery_seconds > 0, got "
                             f"{self.cooldown_seconds!r} and {self.recovery_seconds!r}")

    @property
    def floor(self) -> float:
        """The lowest share a cut leaves: the floor, or the whole share when that is smaller."""
        return min(self.floor_rate_per_second, self.rate_per_second)


@dataclass(frozen=True)
class Cut:
    """The last cut of the share: the rate it was cut to, and when."""

    rate: float
    at: float


def current_rate(spec: BudgetSpec, cut: Cut | None, now: float) -> float:
    """The share now: the last cut, grown back linearly (full after ``recovery_seconds`` from the floor)."""
    if cut is None or not spec.adaptive:
        return spec.rate_per_second
    climb = (spec.rate_per_second - spec.floor) * max(0.0, now - cut.at) / spec.recovery_seconds
    return min(spec.rate_per_second, max(spec.floor, cut.rate + climb))


def is_cut(spec: BudgetSpec, cut: Cut | None, now: float) -> bool:
    """Whether the share is still below its configured rate after the last cut: a call of albgate's was throttled
    less than ``recovery_seconds`` (from the floor; less from a shallower cut) ago. A fixed share keeps no cut."""
    return current_rate(spec, cut, now) < spec.rate_per_second


def is_late(late_at: float | None, now: float) -> bool:
    """Whether a drain left to a controller went without proof less than ``CONTROLLER_LATE_SECONDS`` ago."""
    return late_at is not None and now - late_at < CONTROLLER_LATE_SECONDS


def after_throttle(spec: BudgetSpec, cut: Cut | None, now: float) -> Cut | None:
    """The new cut once a call of albgate was throttled at ``now``; None when nothing changes (a fixed share, or
    the last cut was less than ``cooldown_seconds`` ago: the same shortage)."""
    if not spec.adaptive or (cut is not None and now - cut.at < spec.cooldown_seconds):
        return None
    return Cut(max(spec.floor, current_rate(spec, cut, now) * spec.decrease), now)


@dataclass(frozen=True)
class Admission:
    tat: float  # the theoretical arrival time to store
    wait: float  # seconds from now until the calls may go (0: now)


def admit(tat: float | None, now: float, tokens: int, spec: BudgetSpec, *, reserve: bool,
          rate: float | None = None) -> Admission:
    """When ``tokens`` calls may go, given the stored ``tat`` (None: the bucket is full).

    ``wait`` 0: they may go now, and ``tat`` has moved on by them. ``wait`` > 0 and ``reserve``: they are
    booked for ``now + wait`` (the caller comes back then and calls without asking again; every later asker
    queues behind it, so waiters neither collide nor starve). ``wait`` > 0 without ``reserve``: nothing is
    booked, ``tat`` is unchanged, and the same request would go in ``wait`` seconds if nobody else asks.
    A request larger than the burst counts as a burst-sized one, so that it can go at all. ``rate``: the share now
    (``current_rate``), at most ``spec.rate_per_second`` (the default)."""
    if tokens < 1:
        return Admission(tat if tat is not None else now, 0.0)
    emission = 1.0 / min(spec.rate_per_second, rate or spec.rate_per_second)
    # The burst is measured at the whole share: a cut spaces calls further apart, it does not widen the burst.
    tolerance = (spec.burst - min(tokens, spec.burst)) / spec.rate_per_second
    start = now if tat is None or tat < now else tat
    wait = max(0.0, start - now - tolerance)  # how far the schedule runs ahead of what a burst allows
    if wait > 1e-9 and not reserve:
        return Admission(tat if tat is not None else now, wait)
    return Admission(start + tokens * emission, wait if wait > 1e-9 else 0.0)


class LocalBudget:
    """The budget in one process's memory, on a given clock: what the simulation and the tests use. Every
    execution that shares the object shares the budget, as every Lambda shares the DynamoDB item."""

    def __init__(self, clock: object, spec: BudgetSpec | None = None) -> None:
        self._clock = clock
        self.spec = spec or BudgetSpec()
        self.tat: float | None = None
        self.cut: Cut | None = None
        self.late_at: float | None = None  # the last drain left to a controller that went without proof
        self.waits = 0  # requests told to wait
        self.cuts = 0  # times the share was cut

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        now = self._clock.now()  # type: ignore[attr-defined]
        a = admit(self.tat, now, tokens, self.spec, reserve=reserve, rate=current_rate(self.spec, self.cut, now))
        self.tat = a.tat
        self.waits += a.wait > 0
        return a.wait

    def throttled(self) -> None:
        cut = after_throttle(self.spec, self.cut, self._clock.now())  # type: ignore[attr-defined]
        if cut is not None:
            self.cut, self.cuts = cut, self.cuts + 1

    def controller_late(self) -> None:
        self.late_at = self._clock.now()  # type: ignore[attr-defined]

    def short(self) -> bool:
        now = self._clock.now()  # type: ignore[attr-defined]
        return is_cut(self.spec, self.cut, now) or is_late(self.late_at, now)


class UnlimitedBudget:
    """No budget: every call may go now (a deployment that turned the budget off; tests that do not care)."""

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        return 0.0

    def throttled(self) -> None:
        """Nothing to adapt."""

    def controller_late(self) -> None:
        """No memory to keep it in."""

    def short(self) -> bool:
        """No share, so no memory of a shortage: only a rollout's own throttled calls tell."""
        return False
