"""albgate's event bus accepts events with ``source: albgate`` only from the roles albgate itself lets publish.

Job: one resource-policy statement on the bus (``guard_albgate_source``): Deny ``events:PutEvents`` to every
principal, when the entry's source is ``albgate`` (condition key ``events:source``) and the caller's role is not
one this stack grants ``events:PutEvents`` (``aws:PrincipalArn``). A consumer of the bus (a pager rule, a chat
bot, an audit trail) can then trust that a ``Rollout Succeeded`` with source ``albgate`` came from albgate, and
nobody with a broad ``events:PutEvents`` grant elsewhere in the account can forge one. Other sources are left to
IAM as before.

Which roles publish is read from the stack itself when it is synthesized (a lazy list): every role an IAM policy
of the stack grants ``events:PutEvents`` (today the ECR trigger, the function that reports an execution's end,
and the rollout state machine, which announces each passed step). A new publisher needs no change here;
tests/infrastructure/test_bus_policy.py checks the list against the template.

Invariant: the statement only ever denies; its exception list names role ARNs of this stack, resolved by
CloudFormation (``Fn::GetAtt``), never a wildcard (docs/facts.md, "EventBridge bus policies").
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import IResolveContext, IStableListProducer, Lazy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam

from lambdas.domain.contract import EVENT_SOURCE

PUT_EVENTS = "events:PutEvents"
SID = "OnlyAlbgatePublishesAlbgateEvents"


def _actions(document: Any) -> set[str]:
    statements = (document or {}).get("Statement") or []
    found: set[str] = set()
    for s in statements if isinstance(statements, list) else [statements]:
        action = s.get("Action", [])
        found.update([action] if isinstance(action, str) else action)
    return found


def publishing_roles(stack: Stack) -> list[iam.Role]:
    """The roles of ``stack`` that one of its IAM policies (attached or inline) grants ``events:PutEvents``."""
    roles = {stack.get_logical_id(r.node.default_child): r for r in stack.node.find_all()
             if isinstance(r, iam.Role) and isinstance(r.node.default_child, iam.CfnRole)}
    found: dict[str, iam.Role] = {}
    for c in stack.node.find_all():
        if isinstance(c, iam.CfnPolicy) and PUT_EVENTS in _actions(stack.resolve(c.policy_document)):
            for ref in stack.resolve(c.roles) or []:
                if isinstance(ref, dict) and ref.get("Ref") in roles:
                    found[ref["Ref"]] = roles[ref["Ref"]]
        if isinstance(c, iam.CfnRole):
            inline = stack.resolve(c.policies) or []
            if any(PUT_EVENTS in _actions(p.get("policyDocument") or p.get("PolicyDocument")) for p in inline):
                logical_id = stack.get_logical_id(c)
                if logical_id in roles:
                    found[logical_id] = roles[logical_id]
    return [found[k] for k in sorted(found)]


@jsii.implements(IStableListProducer)
class _PublisherArns:
    """The ARNs of ``publishing_roles``, produced when the template is written (every role exists by then)."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack

    def produce(self, context: IResolveContext | None = None) -> list[str]:
        return [r.role_arn for r in publishing_roles(self._stack)]


def guard_albgate_source(bus: events.EventBus) -> None:
    """Deny PutEvents of ``source: albgate`` entries on ``bus`` to every role this stack does not let publish."""
    bus.add_to_resource_policy(
        iam.PolicyStatement(
            sid=SID,
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=[PUT_EVENTS],
            resources=[bus.event_bus_arn],
            conditions={
                "StringEquals": {"events:source": EVENT_SOURCE},
                "ArnNotEquals": {"aws:PrincipalArn": Lazy.list(_PublisherArns(Stack.of(bus)))},
            },
        )
    )
