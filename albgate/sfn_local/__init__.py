"""Run the synthesized Step Functions state machine locally: moto's interpreter, in-process handlers, simulated time.

Job: give ``albgate simulate`` and the workflow tests one way to execute the definition CDK synthesized (not a
copy of it): ``extract_state_machine`` reads it from the template, ``LocalStateMachine`` runs it in moto with
Lambda tasks dispatched to the handlers named by each function's ``Handler`` and every Wait and Retry backoff
on the caller's clock. How it works, which moto internals it hooks and its limits: docs/local-runner.md.

Invariant: every moto internal is touched only in ``moto_hooks`` (moto pinned, each hook smoke-tested).
"""

from albgate.sfn_local.extract import ExtractedMachine, ExtractionError, FunctionSettings, extract_state_machine
from albgate.sfn_local.runner import (
    Clock,
    ExecutionResult,
    Invocation,
    LambdaContext,
    LambdaFault,
    LambdaTimeout,
    LocalRunnerError,
    LocalStateMachine,
    TaskTokenRequest,
    UnansweredTaskToken,
)

__all__ = [
    "Clock",
    "ExecutionResult",
    "ExtractedMachine",
    "ExtractionError",
    "FunctionSettings",
    "Invocation",
    "LambdaContext",
    "LambdaFault",
    "LambdaTimeout",
    "LocalRunnerError",
    "LocalStateMachine",
    "TaskTokenRequest",
    "UnansweredTaskToken",
    "extract_state_machine",
]
