"""More of what the largest state, the ECR/release trigger, the preflight report and the long-request sizing promise.

Given the same fixtures as the other mutant tests (the rollout of test_domain_mutants_state, the in-memory trigger
ports of test_domain_mutants_trigger_use_case, the report's cluster and load balancer of
test_domain_mutants_preflight_report, the metrics of test_domain_mutants_analysis), when each runs, then:
the largest state fills every optional timestamp, counter and baseline a real state may carry; a release's claim
and the hand-over it triggers announce as a release (nothing published, "release started" logged), never as a
rollout; the report reads the ALB metrics over exactly the policy's window, names the longer requests word for word,
and lists each risk once; and a CloudWatch outage is told apart from a throttle in the note.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from lambdas.domain.errors import AwsUnavailableError
from lambdas.domain.models import AnalysisPolicy, RolloutPolicy
from lambdas.domain.ports import MetricMinute
from lambdas.domain.preflight_report import ReportApp, ReportRequest, Risk, preflight_report, serving_risks
from lambdas.domain.release_trigger import RELEASES, release_lock_key
from lambdas.domain.rollout.analysis import sized_for_long_requests
from lambdas.domain.state import ANALYSIS_MAX_CHARS, largest_state
from lambdas.domain.trigger import LockItem, Pending, console_url
from lambdas.domain.trigger_use_case import claim
from tests.trigger.test_use_case import Leases, Target, push
from tests.unit.test_analysis_looks import GROUP, START, ports, request
from tests.unit.test_domain_mutants_analysis import TG_API, group
from tests.unit.test_domain_mutants_bootstrap_steps import app_pod
from tests.unit.test_domain_mutants_preflight_report import GATE, TG_ARN, Elb, healthy_cluster, target_group
from tests.unit.test_domain_mutants_state import GROUPS, REQUEST, TIMESTAMP
from tests.unit.test_domain_mutants_trigger_use_case import InputStarter, Statuses, World

# ---------------------------------------------------------------------------------------------------------
# The largest state
# ---------------------------------------------------------------------------------------------------------
ANALYSED = REQUEST.model_copy(update={"policy": RolloutPolicy(analysis=AnalysisPolicy())})


def largest(req=REQUEST) -> dict:
    return largest_state(req, replicas=4, plan=[1, 4], target_groups=GROUPS, previous_image="web:0")


def test_every_step_record_of_the_largest_state_has_its_quick_looks_nudges_and_their_times_set():
    # Given the largest state of a rollout / When its step records are read
    steps = largest()["steps"]
    # Then each carries the step's first ready look, its last nudge, and the most quick looks and nudges
    assert len(steps) == 3
    for record in steps:
        assert (record["first_ready_at"], record["nudged_at"]) == (TIMESTAMP, TIMESTAMP)
        assert (record["quick_looks"], record["nudges"]) == (10**6, 10**6)


def test_the_largest_state_carries_every_look_and_analysis_field_at_its_longest():
    # Given the largest state of a rollout
    state = largest()
    # Then the ELB back-off, the shared looks' times and count, and the last analysis are all set, at full length
    assert [state[k] for k in ("elb_after", "looked_at", "changed_at", "followed_at", "analysis_at")] == [TIMESTAMP] * 5
    assert state["shared_looks"] == 10**9 and state["get_metric_data_calls"] == 10**6
    assert state["analysis"] == "a" * ANALYSIS_MAX_CHARS


def test_with_an_analysis_policy_every_target_group_carries_a_baseline_of_the_longest_numbers():
    # Given a rollout whose policy analyses the ALB metrics / When its largest state is built
    state = largest(ANALYSED)
    # Then each target group has a baseline with every field set, the longest float JSON writes included
    full = {"periods": 10**6, "requests": 1e308, "error_rate": 1e308, "dispersion": 1e308, "latency": 1e308,
            "latency_sd": 1e308}
    assert state["baselines"] == {g.arn: full for g in GROUPS}
    assert json.dumps(state["baselines"]).count("1e+308") == 5 * len(GROUPS)


def test_without_an_analysis_policy_the_largest_state_has_no_baseline():
    # Given a rollout that reads no ALB metrics / Then no baseline is carried (Preflight reads none)
    assert largest()["baselines"] == {}


# ---------------------------------------------------------------------------------------------------------
# A release's claim announces as a release
# ---------------------------------------------------------------------------------------------------------
RELEASE_KEY = release_lock_key("web")
OLD_RELEASE = "web-000000000000-0000000000000000"


def release_pending(name: str, time: str, image: str) -> Pending:
    return Pending(name, json.dumps({"image": image, "release": "web"}, sort_keys=True), time, image)


MINE = release_pending("web-aaaaaaaaaaaa-1111111111111111", "2025-01-01T10:00:00Z", "img@sha256:a")
LATER = release_pending("web-bbbbbbbbbbbb-2222222222222222", "2025-01-01T10:05:00Z", "img@sha256:b")


def release_detail(p: Pending, arn: str) -> dict[str, Any]:
    return {"release": "web", "image": p.image, "execution_name": p.execution_name, "execution_arn": arn,
            "console_url": console_url("us-east-1", arn)}


def execution(name: str) -> str:
    return f"arn:aws:states:us-east-1:123456789012:execution:Rollout:{name}"


def test_a_release_push_taking_over_from_an_ended_release_publishes_nothing_and_logs_a_release_start():
    # Given the release's lease held by an execution that ended without letting it go
    held = LockItem(RELEASE_KEY, OLD_RELEASE, "", 0, "2025-01-01T09:00:00Z", "img@sha256:0")
    w = World(leases=Leases(items={RELEASE_KEY: held}), statuses=Statuses({execution(OLD_RELEASE): "SUCCEEDED"}))
    # When a newer push claims the lease for its release execution
    answer = claim(RELEASE_KEY, MINE, push(), Target(), w.ports, RELEASES)
    # Then it takes the lease over and starts, the release state machine announces itself (nothing published),
    # and the log says a release started
    assert answer == {"outcome": "started", **release_detail(MINE, execution(MINE.execution_name)),
                      "took_over_from": OLD_RELEASE}
    assert w.starter.calls == [MINE.execution_name] and w.bus.events == []
    assert ("info", "release started", release_detail(MINE, execution(MINE.execution_name))) in w.log.lines


def test_a_replayed_release_push_hands_its_lease_to_the_push_queued_meanwhile_as_a_release():
    # Given the push's release execution ran long ago, and another push queues right after this one takes the lease
    leases = Leases()

    def queue_after_the_acquire() -> None:
        if leases.writes == ["acquire"]:
            leases.items[RELEASE_KEY] = dataclasses.replace(leases.items[RELEASE_KEY], pending=LATER)

    leases.before_write = queue_after_the_acquire
    w = World(leases=leases, starter=InputStarter(existing={MINE.execution_name}))
    # When the replayed push claims the lease
    answer = claim(RELEASE_KEY, MINE, push(), Target(), w.ports, RELEASES)
    # Then the lease goes to the waiting push, whose release starts unannounced, logged as a release
    assert w.starter.calls == [MINE.execution_name, LATER.execution_name]
    assert answer["lock"] == {"lock": "handed_over", "next": {
        "outcome": "started", **release_detail(LATER, execution(LATER.execution_name))}}
    assert w.bus.events == []
    assert ("info", "release started", release_detail(LATER, execution(LATER.execution_name))) in w.log.lines


# ---------------------------------------------------------------------------------------------------------
# The preflight report and the ALB metrics
# ---------------------------------------------------------------------------------------------------------
NOW = 1_735_725_600.0


class Metrics:
    """A ``MetricsPort`` answering the same periods to every read, each read's arguments recorded."""

    def __init__(self, longest: float | None) -> None:
        self.minutes = [MetricMinute(NOW - 600, 100.0, 0.0, 0.5, longest)]
        self.asked: list[tuple[str, str, float, float]] = []

    def target_group_minutes(self, target_group_arn: str, load_balancer_arn: str, start: float,
                             end: float) -> list[MetricMinute]:
        self.asked.append((target_group_arn, load_balancer_arn, start, end))
        return self.minutes


