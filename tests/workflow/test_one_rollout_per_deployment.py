"""One rollout per Deployment, whoever starts it: two executions of the synthesized rollout state machine
interleaved at every boundary on one simulated cluster, with the real handlers.

Found by hand: two executions of one Deployment started from the console both ran (Preflight only refused while
two ReplicaSets had pods, and Start Step wrote without a precondition); one rolled back to a stale revision and
the Deployment ended on the version from before both, with both executions Succeeded. Here the second execution
(B, image v3) starts while the first (A, image v2) waits at one boundary, runs to its end, and then A goes on.
Whatever the boundary, exactly one of them changes the cluster while the other holds it, the one refused changed
nothing and names the holder and its console page, and the Deployment ends on the image of the rollout that ran.
Also: the lease is released by each terminal status (the status-change path), and a Deployment changed by
someone else between Preflight and Start Step fails the step cleanly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from albgate.sfn_local.runner import ExecutionResult, TaskTokenRequest
from lambdas.domain.lease import lease_key
from lambdas.domain.trigger import execution_arn
from lambdas.domain.trigger_use_case import TriggerPorts
from lambdas.handlers._trigger_settings import EventSettings
from lambdas.handlers.execution_events import handle_execution_event
from lambdas.adapters.stepfunctions import StepFunctionsStarter
from tests.trigger.conftest import status_event
from tests.workflow.test_approval_timeout import NEW, NEXT, OLD, Albgate, albgate_on_seed_app

WRITES = ("patch_deployment", "rollback_deployment")


def execution_of(event: Any) -> str:
    """The execution a task's event belongs to (Preflight's and RequestApproval's carry it, the others' state)."""
    if not isinstance(event, dict):
        return ""
    for source in (event, event.get("state") or {}):
        if isinstance(source, dict) and isinstance(source.get("execution_name"), str):
            return source["execution_name"]
    return ""


class Interleaving:
    """A's run, with B started (to its end) when A reaches ``boundary``; every Deployment write attributed to the
    execution whose handler made it."""

    def __init__(self, albgate: Albgate, boundary: str) -> None:
        self.albgate, self.boundary = albgate, boundary
        self.writes: Counter[str] = Counter()
        self.b: ExecutionResult | None = None
        self.starts = 0

    def run_b(self) -> None:
        assert self.b is None, "B runs once"
        request = self.albgate.sim.rollout_request().model_dump(mode="json")
        request["image"] = NEXT
        self.b = self.albgate.machine.run(request, "b-by-hand", on_task_token=lambda token: token.succeed({}))

    def fault(self, logical_id: str, event: dict, deliver: Callable[[], Any]) -> Any:
        name = execution_of(event)
        a = name == "a-by-hand"
        if a and self.boundary == "before-preflight" and "Preflight" in logical_id and self.b is None:
            self.run_b()
        calls = self.albgate.sim.ports.kube.calls
        before = sum(calls[m] for m in WRITES)
        out = deliver()
        self.writes[name] += sum(calls[m] for m in WRITES) - before
        if not a:
            return out
        if self.boundary == "after-preflight" and "Preflight" in logical_id and self.b is None:
            self.run_b()
        if "StartStep" in logical_id:
            self.starts += 1
            if self.boundary == "after-start-step-1" and self.starts == 1:
                self.run_b()
            if self.boundary == "during-rollback" and out.get("mode") == "rollback" and self.b is None:
                self.run_b()
        if (self.boundary == "during-bake" and self.b is None and "VerifyDrain" in logical_id
                and out.get("bake_seconds", 0) > 0):
            self.run_b()
        return out

    def answer(self, token: TaskTokenRequest) -> None:
        """A's approval: B comes while a person is still deciding; the person approves, or rejects to roll back."""
        if self.boundary == "during-approval" and self.b is None:
            self.run_b()
        if self.boundary == "during-rollback":
            token.fail("ApprovalRejected", "rejected to roll back")
        else:
            token.succeed({})


