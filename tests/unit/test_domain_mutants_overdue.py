"""Tests written to kill mutants of the gate's overdue conditions (lambdas/domain/rollout/gate.py: ``health_checked``
and the overdue time in ``_look_at``) that the behaviour tests let live (docs/results/mutation-overdue-conditions.md)."""

from __future__ import annotations

import dataclasses

from lambdas.domain.gate import Verdict
from lambdas.domain.ports import HEALTHY, INITIAL, PodCondition
from lambdas.domain.rollout.gate import check_target_health, conditions_overdue_seconds, health_checked
from tests.unit.test_domain_mutants_gate_drain import ARN, ARN2, NOW, pod, rollout, target, world
from tests.unit.test_drain_carried import gated_group, lbc_pod


def test_a_pod_with_an_ip_but_not_containers_ready_and_a_group_the_conditions_omit():
    g1, g2 = gated_group(), gated_group().model_copy(update={"arn": ARN2})
    a = pod("a", "10.0.1.1")
    seen = {ARN: [target("10.0.1.1", INITIAL, "Elb.InitialHealthChecking")], ARN2: [target("10.0.1.1", HEALTHY)]}
    # a pod with an IP that is not ContainersReady has no target yet: it leaves the answer as it is
    assert health_checked([g1, g2], [a, pod("d", "10.0.1.4", ready=False)], seen)
    # a group the conditions say nothing of has nothing checked
    assert not health_checked([g1, g2], [a], {ARN: seen[ARN]})


def test_at_the_overdue_time_an_unwritten_condition_sends_the_look_to_elb_which_may_release_the_pod():
    # Given a pod with the controller's gate whose condition is still not written when the conditions fall due
    p = dataclasses.replace(lbc_pod("web-new-a", "10.0.1.1", "False"),
                            conditions=(PodCondition("ContainersReady", "True"),))
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - conditions_overdue_seconds(s)
    # When ELB calls its target healthy / Then the gate passes on that answer (its release is the write the
    # controller sees), not held for a condition nobody wrote
    w = world([p], {ARN: [target("10.0.1.1", HEALTHY)]})
    s = check_target_health(w.ports, s)
    assert w.elb.health_reads == 1 and s.gate.status is Verdict.PASSED and s.gate.release == ("web-new-a",)
