"""The analysis of the ALB's metrics at its edges: exact boundaries, exact reasons, several target groups.

Given a baseline and a window of published periods, when the window is judged, then a z of exactly 4 and a ratio of
exactly the policy's limit are a regression, the reason spells out every number and the limits, and a window or a
baseline without requests, without response times or with a noiseless response time is judged without dividing by
zero. Given a rollout over several target groups, when a look reads their metrics, then one group throttled or
without a baseline does not stop the others, and what the state keeps is capped.
"""

from __future__ import annotations

import math

import pytest

from lambdas.domain.errors import InvalidInputError, ThrottledError
from lambdas.domain.models import AnalysisPolicy, RolloutPolicy
from lambdas.domain.ports import MetricMinute
from lambdas.domain.rollout.analysis import (
    Baseline, Judgement, Outcome, Thresholds, baseline_of, check_at_start, chi2_quantile, during, in_windows, judge,
    sized_for_long_requests, thresholds, windows,
)
from lambdas.domain.state import ANALYSIS_MAX_CHARS, TRUNCATED, AnalysisBaseline, StepRecord, TargetGroupInfo
from tests.unit.test_analysis_looks import GROUP, START, TG, ports, request, state, steady

T = Thresholds(max_error_ratio=2.0, max_latency_ratio=1.5, min_error_rate=0.001)
LIMITS = "limits: 2x the baseline's 5xx rate, 1.5x its response time (policy.analysis)"
TG_API = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-api-5f6e7d8c9b/0a1b2c3d4e5f6a7b"
TG_ADMIN = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-admin-1c2d3e4f5a/9f8e7d6c5b4a3928"


def period(requests: float, errors: float, response_time: float | None, start: float = 600.0) -> MetricMinute:
    return MetricMinute(start, requests, errors, response_time, response_time)


def base(latency: float | None = 0.25, latency_sd: float | None = 0.5) -> Baseline:
    """6.25 % of 4096 requests answered 5xx over 10 periods, Poisson-steady (binary fractions keep the sums exact)."""
    return Baseline(periods=10, requests=4096, error_rate=0.0625, dispersion=1.0, latency=latency,
                    latency_sd=latency_sd)


def group(arn: str) -> TargetGroupInfo:
    return GROUP.model_copy(update={"arn": arn})


class MetricsByGroup:
    """A ``MetricsPort`` answering each target group its own periods, throttling the groups named, calls recorded."""

    def __init__(self, minutes: dict[str, list[MetricMinute]], throttled: tuple[str, ...] = ()) -> None:
        self.minutes, self.throttled = minutes, throttled
        self.calls: list[str] = []

    def target_group_minutes(self, target_group_arn: str, load_balancer_arn: str, start: float,
                             end: float) -> list[MetricMinute]:
        self.calls.append(target_group_arn)
        if target_group_arn in self.throttled:
            raise ThrottledError("cloudwatch:GetMetricData throttled")
        return [m for m in self.minutes.get(target_group_arn, []) if start <= m.start < end]


# --- baseline_of ----------------------------------------------------------------------------------------------
def test_a_baseline_without_any_published_period_takes_the_floor_rate_and_no_latency():
    assert baseline_of([], floor=0.001) == Baseline(periods=0, requests=0, error_rate=0.001, dispersion=1.0,
                                                    latency=None, latency_sd=None)


def test_a_period_of_a_single_request_is_a_busy_period_with_its_rate_and_response_time():
    assert baseline_of([period(1, 1, 0.5)], floor=0.001) == Baseline(
        periods=1, requests=1, error_rate=1.0, dispersion=1.0, latency=0.5, latency_sd=None)


def test_three_busy_periods_are_enough_to_measure_the_dispersion():
    b = baseline_of([period(1000, e, 0.2, 60.0 * i) for i, e in enumerate([0, 30, 0])], floor=0.001)
    # rate 1 %: chi2 = (100 + 400 + 100) / 10 = 60 over 2 degrees of freedom, divided by their 5 % quantile
    assert (b.periods, b.error_rate) == (3, 0.01)
    assert b.dispersion == pytest.approx(60 / chi2_quantile(2, -1.645))
    assert b.dispersion == pytest.approx(759.552, abs=1e-3)


# --- judge: the share and the waiting -------------------------------------------------------------------------
def test_a_share_above_one_is_refused_with_the_periods_start():
    with pytest.raises(ValueError, match=r"^share 1.5 of the period at 600 is not in \(0, 1\]$"):
        judge(base(), [(period(100, 0, 0.25), 1.5)], T)


