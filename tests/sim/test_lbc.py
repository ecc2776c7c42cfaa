"""The Load Balancer Controller's webhook and reconciler follow its documented behaviour (docs/facts.md,
"Load Balancer Controller: readiness gate" and "Load Balancer Controller: registration and timing")."""

from __future__ import annotations

import pytest

from albgate.sim import Simulation
from albgate.sim.alb import DESCRIPTIONS
from lambdas.domain.ports import HEALTHY, LBC_GATE_PREFIX, DeploymentPatch
from tests.sim.conftest import scenario, started

V2 = "ikubernetes/myapp:v2"


def _roll(sim: Simulation, **patch) -> None:
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}, **patch))


def _new_pods(sim: Simulation):
    return [p for p in sim.cluster.all_pods if p.version == V2]


INJECTION = [
    # (case, namespace label, auto mode, old pods gated, new pods gated)
    ("never-labelled", "none", False, False, False),
    ("labelled-before-pods", "before_pods", False, True, True),
    ("labelled-after-pods", "after_pods", False, False, True),
    ("auto-mode", "before_pods", True, False, False),
]


@pytest.mark.parametrize("case,label,auto,old_gated,new_gated", INJECTION, ids=[i[0] for i in INJECTION])
def test_gate_is_injected_only_at_pod_creation(case, label, auto, old_gated, new_gated):
    # Given a namespace labelled (or not) before or after its pods, on EKS or EKS Auto Mode
    sim = started(scenario(namespace={"inject_label": label}, cluster={"auto_mode": auto}))
    gate = sim.lbc_gate_names()[0]
    old = list(sim.cluster.pods.values())
    # When the Deployment rolls
    _roll(sim)
    sim.advance(30)
    # Then running pods keep what they were born with, and new pods get the gate only where the webhook acts
    assert all((gate in p.readiness_gates) == old_gated for p in old)
    assert _new_pods(sim) and all((gate in p.readiness_gates) == new_gated for p in _new_pods(sim))


def test_gate_is_named_after_the_target_group_binding():
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    tgb = sim.kube.list_target_group_bindings("readiness")[0]
    assert sim.lbc_gate_names() == [LBC_GATE_PREFIX + tgb.name]
    assert tgb.target_type == "ip" and tgb.service_name == "nginx-svc"
    assert tgb.target_group_arn.startswith("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-")


def test_no_gate_for_instance_targets():
    sim = started(scenario(namespace={"inject_label": "before_pods"},
                           ingress={"annotations": {"alb.ingress.kubernetes.io/target-type": "instance"}}))
    _roll(sim)
    sim.advance(30)
    assert _new_pods(sim) and all(not p.readiness_gates for p in _new_pods(sim))


WEBHOOK_DOWN = [
    # (case, failurePolicy, pod created while down, gated)
    ("ignore-creates-ungated-pods", "Ignore", True, False),
    ("fail-refuses-pods", "Fail", False, None),
]


@pytest.mark.parametrize("case,policy,created,gated", WEBHOOK_DOWN, ids=[w[0] for w in WEBHOOK_DOWN])
def test_webhook_failure_policy_when_the_controller_is_down(case, policy, created, gated):
    # Given a labelled namespace and the controller (its webhook) down from the rollout start for 120 s
    sim = started(scenario(namespace={"inject_label": "before_pods"},
                           controller={"webhook_failure_policy": policy},
                           faults={"controller_outages": [{"at_seconds": 0, "duration_seconds": 120}]}))
    gate = sim.lbc_gate_names()[0]
    _roll(sim)
    sim.advance(60)
    # Then Ignore: pods are created without the gate; Fail: no pod is created until the webhook is back
    assert bool(_new_pods(sim)) == created
    if created:
        assert all(gate not in p.readiness_gates for p in _new_pods(sim))
    sim.advance(1200)
    assert _new_pods(sim)


