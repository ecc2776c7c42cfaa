"""The simulated ALB is as strict as ELBv2: a target is its Id and Port (docs/facts.md, "ELBv2 DeregisterTargets: Id,
Port and absent targets"); albgate's client retries a throttle as botocore does before albgate sees it (docs/facts.md,
"botocore retries: standard and adaptive modes"); and albgate's reaction to the target states the simulation never
answers (docs/facts.md, "ELBv2 target states the simulation leaves out")."""

from __future__ import annotations

import random

import pytest

from albgate.sim import Simulation
from albgate.sim.alb import ALBGATE_ELB_RETRIES, RETRY_COST, RETRY_QUOTA, SdkClient
from albgate.sim.ports import SimElb
from lambdas.adapters.elbv2 import client_config
from lambdas.domain.errors import NotFoundError, ThrottledError
from lambdas.domain.gate import evaluate_drain, evaluate_gate, targets_to_deregister, targets_to_register
from lambdas.domain.contract import Verdict
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, HEALTHY, UNHEALTHY, Pod, PodCondition, TargetHealth
from tests.sim.conftest import scenario, started

# The controller stays down for the whole run, so nothing but the test registers or deregisters a target.
NO_CONTROLLER = {"controller_outages": [{"at_seconds": -30}]}


def _tg(sim: Simulation):
    return next(iter(sim.alb.tgs.values()))


def _gone(sim: Simulation, ip: str) -> None:
    """Deregister ``ip`` and let it drain out of the group."""
    tg = _tg(sim)
    sim.alb.deregister_targets(tg.arn, [(ip, tg.port)], "test")
    sim.run_until(sim.clock.t + 400, stop=lambda: ip not in tg.targets)
    assert ip not in tg.targets


# --- DeregisterTargets and RegisterTargets: Id and Port ---------------------------------------------------------
def test_a_batch_of_gone_and_present_targets_drains_the_present_ones_and_is_no_error():
    # Given a group where one pod's target has already left and the others serve
    sim = started(scenario(faults=NO_CONTROLLER))
    tg = _tg(sim)
    left, present, other = sorted(tg.targets)
    _gone(sim, left)
    # When albgate deregisters the gone target together with a present one, and an IP never registered
    sim.elb.deregister_targets(tg.arn, [(left, tg.port), (present, tg.port), ("10.9.9.9", tg.port)])
    # Then the call answers success, the present target drains and nothing else changed
    states = {h.target_id: h.state for h in sim.elb.describe_target_health(tg.arn)}
    assert states == {present: DRAINING, other: HEALTHY}
    assert sim.alb.deregister_calls["albgate"] == 1


def test_a_wrong_port_leaves_the_target_serving():
    # Given a healthy target on the group's port
    sim = started(scenario(faults=NO_CONTROLLER))
    tg = _tg(sim)
    ip = sorted(tg.targets)[0]
    # When albgate deregisters its IP on another port
    sim.elb.deregister_targets(tg.arn, [(ip, tg.port + 1)])
    # Then ELBv2's answer is success, but no target was named: it stays healthy and in the routing pool
    (mine,) = [h for h in sim.elb.describe_target_health(tg.arn) if h.target_id == ip]
    assert (mine.port, mine.state) == (tg.port, HEALTHY) and tg.targets[ip] in tg.pool()
    assert any(f"{ip}:{tg.port + 1}" in text and "nothing to do" in text for _, _, text in sim.timeline)
    # And on its own port the same call drains it
    sim.elb.deregister_targets(tg.arn, [(ip, tg.port)])
    assert tg.targets[ip].state == DRAINING


def test_a_target_registered_on_a_port_the_pod_does_not_serve_fails_its_health_checks():
    # Given two pods whose targets have left the group
    sim = started(scenario(faults=NO_CONTROLLER))
    tg = _tg(sim)
    wrong, right = sorted(tg.targets)[:2]
    _gone(sim, wrong)
    _gone(sim, right)
    # When albgate registers one on another port than the app's and the other on the app's
    sim.elb.register_targets(tg.arn, [(wrong, tg.port + 1), (right, tg.port)])
    sim.advance(180)
    # Then each is a target on the port it was registered on; only the one on the app's port turned healthy
    health = {h.target_id: h for h in sim.elb.describe_target_health(tg.arn)}
    assert (health[right].port, health[right].state) == (tg.port, HEALTHY)
    assert (health[wrong].port, health[wrong].state, health[wrong].reason) == (
        tg.port + 1, UNHEALTHY, "Target.FailedHealthChecks")


# --- the SDK client's retries -----------------------------------------------------------------------------------
def test_the_simulated_client_is_configured_as_the_adapters():
    assert client_config().retries == ALBGATE_ELB_RETRIES


