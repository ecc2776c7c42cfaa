"""The real handlers, called as Lambda would call them, against the simulated cluster and ALB.

One behaviour per test at the handler layer: the state they return, what they change in the cluster, and how
they react to throttling and to being invoked twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import albgate.sim.lbc
from albgate.sim import Simulation, load_scenario
from albgate.sim.manifests import without_serving_label
from albgate.sim.strategies import bootstrap_hardened
from lambdas.domain.errors import ThrottledError
from lambdas.domain.poll import OUT_OF_SERVICE_FIRST_LOOK_SECONDS, WATCH_IN_TASK_SECONDS
from lambdas.domain.ports import ALBGATE_GATE, LBC_GATE_PREFIX, OUT_OF_SERVICE, SERVING_LABEL, Ports
from lambdas.domain.rollout.out_of_service import OUT_OF_SERVICE_PROOF_SECONDS
from lambdas.handlers import _runtime
from lambdas.handlers import check_target_health, preflight, release_old_pods, roll_back, start_step, verify_drain

SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"


class ThrottlingElb:
    """The simulated ELB, except that the next ``fail`` DescribeTargetHealth calls are throttled."""

    def __init__(self, elb, fail: int) -> None:
        self.elb, self.fail = elb, fail

    def describe_target_group(self, arn):
        return self.elb.describe_target_group(arn)

    def describe_target_group_settings(self, arns):
        return self.elb.describe_target_group_settings(arns)

    def describe_deregistration_delay(self, arn):
        return self.elb.describe_deregistration_delay(arn)

    def describe_target_health(self, arn):
        if self.fail > 0:
            self.fail -= 1
            raise ThrottledError("Rate exceeded")
        return self.elb.describe_target_health(arn)


def _installed(scenario) -> Iterator[Simulation]:
    s = Simulation(scenario)
    s.run_until(s.rollout_start)
    _runtime.use_ports(lambda cluster: s.ports)
    yield s
    _runtime.use_ports(None)


@pytest.fixture()
def sim():
    """The seed app hardened, its Service not selecting the serving label: the drains below are those that prove or
    deregister old targets after Kubernetes deleted their pods (with the label, a step's old pods leave the pool
    before their release: the ``served`` tests)."""
    yield from _installed(without_serving_label(bootstrap_hardened(load_scenario(SEED_APP))))


@pytest.fixture()
def served():
    """The seed app as the bootstrap leaves it: its Service selects the serving label its pods carry."""
    yield from _installed(bootstrap_hardened(load_scenario(SEED_APP)))


@pytest.fixture()
def sim_without_checkpoint(sim, monkeypatch):
    """The same world, its controller writing no reconcile checkpoint (as before v2.9.1 in this one respect), so
    that a drain is proven only the other ways: the controller's conditions, a look at ELB, or albgate's own call."""
    monkeypatch.setattr(albgate.sim.lbc, "checkpoint_annotation", lambda b, pods: "")
    return sim


def started(sim) -> dict:
    state = preflight.handler({"request": sim.rollout_request().model_dump(mode="json"), "execution_name": "t1"}, None)
    return start_step.handler(state, None)


def test_preflight_reads_the_real_target_group_settings(sim):
    state = preflight.handler({"request": sim.rollout_request().model_dump(mode="json"), "execution_name": "t1"}, None)
    (tg,) = state["target_groups"]
    assert tg["health_check_interval_seconds"] == 5  # the bootstrapped Ingress writes 5 s
    assert tg["deregistration_delay_seconds"] == 300  # controller default, read from the group
    assert state["plan"] == [1, 2, 3] and state["findings"] == []


def test_start_step_writes_the_gate_and_holds_old_pods(sim):
    state = started(sim)
    d = sim.kube.get_deployment("readiness", "nginx-app")
    assert ALBGATE_GATE in d.template.readiness_gates
    assert (d.max_surge, d.max_unavailable) == (1, 0)
    assert state["step"] == 0 and state["more_steps"] is True


def test_start_step_twice_is_one_change(sim):
    state = preflight.handler({"request": sim.rollout_request().model_dump(mode="json"), "execution_name": "t1"}, None)
    first = start_step.handler(state, None)
    sim.advance(0.001)  # the Deployment controller's reaction to the write (a new revision) lands first
    revision = sim.kube.get_deployment("readiness", "nginx-app").revision
    second = start_step.handler(state, None)  # the same input again: a duplicated invocation
    assert sim.kube.get_deployment("readiness", "nginx-app").revision == revision
    assert first["step"] == second["step"] == 0 and first["next_step"] == second["next_step"] == 1


def test_throttling_backs_off_instead_of_failing(sim):
    state = started(sim)
    # the first new pod is ContainersReady, and (as if a look had seen it so long ago that its target could be
    # healthy) the gate asks ELB instead of reading the controller's conditions
    state["steps"][-1]["first_ready_at"] = 0.0
    # and only ELB can tell (a controller writing its conditions meanwhile would let the gate pass without a call)
    state["request"]["policy"]["read_controller_conditions"] = False
    sim.advance(12)
    throttling = ThrottlingElb(sim.elb, fail=2)
    _runtime.use_ports(lambda cluster: Ports(kube=sim.kube, elb=throttling, clock=sim.clock))
    at = sim.clock.now()
    once = check_target_health.handler(state, None)
    first_back_off = once["elb_after"] - at
    assert once["wait_seconds"] == first_back_off
    # a look within the back-off (a retried task, say) makes no call
    early = check_target_health.handler(once, None)
    assert "backing off, the next call in" in early["gate"]["reason"] and early["throttles"] == 1
    sim.advance(first_back_off)  # the back-off ends
    at = sim.clock.now()
    twice = check_target_health.handler(early, None)
    assert once["gate"]["status"] == twice["gate"]["status"] == "WAITING"
    assert "throttled (1x)" in once["gate"]["reason"] and "throttled (2x)" in twice["gate"]["reason"]
    assert 2 * 5 <= first_back_off < twice["elb_after"] - at  # doubled per throttle, from the 5 s interval
    sim.advance(twice["elb_after"] - at)
    recovered = check_target_health.handler(twice, None)
    assert recovered["throttles"] == 0 and recovered["elb_after"] is None


def test_release_opens_the_gate_only_on_the_pods_the_gate_named(sim):
    state = gate_passed(sim)
    released = release_old_pods.handler(state, None)
    pods = sim.kube.list_pods("readiness", {"app": "nginx"})
    opened = sorted(p.name for p in pods if p.condition(ALBGATE_GATE) == "True")
    assert opened == sorted(state["gate"]["release"]) and len(opened) == 1
    # and the gate said, per target group, where the step's new targets stood
    [group] = state["gate"]["groups"]
    assert group["service"] == "nginx-svc" and group["healthy"] == 1 and group["target_group"].startswith("k8s-")
    assert len(released["watched_ips"]) == 3  # the old pods' IPs, recorded before any of them goes


class FakeRegistry:
    """An ImagePort that knows one tag: models ECR's answer, nothing else."""

    def __init__(self, image: str, pinned: str) -> None:
        self.image, self.pinned = image, pinned

    def resolve_digest(self, image):
        return self.pinned if image == self.image else None


