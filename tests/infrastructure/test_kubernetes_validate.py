"""Every Kubernetes manifest albgate ships or sends passes kubernetes-validate, strict, for Kubernetes 1.33 and 1.34.

The table: the YAML and JSON files shipped under deploy/, docs/ and scenarios/ (every Kubernetes object in them,
nested ones too); the RBAC `python app.py` writes for the example config; and what the bootstrap sends to a
cluster for the example config's app (the demo's app, scenarios/seed-app.yaml): the controller's service
account, the labelled namespace, the hardened Service, Ingress and Deployment (and the same app applied as given,
``harden: false``), and the probe pod it dry-run creates. The bootstrap's objects are recorded from its own use
cases run against a recording fake of the API server, so the table holds what albgate really sends.

Invariant: strict schemas (an unknown field fails, as ``kubectl apply --validate=strict`` and albgate's own
server-side apply refuse it), the schemas of exactly the version asked for (docs/facts.md, "Outside
validators"), a kind with no schema fails (the tool's command line only warns), and broken manifests fail.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from albgate.demo import DEFAULT_SCENARIO
from albgate.sim import load_scenario
from lambdas.domain.bootstrap import (
    AppliedObject,
    apply_deployments,
    apply_services_and_ingresses,
    install_controller,
    label_namespaces,
    parse_bootstrap,
    probe_pod,
    validate_input,
)
from stacks.config import parse_config
from stacks.constructs.bootstrap_specs import render_bootstrap_rbac
from stacks.constructs.cluster_access import render_rbac
from tests.conftest import ROOT
from tests.infrastructure.outside_tools import installed_python, pinned_python, require_module

# 1.33: the kubectl of the Lambda layer the stack pins (aws-cdk.lambda-layer-kubectl-v33); 1.34: the next minor.
KUBERNETES_VERSIONS = ("1.33", "1.34")
SHIPPED_FOLDERS = ("deploy", "docs", "scenarios")
EXAMPLE_CONFIG = ROOT / "config" / "example.json"
IRSA_ROLE = "arn:aws:iam::123456789012:role/albgate-load-balancer-controller"


# --- the manifests -----------------------------------------------------------------------------------------------
def kubernetes_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping with a string apiVersion and kind, however deep (a bootstrap input nests its manifests)."""
    if isinstance(value, dict):
        if isinstance(value.get("apiVersion"), str) and isinstance(value.get("kind"), str):
            yield value
            return
        for item in value.values():
            yield from kubernetes_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from kubernetes_objects(item)


def shipped_manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for folder in SHIPPED_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".yaml", ".yml", ".json"):
                continue
            text = path.read_text()
            documents = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
            found += [(str(path.relative_to(ROOT)), obj) for obj in kubernetes_objects(documents)]
    return found


def written_rbac() -> list[tuple[str, dict[str, Any]]]:
    """What `python app.py` writes next to the template for the example config (app.py, main)."""
    config = parse_config(json.loads(EXAMPLE_CONFIG.read_text()))
    namespaces = [ns for c in config.clusters for ns in config.namespaces(c.name)]
    return [
        (f"<outdir>/{name}", obj)
        for name, text in (("albgate-rbac.yaml", render_rbac(namespaces)),
                           ("albgate-bootstrap-rbac.yaml", render_bootstrap_rbac(namespaces)))
        for obj in yaml.safe_load_all(text)
    ]


