"""The Preflights' board of target group descriptions in the budget's DynamoDB table
(lambdas/adapters/dynamodb_descriptions.py), on moto, beside the in-memory board the simulation uses: both must
keep the same board for the same writes, and the DynamoDB one must say "nothing shared" whenever DynamoDB cannot
answer or holds what it cannot read: sharing is a saving, never a stop.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.adapters.dynamodb_budget import KEY
from lambdas.adapters.dynamodb_descriptions import (
    BOARD_KEY,
    DESCRIBED,
    MAX_FORGET,
    DynamoDbDescriptions,
    decode,
    encode,
)
from lambdas.adapters.dynamodb_looks import EXPIRES_AT
from lambdas.domain.descriptions import Board, Described, LocalDescriptions
from lambdas.domain.ports import TargetGroupSettings
from tests.adapters.conftest import BUDGET_REGION, BUDGET_TABLE

REGION, TABLE = BUDGET_REGION, BUDGET_TABLE
NOW = 1_767_322_800.25
LOGGER = "lambdas.adapters.dynamodb_descriptions"


def arn(name: str) -> str:
    return f"arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-{name}-0123456789/0123456789abcdef"


def settings(name: str, interval: int = 5) -> TargetGroupSettings:
    return TargetGroupSettings(arn(name), "ip", "HTTP", 8080, interval, 2, 2, 3,
                               ("arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/k8s-shop/abc",))


def clock() -> float:
    return NOW


def dynamo(client: Any) -> DynamoDbDescriptions:
    return DynamoDbDescriptions(TABLE, clock, client=client)


# The same writes on both boards, each followed by the board both must show.
SCRIPT = [
    ("want", ([arn("web")], NOW, NOW + 4)),  # a describer: its turn, room for 19 more
    ("want", ([arn("web"), arn("api")], NOW + 1)),  # a join: room for 17
    ("want", ([arn(f"j{i}") for i in range(18)], NOW + 1)),  # no room for 18: nothing written
    ("offer", ([settings("web")], NOW + 4, [arn("gone")])),  # its turn came: cleared
    ("want", ([arn("jobs")], NOW + 5, NOW + 9)),
    ("offer", ([settings("api", 10)], NOW + 6, [])),  # a later describer's turn stays
    ("want", ([arn("cron")], NOW + 7)),
    ("offer", ([], NOW + 100, [arn("web")])),  # forgotten: off the board; the describer's turn has come
]


def test_the_dynamodb_board_keeps_what_the_memory_board_keeps(dynamodb: Any) -> None:
    remote, local = dynamo(dynamodb), LocalDescriptions()
    boards = []
    for op, args in SCRIPT:
        for store in (remote, local):
            getattr(store, op)(*args)
        assert remote.board() == local.board(), (op, args)
        boards.append(remote.board())
    assert boards[1].room == 17 and boards[2] == boards[1]
    assert boards[6].describer_at == NOW + 9 and boards[6].room == 18 and arn("cron") in boards[6].wanted
    assert boards[-1].described == {arn("api"): Described(settings("api", 10), NOW + 6)}
    assert boards[-1].describer_at is None and boards[-1].room == 0


def test_the_board_read_by_another_lambda_and_its_expiry(dynamodb: Any) -> None:
    dynamo(dynamodb).offer([settings("web")], NOW)
    other = dynamo(boto3.client("dynamodb", region_name=REGION))
    assert other.board() == Board(described={arn("web"): Described(settings("web"), NOW)})
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": BOARD_KEY}})["Item"]
    assert item[EXPIRES_AT] == {"N": str(int(NOW) + 86_400)}


def test_an_answer_round_trips_through_its_json():
    s = settings("web")
    assert decode(s.arn, encode(s, NOW)) == Described(s, NOW)


def test_a_write_forgets_at_most_its_share_of_stale_entries(dynamodb: Any) -> None:
    store = dynamo(dynamodb)
    stale = [arn(f"old{i}") for i in range(MAX_FORGET + 5)]
    store.want(stale, NOW, describer_at=NOW + 1)
    store.offer([settings("web")], NOW + 1, forget=stale)
    assert sorted(store.board().wanted) == sorted(stale[MAX_FORGET:])


@pytest.mark.parametrize("stored", ['{"not": "a list"}', "[1, 2]", "not json", '[1,"ip","HTTP",80,5,2,2,2,"lb"]'])
def test_an_answer_that_cannot_be_read_is_left_out(dynamodb: Any, stored: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    dynamodb.put_item(TableName=TABLE, Item={KEY: {"S": BOARD_KEY}, DESCRIBED + arn("web"): {"S": stored},
                                              DESCRIBED + arn("api"): {"S": encode(settings("api"), NOW)}})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        board = dynamo(dynamodb).board()
    assert list(board.described) == [arn("api")] and "cannot be read" in caplog.text


def test_dynamodb_not_answering_means_an_empty_board_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    store = dynamo(client)
    with Stubber(client) as stub, caplog.at_level(logging.WARNING, logger=LOGGER):
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException")
        stub.add_client_error("update_item", "AccessDeniedException")
        stub.add_client_error("update_item", "InternalServerError", http_status_code=500)
        stub.add_client_error("update_item", "ConditionalCheckFailedException")  # no describer's turn to clear
        assert store.board() == Board()
        store.want([arn("web")], NOW)  # kept to itself, nothing raised
        store.offer([settings("web")], NOW)
    assert [r.message.split(":")[0] for r in caplog.records] == ["shared descriptions"] * 3
    assert "describing alone" in caplog.records[0].message
    assert "did not take the wanted groups" in caplog.records[1].message
    assert "did not take the answers" in caplog.records[2].message


def test_a_describer_with_no_group_to_want_still_takes_the_board(dynamodb: Any) -> None:
    remote, local = dynamo(dynamodb), LocalDescriptions()
    for store in (remote, local):
        store.want([], NOW, describer_at=NOW + 3)
        store.want([], NOW)  # a join of nothing writes nothing
    assert remote.board() == local.board() == Board(describer_at=NOW + 3, room=20)