def test_gate_true_only_after_the_target_was_healthy_and_on_a_requeue():
    # Given a labelled namespace
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    gate = sim.lbc_gate_names()[0]
    healthy_at: dict[str, float] = {}
    gate_true_at: dict[str, float] = {}
    sim.alb.on_transition.append(lambda t, before, after: after == HEALTHY and healthy_at.setdefault(t.ip, sim.clock.t))

    def watch():
        for p in _new_pods(sim):
            if p.conditions.get(gate, ("",))[0] == "True":
                gate_true_at.setdefault(p.ip, sim.clock.t)

    sim.add_observer(watch)
    # When it rolls
    _roll(sim)
    d = sim.deployment()
    assert sim.run_until(sim.clock.t + 900, stop=lambda: sim.cluster.deployment_complete(d))
    # Then every gate turned True after its target was healthy, within one requeue (15 s) plus latency
    assert len(gate_true_at) == 3
    for ip, t in gate_true_at.items():
        assert healthy_at[ip] <= t <= healthy_at[ip] + 15 + 1 + 1e-6


def test_nothing_is_registered_or_deregistered_while_the_controller_is_down():
    sim = started(scenario(faults={"controller_outages": [{"at_seconds": 0, "duration_seconds": 300}]}))
    tg = next(iter(sim.alb.tgs.values()))
    _roll(sim)
    sim.advance(290)
    new_ips = {p.ip for p in _new_pods(sim)}
    assert new_ips and not (new_ips & set(tg.targets))  # nothing registered
    gone = [p for p in sim.cluster.all_pods if p.exited]
    assert gone and all(p.ip in tg.targets for p in gone)  # dead pods still registered
    # after recovery (+ leader election) the controller catches up
    sim.advance(60)
    assert new_ips <= set(tg.targets)
    assert all(tg.targets[p.ip].state == "draining" for p in gone if p.ip in tg.targets)


def test_throttled_controller_backs_off_exponentially_up_to_the_max():
    # Given other callers starving the Describe* bucket for 30 minutes. The bucket serves calls in arrival
    # order, so 20 calls/s against the default 10/s refill would leave the controller about half its calls;
    # with a refill of 0.01/s nearly every one of its calls finds the token already taken (about 1 in 2,000).
    sim = started(scenario(namespace={"inject_label": "before_pods"},
                           controller={"max_backoff_seconds": 1000},
                           alb={"describe_bucket_refill_per_second": 0.01},
                           faults={"describe_load": [{"at_seconds": 0, "duration_seconds": 1800, "rate_per_second": 20}]}))
    _roll(sim)
    sim.advance(1800)
    b = sim.lbc.bindings[0]
    # Then its throttled calls thin out: 5 ms doubling reaches the 1000 s cap after ~18 failures
    throttled = sim.alb.throttled["controller"]
    assert 15 <= throttled <= 25
    assert b.failures >= 15


def _gate_writes(sim: Simulation, gate: str) -> list[tuple[str, str, str]]:
    """Every write of ``gate``'s condition on a new pod from now on: (status, reason, message)."""
    writes: list[tuple[str, str, str]] = []
    real = sim.cluster.set_pod_condition

    def recording(namespace, name, type_, status, reason, message):
        if type_ == gate and any(p.name == name for p in _new_pods(sim)):
            writes.append((status, reason, message))
        return real(namespace, name, type_, status, reason, message)

    sim.cluster.set_pod_condition = recording
    return writes


def test_the_condition_follows_the_targets_reason_and_description_not_only_its_status():
    # Given a new version that passes its readiness probe but answers 404 on the ALB's health-check path
    sim = started(scenario(namespace={"inject_label": "before_pods"}, app={"max_surge": 1, "max_unavailable": 0},
                           faults={"broken_images": [V2], "broken_mode": "health_path_404"}))
    gate = sim.lbc_gate_names()[0]
    writes = _gate_writes(sim, gate)
    # When it rolls and the new target fails its checks
    _roll(sim)
    sim.advance(120)
    # Then the controller wrote registration first, in its own words, then ELB's reason and description for the
    # failing target, though the status stayed False (the pod is patched when status, reason or message changes)
    assert writes[0] == ("False", "Elb.RegistrationInProgress", "Target registration is in progress")
    assert ("False", "Target.ResponseCodeMismatch", DESCRIPTIONS["Target.ResponseCodeMismatch"]) in writes
    assert all(status == "False" for status, _, _ in writes)
    assert len(writes) == len(set(writes))  # no write repeats an earlier one: an unchanged condition is not patched