def test_a_tag_is_pinned_to_its_digest_and_the_digest_is_rolled(sim):
    # Given a registry where ikubernetes/myapp:v2 is sha256:ab...
    pinned = "ikubernetes/myapp@sha256:" + "ab" * 32
    registry = FakeRegistry("ikubernetes/myapp:v2", pinned)
    _runtime.use_ports(lambda cluster: Ports(kube=sim.kube, elb=sim.elb, clock=sim.clock, images=registry))
    # When the rollout starts
    state = started(sim)
    # Then the state records both, and the template runs the digest
    assert state["requested_image"] == "ikubernetes/myapp:v2" and state["target_image"] == pinned
    assert any("pinned" in n for n in state["notes"])
    d = sim.kube.get_deployment("readiness", "nginx-app")
    assert d.template.container("nginx").image == pinned


def test_an_unpinnable_tag_is_rolled_as_given_with_a_note(sim):
    state = started(sim)  # the simulation's ports have no registry
    assert state["target_image"] == "ikubernetes/myapp:v2"
    assert any("not pinned" in n for n in state["notes"])


def gate_passed(sim) -> dict:
    state = started(sim)
    for _ in range(20):
        state = check_target_health.handler(state, None)
        if state["gate"]["status"] != "WAITING":
            break
        sim.advance(state["wait_seconds"])
    assert state["gate"]["status"] == "PASSED"
    return state


def _polls(handler, verdict: str, sim, state: dict, polls: int) -> dict:
    """Call a polling task until its verdict is no longer WAITING, advancing the world by each wait it asks."""
    for _ in range(polls):
        state = handler.handler(state, None)
        if state[verdict]["status"] != "WAITING":
            break
        sim.advance(state["wait_seconds"])
    return state


def drain_polls(sim, state: dict, polls: int) -> dict:
    return _polls(verify_drain, "drain", sim, state, polls)


def gate_polls(sim, state: dict, polls: int) -> dict:
    return _polls(check_target_health, "gate", sim, state, polls)


