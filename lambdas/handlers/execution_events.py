"""A rollout execution ended: release its Deployment's lease (or hand it to the newest pending push), and
publish its outcome.

Job: for a Step Functions ``Execution Status Change`` event of the rollout state machine with a terminal status
(SUCCEEDED, FAILED, TIMED_OUT, ABORTED), publish ``Rollout Succeeded``, ``Rollout Rolled Back`` (FAILED with
the error ``RolledBack``) or ``Rollout Failed`` on albgate's bus with the console link (when the stack has the
bus: an application names an ECR repository), then release the Deployment's lease if this execution holds it,
or hand it to the pending push and start that one. Deployed with every stack: every execution takes a lease.

Invariant: the lease is released on every exit path of a rollout, Catch, Fail states, timeouts and a person's
StopExecution included, because this is driven by the execution's own terminal status event, not by a state of
the machine. Every change is conditional on this execution holding the lease, so a replayed event, or the end
of an execution that never held it (refused, or its input named no Deployment), changes nothing. Events albgate
does not act on are logged with the reason and answered, never raised. A lease whose release never came (the
event lost) is taken over by the next taker that finds its holder ended (lambdas/domain/lease.py).
"""

from __future__ import annotations

import functools
from typing import Any

from lambdas.domain.lease import request_key
from lambdas.domain.trigger import Ignored, outcome_event, parse_execution_ended
from lambdas.domain.trigger_use_case import TriggerPorts, finish_holder, publish, rollout_detail
from lambdas.handlers._observability import logger, observed
from lambdas.handlers._trigger_settings import EventSettings, trigger_ports

MAX_CAUSE_CHARS = 4096  # keeps the PutEvents entry far below its 256 KB limit


@functools.lru_cache(maxsize=1)
def event_settings() -> EventSettings:
    return EventSettings.from_environ()


def handle_execution_event(event: Any, settings: EventSettings, ports: TriggerPorts) -> dict[str, Any]:
    try:
        ended = parse_execution_ended(event, state_machine_arn=settings.state_machine_arn)
    except Ignored as exc:
        logger.info("event ignored", extra={"reason": str(exc)})
        return {"outcome": "ignored", "reason": str(exc)}
    detail = rollout_detail(settings, ended.name, ended.execution_arn, "{}")
    request = ended.request or {}
    detail.update({k: request.get(k) for k in ("cluster", "namespace", "deployment", "container", "image")})
    detail.update(status=ended.status, error=ended.error or None, cause=(ended.cause or "")[:MAX_CAUSE_CHARS] or None)
    kind = outcome_event(ended)
    publish(ports, kind, detail, resources=[ended.execution_arn])
    # The key Preflight's lease used: the same parser; an input it could not key took no lease.
    key = request_key(ended.request) if ended.request is not None else None
    if key is None:
        logger.warning(
            "the event carries no rollout input naming a Deployment (none, or larger than EventBridge's limit): "
            "a lease it took, if any, is taken over by the next rollout that finds this execution ended",
            extra={"execution_name": ended.name},
        )
        lock: dict[str, Any] = {"lock": "unknown"}
    else:
        lock = finish_holder(key, ended.name, settings, ports)
    logger.info(kind, extra={**detail, "lock": lock.get("lock")})
    return {"outcome": kind, "lock": lock, **detail}


@observed
def handler(event: dict, context: Any = None) -> dict:
    settings = event_settings()
    return handle_execution_event(event, settings, trigger_ports(settings))
