"""albgate's share of the account's Describe* bucket, kept in one DynamoDB item that every Lambda shares.

Job: implement ``DescribeBudget`` over the item ``budget_key = "elbv2-describe"``: read its ``tat`` (the
theoretical arrival time of ``lambdas/domain/budget.py``) and the share's last cut (``cut_rate``, ``cut_at``), let
the domain decide, and write the new ``tat`` only if nobody changed it since the read (a conditional UpdateItem).
Two Lambdas racing for the same slot cannot both win: the loser reads again and decides again. A throttled call
cuts the share the same way: the new cut is written only if the cut read is still the item's.

Invariant: the budget is a courtesy to the other callers of the bucket, never a reason for a rollout to stop.
If DynamoDB cannot answer (throttled, unavailable, access denied, or the item keeps changing under us), the
call is let through, logged as a warning: ELB's own throttling is still answered by the back-off in
``lambdas/domain/poll.py``. So nothing but a float leaves ``acquire``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.elbv2 import client_config
from lambdas.domain.budget import BudgetSpec, Cut, admit, after_throttle, current_rate, is_cut, is_late

KEY = "budget_key"
ITEM = "elbv2-describe"
TAT = "tat"
CUT_RATE = "cut_rate"
CUT_AT = "cut_at"
LATE_AT = "controller_late_at"
# Conflicting writers read again and decide again; past this many lost races, the call is let through.
MAX_RACES = 5

log = logging.getLogger(__name__)


class BudgetTable:
    """The budget table (partition key ``budget_key``, string) and a client for it, built on the first ask, not at
    cold start: a look that only reads Kubernetes never needs it. ``now``: the clock the items' times are on."""

    def __init__(self, table_name: str, now: Any, client: Any = None, session: boto3.Session | None = None,
                 region: str | None = None) -> None:
        self._table = table_name
        self._now = now
        self._given_client = client
        self._session = session
        self._region = region

    @functools.cached_property
    def _client(self) -> Any:
        if self._given_client is not None:
            return self._given_client
        return (self._session or boto3).client("dynamodb", region_name=self._region, config=client_config())


class DynamoDbBudget(BudgetTable):
    """``DescribeBudget`` over the budget table's item ``elbv2-describe``."""

    def __init__(self, table_name: str, spec: BudgetSpec, now: Any, client: Any = None,
                 session: boto3.Session | None = None, region: str | None = None) -> None:
        super().__init__(table_name, now, client, session, region)
        self.spec = spec

    def _read(self) -> tuple[float | None, Cut | None]:
        tat, cut, _ = self._read_all()
        return tat, cut

    def _read_all(self) -> tuple[float | None, Cut | None, float | None]:
        item = self._client.get_item(
            TableName=self._table, Key={KEY: {"S": ITEM}}, ConsistentRead=True,
            ProjectionExpression="#tat, #rate, #at, #late",
            ExpressionAttributeNames={"#tat": TAT, "#rate": CUT_RATE, "#at": CUT_AT, "#late": LATE_AT},
        ).get("Item", {})
        tat = item.get(TAT, {}).get("N")
        rate, at = item.get(CUT_RATE, {}).get("N"), item.get(CUT_AT, {}).get("N")
        cut = Cut(float(rate), float(at)) if rate is not None and at is not None else None
        late = item.get(LATE_AT, {}).get("N")
        return (float(tat) if tat is not None else None), cut, (float(late) if late is not None else None)

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        try:
            for _ in range(MAX_RACES):
                tat, cut = self._read()
                now = self._now()
                a = admit(tat, now, tokens, self.spec, reserve=reserve, rate=current_rate(self.spec, cut, now))
                if a.tat == tat:  # refused without booking: nothing to write
                    return a.wait
                if self._write(tat, a.tat):
                    return a.wait
            log.warning("describe budget: lost %d races for %s in %s; letting the call through", MAX_RACES, ITEM, self._table)
        except (ClientError, BotoCoreError) as e:
            log.warning("describe budget: DynamoDB %s did not answer (%s); letting the call through", self._table, e)
        return 0.0

    def throttled(self) -> None:
        """Cut the share for every execution (``after_throttle``); a cut another Lambda just made stands."""
        try:
            for _ in range(MAX_RACES):
                _, cut = self._read()
                new = after_throttle(self.spec, cut, self._now())
                if new is None or self._write_cut(cut, new):
                    return
        except (ClientError, BotoCoreError) as e:
            log.warning("describe budget: DynamoDB %s did not answer (%s); the share is not cut", self._table, e)

    def controller_late(self) -> None:
        """Write the time into the item, unless a later one is there; failures are logged and ignored (the next
        drain left without proof says it again)."""
        now = self._now()
        try:
            self._update("SET #late = :now", "attribute_not_exists(#late) OR #late < :now", {"#late": LATE_AT},
                         {":now": {"N": repr(now)}})
        except (ClientError, BotoCoreError) as e:
            log.warning("describe budget: DynamoDB %s did not answer (%s); the late controller is not noted",
                        self._table, e)

    def short(self) -> bool:
        """Whether the share is cut now (``is_cut``) or a controller was late lately (``is_late``); True when
        DynamoDB cannot say (albgate then acts as if the bucket were short: it deregisters released targets
        itself)."""
        try:
            _, cut, late = self._read_all()
        except (ClientError, BotoCoreError) as e:
            log.warning("describe budget: DynamoDB %s did not answer (%s); taking the bucket as short", self._table, e)
            return True
        now = self._now()
        return is_cut(self.spec, cut, now) or is_late(late, now)

    def _write_cut(self, old: Cut | None, new: Cut) -> bool:
        condition = "attribute_not_exists(#at)" if old is None else "#at = :old"
        values: dict[str, Any] = {":rate": {"N": repr(new.rate)}, ":at": {"N": repr(new.at)}}
        if old is not None:
            values[":old"] = {"N": repr(old.at)}
        return self._update("SET #rate = :rate, #at = :at", condition, {"#rate": CUT_RATE, "#at": CUT_AT}, values)

    def _write(self, old: float | None, new: float) -> bool:
        condition = "attribute_not_exists(#tat)" if old is None else "#tat = :old"
        values: dict[str, Any] = {":new": {"N": repr(new)}}
        if old is not None:
            values[":old"] = {"N": repr(old)}
        return self._update("SET #tat = :new", condition, {"#tat": TAT}, values)

    def _update(self, expression: str, condition: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        """One conditional write of the budget item: False when another Lambda changed it first (the caller reads
        again), True when written."""
        try:
            self._client.update_item(
                TableName=self._table, Key={KEY: {"S": ITEM}}, UpdateExpression=expression,
                ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
