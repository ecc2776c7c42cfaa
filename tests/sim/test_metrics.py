"""The simulated ALB's CloudWatch metrics (albgate/sim/metrics.py) and the per-version answers behind them: error
rates (traffic.error_rate, traffic.error_rate_noise, faults.degraded_images), latency factors, the publication
delay, and scenarios without them running exactly as before."""

from __future__ import annotations

import math
import random
import statistics
from types import SimpleNamespace

import pytest

from albgate.sim import Simulation, load_scenario
from albgate.sim.engine import EPOCH
from albgate.sim.metrics import AlbMetrics, GroupMetrics, period_start
from albgate.sim.runner import run_strategy, simulate
from albgate.sim.scenario import ScenarioError
from albgate.sim.traffic import noise_factor
from tests.sim.conftest import SCENARIOS, scenario

NEW = "ikubernetes/myapp:v2"


def group_of(sim: Simulation, k: int = 0):
    return sim.copies[0].groups[k]


def minutes(sim: Simulation, start: float = 0.0, end: float = math.inf, k: int = 0):
    tg = group_of(sim, k)
    return sim.ports.metrics.target_group_minutes(tg.arn, tg.lb_arns[0], start, end)


def settled_totals(sim: Simulation) -> tuple[float, dict[str, int]]:
    """Run to the next whole minute T; the traffic's counts then (every request before T is delivered)."""
    t = period_start(sim.clock.t) + 60
    sim.run_until(t)
    tr = sim.traffic
    return t, {"requests": tr.requests, "answered_badly": tr.answered_badly,
               "app_error": tr.failed.get("app_error", 0)}


# --- publication --------------------------------------------------------------------------------------------
def test_a_period_is_published_sixty_seconds_plus_the_delay_after_it_starts():
    sim = Simulation(scenario(metrics={"publication_delay_seconds": 30}))
    sim.run_until(EPOCH + 60)
    first_minute = sim.traffic.requests
    sim.run_until(EPOCH + 90 - 0.001)
    assert minutes(sim) == []
    sim.run_until(EPOCH + 90)
    (m,) = minutes(sim)
    assert (m.start, m.requests, m.target_5xx) == (EPOCH, first_minute, 0)


def test_no_delay_publishes_a_period_the_instant_it_ends():
    sim = Simulation(scenario(metrics={"publication_delay_seconds": 0}))
    sim.run_until(EPOCH + 120)
    assert [m.start for m in minutes(sim)] == [EPOCH, EPOCH + 60]


def test_only_periods_starting_in_the_window_are_returned_oldest_first():
    sim = Simulation(scenario(metrics={"publication_delay_seconds": 0}))
    sim.run_until(EPOCH + 300)
    assert [m.start - EPOCH for m in minutes(sim, EPOCH + 60, EPOCH + 180)] == [60, 120]
    assert [m.start - EPOCH for m in minutes(sim, EPOCH + 61, EPOCH + 179.5)] == [120]


def test_periods_without_requests_are_absent():
    sim = Simulation(scenario(traffic={"rate_per_second": 0.01}, metrics={"publication_delay_seconds": 0}))
    sim.run_until(EPOCH + 3600)
    shown = minutes(sim)
    assert len(shown) == 27  # of the hour's 60 periods
    assert [m.start - EPOCH for m in shown[:5]] == [120, 240, 480, 600, 660]
    assert sum(m.requests for m in shown) == sim.traffic.requests == 41
    assert all(m.requests > 0 for m in shown)


def test_a_period_only_another_group_of_the_app_had_requests_in_is_absent():
    metrics = AlbMetrics(0)
    group: GroupMetrics = metrics.group(SimpleNamespace(arn="tg-a", lb_arns=("lb-a",)))
    group.row(EPOCH)  # made for the period, no request routed here
    group.row(EPOCH + 60)[0] += 1
    assert [m.start for m in metrics.minutes("tg-a", "lb-a", 0, math.inf, EPOCH + 600)] == [EPOCH + 60]


