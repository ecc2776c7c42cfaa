"""bench/bench_fleet.py's physical bound on a fleet's makespan (pure; no simulation): the latest end of a rollout
timed alone, each from its own start, or the time the account's bucket needs for every rollout's minimum demand."""

from __future__ import annotations

import pytest

from bench_fleet import physical_bound

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
