"""albgate's Describe* budget kept in one DynamoDB item (lambdas/adapters/dynamodb_budget.py), on moto.

The adapter must decide exactly as the in-memory budget does (the domain's ``admit`` on the stored ``tat``), be
shared by every object on the same table, re-read and decide again when another writer won the race, and let
the call through (with a warning) whenever DynamoDB cannot answer: the budget is a courtesy, never a stop.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.adapters.dynamodb_budget import ITEM, KEY, MAX_RACES, TAT, DynamoDbBudget
from lambdas.domain.budget import BudgetSpec, LocalBudget
from tests.adapters.conftest import BUDGET_REGION, BUDGET_TABLE

REGION, TABLE = BUDGET_REGION, BUDGET_TABLE
NOW = 1_767_322_800.0  # 2026-01-02T03:00:00Z
SPEC = BudgetSpec(rate_per_second=4.0, burst=10)  # one call every 0.25 s: every number below is exact
LOGGER = "lambdas.adapters.dynamodb_budget"


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def stored_tat(client: Any) -> float | None:
    item = client.get_item(TableName=TABLE, Key={KEY: {"S": ITEM}}, ConsistentRead=True).get("Item")
    return float(item[TAT]["N"]) if item and TAT in item else None


def put_tat(client: Any, tat: float) -> None:
    client.put_item(TableName=TABLE, Item={KEY: {"S": ITEM}, TAT: {"N": repr(tat)}})


# (seconds after the previous request, tokens, reserve)
SEQUENCES = [
    ("a-burst-then-unbooked-refusals", [(0, 10, False), (0, 1, False), (0, 3, False), (0.25, 1, False)]),
    ("a-burst-then-booked-waiters-queue", [(0, 10, True), (0, 1, True), (0, 2, True), (0.5, 4, True)]),
    ("refill-after-a-quiet-spell", [(0, 10, False), (1.0, 4, True), (0, 1, False), (60, 10, False)]),
    ("over-the-burst-and-zero-tokens", [(0, 15, False), (0, 1, True), (0, 0, True), (2.0, 15, True)]),
]


@pytest.mark.parametrize("requests", [s[1] for s in SEQUENCES], ids=[s[0] for s in SEQUENCES])
def test_the_item_decides_exactly_as_the_local_budget(dynamodb, requests):
    # Given a DynamoDB budget and a LocalBudget with the same spec on the same clock
    clock = FakeClock()
    remote, local = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb), LocalBudget(clock, SPEC)
    # When the same requests arrive at both
    got_remote, got_local = [], []
    for dt, tokens, reserve in requests:
        clock.t += dt
        got_remote.append(remote.acquire(tokens, reserve=reserve))
        got_local.append(local.acquire(tokens, reserve=reserve))
    # Then they grant and refuse alike, with the same waits, and the item holds the same tat
    assert got_remote == got_local
    assert any(w > 0 for w in got_local) and any(w == 0 for w in got_local)  # the sequence exercises both
    assert stored_tat(dynamodb) == local.tat


def test_a_first_call_on_an_empty_table_creates_the_item(dynamodb):
    # Given a table with no budget item yet / When one call asks
    wait = DynamoDbBudget(TABLE, SPEC, FakeClock().now, client=dynamodb).acquire(1, reserve=True)
    # Then it goes now and the item books the next emission
    assert wait == 0.0 and stored_tat(dynamodb) == NOW + 0.25


def test_two_budgets_on_one_table_share_the_budget(dynamodb):
    # Given two Lambdas, each with its own budget object (and client) on the same table
    clock = FakeClock()
    first = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    second = DynamoDbBudget(TABLE, SPEC, clock.now, client=boto3.client("dynamodb", region_name=REGION))
    # When the first spends the whole burst
    assert first.acquire(10, reserve=False) == 0.0
    # Then the second is told to wait, and its booking is seen by the first, who queues behind it
    assert second.acquire(2, reserve=True) == 0.5
    assert first.acquire(1, reserve=True) == 0.75
    assert stored_tat(dynamodb) == NOW + 2.5 + 0.5 + 0.25


class RacingClient:
    """The real client, except that before each of the first ``races`` UpdateItem calls another writer books
    ``tokens`` calls on the same item: the read this budget decided on is stale by the time it writes."""

    def __init__(self, client: Any, other: DynamoDbBudget, races: int, tokens: int = 4) -> None:
        self.client, self.other, self.races, self.tokens = client, other, races, tokens
        self.gets = self.updates = 0

    def get_item(self, **kwargs: Any) -> Any:
        self.gets += 1
        return self.client.get_item(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        self.updates += 1
        if self.races > 0:
            self.races -= 1
            self.other.acquire(self.tokens, reserve=True)
        return self.client.update_item(**kwargs)


def test_a_lost_race_is_read_again_and_decided_again(dynamodb):
    # Given a bucket 2 calls from its burst (tat 2 s ahead), and another writer that books 4 calls between this
    # budget's read and its write
    clock = FakeClock()
    put_tat(dynamodb, NOW + 2.0)
    other = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    racing = RacingClient(dynamodb, other, races=1)
    budget = DynamoDbBudget(TABLE, SPEC, clock.now, client=racing)
    # When this budget asks for one call, which on its first read could go now
    wait = budget.acquire(1, reserve=True)
    # Then its conditional write failed, it read the other writer's booking (tat 2 + 1 s ahead) and decided on
    # that: it waits behind it instead of overwriting it
    assert (racing.gets, racing.updates) == (2, 2)
    assert wait == 3.0 - 2.25
    assert stored_tat(dynamodb) == NOW + 3.25


def test_a_budget_that_keeps_losing_races_lets_the_call_through_with_a_warning(dynamodb, caplog):
    # Given another writer that wins every race
    clock = FakeClock()
    put_tat(dynamodb, NOW + 2.5)
    other = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    racing = RacingClient(dynamodb, other, races=MAX_RACES, tokens=1)
    budget = DynamoDbBudget(TABLE, SPEC, clock.now, client=racing)
    # When this budget asks (on a spent bucket, with a booking)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        wait = budget.acquire(1, reserve=True)
    # Then it gave up after MAX_RACES tries and let the call through, saying so
    assert racing.updates == MAX_RACES and wait == 0.0
    assert any(r.levelno == logging.WARNING and "lost" in r.getMessage() for r in caplog.records)
    # And it never wrote over the other writer's bookings
    assert stored_tat(dynamodb) == NOW + 2.5 + MAX_RACES * 0.25


def test_an_unbooked_refusal_writes_nothing(dynamodb):
    # Given a spent bucket
    put_tat(dynamodb, NOW + 2.5)
    racing = RacingClient(dynamodb, other=None, races=0)  # type: ignore[arg-type]
    # When a call asks without booking / Then it is told to wait and the item is not written
    assert DynamoDbBudget(TABLE, SPEC, FakeClock().now, client=racing).acquire(1, reserve=False) == 0.25
    assert racing.updates == 0 and stored_tat(dynamodb) == NOW + 2.5


def test_a_table_that_does_not_exist_lets_the_call_through_with_a_warning(dynamodb, caplog):
    # Given a budget pointed at a table that is not there (deleted, wrong name in the environment)
    budget = DynamoDbBudget("no-such-table", SPEC, FakeClock().now, client=dynamodb)
    # When calls ask, even more than a burst's worth
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        waits = [budget.acquire(10, reserve=True) for _ in range(3)]
    # Then every one goes now, and each is logged as a warning naming the table
    assert waits == [0.0, 0.0, 0.0]
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("no-such-table" in r.getMessage() for r in warnings)


ERRORS = [
    # id, operation that fails, error code
    ("read-throttled", "get_item", "ProvisionedThroughputExceededException"),
    ("read-denied", "get_item", "AccessDeniedException"),
    ("read-unavailable", "get_item", "InternalServerError"),
    ("write-throttled", "update_item", "ThrottlingException"),
    ("write-denied", "update_item", "AccessDeniedException"),
]


@pytest.mark.parametrize("operation,code", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_any_dynamodb_error_lets_the_call_through_with_a_warning(operation, code, caplog):
    # Given DynamoDB answering ``operation`` with ``code`` (the read before it answering an empty item)
    client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        if operation == "update_item":
            stub.add_response("get_item", {})
        stub.add_client_error(operation, service_error_code=code, service_message="no")
        budget = DynamoDbBudget(TABLE, SPEC, FakeClock().now, client=client)
        # When a call asks
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            wait = budget.acquire(1, reserve=True)
        stub.assert_no_pending_responses()
    # Then it goes now, and the warning says why
    assert wait == 0.0
    assert any(r.levelno == logging.WARNING and code in r.getMessage() for r in caplog.records)


# --- the adaptive share ----------------------------------------------------------------------------------------
def test_a_throttled_call_cuts_the_share_of_every_lambda_on_the_table(dynamodb):
    # Given two Lambdas' budgets on one table, the burst spent by the first
    clock = FakeClock()
    a = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    b = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    assert a.acquire(10, reserve=False) == 0
    # When the first sees a throttled call
    a.throttled()
    # Then the item holds the cut, and the second Lambda's next calls are spaced at the cut share, as in memory
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": ITEM}})["Item"]
    assert (float(item["cut_rate"]["N"]), float(item["cut_at"]["N"])) == (2.0, NOW)
    local = LocalBudget(clock, SPEC)
    local.acquire(10, reserve=False)
    local.throttled()
    assert [b.acquire(1, reserve=True) for _ in range(3)] == [local.acquire(1, reserve=True) for _ in range(3)]


def test_the_same_shortage_seen_by_many_lambdas_cuts_once(dynamodb):
    clock = FakeClock()
    budgets = [DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb) for _ in range(5)]
    for budget in budgets:
        budget.throttled()
    clock.t += 5  # within the cooldown
    budgets[0].throttled()
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": ITEM}})["Item"]
    assert float(item["cut_rate"]["N"]) == SPEC.rate_per_second * SPEC.decrease


def test_a_cut_another_lambda_wrote_meanwhile_stands(dynamodb):
    # Given a Lambda that read no cut, then lost the race to another that wrote one
    clock = FakeClock()
    budget = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    other = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    real_read = budget._read

    def read_then_lose():
        answer = real_read()
        other.throttled()  # the other Lambda cuts between this one's read and write
        budget._read = real_read
        return answer

    budget._read = read_then_lose
    # When it tries to cut, Then its conditional write fails, it reads again, finds the fresh cut and leaves it
    budget.throttled()
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": ITEM}})["Item"]
    assert float(item["cut_rate"]["N"]) == 2.0


NOT_ANSWERING = [
    # (what albgate asks, the call DynamoDB refuses, what it then does, the warning)
    ("throttled", "get_item", None, "the share is not cut"),
    ("short", "get_item", True, "taking the bucket as short"),
    ("controller_late", "update_item", None, "the late controller is not noted"),
]


@pytest.mark.parametrize("method,operation,answer,warning", NOT_ANSWERING, ids=[n[0] for n in NOT_ANSWERING])
def test_dynamodb_not_answering_is_logged_and_errs_on_the_safe_side(dynamodb, caplog, method, operation, answer,
                                                                     warning):
    # the share stays uncut, the bucket counts as short (albgate deregisters itself), a late controller goes unnoted
    budget = DynamoDbBudget(TABLE, SPEC, FakeClock().now, client=dynamodb)
    with Stubber(dynamodb) as stub:
        stub.add_client_error(operation, "ProvisionedThroughputExceededException")
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert getattr(budget, method)() is answer
    assert warning in caplog.text


def test_the_share_is_short_from_a_cut_until_it_has_grown_back_for_every_lambda(dynamodb):
    # Given two Lambdas' budgets on one table, no throttled call yet
    clock = FakeClock()
    a = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    b = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    assert not a.short() and not b.short()
    # When the first sees a throttled call / Then both know the share is short, as the in-memory budget does
    a.throttled()
    local = LocalBudget(clock, SPEC)
    local.throttled()
    assert a.short() and b.short() and local.short()
    # until the share has climbed back to its rate (from half of 4/s to 4/s: 2 of the 3.5 the floor climbs in 30 s)
    clock.t += 30 * 2 / 3.5 - 0.01
    assert b.short() and local.short()
    clock.t += 0.02
    assert not b.short() and not local.short()


def test_a_late_controller_is_noted_for_every_lambda_and_only_moves_forward(dynamodb):
    clock = FakeClock()
    a = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    b = DynamoDbBudget(TABLE, SPEC, clock.now, client=dynamodb)
    a.controller_late()
    assert b.short()
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": ITEM}})["Item"]
    assert float(item["controller_late_at"]["N"]) == NOW
    # an earlier time written late does not move it back
    earlier = DynamoDbBudget(TABLE, SPEC, lambda: NOW - 30, client=dynamodb)
    earlier.controller_late()
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": ITEM}})["Item"]
    assert float(item["controller_late_at"]["N"]) == NOW
    clock.t += 60
    assert not b.short()
