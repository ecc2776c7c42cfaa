"""The two trigger handlers on moto: which events start what, idempotency, per-Deployment serialization.

Given an event sample (documented schema), when the handler runs against moto's DynamoDB, Step Functions and
EventBridge, then exactly the executions, lock items and albgate events the design promises exist.
"""

from __future__ import annotations

import json

import pytest

from lambdas.domain.trigger import execution_name
from lambdas.handlers.ecr_trigger import handle_push
from tests.trigger.conftest import ACCOUNT, DIGEST_A, DIGEST_B, DIGEST_C, REGION, ecr_event, status_event

PROD = "prod/readiness/nginx-app"


def push(world, **kw):
    return handle_push(ecr_event(**kw), world.settings, world.deps)


IGNORED = [
    pytest.param(dict(result="FAILURE"), "result 'FAILURE'", id="push-failure"),
    pytest.param(dict(action="DELETE"), "action-type 'DELETE'", id="delete"),
    pytest.param(dict(account="210987654321"), "account '210987654321'", id="other-account"),
    pytest.param(dict(region="eu-west-1"), "Region 'eu-west-1'", id="other-region"),
    pytest.param(dict(repository="someone-else"), "'someone-else' is not configured", id="unknown-repository"),
    pytest.param(dict(repository="team/cart", tag="latest"), "matches no application", id="tag-matches-nothing"),
    pytest.param(dict(tag=None), "has no tag", id="untagged-push"),
    pytest.param(dict(digest="sha256:xyz"), "not a sha256 digest", id="bad-digest"),
    pytest.param(dict(time="yesterday"), "not an ISO 8601", id="bad-time"),
]


@pytest.mark.parametrize(("change", "reason"), IGNORED)
def test_events_albgate_does_not_act_on_are_ignored_with_a_reason(world, change, reason):
    # Given a documented ECR event differing in one field / When the trigger handles it
    answer = push(world, **change)
    # Then it answers (no raise, so no retry loop), says why, starts nothing and takes no lock
    assert answer["outcome"] == "ignored"
    assert reason in answer["reason"]
    assert world.executions() == []
    assert world.lock(PROD) is None
    assert world.bus.events == []


MALFORMED = [
    pytest.param(None, "expected a JSON object", id="not-an-object"),
    pytest.param({"source": "aws.ecr"}, "not an ECR image action", id="no-detail-type"),
    pytest.param({**ecr_event(), "detail": "PUSH"}, "detail is missing or not an object", id="detail-string"),
    pytest.param({**ecr_event(), "detail": {"action-type": "PUSH", "result": "SUCCESS"}},
                 "detail.repository-name is missing", id="missing-repository"),
    pytest.param({**ecr_event(), "detail": {**ecr_event()["detail"], "image-tag": 2}},
                 "detail.image-tag is int", id="tag-wrong-type"),
    pytest.param({**ecr_event(), "detail": {**ecr_event()["detail"], "repository-name": ["myapp"]}},
                 "detail.repository-name is list", id="repository-wrong-type"),
]


@pytest.mark.parametrize(("event", "reason"), MALFORMED)
def test_malformed_events_are_ignored_with_a_reason(world, event, reason):
    answer = handle_push(event, world.settings, world.deps)
    assert answer["outcome"] == "ignored" and reason in answer["reason"]
    assert world.executions() == []


def test_a_push_starts_one_rollout_per_matching_application_pinned_by_digest(world):
    # Given myapp is rolled in prod (tags v*) and staging (any tag) / When v2 is pushed
    answer = push(world, tag="v2", digest=DIGEST_A)
    # Then one execution per application, image by digest, the config's policy, deterministic names
    executions = world.executions()
    assert [r["outcome"] for r in answer["results"]] == ["started", "started"]
    inputs = sorted((json.loads(e["input"]) for e in executions), key=lambda r: r["cluster"])
    assert [(r["cluster"], r["deployment"], r["container"]) for r in inputs] == [
        ("prod", "nginx-app", "nginx"), ("staging", "nginx-app", "nginx")]
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/myapp@{DIGEST_A}"
    assert {r["image"] for r in inputs} == {image}
    assert inputs[0]["policy"]["steps"] == [1, "50%", "100%"]
    assert {e["name"] for e in executions} == {
        execution_name("prod", "readiness", "nginx-app", DIGEST_A),
        execution_name("staging", "readiness", "nginx-app", DIGEST_A)}
    # And each Deployment's lock names its execution, and a Rollout Started event links the console
    assert world.lock(PROD)["execution_name"]["S"] == execution_name("prod", "readiness", "nginx-app", DIGEST_A)
    assert world.bus.types() == ["Rollout Started", "Rollout Started"]
    started = world.bus.events[0][1]
    assert started["console_url"] == (
        f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/"
        f"{started['execution_arn']}")


def test_a_tag_matching_only_one_pattern_rolls_only_that_application(world):
    answer = push(world, tag="nightly-7")
    assert [r["cluster"] for r in answer["results"]] == ["staging"]
    assert len(world.executions()) == 1


