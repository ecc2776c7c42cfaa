"""What the synthesized rollout state machine does when an approval is never answered, when Lambda's client
times out, and what an execution that stops mid-rollout leaves in the cluster.

Run by moto against the simulated cluster and ALB, with the real handlers (the same wiring as
``albgate.sim.albgate_strategy``), on the template the test session synthesized once. Several executions may run
against one world, so a test can stop a rollout and then watch the next one meet what it left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from albgate.sim.albgate_strategy import LAMBDA_SECONDS, SimClock, quiet_powertools
from albgate.sfn_local.extract import extract_state_machine
from albgate.sfn_local.runner import ExecutionResult, LambdaFault, LocalStateMachine, TaskTokenRequest
from albgate.sim import Simulation, load_scenario
from albgate.sim.strategies import bootstrap_hardened
from albgate.template import state_machine_id
from lambdas.domain.gatekeeper import keep_gates, rollout_holds
from lambdas.domain.ports import ALBGATE_GATE
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.handlers import _runtime

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
OLD, NEW, NEXT = "ikubernetes/myapp:v1", "ikubernetes/myapp:v2", "ikubernetes/myapp:v3"
APPROVAL_TIMEOUT_SECONDS = 24 * 3600  # `Wait For Approval`'s TimeoutSeconds, written out: a change must show here
CLIENT_TIMEOUT = "Lambda.ClientExecutionTimeoutException"

Fault = Callable[[str, dict, Callable[[], Any]], Any]  # (function logical id, event, deliver) -> result


@dataclass
class Albgate:
    """albgate's rollout state machine, open on one simulated world (the example app, hardened by bootstrap)."""

    sim: Simulation
    machine: LocalStateMachine
    asked: list[int] = field(default_factory=list)  # the step of every RequestApproval invocation, in order
    fault: Fault | None = None

    def roll(self, name: str, *, image: str = NEW, policy: dict | None = None,
             answer: Callable[[TaskTokenRequest], None] | None = None, fault: Fault | None = None) -> ExecutionResult:
        request = self.sim.rollout_request().model_dump(mode="json")
        request["image"] = image
        request["policy"] = {**request["policy"], **(policy or {})}
        self.asked, self.fault = [], fault
        return self.machine.run(request, name, on_task_token=answer or (lambda token: token.succeed({})))

    def never_answer(self, token: TaskTokenRequest) -> None:
        """Nobody answers: a day passes and the task's TimeoutSeconds ends the wait."""
        self.sim.advance(APPROVAL_TIMEOUT_SECONDS)
        token.time_out()

    def _invoke(self, logical_id: str, handler: str, event: Any) -> Any:
        self.sim.advance(LAMBDA_SECONDS)
        if "RequestApproval" in logical_id:
            self.asked.append(event["state"]["next_step"] + 1)

        def deliver() -> Any:
            return self.machine.invoke_handler(logical_id, handler, event)

        return self.fault(logical_id, event, deliver) if self.fault else deliver()

    # --- what the cluster looks like -------------------------------------------------------------------
    def deployment(self):
        sc = self.sim.scenario
        return self.sim.ports.kube.get_deployment(sc.namespace.name, sc.app.deployment)

    def image(self) -> str:
        return self.sim.current_image()

    def replica_sets_with_pods(self) -> dict[str, str]:
        """ReplicaSets that have (or want) pods -> the image they run."""
        dep, container = self.deployment(), self.sim.scenario.rollout_container
        return {
            rs.name: rs.template.container(container).image
            for rs in self.sim.ports.kube.list_replica_sets(dep.namespace, dep.name)
            if rs.replicas > 0
        }

    def live_pods(self, image: str) -> list:
        dep = self.deployment()
        owners = {n for n, i in self.replica_sets_with_pods().items() if i == image}
        return [p for p in self.sim.ports.kube.list_pods(dep.namespace, dep.selector)
                if p.owner_replica_set in owners and not p.terminating]


@contextmanager
def albgate_on_seed_app(template: dict) -> Iterator[Albgate]:
    with quiet_powertools():
        sim = Simulation(bootstrap_hardened(load_scenario(SCENARIOS / "seed-app.yaml")))
        sim.run_until(sim.rollout_start)
        extracted = extract_state_machine(template, state_machine_id(template))
        _runtime.use_ports(lambda cluster: sim.ports)
        try:
            holder: list[Albgate] = []
            with LocalStateMachine(extracted, SimClock(sim), invoke=lambda *a: holder[0]._invoke(*a)) as machine:
                holder.append(Albgate(sim, machine))
                yield holder[0]
        finally:
            _runtime.use_ports(None)


# ---------------------------------------------------------------------------------------------------------
# An approval nobody answers
# ---------------------------------------------------------------------------------------------------------
UNANSWERED = [
    # id, policy, the Fail it ends in, the execution's error, the image the Deployment is left on
    pytest.param({"approval_before_steps": [2]}, "Rollout Rolled Back", "RolledBack", OLD,
                 id="before-step-2-rolls-back-through-the-gates"),
    pytest.param({"approval_before_steps": [1]}, "Rollout Failed", "ApprovalTimedOut", OLD,
                 id="before-step-1-nothing-to-undo"),
    pytest.param({"approval_before_steps": [2], "rollback_on_failure": False}, "Rollout Failed", "ApprovalTimedOut",
                 NEW, id="before-step-2-policy-without-rollback"),
]


