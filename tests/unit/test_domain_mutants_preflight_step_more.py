"""Preflight's turn in albgate's share of the Describe* calls, its first state, and Start Step's failures, exactly.

Given the simulated example app (its real ports, a scripted Describe* budget) or hand-made states with fake
CloudWatch alarms and metrics, this checks word for word and number for number:
- Preflight back from `Wait For Describe Turn` too early, on time, half a second early, exactly at the stale
  limit or past it: the waiting answer it gives (slot, whole seconds, turns, booked calls, reason) or the calls it
  makes; a booked turn under a second away; a Preflight that joins a describer (the probe's edges, the describer's
  turn left as it was); an answer from before the calls were counted, for two groups;
- a target group DescribeTargetGroups does not return, named in the error;
- the first state's alarm notes, baselines and GetMetricData count, and the refusal that cites the long request
  the ALB saw;
- Start Step that finds an alarm or an ALB-metric regression: the failed gate's reason and error, the wait, what
  it read; a rollback's first step that finds the undo already done writes only the hold;
- the Describe* budget's refusal of a negative cooldown or a recovery of zero.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from lambdas.domain import lbc_annotations as lbc
from lambdas.domain.budget import BudgetSpec
from lambdas.domain.contract import ALARM_FIRED, ALB_METRICS_REGRESSED
from lambdas.domain.descriptions import JOIN_WAIT_SECONDS
from lambdas.domain.errors import NotFoundError, UnsafeConfigurationError
from lambdas.domain.gate import Verdict
from lambdas.domain.looks import BOOKED_EARLY_SECONDS
from lambdas.domain.poll import POD_START_POLL_SECONDS
from lambdas.domain.ports import (
    ALARM,
    OK,
    DeploymentPatch,
    MetricMinute,
    Ports,
    StateChange,
    StateChanges,
    TargetGroupBinding,
)
from lambdas.domain.rollout.observe import STALE_SLOT_SECONDS
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.rollout.preflight import PREFLIGHT_WAITING, PreflightWaiting, describe_groups
from lambdas.domain.rollout.step import start_step
from tests.unit.test_alarms import Clock, FakeCloudWatch, NoKubernetes, alarm
from tests.unit.test_analysis_looks import LB, START, TG, FakeMetrics, steady
from tests.unit.test_analysis_looks import state as watched_state
from tests.unit.test_domain_mutants_rollout_more import NAME, NEW, OLD, Kube, deployment, hold_marker, replica_set
from tests.unit.test_domain_mutants_rollout_more import NS as SHOP
from tests.unit.test_domain_mutants_rollout_more import ports as fake_ports
from tests.unit.test_domain_mutants_rollout_more import rollout_state as fake_state
from tests.unit.test_preflight_descriptions import board, other_group, own_arn
from tests.unit.test_rollout_budget import NS, World, preflight, world  # noqa: F401  (fixture)

SPENT_REASON = ("albgate's share of the account's Describe* calls is spent (other albgate rollouts are polling); "
                "Preflight's look at the target groups is booked")
JOINED = ", and another Preflight describes them before it"


def waiting_for(world: World, seconds: float) -> dict:
    """Preflight told by the budget to wait ``seconds`` for its two calls; the budget's record emptied after."""
    world.budget.say(seconds)
    waiting = preflight(world.ports, world.request(), "t1")
    assert waiting["preflight"] == PREFLIGHT_WAITING and waiting["booked_calls"] == 2
    world.budget.say()
    return waiting


def back_at(world: World, waiting: dict, at: float) -> dict:
    world.sim.run_until(at)
    return preflight(world.ports, world.request(), "t1", waiting)


# ---------------------------------------------------------------------------------------------------------
# Back from the wait for a booked turn
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("before_the_turn,wait_seconds", [(15.0, 15), (1.5, POD_START_POLL_SECONDS)],
                         ids=["the-rest-in-whole-seconds", "at-least-the-pod-start-poll"])
