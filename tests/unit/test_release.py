"""A release's decisions (lambdas/domain/release.py): the image it rolls, its children's names, which children
start in which look, each wave's verdict, and the rollback of the waves that already passed.

Invariant under test: a wave starts only after every earlier wave passed; a wave never runs more children than
its ``max_concurrency``; after a failure nothing new starts, yet the children still running are read until they
end; a rollback runs one child at a time, newest wave first, and stops at its first failure.

The children run behind ``FakeChildren``: a dict of statuses the test drives, which records every call.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.ports import ChildExecution
from lambdas.domain.release import (
    MAX_EXECUTION_NAME,
    PENDING,
    RUNNING,
    SUCCEEDED,
    ReleaseSpec,
    ReleaseState,
    ReleaseTarget,
    WaveSpec,
    WaveVerdict,
    advance_release,
    begin_rollback,
    child_name,
    parse_specs,
    plan_release,
    plan_rollback,
    record_status,
    release_image,
    spec_named,
    start_children,
)
from lambdas.domain.trigger import execution_arn

DIGEST = "sha256:" + "a" * 64
REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/shop"
IMAGE = f"{REPO}@{DIGEST}"
POLICY = {"steps": [1, "100%"], "bake_seconds": 0}
EXECUTION = "shop-2026-01-02"


def previous(cluster: str) -> str:
    """The image a cluster ran before the release (a rollout's output names it)."""
    return f"{REPO}@sha256:{hashlib.sha256(cluster.encode()).hexdigest()}"


class FakeChildren:
    """``ChildExecutions`` over a dict of statuses: ``start`` makes a RUNNING execution (a second start of the same
    name answers the same ARN, as Step Functions does), ``finish`` ends one, every call is recorded."""

    def __init__(self) -> None:
        self.executions: dict[str, ChildExecution] = {}
        self.calls: list[tuple[str, str]] = []  # (call, name or ARN), in order
        self.started: list[tuple[str, str | None, str, dict]] = []

    def start(self, state_machine_arn: str, role_arn: str | None, name: str, input: dict) -> str:
        arn = execution_arn(state_machine_arn, name)
        self.calls.append(("start", name))
        self.started.append((state_machine_arn, role_arn, name, input))
        self.executions.setdefault(arn, ChildExecution(status=RUNNING))
        return arn

    def describe(self, execution_arn: str, role_arn: str | None) -> ChildExecution:
        self.calls.append(("describe", execution_arn))
        return self.executions[execution_arn]

    # --- what the test drives ---
    def arn_of(self, name: str) -> str:
        (arn,) = [a for a in self.executions if a.endswith(f":{name}")]
        return arn

    def finish(self, name: str, status: str, *, output: Any = None, error: str | None = None,
               cause: str | None = None) -> None:
        self.executions[self.arn_of(name)] = ChildExecution(status=status, output=output, error=error, cause=cause)

    def succeed(self, child_name_: str, cluster: str) -> None:
        self.finish(child_name_, SUCCEEDED, output={"previous_image": previous(cluster), "outcome": "done"})

    def started_names(self) -> list[str]:
        return [name for _, _, name, _ in self.started]


def target(cluster: str, *, account: str = "111111111111", region: str = "us-east-1",
           role: str | None = None) -> ReleaseTarget:
    return ReleaseTarget(
        cluster=cluster, namespace="shop", deployment="web", container="app", account=account, region=region,
        state_machine_arn=f"arn:aws:states:{region}:{account}:stateMachine:Albgate-Rollout", role_arn=role,
    )


def make_spec(*waves: tuple[str, list[str], int, int, bool], rollback: bool = False) -> ReleaseSpec:
    """Waves as (name, clusters, max_concurrency, bake_seconds, approval)."""
    return ReleaseSpec(
        name="shop",
        waves=[WaveSpec(name=n, targets=[target(c) for c in cs], max_concurrency=m, bake_seconds=b, approval=a)
               for n, cs, m, b, a in waves],
        rollback_completed_waves=rollback, policy=POLICY,
    )


THREE_WAVES = (
    ("staging", ["alpha"], 1, 600, False),
    ("canary", ["bravo", "charlie"], 2, 1800, True),
    ("rest", ["delta", "echo", "foxtrot"], 2, 300, False),
)


def names_of(state: ReleaseState, wave: int) -> list[str]:
    return [c.name for c in state.waves[wave].children]


def statuses(state: ReleaseState, wave: int) -> list[str]:
    return [c.status for c in state.waves[wave].children]


def pass_wave(children: FakeChildren, state: ReleaseState) -> ReleaseState:
    """Look until every child of the current wave started, succeeding each as soon as it runs."""
    wave = state.wave
    while state.wave == wave:
        state = advance_release(children, state)
        for c in state.waves[wave].children:
            if c.status == RUNNING:
                children.succeed(c.name, c.target.cluster)
    return state


# --- the image ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", [IMAGE, f"{REPO}:v2@{DIGEST}", f"nginx@{DIGEST}"],
                         ids=["digest", "tag-and-digest", "docker-hub-digest"])
