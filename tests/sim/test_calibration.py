"""The simulated controller against public reports of its timing.

Each scenario in scenarios/calibration/ is set up as its report describes it (replicas, controller version, the
fault), with every other number from the model's documented rules (docs/facts.md, "Load Balancer Controller:
requeue and back-off by version"). A report is reproduced when the model's number is within a factor of
TOLERANCE of the report's; one that is not is marked xfail (strict) with the measured ratio and what the model
lacks, never tuned to fit. Alongside: the per-version rules those numbers come from.
"""

from __future__ import annotations

import statistics

import pytest

from albgate.sim import Simulation, load_scenario, simulate
from albgate.sim.lbc import rules_for
from albgate.sim.scenario import Scenario
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch
from tests.sim.conftest import SCENARIOS, scenario, started

TOLERANCE = 1.5
CALIBRATION = SCENARIOS / "calibration"
V2 = "ikubernetes/myapp:v2"


def _ratio(model: float, report: float) -> float:
    return model / report


def _within(model: float, report: float) -> bool:
    return 1 / TOLERANCE <= _ratio(model, report) <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------
# An 18-pod gated rollout, controller v2.2.4: "a deploy takes around 3 minutes but when the problem happens it
# can take up to 7-8 minutes" (https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/2287).
# Each seed is one deploy; the typical one is the median of 20, the slow one the slowest.
# ---------------------------------------------------------------------------------------------------------
GATED_18 = CALIBRATION / "gated-rollout-18-pods-v2.2.4.yaml"
REPORT_TYPICAL_DEPLOY_SECONDS = 3 * 60
REPORT_SLOW_DEPLOY_SECONDS = 7.5 * 60
DEPLOYS = range(1, 21)


@pytest.fixture(scope="module")
def gated_18_deploys() -> list[float]:
    sc = load_scenario(GATED_18)
    runs = [simulate(sc, "readiness-gate", seed, lower_bound=False) for seed in DEPLOYS]
    assert all(r.outcome == "succeeded" and r.rollout_seconds is not None for r in runs)
    return [r.rollout_seconds for r in runs if r.rollout_seconds is not None]


def test_a_typical_gated_18_pod_deploy_takes_about_3_minutes_as_reported(gated_18_deploys):
    typical = statistics.median(gated_18_deploys)
    assert _within(typical, REPORT_TYPICAL_DEPLOY_SECONDS), (
        f"report 2287 (typical deploy ~3 min), tolerance x{TOLERANCE}: model {typical:.0f} s, "
        f"ratio {_ratio(typical, REPORT_TYPICAL_DEPLOY_SECONDS):.2f}")


@pytest.mark.xfail(strict=True, reason=(
    "report 2287 (slow deploy 7-8 min), tolerance x1.5: the slowest of 20 modelled deploys takes about 3.2 min "
    "(ratio ~0.42). In v2.2.4 a binding requeues through the rate limiter only while no target is `initial` and "
    "every ContainersReady pod is registered; each registration returns RequeueAfter 15 s, which forgets the "
    "failures, so with 30-60 s starts the back-off never grows past ~40 s. A 7-8 min deploy needs pods that stay "
    "endpoints without being ContainersReady for several minutes, or reconcile errors, and the report names "
    "neither (nor its rolling-update values)"))
def test_a_slow_gated_18_pod_deploy_takes_7_to_8_minutes_as_reported(gated_18_deploys):
    slowest = max(gated_18_deploys)
    assert _within(slowest, REPORT_SLOW_DEPLOY_SECONDS), (
        f"report 2287 (slow deploy 7-8 min), tolerance x{TOLERANCE}: model {slowest:.0f} s, "
        f"ratio {_ratio(slowest, REPORT_SLOW_DEPLOY_SECONDS):.2f}")


# ---------------------------------------------------------------------------------------------------------
# Controller v2.7.1 failing every call for a while, then healthy: the gate opened "after ~15-16 mins" with the
# default back-off and "at 11th second" with it capped at 10 s
# (https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/3622). The report does not say when the
# errors ended, so the end is swept over one full back-off period once the cap is reached (22 min of doubling).
# ---------------------------------------------------------------------------------------------------------
AFTER_ERRORS = CALIBRATION / "gate-after-errors-v2.7.1.yaml"
REPORT_STUCK_SECONDS = 15.5 * 60
REPORT_STUCK_CAPPED_SECONDS = 11.0
ERRORS_END = [1400 + 100 * k for k in range(10)]  # seconds after the rollout start, one 1000 s period