@pytest.mark.parametrize("policy,end,error,image", UNANSWERED)
def test_an_unanswered_approval_counts_as_a_rejection_and_says_which_step(template, policy, end, error, image):
    step = policy["approval_before_steps"][0]
    with albgate_on_seed_app(template) as albgate:
        started = albgate.sim.clock.now()
        # Given a policy that asks for approval before `step`, and nobody who answers
        result = albgate.roll("unanswered-1", policy=policy, answer=albgate.never_answer)
        # Then the execution failed (not TIMED_OUT) through the rejection path, after one day's wait
        assert result.status == "FAILED", (result.status, result.cause)
        assert (result.error, result.visited[-1]) == (error, end)
        assert f"approval for step {step} not answered within 24 h" in result.cause
        assert "ApprovalTimedOut" in f"{result.error} {result.cause}"
        after = result.visited[result.visited.index("Wait For Approval") + 1:]
        assert after[:2] == ["Record Approval Timeout", "Roll Back?"]
        assert albgate.sim.clock.now() - started >= APPROVAL_TIMEOUT_SECONDS
        # And the person was asked once, never again: a timed-out wait is not retried
        assert albgate.asked == [step]
        assert result.visited.count("Wait For Approval") == 1
        # And the Deployment is where the path leaves it, with no request dropped
        assert albgate.image() == image
        assert albgate.sim.traffic.failed_requests == 0


def test_after_an_unanswered_approval_the_rollback_restores_the_deployment(template):
    with albgate_on_seed_app(template) as albgate:
        before = albgate.deployment()
        # Given step 1 rolled, then the approval before step 2 never answered
        result = albgate.roll("unanswered-2", policy={"approval_before_steps": [2]}, answer=albgate.never_answer)
        assert result.error == "RolledBack" and "Rollback: Verify Drain" in result.visited
        albgate.sim.advance(120)  # the last old pods' termination
        after = albgate.deployment()
        # Then only the previous version runs, every pod Ready, maxSurge restored and the hold cleared
        assert set(albgate.replica_sets_with_pods().values()) == {OLD}
        assert len([p for p in albgate.live_pods(OLD) if p.ready]) == before.replicas
        assert after.max_surge == before.max_surge
        assert after.annotations.get(ROLLOUT_ANNOTATION) == ""


# ---------------------------------------------------------------------------------------------------------
# Lambda's client times out
# ---------------------------------------------------------------------------------------------------------
def client_timeout_once(function: str, *, delivered: bool) -> Fault:
    """The first invocation of ``function`` fails with ``Lambda.ClientExecutionTimeoutException``; with
    ``delivered`` the handler ran first (its side effects happened, its answer was lost)."""
    seen: list[str] = []

    def fault(logical_id: str, event: dict, deliver: Callable[[], Any]) -> Any:
        if function in logical_id and not seen:
            seen.append(logical_id)
            if delivered:
                deliver()
            raise LambdaFault(CLIENT_TIMEOUT, "client execution timeout waiting for the Invoke answer")
        return deliver()

    return fault


CLIENT_TIMEOUTS = [
    # id, function whose first invocation fails, whether its handler ran, policy
    pytest.param("Preflight", False, {}, id="preflight"),
    pytest.param("StartStep", False, {}, id="start-step-never-reached"),
    pytest.param("ReleaseOldPods", True, {}, id="release-old-pods-answer-lost"),
    pytest.param("RequestApproval", False, {"approval_before_steps": [2]}, id="request-approval-asks-again"),
]


@pytest.mark.parametrize("function,delivered,policy", CLIENT_TIMEOUTS)
def test_a_client_execution_timeout_is_retried_and_the_rollout_succeeds(template, function, delivered, policy):
    with albgate_on_seed_app(template) as albgate:
        # Given the first invocation of one task's function ends in Lambda.ClientExecutionTimeoutException
        result = albgate.roll("client-timeout-1", policy=policy,
                              fault=client_timeout_once(function, delivered=delivered))
        # Then Step Functions retried it and the rollout finished on the new image, dropping nothing
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        calls = [i for i in result.invocations if function in i.function_logical_id]
        assert [c.error_type for c in calls[:2]] == [CLIENT_TIMEOUT, None]
        assert result.retries >= 1
        assert albgate.image() == NEW and set(albgate.replica_sets_with_pods().values()) == {NEW}
        assert albgate.sim.traffic.failed_requests == 0
        if function == "RequestApproval":  # the ask that failed never reached a person: asked again
            assert albgate.asked == [2, 2]


