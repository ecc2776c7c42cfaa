"""Old pods taken out of service before a step releases its new ones (lambdas/domain/rollout/out_of_service.py), on
the fakes of test_domain_mutants_gate_drain: which pods, when, the proof by the controller's checkpoint or, where
none is written, by a look at ELB, the bound, the lag a short preStop leaves, and pods put back."""

from __future__ import annotations

import dataclasses

import pytest

from lambdas.domain.contract import ALB_METRICS_REGRESSED
from lambdas.domain.errors import NotFoundError, ThrottledError, UnsafeConfigurationError
from lambdas.domain.gate import GateResult, Verdict
from lambdas.domain.looks import LocalLooks, Look
from lambdas.domain.poll import out_of_service_look_due
from lambdas.domain.ports import (
    DRAINING,
    HEALTHY,
    IN_SERVICE,
    OUT_OF_SERVICE,
    SERVING_LABEL,
    UNUSED,
    Container,
    PodCondition,
    Service,
    ServicePort,
    TargetGroupBinding,
)
from lambdas.domain.rollout import out_of_service as oos
from lambdas.domain.rollout.drain import verify_drain
from lambdas.domain.rollout.gate import check_target_health
from lambdas.domain.rollout.observe import Pace, next_look
from lambdas.domain.rollout.targets import deregister_each, target_group_bindings
from tests.unit.test_domain_mutants_gate_drain import (
    ARN,
    INTERVAL,
    NOW,
    NS,
    group,
    old_pod,
    pod,
    rollout,
    target,
    world,
)
from tests.unit.test_analysis_looks import START
from tests.unit.test_analysis_looks import state as analysis_state
from tests.unit.test_drain_carried import BINDING, analysis_ports
from tests.unit.test_drain_checkpoint import checkpoint_of

SERVED = {"app": "web", SERVING_LABEL: IN_SERVICE}
SERVICE = Service(NS, "web", dict(SERVED), (ServicePort(80, 8080),))


def served(p, value: str | None = IN_SERVICE):
    labels = {k: v for k, v in p.labels.items() if k != SERVING_LABEL}
    if value is not None:
        labels[SERVING_LABEL] = value
    return dataclasses.replace(p, labels=labels)


def ready_old(name: str, ip: str, created_at: float):
    p = old_pod(name, ip)
    return served(dataclasses.replace(p, conditions=(*p.conditions, PodCondition("Ready", "True")),
                                      created_at=created_at))


NEW = served(pod("web-new-a", "10.0.1.1", created_at=1767225600.0))
OLD = [ready_old(f"web-old-{c}", f"10.0.0.{i}", 1767225500.0 + i) for i, c in enumerate("abc", start=1)]


def gated():
    g = group(port=8080)
    g.binding = BINDING
    return g


def a_world(pods, checkpoint: str = "x/y", *, service=SERVICE, now: float = NOW):
    w = world(pods, now=now)
    w.kube.serving = []
    w.kube.list_target_group_bindings = lambda namespace: [
        TargetGroupBinding(NS, BINDING, ARN, "ip", service.name, 80, checkpoint=checkpoint)]
    w.kube.list_services = lambda namespace: [service]

    def set_pod_serving(namespace, name, serving):
        if not any(p.name == name for p in w.kube.pods):
            raise NotFoundError(f"pod {name} not found")
        w.kube.serving.append((name, serving))
        w.kube.pods = [served(p, IN_SERVICE if serving else OUT_OF_SERVICE) if p.name == name else p
                       for p in w.kube.pods]
    w.kube.set_pod_serving = set_pod_serving
    # a label selector as the API server applies it (the shared fake lists every pod)
    w.kube.list_pods = lambda namespace, selector: [
        p for p in w.kube.pods if all(p.labels.get(k) == v for k, v in selector.items())]
    return w


def passed(names=("web-new-a",)) -> GateResult:
    return GateResult(Verdict.PASSED, "every new target healthy", release=tuple(names))


def state(step: int = 0, plan=(1, 3)):
    return rollout(step=step, plan=plan, groups=(gated(),))


# --- choose_pods ---------------------------------------------------------------------------------------------
def test_pods_serving_nothing_count_first_then_the_newest_ready_ones():
    out = served(OLD[0], OUT_OF_SERVICE)
    unready = dataclasses.replace(OLD[1], conditions=())  # not Ready: the ReplicaSet removes it first anyway
    gone = dataclasses.replace(OLD[2], terminating=True)
    newest = ready_old("web-old-d", "10.0.0.4", 1767225600.0)
    older = ready_old("web-old-e", "10.0.0.5", 1767225400.0)
    assert [p.name for p in oos.choose_pods([older, newest, out, unready, gone], 3)] == [
        "web-old-a", "web-old-b", "web-old-d"]
    assert oos.choose_pods([older, newest], 0) == [] and oos.choose_pods([older], -1) == []


# --- take_out --------------------------------------------------------------------------------------------------
def test_a_passing_gate_takes_out_as_many_old_pods_as_the_step_removes_and_waits():
    w = a_world([NEW, *OLD])
    s = state()
    record = s.steps[-1]
    gate, pace = oos.take_out(w.ports, s, record, passed(), OLD, NOW)
    # Step 1 of (1, 3) leaves 2 of 3 old pods: the newest goes out, with the release held
    assert w.kube.serving == [("web-old-c", False)]
    assert (gate.status, gate.release, pace.wait_for) == (Verdict.WAITING, (), "out-of-service")
    assert (record.out_of_service, record.out_ips, record.out_release, record.out_at) == (
        ["web-old-c"], ["10.0.0.3"], ["web-new-a"], NOW)
    assert "took 1 old pod(s) out" in gate.reason