def _gate_after_errors(sc: Scenario, errors_end: float) -> float:
    """Seconds from the end of the errors to the first new pod's gate turning True (negative: it opened while
    the errors lasted, a call having found a token)."""
    window = sc.faults.describe_load[0].model_dump()
    sc = sc.with_changes(faults={"describe_load": [{**window, "duration_seconds": errors_end}]})
    sim = Simulation(sc)
    sim.run_until(sim.rollout_start)
    gate = sim.lbc_gate_names()[0]
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={sc.rollout_container: V2}))
    opened = sim.run_until(sim.rollout_start + sc.horizon_seconds, stop=lambda: any(
        p.version == V2 and p.conditions.get(gate, ("",))[0] == "True" for p in sim.cluster.all_pods))
    assert opened, f"no gate opened within the horizon (errors until {errors_end} s)"
    return sim.clock.t - sim.rel_to_abs(errors_end)


@pytest.fixture(scope="module")
def waits_default_cap() -> list[float]:
    sc = load_scenario(AFTER_ERRORS)
    return [_gate_after_errors(sc, end) for end in ERRORS_END]


def test_with_the_default_back_off_the_gate_can_stay_shut_about_16_minutes_as_reported(waits_default_cap):
    longest = max(waits_default_cap)
    assert _within(longest, REPORT_STUCK_SECONDS), (
        f"report 3622 (gate after ~15-16 min), tolerance x{TOLERANCE}: longest modelled wait {longest:.0f} s, "
        f"ratio {_ratio(longest, REPORT_STUCK_SECONDS):.2f}")


@pytest.mark.xfail(strict=True, reason=(
    "report 3622 (gate after ~15-16 min), tolerance x1.5: the median modelled wait is about 8 min (ratio ~0.51). "
    "After the errors the gate waits for the binding's pending delayed entry, set by the last failed attempt: "
    "anywhere in (0, 16m40s] depending on when the errors end, which the report does not say. A wait of ~16 min "
    "every time needs the errors to end just after a failed attempt"))
def test_with_the_default_back_off_the_typical_wait_is_about_16_minutes_as_reported(waits_default_cap):
    typical = statistics.median(waits_default_cap)
    assert _within(typical, REPORT_STUCK_SECONDS), (
        f"report 3622 (gate after ~15-16 min), tolerance x{TOLERANCE}: median modelled wait {typical:.0f} s, "
        f"ratio {_ratio(typical, REPORT_STUCK_SECONDS):.2f}")


def test_with_the_back_off_capped_at_10_s_the_gate_opens_about_11_s_after_the_errors_as_reported():
    sc = load_scenario(AFTER_ERRORS).with_changes(controller={"version": "v2.7.1", "max_backoff_seconds": 10})
    waits = [_gate_after_errors(sc, end) for end in ERRORS_END]
    # A 10 s back-off retries often enough that some call finds a token before the errors end: that gate opened
    # earlier still; the report's figure is the wait of a gate that was shut when they ended.
    shut_at_the_end = [w for w in waits if w > 0]
    assert shut_at_the_end
    typical = statistics.median(shut_at_the_end)
    assert _within(typical, REPORT_STUCK_CAPPED_SECONDS), (
        f"report 3622 (gate at the 11th second with a 10 s cap), tolerance x{TOLERANCE}: model {typical:.1f} s, "
        f"ratio {_ratio(typical, REPORT_STUCK_CAPPED_SECONDS):.2f}")


# ---------------------------------------------------------------------------------------------------------
# The per-version rules behind those numbers.
# ---------------------------------------------------------------------------------------------------------
RULES = [
    # (version, pending gate past `initial`, pod not ContainersReady yet, watches gated pods, requeue flag,
    #  back-off flag, failure policy)
    ("v2.2.0", "rate_limited", "rate_limited", False, False, False, "Fail"),
    ("v2.2.1", "rate_limited", "rate_limited", False, False, True, "Fail"),
    ("v2.9.0", "rate_limited", "rate_limited", False, False, True, "Fail"),
    ("v2.9.1", "after", "after", False, False, True, "Fail"),
    ("v2.11.1", "after", "after", False, False, True, "Ignore"),
    ("v3.2.0", "after", "after", False, True, True, "Ignore"),
    ("v3.4.0", "after", None, True, True, True, "Ignore"),
    ("v3.5.0", "after", None, True, True, True, "Ignore"),
]


@pytest.mark.parametrize("version,pending,potential,pods,requeue_flag,backoff_flag,policy", RULES,
                         ids=[r[0] for r in RULES])
def test_each_version_requeues_as_its_source_says(version, pending, potential, pods, requeue_flag, backoff_flag,
                                                  policy):
    r = rules_for(version)
    assert (r.pending_past_initial, r.potentially_ready, r.watches_pods, r.requeue_flag, r.backoff_flag,
            r.default_failure_policy) == (pending, potential, pods, requeue_flag, backoff_flag, policy)
    assert scenario(controller={"version": version}).controller.webhook_failure_policy == policy


def test_the_default_controller_is_the_one_albgate_installs():
    from lambdas.domain.bootstrap import CONTROLLER_VERSION

    assert scenario().controller.version == CONTROLLER_VERSION


