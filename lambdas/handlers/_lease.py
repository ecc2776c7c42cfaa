"""What Preflight needs to take a Deployment's lease: the lease table and DescribeExecution, validated once.

Job: ``take(event)`` runs lambdas.domain.lease.take_lease for the execution Preflight runs in (the state machine
passes ``$$.Execution.Id`` and ``.Name``) and raises ``UnsafeConfigurationError`` (so `Rollout Refused`) naming the
holder and its console page when another execution that may still run holds the Deployment. Without an execution
ARN (Preflight called outside an execution, as the CLI's checks and the tests do) it takes nothing: nothing
changes outside an execution.

Invariant: the only AWS calls are the lease table's GetItem/PutItem (conditional) and DescribeExecution of the
holder, an execution of the same state machine; the ports can be replaced (``use_deps``: the local runner, tests).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field

from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.lease import REFUSED, LeaseAnswer, LeaseStore, take_lease
from lambdas.domain.ports import Executions
from lambdas.handlers._environment import EnvironmentSettings
from lambdas.handlers._observability import logger

ENV_LEASE_TABLE = "ALBGATE_LOCK_TABLE"  # the Deployment lease table, shared with the ECR trigger


class LeaseSettings(EnvironmentSettings):
    model_config = ConfigDict(frozen=True, extra="ignore")

    lease_table: str = Field(alias=ENV_LEASE_TABLE, min_length=3, max_length=255)
    region: str = Field(alias="AWS_REGION", min_length=1)


@dataclass
class LeaseDeps:
    leases: LeaseStore
    executions: Executions
    now: Callable[[], float] = time.time


_deps_override: LeaseDeps | None = None


def use_deps(deps: LeaseDeps | None) -> None:
    """Install the ports (the local runner and tests do); None restores the real adapters."""
    global _deps_override
    _deps_override = deps


@functools.lru_cache(maxsize=1)
def _real_deps() -> LeaseDeps:
    from lambdas.adapters.dynamodb_lock import DynamoDbLock  # late: only Lambda pays for boto3 clients
    from lambdas.adapters.stepfunctions import StepFunctionsExecutions

    settings = LeaseSettings.from_environ()
    return LeaseDeps(DynamoDbLock(settings.lease_table, region=settings.region),
                     StepFunctionsExecutions(region=settings.region))


def deps() -> LeaseDeps:
    return _deps_override if _deps_override is not None else _real_deps()


def take(event: dict[str, Any]) -> LeaseAnswer | None:
    """Take the lease of the Deployment ``event["request"]`` names for the execution ``event`` runs in."""
    arn, name = event.get("execution_arn"), event.get("execution_name")
    if not isinstance(arn, str) or not arn:
        return None
    if not isinstance(name, str) or not name:
        raise InvalidInputError("execution_name: the state machine passes $$.Execution.Name with $$.Execution.Id")
    d = deps()
    answer = take_lease(d.leases, d.executions, raw_request=event.get("request"), execution_arn=arn,
                        execution_name=name, now=d.now())
    logger.info("deployment lease", extra=answer.dump()["lease"])
    if answer.status == REFUSED:
        raise UnsafeConfigurationError(answer.reason)
    return answer