def test_a_window_whose_periods_have_no_requests_is_waiting():
    j = judge(base(), [(period(0, 0, None), 1.0), (period(0, 0, None, 660.0), 1.0)], T)
    assert j == Judgement(Outcome.WAITING, "no published period with requests yet")


def test_a_window_of_a_single_request_is_judged_on_its_errors_and_its_response_time():
    j = judge(base(), [(period(1, 0, 0.25), 1.0)], T)
    assert (j.outcome, j.periods, j.requests, j.new_error_rate, j.new_latency) == (Outcome.OK, 1, 1, 0.0, 0.25)
    assert j.reason == ("no regression over 1 period(s): 5xx 0 of 1 requests against 0.1 expected (z -0.2); the new "
                        "pods' rate 0.00% is 0.0x the baseline's 6.25%; response time 250 ms against 250 ms before "
                        "(z 0.0); the new pods' 250 ms is 1.0x")


# --- judge: errors ----------------------------------------------------------------------------------------------
def test_an_excess_of_exactly_four_standard_deviations_is_significant():
    # 256 requests at 6.25 %: 16 expected, sd 4; 32 observed is z 4.0; on half the targets the new pods' rate is
    # 6.25 % + 16 / 128 = 18.75 %, 3x
    j = judge(base(), [(period(256, 32, None), 0.5)], T)
    assert j == Judgement(
        Outcome.REGRESSION,
        "the new version gives more 5xx over 1 period(s): 5xx 32 of 256 requests against 16.0 expected (z 4.0); the "
        f"new pods' rate 18.75% is 3.0x the baseline's 6.25%; {LIMITS}",
        periods=1, requests=256, new_error_rate=0.1875, new_latency=None)


def test_a_new_rate_of_exactly_the_max_error_ratio_is_a_regression():
    j = judge(base(), [(period(1024, 128, None), 1.0)], T)  # 12.5 % against 6.25 %, z 8
    assert (j.outcome, j.new_error_rate) == (Outcome.REGRESSION, 0.125)
    assert "the new pods' rate 12.50% is 2.0x the baseline's 6.25%" in j.reason


# --- judge: response time -------------------------------------------------------------------------------------
def test_a_slower_mean_of_exactly_four_standard_deviations_is_a_regression_with_every_number_in_its_reason():
    # 4 requests: the mean's sd is 0.5 / 2 = 0.25 s, and 1.25 s against 0.25 s is z 4.0, the new pods 5x
    j = judge(base(), [(period(4, 0, 1.25), 1.0)], T)
    assert j == Judgement(
        Outcome.REGRESSION,
        "the new version gives slower answers over 1 period(s): 5xx 0 of 4 requests against 0.2 expected (z -0.5); "
        "the new pods' rate 0.00% is 0.0x the baseline's 6.25%; response time 1250 ms against 250 ms before "
        f"(z 4.0); the new pods' 1250 ms is 5.0x; {LIMITS}",
        periods=1, requests=4, new_error_rate=0.0, new_latency=1.25)


def test_a_new_response_time_of_exactly_the_max_latency_ratio_is_a_regression():
    j = judge(base(latency_sd=0.0625), [(period(16, 1, 0.375), 1.0)], T)  # 375 ms against 250 ms, z 8
    assert (j.outcome, j.new_latency) == (Outcome.REGRESSION, 0.375)
    assert "response time 375 ms against 250 ms before (z 8.0); the new pods' 375 ms is 1.5x" in j.reason


def test_a_significant_but_small_slowdown_is_no_regression():
    # 1024 requests at 281 ms against 250 ms: z 16, but only 1.125x
    j = judge(base(latency_sd=0.0625), [(period(1024, 64, 0.28125), 1.0)], T)
    assert j == Judgement(
        Outcome.OK,
        "no regression over 1 period(s): 5xx 64 of 1024 requests against 64.0 expected (z 0.0); the new pods' rate "
        "6.25% is 1.0x the baseline's 6.25%; response time 281 ms against 250 ms before (z 16.0); the new pods' "
        "281 ms is 1.1x",
        periods=1, requests=1024, new_error_rate=0.0625, new_latency=0.28125)


def test_more_5xx_and_slower_answers_together_are_both_named():
    j = judge(base(latency_sd=0.0625), [(period(1024, 128, 0.5), 1.0)], T)
    assert j.reason.startswith("the new version gives more 5xx and slower answers over 1 period(s): 5xx 128 of 1024 ")
    assert j.reason.endswith(f"the new pods' 500 ms is 2.0x; {LIMITS}")


