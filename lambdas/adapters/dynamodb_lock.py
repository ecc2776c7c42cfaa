"""The per-Deployment lock on DynamoDB: one item per cluster/namespace/deployment, changed only conditionally.

Job: read a lock item, and change it only if it is still what the caller decided on: take a free or expired
lock, queue the newest pending push behind the holder, hand the lock from a finished holder to its pending
push, or delete it. Each write is a single conditional request (``ConditionExpression``), so two Lambdas racing
for one Deployment cannot both win: the loser gets ``False`` and re-reads.

Invariant: nothing but domain errors leaves this module (``map_aws_error``); a failed condition is an answer
(``False``), not an error. ``expires_at`` is epoch seconds and is the table's TTL attribute, so DynamoDB also
deletes abandoned items some time after they expired (the conditions, not TTL, decide who holds a lock).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.trigger import LockItem, Pending

KEY = "lock_key"
EXPIRES_AT = "expires_at"  # the TTL attribute (stacks/constructs/ecr_trigger.py)


def _pending_to_item(p: Pending) -> dict[str, Any]:
    return {
        "M": {
            "execution_name": {"S": p.execution_name},
            "input": {"S": p.input},
            "pushed_at": {"S": p.pushed_at},
            "image": {"S": p.image},
            "hold_seconds": {"N": str(p.hold_seconds)},
        }
    }


def _pending_from_item(raw: dict[str, Any] | None) -> Pending | None:
    if not raw or "M" not in raw:
        return None
    m = raw["M"]
    return Pending(
        execution_name=m["execution_name"]["S"],
        input=m["input"]["S"],
        pushed_at=m["pushed_at"]["S"],
        image=m["image"]["S"],
        hold_seconds=int(m["hold_seconds"]["N"]),
    )


def _to_item(lock: LockItem) -> dict[str, Any]:
    item: dict[str, Any] = {
        KEY: {"S": lock.key},
        "execution_name": {"S": lock.execution_name},
        "input": {"S": lock.input},
        EXPIRES_AT: {"N": str(int(lock.expires_at))},
        "pushed_at": {"S": lock.pushed_at},
        "image": {"S": lock.image},
    }
    if lock.pending is not None:
        item["pending"] = _pending_to_item(lock.pending)
    if lock.handed_over_from:
        item["handed_over_from"] = {"S": lock.handed_over_from}
    return item


def _from_item(item: dict[str, Any]) -> LockItem:
    return LockItem(
        key=item[KEY]["S"],
        execution_name=item["execution_name"]["S"],
        input=item.get("input", {}).get("S", "{}"),
        expires_at=int(item[EXPIRES_AT]["N"]),
        pushed_at=item.get("pushed_at", {}).get("S", ""),
        image=item.get("image", {}).get("S", ""),
        pending=_pending_from_item(item.get("pending")),
        handed_over_from=item.get("handed_over_from", {}).get("S", ""),
    )


class DynamoDbLock:
    """``LockStore`` over one DynamoDB table (partition key ``lock_key``, string)."""

    def __init__(self, table_name: str, client: Any = None, region: str | None = None) -> None:
        self._table = table_name
        self._client = client or boto3.client("dynamodb", region_name=region, config=client_config())

    def _conditional(self, action: str, call: Any, **kwargs: Any) -> bool:
        try:
            call(TableName=self._table, **kwargs)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise map_aws_error(e, f"dynamodb:{action} {self._table}") from e

    def get(self, key: str) -> LockItem | None:
        try:
            answer = self._client.get_item(TableName=self._table, Key={KEY: {"S": key}}, ConsistentRead=True)
        except ClientError as e:
            raise map_aws_error(e, f"dynamodb:GetItem {self._table} {key}") from e
        item = answer.get("Item")
        return _from_item(item) if item else None

    def acquire(self, lock: LockItem, now: float) -> bool:
        """Write ``lock`` if the Deployment has no lock or its lock expired (a takeover drops its pending push)."""
        return self._conditional(
            "PutItem",
            self._client.put_item,
            Item=_to_item(lock),
            ConditionExpression="attribute_not_exists(#k) OR #exp <= :now",
            ExpressionAttributeNames={"#k": KEY, "#exp": EXPIRES_AT},
            ExpressionAttributeValues={":now": {"N": str(int(now))}},
        )

    def queue(self, key: str, holder: str, pending: Pending, replaces: str | None, now: float) -> bool:
        """Make ``pending`` the waiting push, if ``holder`` still holds a live lock and the pending push is still
        ``replaces`` (None: none waits)."""
        condition = "#name = :holder AND #exp > :now AND " + (
            "attribute_not_exists(#pending)" if replaces is None else "#pending.#name = :replaces"
        )
        values: dict[str, Any] = {
            ":holder": {"S": holder},
            ":now": {"N": str(int(now))},
            ":pending": _pending_to_item(pending),
        }
        names = {"#name": "execution_name", "#exp": EXPIRES_AT, "#pending": "pending"}
        if replaces is not None:
            values[":replaces"] = {"S": replaces}
        return self._conditional(
            "UpdateItem",
            self._client.update_item,
            Key={KEY: {"S": key}},
            UpdateExpression="SET #pending = :pending",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def hand_over(self, lock: LockItem, finished: str, now: float) -> LockItem | None:
        """Give the lock of ``finished`` to its pending push; the new lock item, or None if it changed meanwhile."""
        pending = lock.pending
        assert pending is not None
        new = LockItem(
            key=lock.key,
            execution_name=pending.execution_name,
            input=pending.input,
            expires_at=int(now) + pending.hold_seconds,
            pushed_at=pending.pushed_at,
            image=pending.image,
            pending=None,
            handed_over_from=finished,
        )
        ok = self._conditional(
            "PutItem",
            self._client.put_item,
            Item=_to_item(new),
            ConditionExpression="#name = :finished AND #pending.#name = :pending",
            ExpressionAttributeNames={"#name": "execution_name", "#pending": "pending"},
            ExpressionAttributeValues={
                ":finished": {"S": finished},
                ":pending": {"S": pending.execution_name},
            },
        )
        return new if ok else None

    def release(self, key: str, finished: str) -> bool:
        """Delete the lock if ``finished`` holds it and no push waits."""
        return self._conditional(
            "DeleteItem",
            self._client.delete_item,
            Key={KEY: {"S": key}},
            ConditionExpression="#name = :finished AND attribute_not_exists(#pending)",
            ExpressionAttributeNames={"#name": "execution_name", "#pending": "pending"},
            ExpressionAttributeValues={":finished": {"S": finished}},
        )
