"""Which VPC endpoints the functions placed in a cluster's VPC need: computed from their specs and the config.

Job: ``vpc_endpoint_needs`` maps each HandlerSpec flag that makes a function call AWS to the endpoint service that
call goes to, for the functions placed in the VPC, and merges them: one ``EndpointNeed`` per endpoint, naming
the functions and why. The stack hands the list to the bootstrap's Check Network (lambdas/domain/network.py),
which refuses to start when a need is met by neither an endpoint nor a NAT route; docs/foundation.md shows the
same list, rendered by ``endpoint_table`` (tests/infrastructure/test_vpc_endpoints.py keeps the two equal, and
checks the list against every AWS call the functions were recorded making, tests/iam).

What is not on the list, and why (docs/facts.md, "VPC endpoints for the functions in a VPC"): ``sts`` (the EKS
token is a presigned GetCallerIdentity URL made without a network call; the cluster sends it to STS), ``logs``
and ``xray`` (Lambda delivers the function's logs and its active-tracing segments itself; albgate's code sends
none), ``states`` and ``events`` (no function in the VPC calls them unless a flag below says so).

Invariant: every boolean flag of ``HandlerSpec`` is named in ``FLAG_NEEDS`` (a flag that calls AWS names its
endpoints; a new flag fails the test until it is named here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields

from lambdas.domain.bootstrap import CHART_REPOSITORY
from lambdas.domain.network import EndpointKind, EndpointNeed
from stacks.config import AlbgateConfig
from stacks.constructs.handler_specs import HandlerSpec

# (service, kind, why), kind in Interface | Gateway | Internet
Need = tuple[str, EndpointKind, str]
EKS: Need = ("eks", "Interface", "eks:DescribeCluster for the cluster's endpoint and certificate")
ELB: Need = ("elasticloadbalancing", "Interface", "ELB target groups and target health")
DYNAMODB: Need = ("dynamodb", "Gateway", "DynamoDB tables of the stack")
MONITORING: Need = ("monitoring", "Interface", "CloudWatch alarms and ALB metrics the rollout policy watches")


def _alarm_needs(config: AlbgateConfig) -> list[tuple[Need, tuple[str, ...]]]:
    """CloudWatch, when the config's rollout policy (the one the ECR trigger's rollouts run) names alarms or asks for
    analysis. A policy given in one execution's input is not known here: a private cluster whose rollouts do so in
    their input needs the endpoint (or a NAT route) all the same (docs/rollout.md, "What the gate watches")."""
    policy = config.rollout_policy
    return [(MONITORING, ())] if policy.alarms or policy.analysis is not None else []




def _metrics_needs(config: AlbgateConfig) -> list[tuple[Need, tuple[str, ...]]]:
    """CloudWatch for GetMetricData: the config's rollout policy asks for analysis, or reads the longest requests
    (``long_requests_window_minutes`` above 0, the default), or names alarms (the same endpoint)."""
    policy = config.rollout_policy
    return [(MONITORING, ())] if policy.alarms or policy.analysis is not None or policy.long_requests_window_minutes \
        else []


def _chart_needs(config: AlbgateConfig) -> list[tuple[Need, tuple[str, ...]]]:
    """What pulling the controller's chart needs, per chart source, with the clusters that use it."""
    out: list[tuple[Need, tuple[str, ...]]] = []
    ecr = tuple(c.name for c in config.clusters if c.ecr_chart_mirror is not None)
    if ecr:
        out += [(("ecr.api", "Interface", "ecr:GetAuthorizationToken, the registry login before the chart pull"), ecr),
                (("ecr.dkr", "Interface", "helm pulls the chart from the ECR registry"), ecr),
                (("s3", "Gateway", "ECR serves the chart's layers from Amazon S3"), ecr)]
    eks_charts = tuple(c.name for c in config.clusters if c.controller.chart_repository.rstrip("/") == CHART_REPOSITORY)
    if eks_charts:
        host = CHART_REPOSITORY.removeprefix("https://").split("/")[0]
        out.append(((host, "Internet", "helm pulls the chart from eks-charts on GitHub Pages; mirror it to ECR "
                     "to need no internet"), eks_charts))
    return out


