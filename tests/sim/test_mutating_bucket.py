"""RegisterTargets and DeregisterTargets: the account's bucket of their own, the Load Balancer Controller's
client-side limit that waits for a token inside a reconcile (docs/facts.md, "ELB API throttling" and "Load Balancer
Controller: registration and timing"), and albgate leaving the deregistrations to a controller that keeps up."""

from __future__ import annotations

from pathlib import Path

import pytest

import albgate.sim.albgate_strategy  # noqa: F401 - registers the albgate strategy
from albgate.sim import Simulation, load_scenario
from albgate.sim.fleet import run_fleet
from albgate.sim.lbc import MUTATING_CLIENT_BURST, MUTATING_CLIENT_RATE, WaitLimiter, rules_for
from albgate.sim.runner import run_strategy
from lambdas.domain.errors import ThrottledError
from lambdas.domain.ports import DeploymentPatch
from tests.sim.conftest import scenario, started

ROOT = Path(__file__).resolve().parents[2]
HARDENED = load_scenario(ROOT / "scenarios" / "seed-app-hardened.yaml")
V2 = "ikubernetes/myapp:v2"


def test_the_limiter_lets_a_burst_through_then_one_call_every_refill_period_in_order():
    lim = WaitLimiter(4.0, 20, now=100.0)
    # twenty at once go at once; the next ones wait a quarter of a second more each, none refused
    assert [lim.reserve(100.0) for _ in range(20)] == [0.0] * 20
    assert [lim.reserve(100.0) for _ in range(3)] == pytest.approx([0.25, 0.5, 0.75], abs=1e-9)
    # five seconds later the debt (3 tokens) is paid and 17 more are back, never more than the burst
    assert lim.reserve(105.0) == 0.0 and lim.tokens == pytest.approx(16.0, abs=1e-9)
    assert lim.reserve(1000.0) == 0.0 and lim.tokens == pytest.approx(19.0, abs=1e-9)


def test_the_controllers_limit_is_the_documented_default_from_v2_4_4_on():
    assert (MUTATING_CLIENT_RATE, MUTATING_CLIENT_BURST) == (4.0, 20)
    assert not rules_for("v2.4.3").mutating_client_limit
    assert rules_for("v2.4.4").mutating_client_limit and rules_for("v3.5.0").mutating_client_limit


def test_a_clients_call_over_the_bucket_is_throttled_and_changes_nothing():
    # Given an account whose RegisterTargets/DeregisterTargets bucket holds two tokens, refilled slowly
    sim = started(scenario(alb={"mutating_bucket_capacity": 2, "mutating_bucket_refill_per_second": 0.01}))
    tg = next(iter(sim.alb.tgs.values()))
    ips = sorted(tg.targets)
    # When a client deregisters three targets, one call each
    sim.alb.deregister_targets(tg.arn, [(ips[0], tg.port)], "albgate")
    sim.alb.deregister_targets(tg.arn, [(ips[1], tg.port)], "albgate")
    with pytest.raises(ThrottledError, match="DeregisterTargets operation: Rate exceeded"):
        sim.alb.deregister_targets(tg.arn, [(ips[2], tg.port)], "albgate")
    # Then the first two drain, the third still serves, and the calls are counted by caller
    assert [tg.targets[ip].state for ip in ips] == ["draining", "draining", "healthy"]
    assert (sim.alb.mutating_calls["albgate"], sim.alb.mutating_throttled["albgate"]) == (3, 1)
    # And a caller outside the account's limits (the oracle) is not charged
    sim.alb.deregister_targets(tg.arn, [(ips[2], tg.port)], "oracle", charged=False)
    assert tg.targets[ips[2]].state == "draining" and sim.alb.mutating_calls["oracle"] == 0


def owe(sim: Simulation, tokens: float) -> None:
    """The controller's limiter owes ``tokens`` from now on (its reservations reach that far ahead)."""
    sim.lbc.mutating_limiter.tokens, sim.lbc.mutating_limiter.last = -tokens, sim.clock.t


def _roll_and_register(sim: Simulation) -> tuple[float, float]:
    """Roll to v2; (the roll's time, when the first v2 pod's target appeared in the group)."""
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    rolled = sim.clock.t
    tg = next(iter(sim.alb.tgs.values()))
    while not [p for p in sim.cluster.all_pods if p.version == V2 and p.ip in tg.targets]:
        sim.advance(0.05)
    return rolled, sim.clock.t


