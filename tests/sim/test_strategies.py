"""Each strategy's outcome on the shipped scenarios, and the runner's accounting."""

from __future__ import annotations

import time

import pytest

from albgate.sim import load_scenario, strategies, register_strategy, simulate, strategy_names
from albgate.sim.strategies import SUCCEEDED, StrategyRun, get_strategy
from lambdas.domain.ports import ALBGATE_GATE
from tests.sim.conftest import SCENARIOS

SEED_APP = load_scenario(SCENARIOS / "seed-app.yaml")
HARDENED = load_scenario(SCENARIOS / "seed-app-hardened.yaml")


def labelled(sc):
    """The scenario's namespace labelled for gate injection after its pods, as albgate's bootstrap leaves it. The
    controller registers a pod held only by albgate's gate at the next reconcile something else triggers: turning
    ContainersReady changes no EndpointSlice, and it watches only pods carrying its own gate (docs/facts.md, Load
    Balancer Controller: requeue and back-off by version). So albgate's plan (the oracle, the ideal poller) runs
    where the controller's gate is injected too."""
    return sc.with_changes(namespace={"inject_label": "after_pods"}) if sc.namespace.inject_label == "none" else sc


def test_builtin_strategies_are_registered():
    assert {"kubernetes-default", "readiness-gate", "oracle"} <= set(strategy_names())
    with pytest.raises(KeyError, match="unknown strategy"):
        get_strategy("nope")


def test_kubernetes_default_drops_requests_on_the_seed_app():
    # Given the example app and a plain rolling update / Then requests fail, the new pods Ready before the ALB has
    # them
    r = simulate(SEED_APP, "kubernetes-default", lower_bound=False)
    assert r.outcome == SUCCEEDED and r.final_image == "ikubernetes/myapp:v2"
    assert r.failed_requests > 100


def test_readiness_gate_keeps_targets_but_old_pods_without_prestop_still_refuse():
    # The controller's documented fix: no request finds the ALB without a ready target, yet pods without a preStop
    # get SIGTERM while the ALB still sends them new requests (the deregistration lag)
    r = simulate(SEED_APP, "readiness-gate", lower_bound=False)
    assert r.outcome == SUCCEEDED
    assert set(r.failed_by_cause) == {"connection_refused_terminated"}
    assert r.failed_requests < simulate(SEED_APP, "kubernetes-default", lower_bound=False).failed_requests


@pytest.mark.parametrize("strategy", ["oracle", "readiness-gate"])
def test_gated_rollout_of_a_hardened_app_drops_nothing(strategy):
    # Given pods that sleep 30 s in preStop (longer than the 10 s lag) / Then no request fails at all
    r = simulate(labelled(HARDENED) if strategy == "oracle" else HARDENED, strategy, lower_bound=False)
    assert r.outcome == SUCCEEDED
    assert r.failed_requests == 0 and r.requests > 2000


def test_oracle_on_the_seed_app_loses_only_what_the_old_pods_refuse():
    # The first gated rollout cannot change the running pods' preStop (it hardens the new template only), so
    # what it loses is the old pods refusing during the lag: no 503, no request to a pod not serving
    r = simulate(labelled(SEED_APP), "oracle", lower_bound=False)
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


# ---------------------------------------------------------------------------------------------------------
# The oracle follows albgate's rules; the ideal poller is the oracle seeing health once per interval
# ---------------------------------------------------------------------------------------------------------
LARGE = labelled(strategies.bootstrap_hardened(load_scenario(SCENARIOS / "large-deployment.yaml")))


def albgate_gate_opened(kind: str, text: str) -> bool:
    """A timeline line saying albgate's gate opened on a pod (in a labelled namespace the controller's own gate
    opens on the same pods too)."""
    return kind == "gate" and f"{ALBGATE_GATE}=True" in text


def gate_openings(r) -> list[float]:
    """The distinct instants at which a strategy opened albgate's gate on some pods."""
    return sorted({t for t, kind, text in r.timeline if albgate_gate_opened(kind, text)})


