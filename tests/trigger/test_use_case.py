"""The trigger's use case over in-memory ports: no AWS, no handler, the decisions and their conditional writes.

Given a push and fakes for the lease table, Step Functions and the bus (what lambdas/domain/trigger_ports.py asks
of them), when ``roll_push`` or ``finish_holder`` runs, then the lease item, the started executions and the
published events are what the design promises, also when another writer changes the item between a read and
a write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from lambdas.domain.errors import ConflictError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.trigger import (
    EcrPush,
    Ignored,
    LockItem,
    Pending,
    TriggerApplication,
    execution_name,
)
from lambdas.domain.trigger_use_case import MAX_LOCK_ATTEMPTS, TriggerPorts, finish_holder, roll_push

ACCOUNT, REGION = "123456789012", "us-east-1"
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Rollout"
KEY = "prod/shop/cart"
DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@dataclass(frozen=True)
class Target:
    state_machine_arn: str = MACHINE
    region: str = REGION
    applications: tuple[TriggerApplication, ...] = (
        TriggerApplication(cluster="prod", namespace="shop", deployment="cart", container="app",
                           ecr_repository="team/cart", tag_pattern="release-*"),
    )
    policy: RolloutPolicy = RolloutPolicy()


@dataclass
class Leases:
    """The lease table's conditions (lambdas/adapters/dynamodb_lock.py), in memory; ``before_write`` runs
    before each conditional write, as another Lambda racing this one would."""

    items: dict[str, LockItem] = field(default_factory=dict)
    before_write: Callable[[], None] = lambda: None
    writes: list[str] = field(default_factory=list)

    def get(self, key: str) -> LockItem | None:
        return self.items.get(key)

    def _write(self, action: str, ok: bool, key: str, item: LockItem | None) -> bool:
        self.writes.append(action)
        if ok:
            if item is None:
                del self.items[key]
            else:
                self.items[key] = item
        return ok

    def acquire(self, lock: LockItem, now: float) -> bool:
        self.before_write()
        return self._write("acquire", lock.key not in self.items, lock.key, lock)

    def take_over(self, lock: LockItem, previous: str) -> bool:
        self.before_write()
        held = self.items.get(lock.key)
        return self._write("take_over", held is not None and held.execution_name == previous, lock.key, lock)

    def queue(self, key: str, holder: str, pending: Pending, replaces: str | None, now: float) -> bool:
        self.before_write()
        held = self.items.get(key)
        waiting = held.pending.execution_name if held is not None and held.pending else None
        ok = held is not None and held.execution_name == holder and waiting == replaces
        return self._write("queue", ok, key, dataclasses.replace(held, pending=pending) if ok else None)

    def hand_over(self, lock: LockItem, finished: str, now: float, execution_arn: str = "") -> LockItem | None:
        self.before_write()
        held, pending = self.items.get(lock.key), lock.pending
        assert pending is not None
        new = LockItem(lock.key, pending.execution_name, pending.input, 0, pending.pushed_at, pending.image,
                       handed_over_from=finished, execution_arn=execution_arn, claimed_at=int(now))
        ok = (held is not None and held.execution_name == finished and held.pending is not None
              and held.pending.execution_name == pending.execution_name)
        return new if self._write("hand_over", ok, lock.key, new) else None

    def release(self, key: str, finished: str) -> bool:
        self.before_write()
        held = self.items.get(key)
        return self._write("release", held is not None and held.execution_name == finished and held.pending is None,
                           key, None)


@dataclass(frozen=True)
class Started:
    execution_arn: str
    started: bool


@dataclass
class Starter:
    existing: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def start(self, state_machine_arn: str, name: str, input_json: str) -> Started:
        self.calls.append(name)
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        new = name not in self.existing
        self.existing.add(name)
        return Started(arn, new)


@dataclass
class Bus:
    events: list[str] = field(default_factory=list)

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        self.events.append(detail_type)


class Running:
    """DescribeExecution says every holder still runs."""

    def status(self, execution_arn: str) -> str | None:
        return "RUNNING"


def push(digest: str = DIGEST_A, tag: str = "release-1", time: str = "2025-01-01T10:00:00Z") -> EcrPush:
    return EcrPush(ACCOUNT, REGION, "team/cart", digest, tag, time)


def world(leases: Leases | None = None, starter: Starter | None = None) -> tuple[TriggerPorts, Leases, Starter, Bus]:
    leases, starter, bus = leases or Leases(), starter or Starter(), Bus()
    return TriggerPorts(leases, starter, bus, lambda: 1_735_725_600.0, executions=Running()), leases, starter, bus


def test_a_push_takes_the_free_lease_and_starts_its_rollout():
    ports, leases, starter, bus = world()
    answer = roll_push(push(), Target(), ports)
    name = execution_name("prod", "shop", "cart", DIGEST_A)
    assert [r["outcome"] for r in answer["results"]] == ["started"]
    assert leases.items[KEY].execution_name == name and starter.calls == [name]
    assert bus.events == ["Rollout Started"]


def test_a_lease_lost_to_a_racing_writer_is_decided_again_and_the_push_waits():
    # Given another Lambda takes the Deployment between this push's read and its write
    other = LockItem(KEY, "other-rollout", "", 0, "2025-01-01T09:59:00Z", "img@" + DIGEST_B)
    leases = Leases()

    def race() -> None:
        leases.items.setdefault(KEY, other)

    leases.before_write = race
    ports, _, starter, bus = world(leases)
    # When the push is handled / Then its acquire fails, it reads again, and waits behind the winner
    answer = roll_push(push(time="2025-01-01T10:00:00Z"), Target(), ports)
    assert answer["results"][0]["outcome"] == "queued"
    assert leases.writes == ["acquire", "queue"]
    assert leases.items[KEY].pending is not None and starter.calls == []
    assert bus.events == ["Rollout Queued"]


def test_a_lease_that_keeps_changing_gives_up_with_a_retryable_conflict():
    leases = Leases()
    counter = iter(range(1_000))

    def another_holder_each_time() -> None:
        leases.items[KEY] = LockItem(KEY, f"other-{next(counter)}", "", 0, "2025-01-01T09:00:00Z", "img")

    leases.before_write = another_holder_each_time
    leases.items[KEY] = LockItem(KEY, "first", "", 0, "2025-01-01T09:00:00Z", "img")
    ports, *_ = world(leases)
    with pytest.raises(ConflictError, match=f"changed {MAX_LOCK_ATTEMPTS} times while deciding"):
        roll_push(push(), Target(), ports)
    assert len(leases.writes) == MAX_LOCK_ATTEMPTS


def test_a_replayed_push_whose_execution_exists_already_lets_the_fresh_lease_go():
    # Given the push's execution ran long ago (its name exists) and the Deployment is free
    name = execution_name("prod", "shop", "cart", DIGEST_A)
    ports, leases, starter, bus = world(starter=Starter(existing={name}))
    # When the push is replayed / Then nothing new starts, nothing is announced, the lease is not left behind
    answer = roll_push(push(), Target(), ports)
    assert answer["results"][0]["outcome"] == "duplicate"
    assert answer["results"][0]["lock"] == {"lock": "released"}
    assert KEY not in leases.items and bus.events == []


def test_a_push_no_application_takes_is_ignored_before_any_port_is_used():
    ports, leases, starter, bus = world()
    with pytest.raises(Ignored, match="matches no application's tag_pattern"):
        roll_push(push(tag="nightly"), Target(), ports)
    assert leases.writes == [] and starter.calls == [] and bus.events == []


def test_the_end_of_the_holder_hands_the_lease_to_the_waiting_push_and_starts_it():
    waiting = Pending("cart-next", '{"cluster": "prod"}', "2025-01-01T10:01:00Z", "img@" + DIGEST_B)
    leases = Leases(items={KEY: LockItem(KEY, "cart-now", "", 0, "2025-01-01T10:00:00Z", "img", waiting)})
    ports, _, starter, bus = world(leases)
    answer = finish_holder(KEY, "cart-now", Target(), ports)
    assert answer["lock"] == "handed_over" and answer["next"]["outcome"] == "started"
    assert leases.items[KEY].execution_name == "cart-next" and leases.items[KEY].handed_over_from == "cart-now"
    assert starter.calls == ["cart-next"] and bus.events == ["Rollout Started"]
