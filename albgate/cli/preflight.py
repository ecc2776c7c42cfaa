"""`albgate preflight`: every zero-downtime risk of a namespace or Deployment, each with its fix.

Job: read the cluster and its target groups through the real adapters (nothing is changed), or the simulated
cluster of a scenario with ``--simulate SCENARIO.yaml``, and print the preflight report
(``lambdas.domain.preflight_report``); ``--json`` prints it as one object.
Invariant: exit 1 when an error-level risk is found (``--strict``: any risk), 0 otherwise; a bad input is
refused with exit code 2 before any AWS call, and a report that cannot run (credentials, Region, no such
cluster) is advice and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from albgate.cli import UsageError
from albgate.cli.common import aws_advice, aws_session

HELP = "list every zero-downtime risk of a namespace or Deployment, each with its fix"
DESCRIPTION = ("Read the cluster and its target groups (nothing is changed) and print every risk with its fix "
               "(docs/bootstrap.md, Preflight report). Exit 1 when an error-level risk is found (--strict: any "
               "risk), 0 otherwise, 2 when the report cannot run.")


def report_request(args: argparse.Namespace, cluster: str, expect_controller: bool) -> Any:
    from lambdas.domain.errors import InvalidInputError
    from lambdas.domain.preflight_report import parse_report_request

    data: dict[str, Any] = {"cluster": cluster, "expect_controller": expect_controller}
    if args.deployment:
        app: dict[str, Any] = {"namespace": args.namespace, "deployment": args.deployment}
        if args.container:
            app["container"] = args.container
        data["applications"] = [app]
    else:
        data["namespaces"] = [args.namespace]
    try:
        return parse_report_request(data)
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


def _simulated_ports(path: str) -> tuple[Any, Any, Any]:
    """The scenario's world at its steady state (just before its rollout would start), bootstrap ports on it."""
    from albgate.sim import ScenarioError, Simulation, load_scenario
    from albgate.sim.bootstrap_ports import bootstrap_ports

    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    sim = Simulation(scenario)
    sim.run_until(sim.rollout_start)
    kube, _ = bootstrap_ports(sim)
    return scenario, kube, sim.elb


def run(args: argparse.Namespace) -> int:
    from lambdas.domain.errors import AlbgateError
    from lambdas.domain.preflight_report import preflight_report

    if args.simulate:
        scenario, kube, elb = _simulated_ports(args.simulate)
        cluster = args.cluster or scenario.cluster.name
        expect = not (args.no_controller or scenario.cluster.auto_mode)
        request = report_request(args, cluster, expect)
        where = f"the simulated cluster of {args.simulate}"
    else:
        if not args.cluster:
            raise UsageError("--cluster is required (or --simulate SCENARIO.yaml for the simulated cluster)")
        request = report_request(args, args.cluster, not args.no_controller)  # bad input: before any AWS call
        session, region = aws_session(args.region)
        from lambdas.adapters.elbv2 import ElbAdapter
        from lambdas.adapters.kubernetes_bootstrap import real_bootstrap_kube

        kube = elb = None
        where = f"cluster {args.cluster} in {region}"
    try:
        if kube is None:
            kube = real_bootstrap_kube(args.cluster, region)
            elb = ElbAdapter.for_region(region, session)
        report = preflight_report(kube, elb, request)
    except AlbgateError as exc:
        cause = exc.__cause__
        advice = aws_advice(cause, "preflight") if isinstance(cause, Exception) else None
        if advice:
            raise advice from None
        raise UsageError(f"the preflight report could not run on {where}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        advice = aws_advice(exc, "preflight")
        if advice:
            raise advice from None
        if isinstance(exc, (ClientError, BotoCoreError)):  # e.g. DescribeCluster: no such cluster
            raise UsageError(f"the preflight report could not run on {where}: {exc}") from None
        raise
    errors = sum(r.severity == "error" for r in report.risks)
    warnings = len(report.risks) - errors
    code = 1 if errors or (args.strict and warnings) else 0
    if args.json:
        print(json.dumps({**report.as_dict(), "exit_code": code}, sort_keys=True))
    else:
        print(report.render())
    return code


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", metavar="C", help="EKS cluster name (with --simulate: the scenario's)")
    p.add_argument("--namespace", required=True, metavar="N", help="namespace to check")
    p.add_argument("--deployment", metavar="D", help="check only this Deployment (default: all of the namespace)")
    p.add_argument("--container", metavar="X", help="the container albgate would roll")
    p.add_argument("--region", metavar="R", help="AWS Region (default: AWS_REGION / the profile's)")
    p.add_argument("--no-controller", action="store_true",
                   help="the cluster has no Load Balancer Controller to check (EKS Auto Mode)")
    p.add_argument("--simulate", metavar="SCENARIO.yaml", help="check the simulated cluster of a scenario instead")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
