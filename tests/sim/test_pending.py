"""The `faults.pods_pending` fault: pods the scheduler cannot place stay Pending, Unschedulable, with no IP.

What the fake models: while a window holds a pod's image, the pod is not bound to a node, so it is phase
Pending with PodScheduled=False reason Unschedulable (kubernetes core/v1 PodReasonUnschedulable) and no IP,
never starts, is never registered; when the window ends it is scheduled and starts as any pod does. It does
not model nodes, resources, the scheduler's queue or its retry back-off.
"""

from __future__ import annotations

import pytest

from albgate.sim import ScenarioError, Simulation, load_scenario, parse_scenario, simulate
from lambdas.domain.gate import Verdict, evaluate_gate
from lambdas.domain.ports import DeploymentPatch, PodCondition
from tests.sim.conftest import SCENARIOS, scenario, started

V1, V2, V3 = "ikubernetes/myapp:v1", "ikubernetes/myapp:v2", "ikubernetes/myapp:v3"


def _set_image(sim: Simulation, image: str = V2) -> None:
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": image}))


def _pods(sim: Simulation, image: str):
    ns, labels = sim.scenario.namespace.name, sim.scenario.app.labels
    return [p for p in sim.kube.list_pods(ns, labels) if sim.cluster.pods[(ns, p.name)].version == image]


def _registered_ips(sim: Simulation) -> set[str]:
    return {ip for tg in sim.alb.tgs.values() for ip in tg.targets}


def _pending(**window) -> dict:
    return {"pods_pending": [{"at_seconds": 0, **window}]}


UNSCHEDULABLE = PodCondition("PodScheduled", "False", "Unschedulable")


def test_new_pods_stay_pending_unschedulable_with_no_ip_for_good():
    # Given the new version's pods cannot be scheduled from the rollout start, for good
    sim = started(scenario(faults=_pending(images="new")))
    # When the image changes and ten minutes pass
    _set_image(sim)
    sim.advance(600)
    # Then each new pod is Pending, PodScheduled=False Unschedulable, without an IP or a waiting reason
    new = _pods(sim, V2)
    assert new, "the Deployment controller created new pods"
    for p in new:
        assert (p.phase, p.ip, p.containers_ready, p.ready, p.waiting_reason) == ("Pending", None, False, False, "")
        assert UNSCHEDULABLE in p.conditions
    # and nothing of the new version was ever registered, while every old pod still runs and serves
    assert not any(p.ip for p in new) and len(_registered_ips(sim)) == 3
    old = _pods(sim, V1)
    assert len(old) == 3 and all(p.phase == "Running" and p.ready for p in old)
    assert sim.traffic.failed_requests == 0


def test_a_pod_held_by_a_window_is_scheduled_when_it_ends_and_starts_as_usual():
    # Given the new version cannot be scheduled for the rollout's first 60 s
    sim = started(scenario(faults=_pending(duration_seconds=60)))
    _set_image(sim)
    # When 59 s have passed, the new pod is still unscheduled
    sim.run_until(sim.rollout_start + 59.9)
    (held,) = _pods(sim, V2)
    assert held.ip is None and UNSCHEDULABLE in held.conditions
    # Then at the window's end it gets an IP (PodScheduled=True), and later runs and turns ContainersReady
    sim.run_until(sim.rollout_start + 60)
    (bound,) = _pods(sim, V2)
    assert bound.name == held.name and bound.ip is not None
    assert bound.condition("PodScheduled") == "True" and UNSCHEDULABLE not in bound.conditions
    assert bound.waiting_reason == "ContainerCreating" and bound.phase == "Pending"
    hi = sim.scenario.app.startup.container_start_seconds[1]
    sim.run_until(sim.rollout_start + 60 + hi + 0.001)
    running = next(p for p in _pods(sim, V2) if p.name == held.name)
    assert running.phase == "Running" and running.containers_ready


def test_only_the_named_images_are_held():
    # Given a window that holds v3 only
    sim = started(scenario(faults=_pending(images=[V3])))
    # When the rollout goes to v2
    _set_image(sim)
    sim.advance(30)
    # Then v2 pods are scheduled and start normally
    new = _pods(sim, V2)
    assert new and all(p.ip and UNSCHEDULABLE not in p.conditions for p in new)


def test_the_window_is_read_at_the_scheduling_instant():
    # Given pods take 1 s to be scheduled and a window opens 0.5 s after the rollout starts
    sim = started(scenario(faults=_pending(at_seconds=0.5)))
    # When the image changes at the rollout start (the pod is created before the window, scheduled in it)
    _set_image(sim)
    sim.advance(10)
    # Then it is held: the scheduler finds no room when it tries, not when the pod was created
    (p,) = _pods(sim, V2)
    assert p.ip is None and UNSCHEDULABLE in p.conditions


