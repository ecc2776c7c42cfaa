"""ECR push -> release: a push to a release's repository starts the release once per digest, one execution of a
release at a time, the newest push next; a release execution's end lets the lease go or starts the waiting push.

On moto (DynamoDB lease table, Step Functions, EventBridge), through the real handler (lambdas/handlers/
release_trigger.py) and the real adapters; the events are the documented samples (tests/trigger/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.domain.release import ReleaseSpec, ReleaseTarget, WaveSpec
from lambdas.domain.release_trigger import release_execution_name, release_lock_key
from lambdas.handlers import _release
from lambdas.handlers._trigger_settings import EventSettings
from lambdas.handlers.release_trigger import handle
from tests.trigger.conftest import ACCOUNT, DIGEST_A, DIGEST_B, DIGEST_C, REGION, TABLE, BUS, ecr_event, status_event


def spec(name: str, repository: str | None, pattern: str = "v*") -> ReleaseSpec:
    target = ReleaseTarget(cluster="prod", namespace="web", deployment="web", container="app", account=ACCOUNT,
                           region=REGION, state_machine_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:R")
    return ReleaseSpec(name=name, waves=[WaveSpec(name="all", targets=[target], max_concurrency=1, bake_seconds=0)],
                       ecr_repository=repository, tag_pattern=pattern)


class NoChildren:
    def start(self, *a: Any) -> str:
        raise AssertionError("the trigger starts releases, never rollouts")

    def describe(self, *a: Any) -> Any:
        raise AssertionError("the trigger reads no rollout")


@pytest.fixture
def releases(world):
    specs = {s.name: s for s in (spec("web", "myapp"), spec("web-canary", "myapp", "canary-*"), spec("api", None))}
    _release.use_release_deps(_release.ReleaseDeps(specs, NoChildren()))
    world.settings = EventSettings.from_environ({"ALBGATE_STATE_MACHINE_ARN": world.state_machine_arn,
                                                 "ALBGATE_LOCK_TABLE": TABLE, "ALBGATE_EVENT_BUS": BUS})
    yield world
    _release.use_release_deps(None)


def push(world, **kw: Any) -> dict[str, Any]:
    return handle(ecr_event(**kw), world.settings, world.deps)


def end(world, execution: dict[str, Any], status: str = "SUCCEEDED") -> dict[str, Any]:
    if world.sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
        world.sfn.stop_execution(executionArn=execution["executionArn"])
    return handle(status_event(world.state_machine_arn, execution, status), world.settings, world.deps)


def test_a_push_starts_the_release_of_the_image_by_digest_once(releases):
    world = releases
    # Given a push of myapp:v2
    answer = push(world, tag="v2", digest=DIGEST_A)
    # Then exactly the release whose pattern matches starts, with the image by digest, named after (release, digest)
    (result,) = answer["results"]
    assert result["outcome"] == "started" and result["release"] == "web"
    (execution,) = world.executions()
    assert execution["name"] == release_execution_name("web", DIGEST_A)
    assert json.loads(execution["input"]) == {
        "release": "web", "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/myapp@{DIGEST_A}"}
    assert world.lock(release_lock_key("web"))["execution_name"]["S"] == execution["name"]
    # the release state machine announces its own start: the trigger publishes nothing for a start
    assert world.bus.types() == []
    # When the same push is delivered again, Then nothing new starts
    assert push(world, tag="v2", digest=DIGEST_A)["results"][0]["outcome"] == "duplicate"
    assert len(world.executions()) == 1


def test_a_push_during_a_release_waits_as_the_newest_and_starts_when_it_ends(releases):
    world = releases
    push(world, tag="v2", digest=DIGEST_A, time="2025-01-01T10:00:00Z")
    # Given two more pushes while the first release runs
    second = push(world, tag="v3", digest=DIGEST_B, time="2025-01-01T10:01:00Z")["results"][0]
    third = push(world, tag="v4", digest=DIGEST_C, time="2025-01-01T10:02:00Z")["results"][0]
    # Then each waits (the newer replacing the older), announced as Release Queued
    assert second["outcome"] == "queued" and third["outcome"] == "queued"
    assert third["replaces"] == release_execution_name("web", DIGEST_B)
    assert world.bus.types() == ["Release Queued", "Release Queued"]
    assert len(world.executions()) == 1
    # When the running release ends
    (first,) = world.executions()
    answer = end(world, first)
    # Then the newest push's release starts, and only it
    assert answer["lock"] == "handed_over"
    names = [e["name"] for e in world.executions()]
    assert names == [first["name"], release_execution_name("web", DIGEST_C)]
    # When that one ends too, Then the lease is let go
    assert end(world, world.executions()[-1])["lock"] == "released"
    assert world.lock(release_lock_key("web")) is None


def test_an_older_push_arriving_late_is_not_rolled_over_a_newer_one(releases):
    world = releases
    push(world, tag="v3", digest=DIGEST_B, time="2025-01-01T10:05:00Z")
    late = push(world, tag="v2", digest=DIGEST_A, time="2025-01-01T10:00:00Z")["results"][0]
    assert late["outcome"] == "stale"
    assert len(world.executions()) == 1


@pytest.mark.parametrize(("event", "reason"), [
    (lambda: ecr_event(repository="other"), "starts no release"),
    (lambda: ecr_event(tag="latest"), "matches no release's tag_pattern"),
    (lambda: ecr_event(result="FAILURE"), "only a successful push"),
    (lambda: ecr_event(account="999999999999"), "from account"),
    (lambda: {"source": "aws.s3"}, "neither an ECR push nor a release execution's end"),
], ids=["unknown-repository", "tag-matches-nothing", "failed-push", "other-account", "other-source"])
def test_events_the_trigger_does_not_act_on_are_answered_with_the_reason(releases, event, reason):
    answer = handle(event(), releases.settings, releases.deps)
    assert answer["outcome"] == "ignored" and reason in answer["reason"]
    assert releases.executions() == []


def test_the_end_of_an_execution_that_held_no_release_lease_changes_nothing(releases):
    world = releases
    push(world, tag="v2", digest=DIGEST_A)
    (execution,) = world.executions()
    stranger = {**execution, "name": "by-hand", "executionArn": execution["executionArn"] + "-x"}
    assert handle(status_event(world.state_machine_arn, stranger, "SUCCEEDED"), world.settings, world.deps)["lock"] \
        == "not_held"
    assert world.lock(release_lock_key("web"))["execution_name"]["S"] == execution["name"]
    no_input = {**execution, "input": json.dumps({"cluster": "x"})}
    assert "no release input" in handle(status_event(world.state_machine_arn, no_input, "SUCCEEDED"), world.settings,
                                        world.deps)["reason"]


def test_execution_names_are_per_release_and_digest_and_fit_step_functions():
    long = "r" * 63
    assert release_execution_name("web", DIGEST_A) != release_execution_name("web", DIGEST_B)
    assert release_execution_name("web", DIGEST_A) != release_execution_name("api", DIGEST_A)
    assert len(release_execution_name(long, DIGEST_A)) <= 80
    assert release_execution_name(long, DIGEST_A) != release_execution_name(long[:-1] + "s", DIGEST_A)
