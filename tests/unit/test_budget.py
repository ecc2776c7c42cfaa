"""albgate's share of the Describe* bucket (lambdas/domain/budget.py): the GCRA decision, its spec, its keepers.

Table-driven cases of ``admit`` with numbers that are exact in binary floating point (4 calls/s: one call every
0.25 s), so every wait and ``tat`` is compared with ``==``; then a hypothesis property of the module's
invariant: over any window of w seconds the calls let go (now, or at their booked time) number at most
``burst + rate_per_second * w``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lambdas.domain.budget import (
    DEFAULT_BURST,
    DEFAULT_RATE_PER_SECOND,
    Admission,
    BudgetSpec,
    LocalBudget,
    Cut,
    UnlimitedBudget,
    after_throttle,
    current_rate,
    admit,
    is_cut,
    is_late,
    CONTROLLER_LATE_SECONDS,
)

NOW = 1_767_322_800.0  # 2026-01-02T03:00:00Z, an epoch time like the ones Lambda's clock gives
SPEC = BudgetSpec(rate_per_second=4.0, burst=10)  # one call every 0.25 s; a full burst books 2.5 s ahead
FULL = NOW + 2.5  # tat of a bucket whose burst was just spent at NOW


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


# ---------------------------------------------------------------------------------------------------------
# admit
# ---------------------------------------------------------------------------------------------------------
ADMIT_CASES = [
    # id, stored tat, tokens, reserve, expected Admission (tat to store, wait)
    ("empty-bucket-one-call-goes-now", None, 1, False, Admission(NOW + 0.25, 0.0)),
    ("empty-bucket-a-whole-burst-goes-now", None, 10, False, Admission(NOW + 2.5, 0.0)),
    ("empty-bucket-reserve-changes-nothing-when-no-wait", None, 10, True, Admission(NOW + 2.5, 0.0)),
    ("tat-in-the-past-counts-from-now", NOW - 60, 1, False, Admission(NOW + 0.25, 0.0)),
    ("tat-in-the-past-whole-burst", NOW - 60, 10, True, Admission(NOW + 2.5, 0.0)),
    ("room-for-exactly-one-more", NOW + 2.25, 1, False, Admission(NOW + 2.5, 0.0)),
    ("room-for-exactly-four-more", NOW + 1.5, 4, False, Admission(NOW + 2.5, 0.0)),
    # Burst exhausted: the next call's slot is one emission (0.25 s) away.
    ("burst-exhausted-not-reserved-books-nothing", FULL, 1, False, Admission(FULL, 0.25)),
    ("burst-exhausted-reserved-books-the-slot", FULL, 1, True, Admission(FULL + 0.25, 0.25)),
    # Four calls on a spent bucket: (tat - now) - (burst - 4) emissions = 2.5 - 1.5 = 1 s.
    ("burst-exhausted-four-calls-wait-one-second", FULL, 4, True, Admission(FULL + 1.0, 1.0)),
    # Booked 5 s ahead: three calls wait 5 - 7 * 0.25 = 3.25 s, and the next asker queues behind them.
    ("booked-ahead-waits-are-exact", NOW + 5.0, 3, True, Admission(NOW + 5.75, 3.25)),
    ("booked-ahead-not-reserved-same-wait", NOW + 5.0, 3, False, Admission(NOW + 5.0, 3.25)),
    # More than the burst counts as a burst for admission (so it can go at all), but is charged in full.
    ("tokens-over-burst-empty-bucket-goes-now", None, 15, False, Admission(NOW + 3.75, 0.0)),
    ("tokens-over-burst-waits-for-a-full-bucket", NOW + 1.0, 15, False, Admission(NOW + 1.0, 1.0)),
    ("tokens-over-burst-reserved-charged-in-full", NOW + 1.0, 15, True, Admission(NOW + 4.75, 1.0)),
    # Fewer than one call costs nothing and always goes, even on a spent bucket.
    ("zero-tokens-empty-bucket", None, 0, True, Admission(NOW, 0.0)),
    ("zero-tokens-spent-bucket", FULL + 10, 0, False, Admission(FULL + 10, 0.0)),
    ("negative-tokens-spent-bucket", FULL + 10, -3, True, Admission(FULL + 10, 0.0)),
]


@pytest.mark.parametrize("tat,tokens,reserve,expected", [c[1:] for c in ADMIT_CASES], ids=[c[0] for c in ADMIT_CASES])
def test_admit(tat, tokens, reserve, expected):
    # Given a bucket of 4 calls/s with bursts of 10 whose schedule stands at ``tat``
    # When ``tokens`` calls ask at NOW
    got = admit(tat, NOW, tokens, SPEC, reserve=reserve)
    # Then they go now or wait exactly as GCRA says, and the stored tat moves only when something was let go
    assert got == expected


def test_a_refused_request_that_books_nothing_would_go_after_its_wait():
    # Given a spent bucket that refuses three calls without booking them
    first = admit(NOW + 5.0, NOW, 3, SPEC, reserve=False)
    assert first.wait > 0 and first.tat == NOW + 5.0
    # When the same request comes back after the wait it was told, nobody else having asked
    again = admit(first.tat, NOW + first.wait, 3, SPEC, reserve=False)
    # Then it goes, and just before then it would not have
    assert again.wait == 0.0
    assert admit(first.tat, NOW + first.wait - 0.01, 3, SPEC, reserve=False).wait > 0


def test_reserved_waiters_queue_behind_each_other():
    # Given a spent bucket / When three executions each book one call at the same instant
    tat, waits = FULL, []
    for _ in range(3):
        a = admit(tat, NOW, 1, SPEC, reserve=True)
        tat, waits = a.tat, waits + [a.wait]
    # Then each gets its own slot, one emission after the other: none collides, none starves
    assert waits == [0.25, 0.5, 0.75]


# ---------------------------------------------------------------------------------------------------------
# BudgetSpec
# ---------------------------------------------------------------------------------------------------------
# The account's ELB Describe* bucket (docs/facts.md, ELB API throttling): refilled at 10/s, 40 tokens.
ACCOUNT_RATE_PER_SECOND, ACCOUNT_BURST = 10.0, 40


def test_the_default_share_leaves_part_of_the_account_bucket_to_the_controllers():
    # Given the default spec / Then it is the module's defaults, strictly inside the account's bucket
    spec = BudgetSpec()
    assert (spec.rate_per_second, spec.burst) == (DEFAULT_RATE_PER_SECOND, DEFAULT_BURST)
    assert 0 < spec.rate_per_second < ACCOUNT_RATE_PER_SECOND and 1 <= spec.burst < ACCOUNT_BURST


SPEC_ERRORS = [
    # id, rate, burst, message naming the bad field
    ("rate-zero", 0.0, 10, "rate_per_second must be > 0"),
    ("rate-negative", -1.0, 10, "rate_per_second must be > 0"),
    ("rate-nan", math.nan, 10, "rate_per_second must be > 0"),
    ("burst-zero", 4.0, 0, "burst must be >= 1"),
    ("burst-negative", 4.0, -5, "burst must be >= 1"),
]


@pytest.mark.parametrize("rate,burst,message", [c[1:] for c in SPEC_ERRORS], ids=[c[0] for c in SPEC_ERRORS])
def test_a_spec_that_could_never_admit_anything_is_refused(rate, burst, message):
    with pytest.raises(ValueError, match=message):
        BudgetSpec(rate_per_second=rate, burst=burst)


def test_the_smallest_valid_spec_is_accepted():
    spec = BudgetSpec(rate_per_second=0.001, burst=1)
    assert admit(None, NOW, 1, spec, reserve=False).wait == 0.0


# ---------------------------------------------------------------------------------------------------------
# LocalBudget and UnlimitedBudget
# ---------------------------------------------------------------------------------------------------------
LOCAL_CASES = [
    # id, requests (seconds after the previous one, tokens, reserve), expected waits
    ("a-burst-goes-then-the-next-waits-one-emission", [(0, 10, False), (0, 1, False)], [0.0, 0.25]),
    ("not-reserved-refusal-books-nothing", [(0, 10, False), (0, 1, False), (0, 1, False)], [0.0, 0.25, 0.25]),
    ("reserved-refusals-queue", [(0, 10, False), (0, 1, True), (0, 1, True)], [0.0, 0.25, 0.5]),
    ("refill-at-the-rate", [(0, 10, False), (1.0, 4, False), (0, 1, False)], [0.0, 0.0, 0.25]),
    ("a-full-refill-after-a-quiet-spell", [(0, 10, False), (60, 10, False)], [0.0, 0.0]),
    ("steady-traffic-at-the-rate-never-waits", [(0.25, 1, True)] * 20, [0.0] * 20),
]


@pytest.mark.parametrize("requests,waits", [c[1:] for c in LOCAL_CASES], ids=[c[0] for c in LOCAL_CASES])
def test_local_budget(requests, waits):
    # Given a LocalBudget on a clock that the test moves
    clock = FakeClock()
    budget = LocalBudget(clock, SPEC)
    got = []
    # When the requests arrive in turn
    for dt, tokens, reserve in requests:
        clock.t += dt
        got.append(budget.acquire(tokens, reserve=reserve))
    # Then each is told the wait admit computes, and ``waits`` counts those told to wait
    assert got == waits
    assert budget.waits == sum(1 for w in waits if w > 0)


def test_local_budget_is_shared_by_everyone_holding_it():
    # Given one LocalBudget that two executions hold (as every Lambda holds the same DynamoDB item)
    clock = FakeClock()
    shared = LocalBudget(clock, SPEC)
    first, second = shared, shared
    # When the first spends the burst / Then the second waits
    assert first.acquire(10, reserve=True) == 0.0
    assert second.acquire(2, reserve=True) == 0.5
    assert shared.tat == FULL + 0.5 and shared.waits == 1


def test_local_budget_defaults_to_the_default_spec():
    assert LocalBudget(FakeClock()).spec == BudgetSpec()


@pytest.mark.parametrize("tokens,reserve", [(1, True), (1000, False), (0, True)], ids=["one", "huge", "none"])
def test_unlimited_budget_always_says_now(tokens, reserve):
    assert UnlimitedBudget().acquire(tokens, reserve=reserve) == 0.0


# ---------------------------------------------------------------------------------------------------------
# The invariant (hypothesis): over any window of w seconds, at most burst + rate * w calls go
# ---------------------------------------------------------------------------------------------------------
# Floating point: epoch times carry about 2.4e-7 s of rounding, and admit lets a wait under 1e-9 s go now.
SLACK_CALLS = 1e-3


def calls_let_go(spec: BudgetSpec, requests: list[tuple[float, int, bool]]) -> list[tuple[float, int]]:
    """(time, calls) of every request let go: now, or at its booked time; refused unbooked ones go nowhere."""
    tat, now, gone = None, NOW, []
    for dt, tokens, reserve in requests:
        now += dt
        a = admit(tat, now, tokens, spec, reserve=reserve)
        tat = a.tat
        if a.wait == 0:
            gone.append((now, max(tokens, 0)))
        elif reserve:
            gone.append((now + a.wait, tokens))
    return gone


def worst_window(spec: BudgetSpec, gone: list[tuple[float, int]], cap: float) -> tuple[float, float, int]:
    """The window [a, b] (bounded by two go times) whose calls exceed ``cap + rate * (b - a)`` the most."""
    times = sorted({t for t, _ in gone})
    worst = (0.0, 0.0, 0)
    worst_excess = -math.inf
    for i, a in enumerate(times):
        for b in times[i:]:
            calls = sum(n for t, n in gone if a <= t <= b)
            excess = calls - (cap + spec.rate_per_second * (b - a))
            if excess > worst_excess:
                worst, worst_excess = (a, b, calls), excess
    return worst


specs = st.builds(
    BudgetSpec,
    rate_per_second=st.sampled_from([0.3, 1.0, 2.5, 4.0, 7.0, 10.0]),
    burst=st.integers(min_value=1, max_value=12),
)
gaps = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=4.0, allow_nan=False))  # 0: simultaneous askers


@st.composite
def request_sequences(draw, max_tokens_over_burst: int = 0):
    spec = draw(specs)
    tokens = st.integers(min_value=-1, max_value=spec.burst + max_tokens_over_burst)
    requests = draw(st.lists(st.tuples(gaps, tokens, st.booleans()), max_size=40))
    return spec, requests


@settings(max_examples=400, deadline=None)
@given(request_sequences())
@example((BudgetSpec(4.0, 10), [(0.0, 10, True)] + [(0.0, 1, True)] * 20))  # a stampede of reserved askers
@example((BudgetSpec(4.0, 10), [(0.0, 1, False)] * 40))  # a stampede of unreserved askers
def test_no_window_lets_more_than_burst_plus_rate_times_its_length_go(case):
    # Given any spec and any sequence of (time, tokens, reserve) requests of at most a burst each
    spec, requests = case
    # When admit decides each in turn, as one shared tat would
    gone = calls_let_go(spec, requests)
    # Then no window [a, b] sees more than burst + rate * (b - a) calls go
    a, b, calls = worst_window(spec, gone, spec.burst)
    assert calls <= spec.burst + spec.rate_per_second * (b - a) + SLACK_CALLS, (a - NOW, b - NOW, calls)


@settings(max_examples=300, deadline=None)
@given(request_sequences(max_tokens_over_burst=25))
def test_requests_over_the_burst_stretch_the_bound_by_their_excess_only(case):
    # Given requests that may be larger than the burst (a Preflight of 6 target groups asks 12 of 10)
    spec, requests = case
    gone = calls_let_go(spec, requests)
    # Then a window holds at most the larger of the burst and the largest request let go, plus rate * w:
    # such a request goes in one piece on a full bucket and is charged in full, so whatever follows waits
    cap = max([spec.burst] + [n for _, n in gone])
    a, b, calls = worst_window(spec, gone, cap)
    assert calls <= cap + spec.rate_per_second * (b - a) + SLACK_CALLS, (a - NOW, b - NOW, calls)


# ---------------------------------------------------------------------------------------------------------
# The adaptive share: cut by half on a throttled call, once per cooldown, never below the floor, back in full
# after recovery_seconds
# ---------------------------------------------------------------------------------------------------------
ADAPTIVE = BudgetSpec(rate_per_second=4.0, burst=10, floor_rate_per_second=0.5, decrease=0.5, cooldown_seconds=10,
                      recovery_seconds=30)


@pytest.mark.parametrize(("cut", "after", "rate"), [
    (None, 0, 4.0),  # never cut: the whole share
    (Cut(1.0, NOW), 0, 1.0),  # just cut
    (Cut(1.0, NOW), 15, 1.0 + 3.5 * 15 / 30),  # half the recovery: half of (share - floor) climbed back
    (Cut(1.0, NOW), 30, 4.0),  # capped at the share
    (Cut(0.5, NOW), 60, 4.0),
    (Cut(1.0, NOW), -5, 1.0),  # a clock behind the cut climbs nothing
], ids=["never-cut", "just-cut", "half-way-back", "back-in-full", "from-the-floor", "clock-behind"])
def test_the_share_climbs_back_linearly_after_a_cut(cut, after, rate):
    assert current_rate(ADAPTIVE, cut, NOW + after) == pytest.approx(rate)


def test_a_throttled_call_halves_the_share_once_per_cooldown_down_to_the_floor():
    # Given the whole share, When a call is throttled, Then it halves
    first = after_throttle(ADAPTIVE, None, NOW)
    assert first == Cut(2.0, NOW)
    # When others are throttled in the same shortage (within the cooldown), Then nothing more is cut
    assert after_throttle(ADAPTIVE, first, NOW + 9.9) is None
    # When the shortage goes on past the cooldown, Then the share then in force halves again, never below the floor
    second = after_throttle(ADAPTIVE, first, NOW + 10)
    assert second == Cut(pytest.approx((2.0 + 3.5 * 10 / 30) / 2), NOW + 10)
    # When the shortage never ends and the share cannot climb back between cuts, Then it stops at the floor
    slow = BudgetSpec(rate_per_second=4.0, burst=10, recovery_seconds=1e9)
    cut = None
    for k in range(12):
        cut = after_throttle(slow, cut, NOW + 10 * k) or cut
    assert cut is not None and cut.rate == slow.floor_rate_per_second


def test_a_fixed_share_is_never_cut_and_a_floor_above_the_share_is_the_share():
    fixed = BudgetSpec(rate_per_second=4.0, burst=10, adaptive=False)
    assert after_throttle(fixed, None, NOW) is None
    assert current_rate(fixed, Cut(0.5, NOW), NOW) == 4.0
    tiny = BudgetSpec(rate_per_second=0.1, burst=1)
    assert after_throttle(tiny, None, NOW) == Cut(0.1, NOW)  # the default floor (0.5) is above the share: 0.1


@pytest.mark.parametrize(("field", "value", "message"), [
    ("floor_rate_per_second", 0, "floor_rate_per_second must be > 0"),
    ("decrease", 1.0, "decrease must be between 0 and 1"),
    ("decrease", 0, "decrease must be between 0 and 1"),
    ("recovery_seconds", 0, "recovery_seconds > 0"),
    ("cooldown_seconds", -1, "cooldown_seconds must be >= 0"),
])
def test_an_adaptive_spec_that_cannot_work_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        BudgetSpec(**{field: value})


def test_a_cut_local_budget_spaces_its_calls_at_the_cut_rate():
    # Given a budget whose burst is spent
    clock = FakeClock(NOW)
    budget = LocalBudget(clock, ADAPTIVE)
    assert budget.acquire(10, reserve=False) == 0
    # When a call is throttled, Then the next calls are spaced at the cut share (2/s: 0.5 s), not at the share's
    # 0.25 s, and the burst does not grow with the cut
    budget.throttled()
    assert budget.cuts == 1 and budget.cut == Cut(2.0, NOW)
    assert [budget.acquire(1, reserve=True) for _ in range(3)] == pytest.approx([0.25, 0.75, 1.25])
    budget.throttled()  # the same shortage: no second cut
    assert budget.cuts == 1


def calls_let_go_adaptive(spec: BudgetSpec, requests: list[tuple[float, int, bool, bool]]) -> list[tuple[float, int]]:
    """As ``calls_let_go``, with some requests throttled after they went (each may cut the share)."""
    tat, cut, now, gone = None, None, NOW, []
    for dt, tokens, reserve, throttled in requests:
        now += dt
        a = admit(tat, now, tokens, spec, reserve=reserve, rate=current_rate(spec, cut, now))
        tat = a.tat
        if a.wait == 0:
            gone.append((now, max(tokens, 0)))
        elif reserve:
            gone.append((now + a.wait, tokens))
        if throttled:
            cut = after_throttle(spec, cut, now) or cut
    return gone


adaptive_specs = st.builds(
    BudgetSpec,
    rate_per_second=st.sampled_from([1.0, 2.5, 4.5, 10.0]),
    burst=st.integers(min_value=1, max_value=12),
    floor_rate_per_second=st.sampled_from([0.1, 0.5, 1.0]),
    decrease=st.sampled_from([0.3, 0.5, 0.8]),
    cooldown_seconds=st.sampled_from([0.0, 2.0, 10.0]),
    recovery_seconds=st.sampled_from([1.0, 30.0]),
)


@settings(max_examples=300, deadline=None)
@given(adaptive_specs, st.lists(st.tuples(gaps, st.integers(min_value=1, max_value=12), st.booleans(), st.booleans()),
                                max_size=40))
def test_cut_or_not_no_window_lets_more_than_burst_plus_the_share_times_its_length_go(spec, requests):
    # Given any adaptive spec and requests, some of them throttled (each may cut the share)
    requests = [(dt, min(tokens, spec.burst), reserve, throttled) for dt, tokens, reserve, throttled in requests]
    # When admit decides each at the share then in force
    gone = calls_let_go_adaptive(spec, requests)
    # Then the bound of the fixed share still holds: a cut only spaces calls further apart
    a, b, calls = worst_window(spec, gone, spec.burst)
    assert calls <= spec.burst + spec.rate_per_second * (b - a) + SLACK_CALLS, (a - NOW, b - NOW, calls)


def test_the_share_is_short_only_while_a_cut_has_not_grown_back():
    spec = BudgetSpec(rate_per_second=4.0, burst=10)
    assert not is_cut(spec, None, 100.0)
    cut = after_throttle(spec, None, 100.0)
    assert cut is not None and is_cut(spec, cut, 100.0) and is_cut(spec, cut, 117.0)
    assert not is_cut(spec, cut, 117.2)
    # A fixed share keeps no cut, so it never says short; no budget at all knows of no shortage
    fixed = BudgetSpec(rate_per_second=4.0, burst=10, adaptive=False)
    assert after_throttle(fixed, None, 100.0) is None and not is_cut(fixed, Cut(1.0, 100.0), 100.0)
    assert UnlimitedBudget().short() is False


def test_a_late_controller_makes_the_account_short_for_a_minute():
    clock = type("Clock", (), {"t": 100.0, "now": lambda self: self.t})()
    budget = LocalBudget(clock, BudgetSpec(rate_per_second=4.0, burst=10))
    assert not budget.short() and not is_late(None, 100.0)
    budget.controller_late()
    assert budget.short() and is_late(100.0, 100.0 + CONTROLLER_LATE_SECONDS - 0.01)
    clock.t = 100.0 + CONTROLLER_LATE_SECONDS
    assert not budget.short() and not is_late(100.0, clock.t)
    UnlimitedBudget().controller_late()  # nothing to keep it in, and no error