def serving_with(metrics: Metrics, policy: RolloutPolicy = RolloutPolicy(), elb: Elb | None = None,
                 **kw: Any) -> list[Risk]:
    kube = healthy_cluster()
    return serving_risks(kube, elb or Elb({TG_ARN: target_group()}), kube.deployments[("shop", "web")], policy, True,
                         metrics, **kw)


LONGER = Risk(
    "requests-longer-than-declared", "warning", f"target group {TG_ARN}",
    "it answered a request in 100 s in the last 60 minutes (TargetResponseTime Maximum), longer than "
    "max_request_seconds (30 s); the grace period and the deregistration delay are checked for 100 s",
    "declare max_request_seconds: 100 in the rollout policy (albgate's Preflight sizes the drain for it anyway)")
GRACE_100 = Risk("grace-too-short", "error", "Deployment shop/web",
                 "terminationGracePeriodSeconds is 30: it must cover the preStop (30 s) plus the longest request "
                 "(100 s), 130 s", "set spec.template.spec.terminationGracePeriodSeconds: 130")


def test_a_longer_request_than_declared_is_one_warning_naming_its_target_group_and_the_fix_word_for_word():
    # Given the ALB answered a 100 s request in the last hour, the policy declaring 30 s
    metrics = Metrics(100.0)
    # When the Deployment's serving is checked at NOW
    risks = serving_with(metrics, now=NOW)
    # Then the hour before NOW is read once, and the warning and the grace period checked for 100 s are listed
    assert metrics.asked == [(TG_ARN, "arn:alb", NOW - 3600.0, NOW)]
    assert risks == [LONGER, GRACE_100]