def test_preflight_back_before_its_turn_waits_the_rest_keeping_its_booking(world, before_the_turn, wait_seconds):
    # Given a Preflight whose two calls are booked 20 s from now
    waiting = waiting_for(world, 20.0)
    slot = waiting["describe_slot_at"]
    # When it comes back well before that turn
    again = back_at(world, waiting, slot - before_the_turn)
    # Then it waits again for the same turn, one more turn counted, the same two calls booked, and asks nothing
    assert again == {"preflight": PREFLIGHT_WAITING, "describe_slot_at": slot, "wait_seconds": wait_seconds,
                     "turns": 2, "reason": f"Preflight's look at the target groups is booked in {wait_seconds} s",
                     "booked_calls": 2}
    assert world.budget.asks == [] and world.group_calls == 0


@pytest.mark.parametrize("offset", [-BOOKED_EARLY_SECONDS, 0.0, STALE_SLOT_SECONDS],
                         ids=["half-a-second-early", "on-time", "exactly-at-the-stale-limit"])
def test_preflight_back_within_its_turns_edges_describes_at_once_without_asking_again(world, offset):
    # Given a Preflight whose two calls are booked 20 s from now
    waiting = waiting_for(world, 20.0)
    # When it comes back half a second early, on time, or exactly as late as a turn may be
    state = back_at(world, waiting, waiting["describe_slot_at"] + offset)
    # Then it describes its group on that turn, asking the budget nothing more
    assert len(state["target_groups"]) == 1 and world.group_calls == 1
    assert world.budget.asks == []


def test_preflight_back_past_the_stale_limit_books_both_calls_again(world):
    # Given a Preflight whose turn 20 s away went stale (it came back 10.5 s late), and a budget spent for 4 s more
    waiting = waiting_for(world, 20.0)
    world.sim.run_until(waiting["describe_slot_at"] + STALE_SLOT_SECONDS + 0.5)
    world.budget.say(4.0)
    # When it runs again
    again = preflight(world.ports, world.request(), "t1", waiting)
    # Then it booked DescribeTargetGroups and DescribeTargetGroupAttributes anew, and waits for that turn
    assert world.budget.asks == [(2, True)]
    assert again == {"preflight": PREFLIGHT_WAITING, "describe_slot_at": world.now + 4.0, "wait_seconds": 4,
                     "turns": 2, "reason": f"{SPENT_REASON} in 4 s", "booked_calls": 2}
    assert world.group_calls == 0


def test_a_turn_half_a_second_away_is_waited_for_at_least_the_pod_start_poll(world):
    # Given a budget whose next turn is half a second away
    world.budget.say(0.5)
    now = world.now
    # When Preflight runs / Then it calls nothing yet, and comes back after the shortest wait of the state machine
    waiting = preflight(world.ports, world.request(), "t1")
    assert waiting == {"preflight": PREFLIGHT_WAITING, "describe_slot_at": now + 0.5,
                       "wait_seconds": POD_START_POLL_SECONDS, "turns": 1,
                       "reason": f"{SPENT_REASON} in {POD_START_POLL_SECONDS} s", "booked_calls": 2}
    assert world.group_calls == 0


# ---------------------------------------------------------------------------------------------------------
# Joining a describer
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("probe", [0.5, JOIN_WAIT_SECONDS], ids=["half-a-second", "exactly-the-join-wait"])
def test_a_preflight_whose_own_turn_comes_within_the_join_wait_joins_the_describer(world, probe):
    # Given a describer whose turn is 5 s away, and a budget that would let this Preflight's calls go in ``probe``
    start = world.now
    world.ports.descriptions.want([other_group(world).arn], start, describer_at=start + 5)
    world.budget.say(probe, probe)
    # When Preflight runs
    waiting = preflight(world.ports, world.request(), "t1")
    # Then it joined: it asked, then booked its attributes only, and waits for its turn, calling nothing now
    assert world.budget.asks == [(2, False), (1, True)]
    wait = max(POD_START_POLL_SECONDS, math.ceil(probe))
    assert waiting == {"preflight": PREFLIGHT_WAITING, "describe_slot_at": start + probe, "wait_seconds": wait,
                       "turns": 1, "reason": f"{SPENT_REASON}{JOINED} in {wait} s", "booked_calls": 1}
    assert world.group_calls == 0
    # and its group is wanted, the describer's turn left exactly where it was
    b = board(world)
    assert b.describer_at == start + 5 and own_arn(world) in b.wanted


