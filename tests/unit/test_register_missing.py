"""albgate registering a step's new pods that nobody registered (domain/gate.py ``targets_to_register``, the gate's
use case ``targets.register_missing``), and what of it the rollout's state carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate.sim import Simulation, load_scenario
from albgate.sim.manifests import bootstrap_hardened
from albgate.sim.lbc import DEFAULT_REQUEUE_SECONDS
from albgate.sim.scenario import ControllerSpec
from lambdas.domain.gate import (
    CONTROLLER_RECONCILE_ALLOWANCE_SECONDS,
    CONTROLLER_REQUEUE_SECONDS,
    REGISTRATION_GRACE_SECONDS,
    targets_to_register,
)
from lambdas.domain.models import parse_request
from lambdas.domain.ports import ALBGATE_GATE, Pod, PodCondition, Service, ServicePort, TargetGroupBinding, TargetHealth
from lambdas.domain.rollout import gate, step
from lambdas.domain.rollout.preflight import preflight
from lambdas.domain.rollout.targets import binding_target_port, register_missing
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo

TG_A = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1"
TG_B = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/2"
GRACE = 30.0
NOW = 1000.0


def pod(ip: str | None, *, ready: bool = True, terminating: bool = False) -> Pod:
    condition = PodCondition("ContainersReady", "True" if ready else "False")
    return Pod(namespace="readiness", name=f"p-{ip}", uid=f"u-{ip}", ip=ip, labels={}, phase="Running",
               readiness_gates=(ALBGATE_GATE,), conditions=(condition,), terminating=terminating, restart_count=0,
               created_at=0.0)


def th(ip: str, state: str, port: int = 80) -> TargetHealth:
    return TargetHealth(target_id=ip, port=port, state=state)


A, B = "10.0.0.1", "10.0.0.2"
LONG_AGO, JUST_NOW = NOW - GRACE, NOW - GRACE + 1

REGISTER_CASES = [
    # id, candidates, health, ports by group, since, expected registrations, expected since, unknown port
    ("registered-already", [pod(A)], {TG_A: [th(A, "initial")]}, {TG_A: 80}, {TG_A: LONG_AGO}, {}, {}, ()),
    # an old pod's target on the same IP, shown draining until its delay ends: the new pod's is missing
    ("draining-is-missing", [pod(A)], {TG_A: [th(A, "draining")]}, {TG_A: 80}, {TG_A: LONG_AGO}, {TG_A: [(A, 80)]}, {},
     ()),
    ("draining-first-seen", [pod(A)], {TG_A: [th(A, "draining")]}, {TG_A: 80}, {}, {}, {TG_A: NOW}, ()),
    ("first-seen-missing", [pod(A)], {TG_A: []}, {TG_A: 80}, {}, {}, {TG_A: NOW}, ()),
    ("missing-less-than-grace", [pod(A)], {TG_A: []}, {TG_A: 80}, {TG_A: JUST_NOW}, {}, {TG_A: JUST_NOW}, ()),
    ("missing-long-enough", [pod(A)], {TG_A: [th("10.0.9.9", "healthy", 8080)]}, {TG_A: 8080}, {TG_A: LONG_AGO},
     {TG_A: [(A, 8080)]}, {}, ()),
    ("every-missing-pod-of-the-group", [pod(A), pod(B)], {TG_A: [th("10.0.9.9", "healthy")]}, {TG_A: 80},
     {TG_A: LONG_AGO}, {TG_A: [(A, 80), (B, 80)]}, {}, ()),
    ("terminating", [pod(A, terminating=True)], {TG_A: []}, {TG_A: 80}, {TG_A: LONG_AGO}, {}, {}, ()),
    ("not-containers-ready", [pod(A, ready=False)], {TG_A: []}, {TG_A: 80}, {TG_A: LONG_AGO}, {}, {}, ()),
    ("no-ip-yet", [pod(None)], {TG_A: []}, {TG_A: 80}, {TG_A: LONG_AGO}, {}, {}, ()),
    ("unknown-port", [pod(A)], {TG_A: []}, {}, {TG_A: LONG_AGO}, {}, {TG_A: LONG_AGO}, (TG_A,)),
    ("unknown-port-not-due-yet", [pod(A)], {TG_A: []}, {}, {}, {}, {TG_A: NOW}, ()),
    ("two-groups-one-missing", [pod(A)], {TG_A: [th(A, "healthy")], TG_B: []}, {TG_A: 80, TG_B: 80},
     {TG_B: LONG_AGO}, {TG_B: [(A, 80)]}, {}, ()),
    ("nothing-missing-any-more-forgets-the-group", [pod(A)], {TG_A: [th(A, "healthy")]}, {TG_A: 80},
     {TG_A: JUST_NOW}, {}, {}, ()),
]


@pytest.mark.parametrize("candidates,health,ports,since,register,missing_since,unknown",
                         [c[1:] for c in REGISTER_CASES], ids=[c[0] for c in REGISTER_CASES])
def test_which_new_targets_albgate_registers(candidates, health, ports, since, register, missing_since, unknown):
    result = targets_to_register(candidates=candidates, health=health, ports_by_group=ports, since=since, now=NOW,
                                 grace=GRACE)
    assert (result.register, result.missing_since, result.unknown_port) == (register, missing_since, unknown)


def test_the_grace_leaves_the_controller_a_requeue_and_a_reconcile_more():
    # Given the controller's requeue as the simulated controller has it (docs/facts.md, "Load Balancer Controller:
    # registration and timing") and its default watch-to-reconcile latency
    requeue, latency = DEFAULT_REQUEUE_SECONDS, ControllerSpec().reconcile_latency_seconds
    # Then albgate's grace is that requeue and an allowance for the reconcile, which covers the latency
    assert CONTROLLER_REQUEUE_SECONDS == requeue
    assert REGISTRATION_GRACE_SECONDS == requeue + CONTROLLER_RECONCILE_ALLOWANCE_SECONDS >= requeue + latency


def binding(port: int | str) -> TargetGroupBinding:
    return TargetGroupBinding("readiness", "k8s-b", TG_A, "ip", "svc", port)


SERVICES = [Service("readiness", "svc", {"app": "a"}, (ServicePort(80, 8080, "http"), ServicePort(81, "web", "alt")))]


@pytest.mark.parametrize("service_port,expected", [(80, 8080), ("http", 8080), ("80", 8080), (81, None), (82, None)],
                         ids=["by-number", "by-name", "number-as-text", "named-target-port", "no-such-port"])
def test_the_port_a_binding_registers_on_comes_from_its_services_target_port(service_port, expected):
    assert binding_target_port(binding(service_port), SERVICES) == expected


def test_a_binding_whose_service_is_gone_has_no_port():
    assert binding_target_port(binding(80), []) is None


# --- the state ----------------------------------------------------------------------------------------------
def group(arn: str) -> TargetGroupInfo:
    return TargetGroupInfo(arn=arn, service="svc", health_check_interval_seconds=15, healthy_threshold=2,
                           deregistration_delay_seconds=300)


def test_only_the_current_step_carries_its_groups_first_sightings_by_group_number():
    state = RolloutState(
        request=parse_request({"cluster": "c", "namespace": "readiness", "deployment": "d", "container": "c",
                               "image": "nginx:2"}),
        execution_name="e", started_at=1.0, replicas=3, plan=[1, 3], target_image="nginx:2", previous_image="nginx:1",
        previous_revision=1, original_max_surge=1, original_max_unavailable=0, target_groups=[group(TG_A), group(TG_B)],
        steps=[StepRecord(step=1, mode="rollout", target=1, started_at=1.0, unregistered_since={TG_A: 5.0},
                          registered_total=2),
               StepRecord(step=2, mode="rollout", target=3, started_at=9.0, unregistered_since={TG_B: 12.5},
                          registered_total=1)],
    )
    carried = state.dump()
    assert [r["unregistered_since"] for r in carried["steps"]] == [{}, {"#1": 12.5}]
    assert [r["registered_total"] for r in carried["steps"]] == [2, 1]
    again = RolloutState.model_validate(carried)
    assert again.steps[-1].unregistered_since == {TG_B: 12.5}
    assert again.dump() == carried


# --- the gate's use case, on the simulated cluster of a namespace without the controller's inject label --------
SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"


@pytest.fixture
def sim() -> Simulation:
    s = Simulation(bootstrap_hardened(load_scenario(SEED_APP), label_namespace=False))
    s.run_until(s.rollout_start)
    return s


def started(sim: Simulation) -> RolloutState:
    state = preflight(sim.ports, sim.rollout_request(), "t1")
    return step.start_step(sim.ports, RolloutState.model_validate(state.dump()))


def look(sim: Simulation, state: RolloutState) -> RolloutState:
    return RolloutState.model_validate(gate.check_target_health(sim.ports, state).dump())


def new_pod_ip(sim: Simulation) -> str:
    (p,) = [p for p in sim.cluster.pods.values() if ALBGATE_GATE in p.readiness_gates and p.containers_ready]
    assert p.ip
    return p.ip


def test_the_gate_registers_a_new_pod_nobody_registered_once_the_grace_has_passed(sim):
    # Given the first step's pod ContainersReady in a namespace without the inject label: nothing registers it
    state = started(sim)
    sim.run_until(sim.clock.now() + 60, stop=lambda: any(
        ALBGATE_GATE in p.readiness_gates and p.containers_ready for p in sim.cluster.pods.values()))
    ip = new_pod_ip(sim)
    (tg,) = sim.alb.tgs.values()
    # When the gate looks / Then it waits and notes when it first saw the pod missing
    state = look(sim, state)
    first = state.steps[-1].unregistered_since[tg.arn]
    assert state.gate.status.value == "WAITING" and state.gate.unregistered == 1 and ip not in tg.targets
    # And until the grace has passed, later looks register nothing
    sim.advance(REGISTRATION_GRACE_SECONDS - 1)
    state = look(sim, state)
    assert ip not in tg.targets and state.steps[-1].unregistered_since[tg.arn] == first
    # When it looks once the pod has been missing for the grace
    sim.advance(1)
    state = look(sim, state)
    # Then it registered the pod on the port of the group's other targets, said so, and counts it
    assert sim.alb.register_calls["albgate"] == 1 and tg.targets[ip].state == "initial"
    assert "albgate registered 1 new target(s)" in state.gate.reason
    assert state.steps[-1].registered_total == 1 and state.steps[-1].unregistered_since == {}


def test_a_group_without_targets_learns_the_port_from_its_binding_and_service(sim):
    # Given a step's pod missing for the grace from a group whose targets' port albgate never saw
    state = started(sim)
    sim.run_until(sim.clock.now() + 60, stop=lambda: any(
        ALBGATE_GATE in p.readiness_gates and p.containers_ready for p in sim.cluster.pods.values()))
    ip = new_pod_ip(sim)
    (g,) = state.target_groups
    assert g.target_port is None
    record = state.steps[-1]
    record.unregistered_since = {g.arn: sim.clock.now() - REGISTRATION_GRACE_SECONDS}
    candidates = [p.snapshot() for p in sim.cluster.pods.values() if ALBGATE_GATE in p.readiness_gates]
    registered = []
    sim.alb.register_targets = lambda arn, targets, caller: registered.append((arn, targets, caller))
    # When the gate's look finds the group empty
    note = register_missing(sim.ports, state, candidates, {g.arn: []}, record, sim.clock.now())
    # Then the port is the Service's numeric targetPort the binding names, kept for the next looks
    port = sim.scenario.app.port
    assert registered == [(g.arn, [(ip, port)], "albgate")] and g.target_port == port
    assert "registered 1 new target(s)" in note