@pytest.mark.parametrize("case", ["nothing-released", "none-to-remove", "service-without-label", "already-out"])
def test_a_gate_passes_as_it_is_where_nothing_is_taken_out(case):
    s = state()
    record = s.steps[-1]
    gate, pods, service, checkpoint = passed(), [NEW, *OLD], SERVICE, "x/y"
    if case == "nothing-released":
        gate = passed(())
    elif case == "none-to-remove":
        pods = [NEW, *OLD[:2]]  # 2 old pods left, 2 may stay
    elif case == "service-without-label":
        service = Service(NS, "web", {"app": "web"}, (ServicePort(80, 8080),))
    elif case == "already-out":
        record.out_at = NOW - 5
    w = a_world(pods, checkpoint, service=service)
    got, pace = oos.take_out(w.ports, s, record, gate, [p for p in pods if p.name.startswith("web-old")], NOW)
    assert (got, pace.wait_for, w.kube.serving) == (gate, "now", [])


def test_a_rollbacks_gate_takes_out_every_pod_of_the_failed_version():
    # Given a rollback (one step back to all 3 replicas of the version it brings back) whose gate passed, and 2 pods
    # of the failed version still running
    w = a_world([NEW, *OLD])
    s = rollout(step=0, plan=(3,), groups=(gated(),))
    s.mode = s.steps[-1].mode = "rollback"
    gate, pace = oos.take_out(w.ports, s, s.steps[-1], passed(), OLD[1:], NOW)
    # Then both leave the Service before any is released
    assert sorted(w.kube.serving) == [("web-old-b", False), ("web-old-c", False)]
    assert (gate.status, pace.wait_for) == (Verdict.WAITING, "out-of-service")


def test_a_rollbacks_drain_trusts_its_own_proof_and_no_earlier_steps():
    # Given a rollout step that proved 10.0.0.3 out, then a rollback that proved 10.0.0.9 out, and the pod of the
    # failed version that Kubernetes removed holds 10.0.0.3 again
    w = a_world([served(NEW), dataclasses.replace(served(OLD[2]), terminating=True)], "")
    s = rollout(step=0, plan=(3,), groups=(gated(),), watched=("10.0.0.3",))
    earlier = s.steps[-1].model_copy(update={"out_ips": ["10.0.0.3"], "out_proven_at": NOW - 60})
    s.mode = s.steps[-1].mode = "rollback"
    s.steps[-1].out_ips, s.steps[-1].out_at, s.steps[-1].out_proven_at = ["10.0.0.9"], NOW - 9, NOW - 5
    s.steps.insert(0, earlier)
    # Then the rollout step's proof is not the rollback's, and the drain does not pass on it
    assert oos.proven_out(s) == {"10.0.0.9"}
    s = verify_drain(w.ports, s)
    assert "taken out of service" not in s.drain.reason


def test_a_pod_gone_since_the_look_is_not_an_error():
    w = a_world([NEW, *OLD[:2]])  # web-old-c left the API after the look that saw it
    s = state()
    gate, _ = oos.take_out(w.ports, s, s.steps[-1], passed(), OLD, NOW)
    assert gate.status is Verdict.WAITING and s.steps[-1].out_of_service == ["web-old-c"]


# --- settle ------------------------------------------------------------------------------------------------------
def settle_world(checkpoint_pods, *, now: float, pre_stop: int | None = 30):
    pods = [NEW, *OLD[:2], served(OLD[2], OUT_OF_SERVICE)]
    w = a_world(pods, checkpoint_of(checkpoint_pods), now=now)
    w.kube.deployment = dataclasses.replace(w.kube.deployment, template=dataclasses.replace(
        w.kube.deployment.template, containers=(Container("web", "img", pre_stop_sleep_seconds=pre_stop),)))
    s = state()
    record = s.steps[-1]
    record.out_of_service, record.out_ips, record.out_release, record.out_at = (
        ["web-old-c"], ["10.0.0.3"], ["web-new-a"], NOW)
    return w, s, record, pods


def test_the_gate_passes_once_the_checkpoint_leaves_the_pods_out_releasing_the_pods_its_look_named():
    # Given the controller's last completed reconcile worked from the endpoints without web-old-c
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3)
    gate, pace = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    assert (gate.status, gate.release, pace.wait_for) == (Verdict.PASSED, ("web-new-a",), "now")
    assert record.out_proven_at == NOW + 3 and "taken out of service first" in gate.reason
    assert oos.proven_out(s) == {"10.0.0.3"}


def test_the_gate_waits_while_the_checkpoint_still_has_them_and_releases_past_the_bound():
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    gate, pace = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    assert (gate.status, gate.release, pace.wait_for) == (Verdict.WAITING, (), "out-of-service")
    assert next_look(s, pace, NOW + 3) == 1  # quick at first
    assert 3 <= next_look(s, pace, NOW + 30) <= 4  # then at the pods' pace
    assert next_look(s, pace, NOW + 61) == 15  # then slowly once albgate's own call is due
    assert next_look(s, pace, NOW + oos.OUT_OF_SERVICE_RELEASE_SECONDS - 4) == 4  # never past the bound
    assert 3 <= next_look(s, pace, NOW + oos.OUT_OF_SERVICE_RELEASE_SECONDS + 1) <= 4
    late = NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS - 0.5
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, late)
    assert gate.status is Verdict.WAITING and w.elb.deregistered == []
    # When the bound passes / Then albgate deregisters the targets itself (the port from the group), and the
    # release waits only for the lag the preStop leaves (none here)
    late = NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, late)
    assert w.elb.deregistered == [(ARN, [("10.0.0.3", 8080)])]
    assert (gate.status, gate.release) == (Verdict.PASSED, ("web-new-a",))
    assert record.out_proven_at == late and oos.proven_out(s) == {"10.0.0.3"}
    assert (record.deregistered, record.deregistered_total) == ([f"{ARN}|10.0.0.3"], 1)
    assert "albgate deregistered their targets itself" in gate.reason
    assert s.changed_at == w.ports.clock.now()  # an answer from before the call shows them serving


def test_albgates_own_deregistration_adds_to_what_the_step_deregistered_before():
    # Given the step's gate deregistered a carried target of an earlier step already
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    record.deregistered, record.deregistered_total = [f"{ARN}|10.0.0.7"], 1
    oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS)
    assert (record.deregistered, record.deregistered_total) == ([f"{ARN}|10.0.0.7", f"{ARN}|10.0.0.3"], 2)


