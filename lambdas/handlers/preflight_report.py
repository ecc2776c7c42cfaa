"""Lambda `Preflight Report`: every zero-downtime risk the cluster shows now, each with its fix. Reads only.

Thin: either a bootstrap state (its last step: the report covers its namespaces and applications, and is
added to the state under ``report``) or a report request (``cluster``, ``namespaces``, ``applications``) in;
lambdas.domain.preflight_report.preflight_report; the report out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import preflight_report as pr
from lambdas.domain.errors import InvalidInputError
from lambdas.handlers._runtime import task
from lambdas.handlers.bootstrap_common import bootstrap_ports


@task("Preflight Report")
def handler(event: dict, context: Any) -> dict:
    if not isinstance(event, dict):
        raise InvalidInputError("input: expected a bootstrap state or a report request (cluster, namespaces)")
    if isinstance(event.get("request"), dict):  # the bootstrap workflow's last step
        request = pr.report_request_from_bootstrap(event["request"])
        ports = bootstrap_ports(request.cluster)
        report = pr.preflight_report(ports.kube, ports.elb, request, ports.metrics, ports.clock.now())
        return {**event, "report": report.as_dict()}
    request = pr.parse_report_request(event)
    ports = bootstrap_ports(request.cluster)
    return pr.preflight_report(ports.kube, ports.elb, request, ports.metrics, ports.clock.now()).as_dict()