BOUNDARIES = [
    # id, A's policy, A's end, the image the Deployment ends on, whether B ran (else it was refused)
    pytest.param("before-preflight", {}, "SUCCEEDED", NEW, True, id="b-before-a-takes-the-lease"),
    pytest.param("after-preflight", {}, "SUCCEEDED", NEW, False, id="b-after-a-preflight"),
    pytest.param("after-start-step-1", {}, "SUCCEEDED", NEW, False, id="b-after-a-start-step"),
    pytest.param("during-approval", {"approval_before_steps": [2]}, "SUCCEEDED", NEW, False,
                 id="b-during-a-approval-wait"),
    pytest.param("during-bake", {"bake_seconds": 120}, "SUCCEEDED", NEW, False, id="b-during-a-bake"),
    pytest.param("during-rollback", {"approval_before_steps": [2]}, "FAILED", OLD, False,
                 id="b-during-a-rollback"),
]


@pytest.mark.parametrize("boundary,policy,a_status,image,b_ran", BOUNDARIES)
def test_a_second_execution_never_rolls_a_deployment_another_one_holds(template, boundary, policy, a_status, image,
                                                                       b_ran):
    with albgate_on_seed_app(template) as albgate:
        race = Interleaving(albgate, boundary)
        # Given execution A (v2) started by hand, and B (v3) started by hand when A reaches the boundary
        a = albgate.roll("a-by-hand", policy=policy, answer=race.answer, fault=race.fault)
        b = race.b
        assert b is not None, "B never started: the boundary was not reached"
        # Then A ran to its end as if alone, and the Deployment ends on A's image (v2, or v1 after its rollback)
        assert a.status == a_status, (a.error, a.cause)
        if a_status == "FAILED":
            assert a.error == "RolledBack" and "Rollback: Start Step" in a.visited
        assert albgate.image() == image
        assert set(albgate.replica_sets_with_pods().values()) == {image}
        assert albgate.sim.traffic.failed_requests == 0
        if b_ran:
            # B held the Deployment first and rolled it to its end before A took the lease over
            assert b.status == "SUCCEEDED" and race.writes["b-by-hand"] > 0
        else:
            # And B was refused before it read or changed anything, naming A and A's console page
            assert (b.status, b.error, b.visited) == ("FAILED", "UnsafeConfigurationError",
                                                      ["Preflight", "Rollout Refused"])
            assert "a-by-hand" in b.cause and "/states/home?region=us-east-1#/v2/executions/details/" in b.cause
            assert execution_arn(albgate.machine.state_machine_arn, "a-by-hand") in b.cause
            # And exactly one rollout changed the cluster
            assert race.writes["b-by-hand"] == 0 and race.writes["a-by-hand"] > 0


# ---------------------------------------------------------------------------------------------------------
# The lease is released by the execution's own terminal status, whatever it is
# ---------------------------------------------------------------------------------------------------------
def release_deps(albgate: Albgate) -> tuple[EventSettings, TriggerPorts]:
    """ExecutionEvents as the stack deploys it without an ECR repository: the lease table, no bus."""
    machine = albgate.machine
    settings = EventSettings.from_environ({"ALBGATE_STATE_MACHINE_ARN": machine.state_machine_arn,
                                           "ALBGATE_LOCK_TABLE": "albgate-local-leases"})
    return settings, TriggerPorts(machine.leases, StepFunctionsStarter(region=settings.region), None,
                                  albgate.sim.clock.now)