@pytest.mark.parametrize("response_time,z,outcome", [
    (2.0, "inf", Outcome.REGRESSION),
    (1.0, "0.0", Outcome.OK),
    (0.5, "0.0", Outcome.OK),
], ids=["slower", "as-fast", "faster"])
def test_against_a_noiseless_response_time_any_slower_mean_is_infinitely_significant(response_time, z, outcome):
    j = judge(base(latency=1.0, latency_sd=0.0), [(period(16, 1, response_time), 1.0)], T)
    assert j.outcome is outcome
    ms = round(response_time * 1000)
    assert f"response time {ms} ms against 1000 ms before (z {z}); the new pods' {ms} ms" in j.reason


def test_periods_without_response_times_are_left_out_of_the_latency_judgement():
    # the untimed period counts for the errors only; the mean is the timed period's
    j = judge(base(latency_sd=0.0625), [(period(1024, 64, None), 1.0), (period(16, 1, 0.375, 660.0), 1.0)], T)
    assert (j.outcome, j.requests, j.new_latency) == (Outcome.REGRESSION, 1040, 0.375)
    assert "response time 375 ms against 250 ms before" in j.reason


def test_a_window_without_response_times_judges_errors_only_against_a_timed_baseline():
    j = judge(base(), [(period(256, 16, None), 1.0)], T)
    assert j.reason == ("no regression over 1 period(s): 5xx 16 of 256 requests against 16.0 expected (z 0.0); "
                        "the new pods' rate 6.25% is 1.0x the baseline's 6.25%")
    assert j.new_latency is None


def test_a_timed_period_without_requests_says_nothing_about_response_time():
    j = judge(base(), [(period(256, 16, None), 1.0), (period(0, 0, 9.0, 660.0), 1.0)], T)
    assert (j.outcome, j.new_latency) == (Outcome.OK, None)
    assert "response time" not in j.reason


@pytest.mark.parametrize("baseline", [
    base(latency=0.25, latency_sd=None),
    baseline_of([period(100, 1, 0.0, 0.0), period(100, 1, 0.0, 60.0)], floor=0.001),
], ids=["one-timed-period", "answered-in-zero-seconds"])
def test_a_baseline_without_a_spread_or_a_positive_response_time_judges_errors_only(baseline):
    j = judge(baseline, [(period(16, 0, 5.0), 1.0)], T)
    assert (j.outcome, j.new_latency) == (Outcome.OK, None)
    assert "response time" not in j.reason


# --- thresholds, in_windows, windows ----------------------------------------------------------------------------
def test_the_thresholds_are_the_policys_three_numbers():
    a = AnalysisPolicy(max_error_ratio=3.0, max_latency_ratio=1.25, min_error_rate=0.002)
    assert thresholds(a) == Thresholds(max_error_ratio=3.0, max_latency_ratio=1.25, min_error_rate=0.002)


def test_a_period_filling_a_window_exactly_is_inside_it():
    ws = [(120.0, 180.0, 0.5)]
    assert [(m.start, share) for m, share in in_windows([period(10, 0, 0.2, 120.0)], ws)] == [(120.0, 0.5)]


def test_each_passed_step_has_a_window_to_the_next_gate_and_a_step_still_gating_has_none():
    s = state(analysis={})  # 4 replicas in [1, 2, 4]
    s.steps = [
        StepRecord(step=1, mode="rollout", target=1, started_at=START, gate_passed_at=START + 100),
        StepRecord(step=2, mode="rollout", target=2, started_at=START + 200, gate_passed_at=START + 400),
        StepRecord(step=3, mode="rollout", target=4, started_at=START + 500),
    ]
    # step 1: 1 new pod and the surged one among 5; step 2: 2 new and 1 surged among 5
    assert windows(s) == [(START + 100, START + 400, 2 / 5), (START + 400, math.inf, 3 / 5)]


def test_the_last_passed_step_has_the_open_window_and_the_first_ends_at_the_second_gate():
    s = state(analysis={})
    s.steps = [StepRecord(step=k, mode="rollout", target=t, started_at=START + 300 * k - 250,
                          gate_passed_at=START + 300 * k - 200) for k, t in ((1, 1), (2, 2), (3, 4))]
    assert windows(s) == [(START + 100, START + 400, 2 / 5), (START + 400, START + 700, 3 / 5),
                          (START + 700, math.inf, 1.0)]


# --- check_at_start -------------------------------------------------------------------------------------------
def test_a_deployment_without_metrics_is_told_exactly_what_to_remove():
    with pytest.raises(InvalidInputError) as e:
        check_at_start(ports(None), RolloutPolicy(analysis={}), [GROUP], START)
    assert str(e.value) == ("policy.analysis: this deployment has no CloudWatch metrics to read; remove "
                            "policy.analysis")


