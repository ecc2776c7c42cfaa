"""A drain proven by the Load Balancer Controller's reconcile checkpoint instead of a DescribeTargetHealth call
(lambdas/domain/rollout/checkpoint.py; on the fakes of test_domain_mutants_gate_drain)."""

from __future__ import annotations

import dataclasses

import pytest

from lambdas.domain.gate import Verdict
from lambdas.domain.ports import DRAINING, HEALTHY, Service, ServicePort, TargetGroupBinding
from lambdas.domain.rollout.checkpoint import drain_proven, endpoints_digest, reconciled, resolved_endpoints
from lambdas.domain.rollout.drain import verify_drain
from lambdas.domain.rollout.left import LEFT_TO_CONTROLLER_SECONDS, follow_left
from tests.unit.test_domain_mutants_gate_drain import ARN, NS, group, old_pod, pod, rollout, target, world
from tests.unit.test_drain_carried import BINDING

# Computed outside Python, as the controller computes it (sha256 of the sorted identifiers joined by commas, in
# unpadded base64url: Go's base64.RawURLEncoding):
#   printf '10.0.1.5:8080:1767225600000,10.0.2.7:8080:1767225601000' | openssl dgst -sha256 -binary | basenc --base64url
KNOWN_DIGEST = "wc742sJEKaWzavy-jbpJO78b_r5N5xp1oXhWKPaWaSI"

SERVICE = Service(NS, "web", {"app": "web"}, (ServicePort(80, 8080),))
NEW = pod("web-new-a", "10.0.1.1", created_at=1767225600.0)
LIVE_OLD = [dataclasses.replace(old_pod("web-old-b", "10.0.0.2"), created_at=1767225500.0),
            dataclasses.replace(old_pod("web-old-c", "10.0.0.3"), created_at=1767225501.0)]
RELEASED = dataclasses.replace(old_pod("web-old-a", "10.0.0.1", terminating=True), created_at=1767225499.0)
WATCHED = ("10.0.0.1", "10.0.0.2", "10.0.0.3")


def checkpoint_of(pods, port: int = 8080) -> str:
    return f"{endpoints_digest(resolved_endpoints(pods, port))}/c3BlYw"


def binding(checkpoint: str, service: str = "web") -> TargetGroupBinding:
    return TargetGroupBinding(NS, BINDING, ARN, "ip", service, 80, checkpoint=checkpoint)


def gated(port: int | None = 8080):
    g = group(port=port)
    g.binding = BINDING
    return g


def a_world(pods, checkpoint: str, *, services=(SERVICE,), health=None):
    w = world(pods, health)
    w.kube.list_target_group_bindings = lambda namespace: [binding(checkpoint)]
    w.kube.list_services = lambda namespace: list(services)
    return w


def test_the_digest_is_the_controllers():
    # Given the identifiers in any order, a creation time with a fraction (the API keeps whole seconds)
    got = endpoints_digest([("10.0.2.7", 8080, 1767225601.9), ("10.0.1.5", 8080, 1767225600.0)])
    # Then the digest is the one computed outside Python
    assert got == KNOWN_DIGEST
    assert endpoints_digest([("10.0.1.5", 8080, 1767225600.0)]) != KNOWN_DIGEST


def test_the_endpoints_are_the_pods_the_controller_would_register():
    starting = pod("web-new-b", "10.0.1.2", ready=False)
    no_ip = pod("web-new-c", None)
    done = dataclasses.replace(pod("web-new-d", "10.0.1.4"), phase="Succeeded")
    gated_not_ready = NEW  # ContainersReady, held by a gate: the controller registers it
    got = resolved_endpoints([gated_not_ready, starting, no_ip, done, RELEASED, *LIVE_OLD], 8080)
    assert got == [("10.0.1.1", 8080, 1767225600.0), ("10.0.0.2", 8080, 1767225500.0),
                   ("10.0.0.3", 8080, 1767225501.0)]


@pytest.mark.parametrize("checkpoint,port,expected", [
    (checkpoint_of([NEW, *LIVE_OLD]), 8080, True),
    (checkpoint_of([NEW, *LIVE_OLD, dataclasses.replace(RELEASED, terminating=False)]), 8080, False),  # still in
    (checkpoint_of([NEW, *LIVE_OLD], port=80), 8080, False),  # another port
    (checkpoint_of([NEW, *LIVE_OLD]), None, False),  # a port albgate does not know
    ("", 8080, False),  # cleared: a reconcile is changing the group, or failed
    (checkpoint_of([NEW, *LIVE_OLD]).split("/")[0], 8080, False),  # not the controller's shape
])
def test_a_checkpoint_proves_only_the_endpoints_it_was_made_from(checkpoint, port, expected):
    assert reconciled(binding(checkpoint), [NEW, RELEASED, *LIVE_OLD], port) is expected


