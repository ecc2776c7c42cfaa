"""The Deployment controller, ReplicaSets and pods follow the documented Kubernetes rules (docs/facts.md,
"Kubernetes Deployment controller" and "Pod readiness and termination")."""

from __future__ import annotations

import pytest

from albgate.sim import Simulation
from albgate.sim.kube import KUBELET_READY_SYNC_MAX_SECONDS, resolve_fenceposts
from lambdas.domain.errors import ConflictError, InvalidInputError, NotFoundError
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch
from tests.sim.conftest import scenario, started

V2 = "ikubernetes/myapp:v2"

FENCEPOSTS = [
    ("defaults-3", "25%", "25%", 3, (1, 0)),
    ("defaults-4", "25%", "25%", 4, (1, 1)),
    ("defaults-100", "25%", "25%", 100, (25, 25)),
    ("surge-rounds-up", "10%", 0, 3, (1, 0)),
    ("unavailable-rounds-down", 0, "40%", 3, (0, 1)),
    ("both-zero-becomes-one", "10%", "10%", 3, (1, 0)),
    ("both-resolve-zero", "0%", "10%", 3, (0, 1)),
]


@pytest.mark.parametrize("case,surge,unavailable,replicas,expected", FENCEPOSTS, ids=[f[0] for f in FENCEPOSTS])
def test_fenceposts(case, surge, unavailable, replicas, expected):
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


def _set_image(sim: Simulation, image: str = V2, **patch) -> None:
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": image}, **patch))


ROLLING = [
    ("seed-defaults", 3, "25%", "25%"),
    ("surge-only", 6, 2, 0),
    ("unavailable-only", 6, 0, 2),
    ("half-and-half", 8, "50%", "50%"),
    ("large-defaults", 40, "25%", "25%"),
]


@pytest.mark.parametrize("case,replicas,surge,unavailable", ROLLING, ids=[r[0] for r in ROLLING])
def test_rolling_update_respects_max_unavailable_and_max_surge(case, replicas, surge, unavailable):
    # Given a Deployment rolled with kubectl set image (no gates)
    sim = started(scenario(app={"replicas": replicas, "max_surge": surge, "max_unavailable": unavailable}))
    max_surge, max_unavailable = resolve_fenceposts(surge, unavailable, replicas)
    d = sim.deployment()
    worst = {"available": replicas, "spec": replicas}

    def check():
        now = sim.clock.t
        available = sum(p.available(now, d.min_ready_seconds) for rs in d.rss for p in rs.active())
        worst["available"] = min(worst["available"], available)
        worst["spec"] = max(worst["spec"], sum(rs.spec for rs in d.rss))

    sim.add_observer(check)
    # When it rolls to the end
    _set_image(sim)
    assert sim.run_until(sim.clock.t + 600, stop=lambda: sim.cluster.deployment_complete(d))
    # Then availability never fell below replicas - maxUnavailable, nor the ReplicaSets' spec above + maxSurge
    assert worst["available"] >= replicas - max_unavailable
    assert worst["spec"] <= replicas + max_surge
    assert all(p.version == V2 for p in sim.cluster.pods.values() if not p.terminating)


def test_new_replica_set_is_scaled_up_first_counting_spec_replicas():
    # Given 4 replicas, maxSurge 1, maxUnavailable 1
    sim = started(scenario(app={"replicas": 4, "max_surge": 1, "max_unavailable": 1}))
    d = sim.deployment()
    _set_image(sim)
    # When the controller has synced at the same instant
    sim.advance(0.001)
    new = max(d.rss, key=lambda r: r.revision)
    old = min(d.rss, key=lambda r: r.revision)
    # Then: sync 1 surges the new ReplicaSet to 1 (5 spec = replicas + maxSurge); sync 2 cannot scale up, so
    # it scales the old one down by 5 - minAvailable 3 - 1 unavailable new = 1; sync 3 counts spec.replicas
    # (not running pods) and tops the new one up to 2
    assert (new.spec, old.spec) == (2, 3)


def test_min_ready_seconds_delays_availability_and_old_pod_removal():
    sim = started(scenario(app={"min_ready_seconds": 20, "max_unavailable": 0}))
    d = sim.deployment()
    _set_image(sim)
    sim.run_until(sim.clock.t + 300, stop=lambda: any(p.terminating for p in sim.cluster.all_pods))
    first_new = min((p for p in sim.cluster.all_pods if p.version == V2), key=lambda p: p.created_at)
    # the first old pod goes only once the new pod has been Ready for minReadySeconds
    assert first_new.ready_since is not None
    assert sim.clock.t >= first_new.ready_since + 20
    assert d.status[3] >= 3