def _drain_bucket(sim: Simulation) -> None:
    arn = _tg(sim).arn
    while sim.alb.bucket.tokens >= 1:
        sim.alb.describe_target_health(arn, "probe")


def test_a_throttle_the_clients_retries_absorb_reaches_albgate_as_an_answer_later():
    # Given an empty Describe* bucket (40 tokens spent by another caller at this instant, refilled at 10/s)
    sim = started(scenario())
    arn = _tg(sim).arn
    elb = SimElb(sim, "albgate", ALBGATE_ELB_RETRIES)
    _drain_bucket(sim)
    t0 = sim.clock.t
    # When albgate describes its targets through the client configured as the adapter's
    health = elb.describe_target_health(arn)
    # Then the first attempt was throttled, the client waited and retried, and albgate got the answer, later
    c = elb.client
    assert health and c.surfaced == 0 and c.retries >= 1 and c.attempts == c.retries + 1
    assert sim.alb.throttled["albgate"] == c.retries and sim.describe_target_health_calls["albgate"] == c.attempts
    assert sim.clock.t - t0 == pytest.approx(c.waited) and c.waited > 0
    # And the raw API (no client retries) answers the same situation with the throttle, at once
    _drain_bucket(sim)
    t1 = sim.clock.t
    with pytest.raises(ThrottledError):
        SimElb(sim, "raw").describe_target_health(arn)
    assert sim.clock.t == t1


def test_a_throttle_every_attempt_meets_reaches_albgate_after_the_last_attempt():
    # Given a bucket that refills one token per 100 s, spent
    sim = started(scenario(alb={"describe_bucket_capacity": 1, "describe_bucket_refill_per_second": 0.01}))
    arn = _tg(sim).arn
    elb = SimElb(sim, "albgate", ALBGATE_ELB_RETRIES)
    _drain_bucket(sim)
    t0 = sim.clock.t
    # When albgate describes its targets / Then every attempt is throttled and the last one's error reaches it
    with pytest.raises(ThrottledError, match="Rate exceeded"):
        elb.describe_target_health(arn)
    c = elb.client
    assert (c.attempts, c.retries, c.surfaced) == (5, 4, 1) and sim.alb.throttled["albgate"] == 5
    # after the backoffs (at most 1 + 2 + 4 + 8 s) and the adaptive limiter's waits, all in virtual time
    assert sim.clock.t - t0 == pytest.approx(c.waited) and 0 < c.waited
    assert c.quota == RETRY_QUOTA - 4 * RETRY_COST
    # And the same seed gives the same waits
    again = started(scenario(alb={"describe_bucket_capacity": 1, "describe_bucket_refill_per_second": 0.01}))
    elb2 = SimElb(again, "albgate", ALBGATE_ELB_RETRIES)
    _drain_bucket(again)
    with pytest.raises(ThrottledError):
        elb2.describe_target_health(arn)
    assert elb2.client.waited == c.waited


def _throttled() -> None:
    raise ThrottledError("An error occurred (Throttling) when calling the DescribeTargetHealth operation: Rate exceeded")


def test_standard_backoff_is_a_uniform_draw_below_doubling_powers_of_two():
    # Given a standard-mode client whose every request is throttled; its sleeps recorded, not spent
    sim = started(scenario())
    sleeps: list[float] = []
    client = SdkClient(sim, {"mode": "standard", "total_max_attempts": 5}, "probe-client", sleep=sleeps.append)
    # When it makes one call
    with pytest.raises(ThrottledError):
        client.call(_throttled)
    # Then before retry k it slept random() * 2**(k-1) seconds, drawn from its own seeded stream
    draws = random.Random(f"{sim.seed}:probe-client")
    assert sleeps == [draws.random() * 2 ** k for k in range(4)]