def _seconds_from_containers_ready_to_registration(version: str) -> float:
    """One new gated pod (maxSurge 1, maxUnavailable 0) with a 55 s container start: how long its target waits
    to be registered after the pod turned ContainersReady."""
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"version": version},
                           app={"max_surge": 1, "max_unavailable": 0,
                                "startup": {"container_start_seconds": [55, 55]}}))
    tg = next(iter(sim.alb.tgs.values()))
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2}))
    assert sim.run_until(sim.clock.t + 600, stop=lambda: any(p.version == V2 and p.containers_ready
                                                             for p in sim.cluster.all_pods))
    ready_at = sim.clock.t
    [pod] = [p for p in sim.cluster.all_pods if p.version == V2]
    assert sim.run_until(sim.clock.t + 600, stop=lambda: pod.ip in tg.targets)
    return sim.clock.t - ready_at


def test_a_pod_starting_for_a_minute_is_registered_late_by_the_rate_limiter_up_to_v2_9_0():
    # v2.2.4: requeues at 5 ms doubling from the pod's endpoint (1 s + 1 s of propagation): 2 + 41 s, then 2 + 82 s,
    # so 28 s after the pod turned ContainersReady at 56 s; v2.9.1: every 15 s (2, 17, ... 62); v3.5.0: the pod's
    # own change is watched (1 s of propagation)
    old, fixed, watched = (_seconds_from_containers_ready_to_registration(v) for v in ("v2.2.4", "v2.9.1", "v3.5.0"))
    assert old == pytest.approx(27.9, abs=0.1)
    assert fixed == pytest.approx(6.0)
    assert watched == pytest.approx(1.0)


def test_a_pod_held_only_by_another_gate_is_not_registered_until_a_watched_object_changes():
    # Given an unlabelled namespace (no controller gate) and a new pod held by albgate's gate alone
    sim = started(scenario(app={"max_surge": 1, "max_unavailable": 0}))
    tg = next(iter(sim.alb.tgs.values()))
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2},
                                                                      add_readiness_gates=(ALBGATE_GATE,)))
    sim.advance(120)
    [pod] = [p for p in sim.cluster.all_pods if p.version == V2]
    # Then ContainersReady changes no EndpointSlice and v3.5.0 watches only pods with its own gate: not registered
    assert pod.containers_ready and not pod.ready and pod.ip not in tg.targets
    # When a watched object changes (an old pod goes), the next reconcile registers it
    old = next(p for p in sim.cluster.all_pods if p.version != V2)
    sim.cluster.delete_pod(old)
    sim.advance(2)
    assert pod.ip in tg.targets


def test_a_flag_the_version_lacks_is_refused():
    from albgate.sim.scenario import ScenarioError
    from albgate.sim import parse_scenario

    with pytest.raises(ScenarioError, match="requeue_seconds: v2.7.1 has no --targetgroupbinding-requeue-duration"):
        parse_scenario({"name": "x", "controller": {"version": "v2.7.1", "requeue_seconds": 5}})
    with pytest.raises(ScenarioError, match="max_backoff_seconds: v2.2.0 has no"):
        parse_scenario({"name": "x", "controller": {"version": "v2.2.0", "max_backoff_seconds": 60}})
    with pytest.raises(ScenarioError, match="controller.version: v1.1.9: only v2.0.0 and later"):
        parse_scenario({"name": "x", "controller": {"version": "v1.1.9"}})


@pytest.mark.parametrize("version,reacts", [("v3.5.0", True), ("v3.4.0", True), ("v3.2.0", False)])
def test_another_writers_condition_on_a_gated_pod_makes_the_controller_look_again_from_v3_4_0(version, reacts):
    # Given a new pod carrying the controller's gate and albgate's, registered, its conditions not yet True
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"version": version},
                           app={"max_surge": 1, "max_unavailable": 0}))
    binding = sim.lbc.bindings[0]
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2},
                                                                      add_readiness_gates=(ALBGATE_GATE,)))
    assert sim.run_until(sim.clock.t + 300, stop=lambda: any(p.version == V2 and p.ip in binding.tg.targets
                                                             for p in sim.cluster.all_pods))
    [pod] = [p for p in sim.cluster.all_pods if p.version == V2]
    seen = sim.lbc._observed(binding)
    # When albgate writes its own gate condition on it
    sim.cluster.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "True", "TargetHealthy", "albgate")
    # Then from v3.4.0 the controller's pod watch sees a change (its pod cache keeps every condition), and
    # reconciles within its latency: one more DescribeTargetHealth call of its own
    assert (sim.lbc._observed(binding) != seen) is reacts
    if reacts:
        calls = sim.alb.describe_calls.get("controller", 0)
        sim.advance(1.5)
        assert sim.alb.describe_calls.get("controller", 0) > calls
