"""When a rollout reads the ALB's metrics (lambdas.domain.rollout.analysis): Preflight's baseline and its notes, and
the looks of a gate, a drain and Start Step (once per period, none in a rollback or before a gate passed)."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError, ThrottledError
from lambdas.domain.models import RolloutPolicy, RolloutRequest
from lambdas.domain.ports import MetricMinute, Ports
from lambdas.domain.rollout.analysis import FIRST_PERIOD_SEEN_SECONDS, check_at_start, during, sized_for_long_requests
from lambdas.domain.state import AnalysisBaseline, RolloutState, StepRecord, TargetGroupInfo

START = 1_000_020.0  # when the rollout started (epoch seconds)
TG = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-web-0a1b2c3d4e/73e2d6bc24d8a067"
LB = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/k8s-shop-9f8e7d6c5b/50dc6c495c0c9188"
GROUP = TargetGroupInfo(arn=TG, service="web", health_check_interval_seconds=10, healthy_threshold=2,
                        deregistration_delay_seconds=30, load_balancer_arn=LB)


class FakeMetrics:
    """A ``MetricsPort`` answering fixed periods (those starting in the window asked), every call recorded."""

    def __init__(self, minutes: list[MetricMinute], throttled: bool = False) -> None:
        self.minutes, self.throttled = minutes, throttled
        self.calls: list[tuple[str, str, float, float]] = []

    def target_group_minutes(self, target_group_arn: str, load_balancer_arn: str, start: float,
                             end: float) -> list[MetricMinute]:
        self.calls.append((target_group_arn, load_balancer_arn, start, end))
        if self.throttled:
            raise ThrottledError("cloudwatch:GetMetricData throttled")
        return [m for m in self.minutes if start <= m.start < end]


def ports(metrics: FakeMetrics | None) -> Ports:
    return Ports(kube=None, elb=None, clock=None, metrics=metrics)  # type: ignore[arg-type]


def steady(first: float, n: int, errors: float = 6.0) -> list[MetricMinute]:
    return [MetricMinute(first + 60 * i, 600.0, errors, 0.2, 0.9) for i in range(n)]


def state(*, analysis: dict[str, Any] | None, mode: str = "rollout", gate_passed_at: float | None = START + 60,
          **fields: Any) -> RolloutState:
    policy = {"steps": ["25%", "50%", "100%"], **({"analysis": analysis} if analysis is not None else {}), **fields}
    request = RolloutRequest.model_validate({"cluster": "c", "namespace": "ns", "deployment": "d", "container": "app",
                                             "image": "r/app:v2", "policy": policy})
    steps = ([StepRecord(step=1, mode="rollout", target=1, started_at=START + 10, gate_passed_at=gate_passed_at)]
             if gate_passed_at is not None else [])
    return RolloutState(
        request=request, execution_name="e", started_at=START, replicas=4, plan=[1, 2, 4], target_image="r/app:v2",
        previous_image="r/app:v1", previous_revision=1, original_max_surge=1, original_max_unavailable=0,
        target_groups=[GROUP], mode=mode, step=0 if steps else -1, next_step=1 if steps else 0, steps=steps,
        baselines={TG: AnalysisBaseline(periods=30, requests=18_000, error_rate=0.01, dispersion=1.0, latency=0.2,
                                        latency_sd=0.2)} if analysis is not None else {},
    )  # fmt: skip


# --- Preflight ------------------------------------------------------------------------------------------------
def test_preflight_reads_each_groups_baseline_once_over_the_policys_minutes():
    fake = FakeMetrics(steady(START - 1800, 30))
    baselines, notes = check_at_start(ports(fake), RolloutPolicy(analysis={"baseline_minutes": 30}, bake_seconds=300),
                                      [GROUP], START)
    assert fake.calls == [(TG, LB, START - 1800, START)]
    assert baselines[TG].periods == 30 and baselines[TG].error_rate == pytest.approx(0.01)
    assert notes == []


def test_preflight_says_when_the_baseline_is_thin_and_when_the_bake_is_too_short_for_a_steps_own_metrics():
    fake = FakeMetrics(steady(START - 120, 2))
    _, notes = check_at_start(ports(fake), RolloutPolicy(analysis={}, bake_seconds=60), [GROUP], START)
    assert notes == [
        "analysis: target group k8s-shop-web-0a1b2c3d4e published 2 minute(s) with requests in the last 30; its "
        "baseline is thin (5xx rate taken as 1.00%, its noise as none), so only a large regression can be told from it",
        f"analysis: bake_seconds 60 is shorter than the {FIRST_PERIOD_SEEN_SECONDS} s a step's first full minute of ALB "
        "metrics takes to reach CloudWatch; a step's regression may be seen only during a later step (raise "
        "policy.bake_seconds to judge each step before the next)"]


def test_a_policy_without_analysis_reads_no_metrics_and_a_deployment_without_them_refuses_one_that_asks():
    assert check_at_start(ports(None), RolloutPolicy(), [GROUP], START) == ({}, [])
    with pytest.raises(InvalidInputError, match="policy.analysis: this deployment has no CloudWatch metrics"):
        check_at_start(ports(None), RolloutPolicy(analysis={}), [GROUP], START)


# --- the looks ------------------------------------------------------------------------------------------------
def test_a_look_reads_the_periods_since_the_first_gate_passed_and_passes_a_healthy_version():
    s = state(analysis={})
    fake = FakeMetrics(steady(START + 120, 3))
    assert during(ports(fake), s, "during step 1's drain", START + 400) is None
    assert fake.calls == [(TG, LB, START + 60, START + 400)]
    assert (s.analysis_at, s.get_metric_data_calls) == (START + 400, 1)
    assert s.analysis.startswith("k8s-shop-web-0a1b2c3d4e: no regression over 3 period(s)")


def test_a_regression_fails_the_look_naming_the_group_and_when():
    s = state(analysis={})
    fake = FakeMetrics(steady(START + 120, 5, errors=60.0))
    reason = during(ports(fake), s, "during step 1's drain", START + 500)
    assert reason is not None and reason.startswith(
        "ALB metrics of target group k8s-shop-web-0a1b2c3d4e during step 1's drain: the new version gives more 5xx")


def test_looks_read_at_most_once_per_period():
    s = state(analysis={})
    fake = FakeMetrics(steady(START + 120, 3))
    during(ports(fake), s, "a", START + 400)
    during(ports(fake), s, "b", START + 459)
    during(ports(fake), s, "c", START + 460)
    assert [c[3] for c in fake.calls] == [START + 400, START + 460]


@pytest.mark.parametrize("fields", [{"mode": "rollback"}, {"gate_passed_at": None}, {"analysis": None}],
                         ids=["rollback", "before-the-first-gate", "no-analysis"])
def test_a_rollback_a_rollout_before_its_first_gate_and_a_policy_without_analysis_read_nothing(fields):
    s = state(**{"analysis": {}, **fields})
    fake = FakeMetrics(steady(START + 120, 3, errors=600.0))
    assert during(ports(fake), s, "a", START + 400) is None
    assert fake.calls == []


def test_a_throttled_read_fails_nothing_and_says_so():
    s = state(analysis={})
    assert during(ports(FakeMetrics([], throttled=True)), s, "a", START + 400) is None
    assert s.analysis == "k8s-shop-web-0a1b2c3d4e: metrics throttled, read again in a minute"
    assert s.get_metric_data_calls == 1


# --- long requests -------------------------------------------------------------------------------------------
def request(**policy: Any) -> RolloutRequest:
    return RolloutRequest.model_validate({"cluster": "c", "namespace": "ns", "deployment": "d", "container": "app",
                                          "image": "r/app:v2", "policy": policy})


def with_longest(seconds: float) -> list[MetricMinute]:
    return [MetricMinute(START - 600, 100.0, 0.0, 0.5, 2.0), MetricMinute(START - 540, 100.0, 0.0, 0.6, seconds)]


def test_a_request_longer_than_declared_raises_max_request_seconds_with_a_note():
    fake = FakeMetrics(with_longest(99.2))
    sized, notes, calls = sized_for_long_requests(ports(fake), request(), [GROUP], START)
    assert sized.policy.max_request_seconds == 100 and calls == 1
    assert fake.calls == [(TG, LB, START - 3600, START)]
    assert notes == ["long requests: target group k8s-shop-web-0a1b2c3d4e answered a request in 99 s in the last 60 "
                     "minutes (TargetResponseTime Maximum), longer than policy.max_request_seconds (30 s): the grace "
                     "period and the deregistration delay are checked for 100 s"]


def test_requests_within_the_declared_length_change_nothing():
    sized, notes, _ = sized_for_long_requests(ports(FakeMetrics(with_longest(30.0))), request(), [GROUP], START)
    assert (sized.policy.max_request_seconds, notes) == (30, [])


def test_a_window_of_0_or_no_metrics_reads_nothing():
    fake = FakeMetrics(with_longest(500.0))
    assert sized_for_long_requests(ports(fake), request(long_requests_window_minutes=0), [GROUP], START)[2] == 0
    assert fake.calls == []
    assert sized_for_long_requests(ports(None), request(), [GROUP], START)[1:] == ([], 0)


def test_the_longest_request_is_capped_at_the_longest_albgate_can_size_for():
    sized, notes, _ = sized_for_long_requests(ports(FakeMetrics(with_longest(5000.0))), request(), [GROUP], START)
    assert sized.policy.max_request_seconds == 3600 and notes[0].endswith("checked for 3600 s (capped at 3600 s)")


def test_a_throttled_read_keeps_the_declared_length_and_says_so():
    sized, notes, calls = sized_for_long_requests(ports(FakeMetrics([], throttled=True)), request(), [GROUP], START)
    assert sized.policy.max_request_seconds == 30 and calls == 1
    assert notes == ["long requests: CloudWatch throttled the read of k8s-shop-web-0a1b2c3d4e's TargetResponseTime; "
                     "the drain is sized by policy.max_request_seconds (30 s) alone"]