def test_a_healthy_targets_condition_is_true_with_no_reason_or_message():
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    gate = sim.lbc_gate_names()[0]
    writes = _gate_writes(sim, gate)
    _roll(sim)
    d = sim.deployment()
    assert sim.run_until(sim.clock.t + 900, stop=lambda: sim.cluster.deployment_complete(d))
    assert writes.count(("True", "", "")) == 3 and all(w[0] == "False" for w in writes if w[1])


def _controller_calls(sim: Simulation) -> int:
    return sim.alb.describe_calls["controller"]


def test_the_targets_cache_asks_only_about_targets_not_healthy_and_nothing_when_all_are():
    # Given a labelled namespace whose controller has cached the group (one full call), every target healthy
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    binding = sim.lbc.bindings[0]
    sim.lbc._reconcile(binding)
    cache = sim.lbc.targets_cache[binding.tg.arn]
    assert all(h is not None and h.state == HEALTHY for h in cache.targets.values())
    calls = _controller_calls(sim)
    # When it reconciles again with nothing to change / Then it calls nothing
    binding.checkpoint = None  # not skipped as unchanged: the cache alone decides
    sim.lbc._reconcile(binding)
    assert _controller_calls(sim) == calls
    # When a target it registered has no health yet / Then one call asks about it, and it is cached with its answer
    ip = next(iter(cache.targets))
    cache.targets[ip] = None
    binding.checkpoint = None
    sim.lbc._reconcile(binding)
    assert _controller_calls(sim) == calls + 1 and cache.targets[ip] is not None


def test_the_targets_cache_is_filled_again_after_five_minutes_and_drops_a_target_that_left():
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    binding = sim.lbc.bindings[0]
    sim.lbc._reconcile(binding)
    cache = sim.lbc.targets_cache[binding.tg.arn]
    # Given a cached target that ELB no longer lists
    cache.targets["10.9.9.9"] = None
    calls = _controller_calls(sim)
    binding.checkpoint = None
    sim.lbc._reconcile(binding)
    # Then the call about it drops it
    assert "10.9.9.9" not in cache.targets and _controller_calls(sim) == calls + 1
    # When five minutes have passed since the cache was filled / Then the next reconcile fills it again
    filled = cache.filled_at
    sim.advance(300)
    binding.checkpoint = None
    sim.lbc._reconcile(binding)
    assert sim.lbc.targets_cache[binding.tg.arn].filled_at >= filled + 300
    assert _controller_calls(sim) == calls + 2


def test_a_rollout_costs_the_controller_fewer_calls_than_reconciles():
    # Given a labelled namespace / When it rolls
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    _roll(sim)
    d = sim.deployment()
    assert sim.run_until(sim.clock.t + 900, stop=lambda: sim.cluster.deployment_complete(d))
    # Then some reconciles found every cached target healthy and asked ELB nothing
    reconciles = sum(b.reconciles for b in sim.lbc.bindings)
    assert 0 < _controller_calls(sim) < reconciles


