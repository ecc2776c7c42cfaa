"""Start Step's guard against a Deployment changed under the rollout, and the hold it writes, word for word.

Given the state an execution carries and the Deployment as Start Step reads it, when something albgate did not
write has changed (paused, container gone, another image or revision before step 1, another hold or image later,
a rollback whose hold is gone), then ``deployment_changed`` names every change in the sentence the execution
fails with; and on the simulated example app, Start Step writes a hold that lasts through the step's deadline,
the longest deregistration delay, the margin and the bake (and the approval wait when the next step needs one).
"""

from __future__ import annotations

import dataclasses

import pytest

from lambdas.domain import limits
from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.models import RolloutPolicy, RolloutRequest
from lambdas.domain.ports import Container, Deployment, PodTemplate
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.rollout.step import deployment_changed, start_step
from lambdas.domain.state import RolloutState, TargetGroupInfo
from tests.unit.test_rollout_budget import DEPLOYMENT, NS, World, preflight, world  # noqa: F401  (fixture)

OLD, NEW = "registry.example.com/web@sha256:" + "a" * 64, "registry.example.com/web@sha256:" + "b" * 64
TAIL = ". Someone else (a person, another tool, another rollout) wrote it, and albgate did not write over it"


def rollout_state(mode: str = "rollout", next_step: int = 0, **kw) -> RolloutState:
    request = RolloutRequest(cluster="prod", namespace="shop", deployment="web", container="web", image=NEW)
    return RolloutState(request=request, execution_name="exec-1", mode=mode, started_at=0, replicas=3, plan=[1, 3],
                        target_image=NEW if mode == "rollout" else OLD, previous_image=OLD, previous_revision=4,
                        original_max_surge=1, original_max_unavailable=0, next_step=next_step,
                        target_groups=[TargetGroupInfo(arn="arn:tg", service="web", health_check_interval_seconds=5,
                                                       healthy_threshold=2, deregistration_delay_seconds=30)], **kw)


def dep(image: str | None = OLD, *, hold: str = "", revision: int = 4, paused: bool = False, surge: int | str = 1,
        unavailable: int | str = 0) -> Deployment:
    containers = (Container("web", image),) if image is not None else (Container("proxy", "envoy:1"),)
    return Deployment(namespace="shop", name="web", uid="u", replicas=3, selector={"app": "web"},
                      template=PodTemplate(containers=containers), max_surge=surge, max_unavailable=unavailable,
                      paused=paused, revision=revision, annotations={ROLLOUT_ANNOTATION: hold} if hold else {})


# ---------------------------------------------------------------------------------------------------------
# Before step 1: the Deployment as Preflight read it
# ---------------------------------------------------------------------------------------------------------
def test_the_deployment_as_preflight_read_it_passes_step_one():
    assert deployment_changed(rollout_state(), dep()) is None


def test_a_retried_first_step_finds_its_own_write_and_passes():
    # Given step 1's write landed (the new image, this execution's hold) and the task is retried
    assert deployment_changed(rollout_state(), dep(NEW, hold="exec-1@999", revision=5)) is None


def test_everything_changed_before_step_one_is_named_in_one_sentence():
    # Given the Deployment paused, on another image and revision, with another surge and unavailability
    found = deployment_changed(rollout_state(), dep("other:2", revision=6, paused=True, surge="50%", unavailable=1))
    # Then the execution fails saying each, in order
    assert found == (
        "Deployment changed under this rollout before step 1 (shop/web): it was paused (spec.paused); container web "
        f"runs 'other:2', not '{OLD}' as Preflight read; its revision is 6, not 4 as Preflight read; max_surge is "
        "'50%', not 1 as Preflight read; max_unavailable is 1, not 0 as Preflight read" + TAIL)


def test_a_container_that_is_gone_is_named_and_no_image_is_compared():
    assert deployment_changed(rollout_state(), dep(None)) == (
        "Deployment changed under this rollout before step 1 (shop/web): its container web is gone" + TAIL)


def test_this_executions_hold_on_another_image_is_still_a_change():
    found = deployment_changed(rollout_state(), dep("other:2", hold="exec-1@999"))
    assert found is not None and "container web runs 'other:2'" in found


# ---------------------------------------------------------------------------------------------------------
# Later steps: albgate's hold and the image it wrote
# ---------------------------------------------------------------------------------------------------------
def test_a_later_step_with_this_executions_hold_and_image_passes():
    assert deployment_changed(rollout_state(next_step=1), dep(NEW, hold="exec-1@999", revision=9)) is None


def test_a_later_step_names_a_foreign_hold_and_image():
    found = deployment_changed(rollout_state(next_step=1), dep("other:2", hold="exec-2@999"))
    assert found == (
        "Deployment changed under this rollout before step 2 (shop/web): albgate's hold "
        f"({ROLLOUT_ANNOTATION}) is 'exec-2@999', not this execution's; container web runs 'other:2', not '{NEW}' "
        "as this rollout wrote" + TAIL)


