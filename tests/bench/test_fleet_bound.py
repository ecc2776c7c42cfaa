"""bench/bench_fleet.py's physical bound on a fleet's makespan (pure; no simulation): the latest end of a rollout
timed alone, each from its own start, or the time the account's bucket needs for every rollout's minimum demand;
the Preflight turns albgate's share books for a fleet's start times; and how far the bucket is over-asked in its
busiest window."""

from __future__ import annotations

import pytest

from bench_fleet import busiest_window, forced_controller_calls, forced_mutating_calls, physical_bound, start_turns
from lambdas.domain.budget import BudgetSpec

BUCKET = dict(capacity=40.0, refill=10.0)


def test_a_slow_copy_that_starts_late_bounds_the_makespan_not_the_first_copys_time():
    # Given three rollouts starting at 0, 2 and 5 s, the one at 2 s taking 120 s alone and the others 90 s
    starts = [100.0, 102.0, 105.0]
    alone = {0: 90.0, 1: 120.0, 2: 90.0}
    # Then none can end before the slow one ends alone: 2 + 120 s after the first start
    assert physical_bound(starts, alone, calls_per_rollout=1.0, **BUCKET) == pytest.approx(122.0)


def test_only_the_timed_copies_count_so_a_sample_bounds_from_below():
    starts = [100.0, 102.0, 105.0]
    every = physical_bound(starts, {0: 90.0, 1: 120.0, 2: 90.0}, calls_per_rollout=1.0, **BUCKET)
    sample = physical_bound(starts, {0: 90.0, 2: 90.0}, calls_per_rollout=1.0, **BUCKET)
    assert sample == pytest.approx(95.0) and sample <= every


def test_the_bucket_bounds_a_fleet_whose_controllers_need_more_calls_than_it_refills():
    # Given 200 rollouts whose controllers need 16 calls each: 3,200 calls, 40 at hand, then 10 a second
    starts = [0.0] * 200
    assert physical_bound(starts, {0: 90.0}, calls_per_rollout=16.0, **BUCKET) == pytest.approx((3200 - 40) / 10)


def test_the_mutating_bucket_bounds_a_fleet_when_its_forced_calls_take_longer():
    # Given 1,000 rollouts of 3 steps: 4,000 Describe* calls at 10 a second (396 s), 4,000 RegisterTargets/
    # DeregisterTargets calls at 4 a second (995 s)
    starts = [0.0] * 1000
    assert forced_mutating_calls(3) == 4 and [forced_mutating_calls(k) for k in (1, 10)] == [2, 11]
    assert physical_bound(starts, {0: 90.0}, calls_per_rollout=4.0, **BUCKET,
                          mutating=(4.0, 20.0, 4.0)) == pytest.approx((4000 - 20) / 4)
    # And where the Describe* term is the longer one, it stays the bound
    assert physical_bound(starts, {0: 90.0}, calls_per_rollout=16.0, **BUCKET,
                          mutating=(4.0, 20.0, 4.0)) == pytest.approx((16000 - 40) / 10)
    # And without the mutating bucket's term, the bound is as before
    assert physical_bound(starts, {0: 90.0}, calls_per_rollout=4.0, **BUCKET) == pytest.approx((4000 - 40) / 10)


def test_preflights_starting_together_queue_in_the_share_by_their_calls():
    # Given a share of 1 call/s with bursts of 3, and three Preflights asking at the same instant
    spec = BudgetSpec(rate_per_second=1.0, burst=3)
    # two calls each: the first goes, the next waits for 1 s of refill, the last for 3 s
    assert start_turns([0.0, 0.0, 0.0], 2, spec) == pytest.approx([0.0, 1.0, 3.0])
    # one call each: the burst serves all three at once
    assert start_turns([0.0, 0.0, 0.0], 1, spec) == [0.0, 0.0, 0.0]


def test_preflights_spread_over_time_are_taken_in_start_order_and_refill_in_between():
    spec = BudgetSpec(rate_per_second=1.0, burst=3)
    # the same three asks, given out of order and 1 s apart: the second finds the second of refill it needs, the
    # third one second short
    assert start_turns([2.0, 0.0, 1.0], 2, spec) == pytest.approx([0.0, 0.0, 1.0])
    # 2 s apart, the refill keeps up
    assert start_turns([4.0, 0.0, 2.0], 2, spec) == [0.0, 0.0, 0.0]


def test_the_busiest_window_is_the_burst_the_bucket_cannot_hold():
    # Given 50 calls asked at one instant, then nothing: 10 more than the bucket holds
    assert busiest_window([5.0] * 50, [], 0, **BUCKET) == pytest.approx(10.0)
    # spread over 2 s, the refill serves 20 of them meanwhile: 10 to spare
    assert busiest_window([5.0] * 25 + [7.0] * 25, [], 0, **BUCKET) == pytest.approx(-10.0)


def test_a_window_counts_every_call_in_it_however_long_it_is():
    # Given 12 calls a second for 30 s (2 over the refill each second): the whole run is the busiest window, 60 over
    # the refill and 20 over the bucket's 40
    asks = [k / 12 for k in range(360)]
    assert busiest_window(asks, [], 0, **BUCKET) == pytest.approx(360 - 40 - 10 * (359 / 12))


def test_calls_at_each_start_add_to_the_window_they_fall_in():
    # Given 30 calls at 0 s and three rollouts starting within it
    asks = [0.0] * 30
    assert busiest_window(asks, [0.0, 0.0, 0.0], 0, **BUCKET) == pytest.approx(-10.0)
    # 2 calls each at their start make 36 of the 40, 4 each 42
    assert busiest_window(asks, [0.0, 0.0, 0.0], 2, **BUCKET) == pytest.approx(-4.0)
    assert busiest_window(asks, [0.0, 0.0, 0.0], 4, **BUCKET) == pytest.approx(2.0)
    # a rollout starting after the refill has caught up changes nothing
    assert busiest_window(asks, [60.0], 4, **BUCKET) == pytest.approx(-10.0)


def test_nothing_asked_leaves_the_whole_bucket():
    assert busiest_window([], [], 2, **BUCKET) == pytest.approx(-40.0)


def test_a_gated_rollout_forces_one_controller_call_a_step_and_one_more():
    # the cache filled once, then one look at each step's registered targets to write them healthy
    assert [forced_controller_calls(k) for k in (1, 3, 10)] == [2, 4, 11]