def test_get_metric_data_calls_are_counted_and_a_wrong_load_balancer_is_refused():
    sim = Simulation(load_scenario(SCENARIOS / "two-load-balancers.yaml"))
    sim.run_until(EPOCH + 300)
    first, second = group_of(sim, 0), group_of(sim, 1)
    (lb,) = sim.elb.describe_target_group(first.arn).load_balancer_arns
    assert minutes(sim) == sim.ports.metrics.target_group_minutes(first.arn, lb, 0, math.inf)
    with pytest.raises(ValueError, match="is not the load balancer of"):
        sim.ports.metrics.target_group_minutes(first.arn, second.lb_arns[0], 0, math.inf)
    with pytest.raises(ValueError, match="is not a target group"):
        sim.ports.metrics.target_group_minutes("arn:aws:elasticloadbalancing:nowhere", lb, 0, math.inf)
    assert sim.get_metric_data_calls == 4


# --- what the periods count ---------------------------------------------------------------------------------
def test_the_periods_add_up_to_the_traffic_requests_and_5xx_answers():
    sc = load_scenario(SCENARIOS / "broken-image.yaml").with_changes(traffic={"error_rate": 0.05})
    sim, _ = run_strategy(sc, "kubernetes-default")
    t, totals = settled_totals(sim)
    sim.run_until(t + sim.scenario.metrics.publication_delay_seconds)
    shown = minutes(sim, 0, t)
    assert totals["app_error"] > 0 and totals["answered_badly"] > 0
    assert sum(m.requests for m in shown) == totals["requests"]
    assert sum(m.target_5xx for m in shown) == totals["answered_badly"] + totals["app_error"]


def test_a_degraded_image_answers_its_share_5xx_and_the_old_one_none():
    sc = scenario(traffic={"rate_per_second": 50}, rollout={"start_at_seconds": 0},
                  faults={"degraded_images": [{"image": NEW, "error_rate": 0.1}]})
    sim, _ = run_strategy(sc, "kubernetes-default")
    sim.advance(900)
    after = [m for m in minutes(sim) if m.start >= EPOCH + 120]  # every pod runs the new image by then
    requests, errors = sum(m.requests for m in after), sum(m.target_5xx for m in after)
    assert requests > 30_000
    assert errors / requests == pytest.approx(0.1, abs=0.006)
    assert sim.traffic.answered_badly == sim.traffic.answered_badly_by_new_version > 0
    assert sim.traffic.failed_requests == sum(sim.traffic.failed.values())


def test_pods_take_their_answers_from_their_image_when_created():
    sc = scenario(traffic={"error_rate": 0.25},
                  faults={"degraded_images": [{"image": NEW, "latency_factor": 2}]})
    sim, _ = run_strategy(sc, "kubernetes-default")
    answers = {(p.version, p.error_rate, p.latency_factor) for p in sim.cluster.all_pods}
    assert answers == {("ikubernetes/myapp:v1", 0.25, 1.0), (NEW, 0.25, 2.0)}


def test_the_latency_factor_shows_in_the_average_response_time():
    sc = scenario(traffic={"duration_distribution": "fixed", "mean_duration_seconds": 0.2},
                  rollout={"start_at_seconds": 120},
                  faults={"degraded_images": [{"image": NEW, "latency_factor": 3}]})
    sim, _ = run_strategy(sc, "kubernetes-default")
    sim.advance(600)
    shown = minutes(sim)
    assert [round(m.response_time, 12) for m in shown[:2]] == [0.2, 0.2]
    assert [round(m.response_time, 12) for m in shown[-3:]] == [0.6, 0.6, 0.6]
    assert round(shown[-1].response_time_max, 12) == 0.6
    assert sim.traffic.answered_badly == 0


def test_a_5xx_answer_is_not_a_failed_request_and_the_clients_stay_the_same():
    sc = load_scenario(SCENARIOS / "seed-app.yaml")
    plain = simulate(sc, "kubernetes-default", lower_bound=False)
    erring = simulate(sc.with_changes(traffic={"error_rate": 0.3}), "kubernetes-default", lower_bound=False)
    assert (erring.requests, erring.failed_requests) == (plain.requests, plain.failed_requests) == (1960, 245)
    assert (erring.answered_badly, erring.answered_badly_by_new_version) == (526, 291)
    assert plain.answered_badly == 0


