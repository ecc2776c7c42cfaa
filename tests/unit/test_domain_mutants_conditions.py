"""Against the survivors of the gate's reading of the controller's conditions and of what a look watches
(lambdas/domain/rollout/conditions.py, watched.py)."""

from __future__ import annotations

from lambdas.domain.contract import ALB_METRICS_REGRESSED
from lambdas.domain.ports import HEALTHY, Pod, PodCondition, TargetHealth
from lambdas.domain.rollout.conditions import health_from_conditions
from lambdas.domain.rollout.watched import watch_failure
from tests.unit.test_analysis_looks import START, FakeMetrics, ports, state, steady
from tests.unit.test_conditions import GATE_API, GATE_WEB, WEB, pod


def test_a_pod_with_an_ip_but_not_containers_ready_has_no_target_yet_and_is_left_out():
    ready = pod("a", "10.0.0.7", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "True"))
    not_ready = pod("b", "10.0.0.8", ready=False)  # an IP, no condition: ELB has no target of it either
    assert health_from_conditions([WEB], [ready, not_ready]) == {"arn:tg/web": [TargetHealth("10.0.0.7", 8080, HEALTHY)]}


def test_a_starting_pod_before_a_ready_one_does_not_hide_it():
    starting: Pod = pod("a", None, ready=False)
    ready = pod("b", "10.0.0.8", PodCondition(GATE_WEB, "True"))
    assert health_from_conditions([WEB], [starting, ready]) == {"arn:tg/web": [TargetHealth("10.0.0.8", 8080, HEALTHY)]}


def test_a_look_without_alarms_fails_on_a_regression_of_the_alb_metrics_naming_it():
    s = state(analysis={})
    watched = watch_failure(ports(FakeMetrics(steady(START + 120, 5, errors=60.0))), s, "during step 1's drain",
                            START + 500)
    assert watched is not None
    error, reason = watched
    assert error == ALB_METRICS_REGRESSED
    assert reason.startswith("ALB metrics of target group k8s-shop-web-0a1b2c3d4e during step 1's drain: the new "
                             "version gives more 5xx")


def test_a_look_with_nothing_failing_is_none():
    s = state(analysis={})
    assert watch_failure(ports(FakeMetrics(steady(START + 120, 5))), s, "during step 1's gate", START + 500) is None
