"""Run an extracted state machine in moto's Step Functions interpreter, with Lambda tasks dispatched to the
in-process handlers and every Wait and Retry backoff on a simulated clock.

Job: ``LocalStateMachine(extracted, clock, companions=...)`` opens ``moto.mock_aws`` (executions on, Docker
off), creates each called function under its logical id with the template's ``Handler`` and creates the state
machine and its companions (other state machines sharing the mock, e.g. the children a parent starts); then
``run(input, name, state_machine=...)`` executes one definition once and returns an ``ExecutionResult`` read from
the backend.

Invariants:
  * The interpreter is moto's; this module only feeds it. Every moto internal it needs goes through
    ``moto_hooks`` (installed while the machine is open, removed on close).
  * Simulated time only moves through ``clock.sleep``: Wait states, Retry backoff, an emulated Lambda timeout
    and whatever handlers, ``invoke`` hooks and ``on_task_token`` callbacks do. Real time is only spent
    computing, and a real-time guard (``real_timeout_seconds``) stops a run that hangs.
  * One execution at a time (the clock is shared; Waits in parallel branches would add up), one open machine
    per process (the hooks are process-wide). A second execution may be started from inside a running one's
    ``invoke`` hook or task-token callback: it runs to its end while the first waits at that boundary, which is
    how tests interleave two executions of one state machine at every boundary (the hooks' callbacks go to the
    innermost run: the outer one's interpreter thread is blocked in its hook meanwhile).
  * One function logical id is one function: machines may share a function only if they name the same
    ``Handler`` (and, when both declare them, the same settings); handlers, task-token states and function
    settings are looked up across every machine of the mock.
  * A handler exception is a Lambda function error with ``errorType`` = the exception's class name, as on
    AWS; a failure of the runner itself (clock, callback, missing handler) raises ``LocalRunnerError`` from
    ``run`` instead of passing for a state machine failure.
"""

from __future__ import annotations

import importlib
import json
import logging
import random
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Protocol

import boto3
from moto import mock_aws

from albgate.sfn_local import moto_hooks
from albgate.sfn_local.extract import ACCOUNT_ID, REGION, ExtractedMachine, FunctionSettings, lambda_arn

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/albgate-local-runner"
# What Lambda answers when a function times out (Invoke: 200, X-Amz-Function-Error: Unhandled). Current runtimes
# name it Sandbox.Timedout; the Step Functions guide still calls unhandled errors Lambda.Unknown (see
# docs/local-runner.md), so LambdaTimeout lets a test pick the name.
SANDBOX_TIMEDOUT = "Sandbox.Timedout"
UNHANDLED = "Unhandled"

Invoke = Callable[[str, str, Any], Any]  # (function logical id, Handler string, event) -> result
# albgate's rollout state machine takes a Deployment lease in Preflight (lambdas/handlers/_lease.py): the runner
# gives it a lease table in moto's DynamoDB.
LEASE_HANDLER = "lambdas.handlers.preflight.handler"
LOCAL_LEASE_TABLE = "albgate-local-leases"


class Clock(Protocol):
    def now(self) -> float:
        """Simulated seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Advance the simulation by ``seconds``, processing whatever happens meanwhile."""
        ...


class LocalRunnerError(RuntimeError):
    """The runner (not the state machine) failed: a hook, the clock, a callback, a missing handler, a hang."""


class UnansweredTaskToken(LocalRunnerError):
    """A ``.waitForTaskToken`` task got no answer: give ``on_task_token`` and have it succeed/fail/time out."""