def refusing(w, s, why: str) -> list:
    """albgate's own DeregisterTargets refused: throttled by the account's bucket, or a port albgate cannot know."""
    calls = []
    if why == "throttled":
        def throttled(arn, targets):
            calls.append(arn)
            raise ThrottledError("Rate exceeded")
        w.elb.deregister_targets = throttled
    else:
        s.target_groups[0].target_port = None  # the binding's Service port names a container port
        w.kube.list_services = lambda namespace: [Service(NS, "web", dict(SERVED), (ServicePort(80, "http"),))]
    return calls


@pytest.mark.parametrize("why", ["throttled", "named-port"])
def test_a_refused_deregistration_is_asked_again_after_twice_as_long_and_the_step_released_at_the_bound(why):
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    calls = refusing(w, s, why)

    def look(since: float):
        return oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + since)
    # When albgate's own call is refused at 60 s / Then the gate waits on, and says when it asks again
    gate, pace = look(oos.OUT_OF_SERVICE_PROOF_SECONDS)
    assert (gate.status, pace.wait_for, record.out_deregister_tries) == (Verdict.WAITING, "out-of-service", 1)
    assert gate.reason.endswith(("(DeregisterTargets throttled by the account's bucket)" if why == "throttled" else
                                 "(a target group's target port names a container port)") + " and asks again in 60 s")
    # And it asks again at 120 s and 240 s, not in between
    for since, tries in ((119, 1), (120, 2), (239, 2), (240, 3), (479, 3)):
        gate, _ = look(since)
        assert (gate.status, record.out_deregister_tries) == (Verdict.WAITING, tries), since
        if since == 240:
            assert gate.reason.endswith("and asks again in 240 s")  # at the bound, twice as long again
        if since == 119:  # a look between two tries says how it stands
            assert gate.reason.endswith("(its reconcile checkpoint); albgate's own DeregisterTargets refused 1 "
                                        "time(s), asked again in 1 s")
    assert len(calls) == (3 if why == "throttled" else 0)
    # When the bound comes without the proof / Then a last refusal releases the step anyway
    gate, _ = look(oos.OUT_OF_SERVICE_RELEASE_SECONDS)
    assert (gate.status, gate.release) == (Verdict.PASSED, ("web-new-a",))
    assert record.out_proven_at is None and "released anyway" in gate.reason and oos.proven_out(s) == set()
    assert record.deregistered == [] and record.deregistered_total == 0 and record.out_deregister_tries == 4


def test_the_steps_deadline_ends_the_wait_for_the_proof_before_the_bound():
    # Given a step whose deadline comes 90 s after its pods went out, and albgate's own call throttled
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    s.step_deadline = NOW + 90
    calls = refusing(w, s, "throttled")
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 89)
    assert gate.status is Verdict.WAITING and len(calls) == 1  # the try at 60 s
    # When the deadline comes / Then one last try, refused, and the step is released anyway
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 90)
    assert gate.status is Verdict.PASSED and "within 90 s" in gate.reason and len(calls) == 2


def test_a_call_that_goes_through_on_a_later_try_proves_the_pods_out():
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    refusing(w, s, "throttled")
    oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 60)
    # When the bucket has room again at the next try
    w.elb.deregister_targets = lambda arn, targets: w.elb.deregistered.append((arn, list(targets)))
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 120)
    assert gate.status is Verdict.PASSED and record.out_proven_at == NOW + 120
    assert w.elb.deregistered == [(ARN, [("10.0.0.3", 8080)])] and "albgate deregistered" in gate.reason


def test_past_the_bound_an_ip_a_serving_pod_holds_again_is_left_alone():
    # Given the pod taken out gone, and its IP held by a pod the Service selects now
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    reused = served(pod("web-new-b", "10.0.0.3", created_at=1767225700.0))
    w.kube.pods = [*w.kube.pods, reused]
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment,
                         NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS)
    assert w.elb.deregistered == [] and gate.status is Verdict.PASSED


def test_past_the_bound_an_ip_a_terminating_pod_holds_is_deregistered():
    # Given the IP of the pod taken out held by a pod the Service still selects but that is terminating
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    going = dataclasses.replace(served(pod("web-new-b", "10.0.0.3", created_at=1767225700.0)), terminating=True)
    w.kube.pods = [*w.kube.pods, going]
    oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS)
    assert w.elb.deregistered == [(ARN, [("10.0.0.3", 8080)])]


def test_the_gate_reads_the_bindings_once_when_it_takes_pods_out_and_in_the_rollouts_namespace():
    w = a_world([NEW, *OLD])
    listed = []
    bindings = w.kube.list_target_group_bindings
    w.kube.list_target_group_bindings = lambda namespace: listed.append(namespace) or bindings(namespace)
    s = state()
    oos.take_out(w.ports, s, s.steps[-1], passed(), OLD, NOW)
    assert listed == [NS]
    listed.clear()
    assert oos.serving_label_selected(w.ports, s) is True and listed == [NS]


def test_a_carried_target_a_look_deregistered_in_the_step_is_not_called_the_pods_taken_out():
    # Given the step's gate deregistered a carried target of an earlier step, and the checkpoint then proved the pod
    # taken out out of the pool
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3)
    record.deregistered, record.deregistered_total = [f"{ARN}|10.0.0.7"], 1
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    # Then the reason names the controller's checkpoint, not albgate
    assert gate.status is Verdict.PASSED and gate.reason.endswith("(the controller's checkpoint)")


def test_a_pre_stop_shorter_than_the_load_balancers_lag_holds_the_release_for_the_rest_of_it():
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3, pre_stop=4)
    gate, pace = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    assert (gate.status, pace.wait_for, pace.seconds) == (Verdict.WAITING, "booked", 6)  # 10 s lag - 4 s
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 9)
    assert gate.status is Verdict.PASSED


