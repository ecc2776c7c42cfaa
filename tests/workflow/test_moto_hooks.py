"""Smoke tests of every moto internal the runner touches: each fails with a message that names the hook, the
moto file and what changed, so a moto upgrade that breaks a hook is caught here first.

Two layers per hook: its contract (the target exists, takes the parameters the hook was written for, and its
call sites still contain the code the hook relies on), then its behaviour through a hand-written
definition (no CDK: these run in well under a second).
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from pathlib import Path

import moto
import pytest

from albgate.sfn_local import moto_hooks
from albgate.sfn_local.extract import ExtractedMachine, FunctionSettings, lambda_arn
from albgate.sfn_local.runner import LocalRunnerError, LocalStateMachine
from tests.workflow.conftest import VirtualClock

REPO = Path(__file__).resolve().parents[2]
FLAKE, APPROVE, APPROVE_HB = "Flake", "Approve", "ApproveHb"
REAL_TIMEOUT_SECONDS = 15  # a hook that lets moto wait on real time fails the test after this, not after hours
DEFINITION = {
    "StartAt": "Wait A Day",
    "States": {
        "Wait A Day": {"Type": "Wait", "Seconds": 86400, "Next": "Wait From Input"},
        "Wait From Input": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Flake"},
        "Flake": {
            "Type": "Task",
            "Resource": lambda_arn(FLAKE),
            "Retry": [{"ErrorEquals": ["FlakeError"], "IntervalSeconds": 5, "BackoffRate": 3, "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Give Up"}],
            "ResultPath": "$.flake",
            "Next": "Approve",
        },
        "Approve": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": lambda_arn(APPROVE), "Payload": {"task_token.$": "$$.Task.Token"}},
            "TimeoutSeconds": 3600,
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Give Up"}],
            "ResultPath": "$.approval",
            "Next": "Approve With Heartbeat",
        },
        "Approve With Heartbeat": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": lambda_arn(APPROVE_HB), "Payload": {"task_token.$": "$$.Task.Token"}},
            "HeartbeatSeconds": 600,
            "TimeoutSeconds": 3600,
            "ResultPath": "$.approval_with_heartbeat",
            "Next": "Done",
        },
        "Give Up": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
        "Done": {"Type": "Succeed"},
    },
}
HAND_MACHINE = ExtractedMachine(
    "HandWritten",
    DEFINITION,
    {
        FLAKE: "tests.workflow.handlers.flake",
        APPROVE: "tests.workflow.handlers.request_approval",
        APPROVE_HB: "tests.workflow.handlers.request_approval",
    },
    {FLAKE: FunctionSettings(timeout_seconds=5)},
)


@pytest.fixture(scope="module")
def machine():
    with LocalStateMachine(
        HAND_MACHINE,
        VirtualClock(),
        on_task_token=lambda request: request.succeed({"by": request.state_name}),
        real_timeout_seconds=REAL_TIMEOUT_SECONDS,
    ) as opened:
        yield opened


def run(machine: LocalStateMachine, clock: VirtualClock, **state):
    return machine.run({"run_id": uuid.uuid4().hex, "wait": 7, **state}, name=uuid.uuid4().hex, clock=clock)


# --- contracts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*moto_hooks.HOOK_TARGETS, *moto_hooks.ACCESSOR_TARGETS])
def test_every_hooked_internal_still_has_its_shape(name):
    # Given the installed moto, When the hook's target is checked, Then nothing has moved or been re-signed
    moto_hooks.verify_target(name)


def test_moto_is_pinned_where_the_hooks_were_written():
    # Given the hooks were written against one moto version
    # Then the venv has it and requirements.txt pins the same one
    assert moto.__version__ == moto_hooks.PINNED_MOTO_VERSION
    pins = re.findall(r"^moto(?:\[[^\]]*\])?==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    assert pins == [moto_hooks.PINNED_MOTO_VERSION]


@pytest.mark.parametrize("name", list(moto_hooks.HOOK_TARGETS))
def test_each_hook_target_has_a_named_hook(name):
    # Given a hook target, Then a function of the same name builds its Patch and says what it replaces
    factory = getattr(moto_hooks, name)
    assert factory.__doc__.startswith("Replace")
    assert moto_hooks.HOOK_TARGETS[name].attribute in factory.__doc__


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        pytest.param(
            "wait_on_clock", {"parameters": ("self", "env", "seconds")}, r"now takes .*'wait_seconds'", id="re-signed"
        ),
        pytest.param("dispatch_lambda_invoke", {"attribute": "invoke_v2"}, r"no attribute 'invoke_v2'", id="renamed"),
        pytest.param(
            "retry_backoff_on_clock",
            {"call_sites": ((moto_hooks.RetrierDecl._eval_body, "asyncio.sleep(interval_seconds)"),)},
            r"no longer contains `asyncio.sleep",
            id="call-site-changed",
        ),
    ],
)
def test_a_changed_target_fails_loudly_with_what_to_recheck(monkeypatch, name, change, message):
    # Given moto changed the target of a hook (simulated by changing what the hook expects)
    target = moto_hooks.HOOK_TARGETS[name]
    monkeypatch.setitem(moto_hooks.HOOK_TARGETS, name, dataclasses.replace(target, **change))
    # When the hooks are verified (as LocalStateMachine.open does), Then the error names the hook and the file
    with pytest.raises(moto_hooks.MotoHookError, match=message) as raised:
        moto_hooks.verify_targets()
    assert name in str(raised.value) and ("moto/" in str(raised.value) or "site-packages" in str(raised.value))


# --- behaviour, one test per hook -------------------------------------------------------------------------
def test_wait_on_clock_sleeps_simulated_seconds_for_seconds_and_seconds_path(machine):
    # Given a day-long Wait and a SecondsPath Wait of 7 s
    clock, started = VirtualClock(), time.perf_counter()
    # When the definition runs
    result = run(machine, clock)
    # Then both advanced the virtual clock, in order, and no real day passed
    assert result.status == "SUCCEEDED", result.cause
    assert clock.sleeps == [86400, 7]
    assert time.perf_counter() - started < 2


def test_retry_backoff_on_clock_sleeps_interval_times_backoff(machine):
    # Given a task that fails twice with FlakeError, retried every 5 s with backoff 3
    clock = VirtualClock()
    # When the definition runs
    result = run(machine, clock, fail_times=2)
    # Then the backoff came from the virtual clock: 5 then 15 simulated seconds
    assert result.status == "SUCCEEDED", result.cause
    assert clock.sleeps == [86400, 7, 5, 15]


def test_dispatch_lambda_invoke_calls_the_handler_and_names_errors_by_class(machine):
    # Given a task whose handler raises FlakeError more often than the Retry allows
    # When the definition runs
    result = run(machine, VirtualClock(), fail_times=9)
    # Then the handler ran (it is not moto's echo) and its class name is the error name
    assert (result.status, result.error) == ("FAILED", "FlakeError")
    assert [i.error_type for i in result.invocations] == ["FlakeError"] * 3


def test_history_timestamps_on_clock_stamp_events_in_simulated_time(machine):
    # Given a clock that starts at 1_700_000_000 (2023-11-14T22:13:20Z)
    # When the definition runs
    result = run(machine, VirtualClock())
    # Then the first event is stamped at the start and the last one a day and 7 s later
    assert result.history[0]["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert result.history[-1]["timestamp"] == "2023-11-15T22:13:27.000Z"


def test_fail_state_passes_states_errors_reraises_a_caught_states_error(machine):
    # Given the approval times out (States.Timeout) and its Catch hands the error to a Fail with ErrorPath
    # When the definition runs
    result = machine.run(
        {"run_id": uuid.uuid4().hex, "wait": 0},
        name=uuid.uuid4().hex,
        clock=VirtualClock(),
        on_task_token=lambda request: request.time_out(),
    )
    # Then the execution fails with the caught States.Timeout, not with moto's States.Runtime
    assert (result.status, result.error) == ("FAILED", "States.Timeout")
    assert result.visited[-1] == "Give Up"


def test_early_answer_reaches_heartbeat_wait_ends_a_heartbeat_task_at_once(machine):
    # Given a task with HeartbeatSeconds=600 whose token is answered while its Lambda runs
    started = time.perf_counter()
    # When the definition runs
    result = run(machine, VirtualClock())
    # Then the answer ends the wait at once, not after 600 s of real time
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["approval_with_heartbeat"] == {"by": "Approve With Heartbeat"}
    assert time.perf_counter() - started < REAL_TIMEOUT_SECONDS


def test_time_out_is_refused_for_a_heartbeat_task(machine):
    # Given a person who lets the heartbeat task's token time out
    def answer(request):
        request.time_out() if request.state_name == "Approve With Heartbeat" else request.succeed()

    # When the definition runs, Then the runner refuses loudly instead of waiting on real time
    with pytest.raises(LocalRunnerError, match="HeartbeatSeconds"):
        machine.run({"run_id": "hb", "wait": 0}, name=uuid.uuid4().hex, clock=VirtualClock(), on_task_token=answer)


def test_caches_reuse_the_client_the_program_and_parsed_paths(machine):
    # Given two runs of the same definition, each invoking Lambda twice and evaluating the same paths
    def cached(name: str):
        target = moto_hooks.HOOK_TARGETS[name]
        return getattr(target.owner, target.attribute)

    # When they run
    run(machine, VirtualClock())
    run(machine, VirtualClock())
    # Then one boto3 client and one parsed program served them all, and parsed paths were reused
    assert list(cached("cache_boto_clients").cache) == [("us-east-1", "lambda")]
    assert len(cached("cache_definition_parse").cache) == 1
    assert cached("cache_json_path_parse").cache_info().hits > 0
    assert cached("cache_result_path_parse").cache_info().hits > 0


def test_no_interpreter_thread_outlives_a_run(machine):
    # Given a finished run
    run(machine, VirtualClock())
    # Then moto's thread list holds no live thread (outstanding tokens were released)
    assert moto_hooks.prune_finished_threads() == 0


def test_seeded_retry_jitter_draws_full_jitter_from_the_runners_generator():
    # Given moto's FULL jitter evaluated under the hook with a generator seeded by the runner
    import random
    from types import SimpleNamespace

    from moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl import (
        JitterStrategy,
        JitterStrategyDecl,
    )

    from albgate.sfn_local import moto_hooks

    def draws(seed: str) -> list[float]:
        rng = random.Random(seed)
        out = []
        patch = moto_hooks.seeded_retry_jitter(rng)  # installed alone (another test module may hold the set)
        patch.install()
        try:
            for interval in (2.0, 4.0, 8.0):
                env = SimpleNamespace(stack=[interval])
                JitterStrategyDecl(JitterStrategy.FULL)._eval_body(env)
                out.append(env.stack.pop())
        finally:
            patch.uninstall()
        return out

    # When the same execution's retries are drawn twice, and another execution's once
    first, again, other = draws("run-a"), draws("run-a"), draws("run-b")
    # Then the delays repeat exactly for the same seed, stay within [0, interval], and differ between runs
    assert first == again and first != other
    assert all(0 <= d <= i for d, i in zip(first, (2.0, 4.0, 8.0)))
    expected = random.Random("run-a")
    assert first == [expected.uniform(0, i) for i in (2.0, 4.0, 8.0)]
