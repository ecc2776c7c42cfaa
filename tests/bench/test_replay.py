"""The Describe* token-bucket replay (bench/replay.py): the bucket, each caller's back-off, what a throttled or
booked call delays, the concurrency grid, Preflight's Retry as Step Functions applies it, and albgate's share of
the bucket. Fast: no simulation, no child process."""

from __future__ import annotations

import random

import pytest

import replay as rp
from lambdas.domain.budget import BudgetSpec


def _schedule(*calls: tuple, seconds: float = 100.0, deadline: float = 900.0) -> rp.Schedule:
    return rp.Schedule("s", tuple(rp.Call(*x) for x in calls), seconds, deadline)


LEGACY = rp.LEGACY_PREFLIGHT_RETRY  # 2, 4, 8, 16, 32 s, no jitter


ONE_POLL = _schedule((0.0, "albgate", "DescribeTargetHealth", 1))
PREFLIGHT = _schedule((0.0, "albgate", "DescribeTargetGroups", 2))
CONTROLLER = _schedule((0.0, "controller", "DescribeTargetHealth", 1))

REPLAYS = [
    # (schedule, N, window, background, throttled calls, throttled rollouts, failed rollouts)
    (ONE_POLL, 40, 0.0, 0.0, 0, 0, 0),  # the bucket holds 40 tokens: 40 calls at once pass
    (ONE_POLL, 41, 0.0, 0.0, 1, 1, 0),  # the 41st is throttled once, then passes after albgate's back-off
    (PREFLIGHT, 20, 0.0, 0.0, 0, 0, 0),  # DescribeTargetGroups + Attributes: 2 tokens each
    (PREFLIGHT, 21, 0.0, 0.0, 1, 1, 0),
    # the controller retries after 5, 10, 20, 40, 80 ms: throttled 5 times before the 0.1 s token is there
    (CONTROLLER, 41, 0.0, 0.0, 5, 1, 0),
    # other callers draining 100/s: Preflight's 5 Step Functions retries all fail, the rollout is refused
    (_schedule((1.0, "albgate", "DescribeTargetGroups", 2)), 1, 0.0, 100.0, 6, 1, 1),
    (_schedule((1.0, "albgate", "DescribeTargetGroups", 2, "Preflight")), 1, 0.0, 100.0, 6, 1, 1),
]


@pytest.mark.parametrize("schedule, n, window, background, throttled, throttled_rollouts, failed", REPLAYS,
                         ids=["40-polls", "41-polls", "20-preflights", "21-preflights", "41-controller",
                              "preflight-starved", "preflight-starved-by-source"])
def test_replay_spends_the_bucket_as_the_simulation_does(schedule, n, window, background, throttled,
                                                         throttled_rollouts, failed):
    # Given N copies of a schedule on one 40-token bucket / When replayed / Then the throttles are as counted
    r = rp.replay([schedule], n, window=window, background=background, seed=0, preflight_retry=LEGACY)
    assert (r["throttled_calls"], r["throttled_rollouts"], r["failed_rollouts"]) == (throttled, throttled_rollouts, failed)


def test_a_throttled_poll_delays_the_rest_of_its_rollout_by_albgates_back_off():
    # Given 41 rollouts of two polls 5 s apart, all at once / When the 41st first poll is throttled
    sched = _schedule((0.0, "albgate", "DescribeTargetHealth", 1), (5.0, "albgate", "DescribeTargetHealth", 1),
                      seconds=50.0)
    r = rp.replay([sched], 41, window=0.0, background=0.0, seed=0, preflight_retry=LEGACY)
    # Then it waits the doubled interval (10 s plus up to 20 % jitter) and the rollout is that much slower
    assert 10 / 50 <= r["max_slowdown"] <= 13 / 50


def test_concurrency_limits_find_the_bucket_size():
    # Given rollouts that each make one 1-token call at the start, all started together
    lim = rp.concurrency_limits([ONE_POLL], window=0.0, background=0.0, trials=2, n_max=60, preflight_retry=LEGACY)
    # Then 40 run without a throttle (the bucket's capacity), and the first over 10 % slower is the 41st
    assert lim["largest_n_without_throttling"] == 40
    assert lim["largest_n_within_slowdown"] == 40 and lim["first_too_slow"]["n"] == 41
    # and a one-poll rollout is never given up: no failure up to the end of the grid
    assert lim["largest_n_without_failure"] == 60 and lim["first_failed"] is None


def test_concurrency_limits_stop_at_the_first_refused_preflight():
    # Given rollouts whose only call is Preflight's, while other callers drain 9.9 of the 10 tokens a second
    lim = rp.concurrency_limits([PREFLIGHT], window=0.0, background=9.9, trials=1, n_max=100, preflight_retry=LEGACY)
    # Then 20 start together untouched; beyond some N a Preflight exhausts its 5 retries (2+4+8+16+32 s)
    assert lim["largest_n_without_throttling"] == 20
    assert lim["first_failed"] is not None and lim["first_failed"]["failed_by"].keys() == {"preflight_refused"}
    # and although past N=21 the grid steps by 5, the N skipped before the first failure are looked at too:
    # the largest N without failure is exact
    assert lim["first_failed"]["n"] == lim["largest_n_without_failure"] + 1
    assert [row["n"] for row in lim["grid"]][-2:] == [lim["largest_n_without_failure"], lim["first_failed"]["n"]]