def demo_app_manifests() -> dict[str, dict[str, Any]]:
    """The demo's app (its default scenario) written as the Deployment, Service and Ingress a person would apply."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    app, svc, ing = scenario.app, scenario.service, scenario.ingress
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.deployment},
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": dict(app.labels)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": app.max_surge, "maxUnavailable": app.max_unavailable}},
            "minReadySeconds": app.min_ready_seconds,
            "progressDeadlineSeconds": app.progress_deadline_seconds,
            "revisionHistoryLimit": app.revision_history_limit,
            "template": {
                "metadata": {"labels": dict(app.labels)},
                "spec": {
                    "terminationGracePeriodSeconds": app.termination_grace_period_seconds,
                    "containers": [{"name": app.container, "image": app.image,
                                    "ports": [{"containerPort": app.port}]}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name},
        "spec": {"selector": dict(svc.selector or app.labels), "ports": [{"port": svc.port, "targetPort": app.port}]},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": ing.name, "annotations": dict(ing.annotations)},
        "spec": {
            "ingressClassName": ing.ingress_class,
            "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": svc.name, "port": {"number": svc.port}}}}]}}],
        },
    }
    return {"deployment": deployment, "service": service, "ingress": ingress}


def example_bootstrap_request(*, harden: bool) -> dict[str, Any]:
    """A bootstrap of the example config's cluster and app, with the demo's manifests (the IRSA role is the
    deployed config's: ``configured_controller``)."""
    config = json.loads(EXAMPLE_CONFIG.read_text())
    cluster, app = config["clusters"][0], config["applications"][0]
    return {
        "cluster": cluster["name"],
        "applications": [{"namespace": app["namespace"], "deployment": app["deployment"], "container": app["container"],
                          "harden": harden, "manifests": demo_app_manifests()}],
    }


def configured_controller() -> dict[str, Any]:
    """The controller settings the stack passes for the example cluster, with an IRSA role."""
    cluster = json.loads(EXAMPLE_CONFIG.read_text())["clusters"][0]
    return {cluster["name"]: {"region": cluster["region"], "role_arn": IRSA_ROLE}}


class RecordingApiServer:
    """A fake API server of one version that accepts every server-side apply and keeps what it was sent."""

    def __init__(self, version: str) -> None:
        major, minor = version.split(".")
        self.version = (int(major), int(minor))
        self.sent: list[dict[str, Any]] = []

    def server_version(self) -> tuple[int, int]:
        return self.version

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list:
        return []  # a new application: no pod yet

    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False) -> AppliedObject:
        if not dry_run:
            self.sent.append(copy.deepcopy(manifest))
        meta = manifest["metadata"]
        return AppliedObject(manifest["kind"], meta.get("namespace", ""), meta["name"],
                             "validated" if dry_run else "created")


class NoReleaseYet:
    """helm on a cluster where the controller is not installed: the bootstrap installs it."""

    def release(self, name: str, namespace: str) -> None:
        return None

    def upgrade_install(self, args: list[str], values: dict[str, Any]) -> str:
        return "installed"


class FixedClock:
    def now(self) -> float:
        return 1_767_225_600.0


