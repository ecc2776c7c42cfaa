"""The Preflights' board of target group descriptions, one DynamoDB item in the Describe* budget's table.

Job: implement ``SharedDescriptions`` (lambdas/domain/descriptions.py) on the item ``describe#board``: one
attribute per group wanted (``w#<ARN>``: when it was first wanted), one per answer (``d#<ARN>``: the answer's time
and the group's settings as compact JSON), the describer's booked turn (``describer_at``) and the room left in its
call (``room``). ``board`` reads it strongly consistent; ``want`` adds groups without moving an earlier time, and a
describer's turn with its room, or a join that takes room only if there is that much left (a conditional
UpdateItem, so two Lambdas racing cannot overfill a call); ``offer`` writes answers and removes what they answer and
what is stale in one UpdateItem, and clears a describer's turn that has come with a conditional one.

Invariant: the board is a saving, never a reason for a rollout to stop or to be wrong. If DynamoDB cannot answer,
``board`` says there is nothing (the Preflight describes its own groups), and ``want`` and ``offer`` keep what they
had to themselves, logged as a warning; an answer that cannot be read back is ignored the same way. The item stays
small: answers older than ``descriptions.FRESH_SECONDS`` are removed by the next describer, at most
``MAX_FORGET`` a write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.dynamodb_budget import KEY, BudgetTable
from lambdas.adapters.dynamodb_looks import EXPIRE_AFTER_SECONDS, EXPIRES_AT
from lambdas.domain.descriptions import DESCRIBER_SLACK_SECONDS, MAX_GROUPS_PER_CALL, Board, Described
from lambdas.domain.ports import TargetGroupSettings

BOARD_KEY = "describe#board"
WANTED = "w#"
DESCRIBED = "d#"
DESCRIBER_AT = "describer_at"
ROOM = "room"  # groups the describer's call still takes (lambdas/domain/descriptions.py, Board.room)
# Stale entries removed in one write, beside up to 20 answers: keeps the UpdateItem's expression small.
MAX_FORGET = 40

log = logging.getLogger(__name__)


def encode(settings: TargetGroupSettings, at: float) -> str:
    """An answer as JSON: [at, target type, protocol, port, interval, timeout, healthy, unhealthy, [load balancers]]."""
    return json.dumps([at, settings.target_type, settings.protocol, settings.port,
                       settings.health_check_interval_seconds, settings.health_check_timeout_seconds,
                       settings.healthy_threshold, settings.unhealthy_threshold, list(settings.load_balancer_arns)],
                      separators=(",", ":"))


def decode(arn: str, text: str) -> Described:
    """``encode``'s inverse; ValueError (or TypeError) for anything else."""
    at, kind, protocol, port, interval, timeout, healthy, unhealthy, lbs = json.loads(text)
    if not isinstance(lbs, list):
        raise ValueError("load balancers is not a list")
    return Described(TargetGroupSettings(arn, str(kind), str(protocol), int(port), int(interval), int(timeout),
                                         int(healthy), int(unhealthy), tuple(str(lb) for lb in lbs)), float(at))


def board_from(item: dict[str, Any]) -> Board:
    """The board an item holds; attributes that cannot be read are left out (logged)."""
    wanted: dict[str, float] = {}
    described: dict[str, Described] = {}
    describer_at, room = None, 0
    for name, value in item.items():
        try:
            if name.startswith(WANTED):
                wanted[name[len(WANTED):]] = float(value["N"])
            elif name.startswith(DESCRIBED):
                described[name[len(DESCRIBED):]] = decode(name[len(DESCRIBED):], value["S"])
            elif name == DESCRIBER_AT:
                describer_at = float(value["N"])
            elif name == ROOM:
                room = int(value["N"])
        except (KeyError, TypeError, ValueError) as e:
            log.warning("shared descriptions: attribute %s cannot be read (%s); left out", name, e)
    return Board(wanted, describer_at, described, room)


