"""The pure helpers of bench/_common.py and bench/bench_startup.py: statistics, tables, the Describe* replay and
the -X importtime parser. Fast: no simulation, no child process."""

from __future__ import annotations

import pytest

import _common as c
import bench_startup

PERCENTILES = [
    # (values, q, expected): nearest rank, always an observed value
    ([3.0], 90, 3.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 90, 9.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 50, 5.0),
    ([10.0, 1.0], 100, 10.0),
    ([], 90, None),
]


@pytest.mark.parametrize("values, q, expected", PERCENTILES, ids=["one", "p90-of-10", "p50-of-10", "max", "empty"])
def test_percentile_is_nearest_rank(values, q, expected):
    assert c.percentile(values, q) == expected


RATES = [(0, 100, "0"), (1, 3, "33.3 %"), (5, 0, "-"), (1, 100000, "0.001 %")]


@pytest.mark.parametrize("failed, requests, text", RATES, ids=["none", "third", "no-requests", "tiny"])
def test_failed_rate_prints_exact_zero_as_zero(failed, requests, text):
    assert c.fmt_rate(failed, requests) == text


def test_markdown_table_aligns_first_column_left_and_numbers_right():
    # Given two columns / When rendered / Then the separator row says left then right
    assert c.markdown_table(["a", "b"], [["x", 1]]).splitlines() == ["| a | b |", "|---|---:|", "| x | 1 |"]


def _schedule(*calls: tuple[float, str, str, int], seconds: float = 100.0) -> c.Schedule:
    return c.Schedule("s", tuple(c.Call(*x) for x in calls), seconds)


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
]


@pytest.mark.parametrize("schedule, n, window, background, throttled, throttled_rollouts, failed", REPLAYS,
                         ids=["40-polls", "41-polls", "20-preflights", "21-preflights", "41-controller",
                              "preflight-starved"])
def test_replay_spends_the_bucket_as_the_simulation_does(schedule, n, window, background, throttled,
                                                         throttled_rollouts, failed):
    # Given N copies of a schedule on one 40-token bucket / When replayed / Then the throttles are as counted
    r = c.replay([schedule], n, window=window, background=background, seed=0)
    assert (r["throttled_calls"], r["throttled_rollouts"], r["failed_rollouts"]) == (throttled, throttled_rollouts, failed)


def test_a_throttled_poll_delays_the_rest_of_its_rollout_by_albgates_back_off():
    # Given 41 rollouts of two polls 5 s apart, all at once / When the 41st first poll is throttled
    sched = _schedule((0.0, "albgate", "DescribeTargetHealth", 1), (5.0, "albgate", "DescribeTargetHealth", 1),
                      seconds=50.0)
    r = c.replay([sched], 41, window=0.0, background=0.0, seed=0)
    # Then it waits the doubled interval (10 s plus up to 20 % jitter) and the rollout is that much slower
    assert 10 / 50 <= r["max_slowdown"] <= 13 / 50


def test_concurrency_limits_find_the_bucket_size():
    # Given rollouts that each make one 1-token call at the start, all started together
    lim = c.concurrency_limits([ONE_POLL], window=0.0, background=0.0, trials=2, n_max=60)
    # Then 40 run without a throttle (the bucket's capacity), and the first over 10 % slower is the 41st
    assert lim["largest_n_without_throttling"] == 40
    assert lim["largest_n_within_slowdown"] == 40 and lim["first_too_slow"]["n"] == 41
    # and a one-poll rollout is never given up: no failure up to the end of the grid
    assert lim["largest_n_without_failure"] == 60 and lim["first_failed"] is None


def test_concurrency_limits_stop_at_the_first_refused_preflight():
    # Given rollouts whose only call is Preflight's, while other callers drain 9.9 of the 10 tokens a second
    lim = c.concurrency_limits([PREFLIGHT], window=0.0, background=9.9, trials=1, n_max=100)
    # Then 20 start together untouched; beyond some N a Preflight exhausts its 5 retries (2+4+8+16+32 s)
    assert lim["largest_n_without_throttling"] == 20
    assert lim["first_failed"] is not None and lim["largest_n_without_failure"] == lim["first_failed"]["n"] - 1


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   encodings.aliases
import time:       900 |       1000 | encodings
import time:      1000 |       1000 | site
import time:       300 |        300 |     lambdas
import time:       200 |        500 |   lambdas.handlers
import time:      4000 |       4000 |     kubernetes.client
import time:      1000 |       5000 |   kubernetes
import time:       500 |       6000 | lambdas.handlers.x
"""


def test_importtime_counts_only_what_the_handler_import_pulled_in():
    # Given -X importtime output with the interpreter's start-up imports first
    r = bench_startup.parse_importtime(IMPORTTIME)
    # Then the start-up lines are left out and the handler's subtree is summed from its self times
    assert r["import_ms"] == pytest.approx(6.0)
    assert r["process_imports_ms"] == pytest.approx(8.0)
    assert r["kubernetes"] is True and r["heavy"] == ["kubernetes"]


def test_importtime_without_a_lambdas_import_is_an_error():
    with pytest.raises(RuntimeError, match="no `lambdas` import"):
        bench_startup.parse_importtime(IMPORTTIME.split("import time:       300")[0])
