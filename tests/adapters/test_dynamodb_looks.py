"""DescribeTargetHealth answers shared in the budget's DynamoDB table (lambdas/adapters/dynamodb_looks.py), on moto.

The adapter must give back exactly the answer shared, keep the newest per target group whatever order Lambdas
write in, be shared by every object on the same table, and say "nothing shared" (asking ELB) whenever DynamoDB
cannot answer or holds something it cannot read: a shared look is a saving, never a stop.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from lambdas.adapters.dynamodb_budget import KEY
from lambdas.adapters.dynamodb_looks import (
    EXPIRES_AT,
    MAX_TARGETS_BYTES,
    PREFIX,
    TARGETS,
    DynamoDbLooks,
    decode,
    encode,
)
from lambdas.domain.looks import GroupNews, Look
from lambdas.domain.ports import TargetHealth
from tests.adapters.conftest import BUDGET_REGION, BUDGET_TABLE

REGION, TABLE = BUDGET_REGION, BUDGET_TABLE
ARN = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-web-0123456789/0123456789abcdef"
ARN2 = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-api-0123456789/fedcba9876543210"
NOW = 1_767_322_800.25
LOGGER = "lambdas.adapters.dynamodb_looks"


def clock() -> float:
    return NOW
TARGETS_NOW = (
    TargetHealth("10.0.1.7", 8080, "healthy"),
    TargetHealth("10.0.1.9", 8080, "initial", "Elb.InitialHealthChecking", "Initial health checks in progress"),
    TargetHealth("10.0.0.4", 8080, "draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"),
)


def test_an_answer_shared_by_one_lambda_is_read_back_whole_by_another(dynamodb: Any) -> None:
    DynamoDbLooks(TABLE, clock, client=dynamodb).share(ARN, Look(NOW, TARGETS_NOW))
    other = DynamoDbLooks(TABLE, clock, client=boto3.client("dynamodb", region_name=REGION))
    assert other.news(ARN).look == Look(NOW, TARGETS_NOW)
    assert other.news(ARN2).look is None  # each group its own item


def test_an_answer_expires_a_day_after_its_time_under_the_tables_ttl_attribute(dynamodb: Any) -> None:
    DynamoDbLooks(TABLE, clock, client=dynamodb).share(ARN, Look(NOW, TARGETS_NOW))
    item = dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": PREFIX + ARN}})["Item"]
    assert item[EXPIRES_AT] == {"N": str(int(NOW) + 86_400)}


def test_the_newest_answer_stays_whatever_order_the_lambdas_write_in(dynamodb: Any) -> None:
    looks = DynamoDbLooks(TABLE, clock, client=dynamodb)
    looks.share(ARN, Look(NOW, TARGETS_NOW))
    looks.share(ARN, Look(NOW - 2, TARGETS_NOW[:1]))  # a slower Lambda's older answer: refused by the condition
    assert looks.news(ARN).look == Look(NOW, TARGETS_NOW)
    looks.share(ARN, Look(NOW + 3, ()))  # a newer one replaces it (no target left is an answer too)
    assert looks.news(ARN).look == Look(NOW + 3, ())


def test_the_earliest_booking_still_to_come_stays_beside_the_answer(dynamodb: Any) -> None:
    looks = DynamoDbLooks(TABLE, clock, client=dynamodb)
    looks.book(ARN, NOW + 20)
    assert looks.news(ARN) == GroupNews(None, NOW + 20)  # a booking before any answer
    looks.book(ARN, NOW + 30)  # later than the one still to come: refused
    looks.share(ARN, Look(NOW, TARGETS_NOW))  # the answer does not touch the booking
    assert looks.news(ARN) == GroupNews(Look(NOW, TARGETS_NOW), NOW + 20)
    looks.book(ARN, NOW + 10)  # earlier: kept
    assert looks.news(ARN).booked_at == NOW + 10
    # When the booking has passed / Then any new one replaces it, later or not
    later = DynamoDbLooks(TABLE, lambda: NOW + 11, client=dynamodb)
    later.book(ARN, NOW + 40)
    assert later.news(ARN) == GroupNews(Look(NOW, TARGETS_NOW), NOW + 40)


def test_an_answer_too_large_for_one_item_is_not_shared(dynamodb: Any) -> None:
    description = "x" * 400
    many = tuple(TargetHealth(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8080, "healthy", "", description)
                 for i in range(1000))
    assert len(encode(many).encode()) > MAX_TARGETS_BYTES
    looks = DynamoDbLooks(TABLE, clock, client=dynamodb)
    looks.share(ARN, Look(NOW, many))
    assert looks.news(ARN).look is None
    looks.share(ARN, Look(NOW, many[:100]))  # well under the limit
    assert looks.news(ARN).look == Look(NOW, many[:100])


def test_dynamodb_not_answering_means_nothing_shared_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    looks = DynamoDbLooks(TABLE, clock, client=client)
    with Stubber(client) as stub, caplog.at_level(logging.WARNING, logger=LOGGER):
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException")
        stub.add_client_error("update_item", "AccessDeniedException")
        stub.add_client_error("update_item", "InternalServerError", http_status_code=500)
        assert looks.news(ARN) == GroupNews()
        looks.share(ARN, Look(NOW, TARGETS_NOW))  # kept to itself, nothing raised
        looks.book(ARN, NOW + 5)
    assert [r.message.split(":")[0] for r in caplog.records] == ["shared looks"] * 3
    assert "asking ELB" in caplog.records[0].message and "did not take the answer" in caplog.records[1].message
    assert "did not take the booking" in caplog.records[2].message


def test_a_lost_race_to_a_newer_answer_is_no_warning(dynamodb: Any, caplog: pytest.LogCaptureFixture) -> None:
    looks = DynamoDbLooks(TABLE, clock, client=dynamodb)
    looks.share(ARN, Look(NOW, TARGETS_NOW))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        looks.share(ARN, Look(NOW, TARGETS_NOW[:1]))  # same time: the first stays
    assert not caplog.records and looks.news(ARN).look == Look(NOW, TARGETS_NOW)


@pytest.mark.parametrize("stored", ["not json", '{"a": 1}', '[["10.0.0.1", "eighty", "healthy", "", ""]]', "[[1]]"])
def test_an_item_that_cannot_be_read_as_targets_is_ignored(dynamodb: Any, stored: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    dynamodb.put_item(TableName=TABLE, Item={KEY: {"S": PREFIX + ARN}, "observed_at": {"N": repr(NOW)},
                                              TARGETS: {"S": stored}})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert DynamoDbLooks(TABLE, clock, client=dynamodb).news(ARN).look is None
    assert "cannot be read" in caplog.text


def test_an_item_without_its_time_is_ignored(dynamodb: Any) -> None:
    dynamodb.put_item(TableName=TABLE, Item={KEY: {"S": PREFIX + ARN}, TARGETS: {"S": encode(TARGETS_NOW)}})
    assert DynamoDbLooks(TABLE, clock, client=dynamodb).news(ARN).look is None


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(st.lists(st.builds(TargetHealth, _text, st.integers(1, 65535), _text, _text, _text), max_size=20))
def test_encoding_keeps_every_field_of_every_target(targets: list[TargetHealth]) -> None:
    assert decode(encode(tuple(targets))) == tuple(targets)
