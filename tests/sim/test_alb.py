"""The simulated ALB answers DescribeTargetHealth and routes as ELBv2 does (docs/facts.md, "ALB target health"
and "Deregistration and draining")."""

from __future__ import annotations

import pytest

from albgate.sim import Simulation
from lambdas.domain.errors import NotFoundError, ThrottledError
from lambdas.domain.ports import DRAINING, HEALTHY, INITIAL, UNHEALTHY, DeploymentPatch
from tests.sim.conftest import scenario, started

V2 = "ikubernetes/myapp:v2"


def _tg(sim: Simulation):
    return next(iter(sim.alb.tgs.values()))


def test_new_target_goes_initial_then_healthy_only_in_a_passed_check():
    # Given a rollout whose new pods register
    sim = started(scenario(alb={"registration_seconds": [20, 20]}))
    tg = _tg(sim)
    seen: list[tuple[str, str]] = []
    checks: dict[str, list[tuple[float, bool]]] = {}
    original = sim.alb._health_check

    def spy(t):
        checks.setdefault(t.ip, []).append((sim.clock.t, t.pod.serving and not t.pod.broken))
        original(t)

    sim.alb._health_check = spy  # every check, passed or not
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    for _ in range(400):
        sim.advance(0.5)
        for h in sim.elb.describe_target_health(tg.arn) if sim.alb.bucket.tokens >= 1 else []:
            if not seen or seen[-1] != (h.state, h.reason):
                seen.append((h.state, h.reason))
    # Then a new target reports RegistrationInProgress, then InitialHealthChecking, then healthy ...
    new_states = [s for s in seen if s[0] == INITIAL]
    assert ("initial", "Elb.RegistrationInProgress") in new_states and ("initial", "Elb.InitialHealthChecking") in new_states
    # ... and each initial -> healthy transition happened at the instant of a passing check
    for t, arn, ip, before, after, _ in sim.alb.transitions:
        if after == HEALTHY:
            assert (t, True) in checks[ip]


def test_unhealthy_target_needs_healthy_threshold_passes():
    # Given a healthy target whose app stops answering, then recovers
    sim = started(scenario())
    tg = _tg(sim)
    pod = next(iter(sim.cluster.pods.values()))
    target = tg.targets[pod.ip]
    pod.broken = True
    sim.advance(60)
    assert target.state == UNHEALTHY and target.reason == "Target.ResponseCodeMismatch"
    pod.broken = False
    # When it passes one check it is still unhealthy; after HealthyThresholdCount (2) it is healthy
    sim.run_until(sim.clock.t + 60, stop=lambda: target.checks > 0 and target.passes == 1)
    assert target.state == UNHEALTHY
    sim.advance(tg.interval + 0.001)
    assert target.state == HEALTHY


DRAINS = [
    # (case, request mean / max seconds, seconds shown draining, dropped by the delay?)
    ("idle-shown-draining-for-the-delay", 0.05, 0.1, 30.0, False),
    ("busy-cut-at-the-delay", 200.0, 1000.0, 30.0, True),
]


@pytest.mark.parametrize("case,mean,cap,expected,dropped", DRAINS, ids=[d[0] for d in DRAINS])
def test_a_target_is_shown_draining_for_the_whole_delay_and_what_still_runs_then_is_cut(case, mean, cap, expected,
                                                                                        dropped):
    # Given a 30 s deregistration delay and requests of this length
    sim = started(scenario(
        ingress={"annotations": {"alb.ingress.kubernetes.io/target-type": "ip",
                                 "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=30"}},
        traffic={"mean_duration_seconds": mean, "max_duration_seconds": cap, "rate_per_second": 5}))
    tg = _tg(sim)
    ip = next(iter(tg.targets))
    t0 = sim.clock.t
    # When a target is deregistered
    sim.alb.deregister(tg, ip)
    assert tg.targets[ip].state == DRAINING
    assert sim.elb.describe_target_health(tg.arn)[0].reason in ("Target.DeregistrationInProgress", "")
    sim.run_until(t0 + 100, stop=lambda: ip not in tg.targets)
    # Then DescribeTargetHealth showed it draining until the delay ran out, idle or not (docs/facts.md,
    # "Deregistration and draining"), and only requests still running then were cut
    assert sim.clock.t - t0 == pytest.approx(expected, abs=0.3)
    assert (sim.traffic.failed["deregistration_delay_expired"] > 0) == dropped


