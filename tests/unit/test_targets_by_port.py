"""A target is an IP and a port (ELB names a target by Id and Port): a pod whose IP is two targets of one group
counts as healthy there only when both are (lambdas/domain/gate.py, ``targets_by_ip``, ``pod_target_state``)."""

from __future__ import annotations

import pytest

from lambdas.domain.gate import Verdict, all_registering, evaluate_gate, pod_target_state
from lambdas.domain.ports import TargetHealth
from tests.unit.test_gate import P1, TG_A, pod


def target(port: int, state: str, reason: str = "", ip: str = "10.0.0.1") -> TargetHealth:
    return TargetHealth(target_id=ip, port=port, state=state, reason=reason)


STATE_CASES = [
    # id, the targets of one IP in one group, the pod's state there
    ("none", [], "unused"),
    ("one-healthy", [target(80, "healthy")], "healthy"),
    ("both-healthy", [target(80, "healthy"), target(8080, "healthy")], "healthy"),
    ("healthy-and-unhealthy", [target(80, "healthy"), target(8080, "unhealthy")], "unhealthy"),
    ("unhealthy-listed-first", [target(8080, "unhealthy"), target(80, "healthy")], "unhealthy"),
    ("healthy-and-initial", [target(80, "healthy"), target(8080, "initial")], "initial"),
    ("healthy-and-draining", [target(80, "healthy"), target(8080, "draining")], "draining"),
    ("only-unused", [target(80, "unused")], "unused"),
    ("healthy-and-unavailable", [target(80, "healthy"), target(8080, "unavailable")], "unused"),
]


@pytest.mark.parametrize("targets,expected", [c[1:] for c in STATE_CASES], ids=[c[0] for c in STATE_CASES])
def test_a_pods_state_in_a_group_counts_every_port(targets, expected):
    assert pod_target_state(targets) == expected


@pytest.mark.parametrize("order", ["healthy-first", "unhealthy-first"])
def test_an_unhealthy_second_port_fails_the_gate_whatever_the_order(order):
    # Given a new pod registered on two ports of one group, one healthy and one failing its check
    targets = [target(80, "healthy"), target(8080, "unhealthy", "Target.ResponseCodeMismatch")]
    if order == "unhealthy-first":
        targets.reverse()
    # When the gate looks
    result = evaluate_gate(candidates=[P1], needed=1, health={TG_A: targets}, now=0, deadline=100)
    # Then the step fails, naming the pod; nothing is released
    assert result.status is Verdict.FAILED and "p1" in result.reason and result.release == ()


def test_a_second_port_still_checking_holds_the_gate():
    result = evaluate_gate(candidates=[P1], needed=1, health={TG_A: [target(80, "healthy"), target(8080, "initial")]},
                           now=0, deadline=100)
    assert result.status is Verdict.WAITING and result.initial == 1 and result.healthy == 0


def test_both_ports_healthy_pass():
    result = evaluate_gate(candidates=[P1], needed=1, health={TG_A: [target(80, "healthy"), target(8080, "healthy")]},
                           now=0, deadline=100)
    assert result.status is Verdict.PASSED and result.release == ("p1",)


def test_registration_pacing_needs_every_port_registering():
    registering = "Elb.RegistrationInProgress"
    both = {TG_A: [target(80, "initial", registering), target(8080, "initial", registering)]}
    one = {TG_A: [target(80, "initial", registering), target(8080, "healthy")]}
    assert all_registering([P1], both) is True
    assert all_registering([P1], one) is False
    assert all_registering([pod("p9", "10.0.0.9")], both) is False  # its IP is no target at all