class LambdaFault(Exception):
    """Raise from an ``invoke`` hook to make the invocation fail with exactly this ``errorType``."""

    def __init__(self, error_type: str, message: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class LambdaTimeout(LambdaFault):
    """Raise from an ``invoke`` hook to emulate the function running past its Timeout.

    The clock advances by ``seconds`` (default: the function's Timeout from the template) and Step Functions
    sees what Lambda returns for a timeout: ``{"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: ...
    Error: Task timed out after N.00 seconds"}``. Call ``machine.invoke_handler`` first to emulate a handler
    whose side effects happened although its answer was lost.
    """

    def __init__(self, seconds: float | None = None, error_type: str = SANDBOX_TIMEDOUT) -> None:
        super().__init__(error_type)
        self.seconds = seconds


@dataclass
class LambdaContext:
    """The parts of Lambda's Python context object handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    aws_request_id: str
    invoked_function_arn: str
    _deadline: float
    _clock: Clock
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock.now()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One Lambda invocation as the runner saw it (``at`` in simulated seconds)."""

    function_logical_id: str
    at: float
    request_id: str
    error_type: str | None = None


@dataclass
class TaskTokenRequest:
    """A ``.waitForTaskToken`` task delivered ``token`` to ``function_logical_id`` (whose event is ``payload``).

    Answer it exactly once with ``succeed``, ``fail`` or ``time_out`` (the callback may ``clock.sleep`` first,
    as a person would take time).
    """

    token: str
    function_logical_id: str
    state_name: str | None
    payload: Any
    _machine: LocalStateMachine = field(repr=False)
    answer: str | None = None
    state_machine: str = ""  # logical id of the state machine whose execution waits on the token

    def succeed(self, output: Any = None) -> None:
        self._answer("succeeded")
        self._machine.send_task_success(self.token, {} if output is None else output)

    def fail(self, error: str, cause: str = "") -> None:
        self._answer("failed")
        self._machine.send_task_failure(self.token, error, cause)

    def time_out(self) -> None:
        """The task fails with States.Timeout (a TaskTimedOut event), as when its TimeoutSeconds passes.

        Not for a task with HeartbeatSeconds: moto would go on waiting for heartbeats in real time, so this
        raises LocalRunnerError instead (docs/local-runner.md)."""
        if self._machine._has_heartbeat(self.state_machine, self.function_logical_id):
            raise LocalRunnerError(
                f"cannot time out the task token of {self.function_logical_id}: a state that calls it has "
                "HeartbeatSeconds, which moto waits for in real time; answer with fail(...) instead"
            )
        self._answer("timed_out")
        self._machine.time_out_task(self.token)

    def _answer(self, answer: str) -> None:
        if self.answer is not None:
            raise LocalRunnerError(f"task token of {self.function_logical_id} already answered ({self.answer})")
        self.answer = answer


OnTaskToken = Callable[[TaskTokenRequest], None]


@dataclass(frozen=True)
class ExecutionResult:
    name: str
    status: str  # SUCCEEDED | FAILED | ABORTED | TIMED_OUT
    output: Any
    error: str | None
    cause: str | None
    history: list[dict]
    visited: list[str]  # state names in the order they were entered
    state_transitions: int  # states entered + retries (Standard workflows bill each, retries included)
    retries: int
    invocations: list[Invocation]
    started_at: float  # simulated
    stopped_at: float  # simulated
    real_seconds: float

    @property
    def simulated_seconds(self) -> float:
        return self.stopped_at - self.started_at


@dataclass
class _Run:
    clock: Clock
    invoke: Invoke
    on_task_token: OnTaskToken | None
    name: str = ""
    state_machine: str = ""  # logical id
    real_start: float = 0.0
    started_at: float = 0.0
    execution: Any = None
    started: threading.Event = field(default_factory=threading.Event)
    invocations: list[Invocation] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def _event_buses(node: Any) -> set[str]:
    """Names of the custom event buses named by the definition's ``events:putEvents`` tasks."""
    found: set[str] = set()
    if isinstance(node, dict):
        if str(node.get("Resource", "")).startswith("arn:aws:states:::events:putEvents"):
            for entry in (node.get("Parameters") or {}).get("Entries") or []:
                name = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
                if name != "default":
                    found.add(name)
        for value in node.values():
            found |= _event_buses(value)
    elif isinstance(node, list):
        for value in node:
            found |= _event_buses(value)
    return found


class LocalStateMachine:
    """One synthesized state machine (and its companions), runnable locally. Use as a context manager::

        with LocalStateMachine(extract_state_machine(template), clock) as machine:
            result = machine.run({"request": ...}, name="rollout-1")

    ``companions`` are further state machines created in the same mock (their functions too), so an execution
    can start or describe them; ``run``/``begin`` pick one with ``state_machine=<logical id>``.
    """

    def __init__(
        self,
        extracted: ExtractedMachine,
        clock: Clock,
        invoke: Invoke | None = None,
        *,
        on_task_token: OnTaskToken | None = None,
        real_timeout_seconds: float = 120.0,
        quiet_moto_logs: bool = True,
        companions: Sequence[ExtractedMachine] = (),
    ) -> None:
        self.extracted = extracted
        self.companions = tuple(companions)
        self._machines: dict[str, ExtractedMachine] = {}
        for machine in (extracted, *self.companions):
            if machine.state_machine_logical_id in self._machines:
                raise LocalRunnerError(f"state machine {machine.state_machine_logical_id!r} is given twice")
            self._machines[machine.state_machine_logical_id] = machine
        self.functions, self._function_settings = _merge_functions(self._machines.values())
        self.clock = clock
        self.invoke = invoke
        self.on_task_token = on_task_token
        self.real_timeout_seconds = real_timeout_seconds
        self.quiet_moto_logs = quiet_moto_logs
        self._log_level: int | None = None
        self._handlers = {h: resolve_handler(h) for h in sorted(set(self.functions.values()))}
        # state machine logical id -> function logical id -> [(state name, state)] of its .waitForTaskToken tasks
        self._token_states = {
            sm_id: _wait_for_task_token_states(m.definition) for sm_id, m in self._machines.items()
        }
        self._run: _Run | None = None
        # Retry jitter (JitterStrategy FULL) draws from this, re-seeded with the execution name at each run.
        self._jitter = random.Random(0)
        self._mock: Any = None
        self._hooks: Any = None
        self._backend: Any = None
        self.state_machine_arn = ""  # the main one's
        self.state_machine_arns: dict[str, str] = {}  # logical id -> ARN, the main one first
        self.leases: Any = None  # the Deployment lease table's adapter, when the definition takes leases
        self.ended: dict[str, str] = {}  # execution ARN -> terminal status, of the runs moto has forgotten
        self.executions: Any = None
        self._lease_deps_installed = False

    # --- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> LocalStateMachine:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self._mock is not None:
            return
        hooks = moto_hooks.installed(
            [
                moto_hooks.dispatch_lambda_invoke(self._dispatch),
                moto_hooks.wait_on_clock(self._sleep),
                moto_hooks.retry_backoff_on_clock(self._sleep),
                moto_hooks.seeded_retry_jitter(self._jitter),
                moto_hooks.history_timestamps_on_clock(self._now),
                moto_hooks.fail_state_passes_states_errors(),
                moto_hooks.early_answer_reaches_heartbeat_wait(),
                moto_hooks.offer_service_task_tokens(self._offer_service_token),
                moto_hooks.cache_boto_clients(),
                moto_hooks.cache_definition_parse(),
                moto_hooks.cache_json_path_parse(),
                moto_hooks.cache_result_path_parse(),
            ]
        )
        hooks.__enter__()  # raises when another machine is open, before anything else changed
        self._hooks = hooks
        try:
            if self.quiet_moto_logs:  # the interpreter logs every Fail state and caught error at ERROR level
                self._log_level = _MOTO_SFN_LOG.level
                _MOTO_SFN_LOG.setLevel(logging.CRITICAL)
            mock = mock_aws(config=MOTO_CONFIG)
            mock.start()
            self._mock = mock
            self._create_resources()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release any waiting task, leave the mock and remove the hooks (idempotent)."""
        try:
            run = self._run
            if self._backend is not None and run is not None and run.execution is not None:
                self._release(run.execution, "closing the local runner")
            moto_hooks.prune_finished_threads()
        finally:
            if self._lease_deps_installed:
                from lambdas.handlers import _lease as take_lease

                take_lease.use_deps(None)
                self._lease_deps_installed = False
            if self._mock is not None:
                self._mock.stop()
                self._mock = None
            if self._log_level is not None:
                _MOTO_SFN_LOG.setLevel(self._log_level)
                self._log_level = None
            if self._hooks is not None:
                hooks, self._hooks = self._hooks, None
                hooks.__exit__(None, None, None)
            self._backend = None

    def _create_resources(self) -> None:
        code = _tiny_zip()
        # moto's CreateFunction checks that the role exists (and could be assumed by Lambda).
        boto3.client("iam", region_name=REGION).create_role(
            RoleName=ROLE_ARN.rsplit("/", 1)[1],
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
        lam = boto3.client("lambda", region_name=REGION)
        for logical_id, handler in self.functions.items():
            settings = self._settings(logical_id)
            lam.create_function(
                FunctionName=logical_id,
                Runtime="python3.12",
                Role=ROLE_ARN,
                Handler=handler,
                Code={"ZipFile": code},
                Timeout=settings.timeout_seconds,
                MemorySize=settings.memory_mb,
            )
        # The custom event buses the definition publishes to (events:putEvents tasks), so a PutEvents lands
        # in moto's EventBridge as it would on AWS; a test subscribes a queue to read what was published.
        events = boto3.client("events", region_name=REGION)
        existing = {b["Name"] for b in events.list_event_buses().get("EventBuses", [])}
        buses = set().union(*(_event_buses(m.definition) for m in self._machines.values()))
        for bus in sorted(buses - existing):
            events.create_event_bus(Name=bus)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for logical_id, machine in self._machines.items():
            created = sfn.create_state_machine(name=logical_id, definition=machine.definition_json, roleArn=ROLE_ARN)
            self.state_machine_arns[logical_id] = created["stateMachineArn"]
        self.state_machine_arn = self.state_machine_arns[self.extracted.state_machine_logical_id]
        self._backend = moto_hooks.parser_backend(ACCOUNT_ID, REGION)
        if LEASE_HANDLER in self.functions.values():
            self._open_lease_table()

    def _open_lease_table(self) -> None:
        """What Preflight's lease finds on AWS: the Deployment lease table (in moto's DynamoDB, through the
        real adapter) and DescribeExecution of this machine's executions (moto's), on the run's clock. A run that
        ended is forgotten by the backend, so the next execution finds its holder gone and takes the lease over,
        as it would once the holder ended; ``release_lease`` delivers a terminal status event instead."""
        from lambdas.adapters.dynamodb_lock import DynamoDbLock
        from lambdas.adapters.stepfunctions import StepFunctionsExecutions
        from lambdas.handlers import _lease as take_lease

        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName=LOCAL_LEASE_TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "lock_key", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "lock_key", "KeyType": "HASH"}],
        )
        self.leases = DynamoDbLock(LOCAL_LEASE_TABLE, client=ddb)
        self.executions = _RememberedExecutions(
            StepFunctionsExecutions(client=boto3.client("stepfunctions", region_name=REGION)), self.ended
        )
        take_lease.use_deps(take_lease.LeaseDeps(self.leases, self.executions, now=self._now))
        self._lease_deps_installed = True

    # --- running ---------------------------------------------------------------------------------------
    def run(
        self,
        input: Any,
        name: str,
        *,
        clock: Clock | None = None,
        invoke: Invoke | None = None,
        on_task_token: OnTaskToken | None = None,
        state_machine: str | None = None,
    ) -> ExecutionResult:
        """Execute once, to the end, and return what happened. ``clock``/``invoke``/``on_task_token`` override
        the machine's for this run only. ``name`` is the execution name (``$$.Execution.Name``); a finished run
        is forgotten by the backend, so names may repeat across runs. ``state_machine`` is the logical id of the
        one to execute (default: the main one)."""
        self.state_machine_id(state_machine)
        if self._backend is None:
            raise LocalRunnerError("open the machine first: `with LocalStateMachine(...) as machine:`")
        outer = self._run  # a run started from inside another's hook: that one waits at its boundary
        if outer is not None and threading.current_thread() is threading.main_thread():
            raise LocalRunnerError("one execution at a time: run() is already executing (start a second one from "
                                   "inside the first one's invoke hook or task-token callback)")
        run = self.begin(
            input, name, clock=clock, invoke=invoke, on_task_token=on_task_token, state_machine=state_machine
        )
        try:
            self._wait_until_done(run.execution, name)
            return self.result(run)
        finally:
            self.end(run)
            self._run = outer

    # --- the steps of a run, for a scheduler that interleaves several (albgate.sfn_local.interleave) ------
    def begin(
        self,
        input: Any,
        name: str,
        *,
        clock: Clock | None = None,
        invoke: Invoke | None = None,
        on_task_token: OnTaskToken | None = None,
        state_machine: str | None = None,
    ) -> _Run:
        """Start an execution of ``state_machine`` (logical id; default the main one) and make it the current
        run (the one the hooks' callbacks serve); it runs on moto's thread from here. Whoever begins a run must
        ``end`` it."""
        sm_id = self.state_machine_id(state_machine)
        if self._backend is None:
            raise LocalRunnerError("open the machine first: `with LocalStateMachine(...) as machine:`")
        run = self._run = _Run(
            clock=clock or self.clock,
            invoke=invoke or self.invoke or self.invoke_handler,
            on_task_token=on_task_token or self.on_task_token,
            name=name,
            state_machine=sm_id,
            real_start=time.perf_counter(),
        )
        self._jitter.seed(f"albgate-retry-jitter/{name}")
        run.started_at = run.clock.now()
        arn = self.state_machine_arns[sm_id]
        execution = moto_hooks.start_execution(self._backend, arn, name, json.dumps(input))
        run.execution = execution
        run.started.set()
        return run

    def state_machine_id(self, state_machine: str | None = None) -> str:
        """The logical id ``state_machine`` names (None: the main one); LocalRunnerError naming the known ones
        when it is none of this mock's state machines."""
        if state_machine is None:
            return self.extracted.state_machine_logical_id
        if state_machine not in self._machines:
            raise LocalRunnerError(
                f"no state machine {state_machine!r} in this local runner; it has {sorted(self._machines)}"
            )
        return state_machine

    def serve(self, run: _Run | None) -> None:
        """Make ``run`` the one the hooks' callbacks serve (a scheduler hands the turn to it; None when it is
        done, so ``run`` may be called again)."""
        self._run = run

    @property
    def current_run(self) -> _Run | None:
        return self._run

    @staticmethod
    def running(run: _Run) -> bool:
        return moto_hooks.execution_outcome(run.execution)[0] == "RUNNING"

    def result(self, run: _Run) -> ExecutionResult:
        """What a finished run did; raises LocalRunnerError when the runner itself failed during it."""
        stopped_at = run.clock.now()
        if run.errors:
            first = run.errors[0]
            if isinstance(first, LocalRunnerError):
                raise first
            raise LocalRunnerError(f"execution {run.name!r}: {first!r}") from first
        history = moto_hooks.execution_history(run.execution)
        visited, retries = _walk(history)
        status, output, error, cause = moto_hooks.execution_outcome(run.execution)
        return ExecutionResult(
            name=run.name,
            status=status,
            output=output if status == "SUCCEEDED" else None,
            error=error,
            cause=cause,
            history=history,
            visited=visited,
            state_transitions=len(visited) + retries,
            retries=retries,
            invocations=list(run.invocations),
            started_at=run.started_at,
            stopped_at=stopped_at,
            real_seconds=time.perf_counter() - run.real_start,
        )

    def end(self, run: _Run) -> None:
        """Release what a run holds (abort it if still running, fail its open task tokens) and let the backend
        forget it, remembering its terminal status for DescribeExecution."""
        if run.execution is not None:
            self._release(run.execution, "run ended")
            arn = getattr(run.execution, "exec_arn", None) or getattr(run.execution, "execution_arn", None)
            if arn:
                self.ended[str(arn)] = moto_hooks.execution_outcome(run.execution)[0]
            moto_hooks.forget_execution(self._backend, run.execution)
        moto_hooks.prune_finished_threads()

    def _wait_until_done(self, execution: Any, name: str) -> None:
        deadline = time.monotonic() + self.real_timeout_seconds
        pause = 0.0002
        while moto_hooks.execution_outcome(execution)[0] == "RUNNING":
            if time.monotonic() > deadline:
                self._release(execution, "real-time guard")
                raise LocalRunnerError(
                    f"execution {name!r} still RUNNING after {self.real_timeout_seconds} s of real time: something "
                    "waits on real time (TimeoutSeconds, HeartbeatSeconds, an unanswered task token?)"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.001)

    def _release(self, execution: Any, why: str) -> None:
        """Abort a still-running execution and fail its outstanding task tokens, so no daemon thread waits on."""
        if moto_hooks.execution_outcome(execution)[0] == "RUNNING":
            moto_hooks.stop_execution(execution, "albgate.LocalRunnerStopped", why)
        for token in moto_hooks.pending_task_tokens(execution):
            try:
                moto_hooks.send_task_failure(self._backend, token, "albgate.LocalRunnerStopped", why)
            except Exception:  # noqa: BLE001 - already answered or gone: nothing left to release
                pass

    # --- task tokens -----------------------------------------------------------------------------------
    def send_task_success(self, token: str, output: Any) -> None:
        moto_hooks.send_task_success(self._backend, token, json.dumps(output))

    def send_task_failure(self, token: str, error: str, cause: str = "") -> None:
        moto_hooks.send_task_failure(self._backend, token, error, cause)

    def time_out_task(self, token: str) -> None:
        self._require_run().started.wait()
        moto_hooks.time_out_task_token(self._require_run().execution, token)

    def stop(self, error: str | None = None, cause: str | None = None) -> None:
        """Abort the running execution (status ABORTED), e.g. from a handler or a clock event."""
        run = self._require_run()
        run.started.wait()
        moto_hooks.stop_execution(run.execution, error, cause)
        for token in moto_hooks.pending_task_tokens(run.execution):
            self.send_task_failure(token, "albgate.LocalRunnerStopped", "execution stopped")

    def _has_heartbeat(self, state_machine: str, logical_id: str) -> bool:
        # a request built without its state machine (by hand) is checked against every machine's states
        machines = [state_machine] if state_machine in self._token_states else list(self._token_states)
        return any(
            {"HeartbeatSeconds", "HeartbeatSecondsPath"} & set(state)
            for sm_id in machines
            for _, state in self._token_states[sm_id].get(logical_id, [])
        )

    def _require_run(self) -> _Run:
        if self._run is None:
            raise LocalRunnerError("no execution is running")
        return self._run

    # --- hooks' callbacks (run on moto's threads) ------------------------------------------------------
    def _now(self) -> float:
        run = self._run
        return (run.clock if run else self.clock).now()

    def _sleep(self, seconds: float) -> None:
        run = self._require_run()
        try:
            run.clock.sleep(seconds)
        except BaseException as exc:
            run.errors.append(exc)
            raise

    def _dispatch(self, function_name: str, handler: str, body: Any) -> tuple[bytes, str | None]:
        run = self._require_run()
        try:
            return self._invoke_once(run, function_name, handler, body)
        except BaseException as exc:
            run.errors.append(exc)
            raise

    def _invoke_once(self, run: _Run, logical_id: str, handler: str, body: Any) -> tuple[bytes, str | None]:
        if logical_id not in self.functions:
            raise LocalRunnerError(f"moto invoked {logical_id!r}, which no extracted definition calls")
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        event = json.loads(body) if body else {}
        request_id = str(uuid.uuid4())
        _current.request_id = request_id
        at = run.clock.now()
        error_type: str | None = None
        try:
            result = run.invoke(logical_id, handler, event)
            try:
                payload = json.dumps(result).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise LambdaFault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from exc
        except LambdaTimeout as fault:
            seconds = fault.seconds if fault.seconds is not None else self._settings(logical_id).timeout_seconds
            run.clock.sleep(seconds)
            error_type = fault.error_type
            payload = _error_payload(
                error_type, f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds"
            )
        except LambdaFault as fault:
            error_type = fault.error_type
            payload = _error_payload(error_type, fault.message)
        except Exception as exc:  # noqa: BLE001 - a handler error is the function's error, as in Lambda
            error_type = type(exc).__name__
            payload = _error_payload(error_type, str(exc), request_id, traceback.format_tb(exc.__traceback__))
        finally:
            _current.request_id = None
        run.invocations.append(Invocation(logical_id, at, request_id, error_type))
        if error_type is None and logical_id in self._token_states.get(run.state_machine, {}):
            self._offer_task_tokens(run, logical_id, event)
        return payload, (UNHANDLED if error_type else None)

    def _offer_task_tokens(self, run: _Run, logical_id: str, event: Any) -> None:
        run.started.wait(self.real_timeout_seconds)
        strings = set(_strings_in(event))
        for token in moto_hooks.pending_task_tokens(run.execution):
            if token not in strings:
                continue
            names = [name for name, _ in self._token_states[run.state_machine][logical_id]]
            request = TaskTokenRequest(
                token, logical_id, names[0] if len(names) == 1 else None, event, self, state_machine=run.state_machine
            )
            self._ask(run, request, f"{logical_id} (state {request.state_name!r}) was given a task token")

    def _ask(self, run: _Run, request: TaskTokenRequest, what: str) -> None:
        """Hand ``request`` to ``on_task_token``; a token left unanswered is failed (so the interpreter does not
        wait on) and the run fails loudly with ``UnansweredTaskToken``."""
        try:
            if run.on_task_token is not None:
                run.on_task_token(request)
        finally:
            if request.answer is None:  # unblock the interpreter before failing the run loudly
                self.send_task_failure(request.token, "albgate.LocalRunnerStopped", "task token not answered")
        if request.answer is None:
            raise UnansweredTaskToken(f"{what} and nobody answered it: pass on_task_token and call "
                                      "request.succeed(...), .fail(...) or .time_out()")

    def _offer_service_token(self, token: str, service: str, state_name: str) -> None:
        """A ``.waitForTaskToken`` task of another service (an EventBridge event carried the token) waits: offer
        it to ``on_task_token`` as ``TaskTokenRequest(token, "<service>", state_name, {}, ...)``."""
        run = self._require_run()
        try:
            request = TaskTokenRequest(token, service, state_name or None, {}, self, state_machine=run.state_machine)
            self._ask(run, request, f"state {state_name!r} ({service}) sent a task token")
        except BaseException as exc:
            run.errors.append(exc)
            raise

    # --- handlers --------------------------------------------------------------------------------------
    def invoke_handler(self, function_logical_id: str, handler: str, event: Any) -> Any:
        """The default ``invoke``: call the in-process handler with a Lambda-like context. Custom ``invoke``
        hooks call this to deliver the event (once, twice for a duplicate, or before a LambdaTimeout)."""
        run = self._require_run()
        settings = self._settings(function_logical_id)
        fn = self._handlers.get(handler) or resolve_handler(handler)
        context = LambdaContext(
            function_name=function_logical_id,
            memory_limit_in_mb=settings.memory_mb,
            aws_request_id=getattr(_current, "request_id", None) or str(uuid.uuid4()),
            invoked_function_arn=lambda_arn(function_logical_id),
            _deadline=run.clock.now() + settings.timeout_seconds,
            _clock=run.clock,
        )
        return fn(event, context)

    def _settings(self, logical_id: str) -> FunctionSettings:
        return self._function_settings.get(logical_id, FunctionSettings())


_current = threading.local()


@dataclass
class _RememberedExecutions:
    """DescribeExecution as AWS answers it: moto forgets a finished run (``forget_execution``), AWS keeps an
    ended execution's status for 90 days, so the runner answers for the runs it forgot."""

    inner: Any
    ended: dict[str, str]

    def status(self, execution_arn: str) -> str | None:
        return self.inner.status(execution_arn) or self.ended.get(execution_arn)
_MOTO_SFN_LOG = logging.getLogger("moto.stepfunctions.parser")


def resolve_handler(handler: str) -> Callable[[Any, Any], Any]:
    """Import ``package.module.function`` (a Lambda ``Handler`` string) and return the function."""
    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LocalRunnerError(f"Handler {handler!r}: cannot import {module_name!r}: {exc}") from exc
    fn = getattr(module, attribute, None)
    if not callable(fn):
        raise LocalRunnerError(f"Handler {handler!r}: {module_name} has no function {attribute!r}")
    return fn


def _error_payload(error_type: str, message: str, request_id: str = "", trace: list[str] | None = None) -> bytes:
    body: dict[str, Any] = {"errorMessage": message, "errorType": error_type}
    if request_id:  # the shape of the Python runtime's answer for an unhandled exception
        body["requestId"] = request_id
        body["stackTrace"] = trace or []
    return json.dumps(body).encode("utf-8")


def _tiny_zip() -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "# dispatched in-process by albgate.sfn_local\n")
    return buffer.getvalue()


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings_in(v)]
    return []