@pytest.mark.parametrize("times", [2, 3], ids=["twice", "thrice"])
def test_a_replayed_push_starts_exactly_one_execution(world, times):
    # Given the same push event delivered several times (at least once delivery, replays)
    answers = [push(world, repository="team/cart", tag="release-1") for _ in range(times)]
    # Then one execution, later deliveries are duplicates, one Started event
    assert len(world.executions()) == 1
    assert [a["results"][0]["outcome"] for a in answers] == ["started"] + ["duplicate"] * (times - 1)
    assert world.bus.types() == ["Rollout Started"]


def test_racing_pushes_queue_the_newest_and_start_it_when_the_running_rollout_ends(world):
    cart = "prod/shop/cart"
    # Given release-1 is rolling
    push(world, repository="team/cart", tag="release-1", digest=DIGEST_A, time="2025-01-01T10:00:00Z")
    # When release-2 and then release-3 are pushed while it runs
    b = push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-01T10:01:00Z")
    c = push(world, repository="team/cart", tag="release-3", digest=DIGEST_C, time="2025-01-01T10:02:00Z")
    # Then nothing else runs: release-2 waited, then release-3 replaced it as the newest
    assert [r["outcome"] for r in (b["results"][0], c["results"][0])] == ["queued", "queued"]
    assert len(world.executions()) == 1
    lock = world.lock(cart)
    assert lock["pending"]["M"]["execution_name"]["S"] == execution_name("prod", "shop", "cart", DIGEST_C)
    # And a late delivery of release-2 (older than what waits) changes nothing
    late = push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-01T10:01:00Z")
    assert late["results"][0]["outcome"] == "stale"
    # When the running rollout ends (rolled back, say)
    first = world.executions()[0]
    ended = world.end(first, "FAILED", error="RolledBack", cause="step 2 failed: target unhealthy")
    # Then the outcome is published and the newest pending push starts, holding the lock; release-2 never runs
    assert ended["outcome"] == "Rollout Rolled Back" and ended["lock"]["lock"] == "handed_over"
    names = [e["name"] for e in world.executions()]
    assert names == [first["name"], execution_name("prod", "shop", "cart", DIGEST_C)]
    lock = world.lock(cart)
    assert lock["execution_name"]["S"] == names[1] and "pending" not in lock
    assert world.bus.types() == ["Rollout Started", "Rollout Queued", "Rollout Queued", "Rollout Rolled Back",
                                 "Rollout Started"]
    # When that one ends too / Then the lock is gone and the Deployment is free
    assert world.end(world.executions()[1], "SUCCEEDED")["lock"]["lock"] == "released"
    assert world.lock(cart) is None
    assert world.bus.types()[-1] == "Rollout Succeeded"


def test_a_push_older_than_the_running_rollout_is_stale(world):
    push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-01T10:05:00Z")
    old = push(world, repository="team/cart", tag="release-1", digest=DIGEST_A, time="2025-01-01T10:00:00Z")
    assert old["results"][0]["outcome"] == "stale"
    assert "pending" not in world.lock("prod/shop/cart")


@pytest.mark.parametrize(
    ("status", "error", "published"),
    [
        pytest.param("SUCCEEDED", None, "Rollout Succeeded", id="succeeded"),
        pytest.param("FAILED", "RolledBack", "Rollout Rolled Back", id="rolled-back"),
        pytest.param("FAILED", "States.TaskFailed", "Rollout Failed", id="failed"),
        pytest.param("TIMED_OUT", "States.Timeout", "Rollout Failed", id="timed-out"),
        pytest.param("ABORTED", None, "Rollout Failed", id="aborted-by-a-person"),
    ],
)
def test_every_terminal_status_releases_the_lock_and_publishes_its_outcome(world, status, error, published):
    push(world, repository="team/cart", tag="release-1")
    execution = world.executions()[0]
    answer = world.end(execution, status, error=error)
    assert answer["lock"] == {"lock": "released"}
    assert world.lock("prod/shop/cart") is None
    kind, detail = world.bus.events[-1]
    assert kind == published
    assert detail["status"] == status and detail["execution_arn"] == execution["executionArn"]
    assert detail["deployment"] == "cart" and detail["console_url"].endswith(execution["executionArn"])


def test_a_replayed_terminal_event_changes_nothing(world):
    push(world, repository="team/cart", tag="release-1", digest=DIGEST_A)
    push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-01T10:01:00Z")
    first = world.executions()[0]
    world.end(first, "SUCCEEDED")
    # When the same terminal event arrives again / Then the lock still belongs to the started pending push
    again = world.end(first, "SUCCEEDED")
    assert again["lock"]["lock"] == "handed_over" and again["lock"]["next"]["outcome"] == "duplicate"
    assert len(world.executions()) == 2
    assert world.lock("prod/shop/cart")["execution_name"]["S"] == execution_name("prod", "shop", "cart", DIGEST_B)