def test_a_window_for_other_images_changes_nothing():
    # Given the same world with and without a window that matches no pod of the rollout
    plain = simulate(scenario(), "kubernetes-default", lower_bound=False)
    other = simulate(scenario(faults=_pending(images=[V3])), "kubernetes-default", lower_bound=False)
    # Then the runs are identical, event for event (the fault draws nothing from the random streams)
    assert (other.events, other.requests, other.failed_requests, other.rollout_seconds) == (
        plain.events, plain.requests, plain.failed_requests, plain.rollout_seconds)


def test_undo_removes_the_unscheduled_pods_at_once_and_drops_nothing():
    # Given the new version held Pending for good under a rolling update
    sim = started(scenario(faults=_pending()))
    _set_image(sim)
    sim.advance(60)
    held = {p.name for p in _pods(sim, V2)}
    assert held
    # When the Deployment is rolled back (kubectl rollout undo)
    d = sim.deployment()
    sim.cluster.rollback_deployment(d.namespace, d.name, 0)
    sim.advance(5)
    # Then the unscheduled pods are gone (never started: nothing to stop), the old pods never stopped serving
    assert not _pods(sim, V2)
    assert len(_pods(sim, V1)) == 3 and sim.traffic.failed_requests == 0


def test_the_gate_waits_and_names_unschedulable_pods_on_the_simulated_snapshots():
    # Given albgate's gate on the pods the port lists while the new version cannot be scheduled
    sim = started(scenario(faults=_pending()))
    _set_image(sim)
    sim.advance(30)
    candidates = _pods(sim, V2)
    now = sim.clock.now()
    result = evaluate_gate(candidates=candidates, needed=1, health=None, now=now, deadline=now + 10)
    # Then it waits, says why, and the deadline turns that into a failure with the same reason
    assert result.status is Verdict.WAITING and "Unschedulable" in result.reason
    late = evaluate_gate(candidates=candidates, needed=1, health=None, now=now + 10, deadline=now + 10)
    assert late.status is Verdict.FAILED and late.reason.startswith("step deadline passed") and "Pending" in late.reason


SHIPPED = [
    # scenario, strategy, outcome, final image
    ("pods-stuck-pending", "kubernetes-default", "failed", V2),
    ("pods-stuck-pending", "oracle", "rolled_back", V1),
    ("pods-pending-then-scheduled", "hardened-readiness-gate", "succeeded", V2),
    ("pods-pending-then-scheduled", "oracle", "succeeded", V2),
]


@pytest.mark.parametrize("name,strategy,outcome,image", SHIPPED, ids=[f"{s[0]}-{s[1]}" for s in SHIPPED])
def test_shipped_pending_scenarios_end_as_the_model_says(name, strategy, outcome, image):
    # Given a shipped pending scenario / When a plain strategy rolls it (albgate's plan in the namespace albgate's
    # bootstrap labels: a pod held only by albgate's gate is registered only when something else triggers a
    # reconcile; docs/facts.md, Load Balancer Controller: requeue and back-off by version)
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    if strategy == "oracle":
        sc = sc.with_changes(namespace={"inject_label": "after_pods"})
    r = simulate(sc, strategy, lower_bound=False)
    # Then a stuck rollout only stalls (ProgressDeadlineExceeded) or rolls back, and a delayed one finishes
    assert (r.outcome, r.final_image) == (outcome, image), r.detail
    if name == "pods-stuck-pending":
        assert r.failed_requests == 0, r.failed_by_cause


BAD = [
    ("unknown-word", {"at_seconds": 0, "images": "old"}, "faults.pods_pending.0.images"),
    ("empty-list", {"at_seconds": 0, "images": []}, "faults.pods_pending.0.images"),
    ("not-an-image", {"at_seconds": 0, "images": ["nginx"]}, "faults.pods_pending.0.images"),
    ("no-start", {"images": "new"}, "faults.pods_pending.0.at_seconds"),
    ("zero-duration", {"at_seconds": 0, "duration_seconds": 0}, "faults.pods_pending.0.duration_seconds"),
    ("unknown-field", {"at_seconds": 0, "versions": "new"}, "faults.pods_pending.0.versions"),
]


@pytest.mark.parametrize("case,window,field", BAD, ids=[b[0] for b in BAD])
def test_a_bad_pending_window_names_the_field(case, window, field):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario({"name": "bad", "faults": {"pods_pending": [window]}}, "bad.yaml")
    assert f"bad.yaml: {field}" in str(exc.value)


def test_images_default_to_the_rollouts_new_image():
    sc = parse_scenario({"name": "t", "faults": {"pods_pending": [{"at_seconds": 0}]}})
    assert sc.faults.pods_pending[0].images == "new" and sc.faults.pods_pending[0].duration_seconds is None
