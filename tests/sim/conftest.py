"""Shared helpers for the simulation tests: scenarios built in code, small and fast."""

from __future__ import annotations

from pathlib import Path

from albgate.sim import Scenario, Simulation, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def scenario(**sections) -> Scenario:
    """The example app (scenario defaults) with some sections changed."""
    return parse_scenario({"name": "test", **sections})


def started(sc: Scenario, seed: int | None = None) -> Simulation:
    """A world at the rollout start: steady state, traffic flowing."""
    sim = Simulation(sc, seed)
    sim.run_until(sim.rollout_start)
    return sim
