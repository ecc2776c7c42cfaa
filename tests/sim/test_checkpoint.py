"""The simulated controller's reconcile checkpoint (elbv2.k8s.aws/checkpoint, v2.9.1+; docs/facts.md, "Load Balancer
Controller: the reconcile checkpoint"), and albgate's drains proven by it instead of a DescribeTargetHealth call."""

from __future__ import annotations

import albgate.sim.albgate_strategy  # noqa: F401 - registers the albgate strategy
from albgate.sim import load_scenario
from albgate.sim.ports import SimKubernetes
from albgate.sim.runner import run_strategy
from lambdas.domain.ports import DeploymentPatch
from lambdas.domain.rollout.checkpoint import reconciled
from tests.sim.conftest import SCENARIOS, scenario, started

V2 = "ikubernetes/myapp:v2"


def _binding_and_pods(sim):
    kube = SimKubernetes(sim)
    b = kube.list_target_group_bindings(sim.deployment().namespace)[0]
    svc = next(s for s in kube.list_services(b.namespace) if s.name == b.service_name)
    return b, kube.list_pods(b.namespace, svc.selector), next(iter(sim.alb.tgs.values())).port


def test_a_completed_reconcile_writes_the_digest_of_its_endpoints_and_a_change_clears_it():
    sim = started(scenario(namespace={"inject_label": "before_pods"}), seed=3)
    # Given the steady state, modelled as after the controller's deferred reconciler reset the checkpoint: none
    b, pods, port = _binding_and_pods(sim)
    assert b.checkpoint == ""
    # When the Deployment rolls and the controller must register the new pod
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    tg = next(iter(sim.alb.tgs.values()))
    while not [p for p in sim.cluster.all_pods if p.version == V2 and p.ip in tg.targets]:
        sim.advance(0.05)
    # Then nothing is written while the new target is still to turn healthy
    b, pods, port = _binding_and_pods(sim)
    assert b.checkpoint == "" and not reconciled(b, pods, port)
    # And once it is healthy the reconcile that writes its condition completes: the checkpoint is the digest of
    # the endpoints it worked from, the Service's pods now
    gate = "target-health.elbv2.k8s.aws/" + b.name
    new = next(p for p in sim.cluster.all_pods if p.version == V2)
    while new.conditions.get(gate, ("False",))[0] != "True":
        sim.advance(0.05)
    b, pods, port = _binding_and_pods(sim)
    assert b.checkpoint and reconciled(b, pods, port)
    # and it proves nothing once another pod goes (here: one of the old ones, deleted)
    old = next(p for p in sim.cluster.all_pods if p.version != V2 and not p.terminating)
    sim.cluster.delete_pod(old)
    b, pods, port = _binding_and_pods(sim)
    assert not reconciled(b, pods, port)


def test_a_controller_older_than_the_checkpoint_writes_none():
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"version": "v2.9.0"}), seed=3)
    b, pods, port = _binding_and_pods(sim)
    assert b.checkpoint == "" and not reconciled(b, pods, port)


def test_the_example_apps_rollout_asks_elb_nothing_but_its_preflight():
    # Given the example app with the controller's gate on its pods (seeds where the controller's conditions come
    # late and where a pod's condition is not written at the gate's first look among them)
    sc = load_scenario(SCENARIOS / "seed-app.yaml")
    for seed in (1, 4, 7, 8, 15):
        sim, run = run_strategy(sc, "albgate", seed)
        # Then the gates read the controller's conditions and nudged it where they were overdue, the drains between
        # steps were left to the controller and the last one passed on its checkpoint: no DescribeTargetHealth call
        # of albgate's, only Preflight's DescribeTargetGroups (and its DescribeTargetGroupAttributes), and nothing
        # dropped
        assert run.outcome == "succeeded" and sim.traffic.failed_requests == 0
        assert sim.alb.describe_calls.get("albgate", 0) == 0, seed
        assert sim.alb.describe_tg_calls["albgate"] == 1


def test_with_an_older_controller_the_drain_looks_at_elb_as_before():
    sc = load_scenario(SCENARIOS / "seed-app.yaml").with_changes(controller={"version": "v2.9.0"})
    sim, run = run_strategy(sc, "albgate", 1)
    assert run.outcome == "succeeded" and sim.traffic.failed_requests == 0
    assert sim.alb.describe_calls["albgate"] >= 1


def test_auto_modes_controller_writes_no_checkpoint_so_the_last_drain_looks():
    # Given EKS Auto Mode, whose managed controller documents no checkpoint: the world writes none
    sc = load_scenario(SCENARIOS / "auto-mode.yaml")
    sim = started(sc, seed=1)
    assert not sim.lbc.writes_checkpoint
    # Then albgate's rollout proves its drains the other ways, and drops nothing
    sim, run = run_strategy(sc, "albgate", 1)
    assert run.outcome == "succeeded" and sim.traffic.failed_requests == 0
    assert all(b.annotation == "" for b in sim.lbc.bindings)
