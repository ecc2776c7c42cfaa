"""DescribeTargetHealth answers shared between albgate's executions, one DynamoDB item per target group.

Job: implement ``SharedLooks`` on the Describe* budget's table (the executions that spend the share are the ones
that share answers): the item ``looks#<target group ARN>`` holds the newest answer any execution got for that
group (``observed_at``, and the targets as compact JSON) and the earliest call booked for it (``booked_at``).
``share`` writes the answer only if it is newer than what the item holds, ``book`` the booking only if no earlier
one is still to come (conditional UpdateItems, so two Lambdas racing cannot put an older answer over a newer
one); ``news`` reads both, strongly consistent. Whether an answer may stand in for a call is the domain's to decide
(lambdas/domain/looks.py).

Invariant: a shared look is a saving, never a reason for a rollout to stop or to be wrong. If DynamoDB cannot
answer, ``news`` says there is nothing (the look calls ELB), and ``share`` and ``book`` keep what they had to
themselves, logged as a warning; an item that cannot be read back as targets is ignored the same way. An answer too large for one
item (docs/facts.md, DynamoDB item size) is not shared.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.dynamodb_budget import KEY, BudgetTable
from lambdas.domain.looks import GroupNews, Look
from lambdas.domain.ports import TargetHealth

PREFIX = "looks#"
OBSERVED_AT = "observed_at"
TARGETS = "targets"
BOOKED_AT = "booked_at"  # when an execution's next call for the group is booked (lambdas/domain/looks.py)
# The table's TTL attribute (stacks/constructs/describe_budget.py): an answer is useless seconds after its time, and
# DynamoDB deletes its item some time after this (docs/facts.md, DynamoDB conditional writes: TTL), so the items of
# target groups nobody looks at any more do not pile up.
EXPIRES_AT = "expires_at"
EXPIRE_AFTER_SECONDS = 86_400
# DynamoDB's item size limit is 400 KB (docs/facts.md, "DynamoDB item size"); a larger answer stays unshared,
# with room left for the key and the attribute names.
MAX_TARGETS_BYTES = 350_000

log = logging.getLogger(__name__)


def encode(targets: tuple[TargetHealth, ...]) -> str:
    """The targets as a JSON list of [id, port, state, reason, description] (no repeated field names)."""
    return json.dumps([[t.target_id, t.port, t.state, t.reason, t.description] for t in targets],
                      separators=(",", ":"))


def decode(text: str) -> tuple[TargetHealth, ...]:
    """``encode``'s inverse; ValueError (or TypeError) for anything else."""
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError("targets is not a list")
    return tuple(TargetHealth(str(i), int(p), str(s), str(r), str(d)) for i, p, s, r, d in rows)


class DynamoDbLooks(BudgetTable):
    """``SharedLooks`` over the budget table's items ``looks#<target group ARN>``."""

    def news(self, target_group_arn: str) -> GroupNews:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={KEY: {"S": PREFIX + target_group_arn}}, ConsistentRead=True,
                ProjectionExpression="#at, #targets, #booked",
                ExpressionAttributeNames={"#at": OBSERVED_AT, "#targets": TARGETS, "#booked": BOOKED_AT},
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            log.warning("shared looks: DynamoDB %s did not answer (%s); asking ELB", self._table, e)
            return GroupNews()
        if not item:
            return GroupNews()
        booked = _number(item, BOOKED_AT)
        if OBSERVED_AT not in item and TARGETS not in item:
            return GroupNews(None, booked)
        try:
            look = Look(float(item[OBSERVED_AT]["N"]), decode(item[TARGETS]["S"]))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("shared looks: the item for %s cannot be read (%s); asking ELB", target_group_arn, e)
            return GroupNews(None, booked)
        return GroupNews(look, booked)

    def share(self, target_group_arn: str, look: Look) -> None:
        text = encode(look.targets)
        if len(text.encode()) > MAX_TARGETS_BYTES:
            return
        self._update(
            target_group_arn, "the answer",
            UpdateExpression="SET #at = :at, #targets = :targets, #expires = :expires",
            ConditionExpression="attribute_not_exists(#at) OR #at < :at",
            ExpressionAttributeNames={"#at": OBSERVED_AT, "#targets": TARGETS, "#expires": EXPIRES_AT},
            ExpressionAttributeValues={":at": {"N": repr(look.observed_at)}, ":targets": {"S": text},
                                       ":expires": {"N": str(int(look.observed_at) + EXPIRE_AFTER_SECONDS)}},
        )

    def book(self, target_group_arn: str, at: float) -> None:
        """Kept unless an earlier booking is still to come (``now``: the adapter's clock)."""
        self._update(
            target_group_arn, "the booking",
            UpdateExpression="SET #booked = :at, #expires = if_not_exists(#expires, :expires)",
            ConditionExpression="attribute_not_exists(#booked) OR #booked < :now OR #booked > :at",
            ExpressionAttributeNames={"#booked": BOOKED_AT, "#expires": EXPIRES_AT},
            ExpressionAttributeValues={":at": {"N": repr(at)}, ":now": {"N": repr(self._now())},
                                       ":expires": {"N": str(int(at) + EXPIRE_AFTER_SECONDS)}},
        )

    def _update(self, target_group_arn: str, what: str, **request: Any) -> None:
        """One conditional UpdateItem of the group's item; a condition that does not hold (another Lambda wrote
        something newer, or an earlier booking) is no error, and DynamoDB failing is only logged."""
        try:
            self._client.update_item(TableName=self._table, Key={KEY: {"S": PREFIX + target_group_arn}}, **request)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                log.warning("shared looks: DynamoDB %s did not take %s (%s)", self._table, what, e)
        except BotoCoreError as e:
            log.warning("shared looks: DynamoDB %s did not take %s (%s)", self._table, what, e)


def _number(item: dict[str, Any], name: str) -> float | None:
    """A number attribute of ``item``, None when absent or not a number."""
    try:
        return float(item[name]["N"])
    except (KeyError, TypeError, ValueError):
        return None
