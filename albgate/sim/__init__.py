"""The simulated EKS cluster, AWS Load Balancer Controller and ALB (docs/simulation.md).

Job: run and measure rollouts without AWS, deterministically, on a virtual clock.
Invariant: ``Simulation.kube`` / ``.elb`` / ``.clock`` implement ``lambdas.domain.ports`` exactly, so the real
use cases and handlers run against the simulation unchanged.
"""

from albgate.sim.engine import EPOCH, VirtualClock
from albgate.sim.runner import SimulationResult, render_timeline, run_strategy, simulate
from albgate.sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from albgate.sim.simulation import Simulation
from albgate.sim.strategies import (
    FAILED,
    ROLLED_BACK,
    SUCCEEDED,
    TIMED_OUT,
    Strategy,
    StrategyRun,
    get_strategy,
    register_strategy,
    strategy_names,
)

__all__ = [
    "EPOCH", "FAILED", "ROLLED_BACK", "SUCCEEDED", "TIMED_OUT", "Scenario", "ScenarioError", "Simulation",
    "SimulationResult", "Strategy", "StrategyRun", "VirtualClock", "get_strategy", "load_scenario",
    "parse_scenario", "register_strategy", "render_timeline", "run_strategy", "simulate", "strategy_names",
]