def test_the_oracle_releases_a_steps_pods_together_as_albgates_gate_does():
    # Given 100 replicas rolled in steps of 1, 24, 25 and 50 pods
    r = simulate(LARGE, "oracle", 3, lower_bound=False)
    assert r.outcome == SUCCEEDED
    # Then the gate opens once per step (all of the step's pods at once), not once per pod as each turns healthy
    assert len(gate_openings(r)) == 4
    opened = [text for _, kind, text in r.timeline if albgate_gate_opened(kind, text)]
    assert len(opened) == 100


def test_the_oracle_deregisters_a_leaving_pods_target_at_once():
    r = simulate(labelled(strategies.bootstrap_hardened(SEED_APP)), "oracle", lower_bound=False)
    assert sum("oracle deregisters" in text for _, _, text in r.timeline) == 3


@pytest.mark.parametrize("seed", [1, 7, 35])
def test_the_ideal_poller_is_never_faster_than_the_oracle_and_at_most_one_look_per_step_slower(seed):
    # Given the example app, three steps of one pod, its target group checked every 5 s
    prepared = labelled(strategies.bootstrap_hardened(SEED_APP))
    oracle = simulate(prepared, "oracle", seed, lower_bound=False)
    ideal = simulate(labelled(SEED_APP), "ideal-poller", seed)
    # Then it ends as the oracle does, and its bound is the oracle's in the same world
    assert (ideal.outcome, ideal.final_image, ideal.failed_requests) == (SUCCEEDED, "ikubernetes/myapp:v2", 0)
    assert ideal.lower_bound_seconds == oracle.rollout_seconds
    # And it loses at most one interval per step to seeing health only at its looks, and nothing else
    assert oracle.rollout_seconds <= ideal.rollout_seconds <= oracle.rollout_seconds + 3 * 5 + 1e-6
    # And it opens gates only at its looks: whole intervals apart
    opened = gate_openings(ideal)
    assert len(opened) == 3
    assert all(abs((b - a) / 5 - round((b - a) / 5)) < 1e-6 for a, b in zip(opened, opened[1:]))
    # And it costs the load balancer nothing (no DescribeTargetHealth call of its own)
    assert ideal.describe_target_health_calls == 0


def test_the_ideal_poller_looks_once_per_interval():
    from albgate.sim.runner import run_strategy

    sim, run = run_strategy(labelled(SEED_APP), "ideal-poller", 1)
    assert run.outcome == SUCCEEDED and run.seconds is not None
    assert run.extra["looks"] in (int(run.seconds // 5), int(run.seconds // 5) + 1)


def test_a_lower_bound_is_given_only_for_a_rollout_that_ended_the_way_the_oracle_did():
    # Given throttled-account on a starved bucket (0.01 tokens/s: the controller gets nearly no call, so its gate
    # never opens), where the oracle still gets through (it sees the targets for free and registers missing ones
    # as albgate does) / When the controller's gate alone is measured
    shipped = load_scenario(SCENARIOS / "throttled-account.yaml")
    throttled = shipped.model_copy(update={"alb": shipped.alb.model_copy(
        update={"describe_bucket_refill_per_second": 0.01})})
    assert simulate(throttled, "oracle", 1, lower_bound=False).outcome == "succeeded"
    r = simulate(throttled, "readiness-gate", 1)
    # Then there is no bound: the oracle's rollback says nothing about a rollout that failed (or succeeded)
    assert r.outcome == "failed" and r.lower_bound_seconds is None


@pytest.mark.parametrize("lag", [10, 40])
def test_the_oracle_ends_its_last_step_where_albgates_last_drain_can_pass(lag):
    from albgate.sim.runner import run_strategy

    # Given the example app, its released pods sleeping 30 s in preStop, behind a load balancer that still sends a
    # deregistered target new requests for `lag` seconds
    sc = labelled(strategies.bootstrap_hardened(SEED_APP)).with_changes(alb={"deregistration_lag_seconds": lag})
    sim, run = run_strategy(sc, "oracle", 1)
    last = max(t for t, _, _, _, to, _ in sim.alb.transitions if to == "draining")
    # Then where the preStop covers the lag it ends as the last old target turns draining, as albgate's last drain
    # passes once every released target is draining; where it does not, once the lag is over
    assert run.outcome == SUCCEEDED
    assert run.finished_at == pytest.approx(last if lag <= 30 else last + lag)
