"""The simulated cluster is as strict as the API server and the kubelet on conditional writes and on when a gated
pod turns Ready (docs/facts.md, "Kubelet and controllers: Ready after a gate, status writes"): status writes by
the controller and the kubelet move the resourceVersion, a write computed from an earlier read meets 409 by itself,
and Ready follows a gate on the kubelet's next pod sync. albgate's Start Step, given such a 409, reads again and
its write lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate.sim import Simulation, load_scenario
from albgate.sim.kube import KUBELET_READY_SYNC_MAX_SECONDS
from albgate.sim.strategies import bootstrap_hardened
from lambdas.domain.errors import ConflictError, NotFoundError
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch, Ports
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.rollout.preflight import preflight
from lambdas.domain.rollout.step import start_step
from lambdas.domain.state import RolloutState
from tests.sim.conftest import scenario, started

V2 = "ikubernetes/myapp:v2"
NS, NAME = "readiness", "nginx-app"
SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"


def _old_pod(sim: Simulation):
    return next(p for p in sim.cluster.pods.values() if not p.terminating)


# --- resourceVersion: status writes and conditional writes ------------------------------------------------
def test_a_status_write_queued_at_the_instant_of_a_conditional_write_makes_it_conflict():
    # Given albgate's read of the Deployment, then a pod of it deleted at the same instant (the ReplicaSet
    # controller replaces it and the Deployment controller queues a status update)
    sim = started(scenario())
    read = sim.kube.get_deployment(NS, NAME)
    sim.cluster.delete_pod(_old_pod(sim))
    now = sim.clock.t
    # When a write conditional on that read arrives, no virtual time later
    with pytest.raises(ConflictError, match="the object has been modified"):
        sim.kube.patch_deployment(NS, NAME, DeploymentPatch(max_surge=1,
                                                            expected_resource_version=read.resource_version))
    # Then the controller's status write got in between: the version moved, the spec did not
    after = sim.kube.get_deployment(NS, NAME)
    assert sim.clock.t == now and sim.cluster.conflicts == 1
    assert after.resource_version != read.resource_version
    assert (after.generation, after.max_surge) == (read.generation, read.max_surge)
    # And the same write on a fresh read lands
    done = sim.kube.patch_deployment(NS, NAME, DeploymentPatch(max_surge=1,
                                                               expected_resource_version=after.resource_version))
    assert done.max_surge == 1 and done.generation == read.generation + 1


def test_the_controllers_observed_generation_write_outdates_the_version_a_spec_write_returned():
    # Given a spec write, answered with its new resourceVersion
    sim = started(scenario())
    written = sim.kube.patch_deployment(NS, NAME, DeploymentPatch(max_surge=1))
    # When the controller has synced (observedGeneration written, even with no replica count changed yet)
    sim.advance(0.001)
    synced = sim.kube.get_deployment(NS, NAME)
    # Then the version moved and a write conditional on the one the spec write returned is refused
    assert synced.observed_generation == synced.generation == written.generation
    assert synced.resource_version != written.resource_version
    with pytest.raises(ConflictError):
        sim.kube.patch_deployment(NS, NAME, DeploymentPatch(max_unavailable=0,
                                                            expected_resource_version=written.resource_version))


def test_a_write_that_changes_nothing_keeps_the_version_and_the_generation():
    sim = started(scenario(app={"max_surge": 1, "max_unavailable": 0}))
    before = sim.kube.get_deployment(NS, NAME)
    same = sim.kube.patch_deployment(NS, NAME, DeploymentPatch(max_surge=1, max_unavailable=0,
                                                               expected_resource_version=before.resource_version))
    assert (same.resource_version, same.generation) == (before.resource_version, before.generation)
    # an annotation is metadata: a new version, the same generation
    noted = sim.kube.patch_deployment(NS, NAME, DeploymentPatch(annotations={"example.com/note": "x"}))
    assert noted.resource_version != before.resource_version and noted.generation == before.generation


def test_the_kubelets_status_writes_move_the_pods_version():
    # Given a new gated pod
    sim = started(scenario(app={"max_unavailable": 0}))
    sim.cluster.patch_deployment(NS, NAME, DeploymentPatch(images={"nginx": V2}, add_readiness_gates=(ALBGATE_GATE,)))
    sim.run_until(sim.clock.t + 60, stop=lambda: any(p.containers_ready for p in sim.cluster.pods.values()
                                                        if p.version == V2))
    pod = next(p for p in sim.cluster.pods.values() if p.version == V2)
    # When albgate opens its gate (its write), and later the kubelet turns the pod Ready (the kubelet's write)
    sim.kube.set_pod_condition(NS, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "")
    gate_written = pod.rv
    sim.run_until(sim.clock.t + KUBELET_READY_SYNC_MAX_SECONDS, stop=lambda: pod.ready)
    # Then each is a write of its own
    assert pod.ready and pod.rv > gate_written


# --- the kubelet's pod sync after a gate changes --------------------------------------------------------
def _gated_pod_waiting_for_its_gate(seed: int) -> tuple[Simulation, object]:
    sim = started(scenario(app={"max_unavailable": 0}), seed)
    sim.cluster.patch_deployment(NS, NAME, DeploymentPatch(images={"nginx": V2}, add_readiness_gates=(ALBGATE_GATE,)))
    sim.run_until(sim.clock.t + 60, stop=lambda: any(p.containers_ready for p in sim.cluster.pods.values()
                                                        if p.version == V2))
    return sim, next(p for p in sim.cluster.pods.values() if p.version == V2)


def _ready_delay(seed: int) -> float:
    sim, pod = _gated_pod_waiting_for_its_gate(seed)
    opened = sim.clock.t
    sim.kube.set_pod_condition(NS, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "")
    assert not pod.ready  # the gate's condition is written; Ready waits for the kubelet
    assert sim.run_until(opened + 10, stop=lambda: pod.ready)
    return sim.clock.t - opened


def test_ready_follows_a_gate_on_the_kubelets_next_sync_within_its_bound():
    delays = [_ready_delay(seed) for seed in range(1, 9)]
    assert all(0 <= d <= KUBELET_READY_SYNC_MAX_SECONDS for d in delays), delays
    assert len(set(delays)) > 1  # a draw per sync, not one figure
    assert _ready_delay(3) == delays[2]  # seeded: the same seed, the same delay


def test_the_old_pod_goes_only_after_the_kubelet_turned_the_new_one_ready():
    sim, pod = _gated_pod_waiting_for_its_gate(4)
    sim.kube.set_pod_condition(NS, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "")
    sim.advance(0.0)
    assert not any(p.terminating for p in sim.cluster.all_pods)
    sim.run_until(sim.clock.t + KUBELET_READY_SYNC_MAX_SECONDS, stop=lambda: pod.ready)
    sim.advance(0.001)
    assert sum(p.terminating for p in sim.cluster.all_pods) == 1


def test_a_gate_closing_again_before_the_sync_leaves_the_pod_not_ready():
    sim, pod = _gated_pod_waiting_for_its_gate(5)
    sim.kube.set_pod_condition(NS, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "")
    sim.kube.set_pod_condition(NS, pod.name, ALBGATE_GATE, "False", "TargetUnhealthy", "")
    sim.advance(KUBELET_READY_SYNC_MAX_SECONDS + 0.001)
    assert not pod.ready  # the one sync read the conditions as they were when it ran


def test_containers_ready_turns_an_ungated_pod_ready_in_the_same_write():
    # Given a Deployment without gates rolled to a new image (no probe: ready once the container runs)
    sim = started(scenario())
    sim.cluster.patch_deployment(NS, NAME, DeploymentPatch(images={"nginx": V2}))
    sim.run_until(sim.clock.t + 60, stop=lambda: any(p.containers_ready for p in sim.cluster.pods.values()
                                                        if p.version == V2))
    pod = next(p for p in sim.cluster.pods.values() if p.version == V2 and p.containers_ready)
    # Then Ready came with ContainersReady, at the same instant
    assert pod.ready and pod.ready_since == sim.clock.t


# --- undo after the controller renumbered the revision ------------------------------------------------------
def test_a_repeated_undo_finds_the_renumbered_revision_and_changes_nothing():
    # Given v1 (revision 1) rolled to v2 (revision 2), then undone to revision 1, which the controller renumbered 3
    sim = started(scenario())
    d = sim.deployment()
    sim.cluster.patch_deployment(NS, NAME, DeploymentPatch(images={"nginx": V2}))
    assert sim.run_until(sim.clock.t + 900, stop=lambda: sim.cluster.deployment_complete(d))
    sim.kube.rollback_deployment(NS, NAME, 1)
    sim.advance(0.001)
    before = sim.kube.get_deployment(NS, NAME)
    assert before.revision == 3
    # When the same undo comes again (a retry after a 409) through albgate's port
    again = sim.kube.rollback_deployment(NS, NAME, 1, expected_resource_version="stale")
    # Then it finds revision 1 in the ReplicaSet's history, and there is nothing to write
    assert (again.resource_version, again.generation) == (before.resource_version, before.generation)
    # while kubectl (the cluster's own undo) knows no revision 1 any more
    with pytest.raises(NotFoundError):
        sim.cluster.rollback_deployment(NS, NAME, 1)


# --- albgate's Start Step meets a 409 caused by a status write, reads again, and writes -------------------
class StatusWriteAfterRead:
    """albgate's Kubernetes port on the simulation, where a pod of the Deployment is deleted right after albgate's
    next read (another writer: the controllers' status writes follow at that instant)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim, self.kube, self.armed = sim, sim.kube, True

    def __getattr__(self, name: str):
        return getattr(self.kube, name)

    def get_deployment(self, namespace: str, name: str):
        dep = self.kube.get_deployment(namespace, name)
        if self.armed:
            self.armed = False
            self.sim.cluster.delete_pod(_old_pod(self.sim))
        return dep


def test_start_step_reads_again_after_a_conflict_a_status_write_caused_and_its_write_lands():
    # Given albgate's Preflight on the example app, and a status write landing between Start Step's read and write
    sim = Simulation(bootstrap_hardened(load_scenario(SEED_APP)))
    sim.run_until(sim.rollout_start)
    state = preflight(sim.ports, sim.rollout_request(), "t1")
    ports = Ports(kube=StatusWriteAfterRead(sim), elb=sim.elb, clock=sim.clock, budget=sim.budget)
    # When Start Step runs
    done = start_step(ports, RolloutState.model_validate(state.dump()))
    # Then its first write met 409, it read again and its write landed: the gate, the first batch, its hold
    assert sim.cluster.conflicts == 1
    dep = sim.kube.get_deployment(NS, NAME)
    assert ALBGATE_GATE in dep.template.readiness_gates
    assert (dep.max_surge, dep.max_unavailable) == (1, 0)
    assert dep.annotations[ROLLOUT_ANNOTATION].startswith("t1@")
    assert done.next_step == 1 and done.step == 0