def test_a_longest_request_of_exactly_the_declared_length_is_no_risk():
    # Given the ALB's longest request lasted exactly max_request_seconds / Then nothing is reported
    assert serving_with(Metrics(30.0), now=NOW) == []


def test_shorter_requests_or_no_response_time_at_all_are_no_risk():
    # Given the ALB's longest request was shorter than declared, or no response time was published
    for longest in (12.0, None):
        # Then nothing is reported
        assert serving_with(Metrics(longest), now=NOW) == []


def test_a_window_of_0_minutes_reads_no_metrics():
    # Given a policy that turns the long-request check off
    metrics = Metrics(100.0)
    # When checked / Then CloudWatch is not asked and nothing is reported
    assert serving_with(metrics, RolloutPolicy(long_requests_window_minutes=0), now=NOW) == []
    assert metrics.asked == []


def test_a_window_of_1_minute_reads_the_minute_before_now():
    # Given a one-minute window / When checked / Then exactly the last 60 s are read
    metrics = Metrics(None)
    assert serving_with(metrics, RolloutPolicy(long_requests_window_minutes=1), now=NOW) == []
    assert metrics.asked == [(TG_ARN, "arn:alb", NOW - 60.0, NOW)]


def test_a_target_group_attached_to_no_load_balancer_has_no_metrics_to_read():
    # Given the binding's target group is attached to no listener, and metrics can be read
    metrics = Metrics(100.0)
    risks = serving_with(metrics, elb=Elb({TG_ARN: target_group(attached=False)}), now=NOW)
    # Then only the detachment is reported, and CloudWatch is not asked (no LoadBalancer dimension)
    assert [r.code for r in risks] == ["target-group-not-attached"] and metrics.asked == []