def test_the_retry_quota_runs_dry_then_refills_with_successes():
    sim = started(scenario())
    client = SdkClient(sim, {"mode": "standard", "total_max_attempts": 5}, "probe-client", sleep=lambda s: None)
    # Given 25 calls throttled at every attempt: each of their 4 retries took 5 of the quota's 500
    for _ in range(RETRY_QUOTA // (4 * RETRY_COST)):
        with pytest.raises(ThrottledError):
            client.call(_throttled)
    assert client.quota == 0 and client.attempts == 125
    # When one more is throttled / Then it is not retried: the quota holds less than a retry costs
    with pytest.raises(ThrottledError):
        client.call(_throttled)
    assert client.attempts == 126
    # And each success without a retry gives back 1, until a retry is affordable again
    for _ in range(RETRY_COST):
        assert client.call(lambda: "ok") == "ok"
    assert client.quota == RETRY_COST
    # And a success after a retry gives back what the retry took
    answers = iter([None, "ok"])
    assert client.call(lambda: next(answers) or _throttled()) == "ok"
    assert (client.quota, client.retries) == (RETRY_COST, 101)


def test_the_adaptive_limiter_paces_requests_only_after_a_throttle():
    sim = started(scenario())
    sleeps: list[float] = []
    client = SdkClient(sim, ALBGATE_ELB_RETRIES, "probe-client", sleep=sleeps.append)
    # Given a burst of answered calls at one instant: nothing waits before any throttle
    for _ in range(5):
        client.call(lambda: "ok")
    assert sleeps == []
    # When one request is throttled and the burst goes on
    answers = iter([None, "ok"])
    client.call(lambda: next(answers) or _throttled())
    for _ in range(3):
        client.call(lambda: "ok")
    # Then every request after the throttle waited for a send token (at least 0.5 per second: at most 2 s each)
    waits = sleeps[1:]  # the first sleep is the retry's backoff
    assert len(waits) == 4 and all(0 < w <= 2.0 for w in waits)


def test_errors_other_than_throttling_are_not_retried():
    sim = started(scenario())
    elb = SimElb(sim, "albgate", ALBGATE_ELB_RETRIES)
    with pytest.raises(NotFoundError):
        elb.describe_target_health(_tg(sim).arn + "x")
    assert (elb.client.attempts, elb.client.retries) == (1, 0)


# --- albgate's reaction to the states the simulated ALB never answers --------------------------------------------
TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s-readines-nginxsvc/0123456789abcdef"


def _pod(name: str, ip: str) -> Pod:
    return Pod(namespace="readiness", name=name, uid=name, ip=ip, labels={}, phase="Running",
               readiness_gates=(ALBGATE_GATE,), conditions=(PodCondition("ContainersReady", "True"),),
               terminating=False, restart_count=0, created_at=0.0)


NOT_IN_USE = TargetHealth("10.0.0.1", 80, "unused", "Target.NotInUse",
                          "Target is in an Availability Zone that is not enabled for the load balancer")
UNAVAILABLE = TargetHealth("10.0.0.1", 80, "unavailable", "Elb.InternalError", "Target health is unavailable")


@pytest.mark.parametrize("target", [NOT_IN_USE, UNAVAILABLE], ids=["unused-not-in-use", "unavailable-internal-error"])
def test_the_gate_waits_on_a_new_target_that_is_unused_or_unavailable_and_fails_at_the_deadline(target):
    # Given a started new pod whose only target is `unused` (Target.NotInUse) or `unavailable`
    new = _pod("new", target.target_id)
    health = {TG: [target]}
    # When the gate looks before its deadline / Then it waits, counting the pod as not registered
    gate = evaluate_gate(candidates=[new], needed=1, health=health, now=100.0, deadline=900.0)
    assert (gate.status, gate.unregistered, gate.release) == (Verdict.WAITING, 1, ())
    # And albgate does not register it again: it is a target of the group
    todo = targets_to_register(candidates=[new], health=health, ports_by_group={TG: 80}, since={TG: 0.0},
                               now=100.0, grace=30.0)
    assert todo.register == {}
    # And at the deadline the step fails, the old pods kept
    late = evaluate_gate(candidates=[new], needed=1, health=health, now=900.0, deadline=900.0)
    assert late.status == Verdict.FAILED and late.reason.startswith("step deadline passed")


def test_the_drain_takes_an_unused_old_target_for_gone_and_waits_on_an_unavailable_one():
    # Given two released old pods' IPs, scaled down by Kubernetes
    ips = ["10.0.0.1", "10.0.0.2"]
    not_in_use = TargetHealth(ips[0], 80, "unused", "Target.NotInUse")
    unavailable = TargetHealth(ips[1], 80, "unavailable", "Elb.InternalError")
    # When only the unused one is left / Then the drain has passed: an unused target gets no traffic
    drain = evaluate_drain(old_pods=[], expected_old=0, watched_ips=ips, health={TG: [not_in_use]},
                           now=100.0, deadline=900.0)
    assert drain.status == Verdict.PASSED
    # When the unavailable one is left too / Then the drain waits: ELB cannot say it stopped routing to it
    drain = evaluate_drain(old_pods=[], expected_old=0, watched_ips=ips, health={TG: [not_in_use, unavailable]},
                           now=100.0, deadline=900.0)
    assert (drain.status, drain.routable) == (Verdict.WAITING, 1)
    # And albgate deregisters neither itself (only initial, healthy and unhealthy targets)
    assert targets_to_deregister(leaving_ips=ips, held_ips=set(), health={TG: [not_in_use, unavailable]},
                                 blind_ports={}, already=set()) == {}
