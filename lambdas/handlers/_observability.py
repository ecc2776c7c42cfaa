"""Observability for every handler: one Powertools Logger and Metrics, and the ``observed`` decorator.

Job: create the two Powertools objects once per process (service name from ``POWERTOOLS_SERVICE_NAME``,
default "albgate"; metrics namespace "albgate") and, per invocation, tag every log line with the Step
Functions execution name as the correlation id (the state machine passes ``$$.Execution.Name`` in the event
under ``execution_name``) and flush the metrics it recorded.

Tracing is Lambda's own active tracing (``Tracing.ACTIVE`` on every function, and on both state machines):
the service records each invocation's segment and links it to the execution's trace, with no SDK in the
code. Powertools' Tracer is not used: it needs the X-Ray SDK for Python, which is in maintenance mode and
reaches its end of support (docs/facts.md, "Lambda"), and whose import alone cost the health check's cold start
about 115 ms.

Invariant: ``observed`` never changes what the handler returns or raises (Step Functions matches Retry/Catch on
the exception's class name, so an exception must leave unwrapped), and it works outside Lambda: with no
Lambda context and no metrics recorded (tests, the local runner, the simulation) it neither
fails nor prints warnings. The correlation id lives in a context variable, so handlers running on parallel
threads (Map iterations in the simulation) do not tag each other's logs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "albgate"
METRICS_NAMESPACE = "albgate"
EXECUTION_NAME_KEY = "execution_name"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])
_LAMBDA_CONTEXT_FIELDS = {
    "function_name": "function_name",
    "function_memory_size": "memory_limit_in_mb",
    "function_arn": "invoked_function_arn",
    "function_request_id": "aws_request_id",
}


def execution_name(event: Any) -> str | None:
    """The Step Functions execution name the state machine put in the event, if any."""
    if isinstance(event, dict):
        value = event.get(EXECUTION_NAME_KEY)
        return str(value) if value else None
    return None


def _lambda_keys(context: Any) -> dict[str, Any]:
    """The Lambda context fields Powertools logs, when ``context`` is a real (or look-alike) Lambda context."""
    if context is None or not all(hasattr(context, attr) for attr in _LAMBDA_CONTEXT_FIELDS.values()):
        return {}
    return {key: getattr(context, attr) for key, attr in _LAMBDA_CONTEXT_FIELDS.items()}


def observed(handler: Handler) -> Handler:
    """Decorate a Lambda handler ``(event, context)``: correlation id, Lambda context keys, metrics."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any = None) -> Any:
        keys = {"correlation_id": execution_name(event), **_lambda_keys(context)}
        keys = {k: v for k, v in keys.items() if v is not None}
        logger.thread_safe_append_keys(**keys)
        try:
            return handler(event, context)
        finally:
            logger.thread_safe_remove_keys(keys)
            # Flush only what was recorded: Powertools warns on every empty flush, which outside Lambda is noise.
            if metrics.metric_set:
                metrics.flush_metrics()
            # Dimensions are per invocation: clear them even when flushing was disabled
            # (POWERTOOLS_METRICS_DISABLED keeps them otherwise, and the next invocation would inherit them).
            metrics.clear_metrics()

    return wrapper  # type: ignore[return-value]
