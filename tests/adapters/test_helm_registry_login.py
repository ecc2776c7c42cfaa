"""``helm registry login`` as albgate runs it before pulling the chart from a private ECR mirror, with the helm
binary albgate ships, against a registry on 127.0.0.1 that checks basic auth the way a registry does.

The registry answers the distribution API's version check ``GET /v2/`` with 401 and a ``Basic`` challenge unless
the request carries the right credentials (docs/facts.md, "Private ECR mirror of the controller"), and serves
one chart, ``charts/aws-load-balancer-controller:<pinned version>``, made by this binary's ``helm package``,
to authenticated requests only. The registry speaks plain HTTP, so the test hands helm ``--plain-http`` through
``HelmCli(registry_flags=...)``; in Lambda the flags are empty and ECR speaks HTTPS.

The last test installs from that registry the way albgate installs from a mirror (``helm upgrade --install
oci://<registry>/<path>/aws-load-balancer-controller --version V``) onto the fake API server.

A flag the binary does not know, a login that leaves no credentials where helm's pull reads them, or a password
that shows up on a command line fails here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lambdas.adapters.kubernetes_bootstrap import HelmCli, map_login_error
from lambdas.domain.bootstrap import (CHART_NAME, CHART_VERSION, RELEASE_NAME, VALUES_FILE, ControllerSettings,
                                      HelmRelease, helm_upgrade_args, helm_values)
from lambdas.domain.errors import AccessDeniedError, AwsUnavailableError
from tests.adapters.fake_apiserver import FakeApiServer
from tests.adapters.test_helm_binary import CHART_FILES, NAMESPACE, _run, read_release

USER, PASSWORD = "AWS", "eyJwYXlsb2FkIjoidGVzdC10b2tlbiJ9-not-a-real-token"
REPOSITORY = f"charts/{CHART_NAME}"
CHALLENGE = 'Basic realm="albgate-test-registry"'


@dataclass
class Registry:
    """An OCI registry on 127.0.0.1 with one chart and basic auth; ``seen`` is (method, path, authorized)."""

    host: str
    blobs: dict[str, bytes]
    manifest: bytes
    seen: list[tuple[str, str, bool]] = field(default_factory=list)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _handler(registry: Registry) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in {"Docker-Distribution-API-Version": "registry/2.0", **(headers or {})}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            authorized = self.headers.get("Authorization") == expected
            registry.seen.append((self.command, self.path, authorized))
            if not authorized:
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
                self._answer(401, body.encode(), {"WWW-Authenticate": CHALLENGE, "Content-Type": "application/json"})
                return
            if self.path == "/v2/":
                self._answer(200, b"{}", {"Content-Type": "application/json"})
                return
            m = re.fullmatch(rf"/v2/{re.escape(REPOSITORY)}/(manifests|blobs)/(.+)", self.path)
            if m and m.group(1) == "manifests" and m.group(2) in (CHART_VERSION, _digest(registry.manifest)):
                self._answer(200, registry.manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                      "Docker-Content-Digest": _digest(registry.manifest)})
                return
            if m and m.group(1) == "blobs" and m.group(2) in registry.blobs:
                self._answer(200, registry.blobs[m.group(2)], {"Content-Type": "application/octet-stream",
                                                               "Docker-Content-Digest": m.group(2)})
                return
            self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not found"}]}',
                         {"Content-Type": "application/json"})

        do_GET = _serve
        do_HEAD = _serve

    return Handler


@pytest.fixture(scope="module")
def registry(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:  # noqa: F811
    # The chart as `helm package` makes it; its manifest as `helm push` would store it (Helm's OCI media types).
    root = tmp_path_factory.mktemp("oci-chart")
    for name, text in CHART_FILES.items():
        (root / CHART_NAME / name).parent.mkdir(parents=True, exist_ok=True)
        (root / CHART_NAME / name).write_text(text)
    _run(helm_binary, ["package", str(root / CHART_NAME), "--destination", str(root)], root)
    layer = (root / f"{CHART_NAME}-{CHART_VERSION}.tgz").read_bytes()
    config = json.dumps({"apiVersion": "v2", "name": CHART_NAME, "version": CHART_VERSION}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": _digest(layer),
                    "size": len(layer)}],
    }).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    reg = Registry(f"127.0.0.1:{server.server_address[1]}", {_digest(config): config, _digest(layer): layer},
                   manifest)
    server.RequestHandlerClass = _handler(reg)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield reg
    server.shutdown()
    server.server_close()


class Runs:
    """HelmCli's process runner: every command goes to the real binary; argv and stdin are kept."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []
        self.stdin: list[str | None] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.argv.append(list(argv))
        self.stdin.append(kwargs.get("input"))
        return subprocess.run(argv, **kwargs)