def last_left(groups=None) -> object:
    """The last step of a rollout, scaled down, whose gate the controller's conditions opened on time: its drain is
    left to the controller, and the look that verifies it comes after the load balancer's lag."""
    s = rollout(watched=WATCHED, groups=groups or (gated(),), more_steps=False)
    s.steps[-1].opened_by_controller, s.steps[-1].registration_lag = True, 1.0
    return s


def test_a_drain_left_to_the_controller_is_verified_by_its_checkpoint_without_a_look():
    # Given the last drain left to the controller, and the controller's last completed reconcile made from the
    # endpoints left
    w = a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD]))
    s = verify_drain(w.ports, last_left())
    assert s.drain.status is Verdict.WAITING and s.steps[-1].left_at is not None
    # When the look that verifies it comes
    s = verify_drain(w.ports, s)
    # Then it passed on the Kubernetes API alone: no look at ELB, nothing deregistered
    assert s.drain.status is Verdict.PASSED and w.elb.health_reads == 0 and w.elb.deregistered == []
    assert s.wait_seconds == 0 and s.steps[-1].drained_at is not None
    assert s.drain.reason == (
        "1 old target(s) out of every target group's pool: the Load Balancer Controller's last completed reconcile "
        "of every binding worked from the endpoints left (its checkpoint)")
    assert (s.drain.old_live, s.drain.expected_old) == (2, 2)


def test_the_checkpoint_comes_after_albgates_own_decision_never_before_it():
    # Given the first look of a rollback's drain, scaled down, the checkpoint already proving it: a rollback never
    # leaves its drain to the controller, so albgate deregisters the released target at once, as it would without
    # a checkpoint (reading the checkpoint first changes who deregisters, and at two hundred rollouts at once that
    # lost requests: docs/benchmarks.md)
    w = a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD]))
    s = rollout(watched=WATCHED, groups=(gated(),), more_steps=False)
    s.mode = "rollback"
    s = verify_drain(w.ports, s)
    assert w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])] and s.drain.status is Verdict.WAITING
    # Then the look that verifies it, after the lag, is the checkpoint's: no call to ELB
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.PASSED and w.elb.health_reads == 0 and len(w.elb.deregistered) == 1


def test_the_port_comes_from_the_service_when_elb_never_showed_it():
    w = a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD]))
    s = verify_drain(w.ports, verify_drain(w.ports, last_left(groups=(gated(port=None),))))
    assert s.drain.status is Verdict.PASSED and w.elb.health_reads == 0
    # ... but not when the Service names a container port: albgate does not read containers' ports
    named = dataclasses.replace(SERVICE, ports=(ServicePort(80, "http"),))
    w = a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD]), services=(named,),
                health={ARN: [target("10.0.0.1", DRAINING)]})
    s = verify_drain(w.ports, verify_drain(w.ports, last_left(groups=(gated(port=None),))))
    assert w.elb.health_reads == 1


def test_without_a_matching_checkpoint_the_drain_looks_at_elb_as_before():
    # Given checkpoints that prove nothing: the released pod's endpoint still in, none written, a Service selecting
    # a pod albgate does not see, a group without a binding
    still_in = checkpoint_of([NEW, *LIVE_OLD, dataclasses.replace(RELEASED, terminating=False)])
    stranger = dataclasses.replace(pod("other-a", "10.0.9.9"), labels={"app": "web", "pod-template-hash": "x"})
    cases = [
        (a_world([NEW, RELEASED, *LIVE_OLD], still_in), gated()),
        (a_world([NEW, RELEASED, *LIVE_OLD], ""), gated()),
        (a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, stranger, *LIVE_OLD])), gated()),
        (a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD])), group(port=8080)),
    ]
    for w, g in cases:
        w.elb.health = {ARN: [target("10.0.0.1", HEALTHY)]}
        s = rollout(watched=WATCHED, groups=(g,), more_steps=False)
        s.steps[-1].deregistered = [f"{ARN}|10.0.0.1"]  # deregistered by albgate already: this look verifies it
        s = verify_drain(w.ports, s)
        # Then the drain asks ELB, which shows the target still in the pool
        assert w.elb.health_reads == 1 and s.drain.status is Verdict.WAITING


