"""Request durations a scenario can ask for (traffic.duration_distribution): the mean holds for each shape, the cap
holds, and requests longer than the default grace period are cut by a plain rolling update but not by albgate's
hardened app (scenarios/long-requests.yaml)."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from albgate.sim import load_scenario
from albgate.sim.runner import simulate
from albgate.sim.traffic import _duration_sampler

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("shape", ["fixed", "pareto"])
def test_each_shape_has_the_declared_mean(shape):
    spec = SimpleNamespace(duration_distribution=shape, mean_duration_seconds=2.0, pareto_shape=2.5)
    draw = _duration_sampler(spec, random.Random(7))
    values = [draw() for _ in range(200_000)]
    assert statistics.fmean(values) == pytest.approx(2.0, rel=0.03)
    if shape == "pareto":  # heavy tail: the longest draws are many times the mean
        assert max(values) > 20 * 2.0 and min(values) >= 2.0 * (2.5 - 1) / 2.5


def test_the_exponential_is_the_hot_loops_own():
    spec = SimpleNamespace(duration_distribution="exponential", mean_duration_seconds=0.2, pareto_shape=1.5)
    assert _duration_sampler(spec, random.Random(1)) is None


def test_a_mean_above_the_cap_is_refused():
    with pytest.raises(Exception, match="mean_duration_seconds"):
        load_scenario(SCENARIOS / "seed-app.yaml").with_changes(
            traffic={"mean_duration_seconds": 60, "max_duration_seconds": 30})


def test_long_requests_are_cut_by_a_plain_rolling_update_and_kept_by_the_hardened_app():
    scenario = load_scenario(SCENARIOS / "long-requests.yaml")
    plain = simulate(scenario, "kubernetes-default", lower_bound=False)
    hardened = simulate(scenario, "hardened-readiness-gate", lower_bound=False)
    assert plain.failed_requests > 0
    assert hardened.outcome == "succeeded" and hardened.failed_requests == 0