def test_three_busy_minutes_and_a_bake_of_exactly_240_seconds_need_no_note():
    fake = MetricsByGroup({TG: steady(START - 180, 3)})
    baselines, notes = check_at_start(ports(fake), RolloutPolicy(analysis={}, bake_seconds=240), [GROUP], START)
    assert (baselines[TG].periods, notes) == (3, [])


# --- during ----------------------------------------------------------------------------------------------------
def test_a_group_without_a_baseline_is_skipped_and_the_next_is_read():
    s = state(analysis={})
    s.target_groups = [group(TG_API), GROUP]
    fake = MetricsByGroup({TG: steady(START + 120, 3)})
    assert during(ports(fake), s, "during step 1's drain", START + 400) is None
    assert fake.calls == [TG]
    assert s.analysis.startswith("k8s-shop-web-0a1b2c3d4e: no regression over 3 period(s): 5xx 18 of 1800 requests")


def test_a_throttled_group_leaves_the_others_read_and_each_read_counts():
    s = state(analysis={})
    s.get_metric_data_calls = 5
    s.target_groups = [group(TG_API), GROUP]
    s.baselines = {TG_API: s.baselines[TG], TG: s.baselines[TG]}
    fake = MetricsByGroup({TG: steady(START + 120, 3)}, throttled=(TG_API,))
    assert during(ports(fake), s, "during step 1's drain", START + 400) is None
    assert (fake.calls, s.get_metric_data_calls) == ([TG_API, TG], 7)
    assert s.analysis == (
        "k8s-shop-api-5f6e7d8c9b: metrics throttled, read again in a minute; k8s-shop-web-0a1b2c3d4e: no regression "
        "over 3 period(s): 5xx 18 of 1800 requests against 18.0 expected (z 0.0); the new pods' rate 1.00% is 1.0x the "
        "baseline's 1.00%; response time 200 ms against 200 ms before (z 0.0); the new pods' 200 ms is 1.0x")


def test_what_the_state_keeps_of_several_healthy_groups_is_capped():
    s = state(analysis={})
    arns = [TG_API, TG_ADMIN, TG]
    s.target_groups = [group(arn) for arn in arns]
    s.baselines = {arn: s.baselines[TG] for arn in arns}
    fake = MetricsByGroup({arn: steady(START + 120, 3) for arn in arns})
    assert during(ports(fake), s, "during step 1's drain", START + 400) is None
    assert len(s.analysis) == ANALYSIS_MAX_CHARS and s.analysis.endswith(TRUNCATED)
    assert s.analysis.startswith("k8s-shop-api-5f6e7d8c9b: no regression over 3 period(s)")


def test_what_the_state_keeps_of_a_regression_is_its_group_and_reason_capped():
    # a policy floor of 1e-300: the ratio and the z of a few 5xx run to hundreds of digits
    s = state(analysis={"min_error_rate": 1e-300})
    s.baselines = {TG: AnalysisBaseline(periods=30, requests=18_000, error_rate=1e-300, dispersion=1.0)}
    fake = MetricsByGroup({TG: steady(START + 120, 3)})
    reason = during(ports(fake), s, "during step 1's drain", START + 400)
    assert reason is not None and reason.startswith(
        "ALB metrics of target group k8s-shop-web-0a1b2c3d4e during step 1's drain: the new version gives more 5xx")
    assert len(reason) > ANALYSIS_MAX_CHARS
    assert len(s.analysis) == ANALYSIS_MAX_CHARS and s.analysis.endswith(TRUNCATED)
    assert s.analysis.startswith("k8s-shop-web-0a1b2c3d4e: the new version gives more 5xx over 3 period(s)")


# --- sized_for_long_requests ----------------------------------------------------------------------------------
def test_the_first_group_with_the_longest_request_is_named_and_a_whole_number_of_seconds_is_not_capped():
    longest = [MetricMinute(START - 600, 100.0, 0.0, 0.5, 100.0)]
    fake = MetricsByGroup({TG: longest, TG_API: longest})
    sized, notes, calls = sized_for_long_requests(ports(fake), request(), [GROUP, group(TG_API)], START)
    assert (sized.policy.max_request_seconds, calls, fake.calls) == (100, 2, [TG, TG_API])
    assert notes == ["long requests: target group k8s-shop-web-0a1b2c3d4e answered a request in 100 s in the last 60 "
                     "minutes (TargetResponseTime Maximum), longer than policy.max_request_seconds (30 s): the grace "
                     "period and the deregistration delay are checked for 100 s"]
