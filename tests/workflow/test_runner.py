"""The local runner executes the synthesized tiny state machine (conftest.py) as Step Functions would.

Each test gives the state machine an input that steers the handlers, runs it through moto with a virtual
clock, and checks the path (visited states), the outcome, the simulated time and the history.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from albgate.sfn_local.extract import ExtractedMachine
from albgate.sfn_local.runner import (
    LambdaFault,
    LambdaTimeout,
    LocalRunnerError,
    LocalStateMachine,
    TaskTokenRequest,
    UnansweredTaskToken,
)
from tests.workflow import handlers
from tests.workflow.conftest import (
    POLL_TIMEOUT_SECONDS,
    RETRY_BACKOFF,
    RETRY_INTERVAL,
    RETRY_MAX_ATTEMPTS,
    VirtualClock,
)

LOOP = ["Check", "Done?", "Wait For Poll"]
TAIL = ["Check", "Done?", "Flaky Step", "Wait For Approval", "Done"]


def approve(request: TaskTokenRequest) -> None:
    request.succeed({"approved_by": "test"})


@pytest.fixture(scope="module")
def machine(tiny_machine: ExtractedMachine):
    with LocalStateMachine(tiny_machine, VirtualClock(), on_task_token=approve) as opened:
        yield opened


def fid(extracted: ExtractedMachine, handler: str) -> str:
    """Logical id of the function whose Handler ends in ``handler`` (CDK appends a hash to the id)."""
    (found,) = [k for k, v in extracted.functions.items() if v.endswith(f".{handler}")]
    return found


def state(**overrides) -> dict:
    return {"run_id": uuid.uuid4().hex, "polls_needed": 1, "wait_seconds": 60, **overrides}


# --- Wait loop on the simulated clock ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("polls_needed", "wait_seconds", "expected_sleeps"),
    [
        pytest.param(1, 3600, [], id="done-at-first-poll"),
        pytest.param(4, 3600, [3600, 3600, 3600], id="three-hour-long-waits"),
        pytest.param(3, 0, [], id="zero-second-waits-do-not-sleep"),
    ],
)
def test_poll_loop_waits_on_the_virtual_clock(machine, clock, polls_needed, wait_seconds, expected_sleeps):
    # Given a poll that reports DONE at its n-th turn, waiting SecondsPath=$.wait_seconds between turns
    started = time.perf_counter()
    # When the state machine runs
    s = state(polls_needed=polls_needed, wait_seconds=wait_seconds)
    result = machine.run(s, name=uuid.uuid4().hex, clock=clock)
    # Then it loops n times, simulated time moves by exactly the waits, and real time stays small
    assert result.status == "SUCCEEDED", result.cause
    assert result.visited == LOOP * (polls_needed - 1) + TAIL
    assert result.output["polls"] == polls_needed
    assert clock.sleeps == expected_sleeps
    assert result.simulated_seconds == sum(expected_sleeps)
    assert time.perf_counter() - started < 5


# --- Retry with backoff, Catch into Fail -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("throttled", "expected_sleeps"),
    [
        pytest.param(0, [], id="no-error-no-retry"),
        pytest.param(1, [RETRY_INTERVAL], id="one-retry"),
        pytest.param(2, [RETRY_INTERVAL, RETRY_INTERVAL * RETRY_BACKOFF], id="backoff-doubles"),
    ],
)
def test_retry_on_a_domain_error_class_name_backs_off_on_the_clock(machine, clock, throttled, expected_sleeps):
    # Given a step that raises ThrottledError (a RetryableError leaf) `throttled` times, then succeeds
    # When the state machine runs
    result = machine.run(state(throttled=throttled), name=uuid.uuid4().hex, clock=clock)
    # Then the Retry on the class name re-invokes it after IntervalSeconds x BackoffRate^n of simulated time
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["flaky_attempts"] == throttled + 1
    assert result.retries == throttled
    assert clock.sleeps == expected_sleeps


@pytest.mark.parametrize(
    ("overrides", "error", "message", "attempts", "expected_sleeps"),
    [
        pytest.param(
            {"throttled": 99},
            "ThrottledError",
            "Rate exceeded",
            1 + RETRY_MAX_ATTEMPTS,
            [RETRY_INTERVAL * RETRY_BACKOFF**n for n in range(RETRY_MAX_ATTEMPTS)],
            id="retries-exhausted",
        ),
        pytest.param(
            {"invalid": True}, "InvalidInputError", "policy.steps must not be empty", 1, [], id="permanent-not-retried"
        ),
    ],
)
def test_catch_routes_to_a_fail_with_error_and_cause(
    machine, clock, overrides, error, message, attempts, expected_sleeps
):
    # Given a step whose error is not (or no longer) retried, caught by States.ALL into `Step Failed`
    s = state(**overrides)
    # When the state machine runs
    result = machine.run(s, name=uuid.uuid4().hex, clock=clock)
    # Then the Fail state reports the exception's class name as error and Lambda's error payload as cause
    assert result.status == "FAILED"
    assert result.visited[-2:] == ["Flaky Step", "Step Failed"]
    assert result.error == error
    cause = json.loads(result.cause)
    assert (cause["errorType"], cause["errorMessage"]) == (error, message)
    assert handlers.ATTEMPTS[(s["run_id"], "flaky")] == attempts
    assert clock.sleeps == expected_sleeps


# --- task tokens ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "status", "error", "event_type"),
    [
        pytest.param(lambda r: r.succeed({"approved_by": "alice"}), "SUCCEEDED", None, "TaskSucceeded", id="approve"),
        pytest.param(lambda r: r.fail("Rejected", "not today"), "FAILED", "Rejected", "TaskFailed", id="reject"),
        pytest.param(lambda r: r.time_out(), "FAILED", "States.Timeout", "TaskTimedOut", id="time-out"),
    ],
)
def test_wait_for_task_token_is_answered_by_the_caller(machine, clock, tiny_machine, answer, status, error, event_type):
    # Given a person who takes ten simulated minutes to answer the approval request
    seen: list[TaskTokenRequest] = []

    def person(request: TaskTokenRequest) -> None:
        seen.append(request)
        clock.sleep(600)
        answer(request)

    # When the state machine reaches `Wait For Approval`
    result = machine.run(state(), name=uuid.uuid4().hex, clock=clock, on_task_token=person)
    # Then the callback got the token the Lambda received, and the answer decides the task's outcome
    (request,) = seen
    assert request.state_name == "Wait For Approval"
    assert request.function_logical_id == fid(tiny_machine, "request_approval")
    assert request.payload["task_token"] == request.token
    assert (result.status, result.error) == (status, error)
    assert event_type in [e["type"] for e in result.history]
    assert result.simulated_seconds == 600
    if status == "SUCCEEDED":
        assert result.output["approval"] == {"approved_by": "alice"}
    else:
        assert result.visited[-1] == "Not Approved"


def test_an_unanswered_task_token_fails_the_run_loudly(machine, clock):
    # Given a callback that looks at the request and does not answer it
    # When the state machine reaches `Wait For Approval`
    with pytest.raises(UnansweredTaskToken, match="nobody answered"):
        machine.run(state(), name=uuid.uuid4().hex, clock=clock, on_task_token=lambda request: None)
    # Then the machine is released and usable again
    assert machine.run(state(), name=uuid.uuid4().hex, clock=clock).status == "SUCCEEDED"


# --- faults injected through the invoke hook -------------------------------------------------------------
def test_a_lambda_timeout_lasts_the_function_timeout_and_is_retried(machine, clock, tiny_machine):
    # Given the first Check invocation runs past the Poll function's Timeout
    poll_id = fid(tiny_machine, "poll")
    calls: list[str] = []

    def invoke(function_id: str, handler: str, event: dict):
        calls.append(function_id)
        if function_id == poll_id and calls.count(poll_id) == 1:
            raise LambdaTimeout()
        return machine.invoke_handler(function_id, handler, event)

    # When the state machine runs
    result = machine.run(state(), name=uuid.uuid4().hex, clock=clock, invoke=invoke)
    # Then the attempt took the function's Timeout of simulated time, then Retry on Sandbox.Timedout (1 s)
    assert result.status == "SUCCEEDED", result.cause
    assert clock.sleeps == [POLL_TIMEOUT_SECONDS, 1]
    assert [i.error_type for i in result.invocations if i.function_logical_id == poll_id] == ["Sandbox.Timedout", None]
    failed = next(e for e in result.history if e["type"] == "LambdaFunctionFailed")
    details = failed["lambdaFunctionFailedEventDetails"]
    assert details["error"] == "Sandbox.Timedout"
    assert f"Task timed out after {POLL_TIMEOUT_SECONDS}.00 seconds" in json.loads(details["cause"])["errorMessage"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        pytest.param(lambda: LambdaTimeout(), "Sandbox.Timedout", id="timeouts-exhaust-the-retry"),
        pytest.param(
            lambda: LambdaTimeout(error_type="Lambda.Unknown"), "Lambda.Unknown", id="legacy-name-not-retried"
        ),
        pytest.param(
            lambda: LambdaFault("Runtime.ExitError", "exit status 137"), "Runtime.ExitError", id="any-error-type"
        ),
    ],
)
def test_an_injected_fault_surfaces_with_its_error_name(machine, clock, tiny_machine, fault, error):
    # Given every Check invocation fails with the fault (Check retries only Sandbox.Timedout, and catches nothing)
    poll_id = fid(tiny_machine, "poll")

    def invoke(function_id: str, handler: str, event: dict):
        if function_id == poll_id:
            raise fault()
        return machine.invoke_handler(function_id, handler, event)

    # When the state machine runs
    result = machine.run(state(), name=uuid.uuid4().hex, clock=clock, invoke=invoke)
    # Then the execution fails with that error name
    assert (result.status, result.error) == ("FAILED", error)
    assert result.visited == ["Check"]


def test_a_duplicated_invocation_reaches_the_handler_twice(machine, clock, tiny_machine):
    # Given Lambda delivers the Flaky Step's event twice (at-least-once), the first answer being lost
    flaky_id = fid(tiny_machine, "flaky")

    def invoke(function_id: str, handler: str, event: dict):
        if function_id == flaky_id:
            machine.invoke_handler(function_id, handler, event)
        return machine.invoke_handler(function_id, handler, event)

    s = state()
    # When the state machine runs
    result = machine.run(s, name=uuid.uuid4().hex, clock=clock, invoke=invoke)
    # Then Step Functions scheduled the task once while the handler ran twice
    assert result.status == "SUCCEEDED"
    assert handlers.ATTEMPTS[(s["run_id"], "flaky")] == 2
    assert [e["type"] for e in result.history].count("LambdaFunctionScheduled") == 2  # Check + Flaky Step


# --- what a result carries --------------------------------------------------------------------------------
def test_state_transitions_count_entered_states_and_retries(machine, clock):
    # Given two polls (one Wait) and one retried throttle
    # When the state machine runs
    result = machine.run(state(polls_needed=2, throttled=1), name=uuid.uuid4().hex, clock=clock)
    # Then transitions = 8 states entered + 1 retry, as Standard workflows bill them
    assert result.visited == LOOP + TAIL
    assert (len(result.visited), result.retries, result.state_transitions) == (8, 1, 9)


def test_history_is_read_from_the_backend_in_simulated_time(machine, clock):
    # Given a run with one 45-second wait and a 2-second backoff
    # When the state machine runs
    result = machine.run(state(polls_needed=2, wait_seconds=45, throttled=1), name=uuid.uuid4().hex, clock=clock)
    # Then the history reads like AWS's, stamped with the virtual clock
    types = [e["type"] for e in result.history]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert [e["id"] for e in result.history] == list(range(1, len(types) + 1))
    assert result.history[0]["timestamp"] == "2023-11-14T22:13:20.000Z"  # VirtualClock's start, 1_700_000_000
    assert result.history[-1]["timestamp"] == "2023-11-14T22:14:07.000Z"  # + 45 + 2
    assert types.count("WaitStateEntered") == 1


def test_handlers_get_a_lambda_like_context(machine, clock, tiny_machine):
    # Given the Poll handler records its context
    handlers.CONTEXTS.clear()
    # When the state machine runs
    machine.run(state(), name=uuid.uuid4().hex, clock=clock)
    # Then the context names the function and counts its remaining time on the simulated clock
    (context,) = handlers.CONTEXTS
    poll_id = fid(tiny_machine, "poll")
    assert context.function_name == poll_id
    assert context.invoked_function_arn.endswith(f":function:{poll_id}")
    assert context.memory_limit_in_mb == 256
    assert context.get_remaining_time_in_millis() == POLL_TIMEOUT_SECONDS * 1000
    assert uuid.UUID(context.aws_request_id)


def test_stop_aborts_the_execution(machine, clock, tiny_machine):
    # Given a step that asks the runner to stop the execution (as StopExecution would)
    flaky_id = fid(tiny_machine, "flaky")

    def invoke(function_id: str, handler: str, event: dict):
        if function_id == flaky_id:
            machine.stop(error="Operator", cause="stopped by hand")
        return machine.invoke_handler(function_id, handler, event)

    # When the state machine runs
    result = machine.run(state(), name=uuid.uuid4().hex, clock=clock, invoke=invoke)
    # Then it ends ABORTED without reaching the approval
    assert result.status == "ABORTED"
    assert "Wait For Approval" not in result.visited


# --- failures of the runner itself are not state machine failures ---------------------------------------
def test_a_clock_error_raises_instead_of_passing_for_a_state_machine_failure(machine):
    # Given a simulation clock that breaks when asked to sleep
    class BrokenClock(VirtualClock):
        def sleep(self, seconds: float) -> None:
            raise ZeroDivisionError("simulation bug")

    # When a Wait needs it
    with pytest.raises(LocalRunnerError, match="simulation bug"):
        machine.run(state(polls_needed=2), name=uuid.uuid4().hex, clock=BrokenClock())


def test_an_unimportable_handler_fails_when_the_machine_is_built(tiny_machine, clock):
    # Given a template whose Handler names a function that does not exist
    broken = ExtractedMachine(
        tiny_machine.state_machine_logical_id,
        tiny_machine.definition,
        {**tiny_machine.functions, fid(tiny_machine, "poll"): "tests.workflow.handlers.no_such_handler"},
        tiny_machine.function_settings,
    )
    # When the runner is built, Then it refuses at once, naming the handler
    with pytest.raises(LocalRunnerError, match="no_such_handler"):
        LocalStateMachine(broken, clock)


def test_only_one_machine_is_open_per_process(machine, tiny_machine, clock):
    # Given the module's machine is open (moto's hooks are process-wide)
    # When a second one opens, Then it is refused with the reason
    with pytest.raises(RuntimeError, match="one at a time"):
        LocalStateMachine(tiny_machine, clock).open()