# ---------------------------------------------------------------------------------------------------------
# An answer from before the booked calls were counted
# ---------------------------------------------------------------------------------------------------------
def test_an_answer_from_before_the_count_covers_two_calls_for_each_of_its_groups(world):
    # Given the example app's binding and a second one for another group, and an answer written before Preflights
    # counted their booked calls (two groups: four calls booked, more than the three they need)
    other = other_group(world)
    (own,) = world.ports.kube.list_target_group_bindings(NS)
    second = TargetGroupBinding(namespace=NS, name="zz-other", target_group_arn=other.arn, target_type="ip",
                                service_name=own.service_name, service_port=own.service_port)
    waited = PreflightWaiting(describe_slot_at=world.now, wait_seconds=3, turns=1, reason="booked")
    # When Preflight comes back at that turn
    groups = describe_groups(world.ports, NS, [second, own], waited)
    # Then one DescribeTargetGroups call describes both, without asking the budget again
    assert [g.arn for g in groups] == [own.target_group_arn, other.arn]
    assert world.budget.asks == [] and world.group_calls == 1


# ---------------------------------------------------------------------------------------------------------
# A group DescribeTargetGroups does not return
# ---------------------------------------------------------------------------------------------------------
class Forgetful:
    """The simulated ELB, but DescribeTargetGroups answers without the groups it was asked about."""

    def __init__(self, elb) -> None:
        self.elb = elb

    def __getattr__(self, name):
        return getattr(self.elb, name)

    def describe_target_group_settings(self, arns):
        self.elb.describe_target_group_settings(arns)
        return []


def test_a_group_describe_target_groups_left_out_of_its_answer_is_named(world):
    # Given ELB answering DescribeTargetGroups without the example app's group
    ports = dataclasses.replace(world.ports, elb=Forgetful(world.ports.elb))
    # When Preflight runs / Then it fails naming that group
    with pytest.raises(NotFoundError) as caught:
        preflight(ports, world.request(), "t1")
    assert str(caught.value) == f"target group {own_arn(world)} was not returned by DescribeTargetGroups"


# ---------------------------------------------------------------------------------------------------------
# Preflight's first state: alarms, baselines, GetMetricData calls; a refusal citing the long requests seen
# ---------------------------------------------------------------------------------------------------------
def request_with(world: World, **policy) -> dict:
    request = world.request()
    request["policy"].update(policy)
    return request


def test_preflight_started_despite_a_failing_alarm_says_so_in_the_first_state(world):
    # Given an alarm the policy names, in ALARM a minute before the start, and the override
    cw = FakeCloudWatch([alarm("web-5xx", ALARM, world.now - 60, "Threshold Crossed")])
    ports = dataclasses.replace(world.ports, alarms=cw)
    # When Preflight runs
    state = preflight(ports, request_with(world, alarms=["web-5xx"], start_despite_alarms=True), "t1")
    # Then it looked once, and the first state carries the note
    assert cw.calls == [("DescribeAlarms", ("web-5xx",), None, None)]
    assert ("alarms: started despite web-5xx (ALARM); each fails the rollout again once it has left that state and "
            "comes back") in state["notes"]


def test_preflight_keeps_each_groups_baseline_and_counts_every_get_metric_data_call(world):
    # Given 30 steady minutes of the group's metrics (600 requests, 6 of them 5xx, each minute)
    now = world.now
    metrics = FakeMetrics(steady(now - 1800, 30))
    ports = dataclasses.replace(world.ports, metrics=metrics)
    # When Preflight runs with the analysis on
    state = preflight(ports, request_with(world, analysis={"baseline_minutes": 30}, bake_seconds=300), "t1")
    # Then it read the longest requests of the last hour, then the baseline's 30 minutes, for the group
    arn, lb = state["target_groups"][0]["arn"], state["target_groups"][0]["load_balancer_arn"]
    assert metrics.calls == [(arn, lb, now - 3600, now), (arn, lb, now - 1800, now)]
    # and the first state keeps the baseline and counts both calls
    assert list(state["baselines"]) == [arn]
    assert state["baselines"][arn]["periods"] == 30 and state["baselines"][arn]["error_rate"] == pytest.approx(0.01)
    assert state["get_metric_data_calls"] == 2


