"""Which AWS calls a synthesized role allows: the role's statements, with the template's intrinsics resolved.

Job:
- ``TemplateResolver`` turns ``Ref`` / ``Fn::GetAtt`` / ``Fn::Join`` / ``Fn::Select`` / ``Fn::Split`` into
  strings: pseudo parameters become fixed placeholders (``Placeholders``: the partition, the stack's Region, an
  account), and a resource becomes the name or ARN AWS would give it, built from its logical id (or the name
  its properties set). The handlers run on moto with exactly these names, so a recorded call's ARN and a
  grant's ARN can be compared as strings.
- ``role_statements`` reads every statement attached to a role: inline ``Policies`` of the role and every
  ``AWS::IAM::Policy`` whose ``Roles`` name it.
- ``evaluate`` decides one request (action, resource, condition context) the way IAM does for identity
  policies: an explicit Deny wins, then any Allow, else the implicit deny. Actions match case-insensitively
  with ``*`` and ``?``; resources match case-sensitively, a ``*`` staying inside its ARN segment unless it ends
  the segment (docs/facts.md, "IAM from recorded calls"). Conditions: ``StringEquals``, ``StringLike``,
  ``ArnEquals``, ``ArnLike``; every operator and key must hold, any value of a key may match, and an absent key
  fails the condition.
- ``unused_grants`` lists each (action pattern, resource pattern) of an Allow that no request uses.

Invariant: what the evaluator does not understand (``NotAction``, ``NotResource``, another condition operator,
another intrinsic, a managed policy on the role) raises ``UnsupportedPolicy``; it never guesses an allow or a
deny.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class UnsupportedPolicy(Exception):
    """The template holds something this evaluator cannot decide on; extend the evaluator, never ignore it."""


@dataclass(frozen=True)
class Placeholders:
    partition: str
    region: str
    account: str
    url_suffix: str = "amazonaws.com"

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": self.url_suffix,
        }


# Name property per resource type: Ref answers it when set, else CloudFormation generates one (the logical id
# stands for it here).
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Events::EventBus": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
}
# What Fn::GetAtt <id>.Arn is for each type (the AWS::<type> "Return values" of the CloudFormation reference).
_ARN = {
    "AWS::DynamoDB::Table": "arn:{p}:dynamodb:{r}:{a}:table/{n}",
    "AWS::Events::EventBus": "arn:{p}:events:{r}:{a}:event-bus/{n}",
    "AWS::StepFunctions::StateMachine": "arn:{p}:states:{r}:{a}:stateMachine:{n}",
    "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{n}",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{n}:*",
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{n}",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role/{n}",
}
# Ref answers the ARN for these types, a URL for a queue, the name for the others.
_REF_IS_ARN = {"AWS::StepFunctions::StateMachine"}


class TemplateResolver:
    """Resolves a synthesized template's intrinsics to placeholder strings, consistently."""

    def __init__(self, template: Mapping[str, Any], placeholders: Placeholders) -> None:
        self.resources: Mapping[str, Any] = template["Resources"]
        self.placeholders = placeholders

    def name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        prop = _NAME_PROPERTY.get(resource["Type"])
        given = (resource.get("Properties") or {}).get(prop) if prop else None
        return str(self.resolve(given)) if given is not None else logical_id

    def arn(self, logical_id: str) -> str:
        rtype = self.resources[logical_id]["Type"]
        if rtype not in _ARN:
            raise UnsupportedPolicy(
                f"no placeholder ARN for {logical_id} ({rtype}); add its type to tests/iam/policy.py"
            )
        p = self.placeholders
        return _ARN[rtype].format(p=p.partition, r=p.region, a=p.account, n=self.name(logical_id))

    def ref(self, name: str) -> str:
        pseudo = self.placeholders.pseudo()
        if name in pseudo:
            return pseudo[name]
        if name not in self.resources:
            raise UnsupportedPolicy(f"Ref to {name!r}: neither a pseudo parameter nor a resource of the template")
        rtype = self.resources[name]["Type"]
        if rtype in _REF_IS_ARN:
            return self.arn(name)
        if rtype == "AWS::SQS::Queue":
            p = self.placeholders
            return f"https://sqs.{p.region}.{p.url_suffix}/{p.account}/{self.name(name)}"
        if rtype not in _NAME_PROPERTY:
            raise UnsupportedPolicy(f"Ref to {name} ({rtype}): what it answers is not known here")
        return self.name(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute != "Arn":
                    raise UnsupportedPolicy(f"Fn::GetAtt {logical_id}.{attribute}: only Arn is resolved")
                return self.arn(logical_id)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key.startswith("Fn::") or key == "Condition":
                raise UnsupportedPolicy(f"intrinsic {key} is not resolved by tests/iam/policy.py")
        return {k: self.resolve(v) for k, v in value.items()}


@dataclass(frozen=True)
class Request:
    """One authorization question: may the role call ``action`` on ``resource`` with these condition keys?"""

    action: str  # "service:Action"
    resource: str  # an ARN, or "*" for an action without resource types
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # condition key -> values


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], resolver: TemplateResolver) -> Statement:
        for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
            if unsupported in raw:
                raise UnsupportedPolicy(f"statement {raw.get('Sid', '')!r} uses {unsupported}")
        effect = raw["Effect"]
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement {raw.get('Sid', '')!r} has Effect {effect!r}")

        def listed(value: Any) -> tuple[str, ...]:
            resolved = resolver.resolve(value)
            return tuple(str(v) for v in (resolved if isinstance(resolved, list) else [resolved]))

        conditions: dict[str, dict[str, tuple[str, ...]]] = {}
        for operator, keys in (resolver.resolve(raw.get("Condition")) or {}).items():
            if operator not in _OPERATORS:
                raise UnsupportedPolicy(f"statement {raw.get('Sid', '')!r}: condition operator {operator}")
            conditions[operator] = {
                key: tuple(str(v) for v in (values if isinstance(values, list) else [values]))
                for key, values in keys.items()
            }
        return cls(str(raw.get("Sid", "")), effect, listed(raw["Action"]), listed(raw["Resource"]), conditions)

    def covers(self, request: Request) -> bool:
        return (
            any(action_matches(a, request.action) for a in self.actions)
            and any(resource_matches(r, request.resource) for r in self.resources)
            and conditions_hold(self.conditions, request.context)
        )