def bootstrap_sends(request: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """Every object the bootstrap's use cases send to a cluster of ``version``, in the state machine's order."""
    api, clock = RecordingApiServer(version), FixedClock()
    state = validate_input(request, "outside-validators", clock.now(), configured_controller())
    state = install_controller(api, NoReleaseYet(), clock, state)
    state = label_namespaces(api, state)
    state = apply_services_and_ingresses(api, clock, state)
    apply_deployments(api, clock, state)
    # Check Bindings dry-run creates this pod to see the webhook inject the gate (lambdas/domain/bootstrap.py).
    probes = [probe_pod(a.namespace, a.manifests.deployment) for a in parse_bootstrap(request).applications
              if a.manifests is not None]
    return api.sent + probes


def object_name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName", "?")
    return f"{obj['kind']}/{meta['namespace'] + '/' if meta.get('namespace') else ''}{name}"


def manifest_table() -> list[Any]:
    rows = []
    for version in KUBERNETES_VERSIONS:
        entries = shipped_manifests() + written_rbac()
        entries += [("bootstrap", obj) for obj in bootstrap_sends(example_bootstrap_request(harden=True), version)]
        entries += [("bootstrap-as-given", obj)
                    for obj in bootstrap_sends(example_bootstrap_request(harden=False), version)
                    if obj["kind"] in ("Deployment", "Service", "Ingress")]
        rows += [pytest.param(version, source, obj, id=f"{version}:{source}:{object_name(obj)}")
                 for source, obj in entries]
    return rows


MANIFESTS = manifest_table()


# --- the validator -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kubernetes_validate() -> ModuleType:
    return require_module("kubernetes_validate", "kubernetes-validate")


def problem(kv: ModuleType, manifest: dict[str, Any], version: str) -> str | None:
    """What kubernetes-validate --strict finds in ``manifest`` for ``version`` (None: it is valid)."""
    try:
        checked = kv.validate(manifest, version, strict=True)
    except kv.ValidationError as e:
        return f"{'.'.join(str(p) for p in e.path) or '(top level)'}: {e.message}"
    except kv.SchemaNotFoundError as e:
        return e.message
    return None if checked == version else f"checked with the schemas of {checked}, not {version}"


# --- every manifest passes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "source", "manifest"), MANIFESTS)
def test_manifest_is_valid_for_the_kubernetes_version(kubernetes_validate, version, source, manifest):
    # Given one manifest albgate ships or sends, When checked strictly against that version's schemas
    found = problem(kubernetes_validate, manifest, version)
    # Then nothing is wrong with it
    assert found is None, f"{source} {object_name(manifest)}: {found}"


def test_the_table_holds_what_albgate_ships_and_sends():
    # Given the table, When its sources and kinds are listed per version
    rows = {(p.values[0], p.values[1], p.values[2]["kind"]) for p in MANIFESTS}
    # Then every source is there for both versions, with the kinds each one must bring
    for version in KUBERNETES_VERSIONS:
        assert {kind for v, source, kind in rows if v == version and source == "deploy/rbac.yaml"} == {
            "ClusterRole", "RoleBinding"}
        assert {kind for v, source, kind in rows if v == version and source.startswith("<outdir>/")} == {
            "ClusterRole", "ClusterRoleBinding", "RoleBinding"}
        assert {kind for v, source, kind in rows if v == version and source == "bootstrap"} == {
            "ServiceAccount", "Namespace", "Service", "Ingress", "Deployment", "Pod"}


def test_the_demo_app_is_the_example_configs_app():
    # Given the example config's app and the demo's scenario, Then they name the same objects
    app = json.loads(EXAMPLE_CONFIG.read_text())["applications"][0]
    scenario = load_scenario(DEFAULT_SCENARIO)
    assert (app["namespace"], app["deployment"], app["container"], app["service"], app["ingress"]) == (
        scenario.namespace.name, scenario.app.deployment, scenario.app.container, scenario.service.name,
        scenario.ingress.name)


def test_the_hardened_deployment_carries_the_native_sleep_the_schemas_must_know():
    # Given what the bootstrap sends to a 1.33 cluster
    sent = bootstrap_sends(example_bootstrap_request(harden=True), "1.33")
    # Then the Deployment's preStop is the native sleep action, so the strict check above covers that field
    (deployment,) = [o for o in sent if o["kind"] == "Deployment"]
    pre_stop = deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]
    assert set(pre_stop) == {"sleep"}


# --- negative controls: a broken manifest fails -------------------------------------------------------------------
def hardened_deployment() -> dict[str, Any]:
    return copy.deepcopy(next(o for o in bootstrap_sends(example_bootstrap_request(harden=True), "1.33")
                              if o["kind"] == "Deployment"))


def with_change(path: list[str | int], value: Any) -> dict[str, Any]:
    obj = hardened_deployment()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


BROKEN = [
    pytest.param(with_change(["spec", "replica"], 3), "Additional properties are not allowed ('replica' was unexpected)",
                 id="unknown-field"),
    pytest.param(with_change(["spec", "template", "spec", "containers", 0, "lifecycle", "preStop"],
                             {"sleeep": {"seconds": 30}}),
                 "Additional properties are not allowed ('sleeep' was unexpected)", id="misspelt-prestop-action"),
    pytest.param(with_change(["spec", "replicas"], "three"), "'three' is not of type 'integer'", id="wrong-type"),
    pytest.param(with_change(["apiVersion"], "extensions/v1beta1"),
                 "Couldn't find schema for kind Deployment with api version extensions/v1beta1", id="removed-api-version"),
]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("manifest", "expected"), BROKEN)
def test_a_broken_manifest_fails(kubernetes_validate, manifest, expected, version):
    # Given a hardened Deployment with one error, When checked strictly, Then the error is named
    found = problem(kubernetes_validate, manifest, version)
    assert found is not None and expected in found, found


def test_strict_is_what_catches_an_unknown_field(kubernetes_validate):
    # Given a Deployment with an unknown field, When checked without --strict, Then it passes: strict matters
    manifest = with_change(["spec", "replica"], 3)
    assert kubernetes_validate.validate(manifest, "1.33", strict=False) == "1.33"


def test_the_installed_validator_is_the_pinned_version():
    # Given the pin in requirements.txt, When the installed version is read, Then they match
    assert installed_python("kubernetes-validate") == pinned_python("kubernetes-validate")