# --- the gate and the drain ----------------------------------------------------------------------------------------
def test_check_target_health_settles_without_a_look_at_elb_once_pods_are_out():
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3)
    s = check_target_health(w.ports, s)
    assert s.gate.status is Verdict.PASSED and s.gate.release == ("web-new-a",)
    assert w.elb.health_reads == 0 and s.steps[-1].gate_passed_at == NOW + 3
    assert w.kube.deployment_reads == 1  # one GET for the pods and the template's preStop


def test_a_look_while_pods_are_out_fails_first_on_what_the_policy_watches_with_its_error():
    # Given step 1 waiting for the controller to show its old pods out, and ALB metrics that regressed since
    s = analysis_state(analysis={})
    record = s.steps[-1]
    record.out_of_service, record.out_ips, record.out_release, record.out_at = (
        ["web-old-c"], ["10.0.0.3"], ["web-new-a"], START + 400)
    # When the gate looks / Then it fails on that before reading anything else (the ports have nothing else)
    s = check_target_health(analysis_ports(START + 500), s)
    assert s.gate.status is Verdict.FAILED and s.gate.error == ALB_METRICS_REGRESSED and s.gate.release == ()
    assert "during step 1's gate" in s.gate.reason and s.wait_seconds == 0


def test_the_drain_of_pods_proven_out_before_release_passes_without_a_call():
    # Given step 1 took web-old-c out, proven, and Kubernetes then removed that very pod
    gone = dataclasses.replace(served(OLD[2], OUT_OF_SERVICE), terminating=True)
    w = a_world([served(NEW), *OLD[:2], gone], "")
    s = rollout(step=0, plan=(1, 3), groups=(gated(),), watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    r = s.steps[-1]
    r.out_of_service, r.out_ips, r.out_at, r.out_proven_at = ["web-old-c"], ["10.0.0.3"], NOW - 9, NOW - 5
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.PASSED and "taken out of service" in s.drain.reason
    assert (w.elb.health_reads, w.elb.deregistered) == (0, [])


def test_the_drain_of_another_pod_than_the_one_taken_out_is_verified_as_usual():
    # Given Kubernetes removed web-old-b, not web-old-c which the gate took out
    w = a_world([served(NEW), OLD[0], dataclasses.replace(OLD[1], terminating=True),
                 served(OLD[2], OUT_OF_SERVICE)], "")
    s = rollout(step=0, plan=(1, 3), groups=(gated(),), watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    r = s.steps[-1]
    r.out_of_service, r.out_ips, r.out_at, r.out_proven_at = ["web-old-c"], ["10.0.0.3"], NOW - 9, NOW - 5
    s = verify_drain(w.ports, s)
    assert "taken out of service" not in s.drain.reason


# --- put_back -----------------------------------------------------------------------------------------------------
def test_pods_left_out_of_service_are_put_back_and_no_other():
    out, gone_out = served(OLD[0], OUT_OF_SERVICE), dataclasses.replace(served(OLD[1], OUT_OF_SERVICE),
                                                                       terminating=True)
    unlabelled = served(OLD[2], None)
    w = a_world([out, gone_out, unlabelled, NEW])
    assert oos.put_back(w.ports, state(), [out, gone_out, unlabelled, NEW,
                                           served(pod("web-vanished", "10.0.9.9"), OUT_OF_SERVICE)]) == 1
    assert w.kube.serving == [("web-old-a", True)]


# --- a Service selecting a label the template lacks ------------------------------------------------------------------
def test_a_service_that_selects_the_serving_label_the_template_lacks_is_refused_by_name():
    w = a_world([NEW])
    w.kube.list_services = lambda namespace: [SERVICE, dataclasses.replace(SERVICE, name="api")]
    dep = w.kube.deployment
    dep = dataclasses.replace(dep, template=dataclasses.replace(dep.template, labels={"app": "web"}))
    with pytest.raises(UnsafeConfigurationError) as refused:
        target_group_bindings(w.ports, dep)
    assert str(refused.value) == (
        f"Service(s) api, web in {NS} select {SERVING_LABEL}: 'true', which the pod template of Deployment "
        f"{dep.name} does not carry: its pods would never serve. Add {SERVING_LABEL}: 'true' to "
        "spec.template.metadata.labels (the bootstrap's hardening does), or take it out of the Services' selector")


# --- what each answer says, and the edges of its arithmetic ----------------------------------------------------------
def test_the_reasons_name_the_pods_and_the_seconds():
    w = a_world([NEW, *OLD])
    s = state()
    gate, _ = oos.take_out(w.ports, s, s.steps[-1], passed(), OLD, NOW)
    assert gate.reason == ("every new target healthy; took 1 old pod(s) out of their Service's endpoints before "
                           "releasing the new ones: waiting for the Load Balancer Controller to deregister their "
                           "targets")
    assert s.changed_at == NOW  # an answer from before the take-out shows them serving
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 7.6)
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 7.6)
    assert gate.reason.endswith("; 1 old pod(s) out of their Service's endpoints for 7 s: waiting for the Load "
                                "Balancer Controller to deregister their targets (its reconcile checkpoint)")
    late = NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, late)
    assert gate.reason == (
        "the step's 1 new pod(s) were healthy in every target group; 1 old pod(s) taken out of service first: out "
        "of every target group's pool before their pods go (albgate deregistered their targets itself, the Load "
        "Balancer Controller not having done so within 60 s)")
    w, s, record, pods = settle_world([NEW, *OLD], now=NOW + 3)
    refusing(w, s, "throttled")
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, late)
    assert gate.reason == (
        "the step's 1 new pod(s) were healthy in every target group; 1 old pod(s) out of their Service's endpoints "
        "for 60 s: waiting for the Load Balancer Controller to deregister their targets (its reconcile checkpoint); "
        "albgate could not deregister them itself (DeregisterTargets throttled by the account's bucket) and asks "
        "again in 60 s")
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment,
                         NOW + oos.OUT_OF_SERVICE_RELEASE_SECONDS + 0.7)
    assert gate.reason == (
        "the step's 1 new pod(s) were healthy in every target group; the Load Balancer Controller has not shown the "
        "1 old pod(s) taken out of service out of the pool within 480 s, and albgate could not deregister them "
        "itself (DeregisterTargets throttled by the account's bucket): released anyway, the drain verifies them")
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3)
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    assert gate.reason == ("the step's 1 new pod(s) were healthy in every target group; 1 old pod(s) taken out of "
                           "service first: out of every target group's pool before their pods go (the controller's "
                           "checkpoint)")


