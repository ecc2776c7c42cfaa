"""A version whose ALB health check fails while Kubernetes sees it healthy (faults.broken_mode: health_path_404):
the kubelet's probe passes and users are served, but every new target goes `unhealthy`
(Target.ResponseCodeMismatch), so only a gate on the load balancer's own view stops the rollout."""

from __future__ import annotations

from pathlib import Path

from albgate.sim import load_scenario
from albgate.sim.runner import run_strategy, simulate

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "health-path-404.yaml"


def test_the_probe_passes_users_are_served_and_the_alb_check_fails():
    # Given a plain rolling update of the new version
    sim, run = run_strategy(load_scenario(SCENARIO), "kubernetes-default")
    # Then Kubernetes finished it (the probe passed), no request failed with an app error, and every target the
    # ALB has for the new pods (the old ones' shown draining until their delay ends) is unhealthy with the ALB's
    # reason for a wrong status code
    assert run.outcome == "succeeded" and "app_error" not in sim.traffic.failed
    targets = [t for tg in sim.alb.tgs.values() for t in tg.targets.values() if t.state != "draining"]
    assert targets and all((t.state, t.reason) == ("unhealthy", "Target.ResponseCodeMismatch") for t in targets)


def test_the_controllers_gate_never_opens_so_a_gated_rollout_stalls_without_drops():
    r = simulate(load_scenario(SCENARIO), "readiness-gate", lower_bound=False)
    assert r.outcome == "failed" and r.failed_requests == 0
