"""The release's Lambdas: `Plan Release` checks the release input before any child exists, and `Release Wave`
takes one look at the children, turning to the rollback when the state machine asks for it.

Invariant under test: every refusal is an ``InvalidInputError`` (the state machine's Catch names it) and nothing
is started by a refused input; the handlers decide nothing themselves (lambdas/domain/release.py does). The
releases and child executions are installed with ``use_release_deps`` and removed after each test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.release import PENDING, RUNNING, WaveVerdict, child_name
from lambdas.handlers import release_plan, release_wave
from lambdas.handlers._release import ReleaseDeps, use_release_deps
from tests.unit.test_release import EXECUTION, IMAGE, REPO, THREE_WAVES, FakeChildren, make_spec, previous


@pytest.fixture()
def children() -> Iterator[FakeChildren]:
    fake = FakeChildren()
    use_release_deps(ReleaseDeps({"shop": make_spec(*THREE_WAVES, rollback=True)}, fake))
    yield fake
    use_release_deps(None)


def plan(image: str = IMAGE, **extra: object) -> dict:
    return release_plan.handler({"input": {"release": "shop", "image": image, **extra}, "execution_name": EXECUTION},
                                None)


def test_plan_release_answers_the_planned_release(children):
    # Given a configured release / When the release state machine's first state plans it
    answer = plan()
    # Then every child is named and pending, nothing started yet, and the answer goes through JSON unchanged
    release = answer["release"]
    assert json.loads(json.dumps(answer)) == answer
    assert (release["release"], release["image"], release["execution_name"]) == ("shop", IMAGE, EXECUTION)
    assert [c["name"] for c in release["waves"][1]["children"]] == [child_name(EXECUTION, 1, 0),
                                                                   child_name(EXECUTION, 1, 1)]
    assert {c["status"] for w in release["waves"] for c in w["children"]} == {PENDING}
    assert children.calls == []


REFUSED = [
    pytest.param({"input": {"release": "shop", "image": IMAGE, "tag": "v2"}}, "unknown field(s) ['tag']",
                 id="unknown-field"),
    pytest.param({"input": {"release": "cart", "image": IMAGE}}, "'cart' is not a configured release; use one of "
                 "['shop']", id="unknown-release"),
    pytest.param({"input": {"image": IMAGE}}, "None is not a configured release", id="no-release"),
    pytest.param({"input": {"release": "shop", "image": f"{REPO}:v2"}}, "has no digest", id="tag-image"),
    pytest.param({"input": {"release": "shop"}}, "image: missing", id="no-image"),
    pytest.param({"input": "shop"}, 'expected {"release"', id="input-not-an-object"),
    pytest.param({}, 'expected {"release"', id="no-input"),
]


@pytest.mark.parametrize(("event", "words"), REFUSED)
def test_plan_release_refuses_a_bad_input_as_invalid(children, event, words):
    # Given a release input that cannot be planned / When Plan Release runs
    with pytest.raises(InvalidInputError) as refused:
        release_plan.handler({"execution_name": EXECUTION, **event}, None)
    # Then it is refused naming what is wrong, and nothing was started
    assert words in str(refused.value)
    assert children.calls == []


def test_a_wave_look_starts_the_first_wave(children):
    # Given a planned release / When Start Wave Rollouts runs
    answer = release_wave.handler({"release": plan()["release"]}, None)
    # Then the first wave's child started and the wave waits for it
    release = answer["release"]
    assert children.started_names() == [child_name(EXECUTION, 0, 0)]
    assert release["waves"][0]["children"][0]["status"] == RUNNING
    assert (release["phase"], release["verdict"]) == ("rollout", WaveVerdict.WAITING.value)


def failed_release(children: FakeChildren) -> dict:
    """The release state after its second wave failed (the first passed): a rollback is planned."""
    release = plan()["release"]
    for _ in range(20):
        release = release_wave.handler({"release": release, "rollback": False}, None)["release"]
        if release["verdict"] == "FAILED":
            return release
        for child in release["waves"][release["wave"]]["children"] if release["wave"] < 3 else []:
            if child["status"] == RUNNING:
                cluster = child["target"]["cluster"]
                if cluster == "charlie":
                    children.finish(child["name"], "FAILED", error="GateTimeout")
                else:
                    children.succeed(child["name"], cluster)
    raise AssertionError("the release never failed")


def test_a_look_with_rollback_true_turns_the_release_to_its_rollback(children):
    # Given a release whose second wave failed, with completed rollouts to roll back
    release = failed_release(children)
    assert release["rollback_needed"] is True and release["phase"] == "rollout"
    started = len(children.started)
    # When the rollback's first look runs
    answer = release_wave.handler({"release": release, "rollback": True}, None)["release"]
    # Then the phase is the rollback's and its first rollout started, back to the image the cluster ran before
    assert answer["phase"] == "rollback"
    assert len(children.started) == started + 1
    _, _, name, rollout = children.started[-1]
    assert name == answer["rollback"][0]["name"]
    assert (rollout["cluster"], rollout["image"]) == ("bravo", previous("bravo"))
    # And a second rollback look stays in the rollback, reading the running child rather than starting another
    again = release_wave.handler({"release": answer, "rollback": True}, None)["release"]
    assert again["phase"] == "rollback"
    assert len(children.started) == started + 1


def test_a_look_without_rollback_leaves_the_phase_alone(children):
    # Given a failed release / When a look runs without rollback / Then it stays in the rollout, starting nothing
    release = failed_release(children)
    started = len(children.started)
    answer = release_wave.handler({"release": release}, None)["release"]
    assert (answer["phase"], answer["verdict"]) == ("rollout", "FAILED")
    assert len(children.started) == started


@pytest.mark.parametrize("event", [{}, {"release": "shop"}, {"release": {"release": "shop"}}],
                         ids=["no-release", "release-not-an-object", "malformed-release"])
def test_a_wave_look_refuses_a_state_that_is_not_a_release(children, event):
    with pytest.raises(InvalidInputError, match="^release: "):
        release_wave.handler(event, None)
    assert children.calls == []