@pytest.mark.parametrize("pre_stop,at,waits", [
    (9, 0.5, 1),  # 1 s of the lag uncovered: half a second left is still a wait
    (None, 9.5, 1),  # no preStop: the whole lag
    (10, 0.0, 0),  # a preStop as long as the lag covers it
])
def test_the_release_waits_for_the_lag_its_pre_stop_leaves(pre_stop, at, waits):
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3, pre_stop=pre_stop)
    record.out_proven_at = NOW + 3
    gate, pace = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3 + at)
    if waits:
        assert (gate.status, pace.wait_for, pace.seconds) == (Verdict.WAITING, "booked", waits)
        assert gate.reason.endswith("their preStop sleep is shorter than the load balancer's lag, so the release "
                                    "waits for the rest of it")
    else:
        assert gate.status is Verdict.PASSED


def test_a_template_without_the_rollouts_container_leaves_the_whole_lag_to_wait():
    w, s, record, pods = settle_world([NEW, *OLD[:2]], now=NOW + 3)
    s.request = s.request.model_copy(update={"container": "not-there"})
    gate, pace = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    assert (gate.status, pace.seconds) == (Verdict.WAITING, 10)


def test_the_proof_counts_the_pods_of_other_deployments_the_service_selects():
    # Given a Service that selects this Deployment's pods and another's (several behind one Service), and a
    # checkpoint made from all of them but the pod taken out
    other = served(dataclasses.replace(pod("shop-new-x", "10.0.5.5", created_at=1767225700.0),
                                       labels={"app": "shop"}))
    shared = Service(NS, "web", {SERVING_LABEL: IN_SERVICE}, (ServicePort(80, 8080),))
    unrelated = Service(NS, "other", {"app": "shop", SERVING_LABEL: IN_SERVICE}, (ServicePort(80, 8080),))
    w, s, record, pods = settle_world([NEW, *OLD[:2], other], now=NOW + 3)
    listed = []

    def list_pods(namespace, selector):
        listed.append((namespace, dict(selector)))
        return [p for p in [*w.kube.pods, other] if all(p.labels.get(k) == v for k, v in selector.items())]
    w.kube.list_pods = list_pods
    w.kube.list_services = lambda namespace: [unrelated, shared]
    # When the gate settles with only its own pods in hand / Then the other Deployment's pod is counted: proven
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 3)
    assert gate.status is Verdict.PASSED and record.out_proven_at == NOW + 3
    assert listed == [(NS, {SERVING_LABEL: IN_SERVICE})]  # only the binding's Service, in the rollout's namespace


def test_a_group_whose_binding_or_service_is_missing_takes_nothing_out():
    s = state()
    w = a_world([NEW, *OLD])
    w.kube.list_target_group_bindings = lambda namespace: []
    assert oos.serving_label_selected(w.ports, s) is False
    w = a_world([NEW, *OLD])
    w.kube.list_services = lambda namespace: [Service(NS, "another", dict(SERVED), (ServicePort(80, 8080),))]
    assert oos.serving_label_selected(w.ports, s) is False
    s.target_groups[0].binding = ""
    assert oos.serving_label_selected(a_world([NEW, *OLD]).ports, s) is False


def test_a_pod_gone_before_another_is_taken_out_does_not_stop_the_others():
    # Given step 1 of (2, 3), which removes 2 old pods, and web-old-c, the first chosen, gone since the look
    w = a_world([NEW, *OLD[:2]])
    s = state(plan=(2, 3))
    oos.take_out(w.ports, s, s.steps[-1], passed(("web-new-a", "web-new-b")), OLD, NOW)
    # Then the next one is taken out all the same
    assert w.kube.serving == [("web-old-b", False)]
    assert s.steps[-1].out_of_service == ["web-old-c", "web-old-b"]


def test_a_ready_pod_out_of_service_is_chosen_once():
    out = served(OLD[0], OUT_OF_SERVICE)
    assert [p.name for p in oos.choose_pods([out, OLD[1]], 3)] == ["web-old-a", "web-old-b"]


def test_every_pod_out_of_service_is_counted_back_past_a_vanished_one():
    first, second = served(OLD[0], OUT_OF_SERVICE), served(OLD[1], OUT_OF_SERVICE)
    w = a_world([first, second])
    gone = served(pod("web-vanished", "10.0.9.9"), OUT_OF_SERVICE)
    assert oos.put_back(w.ports, state(), [gone, first, second]) == 2
    assert w.kube.serving == [("web-old-a", True), ("web-old-b", True)]


# --- the proof by a look at ELB, where no checkpoint is written (EKS Auto Mode, an older controller) --------------
def look_world(states: dict[str, str], *, now: float, budget: float = 0.0, throttled: bool = False):
    """A step that took web-old-c (10.0.0.3) out of service at NOW with no checkpoint on its binding; ELB shows
    the targets in ``states`` (IP -> state)."""
    pods = [NEW, *OLD[:2], served(OLD[2], OUT_OF_SERVICE)]
    w = a_world(pods, "", now=now)
    w.elb.health = {ARN: [target(ip, state) for ip, state in states.items()]}
    w.elb.throttled = throttled
    w.ports.budget.wait = budget
    w.kube.deployment = dataclasses.replace(w.kube.deployment, template=dataclasses.replace(
        w.kube.deployment.template, containers=(Container("web", "img", pre_stop_sleep_seconds=30),)))
    s = state()
    record = s.steps[-1]
    record.out_of_service, record.out_ips, record.out_release, record.out_at, record.out_by_look = (
        ["web-old-c"], ["10.0.0.3"], ["web-new-a"], NOW, True)
    s.looked_at = s.changed_at = NOW
    return w, s, record, pods