def controller_gates_opened(sim) -> None:
    """Run until the controller has opened its own readiness gate on every new pod it gates (the namespace is
    labelled, as the bootstrap leaves it): from then on the pods turn Ready on albgate's gate alone."""
    def opened() -> bool:
        gated = [p for p in sim.kube.list_pods("readiness", {"app": "nginx"})
                 if not p.terminating and any(g.startswith(LBC_GATE_PREFIX) for g in p.readiness_gates)]
        return all(p.condition(g) == "True" for p in gated for g in p.readiness_gates if g.startswith(LBC_GATE_PREFIX))
    assert sim.run_until(sim.clock.t + 60, stop=opened)


def released_target_states(sim, state: dict) -> list[str | None]:
    arn = state["target_groups"][0]["arn"]
    live = {p.ip for p in sim.kube.list_pods("readiness", {"app": "nginx"}) if not p.terminating}
    return [sim.alb.state_of(arn, ip) for ip in state["watched_ips"] if ip not in live]


def test_with_the_controller_down_after_opening_its_gate_the_next_gate_deregisters_the_released_pod_in_time(sim):
    # Given a step whose gate the controller's own conditions opened, and then a Load Balancer Controller that
    # stopped reconciling, installed with the chart's webhook failurePolicy Ignore (with albgate's Fail no pod of
    # the next step would be created while it is down; with Ignore one is, without the controller's gate)
    state = gate_passed(sim)
    controller_gates_opened(sim)
    assert state["steps"][-1]["opened_by_controller"]
    sim.lbc.up = False
    sim.lbc.spec = sim.lbc.spec.model_copy(update={"webhook_failure_policy": "Ignore"})
    # When albgate releases the old pod and checks the drain
    released_at = sim.clock.t
    state = release_old_pods.handler(state, None)
    state = drain_polls(sim, state, 4)
    # Then the step leaves the released target to the controller, which had just shown it keeps up, and hands its
    # drain over unseen, carrying the target: no call of albgate's
    assert sim.alb.deregister_calls["albgate"] == 0 and released_target_states(sim, state) == ["healthy"]
    assert state["drain"]["status"] == "DRAINING" and state["pending_drain_step"] is None
    assert len(state["carried_ips"]) == 1 and state["left_at"] is not None
    # When the next step's gate looks while the controller stays down: no reconcile of the controller's shows on the
    # pods, so albgate deregisters the carried target itself once LEFT_TO_CONTROLLER_SECONDS have passed
    (ip,) = state["carried_ips"]
    state = gate_polls(sim, start_step.handler(state, None), 12)
    assert sim.alb.deregister_calls["albgate"] == 1 and state["left_at"] is None
    drained_at = next(t for t, _, t_ip, _, to, _ in sim.alb.transitions if t_ip == ip and to == "draining")
    # well within the old pod's 30 s preStop less the load balancer's 10 s lag
    assert drained_at - released_at <= 20
    # And the gate still passes on the target albgate registers (nobody else does while the controller is down),
    # and the released one stays carried, draining, named once
    assert state["gate"]["status"] == "PASSED" and sim.alb.register_calls["albgate"] == 1
    assert released_target_states(sim, state) == ["draining"] and len(state["carried_ips"]) == 1
    assert sim.alb.deregister_calls["albgate"] == 1


def test_with_the_controller_down_and_no_pod_to_look_for_the_deadline_alone_deregisters_in_time(sim):
    # Given a step whose gate the controller's conditions opened, and then the controller down as albgate installs
    # it: its webhook fails closed, so no pod of the next step is created and the next gate has nothing to ask
    # ELB about
    state = gate_passed(sim)
    controller_gates_opened(sim)
    sim.lbc.up = False
    released_at = sim.clock.t
    state = release_old_pods.handler(state, None)
    state = drain_polls(sim, state, 4)
    (ip,) = state["carried_ips"]
    assert sim.alb.deregister_calls["albgate"] == 0 and state["left_at"] is not None
    # When the next step's gate looks for a while
    state = gate_polls(sim, start_step.handler(state, None), 12)
    # Then albgate deregistered the released target itself, without a look, 20 s at most after the release
    assert state["gate"]["status"] == "WAITING" and sim.alb.describe_calls["albgate"] == 0
    assert sim.alb.deregister_calls["albgate"] == 1 and state["left_at"] is None
    drained_at = next(t for t, _, t_ip, _, to, _ in sim.alb.transitions if t_ip == ip and to == "draining")
    assert drained_at - released_at <= 20


