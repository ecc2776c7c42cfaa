"""Target health read from the Load Balancer Controller's conditions on the pods (lambdas.domain.rollout.conditions)."""

from __future__ import annotations

import pytest

from lambdas.domain.ports import HEALTHY, INITIAL, UNHEALTHY, Pod, PodCondition, TargetHealth
from lambdas.domain.rollout.conditions import health_from_conditions, target_state, unwritten_groups
from lambdas.domain.state import TargetGroupInfo

WEB = TargetGroupInfo(arn="arn:tg/web", service="web", health_check_interval_seconds=10, healthy_threshold=2,
                      deregistration_delay_seconds=30, target_port=8080, binding="k8s-shop-web-1a2b")
API = TargetGroupInfo(arn="arn:tg/api", service="api", health_check_interval_seconds=10, healthy_threshold=2,
                      deregistration_delay_seconds=30, binding="k8s-shop-api-3c4d")
GATE_WEB = "target-health.elbv2.k8s.aws/k8s-shop-web-1a2b"
GATE_API = "target-health.elbv2.k8s.aws/k8s-shop-api-3c4d"


def pod(name: str, ip: str | None = "10.0.0.7", *conditions: PodCondition, ready: bool = True,
        gates: tuple[str, ...] = (GATE_WEB, GATE_API)) -> Pod:
    kubelet = (PodCondition("ContainersReady", "True" if ready else "False"),)
    return Pod(namespace="shop", name=name, uid=name, ip=ip, labels={}, phase="Running",
               readiness_gates=("albgate.io/target-healthy", *gates), conditions=kubelet + conditions,
               terminating=False, restart_count=0, created_at=1.0)


@pytest.mark.parametrize("condition,expected", [
    (PodCondition(GATE_WEB, "True"), (HEALTHY, "")),
    (PodCondition(GATE_WEB, "False", "Elb.RegistrationInProgress", "Target registration is in progress"),
     (INITIAL, "Elb.RegistrationInProgress")),
    (PodCondition(GATE_WEB, "False", "Elb.InitialHealthChecking"), (INITIAL, "Elb.InitialHealthChecking")),
    (PodCondition(GATE_WEB, "False", "Target.FailedHealthChecks", "Health checks failed"),
     (UNHEALTHY, "Target.FailedHealthChecks")),
    (PodCondition(GATE_WEB, "False", "Target.ResponseCodeMismatch"), (UNHEALTHY, "Target.ResponseCodeMismatch")),
    # what cannot tell: no answer yet, a reason that is no ELB code, a True written for a deleted binding
    (PodCondition(GATE_WEB, "Unknown"), None),
    (PodCondition(GATE_WEB, "False", "SomethingElse"), None),
    (PodCondition(GATE_WEB, "True", "", "Target Group Binding is deleted"), None),
], ids=["healthy", "registering", "initial-checks", "failed-checks", "wrong-code", "unknown", "other-reason",
        "binding-deleted"])
def test_a_condition_says_the_state_elb_answered_or_nothing(condition, expected):
    assert target_state(pod("p", "10.0.0.7", condition), GATE_WEB) == expected


def test_a_pod_without_the_gate_or_without_its_condition_says_nothing():
    assert target_state(pod("p", "10.0.0.7", gates=(GATE_API,)), GATE_WEB) is None
    assert target_state(pod("p"), GATE_WEB) is None


def test_every_ready_candidate_gives_its_target_in_every_group_as_elb_would():
    a = pod("a", "10.0.0.7", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "True"))
    b = pod("b", "10.0.0.8", PodCondition(GATE_WEB, "False", "Elb.InitialHealthChecking"),
            PodCondition(GATE_API, "True"))
    starting = pod("c", None, ready=False)  # no IP yet: no target, as ELB would show
    assert health_from_conditions([WEB, API], [a, b, starting]) == {
        "arn:tg/web": [TargetHealth("10.0.0.7", 8080, HEALTHY), TargetHealth("10.0.0.8", 8080, INITIAL,
                                                                               "Elb.InitialHealthChecking")],
        "arn:tg/api": [TargetHealth("10.0.0.7", 0, HEALTHY), TargetHealth("10.0.0.8", 0, HEALTHY)],
    }