def stop_after_first_start_step(albgate: Albgate) -> Callable[[str, dict, Callable[[], Any]], Any]:
    def fault(logical_id: str, event: dict, deliver: Callable[[], Any]) -> Any:
        out = deliver()
        if "StartStep" in logical_id:
            albgate.machine.stop("Stopped", "stopped by a person mid-rollout")
        return out

    return fault


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED", "FAILED", "SUCCEEDED"])
def test_every_terminal_status_releases_the_lease_of_its_execution(template, status):
    with albgate_on_seed_app(template) as albgate:
        # Given an execution that took the Deployment's lease and ended mid-rollout
        request = albgate.sim.rollout_request()
        ended = albgate.roll("ends-mid-rollout", fault=stop_after_first_start_step(albgate))
        assert ended.status == "ABORTED"
        key = lease_key(request.cluster, request.namespace, request.deployment)
        assert albgate.machine.leases.get(key).execution_name == "ends-mid-rollout"
        # When Step Functions sends its status-change event with that terminal status
        settings, deps = release_deps(albgate)
        arn = execution_arn(albgate.machine.state_machine_arn, "ends-mid-rollout")
        event = status_event(albgate.machine.state_machine_arn,
                             {"executionArn": arn, "name": "ends-mid-rollout",
                              "input": request.model_dump_json()}, status)
        answer = handle_execution_event(event, settings, deps)
        # Then the lease is gone; a replay of the event changes nothing
        assert answer["lock"] == {"lock": "released"}
        assert albgate.machine.leases.get(key) is None
        assert handle_execution_event(event, settings, deps)["lock"] == {"lock": "free"}


def test_the_end_of_a_refused_execution_leaves_the_holders_lease(template):
    with albgate_on_seed_app(template) as albgate:
        race = Interleaving(albgate, "after-preflight")
        settings, deps = release_deps(albgate)
        request = albgate.sim.rollout_request()
        key = lease_key(request.cluster, request.namespace, request.deployment)
        seen: list[str | None] = []

        def fault(logical_id: str, event: dict, deliver: Callable[[], Any]) -> Any:
            out = race.fault(logical_id, event, deliver)
            if race.b is not None and not seen:
                # When B's (refused) end event arrives while A still runs
                b = race.b
                event_b = status_event(albgate.machine.state_machine_arn, {
                    "executionArn": execution_arn(albgate.machine.state_machine_arn, b.name), "name": b.name,
                    "input": request.model_copy(update={"image": NEXT}).model_dump_json()}, "FAILED",
                    error=b.error, cause=b.cause)
                handle_execution_event(event_b, settings, deps)
                seen.append(albgate.machine.leases.get(key).execution_name)
            return out

        a = albgate.roll("a-by-hand", fault=fault)
        # Then A's lease stayed A's, and A finished
        assert seen == ["a-by-hand"] and a.status == "SUCCEEDED"


# ---------------------------------------------------------------------------------------------------------
# Start Step writes only a Deployment nobody else changed
# ---------------------------------------------------------------------------------------------------------
def test_a_deployment_changed_between_preflight_and_start_step_fails_the_step_and_keeps_the_change(template):
    with albgate_on_seed_app(template) as albgate:
        dep = albgate.deployment()
        container = albgate.sim.scenario.rollout_container

        def someone_sets_the_image(logical_id: str, event: dict, deliver: Callable[[], Any]) -> Any:
            out = deliver()
            if "Preflight" in logical_id:
                # kubectl set image, between A's Preflight and its first Start Step
                from lambdas.domain.ports import DeploymentPatch

                albgate.sim.ports.kube.patch_deployment(dep.namespace, dep.name,
                                                        DeploymentPatch(images={container: NEXT}))
            return out

        # Given a rollout of v2 whose Deployment a person moves to v3 right after Preflight read v1
        result = albgate.roll("a-by-hand", fault=someone_sets_the_image)
        # Then its first Start Step writes nothing: a permanent error naming what changed, nothing to undo
        assert (result.status, result.error, result.visited[-1]) == ("FAILED", "UnsafeConfigurationError",
                                                                      "Rollout Failed")
        assert "Deployment changed under this rollout before step 1" in result.cause
        assert f"runs {NEXT!r}" in result.cause or NEXT in result.cause
        albgate.sim.advance(300)
        # And the person's change stands: albgate did not write over it
        assert albgate.image() == NEXT
        assert not albgate.deployment().annotations.get("albgate.io/rollout", "").startswith("a-by-hand@")