def test_a_reconcile_waits_for_its_client_side_token_then_registers():
    # Given the same world twice, in the second the controller's limiter owing 40 tokens (10 s at 4 a second)
    base = scenario(namespace={"inject_label": "before_pods"})
    free, owing = started(base, seed=3), started(base, seed=3)
    owe(owing, 40)
    # When the Deployment rolls
    rolled, registered = _roll_and_register(free)
    rolled_owing, registered_owing = _roll_and_register(owing)
    # Then without the debt the target is registered within seconds of the roll; with it at the time of the first
    # token the reconcile could reserve: the 41st, 41 / 4 = 10.25 s after the debt began, none refused
    assert registered - rolled < 10
    assert registered_owing - rolled_owing == pytest.approx(10.25, abs=0.06)
    assert owing.alb.mutating_throttled["controller"] == 0


def test_a_reconcile_waiting_for_its_token_holds_the_binding_and_runs_again_after():
    sim = started(scenario(namespace={"inject_label": "before_pods"}), seed=3)
    owe(sim, 40)
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    b = sim.lbc.bindings[0]
    sim.advance(8)
    # the reconcile that must register waits: the binding is held
    assert b.busy and not b.dirty
    # and what comes for the binding meanwhile (a watched change) is kept for after it, not run beside it
    reconciles = b.reconciles
    sim.lbc._enqueue(b, sim.clock.t)
    sim.advance(0.5)
    assert b.busy and b.dirty and b.reconciles == reconciles
    while b.busy:
        sim.advance(0.01)
    # once the held reconcile is done, the change kept for it runs: one reconcile, nothing more kept
    assert not b.dirty and b.reconciles == reconciles + 1


def test_without_the_client_side_limit_a_throttled_registration_backs_off_and_registers_nothing():
    # Given a controller older than v2.4.4 and an account whose mutating bucket is empty and barely refilled
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"version": "v2.4.3"},
                           alb={"mutating_bucket_capacity": 1, "mutating_bucket_refill_per_second": 0.01}))
    sim.alb.mutating_bucket.tokens = 0.0
    tg = next(iter(sim.alb.tgs.values()))
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    sim.advance(30)
    # Then its RegisterTargets were refused, each sending the binding through the rate limiter, and the new pod
    # has no target
    assert sim.alb.mutating_throttled["controller"] >= 3 and sim.lbc.bindings[0].failures >= 3
    assert not [p for p in sim.cluster.all_pods if p.version == V2 and p.ip in tg.targets]


def test_a_reconcile_waiting_for_its_token_dies_with_its_process():
    # Given a reconcile waiting for its token (owed until 10.25 s after the roll) when the controller goes down
    # 8 s after the roll, for a minute
    sim = started(scenario(namespace={"inject_label": "before_pods"},
                           faults={"controller_outages": [{"at_seconds": 8, "duration_seconds": 60}]}), seed=3)
    owe(sim, 40)
    tg = next(iter(sim.alb.tgs.values()))
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    sim.advance(7.9)
    assert sim.lbc.bindings[0].busy
    sim.advance(40)
    # Then nothing it meant to register was registered at its token's time, the controller being down
    new_ips = {p.ip for p in sim.cluster.all_pods if p.version == V2 and p.ip}
    assert new_ips and not (new_ips & set(tg.targets))
    # And the new leader registers it after its resync
    sim.advance(60)
    assert new_ips <= set(tg.targets)


def test_where_the_controller_opens_the_gates_albgate_leaves_it_every_deregistration():
    # Given ten copies of the hardened app rolled within 10 s, the controller's gate on the pods
    result = run_fleet(HARDENED.with_changes(fleet={"deployments": 10, "start_within_seconds": 10}), "albgate")
    # Then every rollout succeeded without a drop, and albgate made no RegisterTargets/DeregisterTargets call: the
    # controller, which opened every step's gate, deregistered every released target
    assert result.failed_rollouts == 0 and result.failed_requests == 0
    assert "albgate" not in result.mutating_calls_by_caller
    assert result.mutating_calls_by_caller["controller"] >= 10 * 6 and result.mutating_throttled_by_caller == {}


@pytest.mark.parametrize("seed", [1, 2])
def test_on_auto_mode_with_the_register_bucket_all_but_empty_no_old_pod_goes_while_its_target_takes_requests(seed):
    # Given EKS Auto Mode (no checkpoint on the bindings) and an account whose RegisterTargets/DeregisterTargets
    # bucket holds 1 token, refilled every 50 s: the managed controller's calls wait minutes, and albgate registers
    # a target itself in seed 1
    sc = load_scenario(ROOT / "scenarios" / "auto-mode.yaml").with_changes(
        alb={"mutating_bucket_capacity": 1, "mutating_bucket_refill_per_second": 0.02})
    sim, run = run_strategy(sc, "albgate", seed)
    # Then every step's old pods left the pool before their release, proven by a look or albgate's own call: the
    # rollout succeeds slowly and drops nothing (before, 168 and 191 requests were lost)
    assert run.outcome == "succeeded" and sim.traffic.failed_requests == 0
    assert sim.alb.mutating_throttled["controller"] > 20
