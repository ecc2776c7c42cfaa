"""CloudWatch metric alarms of the simulated account that evaluate the ALB's published metrics (albgate/sim/alarms.py,
``metrics.alarms``): when they change state, what they show and what their history says."""

from __future__ import annotations

import pytest

from albgate.sim import Simulation, parse_scenario
from albgate.sim.alarms import cloudwatch_of
from albgate.sim.engine import EPOCH
from albgate.sim.scenario import ScenarioError
from lambdas.domain.ports import ALARM, OK

ALARM_NAME = "app-target-5xx"


def world(error_rate: float, threshold: float, periods: int = 1, delay: float = 120) -> Simulation:
    """The example app answering ``error_rate`` of its 20 requests/s 5xx, with one alarm on its 5xx count."""
    return Simulation(parse_scenario({
        "name": "metric-alarm", "traffic": {"error_rate": error_rate},
        "metrics": {"publication_delay_seconds": delay, "alarms": [
            {"name": ALARM_NAME, "metric": "HTTPCode_Target_5XX_Count", "threshold": threshold,
             "evaluation_periods": periods}]},
        "rollout": {"start_at_seconds": 900}}))


def test_an_alarm_above_its_threshold_goes_to_alarm_when_the_period_is_published_not_before():
    # 10 % of 1,200 requests a minute: about 120 5xx per period, above 50
    sim = world(0.1, 50)
    cw = cloudwatch_of(sim)
    first = EPOCH + 60 + 120  # the world's first whole period [EPOCH, EPOCH + 60) is published then
    sim.run_until(first - 1)
    assert cw.alarm(ALARM_NAME, sim.clock.now()).state == OK
    sim.run_until(first + 1)
    a = cw.alarm(ALARM_NAME, sim.clock.now())
    assert (a.state, a.state_since) == (ALARM, first)
    assert a.reason == "Threshold Crossed (simulated: HTTPCode_Target_5XX_Count above 50 in the last 1 period(s))"


def test_an_alarm_under_its_threshold_stays_ok_and_has_no_history():
    sim = world(0.01, 50)  # about 12 a period
    sim.run_until(EPOCH + 900)
    cw = cloudwatch_of(sim)
    assert cw.alarm(ALARM_NAME, sim.clock.now()).state == OK
    assert cw.state_changes(ALARM_NAME, EPOCH, sim.clock.now()).changes == ()


def test_several_evaluation_periods_need_each_of_them_above_the_threshold():
    sim = world(0.1, 50, periods=3)
    cw = cloudwatch_of(sim)
    third = EPOCH + 3 * 60 + 120  # the third period is the first with two before it
    sim.run_until(third - 1)
    assert cw.alarm(ALARM_NAME, sim.clock.now()).state == OK
    sim.run_until(third + 1)
    assert cw.alarm(ALARM_NAME, sim.clock.now()).state_since == third
    changes = cw.state_changes(ALARM_NAME, EPOCH, sim.clock.now()).changes
    assert [(c.at, c.old, c.new) for c in changes] == [(third, OK, ALARM)]


def test_an_alarm_is_either_a_metric_alarm_or_a_window_alarm():
    with pytest.raises(ScenarioError, match="both in metrics.alarms and faults.alarms"):
        parse_scenario({"name": "x", "metrics": {"alarms": [{"name": "a", "metric": "RequestCount", "threshold": 1}]},
                        "faults": {"alarms": [{"name": "a", "at_seconds": 0, "duration_seconds": 10,
                                               "state": "ALARM"}]}})
