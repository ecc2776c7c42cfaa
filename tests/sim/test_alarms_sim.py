"""The simulated CloudWatch (albgate/sim/alarms.py) and its scenario section ``faults.alarms``: alarms in the states
their windows give them, on the world's clock, seen through ``sim.ports.alarms`` as albgate sees real ones."""

from __future__ import annotations

import pytest

from albgate.sim import ScenarioError, Simulation, parse_scenario
from albgate.sim.alarms import BEFORE_THE_WORLD, cloudwatch_of
from lambdas.domain.ports import ALARM, INSUFFICIENT_DATA, OK, StateChange
from tests.sim.conftest import scenario

FIVE_XX = {"name": "app-5xx", "at_seconds": 10, "duration_seconds": 30, "state": "ALARM"}
LATENCY = {"name": "app-latency", "at_seconds": -20, "duration_seconds": None, "state": "INSUFFICIENT_DATA"}


def world(*alarms: dict) -> Simulation:
    return Simulation(scenario(faults={"alarms": list(alarms)}))


def at(sim: Simulation, seconds_after_start: float) -> None:
    sim.run_until(sim.rel_to_abs(seconds_after_start))


def test_an_alarm_is_ok_outside_its_windows_and_in_the_windows_state_inside():
    sim = world(FIVE_XX, {**FIVE_XX, "at_seconds": 40, "duration_seconds": 10, "state": "INSUFFICIENT_DATA"})
    port = sim.ports.alarms
    seen = []
    for t in (5, 10, 39, 40, 49, 50):
        at(sim, t)
        (a,) = port.describe_alarms(names=("app-5xx",)).alarms
        seen.append((t, a.state, a.state_since - sim.rollout_start))
    assert seen == [(5, OK, BEFORE_THE_WORLD - sim.rollout_start), (10, ALARM, 10), (39, ALARM, 10),
                    (40, INSUFFICIENT_DATA, 40), (49, INSUFFICIENT_DATA, 40), (50, OK, 50)]


def test_names_prefixes_and_states_select_as_describe_alarms_does():
    sim = world(FIVE_XX, LATENCY, {**FIVE_XX, "name": "db-cpu"})
    at(sim, 15)
    port = sim.ports.alarms
    assert [a.name for a in port.describe_alarms(prefix="app-").alarms] == ["app-5xx", "app-latency"]
    assert [a.name for a in port.describe_alarms(names=("db-cpu", "missing")).alarms] == ["db-cpu"]
    assert [a.name for a in port.describe_alarms(prefix="", state=INSUFFICIENT_DATA).alarms] == ["app-latency"]
    assert port.describe_alarms(prefix="zzz").alarms == () and cloudwatch_of(sim).calls["DescribeAlarms"] == 4


def test_the_history_holds_each_change_in_the_window_that_has_happened_newest_first():
    sim = world(FIVE_XX)
    start = sim.rollout_start
    at(sim, 20)
    # The change back to OK at 40 s has not happened yet at 20 s
    assert sim.ports.alarms.state_changes("app-5xx", start, start + 100).changes == (
        StateChange(start + 10, OK, ALARM),)
    at(sim, 60)
    assert sim.ports.alarms.state_changes("app-5xx", start, start + 100).changes == (
        StateChange(start + 40, ALARM, OK), StateChange(start + 10, OK, ALARM))
    assert sim.ports.alarms.state_changes("app-5xx", start + 11, start + 39).changes == ()


def test_adjacent_windows_change_state_directly():
    sim = world(FIVE_XX, {**FIVE_XX, "at_seconds": 40, "state": "INSUFFICIENT_DATA"})
    at(sim, 100)
    changes = sim.ports.alarms.state_changes("app-5xx", sim.rollout_start, sim.clock.now()).changes
    assert [(c.old, c.new) for c in changes] == [(INSUFFICIENT_DATA, OK), (ALARM, INSUFFICIENT_DATA), (OK, ALARM)]


BAD = [
    ("overlap", [FIVE_XX, {**FIVE_XX, "at_seconds": 39}],
     "faults.alarms: alarm 'app-5xx' has windows at 10 s and 39 s"),
    ("after-forever", [{**FIVE_XX, "duration_seconds": None}, {**FIVE_XX, "at_seconds": 100}], "overlap"),
    ("state-ok", [{**FIVE_XX, "state": "OK"}], "faults.alarms.0.state"),
    ("no-name", [{k: v for k, v in FIVE_XX.items() if k != "name"}], "faults.alarms.0.name"),
    ("control-character", [{**FIVE_XX, "name": "app\t5xx"}], "is not a CloudWatch alarm name"),
    ("unknown-field", [{**FIVE_XX, "threshold": 5}], "faults.alarms.0.threshold"),
]


@pytest.mark.parametrize("alarms,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_alarm_fault_is_refused_naming_the_field(alarms, words):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({"name": "bad", "faults": {"alarms": alarms}}, "bad.yaml")
    assert words in str(caught.value) and str(caught.value).startswith("bad.yaml: faults.alarms")
