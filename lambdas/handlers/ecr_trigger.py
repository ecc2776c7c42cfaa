"""ECR push -> gated rollout, the Lambda: the boundary of lambdas/domain/trigger_use_case.py.

Job: validate the environment and the trigger's configuration once per container (``TriggerSettings``; an error
names the variable, or the file and the field), parse the EventBridge ``ECR Image Action`` event into an
``EcrPush`` (lambdas/domain/trigger.py), build the real ports (lambdas/handlers/_trigger_settings.py, once per
container) and hand both to the use case ``roll_push``, which starts or queues one rollout per matching
application; answer what it did.

Invariant: an event albgate does not act on (other account or Region, not a successful push, unknown
repository, tag matching nothing, malformed) is logged with its reason and answered, never raised, so it
cannot feed a retry loop; only AWS failures raise (retryable domain errors: the Lambda's asynchronous retries,
then its dead-letter queue). No decision is made here: the use case makes them, over the ports it is handed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.trigger import (
    TRIGGER_CONFIG_ENV,
    TRIGGER_CONFIG_PATH,
    Ignored,
    TriggerApplication,
    parse_ecr_push,
    parse_trigger_config,
)
from lambdas.domain.trigger_use_case import TriggerPorts, roll_push
from lambdas.handlers._observability import logger, observed
from lambdas.handlers._trigger_settings import EventSettings, trigger_ports

ENV_TRIGGER_CONFIG = TRIGGER_CONFIG_ENV  # the trigger configuration's file (stacks/constructs/ecr_trigger.py)


# ---------------------------------------------------------------------------------------------------------
# Settings: the environment and the trigger's configuration file, validated once per container; an error
# names the variable, or the file and the field
# ---------------------------------------------------------------------------------------------------------
class TriggerSettings(EventSettings):
    """The trigger's settings: the environment's, plus the applications and the policy from the configuration
    file its layer holds (``ALBGATE_TRIGGER_CONFIG``, default ``TRIGGER_CONFIG_PATH``), read once per container."""

    config_file: str = Field(alias=ENV_TRIGGER_CONFIG, default=TRIGGER_CONFIG_PATH)
    applications: list[TriggerApplication]
    policy: RolloutPolicy

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "TriggerSettings":
        env = dict(os.environ if environ is None else environ)
        EventSettings.from_environ(env)  # the environment's own errors first, naming the variable
        path = env.get(ENV_TRIGGER_CONFIG) or TRIGGER_CONFIG_PATH
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(
                f"trigger configuration {path}: cannot be read ({exc.strerror or exc}); the EcrTrigger function's "
                f"layer holds it (redeploy the stack), or {ENV_TRIGGER_CONFIG} names another file"
            ) from exc
        try:
            config = parse_trigger_config(text)
        except ValueError as exc:
            raise InvalidInputError(f"trigger configuration {path}: {exc}") from exc
        # The environment validated above and the configuration parsed: this cannot fail any more.
        return cls.model_validate(
            {**env, ENV_TRIGGER_CONFIG: path, "applications": config.applications, "policy": config.policy}
        )


@functools.lru_cache(maxsize=1)
def trigger_settings() -> TriggerSettings:
    return TriggerSettings.from_environ()  # type: ignore[return-value]


def handle_push(event: Any, settings: TriggerSettings, ports: TriggerPorts) -> dict[str, Any]:
    """Parse the push, run the use case; an event it does not act on is answered with the reason."""
    try:
        push = parse_ecr_push(event, account=settings.account, region=settings.region)
        return roll_push(push, settings, ports)
    except Ignored as exc:
        event_id = event.get("id") if isinstance(event, dict) else None
        logger.info("event ignored", extra={"reason": str(exc), "event_id": event_id})
        return {"outcome": "ignored", "reason": str(exc)}


@observed
def handler(event: dict, context: Any = None) -> dict:
    settings = trigger_settings()
    return handle_push(event, settings, trigger_ports(settings))