def test_an_image_named_by_digest_is_rolled_as_given(image):
    # Given an image that names its digest / When a release takes it / Then it rolls exactly that reference
    assert release_image(image) == image


REFUSED_IMAGES = [
    pytest.param(f"{REPO}:v2", ["has no digest", "@sha256:<64 hex>", "aws ecr describe-images"], id="tag-only"),
    pytest.param("nginx", ["has no digest", "@sha256:<64 hex>"], id="bare-name"),
    pytest.param("Not An Image!", ["does not fit the grammar"], id="garbage-with-the-parsers-reason"),
    pytest.param(f"{REPO}@sha256:abc", ["does not fit the grammar"], id="short-digest"),
    pytest.param("", ["missing", "@sha256:<64 hex>"], id="empty"),
    pytest.param(None, ["missing"], id="not-a-string"),
]


@pytest.mark.parametrize(("image", "words"), REFUSED_IMAGES)
def test_an_image_without_a_fixed_digest_is_refused_naming_the_fix(image, words):
    # Given an image a tag could move under, or no image at all / When a release takes it
    with pytest.raises(InvalidInputError) as refused:
        release_image(image)
    # Then the refusal names the field, and the fix or the parser's reason
    assert str(refused.value).startswith("image: ")
    for word in words:
        assert word in str(refused.value)


# --- children's names ---------------------------------------------------------------------------------------
NAME_ALLOWED = re.compile(r"[A-Za-z0-9_-]{1,80}")
LONG = "release-" + "x" * 72  # 80 characters: the longest execution name Step Functions allows


@pytest.mark.parametrize("execution", [EXECUTION, LONG, "shop:v2 (manual) by ana@example.com"],
                         ids=["short", "eighty-characters", "unsafe-characters"])
def test_child_names_are_unique_per_wave_index_and_rollback_and_valid_execution_names(execution):
    # Given every (wave, index, rollback) of a large release / When each child is named
    keys = [(w, i, rb) for w in range(20) for i in range(12) for rb in (False, True)]
    names = [child_name(execution, w, i, rollback=rb) for w, i, rb in keys]
    # Then no two children share a name, and each is a name StartExecution takes
    assert len(set(names)) == len(keys)
    for name in names:
        assert NAME_ALLOWED.fullmatch(name), name
        assert len(name) <= MAX_EXECUTION_NAME


def test_a_child_name_is_the_same_on_every_retry():
    # Given one child of a long-named release / When it is named twice (a retried start)
    # Then both names are equal: the retry finds the execution the first start made
    assert child_name(LONG, 3, 4) == child_name(LONG, 3, 4)
    assert child_name(LONG, 3, 4, rollback=True) == child_name(LONG, 3, 4, rollback=True)


def test_a_short_safe_name_stays_readable():
    # Given a release execution name that fits / When its children are named / Then they read as the release's
    assert child_name(EXECUTION, 0, 0) == f"{EXECUTION}-w1-1"
    assert child_name(EXECUTION, 2, 4, rollback=True) == f"{EXECUTION}-rb3-5"


