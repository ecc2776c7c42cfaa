"""What both trigger Lambdas (ECR push: ecr_trigger.py; execution events: execution_events.py) read from their
environment, and the real ports they hand to the use case.

Job: ``EventSettings`` validates the state machine ARN, the Deployment lease table and albgate's event bus once
per container (stacks/constructs/ecr_trigger.py sets them); ``trigger_ports(settings)`` builds the ports over AWS
(lambdas/adapters/trigger_wiring.py) once per container and Region.

Invariant: a missing or malformed variable is one ``InvalidInputError`` naming it; importing this module imports
no boto3 (the wiring is imported on the first ``trigger_ports``, so only a Lambda invocation pays for it).
"""

from __future__ import annotations

import functools

from pydantic import ConfigDict, Field, field_validator

from lambdas.domain.trigger import parse_state_machine_arn
from lambdas.domain.trigger_use_case import TriggerPorts
from lambdas.handlers._environment import EnvironmentSettings
from lambdas.handlers._observability import logger


class EventSettings(EnvironmentSettings):
    """What both trigger Lambdas read from their environment (stacks/constructs/ecr_trigger.py sets it: a few
    names and ARNs, whatever the config holds, so it stays far below Lambda's 4 KB)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state_machine_arn: str = Field(alias="ALBGATE_STATE_MACHINE_ARN")
    lock_table: str = Field(alias="ALBGATE_LOCK_TABLE", min_length=3, max_length=255)
    # "" when no application names an ECR repository: there is no albgate bus, and nothing is published
    event_bus: str = Field(alias="ALBGATE_EVENT_BUS", default="", max_length=256)

    @field_validator("state_machine_arn")
    @classmethod
    def _arn(cls, v: str) -> str:
        if parse_state_machine_arn(v) is None:
            raise ValueError(
                f"{v!r} is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)"
            )
        return v

    @property
    def region(self) -> str:
        return parse_state_machine_arn(self.state_machine_arn)["region"]  # type: ignore[index]

    @property
    def account(self) -> str:
        return parse_state_machine_arn(self.state_machine_arn)["account"]  # type: ignore[index]


def trigger_ports(settings: EventSettings) -> TriggerPorts:
    """The ports over AWS for these settings (the same for every invocation of a warm container)."""
    return _real_ports(settings.lock_table, settings.event_bus, settings.region)


@functools.lru_cache(maxsize=2)
def _real_ports(table: str, bus: str, region: str) -> TriggerPorts:
    from lambdas.adapters.trigger_wiring import real_trigger_ports  # late: only Lambda pays for boto3 clients

    return real_trigger_ports(table, bus, region, logger)
