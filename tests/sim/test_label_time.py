"""The time the namespace is labelled (namespace.labelled_at_seconds): the controller's webhook gates only the
pods created after it, as the real one acts only at pod CREATE (docs/facts.md, Load Balancer Controller:
readiness gate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate.sim import load_scenario
from albgate.sim.runner import run_strategy
from lambdas.domain.ports import LBC_GATE_PREFIX

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def gated(pod) -> bool:
    return any(g.startswith(LBC_GATE_PREFIX) for g in pod.readiness_gates)


def test_pods_born_before_the_label_have_no_gate_and_after_it_have_one():
    # Given a rollout during which the namespace is labelled, 5 s in
    sim, run = run_strategy(load_scenario(SCENARIOS / "labelled-mid-rollout.yaml"), "readiness-gate")
    label_time = sim.rel_to_abs(5)
    pods = sim.cluster.all_pods
    # Then every pod created before the label has no controller gate, and every one created after has one
    early, late = [p for p in pods if p.created_at < label_time], [p for p in pods if p.created_at > label_time]
    assert early and late and run.outcome == "succeeded"
    assert not any(gated(p) for p in early) and all(gated(p) for p in late)


def test_a_label_time_and_a_label_state_together_are_refused():
    with pytest.raises(Exception, match="labelled_at_seconds"):
        load_scenario(SCENARIOS / "seed-app.yaml").with_changes(
            namespace={"inject_label": "before_pods", "labelled_at_seconds": 10})
