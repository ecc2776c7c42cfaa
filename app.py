#!/usr/bin/env python3
"""The CDK app: read and validate the config, build the albgate stack, check it with cdk-nag, synthesize.

Invariant: composition only, no AWS call. ``python app.py`` and ``cdk synth`` produce the same assembly: when
run without the CDK CLI, this file reads cdk.json's context itself (the CLI would have passed it) and accepts
the CLI's ``-c key=value``. The outdir is ``CDK_OUTDIR`` (set by the CLI) or ``cdk.out``. Synth fails (exit 1)
on a config error or on any cdk-nag AwsSolutions finding that has no acknowledgment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Aspects, Environment
from cdk_nag import AwsSolutionsChecks

from lambdas.domain.documents import DocumentError, decode_utf8, parse_json
from lambdas.domain.plan import step_targets
from stacks.albgate_stack import AlbgateStack
from stacks.release_names import release_stack_name
from stacks.release_stack import ReleaseStack
from stacks.config import CONTEXT_FILE_KEY, CONTEXT_KEY, AlbgateConfig, ConfigError, load_config
from stacks.constructs.bootstrap_specs import render_bootstrap_rbac
from stacks.constructs.cluster_access import render_rbac

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTDIR = "cdk.out"


def cdk_json_context(path: Path = ROOT / "cdk.json") -> dict[str, Any]:
    """cdk.json's context (feature flags and the albgate config), as the CLI would pass it; read strictly (UTF-8,
    no key given twice: a setting written twice would otherwise apply whichever came last)."""
    try:
        return dict(parse_json(decode_utf8(path.read_bytes(), path.name), path.name).get("context", {}))
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None


def stack_environment(config: AlbgateConfig, env: Mapping[str, str] = os.environ) -> Environment:
    """Account: config, else CDK_DEFAULT_ACCOUNT, else agnostic (resolved at deploy). Region: the clusters'."""
    return Environment(account=config.account or env.get("CDK_DEFAULT_ACCOUNT") or None, region=config.region)


def build_app(
    context: Mapping[str, Any] | None = None, outdir: str | None = None, *, nag: bool = True
) -> tuple[App, AlbgateStack]:
    """The app with one albgate stack per account and Region of the clusters (the first is returned), the release
    stack when releases are configured, and cdk-nag's AwsSolutions checks attached (they run at synth; ``nag``
    False leaves them off, for a check of albgate's own constructs alone).

    ``context`` defaults to cdk.json's; the CLI's ``CDK_CONTEXT_JSON`` still overrides it inside ``App``.
    """
    ctx = dict(cdk_json_context() if context is None else context)
    app = App(context=ctx, outdir=outdir or os.environ.get("CDK_OUTDIR") or DEFAULT_OUTDIR)
    # Read the config from the app's merged context, so `cdk synth -c albgate_config=...` is seen too.
    config = load_config({k: app.node.try_get_context(k) for k in (CONTEXT_KEY, CONTEXT_FILE_KEY)})
    released = {c for r in config.releases for c in r.clusters()}
    home_account, home_region = config.home
    stacks = []
    for account, region in config.environments():
        env_config = config.for_environment(account, region)
        stacks.append(AlbgateStack(
            app,
            env_config.stack_name,
            config=env_config,
            env=stack_environment(env_config),
            release_home_account=home_account,
            released=any(c.name in released for c in env_config.clusters),
            release_stack=release_stack_name(config.stack_name),
            description="albgate: zero-downtime rollouts of EKS Deployments behind an ALB, gated on target health",
        ))
    if config.releases:
        ReleaseStack(
            app, release_stack_name(config.stack_name), config=config,
            env=Environment(account=home_account, region=home_region),
            description="albgate: releases, one image through waves of clusters, each rollout gated",
        )
    if nag:
        Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stacks[0]