def settle_at(w, s, record, pods, at: float):
    w.ports = dataclasses.replace(w.ports, clock=type(w.ports.clock)(at))
    return oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, at)


@pytest.mark.parametrize("checkpoint,by_look,registered,back_in", [
    ("", True, 0, 2),  # no checkpoint: the first look, 2 s later
    ("x/y", False, 0, 1),  # the checkpoint: read every second at first
    ("x/y", True, 1, 1),  # albgate registered a target: its own call, at once
])
def test_the_pods_go_out_of_service_with_or_without_a_checkpoint_and_the_record_says_how_they_are_proven(
        checkpoint, by_look, registered, back_in):
    w = a_world([NEW, *OLD], checkpoint)
    s = state()
    s.steps[-1].registered_total = registered
    gate, pace = oos.take_out(w.ports, s, s.steps[-1], passed(), OLD, NOW)
    assert (gate.status, pace.wait_for, w.kube.serving) == (Verdict.WAITING, "out-of-service", [("web-old-c", False)])
    assert s.steps[-1].out_by_look is by_look and next_look(s, pace, NOW) == back_in


def test_no_look_before_it_is_due_and_the_gate_comes_back_when_it_is():
    w, s, record, pods = look_world({"10.0.0.3": DRAINING}, now=NOW + 1)
    gate, pace = settle_at(w, s, record, pods, NOW + 1)
    assert (gate.status, w.elb.health_reads) == (Verdict.WAITING, 0)
    assert gate.reason.endswith("waiting for the Load Balancer Controller to deregister their targets (a look at "
                                "ELB shows them `draining`)")
    assert (pace.wait_for, next_look(s, pace, NOW + 1)) == ("out-of-service", 1)


@pytest.mark.parametrize("states", [{"10.0.0.3": DRAINING, "10.0.1.1": HEALTHY}, {"10.0.0.3": UNUSED},
                                    {"10.0.1.1": HEALTHY}])
def test_a_look_that_shows_every_pod_out_draining_or_gone_proves_them_out(states):
    w, s, record, pods = look_world(states, now=NOW + 2)
    gate, pace = settle_at(w, s, record, pods, NOW + 2)
    assert (gate.status, gate.release, pace.wait_for) == (Verdict.PASSED, ("web-new-a",), "now")
    assert (w.elb.health_reads, s.describe_target_health_calls, s.looked_at) == (1, 1, NOW + 2)
    assert record.out_proven_at == NOW + 2 and oos.proven_out(s) == {"10.0.0.3"}
    assert gate.reason.endswith("out of every target group's pool before their pods go (a look at ELB)")
    assert w.elb.deregistered == []


def test_a_look_that_still_shows_one_serving_waits_twice_as_long_each_time_and_then_15_s_at_most():
    w, s, record, pods = look_world({"10.0.0.3": HEALTHY}, now=NOW + 2)
    looks, passes = [], []
    at = NOW + 2
    while at < NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS:
        before = w.elb.health_reads
        gate, pace = settle_at(w, s, record, pods, at)
        passes.append(at - NOW)
        assert gate.status is Verdict.WAITING and record.out_proven_at is None
        if w.elb.health_reads > before:
            looks.append(at - NOW)
            assert gate.reason.endswith("(a look at ELB shows them `draining`; the last look still shows 1 in the "
                                        "pool)")
        at += next_look(s, pace, at)
    assert looks == [2, 4, 8, 16, 31, 46]
    # and between looks the gate reads the pods at their pace, no more often (nothing proves them out sooner)
    assert passes[:3] == [2, 4, 7] and all(3 <= b - a <= 4 for a, b in zip(passes, passes[1:]) if b not in looks)
    # Then at the bound albgate deregisters them itself, as where the checkpoint never came
    gate, _ = settle_at(w, s, record, pods, NOW + oos.OUT_OF_SERVICE_PROOF_SECONDS)
    assert w.elb.deregistered == [(ARN, [("10.0.0.3", 8080)])] and gate.status is Verdict.PASSED
    assert "albgate deregistered their targets itself" in gate.reason


def test_a_look_waits_for_its_turn_in_albgates_share_without_a_call():
    w, s, record, pods = look_world({"10.0.0.3": DRAINING}, now=NOW + 2, budget=7.0)
    gate, pace = settle_at(w, s, record, pods, NOW + 2)
    assert (gate.status, w.elb.health_reads, pace.wait_for, pace.seconds) == (Verdict.WAITING, 0, "booked", 7)
    assert gate.reason.endswith("(a look at ELB shows them `draining`; its look is booked in 7 s in albgate's share "
                                "of the account's Describe* calls)")


def test_a_throttled_look_backs_off_and_tells_the_share():
    w, s, record, pods = look_world({"10.0.0.3": DRAINING}, now=NOW + 2, throttled=True)
    gate, pace = settle_at(w, s, record, pods, NOW + 2)
    assert (gate.status, w.elb.health_reads, s.throttles, w.ports.budget.throttles) == (Verdict.WAITING, 1, 1, 1)
    assert gate.reason.endswith("(a look at ELB shows them `draining`; DescribeTargetHealth throttled (1x), backing "
                                "off)")
    back_off = s.elb_after - (NOW + 2)
    assert 2 * INTERVAL <= back_off <= 2 * INTERVAL * 1.2 + 1  # the interval doubled per throttle, jittered
    assert back_off == next_look(s, Pace("throttled"), NOW + 2)  # as long as the gate's own, same jitter
    # the pods and the alarms are read on at the pods' pace meanwhile
    assert (pace.wait_for, pace.seconds) == ("out-of-service", back_off) and 3 <= next_look(s, pace, NOW + 2) <= 4
    # And no call until the back-off is over, even when a look is due; the gate wakes no later than its end
    gate, pace = settle_at(w, s, record, pods, s.elb_after - 1)
    assert (w.elb.health_reads, gate.status, pace.wait_for) == (1, Verdict.WAITING, "out-of-service")
    assert gate.reason.endswith("DescribeTargetHealth throttled (1x), backing off)")
    assert next_look(s, pace, s.elb_after - 1) == 1
    # When the back-off is all but over / Then it calls again; throttled again, it backs off twice as long
    gate, _ = settle_at(w, s, record, pods, s.elb_after - 0.5)
    assert (w.elb.health_reads, s.throttles) == (2, 2) and "throttled (2x)" in gate.reason
    assert 4 * INTERVAL <= s.elb_after - (NOW + back_off + 1.5) <= 4 * INTERVAL * 1.2 + 1
    # When the bucket has room again / Then the look proves them, and the throttles are forgotten
    w.elb.throttled = False
    gate, _ = settle_at(w, s, record, pods, s.elb_after)
    assert gate.status is Verdict.PASSED and (s.throttles, s.elb_after) == (0, None)


