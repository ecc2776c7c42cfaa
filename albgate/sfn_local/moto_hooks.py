"""Every moto internal the local runner touches, in one place: the patches (hooks) and the few read accessors.

Job: make moto's Step Functions interpreter (LocalStack's ASL interpreter, vendored in
``moto.stepfunctions.parser``) run albgate's synthesized state machine against in-process handlers and a
simulated clock, fast. Nothing outside this module imports a moto internal (``runner.py`` uses only the names
defined here plus the public ``mock_aws``).

Invariant: moto is pinned (``PINNED_MOTO_VERSION``, also in requirements.txt) and this module refuses to load
against another version. Each hook is one small named function returning a ``Patch``; ``HOOK_TARGETS`` records
the owner, the attribute and the parameter names each one expects to replace, and ``verify_targets()`` checks
them all (the runner calls it before installing, ``tests/workflow/test_moto_hooks.py`` calls it per hook), so a
moto upgrade that renames or re-signs a target fails loudly at once instead of silently running real sleeps
or echoing Lambda inputs.

When moto changes, re-check (in ``.venv/lib/python3.11/site-packages/moto``):
  * ``awslambda_simple/models.py``: ``LambdaSimpleBackend.invoke`` still answers every Lambda Invoke when
    ``lambda.use_docker`` is False, and ``awslambda/responses.py`` still copies ``response_headers`` (our
    ``x-amz-function-error``) into the HTTP response.
  * ``stepfunctions/parser/asl/component/state/wait/wait_function/wait_function.py``: ``_eval_body`` still
    calls ``self._wait_interval(env=env, wait_seconds=...)`` **with keyword arguments** (a renamed parameter
    fails every Wait as States.Runtime).
  * ``.../common/retry/retrier_decl.py``: ``RetrierDecl._eval_body`` still waits with ``time.sleep``;
    ``.../common/retry/jitter_strategy_decl.py``: FULL jitter still draws with the module's ``random.uniform``.
  * ``.../state/exec/state_task/lambda_eval_utils.py``: still builds its client with ``boto_client_for``.
  * ``backend/execution_worker.py``: ``ExecutionWorker._get_evaluation_entrypoint`` still parses the
    definition, and the parsed tree still keeps no per-execution state (else drop ``cache_definition_parse``).
  * ``.../asl/utils/json_path.py`` and ``.../common/path/result_path.py``: still parse with a module-level
    ``parse``.
  * ``.../asl/eval/event/event_manager.py``: ``EventManager._get_current_timestamp`` still stamps events.
  * ``.../state/fail/state_fail.py``: ``StateFail._eval_state`` still builds its error with ``CustomErrorName``
    (and whether moto now accepts ``States.*`` names there, which would make that hook unnecessary).
  * ``.../asl/eval/callback/callback.py``: ``CallbackPoolManager._pool`` and ``CallbackEndpoint._notify_event``
    (the task-token accessors below), and whether ``setup_heartbeat_endpoint`` now honours an earlier answer.
  * ``stepfunctions/parser/utils.py``: ``TMP_THREADS`` still collects the interpreter's threads.
  * ``.../state/exec/state_task/service/state_task_service_callback.py``: ``_eval_integration_pattern`` still waits
    for a task token through ``self._eval_wait_for_task_token(env=..., ...)``, after the service call was made.
Then run ``.venv/bin/pytest tests/workflow -q`` and update ``PINNED_MOTO_VERSION`` here and in requirements.txt.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import moto

PINNED_MOTO_VERSION = "5.2.5"
if moto.__version__ != PINNED_MOTO_VERSION:  # not `assert`: it must also hold under `python -O`
    raise ImportError(
        f"albgate.sfn_local hooks moto internals and is pinned to moto=={PINNED_MOTO_VERSION}, found "
        f"moto=={moto.__version__}. Re-check every target listed in the docstring of {__name__} against the "
        "new moto source, run `.venv/bin/pytest tests/workflow -q`, then update PINNED_MOTO_VERSION and "
        "requirements.txt together."
    )

# The moto internals, imported once, here only.
from moto.awslambda import utils as lambda_utils  # noqa: E402
from moto.awslambda.responses import LambdaResponse  # noqa: E402
from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: E402
from moto.stepfunctions import responses as stepfunctions_responses  # noqa: E402
from moto.stepfunctions.models import StateMachine  # noqa: E402
from moto.stepfunctions.parser import utils as parser_utils  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.path import result_path  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.retry import jitter_strategy_decl, retrier_decl  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl import (  # noqa: E402
    JitterStrategyDecl,
)
from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: E402
    state_task_service_callback,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (  # noqa: E402
    WaitFunction,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, CallbackPoolManager  # noqa: E402
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager  # noqa: E402
from moto.stepfunctions.parser.asl.utils import json_path  # noqa: E402
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution  # noqa: E402
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker  # noqa: E402

StateTaskServiceCallback = state_task_service_callback.StateTaskServiceCallback
from moto.stepfunctions.parser.models import StepFunctionsParserBackend, stepfunctions_parser_backends  # noqa: E402

Sleep = Callable[[float], None]
Now = Callable[[], float]
# (function name as moto knows it, Handler string, raw request body) -> (response payload, function error or None)
Dispatch = Callable[[str, str, Any], tuple[bytes, str | None]]


class MotoHookError(RuntimeError):
    """A hooked moto internal is missing or changed shape: re-check this module against the moto source."""


@dataclass(frozen=True)
class HookTarget:
    """What a hook replaces or an accessor uses: ``owner.attribute``, the parameter names moto calls it with,
    and the call sites (function, snippet of its source) whose behaviour the hook relies on."""

    owner: Any
    attribute: str
    parameters: tuple[str, ...] | None  # None: not a function (a module attribute swapped whole, or data)
    where: str  # the file in moto, for the error message
    call_sites: tuple[tuple[Any, str], ...] = ()


_WAIT = "moto/stepfunctions/parser/asl/component/state/wait/wait_function/wait_function.py"
_CALLBACK = "moto/stepfunctions/parser/asl/eval/callback/callback.py"
_LAMBDA_EVAL = "moto/stepfunctions/parser/asl/component/state/exec/state_task/lambda_eval_utils.py"

# The patched targets: one entry per hook function below, same name.
HOOK_TARGETS: dict[str, HookTarget] = {
    "dispatch_lambda_invoke": HookTarget(
        LambdaSimpleBackend,
        "invoke",
        ("self", "function_name", "qualifier", "body", "headers", "response_headers"),
        "moto/awslambda_simple/models.py",
        call_sites=(
            (LambdaResponse.invoke, "self.backend.invoke("),  # ...with response_headers it then returns
            (LambdaResponse.invoke, "return status_code, response_headers, payload"),
            (lambda_utils.get_backend, "lambda_simple_backends"),  # use_docker False picks the simple backend
        ),
    ),
    "wait_on_clock": HookTarget(
        WaitFunction,
        "_wait_interval",
        ("self", "env", "wait_seconds"),
        _WAIT,
        call_sites=((WaitFunction._eval_body, "self._wait_interval(env=env, wait_seconds="),),
    ),
    "seeded_retry_jitter": HookTarget(
        jitter_strategy_decl,
        "random",
        None,
        "moto/stepfunctions/parser/asl/component/common/retry/jitter_strategy_decl.py",
        call_sites=((JitterStrategyDecl._eval_body, "random.uniform(0, interval_seconds)"),),
    ),
    "retry_backoff_on_clock": HookTarget(
        retrier_decl,
        "time",
        None,
        "moto/stepfunctions/parser/asl/component/common/retry/retrier_decl.py",
        call_sites=((RetrierDecl._eval_body, "time.sleep(interval_seconds)"),),
    ),
    "history_timestamps_on_clock": HookTarget(
        EventManager,
        "_get_current_timestamp",
        (),
        "moto/stepfunctions/parser/asl/eval/event/event_manager.py",
        call_sites=((EventManager.add_event, "timestamp or self._get_current_timestamp()"),),
    ),
    "fail_state_passes_states_errors": HookTarget(
        state_fail,
        "CustomErrorName",
        ("error_name",),
        "moto/stepfunctions/parser/asl/component/state/fail/state_fail.py",
        call_sites=((state_fail.StateFail._eval_state, "CustomErrorName(error_value)"),),
    ),
    "offer_service_task_tokens": HookTarget(
        StateTaskServiceCallback,
        "_eval_wait_for_task_token",
        ("self", "env", "timeout_seconds", "callback_endpoint", "heartbeat_endpoint"),
        "moto/stepfunctions/parser/asl/component/state/exec/state_task/service/state_task_service_callback.py",
        call_sites=((StateTaskServiceCallback._eval_integration_pattern, "self._eval_wait_for_task_token("),),
    ),
    "early_answer_reaches_heartbeat_wait": HookTarget(
        CallbackEndpoint,
        "setup_heartbeat_endpoint",
        ("self", "heartbeat_seconds"),
        _CALLBACK,
        call_sites=(
            (CallbackEndpoint.notify, "self._heartbeat_endpoint.notify()"),
            (StateTaskServiceCallback._wait_for_task_token_heartbeat, "heartbeat_endpoint.clear_and_wait()"),
        ),
    ),
    "cache_boto_clients": HookTarget(
        lambda_eval_utils,
        "boto_client_for",
        ("region", "service", "state_credentials"),
        _LAMBDA_EVAL,
        call_sites=(
            (lambda_eval_utils._invoke_lambda_function, "boto_client_for("),
            (lambda_eval_utils.exec_lambda_function, "boto_client_for("),
        ),
    ),
    "cache_definition_parse": HookTarget(
        ExecutionWorker,
        "_get_evaluation_entrypoint",
        ("self",),
        "moto/stepfunctions/parser/backend/execution_worker.py",
        call_sites=(
            (ExecutionWorker._execution_logic, "program = self._get_evaluation_entrypoint()"),
            (ExecutionWorker._get_evaluation_entrypoint, "state_machine_details.definition"),
        ),
    ),
    "cache_json_path_parse": HookTarget(
        json_path,
        "parse",
        ("path", "debug"),
        "moto/stepfunctions/parser/asl/utils/json_path.py (jsonpath_ng.ext.parse)",
        call_sites=((json_path.extract_json, "parse(path)"),),
    ),
    "cache_result_path_parse": HookTarget(
        result_path,
        "parse",
        ("string",),
        "moto/stepfunctions/parser/asl/component/common/path/result_path.py (jsonpath_ng.parse)",
        call_sites=((result_path.ResultPath._eval_body, "parse(self.result_path_src)"),),
    ),
}

# Internals read or called without patching: one entry per accessor below, same name.
ACCESSOR_TARGETS: dict[str, HookTarget] = {
    "parser_backend": HookTarget(
        stepfunctions_responses,
        "get_backend",
        ("account", "region"),
        "moto/stepfunctions/responses.py",
        call_sites=((stepfunctions_responses.get_backend, "stepfunctions_parser_backends[account][region]"),),
    ),
    "start_execution": HookTarget(
        StepFunctionsParserBackend,
        "start_execution",
        ("self", "state_machine_arn", "name", "execution_input", "trace_header"),
        "moto/stepfunctions/parser/models.py",
    ),
    "execution_outcome": HookTarget(
        BaseExecutionWorkerCommunication,
        "_reflect_execution_status",
        ("self",),
        "moto/stepfunctions/parser/backend/execution.py",
        call_sites=(
            (BaseExecutionWorkerCommunication._reflect_execution_status, "self.execution.output ="),
            (BaseExecutionWorkerCommunication._reflect_execution_status, "self.execution.error ="),
        ),
    ),
    "execution_history": HookTarget(
        Execution, "to_history_output", ("self",), "moto/stepfunctions/parser/backend/execution.py"
    ),
    "send_task_success": HookTarget(
        StepFunctionsParserBackend,
        "send_task_success",
        ("self", "task_token", "outcome"),
        "moto/stepfunctions/parser/models.py",
    ),
    "send_task_failure": HookTarget(
        StepFunctionsParserBackend,
        "send_task_failure",
        ("self", "task_token", "error", "cause"),
        "moto/stepfunctions/parser/models.py",
    ),
    "pending_task_tokens": HookTarget(
        CallbackPoolManager,
        "add",
        ("self", "callback_id"),
        _CALLBACK,
        call_sites=(
            (CallbackPoolManager.add, "self._pool[callback_id] = callback_endpoint"),
            (CallbackEndpoint.notify, "self._notify_event.set()"),
            (CallbackEndpoint.interrupt_all, "self._notify_event.set()"),
        ),
    ),
    "time_out_task_token": HookTarget(
        CallbackEndpoint,
        "interrupt_all",
        ("self",),
        _CALLBACK,
        call_sites=((StateTaskServiceCallback._eval_wait_for_task_token, "CallbackOutcomeTimedOut("),),
    ),
    "stop_execution": HookTarget(
        Execution, "stop", ("self", "stop_date", "error", "cause"), "moto/stepfunctions/parser/backend/execution.py"
    ),
    "forget_execution": HookTarget(
        StateMachine,
        "_handle_name_input_idempotency",
        ("self", "name", "execution_input"),
        "moto/stepfunctions/models.py",
        call_sites=((StateMachine._handle_name_input_idempotency, "for execution in self.executions"),),
    ),
    "prune_finished_threads": HookTarget(
        parser_utils, "TMP_THREADS", None, "moto/stepfunctions/parser/utils.py"
    ),
}


def verify_target(name: str) -> None:
    """Raise ``MotoHookError`` naming the hook, the file and the difference when its target changed shape."""
    target = HOOK_TARGETS.get(name) or ACCESSOR_TARGETS[name]
    if not hasattr(target.owner, target.attribute):
        raise MotoHookError(
            f"hook {name!r}: {target.where} has no attribute {target.attribute!r} any more (moto "
            f"{moto.__version__}); find where moto now does this and move the hook"
        )
    current = inspect.getattr_static(target.owner, target.attribute)
    if target.parameters is None:
        ok = {
            "retry_backoff_on_clock": current is time or isinstance(current, _TimeWithClockSleep),
            "seeded_retry_jitter": current is random or isinstance(current, random.Random),
            "prune_finished_threads": isinstance(current, list),
        }
        if not ok[name]:
            raise MotoHookError(
                f"hook {name!r}: {target.where} `{target.attribute}` is now a {type(current).__name__}"
            )
    else:
        function = current.__func__ if isinstance(current, staticmethod) else current
        function = getattr(function, "__wrapped__", function)  # our caches wrap with functools
        found = tuple(inspect.signature(function).parameters)
        if found != target.parameters:
            raise MotoHookError(
                f"hook {name!r}: {target.where} `{target.attribute}` now takes {found}, the hook was written for "
                f"{target.parameters}; moto may call it with keyword arguments, so re-read the call sites and "
                "update the hook"
            )
    for function, snippet in target.call_sites:
        if snippet not in inspect.getsource(function):
            raise MotoHookError(
                f"hook {name!r}: `{function.__qualname__}` in {inspect.getsourcefile(function)} no longer "
                f"contains `{snippet}`, which the hook relies on; re-read it and update the hook"
            )


def verify_targets() -> None:
    for name in [*HOOK_TARGETS, *ACCESSOR_TARGETS]:
        verify_target(name)


# ---------------------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Patch:
    name: str
    replacement: Any
    _original: Any = None

    @property
    def target(self) -> HookTarget:
        return HOOK_TARGETS[self.name]

    def install(self) -> None:
        self._original = inspect.getattr_static(self.target.owner, self.target.attribute)
        setattr(self.target.owner, self.target.attribute, self.replacement)

    def uninstall(self) -> None:
        setattr(self.target.owner, self.target.attribute, self._original)


_installed = threading.Lock()


@contextmanager
def installed(patches: list[Patch]) -> Iterator[None]:
    """Install ``patches`` for the duration of the block; one set at a time per process (they are global)."""
    verify_targets()
    if not _installed.acquire(blocking=False):
        raise RuntimeError(
            "another LocalStateMachine is open in this process: moto's hooks are process-wide, so run one at a "
            "time (use processes for parallelism; threads give no speed-up under the GIL anyway)"
        )
    done: list[Patch] = []
    try:
        for patch in patches:
            patch.install()
            done.append(patch)
        yield
    finally:
        for patch in reversed(done):
            patch.uninstall()
        _installed.release()


def dispatch_lambda_invoke(dispatch: Dispatch) -> Patch:
    """Replace ``LambdaSimpleBackend.invoke``, which without Docker echoes the input, with ``dispatch``.

    The function is looked up with moto's own ``get_function`` (an unknown name raises
    ResourceNotFoundException, so a naming mistake fails loudly) and its ``Handler`` string picks the
    in-process handler. A function error is reported the way Lambda does it: the ``x-amz-function-error``
    header plus a ``{"errorType", "errorMessage"}`` payload, from which the interpreter takes the error name
    that Retry and Catch match.
    """

    def invoke(self, function_name, qualifier, body, headers, response_headers):  # noqa: ANN001 (moto's)
        fn = self.get_function(function_name, qualifier)
        payload, function_error = dispatch(fn.function_name, fn.handler, body)
        if function_error:
            response_headers["x-amz-function-error"] = function_error
        response_headers["Content-Length"] = str(len(payload))
        return payload

    return Patch("dispatch_lambda_invoke", invoke)


def wait_on_clock(sleep: Sleep) -> Patch:
    """Replace ``WaitFunction._wait_interval(self, env, wait_seconds)`` (a real ``Event.wait``) by ``sleep``.

    Every Wait form (Seconds, SecondsPath, Timestamp, TimestampPath) ends here with the seconds to wait, so
    the simulated clock advances by exactly that. moto calls it with keyword arguments: the parameter names
    must stay ``env`` and ``wait_seconds``.
    """

    def _wait_interval(self, env, wait_seconds):  # noqa: ANN001 (moto's)
        if wait_seconds > 0 and env.is_running():
            sleep(wait_seconds)

    return Patch("wait_on_clock", _wait_interval)


class _TimeWithClockSleep:
    """The ``time`` module as ``retrier_decl`` sees it, with ``sleep`` on the simulated clock."""

    def __init__(self, sleep: Sleep) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def retry_backoff_on_clock(sleep: Sleep) -> Patch:
    """Replace the ``time`` module seen by ``retrier_decl`` so ``RetrierDecl._eval_body``'s
    ``time.sleep(interval_seconds)`` (the Retry backoff, IntervalSeconds x BackoffRate^n) uses ``sleep``.

    Swapping the module attribute (not ``time.sleep`` itself) keeps every other thread's real sleeps real.
    """
    return Patch("retry_backoff_on_clock", _TimeWithClockSleep(sleep))


def seeded_retry_jitter(rng: random.Random) -> Patch:
    """Replace the ``random`` module seen by ``jitter_strategy_decl`` with ``rng``, so a Retry with
    ``JitterStrategy: FULL`` draws its delay (``random.uniform(0, interval_seconds)``) from a generator the
    runner seeds per execution: a simulated run with a jittered retry is then as repeatable as the rest of
    the simulation (moto draws from the process-wide generator otherwise)."""
    return Patch("seeded_retry_jitter", rng)


def history_timestamps_on_clock(now: Now) -> Patch:
    """Replace ``EventManager._get_current_timestamp`` (wall clock) so history events carry simulated time.

    Then a history read back from the backend measures what the simulation measures (gate wait per step).
    """

    def _get_current_timestamp() -> datetime.datetime:
        return datetime.datetime.fromtimestamp(now(), tz=datetime.timezone.utc)

    return Patch("history_timestamps_on_clock", staticmethod(_get_current_timestamp))


class _FailStateErrorName(ErrorName):
    """An error name a Fail state raises, taken as given (no ``States.`` prefix check)."""

    def __init__(self, error_name: str | None) -> None:
        super().__init__(error_name=error_name)


def fail_state_passes_states_errors() -> Patch:
    """Replace the ``CustomErrorName`` that ``StateFail._eval_state`` builds its error with, which raises
    ValueError for a name starting with ``States.``, by a plain error name.

    A Catch followed by a Fail with ``ErrorPath: $.failure.Error`` re-raises whatever was caught, and that is
    often ``States.Timeout``, ``States.TaskFailed`` or ``States.Runtime``. Without this hook moto turns such a
    Fail into ``States.Runtime`` with a ValueError as its cause, hiding the real error; with it the execution
    fails with the caught error and cause, which is how we understand AWS to behave (docs/local-runner.md).
    """
    return Patch("fail_state_passes_states_errors", _FailStateErrorName)


# (task token, service name, state name) -> None; called before the wait starts
OfferToken = Callable[[str, str, str], None]


def offer_service_task_tokens(offer: OfferToken) -> Patch:
    """Replace ``StateTaskServiceCallback._eval_wait_for_task_token`` by a wrapper: a ``.waitForTaskToken`` task of a
    service other than Lambda (``events:putEvents.waitForTaskToken``: the token went into an event, for a person
    or a system to answer) offers its token to ``offer`` once the service call was made, before the wait.

    Lambda's task tokens are offered by the runner when the function returns (it sees the event); only the other
    services need this. An answer given inside ``offer`` is waiting for the wait when it starts.
    """
    original = StateTaskServiceCallback._eval_wait_for_task_token

    @functools.wraps(original)
    def _eval_wait_for_task_token(self, env, timeout_seconds, callback_endpoint, heartbeat_endpoint):  # noqa: ANN001
        service = getattr(self.resource, "service_name", "")
        if service != "lambda":
            context = env.states.context_object.context_object_data
            offer(callback_endpoint.callback_id, service, context.get("State", {}).get("Name", ""))
        return original(self, env=env, timeout_seconds=timeout_seconds, callback_endpoint=callback_endpoint,
                        heartbeat_endpoint=heartbeat_endpoint)

    return Patch("offer_service_task_tokens", _eval_wait_for_task_token)


def early_answer_reaches_heartbeat_wait() -> Patch:
    """Replace ``CallbackEndpoint.setup_heartbeat_endpoint(self, heartbeat_seconds)`` so a task token answered
    before the heartbeat endpoint exists still ends the wait.

    moto creates a task's heartbeat endpoint only after the Lambda returned, and ``notify`` pokes only an
    endpoint that already exists; an answer given while the Lambda ran (``on_task_token`` runs then, as a
    function calling SendTaskSuccess itself would) was otherwise noticed only when HeartbeatSeconds of real time
    had passed. The new endpoint is poked at once when the token was already answered.
    """
    original = CallbackEndpoint.setup_heartbeat_endpoint

    @functools.wraps(original)
    def setup_heartbeat_endpoint(self, heartbeat_seconds):  # noqa: ANN001 (moto's)
        endpoint = original(self, heartbeat_seconds=heartbeat_seconds)
        if self.get_outcome() is not None:
            endpoint.notify()
        return endpoint

    return Patch("early_answer_reaches_heartbeat_wait", setup_heartbeat_endpoint)


def cache_boto_clients() -> Patch:
    """Replace ``lambda_eval_utils.boto_client_for``, which builds a new boto3 client for every Lambda task
    (tens of milliseconds each), with one client per (region, service).

    Safe because moto builds every client with the same fixed credentials and config, and the cache lives
    only while the hooks are installed (inside the mock, where the clients talk to moto in-process).
    """
    original = lambda_eval_utils.boto_client_for
    cache: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    @functools.wraps(original)
    def boto_client_for(region, service, state_credentials=None):  # noqa: ANN001 (moto's)
        with lock:
            client = cache.get((region, service))
            if client is None:
                client = cache[(region, service)] = original(region=region, service=service)
            return client

    boto_client_for.cache = cache  # for the smoke test
    return Patch("cache_boto_clients", boto_client_for)


def cache_definition_parse() -> Patch:
    """Replace ``ExecutionWorker._get_evaluation_entrypoint``, which parses the definition with ANTLR for
    every execution (~47 ms for albgate's 42 states), with one parse per definition.

    The parsed program is a tree of declarations; evaluation state lives in the ``Environment`` (moto already
    evaluates one subtree on several threads for Map and Parallel), so sequential executions can share it.
    """
    original = ExecutionWorker._get_evaluation_entrypoint
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    @functools.wraps(original)
    def _get_evaluation_entrypoint(self):  # noqa: ANN001 (moto's)
        definition = self._evaluation_details.state_machine_details.definition
        with lock:
            program = cache.get(definition)
            if program is None:
                program = cache[definition] = original(self)
            return program

    _get_evaluation_entrypoint.cache = cache  # for the smoke test
    return Patch("cache_definition_parse", _get_evaluation_entrypoint)


def cache_json_path_parse() -> Patch:
    """Replace ``json_path.parse`` (jsonpath_ng's PLY parser, run on every path evaluation) by a memoised one.

    The definition has a fixed, small set of paths; parsed expressions are only read by ``find``.
    """
    return Patch("cache_json_path_parse", functools.lru_cache(maxsize=4096)(json_path.parse))


def cache_result_path_parse() -> Patch:
    """Replace ``result_path.parse`` (jsonpath_ng's plain parser, run for every ResultPath of every state) by a
    memoised one; ``update_or_create`` only reads the parsed expression."""
    return Patch("cache_result_path_parse", functools.lru_cache(maxsize=1024)(result_path.parse))


# ---------------------------------------------------------------------------------------------------------
# Accessors: the backend calls and reads the runner needs (no patching), each named in ACCESSOR_TARGETS
# ---------------------------------------------------------------------------------------------------------
def parser_backend(account_id: str, region: str) -> Any:
    """The Step Functions backend that executes definitions (what ``execute_state_machine`` selects)."""
    return stepfunctions_parser_backends[account_id][region]


def start_execution(backend: Any, state_machine_arn: str, name: str, input_json: str) -> Any:
    """Start an execution on its own thread and return moto's ``Execution`` (no HTTP round trip)."""
    return backend.start_execution(state_machine_arn, name=name, execution_input=input_json)


def execution_outcome(execution: Any) -> tuple[str, Any, str | None, str | None]:
    """(status, output, error, cause) as the interpreter reflected them; status RUNNING until it ends."""
    status = execution.exec_status.value if execution.exec_status is not None else "RUNNING"
    return status, execution.output, execution.error, execution.cause


def execution_history(execution: Any) -> list[dict]:
    """The history events of ``execution`` (a copy, ``type`` as a plain string), straight from the backend:
    milliseconds, where boto3's paginated ``get_execution_history`` through the mock takes hundreds."""
    events = execution.to_history_output()["events"]
    return [{**event, "type": str(getattr(event["type"], "value", event["type"]))} for event in events]


def send_task_success(backend: Any, token: str, output_json: str) -> None:
    backend.send_task_success(token, outcome=output_json)


def send_task_failure(backend: Any, token: str, error: str, cause: str) -> None:
    backend.send_task_failure(token, error=error, cause=cause)


def pending_task_tokens(execution: Any) -> list[str]:
    """Task tokens of ``execution`` that nobody has answered (nor interrupted) yet."""
    env = execution.exec_worker.env if execution.exec_worker else None
    if env is None:
        return []
    pool = env.callback_pool_manager._pool
    return [token for token, endpoint in list(pool.items()) if not endpoint._notify_event.is_set()]


def time_out_task_token(execution: Any, token: str) -> None:
    """Make a ``.waitForTaskToken`` task give up on ``token`` as if its TimeoutSeconds had passed.

    Interrupting the endpoint with no outcome is what the interpreter's own timeout amounts to
    (``CallbackOutcomeTimedOut``), so the task fails with ``States.Timeout`` and a ``TaskTimedOut`` event, as
    on AWS. Not for a task with HeartbeatSeconds: its heartbeat endpoint is created after the Lambda returns
    and keeps waiting in real time (docs/local-runner.md).
    """
    endpoint = execution.exec_worker.env.callback_pool_manager.get(token)
    if endpoint is None:
        raise KeyError(f"no task token {token!r} in this execution")
    endpoint.interrupt_all()


def stop_execution(execution: Any, error: str | None, cause: str | None) -> None:
    """Abort ``execution`` (it ends ABORTED), as StopExecution does."""
    execution.stop(stop_date=datetime.datetime.now(tz=datetime.timezone.utc), error=error, cause=cause)


def forget_execution(backend: Any, execution: Any) -> None:
    """Drop a finished execution from its state machine, so a long simulation does not keep every history
    (and its name may be used again: moto refuses a name it still holds)."""
    state_machine = backend.describe_state_machine(execution.state_machine_arn)
    if execution in state_machine.executions:
        state_machine.executions.remove(execution)


def prune_finished_threads() -> int:
    """Drop finished threads from moto's ``TMP_THREADS`` (it grows by several per state); return how many live."""
    alive = [t for t in parser_utils.TMP_THREADS if t.is_alive()]
    parser_utils.TMP_THREADS[:] = alive
    return len(alive)