def _merge_functions(
    machines: Any,
) -> tuple[dict[str, str], dict[str, FunctionSettings]]:
    """(function logical id -> Handler, -> settings) over all ``machines``; one id must be one function."""
    functions: dict[str, str] = {}
    settings: dict[str, FunctionSettings] = {}
    owner: dict[str, str] = {}
    for machine in machines:
        for logical_id, handler in machine.functions.items():
            theirs = machine.function_settings.get(logical_id)
            if logical_id in functions:
                mine = settings.get(logical_id)
                if functions[logical_id] != handler or (mine and theirs and mine != theirs):
                    raise LocalRunnerError(
                        f"function {logical_id!r} is {functions[logical_id]!r} {mine} in {owner[logical_id]} but "
                        f"{handler!r} {theirs} in {machine.state_machine_logical_id}: one logical id, one function"
                    )
                if mine is None and theirs is not None:
                    settings[logical_id] = theirs
                continue
            functions[logical_id] = handler
            owner[logical_id] = machine.state_machine_logical_id
            if theirs is not None:
                settings[logical_id] = theirs
    return functions, settings


def _wait_for_task_token_states(definition: dict) -> dict[str, list[tuple[str, dict]]]:
    """Function logical id -> (name, state) of the ``.waitForTaskToken`` Task states that invoke it."""
    found: dict[str, list[tuple[str, dict]]] = {}

    def walk(states: dict) -> None:
        for name, state in states.items():
            if state.get("Type") == "Task" and str(state.get("Resource", "")).endswith(".waitForTaskToken"):
                for arn in _strings_in(state.get("Parameters", {})):
                    if ":function:" in arn:
                        found.setdefault(arn.split(":function:")[1].split(":")[0], []).append((name, state))
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))
            for key in ("ItemProcessor", "Iterator"):
                if key in state:
                    walk(state[key].get("States", {}))

    walk(definition.get("States", {}))
    return found


def _walk(history: list[dict]) -> tuple[list[str], int]:
    """(state names entered, in order; retries = task attempts beyond the first of each Task state entered)."""
    visited: list[str] = []
    tasks_entered = scheduled = 0
    for event in history:
        typ = event["type"]
        if typ.endswith("StateEntered"):
            visited.append(event["stateEnteredEventDetails"]["name"])
            tasks_entered += typ == "TaskStateEntered"
        elif typ in ("TaskScheduled", "LambdaFunctionScheduled"):
            scheduled += 1
    return visited, max(0, scheduled - tasks_entered)
