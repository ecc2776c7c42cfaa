"""ECR push -> gated rollout, the use case: start one execution per matching application, serialized per Deployment.

Job: for a successful push (an ``EcrPush``, parsed from its event at the boundary), find the applications whose
``ecr_repository`` is the pushed repository and whose ``tag_pattern`` matches the tag, and for each: take its
Deployment's lease (lambdas/domain/lease.py; the execution's own Preflight then finds it claimed for it) and
start the rollout (image pinned by digest, the config's ``rollout_policy``) under a deterministic execution name;
or, while another rollout holds the Deployment (whoever started it), record this push as the newest pending one
(``finish_holder`` starts it when the holder ends). A holder proven not running (DescribeExecution) is taken
over, its waiting push kept unless this one is newer. Two pushes of the same second are ordered by ECR's
``imagePushedAt``; when that cannot tell them apart either, neither replaces the other and ``Rollout Order
Unknown`` says so. Publishes ``Rollout Started`` / ``Rollout Queued`` on albgate's event bus. Also the other half,
which the execution-events Lambda runs when an execution ends: ``finish_holder`` releases the Deployment's lease,
or hands it to the pending push and starts that one.

Invariant: every step is idempotent: the execution name is a function of (cluster, namespace, deployment,
digest), so a replayed or retried push starts nothing new (``ExecutionAlreadyExists`` is success), and every
lease write is conditional on the lease item the decision was made on (a lost race reads again and decides
again, ``MAX_LOCK_ATTEMPTS`` times, then ``ConflictError`` so the Lambda retries). A push no application takes
raises ``Ignored`` with the reason, never anything else; only the ports' AWS failures raise (retryable domain
errors). The decisions are lambdas/domain/trigger.py's (pure); everything this module touches is a port
(lambdas/domain/trigger_ports.py, lambdas/domain/ports.py), handed in as ``TriggerPorts``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdas.domain.errors import ConflictError
from lambdas.domain.ports import Executions, ImagePushTimes
from lambdas.domain.contract import ROLLOUT_ORDER_UNKNOWN, ROLLOUT_QUEUED, ROLLOUT_STARTED
from lambdas.domain.trigger import (
    LEASE_TTL_SECONDS,
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
    rollout_request,
)
from lambdas.domain.trigger_ports import (
    DecisionLog,
    EventPublisher,
    ExecutionStarter,
    LeaseTable,
    PushTarget,
    RolloutMachine,
)

MAX_LOCK_ATTEMPTS = 5  # conditional writes lost to a racing Lambda before giving up (then the Lambda retries)


@dataclass(frozen=True)
class TriggerPorts:
    """Everything the use case touches, handed in by the handler (lambdas/adapters/trigger_wiring.py) or a test."""

    locks: LeaseTable
    starter: ExecutionStarter
    bus: EventPublisher | None  # None: no albgate bus (no application names an ECR repository)
    now: Callable[[], float]  # epoch seconds
    executions: Executions | None = None  # whether a lease's holder still runs; None: assume it does
    images: ImagePushTimes | None = None  # ECR's push times, for two pushes of the same second; None: unknown
    log: DecisionLog = field(default_factory=lambda: logging.getLogger(__name__))


def publish(ports: TriggerPorts, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
    """One albgate event, when the stack has a bus."""
    if ports.bus is not None:
        ports.bus.publish(detail_type, detail, resources=resources)


@dataclass(frozen=True)
class Announcements:
    """The event each outcome of a claim publishes (None: nothing; a release announces its own start)."""

    started: str | None = ROLLOUT_STARTED
    queued: str = ROLLOUT_QUEUED
    unordered: str = ROLLOUT_ORDER_UNKNOWN
    what: str = "rollout"  # what the log says started


ROLLOUTS = Announcements()


def rollout_detail(machine: RolloutMachine, name: str, arn: str, input_json: str) -> dict[str, Any]:
    """The fields every albgate event carries: what is rolled (a Deployment, or a release), which execution, its
    console link."""
    try:
        request = json.loads(input_json)
    except json.JSONDecodeError:
        request = {}
    request = request if isinstance(request, dict) else {}
    fields = ("release", "image") if "release" in request else ("cluster", "namespace", "deployment", "container",
                                                                  "image")
    detail = {k: request.get(k) for k in fields}
    detail.update(execution_name=name, execution_arn=arn, console_url=console_url(machine.region, arn))
    return detail


def start_holder(lock: LockItem, machine: RolloutMachine, ports: TriggerPorts, *, fresh: bool,
                 announce: Announcements = ROLLOUTS) -> dict[str, Any]:
    """Start the execution that holds ``lock`` (idempotent by name).

    ``fresh``: the lock was just taken for it, so this is the start that announces it (``Rollout Started``).
    Otherwise the lock already named it (a replayed push, a retried release): StartExecution with the same name
    and input answers success while the execution runs and ``ExecutionAlreadyExists`` once it ended; either way
    nothing new starts and nothing is announced twice. If its execution existed already, that push was rolled before
    (a replay of an old event): it will send no terminal event for this lock, so the lock is let go at once.
    """
    started = ports.starter.start(machine.state_machine_arn, lock.execution_name, lock.input)
    detail = rollout_detail(machine, lock.execution_name, started.execution_arn, lock.input)
    if started.started and fresh:
        if announce.started is not None:
            publish(ports, announce.started, detail, resources=[started.execution_arn])
        ports.log.info(f"{announce.what} started", extra=detail)
        return {"outcome": "started", **detail}
    if fresh:
        ports.log.info("execution exists already: this push was rolled before; letting the lock go", extra=detail)
        follow = finish_holder(lock.key, lock.execution_name, machine, ports, announce=announce)
        return {"outcome": "duplicate", "lock": follow, **detail}
    ports.log.info("execution exists already: duplicate event", extra=detail)
    return {"outcome": "duplicate", **detail}


def finish_holder(key: str, finished: str, machine: RolloutMachine, ports: TriggerPorts,
                  announce: Announcements = ROLLOUTS) -> dict[str, Any]:
    """``finished`` ended: release its Deployment's lock, or hand it to the pending push and start that.

    Conditional on ``finished`` holding the lock, so a replayed terminal event, or the end of an execution that
    never held it (started by hand), changes nothing; a retry after a hand-over restarts the new holder, which
    is a no-op if it already runs.
    """
    for _ in range(MAX_LOCK_ATTEMPTS):
        now = ports.now()
        item = ports.locks.get(key)
        if item is None:
            return {"lock": "free"}
        if item.execution_name != finished:
            if item.handed_over_from == finished:
                return {"lock": "handed_over",
                        "next": start_holder(item, machine, ports, fresh=False, announce=announce)}
            return {"lock": "not_held", "holder": item.execution_name}
        if item.pending is None:
            if ports.locks.release(key, finished):
                ports.log.info("lock released", extra={"lock_key": key, "execution_name": finished})
                return {"lock": "released"}
            continue
        arn = execution_arn(machine.state_machine_arn, item.pending.execution_name)
        new = ports.locks.hand_over(item, finished, now, arn)
        if new is None:
            continue
        ports.log.info("lock handed to the pending push", extra={"lock_key": key, "next": new.execution_name})
        return {"lock": "handed_over", "next": start_holder(new, machine, ports, fresh=True, announce=announce)}
    raise ConflictError(f"lock {key}: changed {MAX_LOCK_ATTEMPTS} times while releasing it; retried with the Lambda")


def start_or_queue(app: TriggerApplication, push: EcrPush, target: PushTarget, ports: TriggerPorts) -> dict[str, Any]:
    """One application's part of a push: take the lease and start, wait as the newest pending push, or take the
    lease over from a holder that no longer runs."""
    request = rollout_request(app, push, target.policy)
    name = execution_name(app.cluster, app.namespace, app.deployment, push.digest)
    mine = Pending(name, request.model_dump_json(), push.time, request.image)
    return claim(app.lock_key, mine, push, target, ports)


def claim(key: str, mine: Pending, push: EcrPush, target: RolloutMachine, ports: TriggerPorts,
          announce: Announcements = ROLLOUTS) -> dict[str, Any]:
    """Take lease ``key`` for the push's execution ``mine`` and start it, queue it behind the running holder, or take
    the lease over from a holder proven not running: the ordering every push-started execution keeps."""
    name = mine.execution_name
    images = ports.images
    pushed_at = images.pushed_at if images is not None else (lambda image: None)

    def lease_for(p: Pending, now: float, pending: Pending | None = None) -> LockItem:
        return LockItem(key, p.execution_name, p.input, int(now) + LEASE_TTL_SECONDS, p.pushed_at, p.image,
                        pending, execution_arn=execution_arn(target.state_machine_arn, p.execution_name),
                        claimed_at=int(now))

    for _ in range(MAX_LOCK_ATTEMPTS):
        now = ports.now()
        item = ports.locks.get(key)
        running: bool | None = None
        if item is not None and name not in (item.execution_name, item.pending.execution_name if item.pending else ""):
            arn = item.execution_arn or execution_arn(target.state_machine_arn, item.execution_name)
            running = holder_running(item, ports.executions.status(arn) if ports.executions else "RUNNING", now)
        decision = decide(item, mine, running=running, pushed_at=pushed_at)
        ports.log.info("lock decision", extra={"lock_key": key, "execution_name": name,
                                               "decision": decision.kind.value, "reason": decision.reason})
        if decision.kind is LockDecision.ACQUIRE:
            lock = lease_for(mine, now)
            if ports.locks.acquire(lock, now):
                return start_holder(lock, target, ports, fresh=True, announce=announce)
            continue
        if decision.kind is LockDecision.TAKE_OVER:
            assert item is not None and decision.start is not None
            lock = lease_for(decision.start, now)
            if ports.locks.take_over(lock, item.execution_name):
                started = start_holder(lock, target, ports, fresh=True, announce=announce)
                if decision.start is mine:
                    return {**started, "took_over_from": item.execution_name}
                return {"outcome": "superseded", "reason": decision.reason, "execution_name": name,
                        "took_over_from": item.execution_name, "started": started}
            continue
        if decision.kind is LockDecision.HELD_BY_SELF:
            assert item is not None
            return start_holder(item, target, ports, fresh=False, announce=announce)
        if decision.kind is LockDecision.QUEUE:
            assert item is not None
            replaces = item.pending.execution_name if item.pending else None
            if ports.locks.queue(key, item.execution_name, mine, replaces, now):
                detail = rollout_detail(target, name, "", mine.input)
                detail.update(execution_arn=None, console_url=None, waiting_for=item.execution_name,
                              replaces=replaces)
                publish(ports, announce.queued, detail)
                return {"outcome": "queued", **detail}
            continue
        if decision.kind is LockDecision.UNORDERED:
            detail = rollout_detail(target, name, "", mine.input)
            detail.update(execution_arn=None, console_url=None, pushed_at=push.time, not_ordered_against=decision.other,
                          reason=decision.reason + "; neither replaces the other: start the one to roll by hand")
            publish(ports, announce.unordered, detail)
            ports.log.warning("push not ordered", extra=detail)
            return {"outcome": "unordered", **detail}
        return {"outcome": decision.kind.value, "reason": decision.reason, "execution_name": name}
    raise ConflictError(f"lock {key}: changed {MAX_LOCK_ATTEMPTS} times while deciding; retried with the Lambda")


def roll_push(push: EcrPush, target: PushTarget, ports: TriggerPorts) -> dict[str, Any]:
    """What a push does to every application it matches; ``Ignored`` when it matches none (with the reason)."""
    apps = matching_applications(list(target.applications), push.repository, push.tag)
    if not apps:
        known = sorted({a.ecr_repository for a in target.applications})
        if push.repository not in known:
            raise Ignored(f"repository {push.repository!r} is not configured (known: {', '.join(known)})")
        raise Ignored(f"tag {push.tag!r} of {push.repository} matches no application's tag_pattern")
    results = [start_or_queue(app, push, target, ports) for app in apps]
    return {"outcome": "handled", "image": f"{push.repository}:{push.tag}@{push.digest}", "results": results}