def test_metrics_without_the_time_their_window_ends_are_refused_before_any_read():
    # Given metrics but no time handed to the checks / When checked
    metrics = Metrics(None)
    kube = healthy_cluster()
    request_ = ReportRequest(cluster="prod", expect_controller=False,
                             applications=[ReportApp(namespace="shop", deployment="web")])
    # Then both entry points refuse, saying what is missing, and CloudWatch is never asked (a window ending in 1970
    # would find nothing and say so as if it had looked)
    with pytest.raises(ValueError, match="^the longest requests are read up to a time: pass now with metrics$"):
        preflight_report(kube, Elb({TG_ARN: target_group()}), request_, metrics)
    with pytest.raises(ValueError, match="pass now with metrics"):
        serving_risks(kube, Elb({TG_ARN: target_group()}), kube.deployments[("shop", "web")], RolloutPolicy(), True,
                      metrics)
    assert metrics.asked == []


def test_a_time_without_metrics_reads_nothing_and_finds_no_long_request():
    # Given no metrics port (a report from the CLI, a wiring without CloudWatch) but the time / When checked
    kube = healthy_cluster()
    request_ = ReportRequest(cluster="prod", expect_controller=False,
                             applications=[ReportApp(namespace="shop", deployment="web")])
    report = preflight_report(kube, Elb({TG_ARN: target_group()}), request_, None, 1_767_225_600.0)
    # Then no long-request risk is reported, and none of the checks needed a metric
    assert "requests-longer-than-declared" not in report.codes()
    assert report.codes() == preflight_report(kube, Elb({TG_ARN: target_group()}), request_).codes()


def test_pods_of_other_deployments_in_the_namespace_are_not_judged_for_the_gate():
    # Given this Deployment's pod is gated, and another app's pod in the namespace is not
    kube = healthy_cluster()
    kube.pods = [app_pod("web-1", "h", (GATE,)), dataclasses.replace(app_pod("api-1", "h"), labels={"app": "api"})]
    # When this Deployment's serving is checked / Then no pod is said to lack the gate
    assert serving_risks(kube, Elb({TG_ARN: target_group()}), kube.deployments[("shop", "web")], RolloutPolicy(),
                         True) == []


def test_the_report_lists_the_grace_period_once_checked_for_the_longest_request_and_every_other_finding_once():
    # Given the Deployment has no preStop and a 30 s grace period, and the ALB answered a 100 s request
    kube = healthy_cluster()
    request_ = ReportRequest(cluster="prod", expect_controller=False,
                             applications=[ReportApp(namespace="shop", deployment="web")])
    # When the report is made with the metrics
    report = preflight_report(kube, Elb({TG_ARN: target_group()}), request_, Metrics(100.0), NOW)
    # Then the missing preStop is listed once, the grace period once (for 100 s), after the longer requests
    assert [r.code for r in report.risks] == ["missing-prestop", "requests-longer-than-declared", "grace-too-short"]
    assert report.risks[1:] == [LONGER, GRACE_100]


# ---------------------------------------------------------------------------------------------------------
# Sizing the drain for long requests (Preflight)
# ---------------------------------------------------------------------------------------------------------
class Unreachable:
    """A ``MetricsPort`` whose CloudWatch is out of reach."""

    def target_group_minutes(self, target_group_arn: str, load_balancer_arn: str, start: float,
                             end: float) -> list[MetricMinute]:
        raise AwsUnavailableError("cloudwatch:GetMetricData: endpoint unreachable")


def test_cloudwatch_out_of_reach_leaves_the_declared_length_and_says_it_could_not_answer():
    # Given CloudWatch cannot be reached / When Preflight sizes the drain for the longest requests
    req = request()
    sized, notes, calls = sized_for_long_requests(ports(Unreachable()), req, [GROUP, group(TG_API)], START)
    # Then the request is unchanged, one read was made, and the note says CloudWatch could not answer (not throttled)
    assert (sized, calls) == (req, 1)
    assert notes == ["long requests: CloudWatch could not answer the read of k8s-shop-web-0a1b2c3d4e's "
                     "TargetResponseTime; the drain is sized by policy.max_request_seconds (30 s) alone"]
