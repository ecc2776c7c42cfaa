"""The `argo-rollouts` strategy: Argo Rollouts v1.9.1 with --aws-verify-target-group, rule by rule.

Every rule checked here is in docs/facts.md, "Argo Rollouts target group verification", with its line of the
v1.9.1 source (https://github.com/argoproj/argo-rollouts/tree/v1.9.1).
"""

from __future__ import annotations

import json

import pytest

from albgate.cli import main
from albgate.sim import FAILED, SUCCEEDED, load_scenario, run_strategy, simulate
from albgate.sim.argo_strategy import (
    CALLER,
    RESYNC_SECONDS,
    SCALE_DOWN_DELAY_SECONDS,
    SDK_MAX_ATTEMPTS,
    VERIFY_RETRY_SECONDS,
    run_argo_rollouts,
    verify_target_group,
)
from albgate.sim.strategies import get_strategy
from lambdas.domain.errors import ThrottledError
from lambdas.domain.ports import DRAINING, HEALTHY, INITIAL, UNHEALTHY, TargetHealth
from tests.sim.conftest import SCENARIOS, started

SEED_APP = load_scenario(SCENARIOS / "seed-app.yaml")
NEW_IMAGE = "ikubernetes/myapp:v2"


def near(seconds: float):
    """Equal to a time within the 1 ms the strategy's report rounds to (epoch seconds need an absolute bound)."""
    return pytest.approx(seconds, abs=0.002)


def _th(ip: str, state: str, port: int = 80) -> TargetHealth:
    return TargetHealth(ip, port, state)


RULE = [
    # (id, endpoints, targets listed, verified?)
    ("initial-counts", {("10.0.0.4", 80)}, [_th("10.0.0.4", INITIAL)], True),
    ("unhealthy-and-draining-count", {("10.0.0.4", 80), ("10.0.0.5", 80)},
     [_th("10.0.0.4", UNHEALTHY), _th("10.0.0.5", DRAINING)], True),
    ("one-not-registered", {("10.0.0.4", 80), ("10.0.0.5", 80)}, [_th("10.0.0.4", HEALTHY)], False),
    ("other-port-is-not-the-endpoint", {("10.0.0.4", 80)}, [_th("10.0.0.4", HEALTHY, 8080)], False),
    ("other-targets-ignored", {("10.0.0.4", 80)}, [_th("10.0.0.1", HEALTHY), _th("10.0.0.4", INITIAL)], True),
    ("no-endpoint-verifies", set(), [_th("10.0.0.1", HEALTHY)], True),
]


@pytest.mark.parametrize("endpoints,health,verified", [r[1:] for r in RULE], ids=[r[0] for r in RULE])
def test_a_target_counts_once_registered_whatever_its_state(endpoints, health, verified):
    # Rule: VerifyTargetGroupBinding marks an endpoint IP:port verified when the target group lists it, health
    # not looked at; targets that are not endpoints are ignored; verified = registered == total
    # (utils/aws/aws.go#L347-L425)
    result = verify_target_group(endpoints, health)
    assert result.verified is verified
    assert result.endpoints_total == len(endpoints)


def _old_pods(sim):
    """Every pod of the version rolled away from (ikubernetes/myapp:v1)."""
    return [p for p in sim.cluster.all_pods if p.template.containers[0].image == "ikubernetes/myapp:v1"]


def test_rolls_the_example_app_to_the_new_image_and_removes_the_old_pods_30_s_after_verification():
    # Rules: the stable ReplicaSet keeps every replica during the steps; after full promotion the old ReplicaSet
    # gets a scale-down deadline scaleDownDelaySeconds (30 s) after verification (canary.go#L177-L260,
    # replicaset.go#L304-L342, defaults.go#L29-L30); one DescribeTargetHealth per check (service.go#L129-L185)
    sim, run = run_strategy(SEED_APP, "argo-rollouts")
    assert run.outcome == SUCCEEDED and sim.current_image() == NEW_IMAGE
    assert [n for n, _ in run.extra["steps"]] == [1, 2, 3]
    verified_at = run.started_at + run.extra["verified_after"]
    deleted = [p.deletion_at for p in _old_pods(sim)]
    assert all(t is not None for t in deleted) and len(deleted) == 3
    assert min(deleted) == near(verified_at + SCALE_DOWN_DELAY_SECONDS)
    assert sim.describe_target_health_calls[CALLER] == len(run.extra["checks"])
    assert run.extra["checks"][-1][2] == "verified"


def test_slow_registration_drops_requests_because_initial_targets_pass_verification():
    # Rule: a target still `initial` counts as verified (utils/aws/aws.go#L400-L402: "we used to check health
    # here"). With registration taking 3-5 minutes, the old pods go 30 s after the new targets were merely
    # registered, and the ALB has no healthy target left until the first health check passes
    sc = load_scenario(SCENARIOS / "slow-registration.yaml")
    r = simulate(sc, "argo-rollouts", lower_bound=False)
    assert r.outcome == SUCCEEDED and r.final_image == NEW_IMAGE
    assert r.failed_requests > 1000
    assert set(r.failed_by_cause) == {"no_routable_target"}
    sim, run = run_strategy(sc, "argo-rollouts")
    assert run.extra["verified_states"] == {INITIAL: 3}
    first_failure = min(t for t, _ in sim.traffic.failures)
    assert first_failure > run.started_at + run.extra["verified_after"] + SCALE_DOWN_DELAY_SECONDS


