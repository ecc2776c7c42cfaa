"""The ports of the ECR trigger's use case (lambdas/domain/trigger_use_case.py), beyond those lambdas/domain/ports.py
already has (``Executions``: whether a lease's holder still runs; ``ImagePushTimes``: ECR's push times).

Job: say what the use case needs from the lease table (the conditional writes of lambdas/domain/lease.py's
``LeaseStore`` plus queueing, hand-over and release), from Step Functions (start an execution by name), from
albgate's event bus (publish an event) and from a log (say what it decided), and which rollout state machine it
starts executions of.

Invariant: Protocols only, no behaviour. The real adapters (lambdas/adapters/dynamodb_lock.py, stepfunctions.py,
eventbus.py, ecr.py, wired by lambdas/adapters/trigger_wiring.py) implement them, and so may a test's fakes;
every write of ``LeaseTable`` is conditional on the item the caller read and answers False (or None) when the
item changed in between, never raises for that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from lambdas.domain.lease import LeaseStore
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.trigger import LockItem, Pending, TriggerApplication


class LeaseTable(LeaseStore, Protocol):
    """The Deployment lease table as the trigger writes it (``get``, ``acquire``, ``take_over``: ``LeaseStore``)."""

    def queue(self, key: str, holder: str, pending: Pending, replaces: str | None, now: float) -> bool:
        """Make ``pending`` the push waiting on ``key`` if ``holder`` still holds it and the waiting push is still
        ``replaces`` (None: no push waits)."""
        ...

    def hand_over(self, lock: LockItem, finished: str, now: float, execution_arn: str = "") -> LockItem | None:
        """Give the lease ``finished`` holds to its waiting push; the new item, or None if the item changed."""
        ...

    def release(self, key: str, finished: str) -> bool:
        """Delete the lease item if ``finished`` still holds it and no push waits."""
        ...


class StartedExecution(Protocol):
    execution_arn: str
    started: bool  # False: an execution of that name existed already (ExecutionAlreadyExists)


class ExecutionStarter(Protocol):
    def start(self, state_machine_arn: str, name: str, input_json: str) -> StartedExecution:
        """StartExecution by name; an execution that exists already is an answer (``started=False``)."""
        ...


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        """One albgate event on its bus (source ``albgate``)."""
        ...


class DecisionLog(Protocol):
    """Where the use case says what it decided (Powertools' Logger in Lambda; the standard library's logger fits)."""

    def info(self, msg: str, *, extra: Mapping[str, Any] | None = None) -> Any: ...
    def warning(self, msg: str, *, extra: Mapping[str, Any] | None = None) -> Any: ...


class RolloutMachine(Protocol):
    """The rollout state machine the trigger starts executions of (the handlers' validated settings)."""

    @property
    def state_machine_arn(self) -> str: ...

    @property
    def region(self) -> str: ...


class PushTarget(RolloutMachine, Protocol):
    """What a push may start: the state machine, the applications a push may roll and every rollout's policy."""

    @property
    def applications(self) -> Sequence[TriggerApplication]: ...

    @property
    def policy(self) -> RolloutPolicy: ...