def test_one_condition_that_cannot_tell_or_a_group_without_its_binding_sends_the_gate_to_elb():
    a = pod("a", "10.0.0.7", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "True"))
    unanswered = pod("b", "10.0.0.8", PodCondition(GATE_WEB, "True"))  # the api group's condition is not there yet
    assert health_from_conditions([WEB, API], [a, unanswered]) is None
    assert health_from_conditions([WEB, API.model_copy(update={"binding": ""})], [a]) is None
    assert health_from_conditions([], [a]) is None


def test_read_with_unwritten_a_condition_not_there_yet_is_a_target_not_registered_in_that_group_only():
    # Given a pod whose api condition the controller has not written yet (its web one says healthy)
    a = pod("a", "10.0.0.7", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "True"))
    unanswered = pod("b", "10.0.0.8", PodCondition(GATE_WEB, "True"))
    # Then its target is left out of the api group (as ELB lists no target not registered), kept in the web one
    assert health_from_conditions([WEB, API], [a, unanswered], unwritten=True) == {
        "arn:tg/web": [TargetHealth("10.0.0.7", 8080, HEALTHY), TargetHealth("10.0.0.8", 8080, HEALTHY)],
        "arn:tg/api": [TargetHealth("10.0.0.7", 0, HEALTHY)],
    }


def test_read_with_unwritten_a_condition_that_cannot_tell_or_a_missing_gate_still_sends_the_gate_to_elb():
    a = pod("a", "10.0.0.7", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "True"))
    unknown = pod("b", "10.0.0.8", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "Unknown"))
    assert health_from_conditions([WEB, API], [a, unknown], unwritten=True) is None
    # a pod without the controller's gate for a group has no condition of it to wait for: the controller never
    # writes one there
    ungated = pod("c", "10.0.0.9", PodCondition(GATE_WEB, "True"), gates=(GATE_WEB,))
    assert health_from_conditions([WEB, API], [a, ungated], unwritten=True) is None


def test_the_groups_missing_a_target_are_those_where_a_started_pod_carries_the_gate_but_no_condition():
    written = pod("a", "10.0.0.7", PodCondition(GATE_WEB, "True"), PodCondition(GATE_API, "False", "Elb.X"))
    no_api = pod("b", "10.0.0.8", PodCondition(GATE_WEB, "True"))
    starting = pod("c", None, ready=False)  # nothing started, nothing missing
    not_ready = pod("d", "10.0.0.9", ready=False)
    assert unwritten_groups([WEB, API], [written, starting, not_ready]) == []
    assert unwritten_groups([WEB, API], [written, no_api]) == ["arn:tg/api"]
    assert unwritten_groups([WEB, API], [pod("e", "10.0.1.1")]) == ["arn:tg/web", "arn:tg/api"]
    # a pod without the gate for a group waits for no condition there; a group without a binding has no gate
    assert unwritten_groups([WEB, API], [pod("f", "10.0.1.2", PodCondition(GATE_WEB, "True"), gates=(GATE_WEB,))]) == []
    assert unwritten_groups([WEB, API.model_copy(update={"binding": ""})], [no_api]) == []


def test_read_with_unwritten_a_pod_missing_in_one_group_still_counts_in_the_next():
    # Given a pod whose web condition is not written yet and whose api condition says healthy
    a = pod("a", "10.0.0.7", PodCondition(GATE_API, "True"))
    # Then it is left out of web only
    assert health_from_conditions([WEB, API], [a], unwritten=True) == {
        "arn:tg/web": [], "arn:tg/api": [TargetHealth("10.0.0.7", 0, HEALTHY)]}