# --- noise --------------------------------------------------------------------------------------------------
def test_the_noise_factor_has_mean_one_and_the_asked_coefficient_of_variation():
    draws = [noise_factor("1:error-noise", EPOCH + 60 * k, 0.8) for k in range(40_000)]
    assert statistics.fmean(draws) == pytest.approx(1.0, abs=0.02)
    assert statistics.pstdev(draws) / statistics.fmean(draws) == pytest.approx(0.8, abs=0.03)
    assert noise_factor("1:error-noise", EPOCH, 0) == 1.0
    assert noise_factor("1:error-noise", EPOCH, 0.8) == noise_factor("1:error-noise", EPOCH, 0.8)


def per_minute_rates(noise: float) -> tuple[list[float], float, int]:
    sc = scenario(traffic={"rate_per_second": 100, "error_rate": 0.05, "error_rate_noise": noise},
                  metrics={"publication_delay_seconds": 0})
    sim = Simulation(sc)
    sim.run_until(EPOCH + 3600)
    shown = minutes(sim)
    rates = [m.target_5xx / m.requests for m in shown]
    return rates, sum(m.target_5xx for m in shown) / sum(m.requests for m in shown), sim.traffic.requests


def test_noise_spreads_the_per_minute_rates_but_keeps_their_mean():
    steady, steady_mean, steady_requests = per_minute_rates(0)
    noisy, noisy_mean, noisy_requests = per_minute_rates(0.5)
    assert steady_requests == noisy_requests  # the same clients
    assert statistics.pstdev(steady) / statistics.fmean(steady) < 0.1
    assert statistics.pstdev(noisy) / statistics.fmean(noisy) > 0.35
    assert steady_mean == pytest.approx(0.05, rel=0.03)
    assert noisy_mean == pytest.approx(0.05, rel=0.2)


# --- scenario fields ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sections, field", [
    ({"traffic": {"error_rate": 1.5}}, "traffic.error_rate"),
    ({"traffic": {"error_rate_noise": 6}}, "traffic.error_rate_noise"),
    ({"faults": {"degraded_images": [{"image": NEW, "latency_factor": 0}]}}, "latency_factor"),
    ({"faults": {"degraded_images": [{"image": NEW, "error_rate": -0.1}]}}, "error_rate"),
    ({"faults": {"degraded_images": [{"image": NEW}, {"image": NEW}]}}, "twice"),
    ({"faults": {"degraded_images": [{"image": NEW}], "broken_images": [NEW]}}, "not both"),
    ({"faults": {"degraded_images": [{"image": NEW, "rate": 0.1}]}}, "rate"),
    ({"metrics": {"publication_delay_seconds": 901}}, "metrics.publication_delay_seconds"),
    ({"metrics": {"delay": 60}}, "metrics.delay"),
])
def test_a_bad_answer_or_metrics_field_is_refused_by_name(sections, field):
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
        scenario(**sections)


# --- scenarios without the new fields -----------------------------------------------------------------------
@pytest.mark.parametrize("file, strategy, requests, failed", [
    ("seed-app", "kubernetes-default", 1960, 245),
    ("seed-app", "readiness-gate", 3059, 167),
    ("seed-app", "oracle", 4554, 157),
    ("broken-image", "kubernetes-default", 2075, 1272),
    ("heavy-tailed-requests", "kubernetes-default", 2168, 121),
    ("two-load-balancers", "kubernetes-default", 2599, 599),
])
def test_scenarios_without_error_rates_run_as_before(file, strategy, requests, failed):
    result = simulate(load_scenario(SCENARIOS / f"{file}.yaml"), strategy, lower_bound=False)
    assert (result.requests, result.failed_requests) == (requests, failed)
    assert (result.answered_badly, result.answered_badly_by_new_version, result.get_metric_data_calls) == (0, 0, 0)


def test_the_answers_draw_from_their_own_stream():
    sim = Simulation(scenario(traffic={"error_rate": 0.5}))
    assert sim.traffic.streams[0].answers.random() == random.Random(f"{sim.seed}:answers").random()