def test_checks_every_10_s_until_every_new_pod_is_registered_and_keeps_the_old_pods_meanwhile():
    # Rule: an unverified check requeues the Rollout after ROLLOUT_VERIFY_RETRY_INTERVAL, 10 s
    # (service.go#L174-L179, defaults.go#L85-L100); the old ReplicaSet is not scaled down before verification
    # (canary.go#L262-L305). The controller is down from 5 s to 5 min: nothing is registered meanwhile
    sim, run = run_strategy(load_scenario(SCENARIOS / "controller-down-mid-rollout.yaml"), "argo-rollouts")
    assert run.outcome == SUCCEEDED
    checks = run.extra["checks"]
    assert len(checks) > 20 and [c[2] for c in checks[:-1]] == ["unverified"] * (len(checks) - 1)
    assert all(b[0] - a[1] == near(VERIFY_RETRY_SECONDS) for a, b in zip(checks, checks[1:]))
    verified_at = run.started_at + checks[-1][1]
    assert min(p.deletion_at for p in _old_pods(sim)) == near(verified_at + SCALE_DOWN_DELAY_SECONDS)
    assert sim.traffic.failed_requests == 0


class ThrottlingElb:
    """The ELB API of the simulation whose first ``n`` DescribeTargetHealth calls are throttled."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.left, self.calls = inner, n, 0

    def describe_target_health(self, arn):
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise ThrottledError("An error occurred (Throttling) when calling the DescribeTargetHealth operation")
        return self.inner.describe_target_health(arn)

    def describe_target_group(self, arn):
        return self.inner.describe_target_group(arn)

    def deregister_targets(self, arn, targets):
        return self.inner.deregister_targets(arn, targets)


@pytest.mark.parametrize("throttled,first", [(SDK_MAX_ATTEMPTS - 1, "ok"), (SDK_MAX_ATTEMPTS, "error")],
                         ids=["sdk-retry-gets-through", "every-attempt-throttled"])
def test_a_throttled_check_is_retried_by_the_sdk_then_left_to_the_resync_never_rolled_back(throttled, first):
    # Rules: the SDK makes 3 attempts, retry n after up to 2^n s; when all are throttled the canary path swallows
    # the error (replicaset.go#L237-L269), nothing requeues it, and the next check comes with the 15 min resync
    # (controller/controller.go#L64-L65); no abort, no rollback
    sc = get_strategy("argo-rollouts").prepare(SEED_APP)
    sim = started(sc)
    elb = ThrottlingElb(sim.elb_for(CALLER), throttled)
    run = run_argo_rollouts(sim, elb)
    assert run.outcome == SUCCEEDED and sim.current_image() == NEW_IMAGE
    began, ended, result = run.extra["checks"][0]
    assert run.extra["throttled_attempts"] == throttled
    assert 0 < ended - began < sum(2 ** n for n in range(1, SDK_MAX_ATTEMPTS))  # the SDK's backoffs
    if first == "error":
        assert result == "error"
        nxt = run.extra["checks"][1]
        assert nxt[0] - ended == near(RESYNC_SECONDS)
        # the old pods served all along: nothing was scaled down before the check that passed
        verified_at = run.started_at + run.extra["verified_after"]
        assert min(p.deletion_at for p in _old_pods(sim)) == near(verified_at + SCALE_DOWN_DELAY_SECONDS)
    else:
        assert result != "error"


def test_pods_that_never_schedule_leave_it_degraded_at_the_progress_deadline_without_rollback():
    # Rule: no progress for progressDeadlineSeconds (600) makes the Rollout Degraded; it is aborted only with
    # progressDeadlineAbort (default false) (pkg/apis/rollouts/v1alpha1/types.go#L71-L81)
    sim, run = run_strategy(load_scenario(SCENARIOS / "pods-stuck-pending.yaml"), "argo-rollouts")
    assert run.outcome == FAILED and "Degraded" in run.detail
    assert run.seconds == near(sim.deployment().progress_deadline_seconds)
    assert all(p.deletion_at is None for p in _old_pods(sim))
    assert sim.traffic.failed_requests == 0


def test_albgate_simulate_runs_it(capsys):
    assert main(["simulate", str(SCENARIOS / "seed-app.yaml"), "--json", "--strategy", "argo-rollouts"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["strategy"], out["outcome"], out["final_image"]) == ("argo-rollouts", SUCCEEDED, NEW_IMAGE)
    assert out["describe_target_health_calls_by_caller"][CALLER] >= 1