def test_ready_needs_containers_ready_and_every_gate():
    # Given albgate's gate in the template
    sim = started(scenario(app={"max_unavailable": 0}))
    d = sim.deployment()
    _set_image(sim, add_readiness_gates=(ALBGATE_GATE,))
    sim.run_until(sim.clock.t + 60, stop=lambda: any(p.containers_ready for p in sim.cluster.pods.values() if p.version == V2))
    pod = next(p for p in sim.cluster.pods.values() if p.version == V2)
    # Then it is ContainersReady but not Ready, reason ReadinessGatesNotReady, and no old pod goes
    snap = pod.snapshot()
    assert snap.containers_ready and not snap.ready
    assert next(c for c in snap.conditions if c.type == "Ready").reason == "ReadinessGatesNotReady"
    sim.advance(30)
    assert not any(p.terminating for p in sim.cluster.all_pods)
    # When the gate condition is set True through the port, the pod is Ready and one old pod goes
    sim.kube.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "")
    assert sim.run_until(sim.clock.t + KUBELET_READY_SYNC_MAX_SECONDS, stop=lambda: pod.ready)
    sim.advance(0.001)
    assert sum(p.terminating for p in sim.cluster.all_pods) == 1
    assert d.status[1] >= 1


def test_progress_deadline_exceeded_is_reported_and_nothing_rolls_back():
    # Given a new version whose gate never opens (albgate's gate, nobody sets it)
    sim = started(scenario(app={"max_unavailable": 0, "progress_deadline_seconds": 120}))
    d = sim.deployment()
    start = sim.clock.t
    _set_image(sim, add_readiness_gates=(ALBGATE_GATE,))
    # When time passes beyond the deadline
    sim.run_until(start + 1000, stop=lambda: sim.cluster.deadline_exceeded(d))
    # Then Progressing=False ProgressDeadlineExceeded about 120 s after the last progress, and the template stays
    cond = d.snapshot().condition("Progressing")
    assert (cond.status, cond.reason) == ("False", "ProgressDeadlineExceeded")
    assert 120 <= sim.clock.t - start <= 140
    assert sim.current_image() == V2
    assert len([p for p in sim.cluster.pods.values() if p.version != V2]) == 3


def test_pods_the_webhook_refuses_show_as_replica_failure_until_they_are_created():
    # Given a labelled namespace whose controller (its pod webhook, failurePolicy Fail) is down for the first 60 s
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"webhook_failure_policy": "Fail"},
                           faults={"controller_outages": [{"at_seconds": 0, "duration_seconds": 60}]}))
    d = sim.deployment()
    # When a new version is rolled while the webhook is down
    _set_image(sim)
    sim.advance(5)
    # Then no new pod exists, and the new ReplicaSet's ReplicaFailure is on the Deployment, naming the webhook
    [new] = [rs for rs in d.rss if rs.template.containers[0].image == V2]
    cond = d.snapshot().condition("ReplicaFailure")
    assert not new.pods and new.failure is not None
    assert (cond.status, cond.reason) == ("True", "FailedCreate") and '"mpod.elbv2.k8s.aws"' in cond.message
    # And once the webhook is back and the ReplicaSet's back-off lets it create its pod, both are gone
    sim.run_until(sim.clock.t + 1200, stop=lambda: bool(new.pods))
    sim.advance(1)
    assert new.pods and new.failure is None and d.snapshot().condition("ReplicaFailure") is None


def test_progress_replaces_progress_deadline_exceeded():
    # Given a Deployment that timed out on a new version whose gate never opened
    sim = started(scenario(app={"max_unavailable": 0, "progress_deadline_seconds": 120}))
    d = sim.deployment()
    _set_image(sim, add_readiness_gates=(ALBGATE_GATE,))
    sim.run_until(sim.clock.t + 1000, stop=lambda: sim.cluster.deadline_exceeded(d))
    timed_out_at = sim.clock.t
    # When it makes progress again (the gate opens on the new pod: ready replicas grow)
    pod = next(p for p in sim.cluster.pods.values() if p.version == V2)
    sim.kube.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "")
    sim.advance(KUBELET_READY_SYNC_MAX_SECONDS)
    # Then, as progress.go does, the condition says ReplicaSetUpdated again with a new lastUpdateTime
    cond = d.snapshot().condition("Progressing")
    assert (cond.status, cond.reason) == ("True", "ReplicaSetUpdated")
    assert cond.last_update_time is not None and cond.last_update_time >= timed_out_at