def test_a_look_is_made_from_half_a_second_before_it_is_due():
    w, s, record, pods = look_world({"10.0.0.3": DRAINING}, now=NOW + 1.5)
    gate, _ = settle_at(w, s, record, pods, NOW + 1.4)
    assert (gate.status, w.elb.health_reads) == (Verdict.WAITING, 0)
    gate, _ = settle_at(w, s, record, pods, NOW + 1.5)
    assert (gate.status, w.elb.health_reads) == (Verdict.PASSED, 1)


def test_a_look_follows_another_executions_call_booked_sooner_than_its_own_turn():
    # Given albgate's share has a turn in 7 s, and another rollout of the same group a call booked in 3 s
    w, s, record, pods = look_world({"10.0.0.3": DRAINING}, now=NOW + 2, budget=7.0)
    shared = LocalLooks(w.ports.clock)
    shared.book(ARN, NOW + 5)
    w.ports = dataclasses.replace(w.ports, looks=shared)
    gate, pace = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 2)
    # Then it waits to read that answer, not for its own turn
    assert (gate.status, w.elb.health_reads, s.followed_at) == (Verdict.WAITING, 0, NOW + 5)
    assert pace.wait_for == "booked" and pace.seconds < 7
    assert gate.reason.endswith(f"its look is booked in {pace.seconds} s in albgate's share of the account's "
                                "Describe* calls)")


def test_another_executions_answer_given_after_the_pods_went_out_stands_in_for_the_call():
    w, s, record, pods = look_world({"10.0.0.3": HEALTHY}, now=NOW + 2)
    shared = LocalLooks(w.ports.clock)
    w.ports = dataclasses.replace(w.ports, looks=shared)
    # an answer from before the pods went out proves nothing: a call is made
    shared.share(ARN, Look(NOW - 1, (target("10.0.0.3", DRAINING),)))
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 2)
    assert (gate.status, w.elb.health_reads) == (Verdict.WAITING, 1)
    # one given since this execution's own look stands in for the next
    shared.share(ARN, Look(NOW + 3, (target("10.0.0.3", DRAINING),)))
    gate, _ = oos.settle(w.ports, s, record, pods[:1], pods[1:], w.kube.deployment, NOW + 4)
    assert (gate.status, w.elb.health_reads, s.shared_looks) == (Verdict.PASSED, 1, 1)


