"""The bootstrap adapter over HTTP (lambdas/adapters/kubernetes_bootstrap.py): server-side apply, dry runs, the
controller's webhook and endpoints, against a local fake API server that answers as the API server documents
(tests/adapters/fake_apiserver.py, extended here with apply patches, dry-run pod creation, webhook
configurations and EndpointSlices). Also the helm command line with a fake process runner."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lambdas.adapters.kubernetes_bootstrap import (
    APPLY_PATCH,
    HelmCli,
    KubernetesBootstrapAdapter,
    chart_version_of,
    helm_time,
    map_helm_error,
    render_kubeconfig,
)
from lambdas.domain.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    KubernetesUnavailableError,
    WebhookNotReadyError,
)
from tests.adapters.conftest import api_client_for
from tests.adapters.fake_apiserver import _PATH, ApiError, FakeApiServer, Recorded
from tests.bootstrap.conftest import deployment, service

GATE = "target-health.elbv2.k8s.aws/k8s-shop-web-0123456789"
KNOWN_TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}


def _merge(current: Any, applied: Any) -> Any:
    """Maps merge, everything else is replaced: enough of server-side apply for fields one manager owns."""
    if isinstance(current, dict) and isinstance(applied, dict):
        out = copy.deepcopy(current)
        for k, v in applied.items():
            out[k] = _merge(current.get(k), v)
        return out
    return copy.deepcopy(applied)


class ApplyingApiServer(FakeApiServer):
    """The fake API server plus what the bootstrap adapter calls."""

    webhooks: dict[str, dict] = {}
    endpoint_slices: list[dict] = []

    def serve(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        content_type = headers.get("content-type", "").split(";")[0].strip()
        ours = (split.path.startswith("/apis/admissionregistration") or split.path.endswith("/endpointslices")
                or (method == "POST" and split.path.endswith("/pods"))
                or (method == "PATCH" and content_type == APPLY_PATCH))
        if not ours:
            return super().serve(method, raw_path, headers, raw_body)
        for fault in list(self._faults):  # injected failures, as the base class serves them
            if fault.method == method and fault.path.search(split.path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                raise ApiError(fault.code, fault.message, reason=fault.reason)
        if split.path.startswith("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"):
            name = split.path.rsplit("/", 1)[1]
            if name not in self.webhooks:
                raise ApiError(404, f'mutatingwebhookconfigurations.admissionregistration.k8s.io "{name}" not found')
            return 200, self.webhooks[name]
        if split.path.endswith("/endpointslices") and method == "GET":
            self.requests.append(Recorded(method, split.path, query, content_type, "", None))
            wanted = query.get("labelSelector", [""])[0].partition("=")[2]
            items = [s for s in self.endpoint_slices if s["metadata"]["labels"]["kubernetes.io/service-name"] == wanted]
            return 200, {"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1", "metadata": {}, "items": items}
        if method == "POST" and split.path.endswith("/pods"):
            body = json.loads(raw_body)
            self.requests.append(Recorded(method, split.path, query, content_type, "", body))
            if query.get("dryRun") != ["All"]:
                raise ApiError(400, "the fake only dry-runs pods")
            ns = split.path.split("/")[4]
            labels = (self.get("namespaces", "", ns)["metadata"].get("labels") or {})
            if labels.get("elbv2.k8s.aws/pod-readiness-gate-inject") == "enabled":  # the controller's webhook
                body.setdefault("spec", {}).setdefault("readinessGates", []).append({"conditionType": GATE})
            body["metadata"]["name"] = body["metadata"].pop("generateName", "p") + "x7k2q"
            return 201, body
        if method == "PATCH" and content_type == APPLY_PATCH:
            return self._apply(split.path, query, raw_body)
        return super().serve(method, raw_path, headers, raw_body)

    def _apply(self, path: str, query: dict[str, list[str]], raw_body: bytes) -> tuple[int, Any]:
        body = json.loads(raw_body)
        self.requests.append(Recorded("PATCH", path, query, APPLY_PATCH, "", body))
        if query.get("fieldManager") != ["albgate"]:
            raise ApiError(400, "PATCH with apply requires a fieldManager")
        unknown = sorted(set(body) - KNOWN_TOP_LEVEL)
        if unknown and query.get("fieldValidation") == ["Strict"]:
            raise ApiError(400, f'strict decoding error: unknown field "{unknown[0]}"', reason="BadRequest")
        m = _PATH.match(path)
        assert m, path
        group = m.group("group") or ""
        plural, name, ns = m.group("plural"), m.group("name"), m.group("ns") or ""
        key = (group, plural, ns, name)
        with self._lock:
            current = self._objects.get(key)
            merged = _merge(current or {}, body)
            if query.get("dryRun") == ["All"]:
                return 200, merged
            if current is not None and merged == current:
                return 200, copy.deepcopy(current)  # nothing changed: no write, same resourceVersion
            return 200, self.put(plural, merged, group)


@pytest.fixture
def server() -> Iterator[ApplyingApiServer]:
    s = ApplyingApiServer()
    s.webhooks, s.endpoint_slices = {}, []
    s.start()
    yield s
    s.stop()
    assert not s.crashes, s.crashes


@pytest.fixture
def kube(server: ApplyingApiServer) -> KubernetesBootstrapAdapter:
    return KubernetesBootstrapAdapter(api_client_for(server.url))


def with_namespace(manifest: dict, ns: str = "shop") -> dict:
    out = copy.deepcopy(manifest)
    out["metadata"]["namespace"] = ns
    return out


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "shop", "labels": {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}}}


@pytest.mark.parametrize(("manifest", "path"), [
    (NAMESPACE, "/api/v1/namespaces/shop"),
    (with_namespace(service()), "/api/v1/namespaces/shop/services/web"),
    (with_namespace(deployment()), "/apis/apps/v1/namespaces/shop/deployments/web"),
], ids=["namespace", "service", "deployment"])
def test_apply_is_a_server_side_apply_created_then_unchanged(server, kube, manifest: dict, path: str) -> None:
    # Given an object that does not exist
    # When it is applied twice
    first = kube.apply(manifest)
    second = kube.apply(manifest)
    # Then it was created, then left unchanged, each time by an apply patch with albgate's field manager
    assert (first.action, second.action) == ("created", "unchanged")
    applies = [r for r in server.requests if r.method == "PATCH"]
    assert [r.path for r in applies] == [path, path]
    assert all(r.content_type == "application/apply-patch+yaml" for r in applies)
    # force=True: the client writes Python's bool; the API server parses it with Go's strconv.ParseBool
    assert all(r.query.get("fieldManager") == ["albgate"] and r.query.get("force") == ["True"]
               and r.query.get("fieldValidation") == ["Strict"] for r in applies)


def test_a_changed_field_is_configured(server, kube) -> None:
    kube.apply(NAMESPACE)
    changed = copy.deepcopy(NAMESPACE)
    changed["metadata"]["labels"]["team"] = "shop"
    assert kube.apply(changed).action == "configured"
    assert server.get("namespaces", "", "shop")["metadata"]["labels"]["team"] == "shop"


def test_a_dry_run_persists_nothing(server, kube) -> None:
    result = kube.apply(with_namespace(service()), dry_run=True)
    assert result.action == "validated"
    assert server.requests[-1].query.get("dryRun") == ["All"]
    with pytest.raises(KeyError):
        server.get("services", "shop", "web")


def test_an_unknown_field_is_refused_naming_it(kube) -> None:
    bad = with_namespace(service())
    bad["spce"] = {}
    with pytest.raises(InvalidInputError, match='unknown field "spce"'):
        kube.apply(bad, dry_run=True)


@pytest.mark.parametrize(("code", "message", "error"), [
    (403, "services is forbidden", AccessDeniedError),
    (409, "conflict", ConflictError),
    (503, "etcd unavailable", KubernetesUnavailableError),
], ids=["forbidden", "conflict", "unavailable"])
def test_api_errors_become_domain_errors(server, kube, code: int, message: str, error: type) -> None:
    server.fail_next("PATCH", r"/services/web$", code, message)
    with pytest.raises(error):
        kube.apply(with_namespace(service()))


def test_a_dry_run_pod_comes_back_with_the_injected_gate(server, kube) -> None:
    # Given a labelled namespace
    kube.apply(NAMESPACE)
    # When a pod is dry-run created
    pod = kube.dry_run_create_pod("shop", {"apiVersion": "v1", "kind": "Pod",
                                           "metadata": {"generateName": "albgate-probe-", "labels": {"app": "web"}},
                                           "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}})
    # Then the webhook's gate is on it and the request was a dry run
    assert GATE in pod.readiness_gates
    assert server.requests[-1].query.get("dryRun") == ["All"]


def test_a_webhook_that_cannot_be_called_is_retryable(server, kube) -> None:
    kube.apply(NAMESPACE)
    server.fail_next("POST", r"/pods$", 500, 'Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": '
                     'failed to call webhook: Post "https://aws-load-balancer-webhook-service.kube-system.svc:443"')
    with pytest.raises(WebhookNotReadyError):
        kube.dry_run_create_pod("shop", {"metadata": {"generateName": "p-"}, "spec": {"containers": []}})


def test_webhook_configuration_and_ready_endpoints(server, kube) -> None:
    server.webhooks["aws-load-balancer-webhook"] = {"metadata": {"name": "aws-load-balancer-webhook"}, "webhooks": [
        {"name": "mpod.elbv2.k8s.aws", "failurePolicy": "Ignore", "objectSelector": {"matchLabels": {"a": "b"}}},
        {"name": "mtargetgroupbinding.elbv2.k8s.aws"}]}
    server.endpoint_slices.append({"metadata": {"labels": {"kubernetes.io/service-name": "aws-load-balancer-webhook-service"}},
                                   "endpoints": [{"conditions": {"ready": True}}, {"conditions": {"ready": False}},
                                                 {"conditions": {}}]})
    hook = kube.get_mutating_webhook("aws-load-balancer-webhook")
    assert hook.entry("mpod.elbv2.k8s.aws").failure_policy == "Ignore"
    assert hook.entry("mtargetgroupbinding.elbv2.k8s.aws").failure_policy == "Fail"  # the v1 default
    assert kube.ready_endpoints("kube-system", "aws-load-balancer-webhook-service") == 2  # unset ready = ready
    assert kube.server_version() == (1, 31)


# --- helm -------------------------------------------------------------------------------------------------
class FakeRun:
    def __init__(self, answers: list[tuple[int, str, str]]) -> None:
        self.answers, self.calls = list(answers), []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs))
        code, out, err = self.answers.pop(0)
        return subprocess.CompletedProcess(argv, code, out, err)


def helm_cli(tmp_path, answers) -> tuple[HelmCli, FakeRun]:
    run = FakeRun(answers)
    return HelmCli("c1", lambda: ("https://k8s.example", "/tmp/ca.crt", "k8s-aws-v1.token"),
                   binary="/opt/helm/helm", workdir=str(tmp_path), run=run), run


def test_helm_release_reads_list_and_values(tmp_path) -> None:
    listed = json.dumps([{"name": "aws-load-balancer-controller", "namespace": "kube-system", "status": "deployed",
                          "chart": "aws-load-balancer-controller-3.5.0", "app_version": "v3.5.0"}])
    cli, run = helm_cli(tmp_path, [(0, listed, ""), (0, json.dumps({"clusterName": "c1"}), "")])
    release = cli.release("aws-load-balancer-controller", "kube-system")
    assert (release.chart_version, release.status, release.values) == ("3.5.0", "deployed", {"clusterName": "c1"})
    argv, kwargs = run.calls[0]
    assert argv[0] == "/opt/helm/helm" and argv[1:3] == ["list", "--namespace"]
    assert "--all" not in argv  # Helm 4 lists every status by default and has no --all
    assert kwargs["env"]["HELM_CACHE_HOME"].startswith(str(tmp_path))
    config = json.loads((tmp_path / "kubeconfig").read_text())
    assert config["users"][0]["user"]["token"] == "k8s-aws-v1.token"
    assert oct((tmp_path / "kubeconfig").stat().st_mode & 0o777) == "0o600"


def test_helm_release_absent(tmp_path) -> None:
    cli, _ = helm_cli(tmp_path, [(0, "[]", "")])
    assert cli.release("aws-load-balancer-controller", "kube-system") is None


def test_upgrade_install_writes_the_values_file(tmp_path) -> None:
    cli, run = helm_cli(tmp_path, [(0, "Release upgraded", "")])
    cli.upgrade_install(["upgrade", "--install", "r", "--values", "values.json"], {"clusterName": "c1"})
    argv = run.calls[0][0]
    values_file = argv[argv.index("--values") + 1]
    assert values_file == str(tmp_path / "values.json")
    assert json.loads((tmp_path / "values.json").read_text()) == {"clusterName": "c1"}


@pytest.mark.parametrize(("stderr", "error"), [
    ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress", ConflictError),
    ('Error: customresourcedefinitions.apiextensions.k8s.io is forbidden: User "albgate" cannot create', AccessDeniedError),
    ("Error: Kubernetes cluster unreachable: Get \"https://x/version\": dial tcp: i/o timeout", KubernetesUnavailableError),
    ('Error: failed to fetch https://aws.github.io/eks-charts/index.yaml : 404 Not Found', InvalidInputError),
    ('Error: unable to build kubernetes objects from release manifest: resource mapping not found for name: "alb" '
     'namespace: "" from "": no matches for kind "IngressClassParams" in version "elbv2.k8s.aws/v1beta1"\n'
     "ensure CRDs are installed first", KubernetesUnavailableError),
    ("Error: something else", InvalidInputError),
], ids=["in-progress", "forbidden", "unreachable", "chart-not-found", "crds-not-served-yet", "other"])
def test_helm_failures_map_to_domain_errors(stderr: str, error: type) -> None:
    assert isinstance(map_helm_error(1, stderr, "helm upgrade"), error)


def test_a_helm_error_is_quoted_from_its_error_line_on() -> None:
    # Given helm's stderr: a log line, then an error spanning two lines
    stderr = ('level=WARN msg="upgrade failed"\nError: UPGRADE FAILED: no matches for kind "X" in version "v1"\n'
              "ensure CRDs are installed first\n")
    # When mapped / Then the message quotes the whole error and not the log line
    message = str(map_helm_error(1, stderr, "helm upgrade"))
    assert '(Error: UPGRADE FAILED: no matches for kind "X" in version "v1" ensure CRDs are installed first)' in message
    assert "level=WARN" not in message


def test_a_missing_helm_binary_names_the_layer(tmp_path) -> None:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("/opt/helm/helm")

    cli = HelmCli("c1", lambda: ("https://k", "/ca", "t"), workdir=str(tmp_path), run=missing)
    with pytest.raises(InvalidInputError, match="kubectl/helm Lambda layer"):
        cli.release("r", "kube-system")


def test_chart_version_and_kubeconfig() -> None:
    assert chart_version_of("aws-load-balancer-controller-3.5.0") == "3.5.0"
    assert chart_version_of("aws-load-balancer-controller-1.13.2") == "1.13.2"
    config = json.loads(render_kubeconfig("https://k", "/ca.crt", "t", "c1"))
    assert config["current-context"] == "c1" and config["clusters"][0]["cluster"]["certificate-authority"] == "/ca.crt"


@pytest.mark.parametrize(("updated", "epoch"), [
    ("2026-12-06 09:14:15.622026402 +0000 UTC", 1_796_548_455.622026402),
    ("2026-12-06 10:14:15 +0100 CET", 1_796_548_455.0),
    ("2026-12-06 04:14:15.5 -0500 EST", 1_796_548_455.5),
    ("2026-12-06T09:14:15Z", None),
    ("", None),
])
def test_helm_lists_updated_time_is_read_in_gos_format_with_its_offset(updated: str, epoch: float | None) -> None:
    # helm list -o json prints `updated` with Go's time String(); anything else is an unknown time (never cleared)
    got = helm_time(updated)
    assert got == pytest.approx(epoch, abs=1e-6) if epoch is not None else got is None