# --- Preflight's Retry for ThrottledError, as Step Functions applies it ---------------------------------------
def test_retry_delays_double_up_to_the_cap_and_stop_after_the_attempts():
    # Given IntervalSeconds 2, BackoffRate 2, MaxDelaySeconds 60, MaxAttempts 7, no jitter
    p = rp.RetryPolicy(2.0, 2.0, 7, 60.0)
    rng = random.Random(0)
    # Then the waits are 2, 4, ... 32, then capped at 60, and after the 7th retry the task fails
    assert [p.delay(k, rng) for k in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, None]
    assert p.worst_total() == 2 + 4 + 8 + 16 + 32 + 60 + 60


def test_full_jitter_draws_each_wait_between_zero_and_the_capped_backoff():
    # Given JitterStrategy FULL / When many executions retry their 6th time (backoff 64 s, capped at 60)
    p = rp.RetryPolicy(2.0, 2.0, 20, 60.0, "FULL")
    rng = random.Random(1)
    waits = [p.delay(6, rng) for _ in range(200)]
    # Then every wait is in [0, 60] and they are spread out (not in lock-step at 60)
    assert all(0.0 <= w <= 60.0 for w in waits)
    assert len({round(w, 6) for w in waits}) == 200 and min(waits) < 15 and max(waits) > 45


