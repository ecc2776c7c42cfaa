"""A rollout execution ended: publish its outcome and free its Deployment for the newest pending push.

Job: for a Step Functions ``Execution Status Change`` event of the rollout state machine with a terminal status
(SUCCEEDED, FAILED, TIMED_OUT, ABORTED), publish ``Rollout Succeeded``, ``Rollout Rolled Back`` (FAILED with
the error ``RolledBack``) or ``Rollout Failed`` on albgate's bus with the console link, then release the
Deployment's lock if this execution holds it, or hand it to the pending push and start that one.

Invariant: the lock is released on every exit path of a rollout, Catch, Fail states, timeouts and a person's
StopExecution included, because this is driven by the execution's own terminal status event, not by a state of
the machine. Every change is conditional on this execution holding the lock, so a replayed event, or the end
of an execution started by hand (which never held it), changes nothing. Events albgate does not act on are
logged with the reason and answered, never raised.
"""

from __future__ import annotations

import functools
from typing import Any

from lambdas.domain.trigger import Ignored, outcome_event, parse_execution_ended
from lambdas.handlers._observability import logger, observed
from lambdas.handlers.ecr_trigger import Deps, EventSettings, deps_for, finish_holder, rollout_detail

MAX_CAUSE_CHARS = 4096  # keeps the PutEvents entry far below its 256 KB limit


@functools.lru_cache(maxsize=1)
def event_settings() -> EventSettings:
    return EventSettings.from_environ()


def handle_execution_event(event: Any, settings: EventSettings, deps: Deps) -> dict[str, Any]:
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
    deps.bus.publish(kind, detail, resources=[ended.execution_arn])
    key = ended.lock_key
    if key is None:
        logger.warning(
            "the event carries no rollout input (larger than EventBridge's limit?): its lock, if any, is left "
            "to expire",
            extra={"execution_name": ended.name},
        )
        lock: dict[str, Any] = {"lock": "unknown"}
    else:
        lock = finish_holder(key, ended.name, settings, deps)
    logger.info(kind, extra={**detail, "lock": lock.get("lock")})
    return {"outcome": kind, "lock": lock, **detail}


@observed
def handler(event: dict, context: Any = None) -> dict:
    settings = event_settings()
    return handle_execution_event(event, settings, deps_for(settings))