def synthesis_problems(app: App, stack: AlbgateStack) -> list[str]:
    """Unacknowledged cdk-nag findings and CDK's own errors/warnings; empty when the assembly is clean.

    With the feature flags in cdk.json, CDK itself refuses to finish synth on an error annotation and writes
    ``validation-report.json``: read the violations from there; warnings come from the stack's messages.
    """
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        if "ValidationFailed" not in str(exc):
            raise
        report = json.loads((Path(app.outdir) / "validation-report.json").read_text())
        return [
            f"error: {construct.get('constructPath')}: {violation.get('description', '').split(': ', 1)[0]}"
            for plugin in report.get("pluginReports", [])
            for violation in plugin.get("violations", [])
            for construct in violation.get("violatingConstructs", [])
        ] or [str(exc)]
    problems = []
    for artifact in assembly.stacks:  # every stack of the app: each environment's and the release's
        for message in artifact.messages:
            level = str(message.level).rsplit(".", 1)[-1].lower()
            if level in ("error", "warning"):
                problems.append(f"{level}: {message.id}: {message.entry.data}")
    return problems


def summary(config: AlbgateConfig, stack: AlbgateStack, outdir: str) -> str:
    """What would be deployed, in a few lines a person can check before `cdk deploy`."""
    lines = [
        f"albgate: synthesized stack {stack.stack_name} to {outdir}/ "
        f"(account {config.account or os.environ.get('CDK_DEFAULT_ACCOUNT') or 'from deploy credentials'}, "
        f"region {config.region})",
        f"  functions: {', '.join(stack.functions)} (Python 3.12, x86_64, X-Ray, one code asset)",
        "  state machine: Rollout (Standard, logging ALL, X-Ray)",
    ]
    for c in config.clusters:
        access = (
            f"{len(stack.cluster_access.access_entries) // len(config.clusters)} access entries"
            if c.uses_access_entries
            else "aws-auth mapRoles (stack output AwsAuthMapRoles...)"
        )
        where = f"in {c.vpc_id}" if c.endpoint_private else "public endpoint"
        lines.append(f"  cluster {c.name}: {c.authentication_mode}, {access}, {where}, "
                     f"namespaces {', '.join(config.namespaces(c.name))}")
    for a in config.applications:
        plan = f", plan {step_targets(a.replicas, config.rollout_policy)} new pods per step" if a.replicas else ""
        lines.append(
            f"  app {a.namespace}/{a.deployment} (container {a.container}, Service {a.service}, "
            f"Ingress {a.ingress}){plan}"
        )
    lines.append(
        f"  next: kubectl apply -f {outdir}/albgate-rbac.yaml -f {outdir}/albgate-bootstrap-rbac.yaml on each "
        "cluster, then cdk deploy"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--context", action="append", default=[], metavar="KEY=VALUE",
        help="context value, as with the CDK CLI (e.g. -c albgate_config=config/example.json)",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        context = cdk_json_context()
    except ConfigError as exc:
        print(f"albgate: {exc}", file=sys.stderr)
        return 1
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"albgate: -c expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        # The CLI parses JSON-looking values too (e.g. -c 'aws:cdk:bundling-stacks=[]').
        context[key] = json.loads(value) if value[:1] in "[{" else value
    try:
        app, stack = build_app(context)
    except ConfigError as exc:
        print(f"albgate: {exc}", file=sys.stderr)
        return 1
    problems = synthesis_problems(app, stack)
    if problems:
        print("albgate: synth found problems (cdk-nag findings need a fix or an acknowledgment with a reason):",
              file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    outdir = app.outdir
    stacks = environment_stacks(app)
    namespaces = [ns for st in stacks for c in st.config.clusters for ns in st.config.namespaces(c.name)]
    (Path(outdir) / "albgate-rbac.yaml").write_text(render_rbac(namespaces))
    (Path(outdir) / "albgate-bootstrap-rbac.yaml").write_text(render_bootstrap_rbac(namespaces))
    if not args.quiet:
        shown = os.path.relpath(outdir)
        where = outdir if shown.startswith("..") else shown
        print("\n".join(summary(st.config, st, where) for st in stacks), file=sys.stderr)
        for release in (c for c in app.node.children if isinstance(c, ReleaseStack)):
            names = ", ".join(s.name for s in release.specs)
            print(f"albgate: synthesized the release stack {release.stack_name} (releases {names}); deploy every "
                  "stack: cdk deploy --all (docs/releases.md)", file=sys.stderr)
    return 0


def environment_stacks(app: App) -> list[AlbgateStack]:
    """The app's albgate stacks, one per account and Region of the clusters, in config order."""
    return [c for c in app.node.children if isinstance(c, AlbgateStack)]


if __name__ == "__main__":
    sys.exit(main())