DEFINITION = {"States": {
    "Preflight": {"Type": "Task", "Retry": [
        {"ErrorEquals": ["ThrottledError"], "IntervalSeconds": 3, "BackoffRate": 2, "MaxAttempts": 9,
         "MaxDelaySeconds": 50, "JitterStrategy": "FULL"},
        {"ErrorEquals": ["ThrottledError", "ConflictError"], "IntervalSeconds": 2, "MaxAttempts": 5}]},
    "Finish": {"Type": "Task", "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1}]},
    "Plain": {"Type": "Task"},
}}


def test_retry_policy_is_the_first_clause_that_names_the_error():
    # Given two clauses naming ThrottledError / Then the first one applies, as Step Functions picks it
    assert rp.retry_policy(DEFINITION, "Preflight", "ThrottledError") == rp.RetryPolicy(3.0, 2.0, 9, 50.0, "FULL")
    assert rp.retry_policy(DEFINITION, "Preflight", "ConflictError") == rp.RetryPolicy(2.0, 2.0, 5, None, "NONE")
    # States.ALL matches anything (with the ASL defaults); no clause means no retry
    assert rp.retry_policy(DEFINITION, "Finish", "ThrottledError") == rp.RetryPolicy(1.0, 2.0, 3, None, "NONE")
    assert rp.retry_policy(DEFINITION, "Plain", "ThrottledError") is None


def test_a_longer_jittered_retry_lets_every_preflight_through_where_the_old_one_refused_some():
    # Given 40 Preflights at once while other callers leave 0.5 token/s (20 go through on the full bucket)
    kw = dict(window=0.0, background=9.5, seed=0)
    old = rp.replay([PREFLIGHT], 40, preflight_retry=LEGACY, **kw)
    new = rp.replay([PREFLIGHT], 40, preflight_retry=rp.RetryPolicy(2.0, 2.0, 20, 60.0, "FULL"), **kw)
    # Then 62 s of retries in lock-step refuse some, and up to ~16 minutes of jittered ones, spread out, none
    assert old["failed_by"].get("preflight_refused", 0) > 0
    assert new["failed_rollouts"] == 0 and new["preflight_retries_max"] > 0


# --- gate and drain polls: what a throttled poll delays -----------------------------------------------------
def _gate(*times: float, source: str = "CheckTargetHealth") -> tuple:
    return tuple((t, "albgate", "DescribeTargetHealth", 1, source, 0.0) for t in times)


def _behind_40_polls(gate: rp.Schedule) -> list[rp.Schedule]:
    """40 rollouts that each make one poll at 0 s (the whole bucket), then ``gate`` (copy i replays schedule i)."""
    return [ONE_POLL] * 40 + [gate]


def test_a_throttled_not_yet_poll_delays_nothing_when_its_back_off_ends_before_the_deciding_poll():
    # Given a gate that polls every 5 s and sees its targets healthy at 25 s, started with 40 other polls
    polls = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    with_source = rp.replay(_behind_40_polls(_schedule(*_gate(*polls), seconds=50.0)), 41, window=0.0,
                           background=0.0, seed=0, preflight_retry=LEGACY)
    # When its first poll (a "not yet") is throttled and backs off 10-12 s
    assert with_source["throttled_calls"] == 1
    # Then it is not late: the polls due meanwhile are folded into the retry, and the 25 s poll is on time
    assert with_source["max_slowdown"] == 0.0
    # whereas a record without the calling function keeps the old rule (every back-off delays the rollout)
    plain = _schedule(*[(t, "albgate", "DescribeTargetHealth", 1) for t in polls], seconds=50.0)
    r = rp.replay(_behind_40_polls(plain), 41, window=0.0, background=0.0, seed=0, preflight_retry=LEGACY)
    assert r["max_slowdown"] >= 10 / 50


def test_a_back_off_past_the_deciding_poll_makes_the_rollout_late_by_the_difference():
    # Given a gate that polls at 0 s ("not yet") and 5 s (healthy), whose 0 s poll is throttled behind 40 others
    r = rp.replay(_behind_40_polls(_schedule(*_gate(0.0, 5.0), seconds=50.0)), 41, window=0.0, background=0.0,
                 seed=0, preflight_retry=LEGACY)
    assert r["throttled_calls"] == 1
    # Then its retry after 10-12 s is the deciding poll, 5-7 s after it was due
    assert 5 / 50 <= r["max_slowdown"] <= 7.01 / 50


def test_a_gate_throttled_past_the_step_deadline_fails_but_a_throttled_drain_only_waits():
    # Given other callers asking 100 calls/s of the same 10/s bucket (a call gets a token only now and then) and a
    # 60 s step deadline
    kw = dict(window=0.0, background=100.0, seed=0, preflight_retry=LEGACY)
    gate = rp.replay([_schedule(*_gate(1.0, 6.0), deadline=60.0)], 1, **kw)
    drain = rp.replay([_schedule(*_gate(1.0, 6.0, source="VerifyDrain"), deadline=60.0)], 1, **kw)
    # Then the gate, throttled past its deadline, gives the rollout up; the drain (no answer = WAITING) only waits:
    # throttled again and again, it goes on until a poll gets a token, late but not given up
    assert gate["failed_by"] == {"gate_past_step_deadline": 1}
    assert drain["failed_rollouts"] == 0 and drain["throttled_calls"] > 0 and drain["max_slowdown"] > 0


def test_the_concurrency_grid_is_fine_until_both_limits_are_found_then_coarse():
    assert [rp._next_n(n, True) for n in (1, 41, 99)] == [2, 42, 100]
    assert [rp._next_n(n, False) for n in (41, 100, 195, 200, 225)] == [45, 105, 200, 225, 250]


# --- albgate's share of the bucket (lambdas/domain/budget.py) in the replay -------------------------------
SHARE = BudgetSpec(rate_per_second=5.0, burst=30)


def test_with_albgates_share_41_polls_at_once_wait_their_turn_instead_of_being_throttled():
    # Given 41 one-poll rollouts at once: without the share the 41st is throttled (REPLAYS above)
    gate = _schedule(*_gate(0.0), seconds=50.0)
    r = rp.replay([gate], 41, window=0.0, background=0.0, seed=0, preflight_retry=LEGACY, budget=SHARE)
    # Then with it, the 30 of the burst go, the other 11 are booked one every 0.2 s (whole seconds of Wait)
    assert r["throttled_calls"] == 0
    assert r["budget_waits"] == 11
    # and the last of them goes 3 s late (11 x 0.2 s = 2.2 s, rounded up to whole seconds)
    assert r["max_slowdown"] == pytest.approx(3 / 50)


def test_a_preflight_told_to_wait_books_its_turn_like_a_poll():
    # Given 16 Preflights at once (2 calls each) and a share with bursts of 30
    r = rp.replay([PREFLIGHT], 16, window=0.0, background=0.0, seed=0, preflight_retry=LEGACY, budget=SHARE)
    # Then 15 go, the 16th is booked 0.4 s later (1 s of Wait): nothing throttled, no Retry, nobody refused
    assert (r["throttled_calls"], r["budget_waits"], r["failed_rollouts"]) == (0, 1, 0)
    assert r["preflight_retries_max"] == 0


def test_a_gate_told_to_wait_after_its_step_deadline_fails_as_the_gate_does():
    # Given two rollouts whose gate first polls 40 s into a step with a 30 s deadline, on a share of one call
    gate = _schedule(*_gate(40.0), deadline=30.0)
    r = rp.replay([gate], 2, window=0.0, background=0.0, seed=0, preflight_retry=LEGACY, budget=BudgetSpec(1.0, 1))
    # Then the first goes (the gate then judges what it sees); the second is told to wait past its deadline
    # and gives up, as check_target_health does; nothing reaches the account's bucket throttled
    assert r["failed_by"] == {"gate_past_step_deadline": 1} and r["throttled_calls"] == 0


def test_the_replay_reads_albgates_share_from_the_synthesized_template():
    template = {"Resources": {
        "F": {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": {
            "ALBGATE_DESCRIBE_BUDGET_RATE": "5.0", "ALBGATE_DESCRIBE_BUDGET_BURST": "30"}}}},
        "G": {"Type": "AWS::Lambda::Function", "Properties": {}}}}
    assert rp.template_budget(template) == SHARE
    assert rp.template_budget({"Resources": {}}) is None
