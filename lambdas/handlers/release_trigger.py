"""Lambda `ReleaseTrigger`: an ECR push starts (or queues) a release; a release execution's end lets its lease go
or starts the push waiting for it. The boundary of lambdas/domain/release_trigger.py.

Job: validate the environment once per container (the release state machine's ARN, the release lease table, the
release bus: ``EventSettings``) and read the releases file its layer holds (``ALBGATE_RELEASES``); dispatch on the
event's source: ``aws.ecr`` to ``roll_release_push``, ``aws.states`` to ``release_ended``.

Invariant: an event albgate does not act on (another account or Region, a failed push, a repository or tag no
release takes, another state machine's execution, a status that is not terminal, malformed) is logged with its
reason and answered, never raised; only AWS failures raise (retryable domain errors: the Lambda's asynchronous
retries, then its dead-letter queue).
"""

from __future__ import annotations

import functools
from typing import Any

from lambdas.domain.release_trigger import release_ended, roll_release_push
from lambdas.domain.trigger import ECR_SOURCE, STATES_SOURCE, Ignored, parse_ecr_push, parse_execution_ended
from lambdas.domain.trigger_use_case import TriggerPorts
from lambdas.handlers._observability import logger, observed
from lambdas.handlers._release import release_deps
from lambdas.handlers._trigger_settings import EventSettings, trigger_ports


@functools.lru_cache(maxsize=1)
def event_settings() -> EventSettings:
    return EventSettings.from_environ()


def handle(event: Any, settings: EventSettings, ports: TriggerPorts) -> dict[str, Any]:
    source = event.get("source") if isinstance(event, dict) else None
    try:
        if source == ECR_SOURCE:
            push = parse_ecr_push(event, account=settings.account, region=settings.region)
            return roll_release_push(push, release_deps().specs, settings, ports)
        if source == STATES_SOURCE:
            ended = parse_execution_ended(event, state_machine_arn=settings.state_machine_arn)
            return release_ended(ended, settings, ports)
        raise Ignored(f"source {source!r}: neither an ECR push nor a release execution's end")
    except Ignored as exc:
        logger.info("event ignored", extra={"reason": str(exc)})
        return {"outcome": "ignored", "reason": str(exc)}


@observed
def handler(event: dict, context: Any = None) -> dict:
    settings = event_settings()
    return handle(event, settings, trigger_ports(settings))
