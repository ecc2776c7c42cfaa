"""Roll Back's summary of what failed, and the target groups a rollout gates on, with the refusals a person reads.

Given a failed rollout's state, when Roll Back runs, then the failure summary says which step failed and why in
one line (a Lambda's JSON cause unwrapped), and a rollout that changed the template becomes a one-step rollback
to the previous image, gated like any step. Given a Deployment's Services and bindings, when the gate's target
groups are listed and described, then a missing Service or binding, an instance target group and a group no
listener uses are refused in words that say what to fix; and each group's summary names it by its short name.
"""

from __future__ import annotations

import json

import pytest

from lambdas.domain.errors import NotFoundError, UnsafeConfigurationError
from lambdas.domain.gate import Verdict
from lambdas.domain.ports import INITIAL, Ports, Service, ServicePort, TargetGroupBinding
from lambdas.domain.rollout.rollback import describe_failure, roll_back
from lambdas.domain.rollout.targets import describe_target_groups, group_summary, target_group_bindings
from tests.unit.test_domain_mutants_gatekeeper import (
    TG_A, TG_B, Clock, Cluster, LoadBalancer, deployment, pod,
)
from tests.unit.test_domain_mutants_step import OLD, rollout_state


# ---------------------------------------------------------------------------------------------------------
# Roll Back
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure,line", [
    (None, "unknown failure"),
    ({}, "unknown failure"),
    ({"Error": "States.Timeout", "Cause": "the task timed out"}, "States.Timeout: the task timed out"),
    ({"Error": "UnsafeConfigurationError", "Cause": json.dumps({"errorMessage": "it was paused",
                                                                "errorType": "UnsafeConfigurationError"})},
     "UnsafeConfigurationError: it was paused"),
    ({"Cause": json.dumps(["not", "an", "object"])}, 'Error: ["not", "an", "object"]'),
    ({"Error": "Lambda.Unknown"}, "Lambda.Unknown: "),
    ({"Error": "States.Runtime", "Cause": '{"detail": 1}'}, 'States.Runtime: {"detail": 1}'),
])
def test_a_caught_error_becomes_one_line(failure, line):
    assert describe_failure(failure) == line


def test_a_rollout_that_changed_the_template_becomes_a_one_step_rollback_to_the_previous_image():
    # Given step 2 of 2 failed after the template changed, its drain handed over, a bake and approval ahead
    s = rollout_state(next_step=2, step=1, template_changed=True, pending_drain_step=2, bake_seconds=30,
                      approval_required=True, more_steps=False,
                      failure={"Error": "GateFailed", "Cause": "new pod unhealthy"})
    # When Roll Back runs
    s = roll_back(Ports(kube=None, elb=None, clock=Clock()), s)
    # Then it rolls back to the previous image in one step of all replicas, gated, with nothing left of the rollout
    assert s.failure_summary == "rollout failed at step 2/2: GateFailed: new pod unhealthy"
    assert (s.mode, s.rollback_needed, s.target_image, s.plan) == ("rollback", True, OLD, [3])
    assert (s.next_step, s.step, s.pending_drain_step, s.more_steps) == (0, -1, None, True)
    assert (s.approval_required, s.bake_seconds, s.outcome) == (False, 0, "in_progress")
    assert (s.gate.status, s.gate.reason) == (Verdict.WAITING, "rollback not started")
    assert (s.drain.status, s.drain.reason) == (Verdict.WAITING, "rollback not started")


@pytest.mark.parametrize("mode,changed", [("rollout", False), ("rollback", True)])
def test_nothing_to_undo_or_a_failed_rollback_ends_the_execution_failed(mode, changed):
    # Given a rollout that failed before changing the template, or a rollback that failed
    s = rollout_state(mode, step=-1, template_changed=changed, failure={"Error": "Preflight", "Cause": "no Service"})
    # When Roll Back runs / Then the execution ends failed, saying which mode failed, where and why
    s = roll_back(Ports(kube=None, elb=None, clock=Clock()), s)
    assert (s.rollback_needed, s.outcome, s.mode) == (False, "failed", mode)
    assert s.failure_summary.startswith(f"{mode} failed ") and s.failure_summary.endswith(
        "before the first step: Preflight: no Service")


# ---------------------------------------------------------------------------------------------------------
# The target groups
# ---------------------------------------------------------------------------------------------------------
def ports_of(cluster: Cluster, lb: LoadBalancer) -> Ports:
    return Ports(kube=cluster, elb=lb, clock=Clock())


