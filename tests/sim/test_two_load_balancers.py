"""Several Ingresses on one Service (extra_ingresses): one target group each, each with its own registration
time and health check, traffic split between them; a pod serves a group only once healthy there."""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate.sim import Simulation, load_scenario
from albgate.sim.runner import run_strategy

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "two-load-balancers.yaml"


def test_each_ingress_has_its_own_target_group_and_settings():
    sim = Simulation(load_scenario(SCENARIO))
    groups = sorted(sim.alb.tgs.values(), key=lambda g: g.registration is not None)
    assert len(groups) == 2 and len(sim.traffic.tgs) == 2
    assert groups[0].registration is None and groups[1].registration == (30.0, 60.0)
    assert {g.interval for g in groups} == {15}  # neither Ingress sets the health check: the controller's default


def test_the_slow_group_holds_a_gated_rollout_until_its_targets_are_healthy():
    sim, run = run_strategy(load_scenario(SCENARIO), "hardened-readiness-gate")
    assert run.outcome == "succeeded" and sim.traffic.failed_requests == 0
    # the new pods are healthy in both groups at the end (the old ones' targets shown draining until their delay
    # ends), and each group got its share of the requests
    new_ips = {p.ip for p in sim.cluster.pods.values() if not p.terminating and not p.exited}
    for tg in sim.alb.tgs.values():
        assert {t.state for ip, t in tg.targets.items() if ip in new_ips} == {"healthy"}
        assert {t.state for ip, t in tg.targets.items() if ip not in new_ips} <= {"draining"}


def test_ingress_names_must_differ():
    with pytest.raises(Exception, match="ingress names must differ"):
        load_scenario(SCENARIO).with_changes(extra_ingresses=[{"name": "myapp-ingress"}])