def test_the_drain_of_pods_a_look_proved_out_names_the_look():
    gone = dataclasses.replace(served(OLD[2], OUT_OF_SERVICE), terminating=True)
    w = a_world([served(NEW), *OLD[:2], gone], "")
    s = rollout(step=0, plan=(1, 3), groups=(gated(),), watched=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    r = s.steps[-1]
    r.out_of_service, r.out_ips, r.out_at, r.out_proven_at, r.out_by_look = (
        ["web-old-c"], ["10.0.0.3"], NOW - 9, NOW - 5, True)
    s = verify_drain(w.ports, s)
    assert s.drain.status is Verdict.PASSED and s.drain.reason.endswith("before their pods were released (a look "
                                                                        "at ELB)")
    assert (w.elb.health_reads, w.elb.deregistered) == (0, [])


@pytest.mark.parametrize("looked,due", [(None, 2), (-5, 2), (2, 4), (4, 8), (8, 16), (16, 31), (46, 61)])
def test_the_looks_for_the_proof_come_twice_as_long_after_the_pods_went_out_and_15_s_apart_at_most(looked, due):
    out_at = 1000.0
    assert out_of_service_look_due(out_at, None if looked is None else out_at + looked) == out_at + due


def with_pre_stop(w, seconds: int = 30):
    w.kube.deployment = dataclasses.replace(w.kube.deployment, template=dataclasses.replace(
        w.kube.deployment.template, containers=(Container("web", "img", pre_stop_sleep_seconds=seconds),)))
    return w


@pytest.mark.parametrize("step,registered_in,old,out", [(0, 0, OLD, "c"), (1, 0, OLD[:2], "b"), (1, 1, OLD[:2], "b")])
def test_after_albgate_registered_targets_itself_it_deregisters_the_pods_out_at_once(step, registered_in, old, out):
    # Given albgate registered a target itself in this step or an earlier one (the controller down or late): its
    # checkpoint, which is there, says nothing of that target
    w = with_pre_stop(a_world([NEW, *old]))
    s = rollout(step=step, plan=(1, 2, 3), groups=(gated(),))
    s.steps[registered_in].registered_total = 1
    record = s.steps[-1]
    # When the gate passes / Then the pods go out, to be proven by a look
    gate, _ = oos.take_out(w.ports, s, record, passed(), old, NOW)
    assert gate.status is Verdict.WAITING and record.out_by_look and record.out_of_service == [f"web-old-{out}"]
    # and at the next look, however soon, albgate deregisters them itself, without waiting for the controller or a
    # look
    gate, _ = oos.settle(w.ports, s, record, [NEW], old, w.kube.deployment, NOW + 0.5)
    ip = record.out_ips[0]
    assert w.elb.deregistered == [(ARN, [(ip, 8080)])] and w.elb.health_reads == 0
    assert (gate.status, record.out_proven_at) == (Verdict.PASSED, NOW + 0.5)
    assert gate.reason.endswith("(albgate deregistered their targets itself, as it had registered targets the Load "
                                "Balancer Controller had not in time)")


def test_after_albgate_registered_targets_a_refused_call_is_asked_again_from_60_s_on_and_a_look_may_prove_first():
    w = with_pre_stop(a_world([NEW, *OLD]))
    s = state()
    record = s.steps[-1]
    record.registered_total = 1
    oos.take_out(w.ports, s, record, passed(), OLD, NOW)
    calls = refusing(w, s, "throttled")
    gate, pace = oos.settle(w.ports, s, record, [NEW], OLD, w.kube.deployment, NOW + 1)
    assert (gate.status, len(calls), record.out_deregister_tries) == (Verdict.WAITING, 1, 1)
    assert gate.reason.endswith("albgate could not deregister them itself (DeregisterTargets throttled by the "
                                "account's bucket) and asks again in 59 s")
    assert next_look(s, pace, NOW + 1) == 1  # the look that may prove them is due at 2 s
    # When the controller deregisters them meanwhile / Then that look proves them out
    w.elb.health = {ARN: [target("10.0.0.3", DRAINING)]}
    gate, _ = oos.settle(w.ports, s, record, [NEW], OLD, w.kube.deployment, NOW + 2)
    assert (gate.status, w.elb.health_reads, len(calls)) == (Verdict.PASSED, 1, 1)
    assert gate.reason.endswith("(a look at ELB)")


def test_after_albgate_registered_targets_refused_calls_are_asked_again_at_60_120_and_240_s():
    w, s, record, pods = look_world({"10.0.0.3": HEALTHY}, now=NOW + 0.5)
    s.steps[-1].registered_total = 1
    calls = refusing(w, s, "throttled")
    made = []
    at = NOW + 0.5
    while at < NOW + 300:
        before = len(calls)
        _, pace = settle_at(w, s, record, pods, at)
        if len(calls) > before:
            made.append(at - NOW)
        at += next_look(s, pace, at)
    assert made == [0.5, 60.5, 120.5, 240.5]  # the first look at or after each time due


def test_past_albgates_refused_call_the_looks_go_on_15_s_apart_and_the_next_call_comes_on_time():
    # Given the controller never deregisters the pod taken out, and albgate's own call throttled
    w, s, record, pods = look_world({"10.0.0.3": HEALTHY}, now=NOW + 2)
    calls = refusing(w, s, "throttled")
    looks, made = [], []
    at = NOW + 2
    while at <= NOW + 130:
        reads, before = w.elb.health_reads, len(calls)
        _, pace = settle_at(w, s, record, pods, at)
        if w.elb.health_reads > reads:
            looks.append(at - NOW)
        if len(calls) > before:
            made.append(at - NOW)
        at += next_look(s, pace, at)
    # Then a look comes the second after the call refused at 60 s, as due, and albgate asks again at 120 s sharp
    assert looks == [2, 4, 8, 16, 31, 46, 61, 76, 91, 106, 121]
    assert made == [60, 120]


def test_a_step_deadline_before_the_proofs_wait_ends_with_albgates_own_call_and_says_when():
    w, s, record, pods = look_world({"10.0.0.3": HEALTHY}, now=NOW + 2)
    s.step_deadline = NOW + 30
    gate, _ = settle_at(w, s, record, pods, NOW + 30)
    assert w.elb.deregistered == [(ARN, [("10.0.0.3", 8080)])] and gate.status is Verdict.PASSED
    assert gate.reason.endswith("(albgate deregistered their targets itself, the Load Balancer Controller not "
                                "having done so within 30 s)")


def test_each_group_gets_its_own_deregistration_and_a_refused_one_stops_none_of_the_others():
    # Given four target groups, the account's bucket refusing the first and the third
    w = a_world([NEW, *OLD])
    s = state()
    record = s.steps[-1]
    refused = {"arn:a", "arn:c"}

    def deregister(arn, targets):
        if arn in refused:
            raise ThrottledError("Rate exceeded")
        w.elb.deregistered.append((arn, list(targets)))
    w.elb.deregister_targets = deregister
    todo = {"arn:a": [("10.0.0.1", 80), ("10.0.0.2", 80)], "arn:b": [("10.0.0.3", 80), ("10.0.0.4", 80),
                                                                      ("10.0.0.5", 80)],
            "arn:c": [("10.0.0.6", 80)], "arn:d": [("10.0.0.7", 80)]}
    # Then the second and the fourth group's calls go through, and the counts add up over the groups
    assert deregister_each(w.ports, s, record, todo) == (4, 3)
    assert w.elb.deregistered == [("arn:b", todo["arn:b"]), ("arn:d", todo["arn:d"])]
    assert record.deregistered == ["arn:b|10.0.0.3", "arn:b|10.0.0.4", "arn:b|10.0.0.5", "arn:d|10.0.0.7"]


def test_a_throttled_look_backs_off_no_later_than_the_targets_left_to_the_controller_are_due():
    # Given targets a drain left to the controller 6 s ago (settled 10 s after: rollout.left)
    w, s, record, pods = look_world({"10.0.0.3": DRAINING}, now=NOW + 2, throttled=True)
    s.left_at = NOW - 4
    settle_at(w, s, record, pods, NOW + 2)
    # Then the back-off ends when they are due, not an interval doubled later
    assert s.elb_after == NOW + 6


def test_past_the_first_minute_the_gate_wakes_for_its_looks_and_its_calls_only():
    w, s, record, pods = look_world({"10.0.0.3": HEALTHY}, now=NOW + 2)
    refusing(w, s, "throttled")
    passes = []
    at = NOW + 2
    while at <= NOW + 130:
        _, pace = settle_at(w, s, record, pods, at)
        passes.append(at - NOW)
        at += next_look(s, pace, at)
    assert [p for p in passes if p >= 60] == [60, 61, 76, 91, 106, 120, 121]