# ---------------------------------------------------------------------------------------------------------
# An execution that ends mid-rollout (TIMED_OUT or ABORTED) and what the next rollout does with it
# ---------------------------------------------------------------------------------------------------------
def stop_after_start_step(n: int, machine: LocalStateMachine) -> Fault:
    """Stop the execution (StopExecution) right after the n-th Start Step changed the Deployment."""
    starts: list[str] = []

    def fault(logical_id: str, event: dict, deliver: Callable[[], Any]) -> Any:
        out = deliver()
        if "StartStep" in logical_id:
            starts.append(logical_id)
            if len(starts) == n:
                machine.stop("Aborted", "stopped mid-rollout")
        return out

    return fault


def undo(albgate: Albgate, revision: int) -> None:
    """A person runs `kubectl rollout undo --to-revision`."""
    dep = albgate.deployment()
    albgate.sim.ports.kube.rollback_deployment(dep.namespace, dep.name, revision)
    albgate.sim.advance(120)


def wait_for_the_gate_keeper(albgate: Albgate, revision: int) -> None:
    """Nobody acts; the gate keeper runs every minute until the Deployment has one version left."""
    dep = albgate.deployment()
    for _ in range(90):
        albgate.sim.advance(60)
        keep_gates(albgate.sim.ports, dep.namespace, dep.name)
        if len(albgate.replica_sets_with_pods()) == 1 and all(p.ready for p in albgate.live_pods(NEW)):
            return
    raise AssertionError(f"still two versions after 90 minutes: {albgate.replica_sets_with_pods()}")


def test_the_gate_keeper_waits_for_an_approval_that_takes_hours(template):
    # Given a policy that asks before step 2, and a person who answers after three hours while the gate keeper
    # runs every minute, as it does on AWS
    watched: list[tuple[int, int]] = []  # (new pods Ready, new pods) at each minute of the wait

    def answer_late(token: TaskTokenRequest) -> None:
        dep = albgate.deployment()
        for _ in range(180):
            albgate.sim.advance(60)
            keep_gates(albgate.sim.ports, dep.namespace, dep.name)
            new = albgate.live_pods(NEW)
            watched.append((sum(p.ready for p in new), len(new)))
        token.succeed({})

    with albgate_on_seed_app(template) as albgate:
        result = albgate.roll("late-approval-1", policy={"approval_before_steps": [2]}, answer=answer_late)
        # Then, for the whole wait, only step 1's pods are Ready: the next step's surged pods stay behind the gate
        first_step = watched[0][0]
        assert first_step >= 1 and all(ready == first_step for ready, _ in watched), watched[::30]
        # and once approved, the rollout goes on through its own gates to the end, dropping nothing
        assert result.status == "SUCCEEDED", (result.status, result.cause)
        assert albgate.image() == NEW and albgate.sim.traffic.failed_requests == 0


RECOVERIES = [
    # id, what happens after the stop, the image the next rollout asks for
    pytest.param(undo, NEW, id="a-person-undoes-then-rolls-again"),
    pytest.param(wait_for_the_gate_keeper, NEXT, id="the-gate-keeper-rolls-forward-after-the-hold"),
]


@pytest.mark.parametrize("recover,next_image", RECOVERIES)
def test_an_execution_stopped_mid_rollout_leaves_its_step_behind_until_it_is_undone_or_rolled_forward(
    template, recover, next_image
):
    with albgate_on_seed_app(template) as albgate:
        before = albgate.deployment()
        # Given a rollout stopped right after step 2 of 3 started (a 48 h timeout or a StopExecution)
        result = albgate.roll("stopped-1", fault=stop_after_start_step(2, albgate.machine))
        assert result.status == "ABORTED" and result.visited[-1] == "Start Step"
        left = albgate.deployment()
        # Then the template runs the new image behind albgate's gate, maxSurge is step 2's batch (not restored),
        # and the hold annotation names the execution with a deadline still ahead
        assert albgate.image() == NEW and ALBGATE_GATE in left.template.readiness_gates
        assert (before.max_surge, left.max_surge, left.max_unavailable) == ("25%", 1, 0)
        hold = left.annotations[ROLLOUT_ANNOTATION]
        assert hold.startswith("stopped-1@") and rollout_holds(hold, albgate.sim.clock.now())
        # And both versions have pods: the old ones serve, step 2's new pod waits behind the closed gate
        assert set(albgate.replica_sets_with_pods().values()) == {OLD, NEW}
        assert any(p.condition(ALBGATE_GATE) != "True" for p in albgate.live_pods(NEW))
        assert all(p.ready for p in albgate.live_pods(OLD))

        # When the next rollout comes right away / Then Preflight refuses it and changes nothing
        refused = albgate.roll("next-too-soon", image=NEXT)
        assert (refused.visited[-1], refused.error) == ("Rollout Refused", "UnsafeConfigurationError")
        assert "already rolling" in refused.cause
        assert albgate.deployment().max_surge == 1 and albgate.image() == NEW

        # When the leftover step is undone or rolled forward, the next rollout goes through
        recover(albgate, before.revision)
        after = albgate.roll("next-1", image=next_image)
        assert after.status == "SUCCEEDED", (after.error, after.cause)
        assert set(albgate.replica_sets_with_pods().values()) == {next_image}
        # But maxSurge stays at the leftover batch: Preflight took it for the Deployment's own setting
        assert albgate.deployment().max_surge == 1
        assert albgate.sim.traffic.failed_requests == 0