def test_an_idle_draining_target_settles_after_the_lag_though_still_shown_draining():
    # Given short requests and a 30 s delay
    sim = started(scenario(
        ingress={"annotations": {"alb.ingress.kubernetes.io/target-type": "ip",
                                 "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=30"}},
        traffic={"mean_duration_seconds": 0.05, "max_duration_seconds": 0.1, "rate_per_second": 5}))
    tg = _tg(sim)
    target = next(iter(tg.targets.values()))
    for p in sim.cluster.pods.values():  # the pod goes, as a released one does
        if p.ip == target.ip:
            p.terminating = True
    # When it is deregistered and the lag has passed
    sim.alb.deregister(tg, target.ip)
    sim.advance(10.5)
    # Then it gets no request, ELB still shows it draining, and it carries no traffic the run must wait for
    assert target not in tg.pool() and sim.elb.describe_target_health(tg.arn)
    assert tg.targets[target.ip].state == DRAINING and not target.routable and target.last_end <= sim.clock.t


def test_draining_target_gets_new_requests_only_during_the_lag():
    sim = started(scenario(alb={"deregistration_lag_seconds": 5}))
    tg = _tg(sim)
    target = next(iter(tg.targets.values()))
    sim.alb.deregister(tg, target.ip)
    assert target in tg.pool()
    sim.advance(5.001)
    assert target not in tg.pool()


def test_fail_open_routes_to_unhealthy_targets_when_none_is_healthy():
    # Given every app answering 500
    sim = started(scenario())
    for p in sim.cluster.pods.values():
        p.broken = True
    sim.advance(60)
    tg = _tg(sim)
    assert all(t.state == UNHEALTHY for t in tg.targets.values())
    before = dict(sim.traffic.failed)
    sim.advance(10)
    # Then requests still reach them (5xx from the app), not a 503 for lack of targets
    assert sim.traffic.failed["app_error"] > before.get("app_error", 0)
    assert sim.traffic.failed["no_routable_target"] == 0
    assert len(tg.pool()) == 3


def test_initial_targets_get_no_traffic():
    sim = started(scenario())
    tg = _tg(sim)
    for ip in list(tg.targets):
        sim.alb.deregister(tg, ip)
    sim.advance(11)
    assert all(t.state == DRAINING for t in tg.targets.values()) and not tg.pool()
    before = sim.traffic.failed["no_routable_target"]
    sim.advance(1)
    assert sim.traffic.failed["no_routable_target"] > before


def test_describe_bucket_throttles_past_40_tokens_and_refills_at_10_per_second():
    sim = started(scenario())
    arn = _tg(sim).arn
    controller = sim.elb_for("controller")
    albgate = sim.elb_for("albgate")  # one request per call: the bucket itself, without the client's retries
    # Given a full bucket (40 tokens) / When 40 calls come at one instant from two callers, all pass
    for i in range(40):
        (albgate if i % 2 else controller).describe_target_health(arn)
    # Then the 41st is throttled, whoever makes it
    with pytest.raises(ThrottledError, match="Rate exceeded"):
        albgate.describe_target_health(arn)
    with pytest.raises(ThrottledError):
        controller.describe_target_health(arn)
    # And 0.1 s later exactly one more token is there
    sim.advance(0.1)
    albgate.describe_target_health(arn)
    with pytest.raises(ThrottledError):
        albgate.describe_target_health(arn)
    assert sim.describe_target_health_calls["albgate"] >= 22 and sim.alb.throttled["albgate"] == 2


def test_describe_target_group_reads_the_ingress_settings_and_costs_two_tokens():
    sim = started(scenario())
    arn = _tg(sim).arn
    tg = sim.elb.describe_target_group(arn)
    assert (tg.target_type, tg.health_check_interval_seconds, tg.healthy_threshold, tg.deregistration_delay_seconds) == (
        "ip", 15, 2, 300)
    assert tg.load_balancer_arns and ":loadbalancer/app/" in tg.load_balancer_arns[0]
    assert sim.alb.bucket.tokens == pytest.approx(38, abs=0.01)
    with pytest.raises(NotFoundError):
        sim.elb.describe_target_health(arn + "x")