def _wildcard(pattern: str, *, arn: bool) -> re.Pattern[str]:
    out = []
    for i, ch in enumerate(pattern):
        if ch == "*":
            # In an ARN a "*" stays inside its colon-separated segment, unless it is the segment's last character.
            ends_segment = i + 1 == len(pattern) or pattern[i + 1] == ":"
            out.append(".*" if not arn or ends_segment else "[^:]*")
        elif ch == "?":
            out.append("[^:]" if arn else ".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL if arn else re.DOTALL | re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    return _wildcard(pattern, arn=False).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    return _wildcard(pattern, arn=True).fullmatch(resource) is not None


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _string_like(expected: str, actual: str) -> bool:
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in expected),
                        actual, re.DOTALL) is not None


_OPERATORS = {
    "StringEquals": _string_equals,
    "StringLike": _string_like,
    "ArnEquals": _string_equals,
    "ArnLike": lambda expected, actual: resource_matches(expected, actual),
}


def conditions_hold(
    conditions: Mapping[str, Mapping[str, Sequence[str]]], context: Mapping[str, Sequence[str]]
) -> bool:
    """Every operator and every key must hold; a key holds if any expected value matches any of its values."""
    lowered = {k.lower(): v for k, v in context.items()}  # condition key names are case-insensitive
    for operator, keys in conditions.items():
        test = _OPERATORS[operator]
        for key, expected in keys.items():
            actual = lowered.get(key.lower())
            if not actual or not any(test(e, a) for e in expected for a in actual):
                return False
    return True


def role_statements(template: Mapping[str, Any], role_id: str, resolver: TemplateResolver) -> list[Statement]:
    """Every statement that applies to the role: its inline policies and the AWS::IAM::Policy resources naming it."""
    resources = template["Resources"]
    role = resources[role_id]
    if role["Type"] != "AWS::IAM::Role":
        raise UnsupportedPolicy(f"{role_id} is a {role['Type']}, not a role")
    props = role.get("Properties") or {}
    if props.get("ManagedPolicyArns"):
        raise UnsupportedPolicy(f"{role_id} has managed policies, whose statements are not in the template")
    documents = [p["PolicyDocument"] for p in props.get("Policies") or []]
    for resource in resources.values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            rp = resource["Properties"]
            if {"Ref": role_id} in (rp.get("Roles") or []):
                documents.append(rp["PolicyDocument"])
    return [Statement.parse(raw, resolver) for doc in documents for raw in doc["Statement"]]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[str, ...] = ()  # Sids (or statement positions) of the matching Allow statements
    denied_by: tuple[str, ...] = ()


def _label(i: int, s: Statement) -> str:
    return s.sid or f"statement {i}"


def evaluate(statements: Sequence[Statement], request: Request) -> Decision:
    """IAM's order for identity policies: an explicit Deny, then an Allow, else the implicit deny."""
    denies = tuple(_label(i, s) for i, s in enumerate(statements) if s.effect == "Deny" and s.covers(request))
    allows = tuple(_label(i, s) for i, s in enumerate(statements) if s.effect == "Allow" and s.covers(request))
    return Decision(allowed=bool(allows) and not denies, allowed_by=allows, denied_by=denies)


@dataclass(frozen=True)
class Grant:
    """One action pattern on one resource pattern of an Allow statement."""

    sid: str
    action: str
    resource: str

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}" + (f" (Sid {self.sid})" if self.sid else "")


def grants(statements: Iterable[Statement]) -> list[Grant]:
    return [
        Grant(s.sid, a, r)
        for s in statements
        if s.effect == "Allow"
        for a in s.actions
        for r in s.resources
    ]


def grant_used(grant: Grant, statement: Statement, request: Request) -> bool:
    return (
        action_matches(grant.action, request.action)
        and resource_matches(grant.resource, request.resource)
        and conditions_hold(statement.conditions, request.context)
    )


def unused_grants(statements: Sequence[Statement], requests: Iterable[Request]) -> list[Grant]:
    """Every (action, resource) an Allow statement grants that none of ``requests`` uses."""
    requests = list(requests)
    out = []
    for s in statements:
        if s.effect != "Allow":
            continue
        for g in grants([s]):
            if not any(grant_used(g, s, r) for r in requests):
                out.append(g)
    return out
