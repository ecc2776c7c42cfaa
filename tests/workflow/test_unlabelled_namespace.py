"""albgate's state machine rolling the example app in a namespace without the controller's inject label.

There no pod carries the Load Balancer Controller's gate, so a new pod held by albgate's gate alone turns
ContainersReady without changing anything the controller watches, and the controller (v3.5.0, what albgate
installs) does not reconcile to register it (docs/facts.md, "Load Balancer Controller: requeue and back-off by
version"). albgate registers it itself once the grace has passed; the controller's later reconciles find the
target there and leave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import lambdas.domain.rollout.targets as targets_module
from albgate.sim import load_scenario
from albgate.sim.albgate_strategy import run_albgate
from albgate.sim.manifests import bootstrap_hardened
from albgate.sim.runner import run_strategy
from albgate.sim.strategies import register_strategy
from albgate.template import use_template
from lambdas.domain.ports import DRAINING, INJECT_LABEL, LBC_GATE_PREFIX

SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"


@pytest.fixture(scope="module", autouse=True)
def _session_template(template):
    """Run the definition the test session synthesized (tests/conftest.py), not a second synth."""
    use_template(template)


@dataclass
class Seen:
    registrations: list[tuple[float, list[str], int]] = field(default_factory=list)  # (t, IPs, reconciles so far)
    new_ips: set[str] = field(default_factory=set)  # IPs the pods of the rolled-out version held
    gates: set[str] = field(default_factory=set)  # readiness gates any pod carried


def roll_unlabelled(name: str):
    """Run albgate's state machine on the example app prepared as its bootstrap would, but with the namespace left
    without the inject label; record albgate's RegisterTargets calls and the new version's pods."""
    seen = Seen()

    def run(sim):
        inner, image = sim.alb.register_targets, sim.scenario.rollout.image

        def register_targets(arn, targets, caller):
            seen.registrations.append((sim.clock.now(), [ip for ip, _ in targets],
                                       sum(b.reconciles for b in sim.lbc.bindings)))
            inner(arn, targets, caller)

        def watch():
            for p in sim.cluster.pods.values():
                seen.gates.update(p.readiness_gates)
                if p.ip and p.template.containers[0].image == image:
                    seen.new_ips.add(p.ip)

        sim.alb.register_targets = register_targets
        sim.add_observer(watch)
        try:
            return run_albgate(sim)
        finally:
            sim.remove_observer(watch)

    register_strategy(name, run, prepare=lambda scenario: bootstrap_hardened(scenario, label_namespace=False))
    sim, result = run_strategy(load_scenario(SEED_APP), name)
    assert INJECT_LABEL not in sim.cluster.namespaces["readiness"]
    assert seen.new_ips and not any(g.startswith(LBC_GATE_PREFIX) for g in seen.gates)
    return sim, result, seen


def test_albgate_registers_the_pods_nobody_registers_and_the_rollout_succeeds():
    # Given the example app in a namespace without the inject label (no pod carries the controller's gate)
    # When albgate's state machine rolls it under traffic
    sim, run, seen = roll_unlabelled("albgate-unlabelled")
    # Then it succeeds without a failed request
    assert run.outcome == "succeeded", run.detail
    assert sim.traffic.failed_requests == 0, dict(sim.traffic.failed)
    assert sim.current_image() == "ikubernetes/myapp:v2"
    # And albgate registered new pods only (the first step's at least; a later step's pod may be registered by
    # the reconcile an old pod's leaving the endpoints starts)
    registered = {ip for _, ips, _ in seen.registrations for ip in ips}
    assert registered and registered <= seen.new_ips
    # And the controller reconciled the binding after that and left those targets alone: each was registered
    # once, never deregistered, and is healthy at the end
    _, _, reconciles_then = seen.registrations[0]
    assert sum(b.reconciles for b in sim.lbc.bindings) > reconciles_then
    for ip in registered:
        moves = [(before, after) for _, _, tip, before, after, _ in sim.alb.transitions if tip == ip]
        assert [m for m in moves if m[0] == "(none)"] == [("(none)", "initial")], moves
        assert all(after != DRAINING for _, after in moves), moves
        assert [t.state for tg in sim.alb.tgs.values() for t in tg.targets.values() if t.ip == ip] == ["healthy"]


def test_without_albgates_registration_the_first_step_never_passes_and_rolls_back(monkeypatch):
    # Given albgate that never registers a target itself (its grace never ends)
    monkeypatch.setattr(targets_module, "REGISTRATION_GRACE_SECONDS", float("inf"))
    # When it rolls the example app in the namespace without the inject label
    sim, run, seen = roll_unlabelled("albgate-unlabelled-no-registration")
    # Then nothing ever registers the new version's pods: the first step times out and albgate rolls back,
    # dropping nothing
    assert run.outcome == "rolled_back" and "step 1/" in run.detail, run.detail
    assert sim.traffic.failed_requests == 0
    assert sim.current_image() == "ikubernetes/myapp:v1"
    assert seen.registrations == []
    registered = {ip for _, _, ip, before, _, _ in sim.alb.transitions if before == "(none)"}
    assert not registered & seen.new_ips
