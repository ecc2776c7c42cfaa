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

Invariant: over any window of w seconds, the calls let go (now, or at their booked time) number at most
``max(burst, largest request) + rate_per_second * w``, however many executions ask and in whatever order (a
request larger than the burst goes whole on a full bucket rather than never); tests/unit/test_budget.py checks
it with hypothesis.
Pure: the caller supplies the clock and keeps ``tat``.
"""

from __future__ import annotations

from dataclasses import dataclass

# The share albgate takes by default: 4.5 calls/s with bursts of 30, of the bucket's 10/s and 40 (docs/facts.md, ELB
# API throttling). The rest is left to the controllers and to other callers. Chosen by replaying concurrent
# rollouts started within 10 s (docs/benchmarks.md section 3), which at the time showed fifty short rollouts
# throttling no call; with the controller modelled per version and the bucket serving calls as they come, the
# controllers of fifty rollouts ask about 8 of the 10 tokens a second themselves, and the replay throttles calls
# (docs/results/cost.md). A single rollout asks well under 1 call/s and never waits.
DEFAULT_RATE_PER_SECOND = 4.5
DEFAULT_BURST = 30


@dataclass(frozen=True)
class BudgetSpec:
    rate_per_second: float = DEFAULT_RATE_PER_SECOND
    burst: int = DEFAULT_BURST

    def __post_init__(self) -> None:
        if not self.rate_per_second > 0:
            raise ValueError(f"describe budget rate_per_second must be > 0, got {self.rate_per_second!r}")
        if self.burst < 1:
            raise ValueError(f"describe budget burst must be >= 1, got {self.burst!r}")


@dataclass(frozen=True)
class Admission:
    tat: float  # the theoretical arrival time to store
    wait: float  # seconds from now until the calls may go (0: now)


def admit(tat: float | None, now: float, tokens: int, spec: BudgetSpec, *, reserve: bool) -> Admission:
    """When ``tokens`` calls may go, given the stored ``tat`` (None: the bucket is full).

    ``wait`` 0: they may go now, and ``tat`` has moved on by them. ``wait`` > 0 and ``reserve``: they are
    booked for ``now + wait`` (the caller comes back then and calls without asking again; every later asker
    queues behind it, so waiters neither collide nor starve). ``wait`` > 0 without ``reserve``: nothing is
    booked, ``tat`` is unchanged, and the same request would go in ``wait`` seconds if nobody else asks.
    A request larger than the burst counts as a burst-sized one, so that it can go at all."""
    if tokens < 1:
        return Admission(tat if tat is not None else now, 0.0)
    emission = 1.0 / spec.rate_per_second
    tolerance = (spec.burst - min(tokens, spec.burst)) * emission
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
        self.waits = 0  # requests told to wait

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        a = admit(self.tat, self._clock.now(), tokens, self.spec, reserve=reserve)  # type: ignore[attr-defined]
        self.tat = a.tat
        self.waits += a.wait > 0
        return a.wait


class UnlimitedBudget:
    """No budget: every call may go now (a deployment that turned the budget off; tests that do not care)."""

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        return 0.0
