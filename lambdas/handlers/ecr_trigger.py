"""ECR push -> gated rollout: start one execution per matching application, serialized per Deployment.

Job: for an EventBridge ``ECR Image Action`` event (a successful PUSH in this stack's account and Region), find
the applications whose ``ecr_repository`` is the pushed repository and whose ``tag_pattern`` matches the tag,
and for each: take its Deployment's lease (lambdas/domain/lease.py; the execution's own Preflight then finds it
claimed for it) and start the rollout (image pinned by digest, the config's ``rollout_policy``)
under a deterministic execution name; or, while another rollout holds the Deployment (whoever started it),
record this push as the newest pending one (the execution-events Lambda starts it when the holder ends). A
holder proven not running (DescribeExecution) is taken over, its waiting push kept unless this one is newer.
Two pushes of the same second are ordered by ECR's ``imagePushedAt``; when that cannot tell them apart either,
neither replaces the other and ``Rollout Order Unknown`` says so. Publishes ``Rollout Started`` / ``Rollout
Queued`` on albgate's event bus.

Invariant: an event albgate does not act on (other account or Region, not a successful push, unknown
repository, tag matching nothing, malformed) is logged with its reason and answered, never raised, so it
cannot feed a retry loop. Only AWS failures raise (retryable domain errors: the Lambda's asynchronous retries,
then its dead-letter queue), and every step is idempotent: the execution name is a function of (cluster,
namespace, deployment, digest), so a replayed or retried event starts nothing new (``ExecutionAlreadyExists``
is success), and every lock write is conditional on the lock item the decision was made on.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ConfigDict, Field, field_validator

from lambdas.domain.errors import ConflictError, InvalidInputError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.ports import Executions, ImagePushTimes
from lambdas.domain.trigger import (
    LEASE_TTL_SECONDS,
    ROLLOUT_ORDER_UNKNOWN,
    ROLLOUT_QUEUED,
    ROLLOUT_STARTED,
    TRIGGER_CONFIG_ENV,
    TRIGGER_CONFIG_PATH,
    EcrPush,
    Ignored,
    LockDecision,
    LockItem,
    Pending,
    TriggerApplication,
    console_url,
    decide,
    execution_arn,
    execution_name,
    holder_running,
    matching_applications,
    parse_ecr_push,
    parse_state_machine_arn,
    parse_trigger_config,
    rollout_request,
)
from lambdas.handlers._environment import EnvironmentSettings
from lambdas.handlers._observability import logger, observed

MAX_LOCK_ATTEMPTS = 5  # conditional writes lost to a racing Lambda before giving up (then the Lambda retries)
ENV_TRIGGER_CONFIG = TRIGGER_CONFIG_ENV  # the trigger configuration's file (stacks/constructs/ecr_trigger.py)


# ---------------------------------------------------------------------------------------------------------
# Settings: the environment and the trigger's configuration file, validated once per container; an error
# names the variable, or the file and the field
# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# Ports of this use case (real adapters in Lambda, the same adapters on moto in tests)
# ---------------------------------------------------------------------------------------------------------
class LockStore(Protocol):
    def get(self, key: str) -> LockItem | None: ...
    def acquire(self, lock: LockItem, now: float) -> bool: ...
    def take_over(self, lock: LockItem, previous: str) -> bool: ...
    def queue(self, key: str, holder: str, pending: Pending, replaces: str | None, now: float) -> bool: ...
    def hand_over(self, lock: LockItem, finished: str, now: float, execution_arn: str = "") -> LockItem | None: ...
    def release(self, key: str, finished: str) -> bool: ...


class StartedLike(Protocol):
    execution_arn: str
    started: bool


class Starter(Protocol):
    def start(self, state_machine_arn: str, name: str, input_json: str) -> StartedLike: ...


class Publisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None: ...


@dataclass
class Deps:
    locks: LockStore
    starter: Starter
    bus: Publisher | None  # None: no albgate bus (no application names an ECR repository)
    now: Callable[[], float] = time.time
    executions: Executions | None = None  # whether a lease's holder still runs (the trigger asks)
    images: ImagePushTimes | None = None  # ECR's push times, for two pushes of the same second


def publish(deps: Deps, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
    if deps.bus is not None:
        deps.bus.publish(detail_type, detail, resources=resources)


_deps_override: Deps | None = None


def use_deps(deps: Deps | None) -> None:
    """Install the ports (tests do); None restores the real adapters."""
    global _deps_override
    _deps_override = deps


def deps_for(settings: EventSettings) -> Deps:
    if _deps_override is not None:
        return _deps_override
    return _real_deps(settings.lock_table, settings.event_bus, settings.region)


@functools.lru_cache(maxsize=2)
def _real_deps(table: str, bus: str, region: str) -> Deps:
    from lambdas.adapters.dynamodb_lock import DynamoDbLock  # late: only Lambda pays for boto3 clients
    from lambdas.adapters.ecr import EcrAdapter
    from lambdas.adapters.eventbus import EventBusPublisher
    from lambdas.adapters.stepfunctions import StepFunctionsExecutions, StepFunctionsStarter

    return Deps(DynamoDbLock(table, region=region), StepFunctionsStarter(region=region),
                EventBusPublisher(bus, region=region) if bus else None,
                executions=StepFunctionsExecutions(region=region), images=EcrAdapter())


@functools.lru_cache(maxsize=1)
def trigger_settings() -> TriggerSettings:
    return TriggerSettings.from_environ()  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------
# The use case, shared with the execution-events Lambda
# ---------------------------------------------------------------------------------------------------------
def rollout_detail(settings: EventSettings, name: str, arn: str, input_json: str) -> dict[str, Any]:
    """The fields every albgate event carries: what is rolled, which execution, its console link."""
    try:
        request = json.loads(input_json)
    except json.JSONDecodeError:
        request = {}
    request = request if isinstance(request, dict) else {}
    detail = {k: request.get(k) for k in ("cluster", "namespace", "deployment", "container", "image")}
    detail.update(execution_name=name, execution_arn=arn, console_url=console_url(settings.region, arn))
    return detail


def start_holder(lock: LockItem, settings: EventSettings, deps: Deps, *, fresh: bool) -> dict[str, Any]:
    """Start the execution that holds ``lock`` (idempotent by name).

    ``fresh``: the lock was just taken for it, so this is the start that announces it (``Rollout Started``).
    Otherwise the lock already named it (a replayed push, a retried release): StartExecution with the same name
    and input answers success while the execution runs and ``ExecutionAlreadyExists`` once it ended; either way
    nothing new starts and nothing is announced twice. If its execution existed already, that push was rolled before
    (a replay of an old event): it will send no terminal event for this lock, so the lock is let go at once.
    """
    started = deps.starter.start(settings.state_machine_arn, lock.execution_name, lock.input)
    detail = rollout_detail(settings, lock.execution_name, started.execution_arn, lock.input)
    if started.started and fresh:
        publish(deps, ROLLOUT_STARTED, detail, resources=[started.execution_arn])
        logger.info("rollout started", extra=detail)
        return {"outcome": "started", **detail}
    if fresh:
        logger.info("execution exists already: this push was rolled before; letting the lock go", extra=detail)
        follow = finish_holder(lock.key, lock.execution_name, settings, deps)
        return {"outcome": "duplicate", "lock": follow, **detail}
    logger.info("execution exists already: duplicate event", extra=detail)
    return {"outcome": "duplicate", **detail}


def finish_holder(key: str, finished: str, settings: EventSettings, deps: Deps) -> dict[str, Any]:
    """``finished`` ended: release its Deployment's lock, or hand it to the pending push and start that.

    Conditional on ``finished`` holding the lock, so a replayed terminal event, or the end of an execution that
    never held it (started by hand), changes nothing; a retry after a hand-over restarts the new holder, which
    is a no-op if it already runs.
    """
    for _ in range(MAX_LOCK_ATTEMPTS):
        now = deps.now()
        item = deps.locks.get(key)
        if item is None:
            return {"lock": "free"}
        if item.execution_name != finished:
            if item.handed_over_from == finished:
                return {"lock": "handed_over", "next": start_holder(item, settings, deps, fresh=False)}
            return {"lock": "not_held", "holder": item.execution_name}
        if item.pending is None:
            if deps.locks.release(key, finished):
                logger.info("lock released", extra={"lock_key": key, "execution_name": finished})
                return {"lock": "released"}
            continue
        assert item.pending is not None
        arn = execution_arn(settings.state_machine_arn, item.pending.execution_name)
        new = deps.locks.hand_over(item, finished, now, arn)
        if new is None:
            continue
        logger.info("lock handed to the pending push", extra={"lock_key": key, "next": new.execution_name})
        return {"lock": "handed_over", "next": start_holder(new, settings, deps, fresh=True)}
    raise ConflictError(f"lock {key}: changed {MAX_LOCK_ATTEMPTS} times while releasing it; retried with the Lambda")


def start_or_queue(app: TriggerApplication, push: EcrPush, settings: TriggerSettings, deps: Deps) -> dict[str, Any]:
    """One application's part of a push: take the lease and start, wait as the newest pending push, or take the
    lease over from a holder that no longer runs."""
    request = rollout_request(app, push, settings.policy)
    name = execution_name(app.cluster, app.namespace, app.deployment, push.digest)
    mine = Pending(name, request.model_dump_json(), push.time, request.image)
    key = app.lock_key
    pushed_at = deps.images.pushed_at if deps.images is not None else (lambda image: None)

    def lease_for(p: Pending, now: float, pending: Pending | None = None) -> LockItem:
        return LockItem(key, p.execution_name, p.input, int(now) + LEASE_TTL_SECONDS, p.pushed_at, p.image,
                        pending, execution_arn=execution_arn(settings.state_machine_arn, p.execution_name),
                        claimed_at=int(now))

    for _ in range(MAX_LOCK_ATTEMPTS):
        now = deps.now()
        item = deps.locks.get(key)
        running: bool | None = None
        if item is not None and name not in (item.execution_name, item.pending.execution_name if item.pending else ""):
            arn = item.execution_arn or execution_arn(settings.state_machine_arn, item.execution_name)
            running = holder_running(item, deps.executions.status(arn) if deps.executions else "RUNNING", now)
        decision = decide(item, mine, running=running, pushed_at=pushed_at)
        logger.info("lock decision", extra={"lock_key": key, "execution_name": name,
                                            "decision": decision.kind.value, "reason": decision.reason})
        if decision.kind is LockDecision.ACQUIRE:
            lock = lease_for(mine, now)
            if deps.locks.acquire(lock, now):
                return start_holder(lock, settings, deps, fresh=True)
            continue
        if decision.kind is LockDecision.TAKE_OVER:
            assert item is not None and decision.start is not None
            lock = lease_for(decision.start, now)
            if deps.locks.take_over(lock, item.execution_name):
                started = start_holder(lock, settings, deps, fresh=True)
                if decision.start is mine:
                    return {**started, "took_over_from": item.execution_name}
                return {"outcome": "superseded", "reason": decision.reason, "execution_name": name,
                        "took_over_from": item.execution_name, "started": started}
            continue
        if decision.kind is LockDecision.HELD_BY_SELF:
            assert item is not None
            return start_holder(item, settings, deps, fresh=False)
        if decision.kind is LockDecision.QUEUE:
            assert item is not None
            replaces = item.pending.execution_name if item.pending else None
            if deps.locks.queue(key, item.execution_name, mine, replaces, now):
                detail = rollout_detail(settings, name, "", mine.input)
                detail.update(execution_arn=None, console_url=None, waiting_for=item.execution_name,
                              replaces=replaces)
                publish(deps, ROLLOUT_QUEUED, detail)
                return {"outcome": "queued", **detail}
            continue
        if decision.kind is LockDecision.UNORDERED:
            detail = rollout_detail(settings, name, "", mine.input)
            detail.update(execution_arn=None, console_url=None, pushed_at=push.time, not_ordered_against=decision.other,
                          reason=decision.reason + "; neither replaces the other: start the one to roll by hand")
            publish(deps, ROLLOUT_ORDER_UNKNOWN, detail)
            logger.warning("push not ordered", extra=detail)
            return {"outcome": "unordered", **detail}
        return {"outcome": decision.kind.value, "reason": decision.reason, "execution_name": name}
    raise ConflictError(f"lock {key}: changed {MAX_LOCK_ATTEMPTS} times while deciding; retried with the Lambda")


def handle_push(event: Any, settings: TriggerSettings, deps: Deps) -> dict[str, Any]:
    try:
        push = parse_ecr_push(event, account=settings.account, region=settings.region)
        apps = matching_applications(list(settings.applications), push.repository, push.tag)
        if not apps:
            known = sorted({a.ecr_repository for a in settings.applications})
            if push.repository not in known:
                raise Ignored(f"repository {push.repository!r} is not configured (known: {', '.join(known)})")
            raise Ignored(f"tag {push.tag!r} of {push.repository} matches no application's tag_pattern")
    except Ignored as exc:
        event_id = event.get("id") if isinstance(event, dict) else None
        logger.info("event ignored", extra={"reason": str(exc), "event_id": event_id})
        return {"outcome": "ignored", "reason": str(exc)}
    results = [start_or_queue(app, push, settings, deps) for app in apps]
    return {"outcome": "handled", "image": f"{push.repository}:{push.tag}@{push.digest}", "results": results}


@observed
def handler(event: dict, context: Any = None) -> dict:
    settings = trigger_settings()
    return handle_push(event, settings, deps_for(settings))
