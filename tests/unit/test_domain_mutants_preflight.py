"""Preflight's refusals and its first state, on the simulated example app, as the person who started it reads them.

Given the example app at rest (hardened, behind its ALB), when a rollout or a restart is asked for something
Preflight must refuse (a container it does not have, a paused Deployment, one already rolling, the image it
already runs, a workload that drops requests with hardening off), then it refuses before changing anything, in a
sentence that says what to do; otherwise the first state carries what the request asked for.
"""

from __future__ import annotations

import pytest

from lambdas.domain.errors import InvalidInputError, NotFoundError, UnsafeConfigurationError
from lambdas.domain.models import parse_request
from lambdas.domain.ports import DeploymentPatch
from lambdas.domain.rollout import preflight as preflight_use_case
from lambdas.domain.state import RolloutState
from tests.unit.test_rollout_budget import DEPLOYMENT, NS, world  # noqa: F401  (fixture)


def ask(w, **change) -> RolloutState:
    request = w.request()
    request.update(change)
    return preflight_use_case.preflight(w.ports, parse_request(request), "exec-1")


def running_image(w) -> str:
    return w.ports.kube.get_deployment(NS, DEPLOYMENT).template.containers[0].image


def test_a_container_the_deployment_does_not_have_is_refused_listing_the_ones_it_has(world):
    with pytest.raises(NotFoundError, match=f"^container: Deployment {NS}/{DEPLOYMENT} has no container 'sidecar'; "
                                            "it has: nginx$"):
        ask(world, container="sidecar")


def test_a_paused_deployment_is_refused_saying_how_to_resume_it(world):
    world.ports.kube.patch_deployment(NS, DEPLOYMENT, DeploymentPatch(paused=True))
    with pytest.raises(UnsafeConfigurationError, match=f"^Deployment {NS}/{DEPLOYMENT} is paused; resume it "
                                                       r"\(kubectl rollout resume\) or finish what paused it$"):
        ask(world)


def test_a_deployment_already_rolling_is_refused_naming_its_replica_sets(world):
    # Given someone started a plain rollout a moment ago: two ReplicaSets have pods
    world.ports.kube.patch_deployment(NS, DEPLOYMENT, DeploymentPatch(images={"nginx": "ikubernetes/myapp:v9"}))
    world.sim.advance(2)
    busy = sorted(rs.name for rs in world.ports.kube.list_replica_sets(NS, DEPLOYMENT) if rs.replicas > 0)
    assert len(busy) == 2
    with pytest.raises(UnsafeConfigurationError) as caught:
        ask(world)
    assert str(caught.value) == (f"Deployment {NS}/{DEPLOYMENT} is already rolling (ReplicaSets {', '.join(busy)} have "
                                 "pods); wait for that rollout to finish or undo it, then start again")


def test_rolling_to_the_image_it_runs_is_refused_pointing_to_a_restart(world):
    image = running_image(world)
    with pytest.raises(InvalidInputError, match=f"^image: container nginx of {NS}/{DEPLOYMENT} already runs "
                                                f"{image}; use kind='restart' to re-create its pods through the gates$"):
        ask(world, image=image)


def test_a_restart_is_not_refused_for_running_the_same_image_and_marks_its_pods(world):
    request = world.request()
    request.pop("image")
    request["kind"] = "restart"
    state = preflight_use_case.preflight(world.ports, parse_request(request), "exec-1")
    assert state.target_image == running_image(world)
    assert state.hardening["template_annotations"] == {"albgate.io/restarted-by": "exec-1"}


def test_the_first_state_carries_the_request_and_an_approval_before_step_one(world):
    state = ask(world, policy={**world.request()["policy"], "approval_before_steps": [1]})
    assert isinstance(state, RolloutState)
    assert (state.approval_required, state.more_steps, state.next_step, state.execution_name) == (True, True, 0,
                                                                                                  "exec-1")
    assert state.requested_image == world.request()["image"]
    assert ask(world).approval_required is False