def test_a_delay_too_short_only_for_the_requests_the_alb_saw_is_refused_citing_them(world):
    # Given the group's 300 s deregistration delay, a declared longest request of 30 s, and the ALB's metrics showing
    # a request answered in 400 s in the last hour
    now = world.now
    metrics = FakeMetrics([MetricMinute(now - 600, 100.0, 0.0, 0.5, 400.0)])
    ports = dataclasses.replace(world.ports, metrics=metrics)
    arn = own_arn(world)
    # When Preflight runs / Then it refuses the delay, sized for 400 s, and cites what the ALB saw
    with pytest.raises(UnsafeConfigurationError) as caught:
        preflight(ports, world.request(), "t1")
    name = arn.split(":targetgroup/")[1].split("/")[0]
    assert str(caught.value) == (
        f"target group {arn}: a deregistration delay of 300 s is shorter than the longest request (400 s): requests "
        f"in flight are cut when it ends; raise it: {lbc.fix(lbc.TG_ATTRIBUTES, f'{lbc.DEREGISTRATION_DELAY}=400')} "
        f"(long requests: target group {name} answered a request in 400 s in the last 60 minutes (TargetResponseTime "
        "Maximum), longer than policy.max_request_seconds (30 s): the grace period and the deregistration delay are "
        "checked for 400 s)")


def test_a_delay_too_short_for_the_declared_requests_is_refused_as_it_is(world):
    # Given a declared longest request of 400 s, longer than the group's 300 s delay, and nothing longer seen
    ports = dataclasses.replace(world.ports, metrics=FakeMetrics([]))
    arn = own_arn(world)
    # When Preflight runs / Then the refusal names the delay and the fix, and nothing more
    with pytest.raises(UnsafeConfigurationError) as caught:
        preflight(ports, request_with(world, max_request_seconds=400), "t1")
    assert str(caught.value) == (
        f"target group {arn}: a deregistration delay of 300 s is shorter than the longest request (400 s): requests "
        f"in flight are cut when it ends; raise it: {lbc.fix(lbc.TG_ATTRIBUTES, f'{lbc.DEREGISTRATION_DELAY}=400')}")


# ---------------------------------------------------------------------------------------------------------
# Start Step after an alarm or an ALB-metric regression
# ---------------------------------------------------------------------------------------------------------
def test_an_alarm_that_fired_since_the_gate_fails_start_step_without_reading_the_metrics():
    # Given step 1's gate passed at +60 s, an alarm that went to ALARM at +250 s and back to OK at +300 s, and the
    # analysis on with metrics that would show a regression; the state still waits out step 1's bake
    s = watched_state(analysis={}, alarms=["a"])
    s.wait_seconds = 30
    cw = FakeCloudWatch([alarm("a", OK, START + 300)],
                        history={"a": StateChanges((StateChange(START + 300, ALARM, OK),
                                                    StateChange(START + 250, OK, ALARM)))})
    metrics = FakeMetrics(steady(START + 120, 5, errors=60.0))
    ports = Ports(kube=NoKubernetes(), elb=None, clock=Clock(START + 500),  # type: ignore[arg-type]
                  alarms=cw, metrics=metrics)
    # When the next step starts
    done = start_step(ports, s)
    # Then the gate fails on the alarm's history since the gate passed, read up to now, and nothing else is read
    assert cw.calls == [("DescribeAlarms", ("a",), None, None), ("DescribeAlarmHistory", "a", START + 60, START + 500)]
    assert done.gate.status is Verdict.FAILED and done.gate.error == ALARM_FIRED
    assert done.gate.reason == (
        "CloudWatch alarm(s) since step 1 passed its gate (1970-01-12T13:48:00Z: its drain, bake and any approval "
        "wait): a went from OK to ALARM at 1970-01-12T13:51:10Z, OK since 1970-01-12T13:52:00Z (policy.alarms)")
    assert metrics.calls == [] and done.analysis_at is None and done.get_metric_data_calls == 0
    # and the state machine goes straight to the rollback decision, on the step that baked
    assert done.wait_seconds == 0 and (done.step, done.next_step, len(done.steps)) == (0, 1, 1)