def test_paused_deployment_creates_no_replica_set_until_resumed():
    sim = started(scenario())
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(paused=True))
    _set_image(sim)
    sim.advance(60)
    assert len(d.rss) == 1
    cond = d.snapshot().condition("Progressing")
    assert (cond.status, cond.reason) == ("Unknown", "DeploymentPaused")
    with pytest.raises(InvalidInputError, match="paused"):
        sim.kube.rollback_deployment(d.namespace, d.name, 0)
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(paused=False))
    sim.advance(0.001)
    assert len(d.rss) == 2


def _complete(sim: Simulation) -> None:
    d = sim.deployment()
    assert sim.run_until(sim.clock.t + 900, stop=lambda: sim.cluster.deployment_complete(d))


def test_undo_copies_the_template_back_and_the_old_replica_set_becomes_the_newest_revision():
    # Given v1 (revision 1) rolled to v2 (revision 2)
    sim = started(scenario())
    d = sim.deployment()
    _set_image(sim)
    _complete(sim)
    rs1 = next(rs for rs in d.rss if rs.revision == 1)
    assert d.revision == 2
    # When undone to revision 1 through the port
    dep = sim.kube.rollback_deployment(d.namespace, d.name, 1)
    assert dep.template.containers[0].image == "ikubernetes/myapp:v1"
    _complete(sim)
    # Then no new ReplicaSet was made: revision 1's ReplicaSet is revision 3 and runs every pod again
    assert len(d.rss) == 2
    assert rs1.revision == 3 and d.revision == 3 and rs1.spec == 3
    assert {rs.revision for rs in sim.kube.list_replica_sets(d.namespace, d.name)} == {2, 3}
    # And undo to 0 means the previous revision (2: v2 again)
    sim.kube.rollback_deployment(d.namespace, d.name, 0)
    assert sim.current_image() == V2


def test_undo_to_a_missing_revision_is_not_found():
    sim = started(scenario())
    d = sim.deployment()
    with pytest.raises(NotFoundError):
        sim.kube.rollback_deployment(d.namespace, d.name, 7)
    with pytest.raises(NotFoundError):
        sim.kube.rollback_deployment(d.namespace, d.name, 0)  # no history before revision 1


def test_conditional_patch_conflicts_when_the_object_moved_on():
    sim = started(scenario())
    d = sim.deployment()
    rv = sim.kube.get_deployment(d.namespace, d.name).resource_version
    _set_image(sim)
    sim.advance(5)
    with pytest.raises(ConflictError):
        sim.kube.patch_deployment(d.namespace, d.name, DeploymentPatch(max_surge=1, expected_resource_version=rv))


TERMINATION = [
    # (case, preStop, grace, SIGTERM after, process gone at the latest after)
    ("no-prestop", None, 30, 0.0, 30.0),
    ("prestop-inside-grace", 20, 60, 20.0, 60.0),
    ("prestop-longer-than-grace", 40, 30, 30.0, 32.0),  # one-off 2 s extension
]


@pytest.mark.parametrize("case,pre_stop,grace,sigterm_after,gone_by", TERMINATION, ids=[t[0] for t in TERMINATION])
def test_termination_sequence(case, pre_stop, grace, sigterm_after, gone_by):
    # Given pods with this preStop / grace and requests that last up to 100 s (so SIGKILL can matter)
    sim = started(scenario(app={"pre_stop_sleep_seconds": pre_stop, "termination_grace_period_seconds": grace},
                           traffic={"mean_duration_seconds": 50, "max_duration_seconds": 100}))
    pod = next(iter(sim.cluster.pods.values()))
    t0 = sim.clock.t
    # When it is deleted
    sim.cluster.delete_pod(pod)
    # Then it is out of the endpoints at once, gets SIGTERM after the preStop, and is gone by the grace end
    assert pod.terminating and pod.snapshot().terminating
    sim.advance(200)
    assert pod.sigterm_at == pytest.approx(t0 + sigterm_after, abs=1e-6)
    assert pod.exited_at is not None and pod.exited_at <= t0 + gone_by + 1e-9