@pytest.mark.parametrize(("a", "b"), [
    (LONG, LONG[:-1] + "y"),  # cut at the same place: only the hash tells them apart
    ("shop.v2", "shop-v2"),  # the '.' is replaced: the same text once made safe
    ("shop v2", "shop-v2"),
], ids=["long-names-differing-at-the-end", "dot-and-dash", "space-and-dash"])
def test_two_release_executions_never_share_a_child_name(a, b):
    # Given two distinct release execution names / When their first children are named
    # Then the names differ: the second release never adopts the first one's rollout
    assert child_name(a, 0, 0) != child_name(b, 0, 0)
    assert len(child_name(a, 0, 0)) <= MAX_EXECUTION_NAME


# --- the plan -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("first_approval", [False, True], ids=["no-approval", "approval-first"])
def test_plan_names_every_child_and_starts_none(first_approval):
    # Given a release of three waves whose first one may ask for approval
    waves = (THREE_WAVES[0][:4] + (first_approval,),) + THREE_WAVES[1:]
    # When it is planned
    state = plan_release(make_spec(*waves), IMAGE, EXECUTION)
    # Then every child is named after the release execution, pending, with the release's image, and not started
    for w, wave in enumerate(state.waves):
        assert [c.name for c in wave.children] == [child_name(EXECUTION, w, k) for k in range(len(wave.children))]
        assert all(c.status == PENDING and c.execution_arn is None and c.image == IMAGE for c in wave.children)
    assert [w.name for w in state.waves] == ["staging", "canary", "rest"]
    # And the first wave's approval is asked before anything starts
    assert state.approval_needed is first_approval
    assert (state.wave, state.phase, state.verdict, state.more_waves) == (0, "rollout", WaveVerdict.WAITING, True)
    assert state.policy == POLICY


@pytest.mark.parametrize(("image", "execution", "field"), [
    (f"{REPO}:v2", EXECUTION, "image"),
    (IMAGE, "", "execution_name"),
], ids=["tag-image", "no-execution-name"])
def test_plan_refuses_what_it_cannot_name(image, execution, field):
    with pytest.raises(InvalidInputError, match=f"^{field}: "):
        plan_release(make_spec(*THREE_WAVES), image, execution)


def test_a_childs_input_is_the_rollout_request_of_its_cluster():
    # Given a planned child / When its execution input is built
    child = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION).waves[1].children[1]
    # Then it is a rollout request for its own cluster, with the release's image and policy
    assert child.rollout_input(POLICY) == {"cluster": "charlie", "namespace": "shop", "deployment": "web",
                                           "container": "app", "image": IMAGE, "policy": POLICY}


# --- a wave's looks -----------------------------------------------------------------------------------------
def test_a_wave_never_runs_more_children_than_its_concurrency():
    # Given a wave of five clusters, two at a time
    spec = make_spec(("all", ["a1", "a2", "a3", "a4", "a5"], 2, 0, False))
    state, children = plan_release(spec, IMAGE, EXECUTION), FakeChildren()
    names = names_of(state, 0)
    # When it is looked at the first time / Then two start, in order
    state = advance_release(children, state)
    assert children.started_names() == names[:2]
    assert state.verdict is WaveVerdict.WAITING
    # When nothing ended by the next look / Then nothing more starts
    state = advance_release(children, state)
    assert children.started_names() == names[:2]
    # When one ended: the same look reads it first, then fills its slot
    children.succeed(names[0], "a1")
    children.calls.clear()
    state = advance_release(children, state)
    assert children.started_names() == names[:3]
    assert [c for c, _ in children.calls] == ["describe", "describe", "start"]
    assert statuses(state, 0) == [SUCCEEDED, RUNNING, RUNNING, PENDING, PENDING]
    # And at no look do more than two run
    while state.wave == 0:
        assert sum(s == RUNNING for s in statuses(state, 0)) <= 2
        for c in state.waves[0].children:
            if c.status == RUNNING:
                children.succeed(c.name, c.target.cluster)
                break
        state = advance_release(children, state)
    assert children.started_names() == names
    assert state.verdict is WaveVerdict.PASSED