def test_an_alb_metric_regression_since_the_gate_fails_start_step_naming_the_group():
    # Given step 1's gate passed at +60 s and five minutes since in which the new version answered 5xx far more
    s = watched_state(analysis={})
    s.wait_seconds = 30
    metrics = FakeMetrics(steady(START + 120, 5, errors=60.0))
    ports = Ports(kube=NoKubernetes(), elb=None, clock=Clock(START + 500), metrics=metrics)  # type: ignore[arg-type]
    # When the next step starts
    done = start_step(ports, s)
    # Then it read the group's periods since the gate up to now, once, and the gate fails on the regression
    assert metrics.calls == [(TG, LB, START + 60, START + 500)]
    assert (done.analysis_at, done.get_metric_data_calls) == (START + 500, 1)
    assert done.gate.status is Verdict.FAILED and done.gate.error == ALB_METRICS_REGRESSED
    assert done.gate.reason == (
        "ALB metrics of target group k8s-shop-web-0a1b2c3d4e since step 1 passed its gate: the new version gives more "
        "5xx over 5 period(s): 5xx 300 of 3000 requests against 30.0 expected (z 49.3); the new pods' rate 23.50% is "
        "23.5x the baseline's 1.00%; response time 200 ms against 200 ms before (z 0.0); the new pods' 200 ms is "
        "1.0x; limits: 2x the baseline's 5xx rate, 1.5x its response time (policy.analysis)")
    assert done.wait_seconds == 0 and (done.step, done.next_step, len(done.steps)) == (0, 1, 1)


# ---------------------------------------------------------------------------------------------------------
# A rollback's first step that finds the undo done
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class UndoingKube(Kube):
    """A cluster where the undo lands: the Deployment then runs the previous image, at a new resourceVersion."""

    def rollback_deployment(self, namespace, name, to_revision, *, expected_resource_version=None):
        undone = super().rollback_deployment(namespace, name, to_revision,
                                             expected_resource_version=expected_resource_version)
        hold = self.deployment.annotations.get(ROLLOUT_ANNOTATION, "")
        self.deployment = dataclasses.replace(deployment(OLD, hold=hold, revision=6),
                                              resource_version=undone.resource_version)
        return self.deployment


def test_a_rollback_whose_hold_write_lost_to_a_status_update_undoes_once_then_writes_only_the_hold():
    # Given a rollback of a rollout that wrote the new image (the previous ReplicaSet still serves one pod), and a
    # status update that makes the hold's conditional write answer 409 once, right after the undo
    state = fake_state(mode="rollback", plan=(3,))
    kube = UndoingKube(deployment=deployment(NEW, hold="exec-1@99999", revision=5),
                       replica_sets=[replica_set("web-old", 4, OLD, gated=False, ready=1)], conflicts=1)
    # When the rollback's step starts
    done = start_step(fake_ports(kube), state)
    # Then it undid once, and on reading the Deployment again (the previous image back) wrote only the hold, on
    # condition of the resourceVersion the undo left
    hold = DeploymentPatch(max_surge=3, max_unavailable=0, annotations=hold_marker(state),
                           expected_resource_version="rv-8")
    assert kube.writes() == [
        ("rollback_deployment", SHOP, NAME, 4, "rv-7"),
        ("patch_deployment", SHOP, NAME, hold),
        ("patch_deployment", SHOP, NAME, hold),
    ]
    assert (done.step, done.next_step, done.gate.reason) == (0, 1, "step started")


# ---------------------------------------------------------------------------------------------------------
# The Describe* budget's settings
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "got"), [({"cooldown_seconds": -1.0}, "-1.0 and 30.0"),
                                             ({"recovery_seconds": 0.0}, "10.0 and 0.0")],
                         ids=["negative-cooldown", "no-recovery"])
def test_a_budget_with_a_negative_cooldown_or_no_recovery_is_refused_saying_both_bounds_and_values(fields, got):
    with pytest.raises(ValueError) as caught:
        BudgetSpec(**fields)
    assert str(caught.value) == f"describe budget cooldown_seconds must be >= 0 and recovery_seconds > 0, got {got}"
