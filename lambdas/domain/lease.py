"""One rollout per Deployment: the lease every execution of the rollout state machine takes before it changes
anything, whoever started it (a person, the CLI, the ECR trigger, the bootstrap's restarts).

Job: ``take_lease`` is what Preflight does first (lambdas/handlers/_lease.py), before it reads anything: key the
execution input to its Deployment (``request_key``, with the same parser Preflight refuses a bad input with), and take that
Deployment's lease item for this execution: when there is none, when it already names this execution (the ECR
trigger claimed it before starting the execution, or this task is retried), or when its holder is proven not
running (DescribeExecution: it ended, or it was claimed and never started). A lease held by an execution that
may still run refuses this one, naming the holder and its console page. A takeover keeps the push that waits on
the item: it starts when this execution ends. The lease is released by the holder's own terminal status event
(lambdas/handlers/execution_events.py), never by a state of the machine, so no exit path can skip it.

Invariant: no clock alone frees a lease. Every write is conditional on the item the decision was made on
(``LeaseStore``), so two executions racing for one Deployment cannot both take it; the loser reads again and
decides again. Pure apart from the two ports it is handed; the item's shape is the ECR trigger's ``LockItem``:
one table, one lease per Deployment, the trigger's queue of pushes on the same item (docs/rollout.md, "One rollout
per Deployment").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from lambdas.domain.errors import ConflictError, InvalidInputError
from lambdas.domain.models import parse_request
from lambdas.domain.ports import Executions
from lambdas.domain.trigger import LEASE_TTL_SECONDS, LockItem, console_url, holder_running

Lease = LockItem  # one item per Deployment, shared with the ECR trigger's queue of pushes

TAKEN, REFUSED, UNKEYED = "TAKEN", "REFUSED", "UNKEYED"
# The error `Rollout Refused` names when another execution holds the Deployment (the state machine's
# `Record Lease Refusal` writes it; docs/rollout.md).
ROLLOUT_IN_PROGRESS = "RolloutInProgress"
MAX_LEASE_ATTEMPTS = 5  # conditional writes lost to a racing execution before giving up (then Step Functions retries)


class LeaseStore(Protocol):
    """The lease table's conditional writes (lambdas/adapters/dynamodb_lock.py); each answers False when the item
    is no longer what the caller read."""

    def get(self, key: str) -> Lease | None: ...
    def acquire(self, lock: Lease, now: float) -> bool:
        """Write ``lock`` if the Deployment has no lease item."""
        ...

    def take_over(self, lock: Lease, previous: str) -> bool:
        """Write ``lock`` if the item still names ``previous`` as its holder (its pending push is in ``lock``)."""
        ...


def lease_key(cluster: str, namespace: str, deployment: str) -> str:
    """The lease item's key: one per Deployment of one cluster (the ECR trigger's ``TriggerApplication.lock_key``)."""
    return f"{cluster}/{namespace}/{deployment}"


def request_key(raw: Any) -> str | None:
    """The lease key of an execution input, read with Preflight's own parser; None when Preflight would refuse
    the input (it then changes nothing, so no lease is needed)."""
    try:
        request = parse_request(raw)
    except (InvalidInputError, ValueError, TypeError):
        return None
    return lease_key(request.cluster, request.namespace, request.deployment)


def sibling_arn(execution_arn: str, name: str) -> str:
    """The ARN of the execution ``name`` of the same state machine as ``execution_arn``
    (arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>)."""
    return execution_arn.rsplit(":", 1)[0] + ":" + name


def _region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


@dataclass(frozen=True)
class LeaseAnswer:
    """What taking the lease answered (logged by Preflight; REFUSED becomes `Rollout Refused`)."""

    status: str  # TAKEN | REFUSED | UNKEYED
    reason: str
    key: str = ""
    holder: str = ""
    holder_arn: str = ""
    console_url: str = ""

    def dump(self) -> dict[str, Any]:
        return {"lease": {k: v for k, v in self.__dict__.items()}}


def take_lease(
    store: LeaseStore,
    executions: Executions,
    *,
    raw_request: Any,
    execution_arn: str,
    execution_name: str,
    now: float,
) -> LeaseAnswer:
    """Take the lease of the Deployment the input names for this execution, or say who holds it."""
    key = request_key(raw_request)
    if key is None:
        return LeaseAnswer(UNKEYED, "the input names no Deployment Preflight would accept; Preflight refuses it")
    image = raw_request.get("image") if isinstance(raw_request, dict) else None
    mine = Lease(key=key, execution_name=execution_name, input="", expires_at=int(now) + LEASE_TTL_SECONDS,
                 pushed_at="", image=image if isinstance(image, str) else "", execution_arn=execution_arn,
                 claimed_at=int(now))
    for _ in range(MAX_LEASE_ATTEMPTS):
        item = store.get(key)
        if item is None:
            if store.acquire(mine, now):
                return LeaseAnswer(TAKEN, "no rollout held the Deployment", key)
            continue
        if item.execution_name == execution_name:
            return LeaseAnswer(TAKEN, "the lease was claimed for this execution", key)
        holder_arn = item.execution_arn or sibling_arn(execution_arn, item.execution_name)
        status = executions.status(holder_arn)
        if holder_running(item, status, now):
            url = console_url(_region(holder_arn), holder_arn)
            return LeaseAnswer(
                REFUSED,
                f"Deployment {key} is being rolled by execution {item.execution_name} ({status or 'starting'}): "
                f"{url} ; albgate rolls one Deployment at a time and changed nothing: wait for that execution to "
                "end (or stop it), then start again",
                key, item.execution_name, holder_arn, url,
            )
        taken = replace(mine, pending=item.pending)  # a waiting push starts when this execution ends
        if store.take_over(taken, item.execution_name):
            why = f"ended {status}" if status else "never started"
            return LeaseAnswer(TAKEN, f"taken over from {item.execution_name}, which {why}", key,
                               item.execution_name, holder_arn)
    raise ConflictError(f"lease {key}: changed {MAX_LEASE_ATTEMPTS} times while taking it; Step Functions retries")
