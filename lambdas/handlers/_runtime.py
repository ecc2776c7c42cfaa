"""What every albgate handler shares: validated settings, the ports for a cluster, observability, metrics.

Invariant: handlers stay thin (event -> one use case -> state); nothing below this module reads
``os.environ``; the ports come from ``ports_for`` so the very same handler code runs against the real cluster
(adapters) in Lambda and against the simulated cluster (``albgate.sim``) locally, which installs its own
provider with ``use_ports``.

What a function may touch is the allow-list the stack ships in a layer (``ALBGATE_ALLOW_LIST`` names its file,
``lambdas.domain.allow_list``): ``task`` refuses an event that names an unconfigured cluster, namespace or
Deployment before the handler body runs, and ``ports_for`` refuses to build the real ports for an unconfigured
cluster, or for any cluster when no allow-list is set (fail closed: only an installed provider, the simulation's,
runs without one).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from lambdas.domain.allow_list import ALLOW_LIST_ENV, AllowList, parse_allow_list, targets_of
from lambdas.domain.budget import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import validation_message
from lambdas.domain.ports import Ports
from lambdas.handlers._observability import logger, observed

PortsProvider = Callable[[str], Ports]
_provider: PortsProvider | None = None


class HandlerSettings(BaseModel):
    """A handler's environment, validated once per container (cold start)."""

    region: str = Field(min_length=1, description="AWS_REGION, set by Lambda")
    describe_budget_table: str = Field(
        default="", description="ALBGATE_DESCRIBE_BUDGET_TABLE: the DynamoDB table of albgate's Describe* share ('' = none)"
    )
    describe_budget_rate: float = Field(
        default=DEFAULT_RATE_PER_SECOND, gt=0, description="ALBGATE_DESCRIBE_BUDGET_RATE: Describe* calls/s for all of albgate"
    )
    describe_budget_burst: int = Field(default=DEFAULT_BURST, ge=1, description="ALBGATE_DESCRIBE_BUDGET_BURST: calls at once")

    @classmethod
    def from_environ(cls) -> "HandlerSettings":
        try:
            return cls(
                region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", ""),
                describe_budget_table=os.environ.get("ALBGATE_DESCRIBE_BUDGET_TABLE", ""),
                describe_budget_rate=os.environ.get("ALBGATE_DESCRIBE_BUDGET_RATE", DEFAULT_RATE_PER_SECOND),
                describe_budget_burst=os.environ.get("ALBGATE_DESCRIBE_BUDGET_BURST", DEFAULT_BURST),
            )
        except ValidationError as exc:
            raise InvalidInputError(f"handler environment: {validation_message(exc)}") from exc


@functools.lru_cache(maxsize=1)
def settings() -> HandlerSettings:
    return HandlerSettings.from_environ()


@functools.lru_cache(maxsize=1)
def configured_allow_list() -> AllowList | None:
    """The allow-list this function was deployed with (``ALBGATE_ALLOW_LIST``: the JSON file of the clusters and
    applications this stack may touch), read once per container; None when none is set. Read apart from
    ``settings``: the simulation runs every handler without an AWS Region."""
    path = os.environ.get(ALLOW_LIST_ENV, "")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return parse_allow_list(f.read())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"handler environment: {ALLOW_LIST_ENV} {path}: {exc}") from exc


def required_allow_list() -> AllowList:
    allowed = configured_allow_list()
    if allowed is None:
        raise InvalidInputError(
            f"handler environment: {ALLOW_LIST_ENV} is not set, and albgate reaches no cluster without the list of "
            "what it may touch; the stack sets it on every function (stacks/constructs/allow_list.py): redeploy"
        )
    return allowed


def use_ports(provider: PortsProvider | None) -> None:
    """Install a ports provider (the simulation does); None restores the real adapters."""
    global _provider
    _provider = provider


def ports_for(cluster: str) -> Ports:
    if _provider is not None:
        return _provider(cluster)
    required_allow_list().refuse_cluster(cluster)
    cfg = settings()
    from lambdas.adapters.wiring import real_ports  # imported late: only Lambda pays for boto3/kubernetes

    ports = real_ports(cluster, cfg.region, cfg.describe_budget_table, cfg.describe_budget_rate,
                       cfg.describe_budget_burst)
    cloudwatch = cloudwatch_alarms(cfg.region)
    return dataclasses.replace(ports, alarms=cloudwatch, metrics=cloudwatch)


@functools.lru_cache(maxsize=4)
def cloudwatch_alarms(region: str) -> Any:
    """The CloudWatch port (``AlarmPort`` and ``MetricsPort``) for this Region, once per warm Lambda; it makes its
    client on its first call, so a rollout whose policy names no alarm and asks for no analysis never builds one."""
    from lambdas.adapters.cloudwatch import CloudWatchAdapter  # imported late, like the other adapters

    return CloudWatchAdapter.for_region(region)


def cluster_of(event: dict[str, Any]) -> str:
    try:
        return event["request"]["cluster"]
    except (KeyError, TypeError) as exc:
        raise InvalidInputError("request.cluster: the state has no request; start the execution with a rollout input") from exc


def task(name: str) -> Callable[[Callable[..., dict]], Callable[[dict, Any], dict]]:
    """Wrap a handler body with correlation id, tracing, metrics flushing and structured logs; refuse an event
    that names anything outside the allow-list before the body runs."""

    def decorate(body: Callable[..., dict]) -> Callable[[dict, Any], dict]:
        @observed
        @functools.wraps(body)
        def handler(event: dict, context: Any = None) -> dict:
            allowed = configured_allow_list()
            if allowed is not None:
                allowed.refuse(targets_of(event))
            result = body(event, context)
            logger.info(
                f"{name} done",
                extra={k: result.get(k) for k in ("gate", "drain", "step", "mode", "outcome") if k in result},
            )
            return result

        return handler

    return decorate