# flag -> the needs of a function with that flag set, for this config (empty: the flag makes no AWS call here)
FLAG_NEEDS: dict[str, Callable[[AlbgateConfig], list[tuple[Need, tuple[str, ...]]]]] = {
    "elb_read": lambda config: [(ELB, ())],
    "elb_health": lambda config: [(ELB, ())],
    "elb_deregister": lambda config: [(ELB, ())],
    "elb_register": lambda config: [(ELB, ())],
    "ecr_read": lambda config: [(("ecr.api", "Interface", "ecr:DescribeImages pins an image tag to its digest"), ())]
    if any(a.ecr_repository for a in config.applications) else [],
    "describe_budget": lambda config: [(DYNAMODB, ())] if config.describe_budget.enabled else [],
    "deployment_lease": lambda config: [(DYNAMODB, ()),
                                        (("states", "Interface", "states:DescribeExecution of a lease's holder"), ())],
    "network_read": lambda config: [(("ec2", "Interface", "Check Network reads the VPC's endpoints and route tables"),
                                     ())],
    "chart_pull": _chart_needs,
    "alarms_read": _alarm_needs,
    "alarms_history": _alarm_needs,
    "metrics_read": _metrics_needs,
}


def spec_flags() -> list[str]:
    """Every boolean flag of HandlerSpec (each must be in FLAG_NEEDS)."""
    return [f.name for f in fields(HandlerSpec) if f.type in (bool, "bool")]


def vpc_endpoint_needs(specs: Iterable[HandlerSpec], config: AlbgateConfig) -> list[EndpointNeed]:
    """One need per endpoint the functions ``specs`` (those placed in the VPC) call, sorted: interface endpoints,
    then gateway endpoints, then hosts only an egress route reaches."""
    unknown = sorted(set(spec_flags()) - set(FLAG_NEEDS))
    if unknown:
        raise ValueError(f"HandlerSpec flags {unknown} are not in vpc_endpoints.FLAG_NEEDS: name what they call")
    merged: dict[tuple[str, str], dict] = {}

    def add(need: Need, clusters: tuple[str, ...], function: str) -> None:
        service, kind, why = need
        entry = merged.setdefault((service, kind), {"used_by": [], "why": [], "clusters": set(), "every": False})
        if function not in entry["used_by"]:
            entry["used_by"].append(function)
        if why not in entry["why"]:
            entry["why"].append(why)
        if clusters:
            entry["clusters"].update(clusters)
        else:
            entry["every"] = True

    for spec in specs:
        if spec.kube != "none":
            add(EKS, (), spec.name)
        for flag in spec_flags():
            if getattr(spec, flag):
                for need, clusters in FLAG_NEEDS[flag](config):
                    add(need, clusters, spec.name)
    order = {"Interface": 0, "Gateway": 1, "Internet": 2}
    return [
        EndpointNeed(service, kind, tuple(e["used_by"]), "; ".join(e["why"]),  # type: ignore[arg-type]
                     () if e["every"] else tuple(sorted(e["clusters"])))
        for (service, kind), e in sorted(merged.items(), key=lambda item: (order[item[0][1]], item[0][0]))
    ]


def endpoint_table(needs: Iterable[EndpointNeed]) -> str:
    """The needs as the markdown table docs/foundation.md shows (Region left as ``<region>``)."""
    lines = ["| endpoint | type | used by | for |", "| --- | --- | --- | --- |"]
    for n in needs:
        name = n.endpoint_name("<region>") if n.kind != "Internet" else f"`{n.service}` (internet)"
        name = f"`{name}`" if n.kind != "Internet" else name
        kind = "NAT route only" if n.kind == "Internet" else n.kind.lower()
        lines.append(f"| {name} | {kind} | {', '.join(n.used_by)} | {n.why} |")
    return "\n".join(lines)