def test_with_the_controller_up_the_last_drain_passes_on_its_checkpoint_and_calls_nothing(sim):
    # Given a rollout whose first two steps passed, the controller up
    state = gate_passed(sim)
    while state["more_steps"]:
        state = drain_polls(sim, release_old_pods.handler(state, None), 40)
        state = gate_polls(sim, start_step.handler(state, None), 30)
    assert state["gate"]["status"] == "PASSED"
    looks = sim.alb.describe_calls.get("albgate", 0)
    # When the last step releases its old pod and checks the drain
    state = drain_polls(sim, release_old_pods.handler(state, None), 40)
    # Then the drain was left to the controller, and its checkpoint proved the released targets out of the pool: no
    # call of albgate's to ELB, and the targets draining, deregistered by the controller
    assert state["drain"]["status"] == "PASSED" and "its checkpoint" in state["drain"]["reason"]
    assert sim.alb.describe_calls.get("albgate", 0) == looks and sim.alb.mutating_calls["albgate"] == 0
    assert released_target_states(sim, state) == ["draining"] * 3  # every old target the rollout released


def test_with_the_controller_up_the_next_gate_sees_it_went_past_the_released_pod_and_calls_nothing(
        sim_without_checkpoint):
    # Given a step whose gate the controller's conditions opened, with the controller up (writing no checkpoint)
    sim = sim_without_checkpoint
    state = gate_passed(sim)
    controller_gates_opened(sim)
    state = release_old_pods.handler(state, None)
    state = drain_polls(sim, state, 4)
    assert state["drain"]["status"] == "DRAINING" and state["left_at"] is not None
    # When the next step's gate looks until it passes
    state = gate_polls(sim, start_step.handler(state, None), 40)
    # Then the controller's own write on the new pod proved it had deregistered the released target: albgate made
    # no RegisterTargets/DeregisterTargets call, and the target is draining
    assert state["gate"]["status"] == "PASSED" and state["left_at"] is None
    assert sim.alb.mutating_calls["albgate"] == 0
    assert released_target_states(sim, state) == ["draining"]


def test_while_the_webhook_refuses_the_new_pods_the_gate_says_so_and_stops_saying_it_once_they_exist(sim):
    # Given the controller albgate installs (its pod webhook fails closed) down when the step starts
    sim.lbc.up = False
    state = started(sim)
    # When the gate looks while the webhook is down, the controllers of Kubernetes having had their second
    sim.advance(3)
    state = check_target_health.handler(state, None)
    # Then it waits, and its reason says Kubernetes cannot create the pods and why
    assert state["gate"]["status"] == "WAITING"
    assert "Kubernetes reports ReplicaFailure FailedCreate" in state["gate"]["reason"]
    assert "mpod.elbv2.k8s.aws" in state["gate"]["reason"]
    # And once the controller is back and the pod exists, the gate passes without the note
    sim.lbc.up = True
    state = gate_polls(sim, state, 400)
    assert state["gate"]["status"] == "PASSED" and "ReplicaFailure" not in state["gate"]["reason"]


def test_a_target_the_controller_deregistered_is_left_to_it_and_the_drain_is_handed_over_unseen(
        sim_without_checkpoint):
    # Given a released pod whose target the controller, which opened the step's gate, has already put in draining
    # (a controller writing no checkpoint)
    sim = sim_without_checkpoint
    state = gate_passed(sim)
    controller_gates_opened(sim)
    state = release_old_pods.handler(state, None)
    sim.advance(3)
    assert released_target_states(sim, state) == ["draining"]
    looks = sim.alb.describe_calls.get("albgate", 0)
    # When the drain is checked until it is handed over to the next step's gate
    state = drain_polls(sim, state, 10)
    # Then albgate left the target to the controller and handed the drain over without a call of any kind
    assert state["drain"]["status"] == "DRAINING"
    assert sim.alb.describe_calls.get("albgate", 0) == looks
    assert sim.alb.deregister_calls["albgate"] == 0 and state["steps"][0]["deregistered"] == []
    assert released_target_states(sim, state) == ["draining"]
    carried = state["carried_ips"]
    assert len(carried) == 1
    # And the next step's gate does not wait for it (it reads the controller's conditions, no ELB call), sees the
    # controller went past it, while the next drain watches it with its own released targets
    state = gate_polls(sim, start_step.handler(state, None), 30)
    assert state["gate"]["status"] == "PASSED" and sim.alb.describe_calls.get("albgate", 0) == looks
    assert state["left_at"] is None
    state = release_old_pods.handler(state, None)
    assert set(carried) <= set(state["watched_ips"])
    assert sim.alb.deregister_calls["albgate"] == 0