def helm_cli(binary: Path, workdir: Path, runs: Runs, password: str = PASSWORD) -> HelmCli:
    return HelmCli("c1", lambda: ("http://127.0.0.1:1", "", "unused"), binary=str(binary), workdir=str(workdir),
                   run=runs, timeout_seconds=60, registry_credentials=lambda host: (USER, password),
                   registry_flags=("--plain-http",))


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------
def test_login_stores_the_credentials_where_helm_pulls_with_them(
    helm_binary: Path, registry: Registry, tmp_path: Path  # noqa: F811
) -> None:
    # Given helm with albgate's environment and the registry's credentials
    runs = Runs()
    cli = helm_cli(helm_binary, tmp_path / "helm", runs)
    # When albgate logs in
    cli.login(registry.host)
    # Then helm answered the registry's challenge with the credentials, and kept them in the registry config
    # under the work folder, nowhere else
    assert (("GET", "/v2/", False) in registry.seen) and (("GET", "/v2/", True) in registry.seen)
    saved = json.loads(cli.registry_config.read_text())
    assert base64.b64decode(saved["auths"][registry.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert cli.registry_config.is_relative_to(tmp_path / "helm")
    # And the password went through stdin only, never on a command line
    assert runs.argv[0][1:] == ["registry", "login", registry.host, "--username", USER, "--password-stdin",
                                "--plain-http"]
    assert runs.stdin == [PASSWORD] and not any(PASSWORD in a for argv in runs.argv for a in argv)
    # When helm then pulls the chart with the same environment / Then the registry sees authenticated requests
    registry.seen.clear()
    (tmp_path / "pulled").mkdir()
    cli.helm(["pull", f"oci://{registry.host}/{REPOSITORY}", "--version", CHART_VERSION, "--plain-http",
              "--destination", str(tmp_path / "pulled")], "helm pull")
    assert (tmp_path / "pulled" / f"{CHART_NAME}-{CHART_VERSION}.tgz").is_file()
    served = {path.rsplit("/", 2)[-2] for _, path, authorized in registry.seen if authorized}
    assert served == {"manifests", "blobs"}, registry.seen


def test_without_the_login_the_pull_is_refused_as_access_denied(
    helm_binary: Path, registry: Registry, tmp_path: Path  # noqa: F811
) -> None:
    # Given helm that never logged in to the registry
    cli = helm_cli(helm_binary, tmp_path / "helm", Runs())
    (tmp_path / "pulled").mkdir()
    # When it pulls the chart / Then the registry's 401 becomes AccessDenied naming the registry's permissions
    with pytest.raises(AccessDeniedError, match=r"registry refused the pull.*ecr:BatchGetImage"):
        cli.helm(["pull", f"oci://{registry.host}/{REPOSITORY}", "--version", CHART_VERSION, "--plain-http",
                  "--destination", str(tmp_path / "pulled")], "helm pull")


def test_a_wrong_password_is_access_denied(
    helm_binary: Path, registry: Registry, tmp_path: Path  # noqa: F811
) -> None:
    # Given credentials the registry refuses (an expired or foreign token)
    cli = helm_cli(helm_binary, tmp_path / "helm", Runs(), password="expired")
    # When albgate logs in / Then the failure is AccessDenied and says whose permission it is
    with pytest.raises(AccessDeniedError,
                       match=r"helm registry login .*refused the credentials.*GetAuthorizationToken"):
        cli.login(registry.host)
    assert not cli.registry_config.exists()


def test_an_unreachable_registry_is_retryable_and_names_the_endpoints(
    helm_binary: Path, tmp_path: Path  # noqa: F811
) -> None:
    # Given a registry host nobody listens on (a subnet without an ecr.dkr endpoint or NAT route)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    cli = helm_cli(helm_binary, tmp_path / "helm", Runs())
    # When albgate logs in / Then the state machine may retry, and the message names what the VPC needs
    with pytest.raises(AwsUnavailableError, match=r"could not be reached.*ecr\.api and ecr\.dkr"):
        cli.login(host)


@pytest.mark.parametrize("port", ["48403", "40100", "4013"])
def test_a_refused_connection_on_a_port_with_a_status_code_in_it_is_unreachable_not_denied(port: str) -> None:
    # helm 4's own words when nobody listens (a random free port can hold "403")
    stderr = (f'Error: authenticating to "127.0.0.1:{port}": Get "http://127.0.0.1:{port}/v2/": dial tcp '
              f"127.0.0.1:{port}: connect: connection refused")
    assert isinstance(map_login_error(1, stderr, f"127.0.0.1:{port}"), AwsUnavailableError)


@pytest.mark.parametrize("stderr", ["Error: login attempt to https://r/v2/ failed with status: 401 Unauthorized",
                                    "Error: unexpected status code 403"])
def test_a_401_or_403_answer_is_refused_credentials(stderr: str) -> None:
    assert isinstance(map_login_error(1, stderr, "r"), AccessDeniedError)


def test_every_login_flag_is_one_the_binary_documents(
    helm_binary: Path, registry: Registry, tmp_path: Path  # noqa: F811
) -> None:
    # Given albgate's login command line
    runs = Runs()
    helm_cli(helm_binary, tmp_path / "helm", runs).login(registry.host)
    # When `helm registry login --help` is read / Then it lists every flag albgate passes
    documented = set(re.findall(r"--[a-z][a-z0-9-]*", _run(helm_binary, ["registry", "login", "--help"], tmp_path)))
    passed = {a for a in runs.argv[0] if a.startswith("--")}
    assert passed <= documented, sorted(passed - documented)


class Recorded:
    """A process runner that runs nothing: every helm command succeeds and is kept (the order is the point)."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.argv.append(list(argv[1:]))
        return subprocess.CompletedProcess(argv, 0, stdout="", stderr="")


@pytest.mark.parametrize(("repository", "logged_in_to"), [
    pytest.param("oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/charts",
                 "123456789012.dkr.ecr.us-east-1.amazonaws.com", id="ecr-mirror-logs-in-first"),
    pytest.param("oci://harbor.internal.example/charts", None, id="other-oci-registry-anonymous"),
    pytest.param("https://aws.github.io/eks-charts", None, id="eks-charts-no-registry"),
])
def test_the_upgrade_logs_in_first_only_for_an_ecr_mirror(tmp_path: Path, repository: str,
                                                           logged_in_to: str | None) -> None:
    # Given the install's command line for the configured chart repository
    runs = Recorded()
    asked: list[str] = []
    cli = HelmCli("c1", lambda: ("https://k8s", "/ca", "token"), binary="helm", workdir=str(tmp_path), run=runs,
                  registry_credentials=lambda host: (asked.append(host), (USER, PASSWORD))[1])
    settings = ControllerSettings(chart_repository=repository)
    # When albgate upgrades
    cli.upgrade_install(helm_upgrade_args(settings, VALUES_FILE), {"clusterName": "c1"})
    # Then an ECR mirror gets a login to its registry right before the upgrade; anything else only the upgrade
    verbs = [argv[:2] for argv in runs.argv]
    if logged_in_to:
        assert verbs == [["registry", "login"], ["upgrade", "--install"]]
        assert runs.argv[0][2] == logged_in_to and asked == [logged_in_to]
    else:
        assert verbs == [["upgrade", "--install"]] and asked == []


def test_the_oci_mirror_form_installs_the_chart_from_the_registry(
    helm_binary: Path, registry: Registry, apiserver: FakeApiServer, tmp_path: Path
) -> None:
    # Given a new cluster, and helm logged in to the mirror's registry (what the install does first for an ECR
    # registry: test_the_upgrade_logs_in_first_only_for_an_ecr_mirror; this one is on 127.0.0.1)
    apiserver.crds_installed = False
    apiserver.put("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    runs = Runs()
    cli = HelmCli("c1", lambda: (apiserver.url, "", "unused"), binary=str(helm_binary), workdir=str(tmp_path / "helm"),
                  run=runs, timeout_seconds=120, registry_credentials=lambda host: (USER, PASSWORD),
                  registry_flags=("--plain-http",))
    cli.login(registry.host)
    registry.seen.clear()
    # When albgate installs from the mirror, its `oci://` form, with its values
    settings = ControllerSettings(chart_repository=f"oci://{registry.host}/charts")
    values = helm_values("c1", settings)
    cli.upgrade_install(helm_upgrade_args(settings, VALUES_FILE), values)
    # Then the chart came from the registry as the pinned version's manifest and blobs, served only once helm
    # answered the registry's challenge with the stored credentials
    upgrade = runs.argv[-1]
    assert f"oci://{registry.host}/{REPOSITORY}" in upgrade and upgrade[upgrade.index("--version") + 1] == CHART_VERSION
    served = {path.rsplit("/", 2)[-2] for _, path, authorized in registry.seen if authorized}
    assert served == {"manifests", "blobs"}, registry.seen
    # And the release is deployed at that version with exactly albgate's values
    deployed = HelmRelease(RELEASE_NAME, NAMESPACE, CHART_VERSION, "deployed", values, revision=1)
    assert read_release(cli) == deployed