def test_a_conditions_transition_time_is_when_its_status_changed_in_whole_seconds():
    # Given a new pod behind the controller's gate
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    gate = sim.lbc_gate_names()[0]
    _roll(sim)

    def condition():
        names = {p.name for p in _new_pods(sim)[:1]}
        return next((c for p in sim.kube.list_pods("readiness", {"app": "nginx"}) if p.name in names
                     for c in p.conditions if c.type == gate), None)

    while condition() is None:
        sim.advance(0.1)
    first, written = condition(), sim.clock.t
    # Then its first write carries the time it appeared, cut to the second as the API keeps it
    assert first.status == "False" and first.last_transition_time == int(first.last_transition_time)
    assert written - 1.1 < first.last_transition_time <= written
    # And a write that changes only the reason keeps it (made here two seconds later, as the controller writes one)
    sim.advance(2)
    pod = _new_pods(sim)[0]
    sim.cluster.set_pod_condition(pod.namespace, pod.name, gate, "False", "Elb.InitialHealthChecking", "checking")
    assert condition().reason == "Elb.InitialHealthChecking"
    assert condition().last_transition_time == first.last_transition_time
    # And the write that turns it True moves it
    while (c := condition()).status != "True":
        sim.advance(0.5)
    assert first.last_transition_time < c.last_transition_time == int(c.last_transition_time)


def test_containers_ready_carries_when_it_turned_true_in_whole_seconds():
    sim = started(scenario(namespace={"inject_label": "before_pods"}))
    _roll(sim)
    while not any(p.containers_ready for p in _new_pods(sim)):
        sim.advance(0.1)
    turned = sim.clock.t
    (pod,) = [p for p in sim.kube.list_pods("readiness", {"app": "nginx"}) if p.name == _new_pods(sim)[0].name]
    (ready,) = [c for c in pod.conditions if c.type == "ContainersReady"]
    assert ready.status == "True" and ready.last_transition_time == int(ready.last_transition_time)
    assert turned - 1.1 < ready.last_transition_time <= turned


def test_each_watched_change_reaches_the_queue_by_itself_and_counts_a_failure_while_pods_start():
    # Given a v2.2.4 controller (a gated pod still starting requeues through the rate limiter) and a rolling
    # Deployment whose new pods take a minute to start
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"version": "v2.2.4"},
                           app={"max_surge": 1, "max_unavailable": 0,
                                "startup": {"container_start_seconds": [60, 60]}}))
    _roll(sim)
    sim.advance(15)
    b = sim.lbc.bindings[0]
    assert not any(p.containers_ready for p in _new_pods(sim)) and b.waiting is not None
    reconciles, failures, waiting_at = b.reconciles, b.failures, b.waiting.time
    # When two changes reach the queue 0.3 s apart, and a third at the same instant as the second
    now = sim.clock.t
    for at in (now + 0.1, now + 0.4, now + 0.4):
        sim.lbc._enqueue(b, at)
    sim.advance(1)
    # Then each distinct arrival is a reconcile of its own (the workqueue dedupes an item only while it waits in
    # the queue), and each one's "potentially ready" requeue doubles the back-off; the delayed entry keeps its time
    assert b.reconciles == reconciles + 2 and b.failures == failures + 2
    assert b.waiting.time == waiting_at


def test_a_reconcile_holds_its_binding_for_its_requests_time_and_what_comes_meanwhile_runs_once_after():
    # Given a controller whose requests take a second each, and a rollout whose first new pod is registered
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"request_seconds": 1.0},
                           app={"max_surge": 1, "max_unavailable": 0}))
    _roll(sim)
    b = sim.lbc.bindings[0]
    tg = next(iter(sim.alb.tgs.values()))
    while not [p for p in _new_pods(sim) if p.ip in tg.targets]:
        sim.advance(0.01)
    # When its reconcile has made its requests (the RegisterTargets and the pod's condition; every cached target
    # was healthy, so no DescribeTargetHealth): it holds the binding for 2 s
    assert b.busy and not b.dirty and sim.alb.mutating_calls["controller"] == 1
    reconciles = b.reconciles
    # Then changes that come within those 2 s wait, and run as one reconcile once they have passed
    sim.lbc._enqueue(b, sim.clock.t + 0.5)
    sim.lbc._enqueue(b, sim.clock.t + 1.5)
    sim.advance(1.9)
    assert b.busy and b.dirty and b.reconciles == reconciles
    sim.advance(0.2)
    assert b.reconciles == reconciles + 1 and not b.dirty