def test_rollback_with_no_previous_pod_serving_returns_behind_the_gate(sim):
    # Given a rollout whose three steps all passed: no pod of the previous (ungated) revision is left
    state = gate_passed(sim)
    while True:
        state = drain_polls(sim, release_old_pods.handler(state, None), 40)
        # the controller's checkpoint proves a drain at once, or the next gate follows it (the last one is seen)
        assert state["drain"]["status"] == "PASSED" or (state["more_steps"] and state["drain"]["status"] == "DRAINING")
        if not state["more_steps"]:
            break
        state = gate_polls(sim, start_step.handler(state, None), 30)
    sim.advance(60)
    assert {p.labels["pod-template-hash"] for p in sim.kube.list_pods("readiness", {"app": "nginx"}) if not p.terminating} \
        == {rs.pod_template_hash for rs in sim.kube.list_replica_sets("readiness", "nginx-app") if rs.replicas}
    # When it is rolled back (say a late check failed)
    state["failure"] = {"Error": "TargetsNotHealthy", "Cause": "late failure"}
    state = start_step.handler(roll_back.handler(state, None), None)
    # Then the previous image comes back behind albgate's gate, so no serving pod goes before its replacement's
    # target is healthy (an undo would bring back ungated pods that Kubernetes counts Ready at once)
    sim.advance(1)  # the Deployment controller's sync
    d = sim.kube.get_deployment("readiness", "nginx-app")
    assert d.template.container("nginx").image == "ikubernetes/myapp:v1"
    assert ALBGATE_GATE in d.template.readiness_gates and d.revision == 3  # a new ReplicaSet, not revision 1
    state = check_target_health.handler(state, None)
    assert state["gate"]["status"] == "WAITING"


def test_while_the_new_pods_cannot_be_scheduled_the_gate_looks_every_15_s(sim):
    # Given the example app whose new pods the scheduler cannot place (scenarios/pods-stuck-pending.yaml)
    pending = Simulation(bootstrap_hardened(load_scenario(SEED_APP.parent / "pods-stuck-pending.yaml")))
    pending.run_until(pending.rollout_start)
    _runtime.use_ports(lambda cluster: pending.ports)
    state = started(pending)
    pending.advance(5)
    # When the gate checks / Then it waits, says why, and looks again in 15 s rather than 3 (no ELB call)
    state = check_target_health.handler(state, None)
    assert state["gate"]["status"] == "WAITING" and "Unschedulable" in state["gate"]["reason"]
    assert 15 <= state["wait_seconds"] <= 19 and state["describe_target_health_calls"] == 0


# ---------------------------------------------------------------------------------------------------------
# A drain handed over to the next step's gate (Verdict.DRAINING)
# ---------------------------------------------------------------------------------------------------------
def handed_over(sim) -> dict:
    """Step 1 released and its drain handed over to step 2, whose gate has started: seen handed over, because
    its gate counts as opened on ELB's answer (so the drain is not left to the controller), ELB showed the group's
    targets on several ports (no port names them unseen), and with the controller
    stopped, the drain's look found the released target still in the pool and deregistered it itself. The
    controller runs the chart's webhook failurePolicy Ignore, so that the tests that stop it again still get step
    2's pods (albgate installs it with Fail: no pod is created while its webhook is down)."""
    state = gate_passed(sim)
    controller_gates_opened(sim)
    state["steps"][-1]["opened_by_controller"] = False  # as if ELB's answer had opened it: the drain is albgate's
    sim.lbc.spec = sim.lbc.spec.model_copy(update={"webhook_failure_policy": "Ignore"})
    sim.lbc.up = False
    state = release_old_pods.handler(state, None)
    known = [(g["target_port"], g["ports_mixed"]) for g in state["target_groups"]]
    for g in state["target_groups"]:
        g["target_port"], g["ports_mixed"] = None, True
    state = drain_polls(sim, state, 10)
    assert state["drain"]["status"] == "DRAINING" and state["pending_drain_step"] == 1
    for g, (port, mixed) in zip(state["target_groups"], known):  # later looks know the port again
        g["target_port"], g["ports_mixed"] = port, mixed
    sim.lbc.up = True
    return start_step.handler(state, None)


def back_in_the_pool(sim, state: dict) -> None:
    """Register the released pod's target again, as a stray write would: ELB shows it `initial`, in the pool; and
    stop the controller, so that only albgate deregisters it again."""
    sim.lbc.up = False
    ip = released_ip(sim, state)
    tg = sim.alb.tgs[state["target_groups"][0]["arn"]]
    pod = next(p for p in sim.cluster.pods.values() if p.ip == ip)
    sim.alb.register(tg, pod)


def test_the_next_gate_verifies_the_handed_over_drain_on_its_look_at_elb_and_then_releases(sim):
    # Given a handed-over drain: its target deregistered by albgate, shown draining until its delay ends
    state = handed_over(sim)
    assert state["drain"]["status"] == "DRAINING"  # Start Step keeps showing the drain it inherits
    calls = sim.alb.deregister_calls["albgate"]
    # When step 2's gate looks until it passes
    state = gate_polls(sim, state, 40)
    # Then its look at ELB saw the target draining, recorded step 1's drain verified, and it released its pod
    # without naming the target again (a target back in the pool would hold it: tests/unit,
    # test_a_step_with_its_pods_released_still_waits_for_the_handed_over_drain)
    assert state["gate"]["status"] == "PASSED" and state["drain"]["status"] == "PASSED"
    assert state["drain"]["draining"] == 1 and state["pending_drain_step"] is None
    assert state["steps"][0]["drained_at"] is not None and sim.alb.deregister_calls["albgate"] == calls
    assert sim.alb.state_of(state["target_groups"][0]["arn"], released_ip(sim, state)) == "draining"


