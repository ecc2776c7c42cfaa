"""The simulated controller against public reports of its timing.

Each scenario in scenarios/calibration/ is set up as its report describes it (replicas, controller version, the
fault), with every other number from the model's documented rules (docs/facts.md, "Load Balancer Controller:
requeue and back-off by version"). A report is reproduced when the model's number is within a factor of
TOLERANCE of the report's; one that is not is marked xfail (strict) with the measured ratio and what the model
lacks, never tuned to fit. Alongside: the per-version rules those numbers come from.
"""

from __future__ import annotations

import pytest

from albgate.sim import load_scenario
from albgate.sim.calibration import (
    AFTER_ERRORS,
    GATED_18,
    SLOW_DEPLOY,
    STUCK,
    STUCK_CAPPED,
    TYPICAL_DEPLOY,
    V2,
    Measured,
    capped_report,
    deploy_reports,
    gate_waits_after_errors,
    gated_deploys,
    measure_reports,
    stuck_reports,
)
from albgate.sim.lbc import rules_for
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch
from tests.sim.conftest import scenario, started

TOLERANCE = 1.5


def _within(m: Measured) -> bool:
    return 1 / TOLERANCE <= m.ratio <= TOLERANCE


def _says(m: Measured) -> str:
    return (f"report {m.report.url.rsplit('/', 1)[-1]} ({m.report.says}), tolerance x{TOLERANCE}: model {m.what} "
            f"{m.seconds:.1f} s, ratio {m.ratio:.2f}")


# ---------------------------------------------------------------------------------------------------------
# An 18-pod gated rollout, controller v2.2.4: "a deploy takes around 3 minutes but when the problem happens it
# can take up to 7-8 minutes" (https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/2287).
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gated_18() -> tuple[Measured, Measured]:
    return deploy_reports(gated_deploys(load_scenario(GATED_18)))


def test_a_typical_gated_18_pod_deploy_takes_about_3_minutes_as_reported(gated_18):
    typical, _ = gated_18
    assert typical.report == TYPICAL_DEPLOY
    assert _within(typical), _says(typical)


@pytest.mark.xfail(strict=True, reason=(
    "report 2287 (slow deploy 7-8 min), tolerance x1.5: the slowest of 20 modelled deploys takes about 3.4 min "
    "(ratio ~0.45). In v2.2.4 a binding requeues through the rate limiter only while no target is `initial` and "
    "every ContainersReady pod is registered; each registration returns RequeueAfter 15 s, which forgets the "
    "failures, so with 30-60 s starts the back-off never grows past ~40 s. A 7-8 min deploy needs pods that stay "
    "endpoints without being ContainersReady for several minutes, or reconcile errors, and the report names "
    "neither (nor its rolling-update values)"))
def test_a_slow_gated_18_pod_deploy_takes_7_to_8_minutes_as_reported(gated_18):
    _, slow = gated_18
    assert slow.report == SLOW_DEPLOY
    assert _within(slow), _says(slow)


# ---------------------------------------------------------------------------------------------------------
# Controller v2.7.1 failing every call for a while, then healthy: the gate opened "after ~15-16 mins" with the
# default back-off and "at 11th second" with it capped at 10 s
# (https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/3622). The report does not say when the
# errors ended, so the end is swept over one full back-off period once the cap is reached (22 min of doubling).
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stuck() -> tuple[Measured, Measured]:
    return stuck_reports(gate_waits_after_errors(load_scenario(AFTER_ERRORS)))


def test_with_the_default_back_off_the_gate_can_stay_shut_about_16_minutes_as_reported(stuck):
    longest, _ = stuck
    assert longest.report == STUCK
    assert _within(longest), _says(longest)


@pytest.mark.xfail(strict=True, reason=(
    "report 3622 (gate after ~15-16 min), tolerance x1.5: the median modelled wait is about 8 min (ratio ~0.51). "
    "After the errors the gate waits for the binding's pending delayed entry, set by the last failed attempt: "
    "anywhere in (0, 16m40s] depending on when the errors end, which the report does not say. A wait of ~16 min "
    "every time needs the errors to end just after a failed attempt"))
def test_with_the_default_back_off_the_typical_wait_is_about_16_minutes_as_reported(stuck):
    _, median = stuck
    assert _within(median), _says(median)


def test_with_the_back_off_capped_at_10_s_the_gate_opens_about_11_s_after_the_errors_as_reported():
    sc = load_scenario(AFTER_ERRORS).with_changes(controller={"version": "v2.7.1", "max_backoff_seconds": 10})
    capped = capped_report(gate_waits_after_errors(sc))
    assert capped.report == STUCK_CAPPED
    assert _within(capped), _says(capped)


def test_a_change_that_does_not_apply_to_a_report_leaves_its_figures_out(gated_18, stuck):
    # Given a change that applies to the 18-pod deploy only (its controller version, not the other's)
    def only_the_deploy(sc):
        return sc if sc.name == "gated-rollout-18-pods-v2.2.4" else None

    # When the reports are measured through it / Then the deploy's figures are the plain ones, the other's None
    measured = measure_reports(only_the_deploy)
    assert measured["2287 typical"] == gated_18[0] and measured["2287 slow"] == gated_18[1]
    assert measured["3622 longest"] is None and measured["3622 median"] is None


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
