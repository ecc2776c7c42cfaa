"""The check itself: a function's role against the calls its handler was recorded making.

Job: ``check_role`` answers, for one deployed function, (1) every request of a recorded call, and every request
the Lambda service makes for the function (tests/iam/aws_only.py), that the role does not allow, and (2) every
grant of the role that none of those requests uses. Both lists empty means the role is exactly what the code
calls, plus what Lambda itself needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.iam.aws_only import aws_only_requests
from tests.iam.policy import Grant, Request, Statement, TemplateResolver, evaluate, unused_grants
from tests.iam.recorder import RecordedCall
from tests.iam.requests import NO_PERMISSION_NEEDED, requests_for


@dataclass
class RoleReport:
    function: str
    missing: list[tuple[str, Request]] = field(default_factory=list)  # (who asks: a call or an AWS-only entry)
    unused: list[Grant] = field(default_factory=list)

    def describe_missing(self) -> str:
        return "\n".join(
            f"{self.function} is not allowed {r.action} on {r.resource}"
            + (f" (context {dict(r.context)})" if r.context else "")
            + f": {origin}"
            for origin, r in self.missing
        )

    def describe_unused(self) -> str:
        return "\n".join(f"{self.function} is granted {g}, which no recorded call and no AWS-only entry uses"
                         for g in self.unused)


def check_role(
    function: str,
    properties: dict,
    statements: Sequence[Statement],
    calls: Sequence[RecordedCall],
    resolver: TemplateResolver,
    resource_tags: Mapping[str, Mapping[str, str]],
) -> RoleReport:
    report = RoleReport(function)
    asked: list[tuple[str, Request]] = []
    for call in calls:
        if call.action in NO_PERMISSION_NEEDED:
            continue
        for request in requests_for(call, resolver.placeholders, resource_tags):
            asked.append((f"recorded call {call.action} {sorted(call.params)}", request))
    for entry, request in aws_only_requests(properties, resolver):
        asked.append((f"AWS-only: {entry.name} ({entry.source})", request))
    return judge(report, statements, asked)


def judge(report: RoleReport, statements: Sequence[Statement], asked: Sequence[tuple[str, Request]]) -> RoleReport:
    """File in ``report`` each request the statements refuse (once per action and resource, with where it came
    from) and each grant none of the requests uses."""
    seen: set[tuple[str, str]] = set()
    for origin, request in asked:
        if not evaluate(statements, request).allowed and (request.action, request.resource) not in seen:
            seen.add((request.action, request.resource))
            report.missing.append((origin, request))
    report.unused = unused_grants(statements, [r for _, r in asked])
    return report