class DynamoDbDescriptions(BudgetTable):
    """``SharedDescriptions`` over the budget table's item ``describe#board``."""

    def board(self) -> Board:
        try:
            item = self._client.get_item(TableName=self._table, Key={KEY: {"S": BOARD_KEY}},
                                         ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as e:
            log.warning("shared descriptions: DynamoDB %s did not answer (%s); describing alone", self._table, e)
            return Board()
        return board_from(item or {})

    def want(self, arns: Sequence[str], at: float, describer_at: float | None = None) -> None:
        arns = list(dict.fromkeys(arns))
        if not arns and describer_at is None:
            return
        names = {f"#w{i}": WANTED + arn for i, arn in enumerate(arns)}
        sets = [f"{n} = if_not_exists({n}, :at)" for n in names] + ["#expires = :expires"]
        values: dict[str, Any] = {":expires": _expires(at), **({":at": {"N": repr(at)}} if arns else {})}
        condition: dict[str, str] = {}
        if describer_at is not None:  # a new describer: its turn and its call's room replace the board's
            sets += ["#d = :d", "#room = :room"]
            names["#d"] = DESCRIBER_AT
            values[":d"] = {"N": repr(describer_at)}
            values[":room"] = {"N": str(MAX_GROUPS_PER_CALL - len(arns))}
        else:  # a join takes room in the describer's call, if it has that much left
            sets.append("#room = #room - :k")
            values[":k"] = {"N": str(len(arns))}
            condition["ConditionExpression"] = "#room >= :k"
        names["#room"] = ROOM
        self._update("the wanted groups", UpdateExpression="SET " + ", ".join(sets),
                     ExpressionAttributeNames={**names, "#expires": EXPIRES_AT}, ExpressionAttributeValues=values,
                     **condition)

    def offer(self, answers: Sequence[TargetGroupSettings], at: float, forget: Sequence[str] = ()) -> None:
        answered = {s.arn: s for s in answers}
        forget = [arn for arn in dict.fromkeys(forget) if arn not in answered][:MAX_FORGET]
        names: dict[str, str] = {"#expires": EXPIRES_AT}
        values: dict[str, Any] = {":expires": _expires(at)}
        sets, removes = ["#expires = :expires"], []
        for i, (arn, s) in enumerate(answered.items()):
            names[f"#d{i}"], names[f"#a{i}"] = DESCRIBED + arn, WANTED + arn
            values[f":d{i}"] = {"S": encode(s, at)}
            sets.append(f"#d{i} = :d{i}")
            removes.append(f"#a{i}")
        for i, arn in enumerate(forget):
            names[f"#f{i}"], names[f"#g{i}"] = WANTED + arn, DESCRIBED + arn
            removes += [f"#f{i}", f"#g{i}"]
        self._update("the answers",
                     UpdateExpression="SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else ""),
                     ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        # the describer's turn has come: clear it (a later describer's stays)
        self._update("the end of the describer's turn",
                     UpdateExpression="REMOVE #d, #room", ConditionExpression="#d <= :until",
                     ExpressionAttributeNames={"#d": DESCRIBER_AT, "#room": ROOM},
                     ExpressionAttributeValues={":until": {"N": repr(at + DESCRIBER_SLACK_SECONDS)}})

    def _update(self, what: str, **request: Any) -> None:
        """One UpdateItem of the board; a condition that does not hold is no error, and DynamoDB failing is only
        logged."""
        try:
            self._client.update_item(TableName=self._table, Key={KEY: {"S": BOARD_KEY}}, **request)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                log.warning("shared descriptions: DynamoDB %s did not take %s (%s)", self._table, what, e)
        except BotoCoreError as e:
            log.warning("shared descriptions: DynamoDB %s did not take %s (%s)", self._table, what, e)


def _expires(at: float) -> dict[str, str]:
    return {"N": str(int(at) + EXPIRE_AFTER_SECONDS)}