def test_start_children_starts_nothing_once_a_child_failed():
    # Given a wave where one child failed and others are pending
    state = plan_release(make_spec(("all", ["a1", "a2", "a3"], 3, 0, False)), IMAGE, EXECUTION)
    record_status(state.waves[0].children[0], "FAILED", error="GateTimeout")
    # When the children to start are chosen / Then there are none
    assert start_children(state) == []


def test_passed_waves_move_on_with_their_bake_and_the_next_waves_approval():
    # Given a release of three waves (bakes 600, 1800, 300; the second asks for approval)
    state, children = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION), FakeChildren()
    # When the first wave passes
    state = pass_wave(children, state)
    # Then the release moves to the second wave after the first wave's bake, asking for approval first
    assert (state.verdict, state.wave, state.more_waves) == (WaveVerdict.PASSED, 1, True)
    assert (state.bake_seconds, state.approval_needed) == (600, True)
    assert statuses(state, 1) == [PENDING, PENDING]  # nothing of the next wave starts in the passing look
    # When the second wave passes / Then the third follows the second's bake, without approval
    state = pass_wave(children, state)
    assert (state.wave, state.more_waves, state.bake_seconds, state.approval_needed) == (2, True, 1800, False)
    # When the last wave passes / Then there are no more waves and nothing to wait for
    state = pass_wave(children, state)
    assert (state.verdict, state.wave, state.more_waves) == (WaveVerdict.PASSED, 3, False)
    assert (state.bake_seconds, state.approval_needed, state.failure, state.cause) == (0, False, None, "")
    # And each cluster was started once, wave after wave
    assert [i["cluster"] for _, _, _, i in children.started] == ["alpha", "bravo", "charlie", "delta", "echo",
                                                                 "foxtrot"]
    assert all(i["image"] == IMAGE and i["policy"] == POLICY for _, _, _, i in children.started)


def test_a_later_wave_never_starts_while_the_current_one_waits():
    # Given the first wave running / When it is looked at again and again without ending
    state, children = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION), FakeChildren()
    for _ in range(3):
        state = advance_release(children, state)
    # Then only its child was started
    assert children.started_names() == names_of(state, 0)
    assert (state.wave, state.verdict) == (0, WaveVerdict.WAITING)


def test_a_failed_child_fails_the_wave_once_the_others_ended_and_nothing_more_starts():
    # Given the third wave of a release running two of its three children
    state, children = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION), FakeChildren()
    state = pass_wave(children, pass_wave(children, state))
    state = advance_release(children, state)
    delta, echo, foxtrot = names_of(state, 2)
    assert children.started_names()[-2:] == [delta, echo]
    # When one of them fails while the other still runs
    children.finish(delta, "FAILED", error="HealthCheckFailed", cause="2 of 4 targets unhealthy")
    state = advance_release(children, state)
    # Then the wave waits for the other one, which is still read, and starts nothing in the failed one's slot
    assert state.verdict is WaveVerdict.WAITING and state.failure is None
    assert statuses(state, 2) == ["FAILED", RUNNING, PENDING]
    children.calls.clear()
    state = advance_release(children, state)
    assert children.calls == [("describe", children.arn_of(echo))]
    # When the other one ends
    children.succeed(echo, "echo")
    state = advance_release(children, state)
    # Then the wave failed, the failure is recorded, and the pending child never started
    assert state.verdict is WaveVerdict.FAILED
    assert foxtrot not in children.started_names()
    assert state.failure is not None
    assert state.failure.model_dump() == {"wave": "rest", "child": delta, "cluster": "delta", "status": "FAILED",
                                          "error": "HealthCheckFailed", "cause": "2 of 4 targets unhealthy"}
    assert (state.more_waves, state.rollback_needed, state.rollback) == (False, False, [])
    assert "wave 'rest'" in state.cause and delta in state.cause and "cluster delta ended FAILED" in state.cause
    assert "(HealthCheckFailed: 2 of 4 targets unhealthy)" in state.cause
    assert "waves not started" not in state.cause  # it was the last wave