def test_the_end_of_an_execution_that_never_held_the_lock_leaves_it(world):
    push(world, repository="team/cart", tag="release-1")
    same_deployment = world.executions()[0]["input"]  # a rollout of the same Deployment, started by hand
    manual = world.sfn.start_execution(stateMachineArn=world.state_machine_arn, name="by-hand", input=same_deployment)
    answer = world.end({"executionArn": manual["executionArn"], "name": "by-hand", "input": same_deployment})
    assert answer["lock"]["lock"] == "not_held"
    assert world.lock("prod/shop/cart") is not None


def _stop_without_event(world, execution):
    """The execution ends (moto records ABORTED) and its terminal event is lost: nothing releases its lease."""
    world.sfn.stop_execution(executionArn=execution["executionArn"])


def test_no_clock_frees_a_lease_only_the_holders_end_does(world):
    # Given a rollout started by a push, still running two days later (no clock expires its lease)
    push(world, repository="team/cart", tag="release-1", digest=DIGEST_A)
    world.clock.t += 2 * 24 * 3600
    # When a newer push arrives / Then it waits behind it
    waiting = push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-03T12:00:00Z")
    assert waiting["results"][0]["outcome"] == "queued"
    assert len(world.executions()) == 1


def test_a_lease_whose_holder_ended_without_its_event_is_taken_over_and_the_newest_push_starts(world):
    # Given release-1 rolling, release-2 queued behind it, and release-1's end event lost
    push(world, repository="team/cart", tag="release-1", digest=DIGEST_A)
    push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-01T12:00:00Z")
    _stop_without_event(world, world.executions()[0])
    # When a push older than the queued one arrives / Then DescribeExecution proves the holder ended, and the
    # queued push (the newest) starts: nothing queued is dropped, nothing older rolls over it
    late = push(world, repository="team/cart", tag="release-1b", digest=DIGEST_C, time="2025-01-01T11:00:00Z")
    assert late["results"][0]["outcome"] == "superseded"
    assert late["results"][0]["started"]["outcome"] == "started"
    lease = world.lock("prod/shop/cart")
    assert lease["execution_name"]["S"] == execution_name("prod", "shop", "cart", DIGEST_B)
    assert "pending" not in lease
    assert [e["name"] for e in world.executions()][1:] == [execution_name("prod", "shop", "cart", DIGEST_B)]


@pytest.mark.parametrize(
    ("times", "outcome", "pending"),
    [
        pytest.param({DIGEST_B: 100.2, DIGEST_C: 100.7}, "queued", DIGEST_C, id="ecr-orders-them-c-newer"),
        pytest.param({DIGEST_B: 100.7, DIGEST_C: 100.2}, "stale", DIGEST_B, id="ecr-orders-them-c-older"),
        pytest.param({}, "unordered", DIGEST_B, id="ecr-cannot-tell-neither-replaces-the-other"),
    ],
)
def test_two_pushes_in_the_same_second_are_ordered_by_ecr_or_not_at_all(world, times, outcome, pending):
    # Given release-1 rolling and release-2 queued, then release-3 pushed in the same second as release-2
    world.push_times.times.update(times)
    push(world, repository="team/cart", tag="release-1", digest=DIGEST_A)
    push(world, repository="team/cart", tag="release-2", digest=DIGEST_B, time="2025-01-01T12:00:00Z")
    answer = push(world, repository="team/cart", tag="release-3", digest=DIGEST_C, time="2025-01-01T12:00:00Z")
    # Then ECR's imagePushedAt decides which one waits; without it albgate does not guess, and says so
    assert answer["results"][0]["outcome"] == outcome
    waiting = world.lock("prod/shop/cart")["pending"]["M"]["execution_name"]["S"]
    assert waiting == execution_name("prod", "shop", "cart", pending)
    assert ("Rollout Order Unknown" in world.bus.types()) == (outcome == "unordered")


def test_a_replay_of_a_push_rolled_long_ago_lets_the_lock_go(world):
    # Given release-1 rolled and finished (lock released)
    push(world, repository="team/cart", tag="release-1", digest=DIGEST_A)
    world.end(world.executions()[0], "SUCCEEDED")
    # When its push event is replayed / Then nothing starts and the lock is not left behind
    answer = push(world, repository="team/cart", tag="release-1", digest=DIGEST_A)
    assert answer["results"][0]["outcome"] == "duplicate"
    assert world.lock("prod/shop/cart") is None
    assert len(world.executions()) == 1


def test_events_of_other_state_machines_and_running_status_are_ignored(world):
    from lambdas.handlers.execution_events import handle_execution_event

    execution = {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:Other:x", "name": "x",
                 "input": "{}"}
    other = status_event("arn:aws:states:us-east-1:123456789012:stateMachine:Other", execution, "SUCCEEDED")
    running = status_event(world.state_machine_arn, execution, "RUNNING")
    for event in (other, running, {"source": "aws.states"}, None):
        assert handle_execution_event(event, world.settings, world.deps)["outcome"] == "ignored"
    assert world.bus.events == []