def released_ip(sim, state: dict) -> str:
    live = {p.ip for p in sim.kube.list_pods("readiness", {"app": "nginx"}) if not p.terminating}
    (ip,) = [ip for ip in state["watched_ips"] if ip not in live]
    return ip


def test_a_handed_over_drain_past_its_deadline_fails_the_next_gate(sim):
    # Given a handed-over drain whose deadline has passed while its target is back in the pool
    state = handed_over(sim)
    back_in_the_pool(sim, state)
    state["drain_deadline"] = sim.clock.t
    # When step 2's gate looks
    state = gate_polls(sim, state, 30)
    # Then the gate fails, and says it was step 1's drain
    assert state["gate"]["status"] == "FAILED"
    assert state["gate"]["reason"].startswith("step 1's old targets did not leave the pool: drain deadline passed")


def test_the_last_step_and_a_rollback_wait_for_their_own_drain(sim):
    # Given a rollout driven to its last step
    state = gate_passed(sim)
    while state["more_steps"]:
        state = drain_polls(sim, release_old_pods.handler(state, None), 10)
        state = gate_polls(sim, start_step.handler(state, None), 30)
    # When the last step's drain is checked / Then Verify Drain itself waits until a look shows the targets out of
    # the pool
    state = drain_polls(sim, release_old_pods.handler(state, None), 40)
    assert state["drain"]["status"] == "PASSED" and state["pending_drain_step"] is None


def test_a_rollback_drops_a_handed_over_drain(sim):
    # Given step 2's gate following step 1's drain, then failing
    state = handed_over(sim)
    state["failure"] = {"Error": "TargetsNotHealthy", "Cause": "step 2 failed"}
    # When albgate rolls back
    state = roll_back.handler(state, None)
    # Then the rollback's gate does not wait for the failed rollout's handed-over targets
    assert state["mode"] == "rollback" and state["pending_drain_step"] is None


def test_while_the_alb_registers_for_minutes_the_gate_looks_less_often():
    # Given an ALB that takes 4 minutes to register a target (as reported for NLB IP targets: docs/facts.md, ALB
    # target health)
    sc = load_scenario(SEED_APP)
    sc = sc.model_copy(update={"alb": sc.alb.model_copy(update={"registration_seconds": (240.0, 240.0)})})
    sim = Simulation(bootstrap_hardened(sc))
    sim.run_until(sim.rollout_start)
    _runtime.use_ports(lambda cluster: sim.ports)
    try:
        state = started(sim)
        # When the gate waits for step 1's target
        waits, registering = [], []
        for _ in range(80):
            state = check_target_health.handler(state, None)
            if state["gate"]["status"] != "WAITING":
                break
            waits.append(state["wait_seconds"])
            registering.append(state["steps"][-1]["registering_since"] is not None)
            sim.advance(state["wait_seconds"])
    finally:
        _runtime.use_ports(None)
    # Then it passed after far fewer looks at ELB than one per interval (about 45 in 4 minutes): at the interval for
    # the first looks, then less often the longer registration took (the last few looks read only the pods, for
    # the controller to write the target healthy on them)
    assert state["gate"]["status"] == "PASSED"
    assert state["describe_target_health_calls"] < 30 and len(waits) < 45
    paced = [w for w, r in zip(waits, registering) if r]
    assert max(paced[:5]) <= 6 and max(paced) >= 20
    # And once the target was registered (here: healthy at the next look) the step forgot the registration
    assert state["steps"][-1]["registering_since"] is None


# --- old pods out of service before release (lambdas/domain/rollout/out_of_service.py) ----------------------------
def out_of_service_pods(sim) -> list:
    return [p for p in sim.cluster.all_pods if p.labels.get(SERVING_LABEL) == OUT_OF_SERVICE]


