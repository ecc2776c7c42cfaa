"""Rollout input validation, the step plan and poll timing (domain/models.py, plan.py, poll.py)."""

from __future__ import annotations

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import RolloutPolicy, parse_image, parse_request
from lambdas.domain.plan import batch_sizes, step_targets
from lambdas.domain.poll import JITTER, THROTTLE_CAP_SECONDS, drain_poll_seconds, pod_poll_seconds, target_poll_seconds

DIGEST = "sha256:" + "a" * 64
GOOD = {
    "cluster": "prod-eks",
    "namespace": "readiness",
    "deployment": "nginx-app",
    "container": "nginx",
    "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp@{DIGEST}",
}

BAD_INPUTS = [
    ("namespace-upper-case", {"namespace": "Readiness"}, "namespace"),
    ("deployment-slash", {"deployment": "a/b"}, "deployment"),
    ("image-without-tag-or-digest", {"image": "nginx"}, "image"),
    ("image-hostile", {"image": "nginx:v1; rm -rf /"}, "image"),
    ("image-name-too-long", {"image": "a" * 256 + ":v1"}, "image"),
    ("cluster-spaces", {"cluster": "my cluster"}, "cluster"),
    ("unknown-field", {"imagee": "x"}, "imagee"),
    ("steps-not-to-100", {"policy": {"steps": [1, "50%"]}}, "policy.steps"),
    ("steps-decreasing", {"policy": {"steps": ["50%", "25%", "100%"]}}, "policy.steps"),
    ("steps-zero", {"policy": {"steps": [0, "100%"]}}, "policy.steps"),
    ("deadline-too-short", {"policy": {"step_deadline_seconds": 5}}, "policy.step_deadline_seconds"),
    ("approval-step-zero", {"policy": {"approval_before_steps": [0]}}, "policy"),
]