class NoService(Cluster):
    def list_services(self, namespace):
        return [Service("shop", "api", {"app": "api"}, (ServicePort(80, 8080),)),
                Service("shop", "all", {}, (ServicePort(80, 8080),))]


class NoBinding(Cluster):
    def list_target_group_bindings(self, namespace):
        return [TargetGroupBinding("shop", "other", TG_A, "ip", "api", 80)]


def test_a_deployment_no_service_selects_is_refused_naming_its_labels():
    with pytest.raises(NotFoundError) as caught:
        target_group_bindings(ports_of(NoService(deployment(), []), LoadBalancer({})), deployment())
    assert str(caught.value) == ("no Service in shop selects the pods of Deployment cart (labels {'app': 'cart'}); "
                                 "albgate gates on the ALB targets behind a Service")


def test_a_service_without_a_binding_is_refused_asking_about_the_controller():
    with pytest.raises(NotFoundError) as caught:
        target_group_bindings(ports_of(NoBinding(deployment(), []), LoadBalancer({})), deployment())
    assert str(caught.value) == (
        "no TargetGroupBinding in shop for Service(s) cart: the Load Balancer Controller creates one per backend of an "
        "Ingress with ingressClassName alb; is the controller running and the Ingress applied?")


def test_a_template_without_labels_is_matched_by_the_deployments_selector():
    dep = deployment()
    dep = type(dep)(**{**dep.__dict__, "template": type(dep.template)(**{**dep.template.__dict__, "labels": {}})})
    bindings = target_group_bindings(ports_of(Cluster(dep, []), LoadBalancer({})), dep)
    assert [b.target_group_arn for b in bindings] == [TG_A]


def test_groups_are_described_in_the_order_of_their_binding_names():
    cluster = Cluster(deployment(), [], groups=(TG_B, TG_A))  # bindings cart-0 -> TG_B, cart-1 -> TG_A
    bindings = list(reversed(cluster.list_target_group_bindings("shop")))
    groups = describe_target_groups(ports_of(cluster, LoadBalancer({})), "shop", bindings)
    assert [(g.arn, g.service) for g in groups] == [(TG_B, "cart"), (TG_A, "cart")]


def test_a_binding_of_instance_targets_is_refused_even_when_the_group_says_ip():
    cluster = Cluster(deployment(), [], target_type="instance")
    with pytest.raises(UnsafeConfigurationError) as caught:
        describe_target_groups(ports_of(cluster, LoadBalancer({})), "shop", cluster.list_target_group_bindings("shop"))
    assert str(caught.value) == (
        "TargetGroupBinding shop/cart-0 uses target type ip: only IP targets map one pod to one target, so only they "
        "can be gated; set the Ingress annotation alb.ingress.kubernetes.io/target-type: ip")


class Unattached(LoadBalancer):
    def describe_target_group(self, arn):
        tg = super().describe_target_group(arn)
        return type(tg)(**{**tg.__dict__, "load_balancer_arns": ()})


def test_a_group_no_listener_uses_is_refused_citing_the_controller_issue():
    cluster = Cluster(deployment(), [])
    with pytest.raises(UnsafeConfigurationError) as caught:
        describe_target_groups(ports_of(cluster, Unattached({})), "shop", cluster.list_target_group_bindings("shop"))
    assert str(caught.value) == (
        f"target group {TG_A} is not attached to a load balancer listener, so no target in it can ever become healthy "
        "(aws-load-balancer-controller#3753); check the Ingress rules")


def test_each_groups_summary_counts_the_started_pods_by_state_under_its_short_name():
    started, starting = pod("cart-1", "10.0.0.1"), pod("cart-2", "10.0.0.2", ready=False)
    groups = describe_target_groups(ports_of(Cluster(deployment(), []), LoadBalancer({})), "shop",
                                    Cluster(deployment(), []).list_target_group_bindings("shop"))
    lb = LoadBalancer({TG_A: {"10.0.0.1": INITIAL, "10.0.0.2": INITIAL}})
    [summary] = group_summary(groups, [started, starting], {TG_A: lb.describe_target_health(TG_A)})
    assert (summary.target_group, summary.service, summary.initial, summary.healthy, summary.unregistered) == (
        "cart-a", "cart", 1, 0, 0)


def test_a_failure_at_step_one_names_the_step():
    s = rollout_state(next_step=1, step=0, template_changed=True, failure={"Error": "GateFailed", "Cause": "x"})
    assert roll_back(Ports(kube=None, elb=None, clock=Clock()), s).failure_summary == (
        "rollout failed at step 1/2: GateFailed: x")