def test_no_proof_after_albgate_registered_targets_itself():
    # Given a rollout that registered a target the controller had not (it was down): that target is in the pool
    # without any reconcile, so a checkpoint from before says nothing of it
    w = a_world([NEW, RELEASED, *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD]),
                health={ARN: [target("10.0.0.1", DRAINING)]})
    s = rollout(watched=WATCHED, groups=(gated(),), more_steps=False)
    s.steps[-1].deregistered = [f"{ARN}|10.0.0.1"]
    s.steps[0].registered_total = 1
    s = verify_drain(w.ports, s)
    assert w.elb.health_reads == 1 and s.drain.status is Verdict.PASSED


def test_not_scaled_down_yet_nothing_is_read_for_the_proof():
    # Given the old ReplicaSet not scaled down (3 old pods serve, 2 expected): the checkpoint is not read
    reads = []
    w = a_world([NEW, dataclasses.replace(RELEASED, terminating=False), *LIVE_OLD], checkpoint_of([NEW, *LIVE_OLD]))
    w.kube.list_target_group_bindings = lambda namespace: reads.append(namespace) or []
    s = verify_drain(w.ports, rollout(watched=WATCHED, groups=(gated(),)))
    assert s.drain.status is Verdict.WAITING and reads == []


def test_the_next_gate_does_not_take_the_checkpoint_for_targets_left_to_the_controller():
    # Given step 2 of 3, whose previous step left 10.0.0.1 to the controller at the deadline's edge, the new pods'
    # conditions unchanged since, and the controller's checkpoint made from the endpoints now
    new = [NEW, dataclasses.replace(pod("web-new-b", "10.0.1.2"), created_at=1767225610.0)]
    w = a_world([*new, RELEASED, *LIVE_OLD], checkpoint_of([*new, *LIVE_OLD]))
    s = rollout(step=1, plan=(1, 2, 3), groups=(gated(),))
    s.carried_ips, s.left_at = ["10.0.0.1"], w.now - LEFT_TO_CONTROLLER_SECONDS
    # When the gate follows them
    follow_left(w.ports, s, new, [RELEASED, *LIVE_OLD], w.now)
    # Then albgate deregisters them itself at the deadline and says the controller was late, as without a
    # checkpoint: taken as proof here, it cost requests with two hundred rollouts at once (docs/benchmarks.md)
    assert s.left_at is None and w.elb.deregistered == [(ARN, [("10.0.0.1", 8080)])]
    assert w.ports.budget.lates == 1


def test_a_failed_or_finished_pod_is_no_endpoint():
    failed = dataclasses.replace(pod("web-new-e", "10.0.1.5"), phase="Failed")
    done = dataclasses.replace(pod("web-new-f", "10.0.1.6"), phase="Succeeded")
    assert resolved_endpoints([failed, done], 8080) == []


def test_without_a_known_port_nothing_is_proven_whatever_the_checkpoint():
    # a checkpoint computed as if the port were written "None" still proves nothing without a port
    pods = [NEW, *LIVE_OLD]
    assert not reconciled(binding(checkpoint_of(pods, port=None)), pods, None)


@pytest.mark.parametrize("case", ["no groups", "ports mixed", "no binding listed", "selector empty",
                                  "no such service", "elb's port first"])
def test_what_drain_proven_refuses(case):
    # Given a checkpoint that would prove the drain on the Service's port (8080), and one thing wrong
    pods = [NEW, RELEASED, *LIVE_OLD]
    services = (SERVICE,)
    groups = [gated(port=None)]
    checkpoint = checkpoint_of([NEW, *LIVE_OLD])
    w = a_world(pods, checkpoint)
    if case == "no groups":
        groups = []
    elif case == "ports mixed":
        groups[0].ports_mixed = True  # ELB showed targets on several ports: no port names them
    elif case == "no binding listed":
        w.kube.list_target_group_bindings = lambda namespace: []
    elif case == "selector empty":
        services = (dataclasses.replace(SERVICE, selector={}),)
    elif case == "no such service":
        services = (dataclasses.replace(SERVICE, name="other"),)
    elif case == "elb's port first":
        # ELB showed the targets on 9090: the Service's 8080 does not stand in for it
        groups = [gated(port=9090)]
    w.kube.list_services = lambda namespace: list(services)
    s = rollout(watched=WATCHED)
    s.target_groups = groups
    assert drain_proven(w.ports, s, pods) is False
    # (and the same world without the fault is proven, so the fault is what refused it)
    fine = a_world(pods, checkpoint)
    s = rollout(watched=WATCHED, groups=(gated(port=None),))
    assert drain_proven(fine.ports, s, pods) is True
