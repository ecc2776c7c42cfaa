"""Each strategy's outcome on the shipped scenarios, and the runner's accounting."""

from __future__ import annotations

import time

import pytest

from albgate.sim import load_scenario, strategies, register_strategy, simulate, strategy_names
from albgate.sim.strategies import SUCCEEDED, StrategyRun, get_strategy
from tests.sim.conftest import SCENARIOS

SEED_APP = load_scenario(SCENARIOS / "seed-app.yaml")
HARDENED = load_scenario(SCENARIOS / "seed-app-hardened.yaml")


def test_builtin_strategies_are_registered():
    assert {"kubernetes-default", "readiness-gate", "oracle"} <= set(strategy_names())
    with pytest.raises(KeyError, match="unknown strategy"):
        get_strategy("nope")


def test_kubernetes_default_drops_requests_on_the_seed_app():
    # Given the seed's app and a plain rolling update / Then requests fail, the new pods Ready before the ALB has them
    r = simulate(SEED_APP, "kubernetes-default", lower_bound=False)
    assert r.outcome == SUCCEEDED and r.final_image == "ikubernetes/myapp:v2"
    assert r.failed_requests > 100


def test_readiness_gate_keeps_targets_but_old_pods_without_prestop_still_refuse():
    # The seed's fix: no request finds the ALB without a ready target, yet pods without a preStop get SIGTERM
    # while the ALB still sends them new requests (the deregistration lag)
    r = simulate(SEED_APP, "readiness-gate", lower_bound=False)
    assert r.outcome == SUCCEEDED
    assert set(r.failed_by_cause) == {"connection_refused_terminated"}
    assert r.failed_requests < simulate(SEED_APP, "kubernetes-default", lower_bound=False).failed_requests


@pytest.mark.parametrize("strategy", ["oracle", "readiness-gate"])
def test_gated_rollout_of_a_hardened_app_drops_nothing(strategy):
    # Given pods that sleep 30 s in preStop (longer than the 10 s lag) / Then no request fails at all
    r = simulate(HARDENED, strategy, lower_bound=False)
    assert r.outcome == SUCCEEDED
    assert r.failed_requests == 0 and r.requests > 2000


def test_oracle_on_the_seed_app_loses_only_what_the_old_pods_refuse():
    # The first gated rollout cannot change the running pods' preStop (it hardens the new template only), so
    # what it loses is the old pods refusing during the lag: no 503, no request to a pod not serving
    r = simulate(SEED_APP, "oracle", lower_bound=False)
    assert r.outcome == SUCCEEDED
    assert set(r.failed_by_cause) == {"connection_refused_terminated"}


OUTCOMES = [
    # (scenario, strategy, outcome, final image, drops?)
    ("broken-image", "kubernetes-default", "succeeded", "ikubernetes/myapp:v2", True),
    ("broken-image", "readiness-gate", "failed", "ikubernetes/myapp:v2", False),
    # The rollback restores the previous ReplicaSet, which never lost a pod: the broken pods never served, so
    # removing them drops nothing even without a preStop.
    ("broken-image", "oracle", "rolled_back", "ikubernetes/myapp:v1", False),
    ("controller-never-recovers", "readiness-gate", "failed", "ikubernetes/myapp:v2", False),
    ("controller-never-recovers", "kubernetes-default", "succeeded", "ikubernetes/myapp:v2", True),
    ("auto-mode", "readiness-gate", "succeeded", "ikubernetes/myapp:v2", True),
    ("slow-registration", "kubernetes-default", "succeeded", "ikubernetes/myapp:v2", True),
]


@pytest.mark.parametrize("name,strategy,outcome,image,drops", OUTCOMES, ids=[f"{o[0]}-{o[1]}" for o in OUTCOMES])
def test_outcomes_on_shipped_scenarios(name, strategy, outcome, image, drops):
    r = simulate(load_scenario(SCENARIOS / f"{name}.yaml"), strategy, lower_bound=False)
    assert (r.outcome, r.final_image, r.failed_requests > 0) == (outcome, image, drops)


def test_slow_registration_without_gates_leaves_the_alb_with_nothing_to_route_to():
    r = simulate(load_scenario(SCENARIOS / "slow-registration.yaml"), "kubernetes-default", lower_bound=False)
    assert r.failed_by_cause["no_routable_target"] > 1000


def test_report_accounting_and_lower_bound():
    r = simulate(SEED_APP, "readiness-gate")
    assert r.failed_requests == sum(r.failed_by_cause.values())
    # The bound is the oracle's time in the world the strategy prepared (here: namespace labelled first)
    prepared = get_strategy("readiness-gate").prepare(SEED_APP)
    assert r.lower_bound_seconds == simulate(prepared, "oracle", lower_bound=False).rollout_seconds
    assert r.describe_target_health_calls == 0 and r.describe_target_health_calls_by_caller["controller"] > 0
    assert r.state_transitions == 0
    j = r.to_json()
    for key in ("outcome", "requests", "failed_requests", "failed_by_cause", "rollout_seconds",
                "lower_bound_seconds", "describe_target_health_calls", "state_transitions", "final_image"):
        assert key in j


def test_same_seed_same_run_other_seed_other_run():
    a = simulate(SEED_APP, "kubernetes-default", 11, lower_bound=False)
    b = simulate(SEED_APP, "kubernetes-default", 11, lower_bound=False)
    c = simulate(SEED_APP, "kubernetes-default", 12, lower_bound=False)
    assert (a.to_json() | {"wall_seconds": 0}) == (b.to_json() | {"wall_seconds": 0})
    assert a.timeline == b.timeline
    assert (a.requests, a.failed_requests, a.timeline) != (c.requests, c.failed_requests, c.timeline)


def test_an_hour_of_rollout_runs_in_well_under_a_second():
    # Given a rollout stuck for the whole horizon (the controller never comes back), an hour of virtual time
    sc = load_scenario(SCENARIOS / "controller-never-recovers.yaml").with_changes(horizon_seconds=3600)
    t = time.perf_counter()
    r = simulate(sc, "readiness-gate", lower_bound=False)
    assert r.simulated_seconds >= 3600
    assert time.perf_counter() - t < 1.0


def test_a_registered_strategy_runs_through_the_runner():
    calls = []

    def noop(sim):
        calls.append(sim.clock.now())
        return StrategyRun("failed", sim.clock.now(), sim.clock.now(), state_transitions=7, detail="did nothing")

    register_strategy("test-noop", noop)
    try:
        r = simulate(SEED_APP, "test-noop", lower_bound=False)
    finally:
        strategies._REGISTRY.pop("test-noop")
    assert calls and (r.outcome, r.state_transitions, r.failed_requests) == ("failed", 7, 0)
    assert r.final_image == "ikubernetes/myapp:v1"
