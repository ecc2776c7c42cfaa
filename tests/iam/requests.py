"""What IAM is asked when a recorded call reaches AWS: its action, the resource(s) it names, its condition keys.

Job: ``requests_for`` turns a ``RecordedCall`` into the ``Request`` objects the evaluator decides, with the
resource ARN built from the call's parameters as the Service Authorization Reference gives it for that action
(docs/facts.md, "IAM from recorded calls"), and ``aws:ResourceTag/<key>`` from the tags the resource carries.

Invariant: an action this table does not know raises ``UnknownCall``: a handler that starts calling a new AWS
API fails here until its resource is described, so no call is ever checked against a guessed resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tests.iam.policy import Placeholders, Request
from tests.iam.recorder import RecordedCall

# Actions that need no permission at all: the answer is the caller's own identity, given even to an explicit
# Deny (AWS STS API reference, GetCallerIdentity). The EKS token is a presigned GetCallerIdentity URL.
NO_PERMISSION_NEEDED = {"sts:GetCallerIdentity"}
# Actions without resource types in the Service Authorization Reference: a policy grants them on "*" only.
NO_RESOURCE_TYPES = {
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "sts:GetCallerIdentity",
    "ecr:GetAuthorizationToken",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeRouteTables",
}


class UnknownCall(Exception):
    """A recorded action whose resource this module cannot name yet."""


def _table(call: RecordedCall, p: Placeholders) -> list[str]:
    name = str(call.params["TableName"])
    return [name if name.startswith("arn:") else f"arn:{p.partition}:dynamodb:{call.region}:{p.account}:table/{name}"]


def _repository(call: RecordedCall, p: Placeholders) -> list[str]:
    account = call.params.get("registryId") or p.account
    return [f"arn:{p.partition}:ecr:{call.region}:{account}:repository/{call.params['repositoryName']}"]


def _event_buses(call: RecordedCall, p: Placeholders) -> list[str]:
    out = []
    for entry in call.params["Entries"]:
        bus = str(entry.get("EventBusName") or "default")
        arn = f"arn:{p.partition}:events:{call.region}:{p.account}:event-bus/{bus}"
        out.append(bus if bus.startswith("arn:") else arn)
    return sorted(set(out))


_RESOURCES: dict[str, Callable[[RecordedCall, Placeholders], list[str]]] = {
    "elasticloadbalancing:DeregisterTargets": lambda c, p: [str(c.params["TargetGroupArn"])],
    "elasticloadbalancing:RegisterTargets": lambda c, p: [str(c.params["TargetGroupArn"])],
    "dynamodb:GetItem": _table,
    "dynamodb:PutItem": _table,
    "dynamodb:UpdateItem": _table,
    "dynamodb:DeleteItem": _table,
    "ecr:DescribeImages": _repository,
    "ecr:BatchGetImage": _repository,
    "ecr:GetDownloadUrlForLayer": _repository,
    "eks:DescribeCluster": lambda c, p: [f"arn:{p.partition}:eks:{c.region}:{p.account}:cluster/{c.params['name']}"],
    "states:StartExecution": lambda c, p: [str(c.params["stateMachineArn"])],
    "states:DescribeExecution": lambda c, p: [str(c.params["executionArn"])],
    "events:PutEvents": _event_buses,
}


def resources_of(call: RecordedCall, placeholders: Placeholders) -> list[str]:
    if call.action in NO_RESOURCE_TYPES:
        return ["*"]
    if call.action not in _RESOURCES:
        raise UnknownCall(
            f"{call.function} called {call.action}: name its resource in tests/iam/requests.py (the Service "
            "Authorization Reference lists the resource types of each action), then grant it"
        )
    return _RESOURCES[call.action](call, placeholders)


def requests_for(
    call: RecordedCall, placeholders: Placeholders, resource_tags: Mapping[str, Mapping[str, str]]
) -> list[Request]:
    """One request per resource the call names, with the resource's tags as ``aws:ResourceTag/<key>``."""
    out = []
    for resource in resources_of(call, placeholders):
        tags = resource_tags.get(resource, {})
        context = {f"aws:ResourceTag/{k}": (v,) for k, v in tags.items()}
        out.append(Request(call.action, resource, context))
    return out