@pytest.mark.parametrize("checkpoint", [True, False])
def test_each_step_takes_its_old_pod_out_of_service_and_releases_once_the_controller_deregistered_it(
        served, monkeypatch, checkpoint):
    if not checkpoint:
        # a controller that writes no reconcile checkpoint (EKS Auto Mode's managed one, an older one)
        monkeypatch.setattr(albgate.sim.lbc, "checkpoint_annotation", lambda b, pods: "")
    proof = "(the controller's checkpoint)" if checkpoint else "(a look at ELB)"
    sim = served
    deleted: dict[str, float] = {}
    state = started(sim)
    for step in range(3):
        if step:
            state = start_step.handler(state, None)
        # When the step's gate looks until it passes
        before = sim.alb.describe_calls.get("albgate", 0)
        state = gate_polls(sim, state, 60)
        # Then it passed only after one old pod left the Service (its label "false"), and the controller's
        # checkpoint, or without one a look at ELB, showed its target out of the pool: draining before Kubernetes
        # deletes the pod
        record = state["steps"][-1]
        assert state["gate"]["status"] == "PASSED" and record["out_proven_at"] is not None
        assert state["gate"]["reason"].endswith(proof) and record["out_by_look"] is not checkpoint
        if not checkpoint:
            assert record["out_proven_at"] - record["out_at"] >= OUT_OF_SERVICE_FIRST_LOOK_SECONDS
            assert sim.alb.describe_calls.get("albgate", 0) > before
        (name,) = record["out_of_service"]
        (ip,) = record["out_ips"]
        assert sim.alb.state_of(state["target_groups"][0]["arn"], ip) == "draining"
        assert not next(p for p in sim.cluster.all_pods if p.name == name).terminating
        # When the step releases its new pod / Then Kubernetes removes that very pod, and the drain passes on it
        # without a call
        looks = sim.alb.describe_calls.get("albgate", 0)
        state = drain_polls(sim, release_old_pods.handler(state, None), 40)
        gone = next(p for p in sim.cluster.all_pods if p.name == name)
        assert gone.terminating and state["drain"]["status"] == "PASSED"
        assert "taken out of service" in state["drain"]["reason"] and state["drain"]["reason"].endswith(proof)
        assert sim.alb.describe_calls.get("albgate", 0) == looks
        deleted[ip] = gone.deletion_at
    # And albgate itself made no RegisterTargets/DeregisterTargets call: the controller deregistered every old
    # target, each before its pod began terminating
    assert sim.alb.mutating_calls["albgate"] == 0
    drained = {ip: t for t, _, ip, _, to, _ in sim.alb.transitions if to == "draining" and ip in deleted}
    assert all(drained[ip] < deleted[ip] for ip in deleted), (drained, deleted)


def test_a_gate_task_watches_the_pods_then_the_bindings_and_passes_at_the_controllers_writes(served):
    sim = served
    state = started(sim)
    # Given the step's new pod starting: Check Target Health tasks until the gate passes
    tasks, watched = 0, []
    for kind in ("wait_for_pods", "wait_for_bindings"):
        sim.kube.calls[kind] = 0
    while state["gate"]["status"] == "WAITING" and tasks < 30:
        before = sim.clock.t
        state = check_target_health.handler(state, None)
        tasks += 1
        watched.append(sim.clock.t - before)
        if state["gate"]["status"] == "WAITING":
            sim.advance(state["wait_seconds"])
    # Then the gate passed with its old pod out of the pool, in few tasks: they watched the pods (the controller's
    # conditions) and then the bindings (its checkpoint) between looks, none for longer than its seconds
    record = state["steps"][-1]
    assert state["gate"]["status"] == "PASSED" and record["out_proven_at"] is not None
    assert sim.kube.calls["wait_for_pods"] >= 1 and sim.kube.calls["wait_for_bindings"] >= 1
    assert record["polls"] > tasks and all(t <= WATCH_IN_TASK_SECONDS + 1 for t in watched)
    # And the look after the proof came within a watch's step of the controller's checkpoint: the step released
    # its pod no later than a second after the controller deregistered its old target
    (ip,) = record["out_ips"]
    drained = next(t for t, _, tip, _, to, _ in sim.alb.transitions if to == "draining" and tip == ip)
    assert drained <= record["out_proven_at"] <= drained + 1


def test_a_policy_that_watches_for_0_seconds_leaves_every_wait_to_the_wait_state(served):
    sim = served
    state = started(sim)
    state["request"]["policy"]["watch_seconds"] = 0
    for kind in ("wait_for_pods", "wait_for_bindings"):
        sim.kube.calls[kind] = 0
    # When the gate looks until it passes / Then no task watched: each returned at once with its wait
    before = sim.clock.t
    state = check_target_health.handler(state, None)
    assert sim.clock.t == before and state["wait_seconds"] >= 1
    state = gate_polls(sim, state, 60)
    assert state["gate"]["status"] == "PASSED"
    assert sim.kube.calls["wait_for_pods"] == sim.kube.calls["wait_for_bindings"] == 0