@pytest.mark.parametrize("change,field", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_the_field(change, field):
    # Given a valid input with one bad field
    # When it is parsed
    with pytest.raises(InvalidInputError) as err:
        parse_request({**GOOD, **change})
    # Then the error names that field
    assert field in str(err.value)


def test_good_input_has_documented_defaults():
    request = parse_request(GOOD)
    assert request.policy.steps == [1, "25%", "50%", "100%"]
    assert request.policy.rollback_on_failure is True
    assert request.policy.harden is False


@pytest.mark.parametrize(
    "image,expected",
    [
        ("repo/app:v2", ("repo/app", "v2", None)),
        (f"registry:5000/app@{DIGEST}", ("registry:5000/app", None, DIGEST)),
        (f"app:v1@{DIGEST}", ("app", "v1", DIGEST)),
    ],
    ids=["tag", "registry-port-digest", "tag-and-digest"],
)
def test_parse_image(image, expected):
    assert parse_image(image) == expected


PLANS = [
    ("seed-app-default", 3, {}, [1, 2, 3]),
    ("hundred-default", 100, {}, [1, 25, 50, 100]),
    ("one-replica", 1, {}, [1]),
    ("batch", 10, {"batch_size": 4}, [4, 8, 10]),
    ("count-beyond-replicas", 2, {"steps": [5, "100%"]}, [2]),
    ("merged-rounding", 4, {"steps": ["10%", "20%", "100%"]}, [1, 4]),
    # 30 % of 7 is 2.1 and 60 % is 4.2: a percentage rounds up (2.1 -> 3), never to the nearest (which gives 2)
    ("percent-rounds-up-below-a-half", 7, {"steps": ["30%", "60%", "100%"]}, [3, 5, 7]),
]


@pytest.mark.parametrize("replicas,policy,expected", [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_step_targets(replicas, policy, expected):
    targets = step_targets(replicas, RolloutPolicy(**policy))
    assert targets == expected
    # Invariant: strictly increasing, ends at replicas, batches positive and summing to replicas
    assert all(b > a for a, b in zip(targets, targets[1:]))
    assert sum(batch_sizes(targets)) == replicas and min(batch_sizes(targets)) >= 1


@pytest.mark.parametrize("interval", [5, 10, 15, 30, 300])
def test_health_looks_are_exactly_one_interval_apart(interval):
    # Never faster than the group can change, and no slower either: a second more is a second of lag per step
    assert {target_poll_seconds(interval, f"exec/{i}") for i in range(200)} == {interval}


def test_the_phase_of_the_looks_is_jittered_by_the_waits_before_them():
    # Given executions whose pods start in the same second
    # Then the pod-start polls that lead to their first look differ, so their looks do not line up
    assert len({pod_poll_seconds(f"exec-{i}/rollout/0/pods/1") for i in range(50)}) > 1
    # And so do the waits after a throttle and while a drain runs
    assert len({target_poll_seconds(5, f"exec-{i}/t", throttles=1) for i in range(50)}) > 1
    assert len({drain_poll_seconds(5, f"exec-{i}/d") for i in range(50)}) > 1


def test_throttling_backs_off_and_is_capped():
    waits = [target_poll_seconds(15, "k", throttles=n) for n in range(0, 8)]
    assert waits == sorted(waits)
    assert waits[1] >= 30 and waits[-1] <= THROTTLE_CAP_SECONDS * (1 + JITTER) + 1


def test_waits_are_deterministic():
    assert target_poll_seconds(15, "same") == target_poll_seconds(15, "same")
    assert pod_poll_seconds("same") == pod_poll_seconds("same")


def test_pods_the_scheduler_cannot_place_are_polled_every_15_s_not_every_3():
    from lambdas.domain.poll import POD_START_POLL_SECONDS, UNSCHEDULABLE_POLL_SECONDS

    starting = [pod_poll_seconds(f"k/{i}") for i in range(100)]
    pending = [pod_poll_seconds(f"k/{i}", unschedulable=True) for i in range(100)]
    assert POD_START_POLL_SECONDS <= min(starting) and max(starting) <= POD_START_POLL_SECONDS * (1 + JITTER) + 1
    assert UNSCHEDULABLE_POLL_SECONDS <= min(pending) and max(pending) <= UNSCHEDULABLE_POLL_SECONDS * (1 + JITTER) + 1


def test_while_targets_register_the_gate_looks_less_often_the_longer_it_took():
    from lambdas.domain.poll import REGISTRATION_POLL_CAP_SECONDS, registration_poll_seconds

    # Given a 5 s health-check interval
    def wait(registering_for: float) -> int:
        return min(registration_poll_seconds(5, registering_for, f"k/{i}") for i in range(50))

    # Then for the first 50 s of registration it is the usual interval, never less
    assert [wait(e) for e in (0, 10, 50)] == [5, 5, 5]
    # And after that a tenth of the time registration has taken, up to the cap
    assert wait(120) == 12 and wait(240) == 24 and wait(3600) == REGISTRATION_POLL_CAP_SECONDS
    # And an interval longer than the paced wait still wins (never faster than the group can change)
    assert registration_poll_seconds(60, 240, "k") >= 60
    # And a wait longer than the interval is jittered like the other long waits; a young one is not
    assert len({registration_poll_seconds(5, 240, f"k/{i}") for i in range(50)}) > 1
    assert {registration_poll_seconds(5, 10, f"k/{i}") for i in range(50)} == {5}


def test_a_4_minute_registration_costs_about_25_looks_not_45():
    from lambdas.domain.poll import registration_poll_seconds, target_poll_seconds

    def looks(poll) -> int:
        t, n = 0.0, 0
        while t < 240:
            n += 1
            t += poll(t, n) + 0.3  # plus the Lambda task's own time
        return n

    paced = looks(lambda t, n: registration_poll_seconds(5, t, f"x/{n}"))
    plain = looks(lambda t, n: target_poll_seconds(5, f"x/{n}"))
    assert plain >= 40 and paced <= 28