def test_a_later_step_whose_hold_is_gone_says_gone():
    found = deployment_changed(rollout_state(next_step=1), dep(NEW))
    assert found == (f"Deployment changed under this rollout before step 2 (shop/web): albgate's hold "
                     f"({ROLLOUT_ANNOTATION}) is gone, not this execution's" + TAIL)


# ---------------------------------------------------------------------------------------------------------
# The rollback
# ---------------------------------------------------------------------------------------------------------
def test_a_rollback_whose_hold_is_gone_and_image_changed_is_refused():
    found = deployment_changed(rollout_state("rollback", next_step=0), dep("other:2"))
    assert found == (f"Deployment changed under this rollout before step 1 of the rollback (shop/web): albgate's hold "
                     f"({ROLLOUT_ANNOTATION}) is gone, not this execution's, and container web runs 'other:2'" + TAIL)


def test_a_rollback_whose_container_is_gone_quotes_an_empty_image():
    found = deployment_changed(rollout_state("rollback", next_step=0), dep(None, hold="exec-9@1"))
    assert found is not None and found.endswith(f"not this execution's, and container web runs ''{TAIL}")


@pytest.mark.parametrize("deployment", [dep(NEW, hold="exec-1@999"), dep(OLD)])
def test_a_rollback_passes_with_its_hold_or_once_the_previous_image_runs(deployment):
    # Given the rollback's hold still on the Deployment, or (a retried Start Step) the previous image running
    assert deployment_changed(rollout_state("rollback", next_step=1), deployment) is None


# ---------------------------------------------------------------------------------------------------------
# Start Step on the simulated example app
# ---------------------------------------------------------------------------------------------------------
def hold_of(w: World) -> str:
    return w.ports.kube.get_deployment(NS, DEPLOYMENT).annotations[ROLLOUT_ANNOTATION]


@pytest.mark.parametrize("approval,extra", [([], 0), ([2], limits.APPROVAL_TIMEOUT_SECONDS)])
def test_the_hold_lasts_through_deadline_delay_margin_bake_and_a_coming_approval(world, approval, extra):
    # Given a policy with a 17 s bake, and an approval before step 2 or none
    now = world.now
    state = world.started(bake_seconds=17, approval_before_steps=approval)
    # When step 1 starts / Then the hold names this execution until the last moment step 1 may still need it
    policy = RolloutPolicy(**{k: v for k, v in state["request"]["policy"].items()})
    delay = max(g["deregistration_delay_seconds"] for g in state["target_groups"])
    until = int(now + policy.step_deadline_seconds + delay + limits.DRAIN_MARGIN_SECONDS + 17 + extra)
    assert hold_of(world) == f"t1@{until}"
    # and the state says step 1 runs, what comes next and whether it waits for a person
    assert (state["step"], state["next_step"], state["more_steps"]) == (0, 1, len(state["plan"]) > 1)
    assert state["approval_required"] is bool(approval)
    assert state["step_deadline"] == now + policy.step_deadline_seconds
    assert state["gate"]["reason"] == "step started" and state["wait_seconds"] == 0 and state["throttles"] == 0
    assert state["steps"][-1]["step"] == 1 and state["steps"][-1]["target"] == state["plan"][0]


def test_a_state_past_its_plan_is_refused_as_edited_by_hand(world):
    state = RolloutState.model_validate(preflight(world.ports, world.request(), "t1"))
    state.next_step = len(state.plan)
    with pytest.raises(InvalidInputError, match=rf"^next_step {len(state.plan)} is past the plan \[.*\]; the state was "
                                                "edited by hand\\?$"):
        start_step(world.ports, state)


def test_a_deployment_paused_after_preflight_fails_step_one_with_the_reason(world):
    state = RolloutState.model_validate(preflight(world.ports, world.request(), "t1"))
    from lambdas.domain.ports import DeploymentPatch

    world.ports.kube.patch_deployment(NS, DEPLOYMENT, DeploymentPatch(paused=True))
    with pytest.raises(UnsafeConfigurationError, match="it was paused"):
        start_step(world.ports, state)


def test_a_write_that_keeps_losing_to_other_writers_is_tried_three_times(world):
    # Given every conditional write of the Deployment answers 409
    from lambdas.domain.errors import ConflictError

    state = RolloutState.model_validate(preflight(world.ports, world.request(), "t1"))
    kube = world.ports.kube
    calls = []

    class Racing:
        def __getattr__(self, name):
            return getattr(kube, name)

        def patch_deployment(self, namespace, name, patch):
            calls.append(name)
            raise ConflictError("409 the object has been modified")

    ports = dataclasses.replace(world.ports, kube=Racing())
    # When step 1 starts / Then it reads and writes three times, then lets the 409 go to the retry
    with pytest.raises(ConflictError):
        start_step(ports, state)
    assert len(calls) == 3