def test_without_the_controllers_proof_albgate_deregisters_the_pods_taken_out_itself_at_the_bound(served):
    sim = served
    # Given the controller down just as the gate took an old pod out of service: it deregisters nothing
    take_out = sim.kube.set_pod_serving

    def down_as_taken_out(namespace: str, pod: str, serving: bool) -> None:
        take_out(namespace, pod, serving)
        sim.lbc.up = serving

    sim.kube.set_pod_serving = down_as_taken_out
    state = started(sim)
    for _ in range(60):
        state = check_target_health.handler(state, None)
        if state["steps"][-1]["out_at"] is not None:
            break
        sim.advance(state["wait_seconds"])
    assert not sim.lbc.up
    out_at = state["steps"][-1]["out_at"]
    (ip,) = state["steps"][-1]["out_ips"]
    (name,) = state["steps"][-1]["out_of_service"]
    arn = state["target_groups"][0]["arn"]
    # When the gate looks on / Then it waits for the proof, and once OUT_OF_SERVICE_PROOF_SECONDS passed albgate
    # deregisters the target itself (one call) and the gate passes with the pod still running
    state = gate_polls(sim, state, 200)
    assert state["gate"]["status"] == "PASSED"
    assert "albgate deregistered their targets itself" in state["gate"]["reason"]
    assert sim.clock.t - out_at >= OUT_OF_SERVICE_PROOF_SECONDS
    assert sim.alb.mutating_calls["albgate"] == 1 and sim.alb.state_of(arn, ip) == "draining"
    assert not next(p for p in sim.cluster.all_pods if p.name == name).terminating
    # And the drain of the pod Kubernetes then removes passes on that, with no further call
    looks = sim.alb.describe_calls.get("albgate", 0)
    state = drain_polls(sim, release_old_pods.handler(state, None), 40)
    assert next(p for p in sim.cluster.all_pods if p.name == name).terminating
    assert state["drain"]["status"] == "PASSED" and "taken out of service" in state["drain"]["reason"]
    assert sim.alb.describe_calls.get("albgate", 0) == looks and sim.alb.mutating_calls["albgate"] == 1


def test_a_gated_rollback_takes_the_failed_versions_pods_out_of_service_before_it_releases(served):
    sim = served
    state = gate_polls(sim, started(sim), 60)
    while True:
        state = drain_polls(sim, release_old_pods.handler(state, None), 40)
        if not state["more_steps"]:
            break
        state = gate_polls(sim, start_step.handler(state, None), 60)
    # Given a rollout whose three steps all passed, rolled back: the previous image comes back behind albgate's
    # gate (no pod of the previous revision is left to undo to)
    failed = [p for p in sim.cluster.all_pods if not p.terminating and p.version == "ikubernetes/myapp:v2"]
    assert len(failed) == 3
    state["failure"] = {"Error": "TargetsNotHealthy", "Cause": "late failure"}
    state = start_step.handler(roll_back.handler(state, None), None)
    # When the rollback's gate looks until it passes
    state = gate_polls(sim, state, 80)
    # Then every pod of the failed version left the Service first, its target draining while the pod still runs
    record = state["steps"][-1]
    assert record["mode"] == "rollback" and state["gate"]["status"] == "PASSED"
    assert sorted(record["out_of_service"]) == sorted(p.name for p in failed)
    arn = state["target_groups"][0]["arn"]
    assert all(sim.alb.state_of(arn, p.ip) == "draining" and not p.terminating for p in failed)
    # And its drain passes once Kubernetes removed them, naming none of them to ELB again and asking ELB nothing
    # (the rollout's last released pod is among those it watches: the controller's checkpoint proves them all)
    looks = sim.alb.describe_calls.get("albgate", 0)
    state = drain_polls(sim, release_old_pods.handler(state, None), 60)
    assert state["drain"]["status"] == "PASSED" and "checkpoint" in state["drain"]["reason"]
    assert all(p.terminating for p in failed) and sim.alb.describe_calls.get("albgate", 0) == looks
    named = [text for _, kind, text in sim.timeline if kind == "target" and text.startswith("albgate deregisters")]
    assert not [text for text in named for p in failed if f" {p.ip}:" in text], named


def test_a_rollback_puts_the_pod_out_of_service_back(served):
    sim = served
    state = gate_polls(sim, started(sim), 60)
    # Given step 1's gate took an old pod out of service, and a step then failed before its release
    assert len(out_of_service_pods(sim)) == 1
    state["failure"] = {"Error": "TargetsNotHealthy", "Cause": "step 2 failed"}
    state = roll_back.handler(state, None)
    # When the rollback's first step starts / Then the old pod serves again: the Service selects it, and the
    # controller registers its target
    state = start_step.handler(state, None)
    assert out_of_service_pods(sim) == []
    sim.advance(30)
    arn = state["target_groups"][0]["arn"]
    assert all(sim.alb.state_of(arn, p.ip) == "healthy" for p in sim.cluster.all_pods
               if not p.terminating and p.ip and p.version != "ikubernetes/myapp:v2")