def test_a_failure_names_the_waves_that_never_started():
    # Given the first wave's only child timing out (no error of its own)
    state, children = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION), FakeChildren()
    state = advance_release(children, state)
    children.finish(names_of(state, 0)[0], "TIMED_OUT")
    # When the wave is looked at
    state = advance_release(children, state)
    # Then the failure says how it ended, and the cause names every wave not started
    assert state.verdict is WaveVerdict.FAILED
    assert state.failure is not None and (state.failure.status, state.failure.error) == ("TIMED_OUT", "TIMED_OUT")
    assert state.cause.endswith("; waves not started: canary, rest")
    assert all(s == PENDING for w in (1, 2) for s in statuses(state, w))


def test_a_child_being_redriven_is_neither_passed_nor_forgotten():
    # Given a wave whose only child is seen PENDING_REDRIVE (failed, and a person redrives it)
    state, children = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION), FakeChildren()
    state = advance_release(children, state)
    alpha = names_of(state, 0)[0]
    children.finish(alpha, "PENDING_REDRIVE")
    # When the wave is looked at / Then it waits: the child has not succeeded
    state = advance_release(children, state)
    assert (state.wave, state.verdict) == (0, WaveVerdict.WAITING)
    # When the redriven child succeeds / Then the next look reads it again, and the wave passes
    children.succeed(alpha, "alpha")
    state = advance_release(children, state)
    assert (state.wave, state.verdict) == (1, WaveVerdict.PASSED)


# --- the rollback -------------------------------------------------------------------------------------------
def failed_in_second_wave(*, rollback: bool) -> tuple[ReleaseState, FakeChildren]:
    """A release whose first wave (two clusters) passed and whose second wave had one success and one failure."""
    spec = make_spec(("first", ["alpha", "bravo"], 2, 0, False), ("second", ["charlie", "delta"], 2, 0, False),
                     ("third", ["echo"], 1, 0, False), rollback=rollback)
    state, children = plan_release(spec, IMAGE, EXECUTION), FakeChildren()
    state = pass_wave(children, state)
    state = advance_release(children, state)
    charlie, delta = names_of(state, 1)
    children.succeed(charlie, "charlie")
    children.finish(delta, "ABORTED")
    return advance_release(children, state), children


def test_no_rollback_unless_the_release_asks_for_one():
    # Given a release without rollback_completed_waves whose second wave failed / Then nothing is rolled back
    state, _ = failed_in_second_wave(rollback=False)
    assert state.verdict is WaveVerdict.FAILED
    assert (state.rollback, state.rollback_needed) == ([], False)
    assert "rolled back" not in state.cause


def test_the_rollback_takes_the_failed_waves_successes_first_then_earlier_waves_newest_first():
    # Given a release with rollback_completed_waves whose second wave failed
    state, _ = failed_in_second_wave(rollback=True)
    # Then the rollback is planned: the failed wave's succeeded child, then the first wave's children, last first
    assert state.rollback_needed is True
    assert [(c.target.cluster, c.image) for c in state.rollback] == [
        ("charlie", previous("charlie")), ("bravo", previous("bravo")), ("alpha", previous("alpha"))]
    # And each is a new, pending rollout with a name of its own
    names = [c.name for c in state.rollback]
    assert len(set(names)) == 3 and all("-rb" in n for n in names)
    assert not set(names) & {c.name for w in state.waves for c in w.children}
    assert all(c.status == PENDING and c.execution_arn is None for c in state.rollback)
    assert state.cause.endswith("; waves not started: third; rolled back 0 of 3 completed rollout(s)")


def test_only_children_that_say_what_they_replaced_are_rolled_back():
    # Given a failed release where one succeeded child's output named no previous image
    state, _ = failed_in_second_wave(rollback=False)
    state.waves[0].children[0].previous_image = None
    state.rollback_completed_waves = True
    # When its rollback is planned / Then that child is left as it is (there is nothing known to roll back to)
    assert [c.target.cluster for c in plan_rollback(state)] == ["charlie", "bravo"]


