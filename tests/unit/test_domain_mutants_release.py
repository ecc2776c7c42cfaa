"""A release's decisions (lambdas/domain/release.py), to the exact value: child names at the 80-character edge,
the sentence a stopped release ends with, the rollback's order, the roles a child is started and read with, the
dumped state's JSON types, and the messages of the inputs it refuses.

Given a release planned from a spec and children driven through an in-memory ``ChildExecutions``, when a look
reads and starts them or a wave concludes, then every name, cause and rollback child is exactly the documented
one, and every refusal says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.ports import ChildExecution
from lambdas.domain.release import (
    SUCCEEDED,
    Failure,
    ReleaseSpec,
    ReleaseState,
    ReleaseTarget,
    WaveSpec,
    WaveVerdict,
    advance_release,
    child_name,
    conclude,
    failure_cause,
    parse_specs,
    plan_release,
    plan_rollback,
    record_status,
    release_image,
    start_children,
)

REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/shop"
IMAGE = f"{REPO}@sha256:" + "a" * 64
EXECUTION = "shop-2026-01-02"
MACHINE = "arn:aws:states:us-east-1:222222222222:stateMachine:Rollout"
ROLE = "arn:aws:iam::222222222222:role/albgate-release-child"


def old_image(cluster: str) -> str:
    """The image a cluster ran before the release (its rollout's output names it)."""
    return f"{REPO}@sha256:{hashlib.sha256(cluster.encode()).hexdigest()}"


def target(cluster: str, role_arn: str | None = None) -> ReleaseTarget:
    return ReleaseTarget(cluster=cluster, namespace="shop", deployment="cart", container="app",
                         account="222222222222", region="us-east-1", state_machine_arn=MACHINE, role_arn=role_arn)


def release(*waves: tuple[str, list[str]], rollback: bool = False, role_arn: str | None = None) -> ReleaseState:
    """A planned release: one wave per (name, clusters), every wave two at a time, no bake, no approval."""
    spec = ReleaseSpec(name="shop", rollback_completed_waves=rollback, policy={"steps": [100]},
                       waves=[WaveSpec(name=n, targets=[target(c, role_arn) for c in clusters], max_concurrency=2,
                                       bake_seconds=0) for n, clusters in waves])
    return plan_release(spec, IMAGE, EXECUTION)


def succeed_wave(state: ReleaseState) -> None:
    """Every child of the current wave ran and succeeded, replacing its cluster's old image; the wave concludes."""
    for child in state.waves[state.wave].children:
        record_status(child, SUCCEEDED, output={"previous_image": old_image(child.target.cluster)})
    conclude(state)


class Children:
    """``ChildExecutions`` in memory: every start and describe recorded with the role it was made with."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.calls: list[tuple[str, str, str | None]] = []  # (call, name or ARN, role)

    def start(self, state_machine_arn: str, role_arn: str | None, name: str, input: dict) -> str:
        self.calls.append(("start", name, role_arn))
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        self.status.setdefault(arn, "RUNNING")
        return arn

    def describe(self, execution_arn: str, role_arn: str | None) -> ChildExecution:
        self.calls.append(("describe", execution_arn, role_arn))
        return ChildExecution(status=self.status[execution_arn])


# ---------------------------------------------------------------------------------------------------------
# child_name
# ---------------------------------------------------------------------------------------------------------
def test_an_unsafe_character_becomes_one_dash_and_the_name_gets_the_whole_names_hash():
    # Given an execution name with a '.' / When its first child is named
    # Then the '.' is one '-', followed by the first 8 hex of sha256("a.b"), then the child's place
    assert child_name("a.b", 0, 0) == "a-b-2e7336dc-w1-1"


def test_a_name_that_fills_exactly_80_characters_with_its_suffix_is_kept_as_it_is():
    # Given a safe execution name of 75 characters, and a 5-character suffix (-w1-1)
    # When its first child is named / Then it is the name plus the suffix, 80 characters, no hash
    assert child_name("r" * 75, 0, 0) == "r" * 75 + "-w1-1"


def test_a_name_one_character_too_long_is_cut_to_exactly_80_characters_with_its_hash():
    # Given a safe execution name of 76 characters (81 with the suffix)
    name = child_name("r" * 76, 0, 0)
    # Then 66 characters of it, '-', 8 hex of its hash and the suffix: exactly 80
    assert name == "r" * 66 + "-98f30012-w1-1"
    assert len(name) == 80


# ---------------------------------------------------------------------------------------------------------
# advance_release: the role a child is started and read with
# ---------------------------------------------------------------------------------------------------------
def test_a_child_in_another_account_is_started_and_read_with_its_targets_role():
    # Given a release whose only target is reached through a role
    state = release(("all", ["c1"]), role_arn=ROLE)
    children = Children()
    # When one look starts the child and the next one reads it
    advance_release(children, state)
    advance_release(children, state)
    # Then both the start and the describe were made with the target's role
    arn = MACHINE.replace(":stateMachine:", ":execution:") + f":{EXECUTION}-w1-1"
    assert children.calls == [("start", f"{EXECUTION}-w1-1", ROLE), ("describe", arn, ROLE)]


# ---------------------------------------------------------------------------------------------------------
# ReleaseState: active, dump, parse
# ---------------------------------------------------------------------------------------------------------
def test_a_release_whose_every_wave_passed_looks_after_no_child_and_starts_none():
    # Given a one-wave release whose wave passed
    state = release(("all", ["c1"]))
    succeed_wave(state)
    # When the state is asked which children it looks after, and which to start
    # Then none: there is no current wave any more
    assert (state.wave, state.more_waves, state.verdict) == (1, False, WaveVerdict.PASSED)
    assert state.active() == [] and start_children(state) == []


def test_the_dumped_state_holds_plain_json_values_the_verdict_a_plain_string():
    # Given a planned release / When its state is dumped for Step Functions
    dumped = release(("all", ["c1"])).dump()
    # Then the verdict is the plain string the Choice states compare, not the enum, and the whole is JSON data
    assert type(dumped["verdict"]) is str and str(dumped["verdict"]) == "WAITING"
    assert json.loads(json.dumps(dumped)) == dumped


def test_a_state_missing_its_fields_is_refused_naming_them_and_what_to_do():
    # Given a $.release that has only a name / When a release Lambda parses it
    with pytest.raises(InvalidInputError) as raised:
        ReleaseState.parse({"release": "shop"})
    # Then the message names every missing field and says to start a new release execution
    assert str(raised.value) == (
        "release: execution_name: Field required; image: Field required; policy: Field required; "
        "rollback_completed_waves: Field required; waves: Field required; the state is the one Plan Release "
        "wrote: start a new release execution")


# ---------------------------------------------------------------------------------------------------------
# Refused inputs: release_image, plan_release, parse_specs
# ---------------------------------------------------------------------------------------------------------
def test_an_image_by_tag_is_refused_with_the_digest_form_and_the_command_that_prints_it():
    with pytest.raises(InvalidInputError) as raised:
        release_image("shop:v1")
    assert str(raised.value) == (
        "image: 'shop:v1' has no digest; a release rolls one image through every wave, and a tag can move "
        "between waves: give '<repository>@sha256:<64 hex>' (`aws ecr describe-images` prints it)")


def test_a_release_without_an_execution_name_is_refused_naming_the_context_field():
    spec = ReleaseSpec(name="shop", waves=[WaveSpec(name="all", targets=[target("c1")], max_concurrency=1,
                                                    bake_seconds=0)])
    with pytest.raises(InvalidInputError) as raised:
        plan_release(spec, IMAGE, "")
    assert str(raised.value) == "execution_name: missing; the release state machine passes $$.Execution.Name"


def test_a_releases_file_that_is_not_json_says_to_redeploy_the_release_stack():
    with pytest.raises(InvalidInputError) as raised:
        parse_specs("nope")
    assert str(raised.value) == ("releases file: not JSON (Expecting value: line 1 column 1 (char 0)); the release "
                                 "stack writes this file from the config's releases: redeploy it")


# ---------------------------------------------------------------------------------------------------------
# failure_cause
# ---------------------------------------------------------------------------------------------------------
def test_a_failed_child_without_a_cause_is_named_with_its_error_only():
    # Given a two-wave release whose first child ended FAILED with no error nor cause in the answer
    state = release(("canary", ["c1"]), ("rest", ["c2"]))
    record_status(state.waves[0].children[0], "FAILED")
    # When the wave concludes / Then the error defaults to the status, shown alone, and the later wave is named
    conclude(state)
    assert state.cause == (f"wave 'canary': rollout {EXECUTION}-w1-1 in cluster c1 ended FAILED (FAILED); "
                           "waves not started: rest")


def test_a_failure_in_the_last_wave_names_no_wave_not_started():
    # Given the first wave passed and the last one's child timed out with an error and a cause
    state = release(("canary", ["c1"]), ("rest", ["c2"]))
    succeed_wave(state)
    record_status(state.waves[1].children[0], "TIMED_OUT", error="States.Timeout", cause="took too long")
    # When the wave concludes / Then the sentence ends with the error and cause, nothing after them
    conclude(state)
    assert state.cause == (f"wave 'rest': rollout {EXECUTION}-w2-1 in cluster c2 ended TIMED_OUT "
                           "(States.Timeout: took too long)")


def test_a_recorded_failure_without_error_or_cause_has_no_parenthesis():
    # Given a state whose failure records neither an error nor a cause (a $.release written that way)
    state = release(("canary", ["c1"]), ("rest", ["c2"]))
    state.failure = Failure(wave="canary", child="x-w1-1", cluster="c1", status="ABORTED")
    # When its cause is written / Then it is the bare sentence and the waves not started
    assert failure_cause(state) == "wave 'canary': rollout x-w1-1 in cluster c1 ended ABORTED; waves not started: rest"


def test_a_release_stopped_without_a_recorded_failure_says_only_that_it_stopped():
    # Given a release that records no failure / When its cause is written / Then it says only that it stopped
    assert failure_cause(release(("all", ["c1"]))) == "the release stopped"


# ---------------------------------------------------------------------------------------------------------
# plan_rollback
# ---------------------------------------------------------------------------------------------------------
def rolled_back(children: list[Any]) -> list[tuple[str, str, str]]:
    return [(c.name, c.target.cluster, c.image) for c in children]


def test_a_failure_in_the_last_wave_rolls_back_its_succeeded_child_first_then_the_earlier_wave_newest_first():
    # Given a release that rolls back, whose first wave (c1, c2) passed and whose last wave's c3 succeeded, c4 failed
    state = release(("canary", ["c1", "c2"]), ("rest", ["c3", "c4"]), rollback=True)
    succeed_wave(state)
    record_status(state.waves[1].children[0], SUCCEEDED, output={"previous_image": old_image("c3")})
    record_status(state.waves[1].children[1], "FAILED", error="States.TaskFailed", cause="unhealthy")
    # When the wave concludes
    conclude(state)
    # Then c3 is rolled back first, then c2, then c1, each once, to the image it replaced
    assert state.rollback_needed is True
    assert rolled_back(state.rollback) == [
        (f"{EXECUTION}-rb2-1", "c3", old_image("c3")),
        (f"{EXECUTION}-rb1-2", "c2", old_image("c2")),
        (f"{EXECUTION}-rb1-3", "c1", old_image("c1")),
    ]


def test_a_release_whose_every_wave_passed_plans_the_rollback_of_all_of_them_newest_first():
    # Given a two-wave release whose every wave passed
    state = release(("canary", ["c1"]), ("rest", ["c2"]))
    succeed_wave(state)
    succeed_wave(state)
    # When its rollback is planned / Then the last wave's child comes first, then the first wave's
    assert rolled_back(plan_rollback(state)) == [
        (f"{EXECUTION}-rb2-1", "c2", old_image("c2")),
        (f"{EXECUTION}-rb1-2", "c1", old_image("c1")),
    ]
