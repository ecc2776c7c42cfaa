"""The per-Deployment lease on DynamoDB: one item per cluster/namespace/deployment, changed only conditionally.

Job: read a lease item, and change it only if it is still what the caller decided on: take a Deployment nobody
holds, take it over from a holder proven not running (keeping the push waiting on it), queue the newest pending
push behind the holder, hand the lease from a finished holder to its pending push, or delete it. Each write is
a single conditional request (``ConditionExpression``; docs/facts.md, "One rollout per Deployment: leases"), so
two writers racing for one Deployment cannot both win: the loser gets ``False`` and re-reads.

Invariant: nothing but domain errors leaves this module (``map_aws_error``); a failed condition is an answer
(``False``), not an error. No condition reads a clock: ``expires_at`` is only the table's TTL attribute, set
past the longest any execution can run (``LEASE_TTL_SECONDS``), so DynamoDB may delete an item nobody can
still hold; who holds a lease is decided by the holder's own status (lambdas/domain/lease.py).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.trigger import LEASE_TTL_SECONDS, LockItem, Pending

KEY = "lock_key"
EXPIRES_AT = "expires_at"  # the TTL attribute (stacks/constructs/ecr_trigger.py)


def _pending_to_item(p: Pending) -> dict[str, Any]:
    return {
        "M": {
            "execution_name": {"S": p.execution_name},
            "input": {"S": p.input},
            "pushed_at": {"S": p.pushed_at},
            "image": {"S": p.image},
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
    if lock.execution_arn:
        item["execution_arn"] = {"S": lock.execution_arn}
    if lock.claimed_at:
        item["claimed_at"] = {"N": str(int(lock.claimed_at))}
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
        execution_arn=item.get("execution_arn", {}).get("S", ""),
        claimed_at=int(item.get("claimed_at", {}).get("N", "0")),
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
        """Write ``lock`` if the Deployment has no lease item (``now`` is not read: no clock frees a lease)."""
        return self._conditional(
            "PutItem",
            self._client.put_item,
            Item=_to_item(lock),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": KEY},
        )

    def take_over(self, lock: LockItem, previous: str) -> bool:
        """Write ``lock`` (which carries the pending push it keeps) if ``previous`` still holds the item: its
        holder was proven not running, and nobody else took the item meanwhile."""
        return self._conditional(
            "PutItem",
            self._client.put_item,
            Item=_to_item(lock),
            ConditionExpression="#name = :previous",
            ExpressionAttributeNames={"#name": "execution_name"},
            ExpressionAttributeValues={":previous": {"S": previous}},
        )

    def queue(self, key: str, holder: str, pending: Pending, replaces: str | None, now: float) -> bool:
        """Make ``pending`` the waiting push, if ``holder`` still holds the lease and the pending push is still
        ``replaces`` (None: none waits). The item's TTL moves on with the push, which must outlive the holder."""
        condition = "#name = :holder AND " + (
            "attribute_not_exists(#pending)" if replaces is None else "#pending.#name = :replaces"
        )
        values: dict[str, Any] = {
            ":holder": {"S": holder},
            ":exp": {"N": str(int(now) + LEASE_TTL_SECONDS)},
            ":pending": _pending_to_item(pending),
        }
        names = {"#name": "execution_name", "#exp": EXPIRES_AT, "#pending": "pending"}
        if replaces is not None:
            values[":replaces"] = {"S": replaces}
        return self._conditional(
            "UpdateItem",
            self._client.update_item,
            Key={KEY: {"S": key}},
            UpdateExpression="SET #pending = :pending, #exp = :exp",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def hand_over(self, lock: LockItem, finished: str, now: float, execution_arn: str = "") -> LockItem | None:
        """Give the lease of ``finished`` to its pending push (whose execution will have ``execution_arn``); the
        new lease item, or None if it changed meanwhile."""
        pending = lock.pending
        assert pending is not None
        new = LockItem(
            key=lock.key,
            execution_name=pending.execution_name,
            input=pending.input,
            expires_at=int(now) + LEASE_TTL_SECONDS,
            pushed_at=pending.pushed_at,
            image=pending.image,
            pending=None,
            handed_over_from=finished,
            execution_arn=execution_arn,
            claimed_at=int(now),
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