def test_the_rollback_runs_one_child_at_a_time_and_reports_how_many_were_rolled_back():
    # Given the planned rollback of three clusters, begun
    state, children = failed_in_second_wave(rollback=True)
    state = begin_rollback(state)
    assert (state.phase, state.verdict) == ("rollback", WaveVerdict.WAITING)
    rolled: list[str] = []
    # When each look finds the running rollback ended
    for _ in range(3):
        before = len(children.started)
        state = advance_release(children, state)
        # Then exactly one more rollback starts, and no two run at once
        assert len(children.started) == before + 1
        assert sum(c.status == RUNNING for c in state.rollback) == 1
        sm, role, name, rollout = children.started[-1]
        rolled.append(rollout["cluster"])
        assert rollout["image"] == previous(rollout["cluster"])
        children.finish(name, SUCCEEDED)
    state = advance_release(children, state)
    # And once all ended, the phase passed and the cause says every completed rollout was rolled back
    assert rolled == ["charlie", "bravo", "alpha"]
    assert state.verdict is WaveVerdict.PASSED
    assert state.cause.endswith("rolled back 3 of 3 completed rollout(s)")
    # And the failure that caused the rollback is still the one reported
    assert state.failure is not None and state.failure.cluster == "delta"


def test_a_failed_rollback_stops_the_rollbacks_after_it():
    # Given a rollback begun, whose first child fails
    state, children = failed_in_second_wave(rollback=True)
    state = advance_release(children, begin_rollback(state))
    children.finish(state.rollback[0].name, "FAILED", error="GateTimeout")
    # When the rollback is looked at
    state = advance_release(children, state)
    # Then the rest never start: a person looks before anything else changes
    assert state.verdict is WaveVerdict.FAILED
    assert [c.status for c in state.rollback] == ["FAILED", PENDING, PENDING]
    assert state.cause.endswith("rolled back 0 of 3 completed rollout(s)")
    rollbacks = [n for n in children.started_names() if "-rb" in n]
    assert rollbacks == [state.rollback[0].name]


# --- the releases file and the state ------------------------------------------------------------------------
def test_the_releases_file_reads_back_every_release_by_name():
    # Given the file the release stack writes / When the functions read it / Then each release is found by name
    spec = make_spec(*THREE_WAVES, rollback=True)
    specs = parse_specs(json.dumps([spec.model_dump(mode="json")]))
    assert spec_named(specs, "shop") == spec


BAD_FILES = [
    pytest.param("not json", "not JSON", id="not-json"),
    pytest.param('{"name": "shop"}', "a valid list", id="not-a-list"),
    pytest.param('[{"name": "shop", "waves": []}]', "0.waves", id="no-waves"),
    pytest.param('[{"name": "shop", "waves": [], "rollback": true}]', "0.rollback", id="unknown-field"),
]


@pytest.mark.parametrize(("text", "words"), BAD_FILES)
def test_a_bad_releases_file_is_refused_naming_the_place_and_the_fix(text, words):
    with pytest.raises(InvalidInputError) as refused:
        parse_specs(text)
    assert str(refused.value).startswith("releases file: ")
    assert words in str(refused.value)
    assert "redeploy" in str(refused.value)


@pytest.mark.parametrize("name", ["other", None, 3], ids=["unknown", "missing", "not-a-string"])
def test_an_unknown_release_is_refused_naming_the_configured_ones(name):
    specs = {"shop": make_spec(*THREE_WAVES), "cart": make_spec(*THREE_WAVES[:1])}
    with pytest.raises(InvalidInputError) as refused:
        spec_named(specs, name)
    assert f"{name!r} is not a configured release" in str(refused.value)
    assert "['cart', 'shop']" in str(refused.value) and "config `releases`" in str(refused.value)


@pytest.mark.parametrize(("data", "words"), [
    (None, "start the execution with a release input"),
    ({"release": "shop"}, "release: "),
], ids=["no-state", "malformed-state"])
def test_a_state_that_is_not_a_release_is_refused_as_bad_input(data, words):
    with pytest.raises(InvalidInputError, match=re.escape(words)):
        ReleaseState.parse(data)


def test_the_state_survives_the_state_machine_round_trip():
    # Given a release midway through a wave / When its state goes through JSON (Step Functions' $.release)
    state, children = plan_release(make_spec(*THREE_WAVES), IMAGE, EXECUTION), FakeChildren()
    state = pass_wave(children, state)
    state = advance_release(children, state)
    # Then it reads back equal
    assert ReleaseState.parse(json.loads(json.dumps(state.dump()))) == state
