"""What IAM is asked when a recorded call reaches AWS: its action, the resource(s) it names, its condition keys.

Job: ``requests_for`` turns a ``RecordedCall`` into the ``Request`` objects the evaluator decides, with the
resource ARN built from the call's parameters as the Service Authorization Reference gives it for that action
(docs/facts.md, "IAM from recorded calls"), and ``aws:ResourceTag/<key>`` from the tags the resource carries.

CloudWatch's DescribeAlarms is authorized per alarm its answer lists (``_described_alarms``), so the world
(tests/iam/world.py) files the names an answer listed with the call, under ``LISTED_ALARMS``.

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
    "cloudwatch:GetMetricData",
}


# IAM's service prefix where it is not the SigV4 signing name a call is filed under (tests/iam/recorder.py): botocore
# signs CloudWatch's API as "monitoring" (its service model's signingName), and IAM names the actions
# "cloudwatch:<Operation>" (Service Authorization Reference for Amazon CloudWatch, service prefix cloudwatch).
IAM_PREFIX_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}


class UnknownCall(Exception):
    """A recorded action whose resource this module cannot name yet."""


def iam_action(call: RecordedCall) -> str:
    """The IAM action a recorded call is authorized as."""
    return f"{IAM_PREFIX_OF_SIGNING_NAME.get(call.service, call.service)}:{call.operation}"


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


# Filed by the world with each DescribeAlarms call once answered: the names of the alarms the answer listed. Not a
# parameter of the API (its parameters are capitalized), so it cannot shadow one.
LISTED_ALARMS = "listed_alarms"


def _alarm(call: RecordedCall, p: Placeholders, name: str) -> str:
    return f"arn:{p.partition}:cloudwatch:{call.region}:{p.account}:alarm:{name}"


def _composite(call: RecordedCall) -> bool:
    """Composite alarms are read only with the permission scoped to "*" (CloudWatch API reference, DescribeAlarms
    and DescribeAlarmHistory; docs/facts.md, "CloudWatch alarms albgate watches"): such a call asks for "*"."""
    return "CompositeAlarm" in (call.params.get("AlarmTypes") or [])


def _described_alarms(call: RecordedCall, p: Placeholders) -> list[str]:
    """DescribeAlarms takes the ``alarm`` resource type (Service Authorization Reference for Amazon CloudWatch,
    docs/facts.md, "CloudWatch alarms albgate watches"), and CloudWatch applies it to each alarm it would list,
    leaving out the alarms the caller may not describe instead of refusing the call: a DescribeAlarms grant on
    some alarm ARNs limits which alarms an answer shows (CloudWatch user guide, "Reviewing shared CloudWatch
    dashboard permissions and changing permission scope",
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/share-cloudwatch-dashboard-review-permissions.html),
    and a grant narrower than "*" lists no composite alarm (API reference, DescribeAlarms). So a call by
    ``AlarmNames`` touches each named alarm, and a call by ``AlarmNamePrefix`` (or with neither) touches each alarm
    its answer listed, not ``alarm:*``: moto enforces no IAM and lists every match, which is what the role must
    cover, since an alarm it did not cover would go missing from the gate's look without any error."""
    if _composite(call):
        return ["*"]
    names = call.params.get("AlarmNames")
    if names:
        return sorted({_alarm(call, p, str(n)) for n in names})
    listed = call.params.get(LISTED_ALARMS)
    if not listed:
        raise UnknownCall(
            f"{call.function} called cloudwatch:DescribeAlarms by prefix, and no answer listing an alarm was filed "
            "with it (a failed call, or a prefix matching nothing): its resources are the alarms the answer lists, "
            "so tell a story where the call succeeds and lists one"
        )
    return sorted({_alarm(call, p, str(n)) for n in listed})


def _alarm_history(call: RecordedCall, p: Placeholders) -> list[str]:
    """DescribeAlarmHistory of one ``AlarmName`` touches that alarm (the ``alarm`` resource type, as above)."""
    if _composite(call):
        return ["*"]
    name = call.params.get("AlarmName")
    if not name:
        raise UnknownCall(
            f"{call.function} called cloudwatch:DescribeAlarmHistory without AlarmName (the history of every alarm): "
            "name its resources in tests/iam/requests.py first"
        )
    return [_alarm(call, p, str(name))]


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
    "cloudwatch:DescribeAlarms": _described_alarms,
    "cloudwatch:DescribeAlarmHistory": _alarm_history,
}


def resources_of(call: RecordedCall, placeholders: Placeholders) -> list[str]:
    action = iam_action(call)
    if action in NO_RESOURCE_TYPES:
        return ["*"]
    if action not in _RESOURCES:
        raise UnknownCall(
            f"{call.function} called {action}: name its resource in tests/iam/requests.py (the Service "
            "Authorization Reference lists the resource types of each action), then grant it"
        )
    return _RESOURCES[action](call, placeholders)


def requests_for(
    call: RecordedCall, placeholders: Placeholders, resource_tags: Mapping[str, Mapping[str, str]]
) -> list[Request]:
    """One request per resource the call names, with the resource's tags as ``aws:ResourceTag/<key>``."""
    out = []
    for resource in resources_of(call, placeholders):
        tags = resource_tags.get(resource, {})
        context = {f"aws:ResourceTag/{k}": (v,) for k, v in tags.items()}
        out.append(Request(iam_action(call), resource, context))
    return out
