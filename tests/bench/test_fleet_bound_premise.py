"""The premise of bench/bench_fleet.py's physical bound, checked in the simulated world: however the controllers'
reconciles fall, a gated rollout costs them at least ``forced_controller_calls`` served DescribeTargetHealth calls,
while the calls of a rollout alone are no minimum (a throttled controller coalesces reconciles); and every gated
rollout makes at least ``forced_mutating_calls`` RegisterTargets/DeregisterTargets calls, whoever makes them."""

from __future__ import annotations

from pathlib import Path

import pytest

import albgate.sim.albgate_strategy  # noqa: F401 - registers the albgate strategy
from albgate.sim import load_scenario
from albgate.sim.fleet import run_fleet
from bench_fleet import forced_controller_calls, forced_mutating_calls
from lambdas.domain.plan import step_targets

ROOT = Path(__file__).resolve().parents[2]
BASE = load_scenario(ROOT / "scenarios" / "seed-app-hardened.yaml")
STEPS = len(step_targets(BASE.app.replicas, BASE.rollout.policy))


def served(result) -> int:
    return result.describe_calls_by_caller.get("controller", 0) - result.throttled_calls_by_caller.get("controller", 0)


def alone_calls() -> int:
    one = run_fleet(BASE.with_changes(fleet={"deployments": 1, "start_within_seconds": 0}), "readiness-gate", 1)
    return served(one)


@pytest.mark.parametrize("strategy", ["readiness-gate", "albgate"])
def test_a_throttled_fleet_serves_the_controllers_at_least_the_forced_calls_and_fewer_than_alone(strategy):
    # Given ten rollouts at once in an account whose bucket refills 0.7 calls a second
    world = BASE.with_changes(fleet={"deployments": 10, "start_within_seconds": 10},
                              alb={"describe_bucket_refill_per_second": 0.7})
    result = run_fleet(world, strategy, 1)
    # Then the controllers were throttled, every rollout succeeded, and they were served at least the forced calls
    assert result.throttled_calls_by_caller.get("controller", 0) > 0
    assert result.failed_rollouts == 0
    assert served(result) >= 10 * forced_controller_calls(STEPS)
    # but fewer per rollout than a rollout alone makes: that number is no bound
    assert served(result) < 10 * alone_calls()


@pytest.mark.parametrize("strategy", ["readiness-gate", "albgate"])
def test_every_gated_rollout_makes_at_least_the_forced_register_and_deregister_calls(strategy):
    # Given ten rollouts at once / Then RegisterTargets and DeregisterTargets went through at least the forced
    # number of times per rollout, whoever made them
    result = run_fleet(BASE.with_changes(fleet={"deployments": 10, "start_within_seconds": 10}), strategy, 1)
    made = sum(result.mutating_calls_by_caller.values()) - sum(result.mutating_throttled_by_caller.values())
    assert result.failed_rollouts == 0 and result.failed_requests == 0
    assert made >= 10 * forced_mutating_calls(STEPS)
