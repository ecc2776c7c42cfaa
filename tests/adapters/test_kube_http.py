"""The light Kubernetes transport (kube_http): requests, answers, TLS, tokens, and a read path without the client.

The adapter's own reads, writes and error mapping run on this transport too (conftest's ``kube`` fixture takes
each transport in turn); here: what is specific to the transport, that both transports map every answer to
the same domain error, and that the read-only handlers never import the kubernetes package.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto import mock_aws

from lambdas.adapters.kube_client import KubeClientFactory
from lambdas.adapters.kube_http import ApiStatusError, EksClusters, HttpTransport, RefreshingToken
from lambdas.adapters.kubernetes import KubernetesAdapter
from lambdas.domain.errors import KubernetesUnavailableError, RetryableError
from lambdas.domain.ports import ALBGATE_GATE
from tests.adapters import k8s_objects as k8s
from tests.adapters.conftest import api_client_for, http_transport_for
from tests.adapters.fake_apiserver import FakeApiServer
from tests.adapters.test_kube_client import Clock, CountingTokens, MotoEks

ROOT = Path(__file__).resolve().parents[2]
NS, NAME = "readiness", "nginx-app"
LIFETIME = 14 * 60
WEBHOOK_DOWN = (
    'Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": failed to call webhook: Post '
    '"https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-v1-pod?timeout=10s": no endpoints'
)


# ---------------------------------------------------------------------------------------------------------
# Requests and answers
# ---------------------------------------------------------------------------------------------------------
def test_a_read_sends_path_query_accept_and_token(apiserver: FakeApiServer) -> None:
    # Given a pod in the fake API server
    apiserver.put("pods", k8s.pod("web-1"))
    # When the transport lists pods with a label selector
    answer = http_transport_for(apiserver.url, "tok").request(
        "GET", f"/api/v1/namespaces/{NS}/pods", query=[("labelSelector", "app=nginx,tier in (web,edge)")]
    )
    # Then the server saw the path, the selector decoded intact and the bearer token; the answer is its JSON
    (seen,) = apiserver.requests
    assert (seen.method, seen.path, seen.authorization) == ("GET", f"/api/v1/namespaces/{NS}/pods", "Bearer tok")
    assert seen.query["labelSelector"] == ["app=nginx,tier in (web,edge)"]
    assert answer["kind"] == "PodList"


def test_a_patch_sends_json_with_its_content_type(apiserver: FakeApiServer) -> None:
    # Given a Deployment
    stored = apiserver.put("deployments", k8s.deployment(), "apps")
    body = {"metadata": {"annotations": {"a": "b"}, "resourceVersion": stored["metadata"]["resourceVersion"]}}
    # When the transport sends a strategic merge patch
    answer = http_transport_for(apiserver.url).request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}",
        body=body,
        content_type="application/strategic-merge-patch+json",
    )
    # Then the server received that body under that content type, and the patched object comes back
    (seen,) = apiserver.requests
    assert (seen.content_type, seen.body) == ("application/strategic-merge-patch+json", body)
    assert answer["metadata"]["annotations"]["a"] == "b"


def test_an_error_answer_raises_api_status_error_with_the_status_object(apiserver: FakeApiServer) -> None:
    # Given an API server that answers the next read 503
    apiserver.fail_next("GET", "/namespaces/readiness$", 503, "etcd is down")
    # When the transport reads / Then ApiStatusError carries the status, the reason phrase and the Status body
    with pytest.raises(ApiStatusError) as caught:
        http_transport_for(apiserver.url).request("GET", f"/api/v1/namespaces/{NS}")
    assert caught.value.status == 503 and caught.value.reason == "Service Unavailable"
    assert json.loads(caught.value.body)["message"] == "etcd is down"


@pytest.mark.parametrize(
    "code,message",
    [
        (400, "json: cannot unmarshal string"),
        (401, "Unauthorized"),
        (403, 'deployments.apps "nginx-app" is forbidden: User "x" cannot get resource "deployments"'),
        (404, 'deployments.apps "nginx-app" not found'),
        (409, "the object has been modified"),
        (418, "I'm a teapot"),
        (422, 'Deployment.apps "nginx-app" is invalid'),
        (429, "storage is (re)initializing"),
        (500, "etcdserver: request timed out"),
        (500, WEBHOOK_DOWN),
        (503, "the server is currently unable to handle the request"),
    ],
    ids=["400", "401", "403", "404", "409", "418", "422", "429", "500", "500-lbc-webhook", "503"],
)
def test_both_transports_map_an_answer_to_the_same_domain_error(
    apiserver: FakeApiServer, code: int, message: str
) -> None:
    # Given a Deployment and an API server that answers the next two reads of it with this Status
    apiserver.put("deployments", k8s.deployment(), "apps")
    apiserver.fail_next("GET", "/deployments/nginx-app$", code, message, times=2)
    # When the adapter reads it over the light transport, then over the kubernetes client
    raised = []
    for api in (http_transport_for(apiserver.url), api_client_for(apiserver.url)):
        with pytest.raises(Exception) as caught:
            KubernetesAdapter(api).get_deployment(NS, NAME)
        raised.append(caught.value)
    # Then both raise the same domain error with the same message
    light, client = raised
    assert (type(light), str(light)) == (type(client), str(client))
    assert str(light).startswith(f"get Deployment {NS}/{NAME}: the Kubernetes API answered {code}: {message}")


class _Static(BaseHTTPRequestHandler):
    """Answers every GET with the server's fixed status, content type and body; records Authorization."""

    protocol_version = "HTTP/1.1"
    answer: tuple[int, str, bytes] = (200, "application/json", b"{}")
    seen: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        status, content_type, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StaticServer:
    """A one-answer HTTP(S) server on 127.0.0.1 (HTTPS when given a certificate and key)."""

    def __init__(self, answer: tuple[int, str, bytes], cert_and_key: tuple[Path, Path] | None = None) -> None:
        self.seen: list[str] = []
        handler = type("Handler", (_Static,), {"answer": answer, "seen": self.seen})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        scheme = "http"
        if cert_and_key:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert_and_key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_an_answer_that_is_not_json_is_retryable() -> None:
    # Given something in front of the API server that answers with an HTML page
    server = StaticServer((200, "text/html", b"<html>502 Bad Gateway</html>"))
    try:
        # When the adapter reads over the light transport
        with pytest.raises(KubernetesUnavailableError, match="something not JSON") as caught:
            KubernetesAdapter(http_transport_for(server.url)).get_namespace(NS)
    finally:
        server.stop()
    # Then the error is retryable, caused by the decoding error
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


# ---------------------------------------------------------------------------------------------------------
# TLS: verified against the cluster's CA
# ---------------------------------------------------------------------------------------------------------
def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], names: list[x509.GeneralName], tmp: Path
) -> tuple[Path, Path]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.crt", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


LOCALHOST = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
OTHER_HOST = [x509.DNSName("0123456789abcdef.gr7.eu-west-1.eks.amazonaws.com")]


@pytest.mark.parametrize(
    "trusted,names,reaches",
    [
        ("cluster-ca", LOCALHOST, True),
        ("another-ca", LOCALHOST, False),
        ("cluster-ca", OTHER_HOST, False),
    ],
    ids=["cluster-ca-trusted", "signed-by-another-ca", "certificate-for-another-host"],
)
def test_tls_is_verified_against_the_cluster_ca(tmp_path: Path, trusted: str, names: list[Any], reaches: bool) -> None:
    # Given an HTTPS API server whose certificate the cluster CA signed (for 127.0.0.1, or for another host)
    cluster_ca, another_ca = _ca("kubernetes"), _ca("someone-else")
    server = StaticServer((200, "application/json", b'{"metadata": {"name": "readiness"}}'),
                          _server_cert(cluster_ca, names, tmp_path))
    ca = cluster_ca if trusted == "cluster-ca" else another_ca
    transport = HttpTransport(server.url, ca_pem=ca[1].public_bytes(serialization.Encoding.PEM), token=lambda: "t")
    try:
        # When the adapter reads through a transport that trusts the given CA
        if reaches:
            # Then the request goes through when the chain and the host name check out
            assert KubernetesAdapter(transport).get_namespace(NS).name == "readiness"
            assert server.seen == ["Bearer t"]
        else:
            # Then otherwise nothing is sent: the TLS failure is a retryable KubernetesUnavailableError
            with pytest.raises(KubernetesUnavailableError, match="could not reach") as caught:
                KubernetesAdapter(transport, request_timeout=2).get_namespace(NS)
            assert isinstance(caught.value, RetryableError) and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
            assert server.seen == []
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------------
# Tokens and cluster descriptions
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seconds_later,expected,mints",
    [
        (0, "tok-1", 1),
        (LIFETIME - 61, "tok-1", 1),
        (LIFETIME - 60, "tok-2", 2),
        (LIFETIME + 300, "tok-2", 2),
    ],
    ids=["fresh", "61s-left-kept", "60s-left-refreshed", "expired-refreshed"],
)
def test_the_token_sent_is_refreshed_when_less_than_a_minute_is_left(
    apiserver: FakeApiServer, seconds_later: float, expected: str, mints: int
) -> None:
    # Given a transport whose token was minted at t0 by the first request
    apiserver.put("namespaces", k8s.namespace(NS))
    clock = Clock()
    tokens = CountingTokens(clock)
    transport = HttpTransport(apiserver.url, token=RefreshingToken("demo", tokens, clock, 60))
    transport.request("GET", f"/api/v1/namespaces/{NS}")
    # When a second request goes out some time later
    clock.t += seconds_later
    transport.request("GET", f"/api/v1/namespaces/{NS}")
    # Then it carries the token expected, minted no more often than needed
    assert apiserver.requests[-1].authorization == f"Bearer {expected}"
    assert len(tokens.minted) == mints


@pytest.fixture
def moto_eks() -> Iterator[MotoEks]:
    with mock_aws():
        yield MotoEks(_ca("kubernetes")[1].public_bytes(serialization.Encoding.PEM))


def test_one_description_serves_the_light_transport_and_the_client(moto_eks: MotoEks, tmp_path: Path) -> None:
    # Given the clusters of a Region, and a kubernetes client factory sharing them (a Lambda that reads and writes)
    endpoint = moto_eks.client.describe_cluster(name="demo")["cluster"]["endpoint"].rstrip("/")
    moto_eks.describe_calls.clear()
    clock = Clock()
    tokens = CountingTokens(clock)
    clusters = EksClusters("eu-west-1", eks_client=moto_eks.client, token_source=tokens, now=clock)
    factory = KubeClientFactory("eu-west-1", clusters=clusters, ca_dir=str(tmp_path))
    # When both are built for "demo", twice
    transport = clusters.http_transport("demo")
    assert clusters.http_transport("demo") is transport
    client = factory.api_client("demo")
    # Then the cluster was described once, both point at its endpoint and trust its CA, and share one token
    assert moto_eks.describe_calls == ["demo"]
    assert transport.host == client.configuration.host == endpoint
    with open(client.configuration.ssl_ca_cert, "rb") as f:
        assert f.read() == clusters.endpoint("demo").ca_pem == moto_eks.ca_pem
    assert client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer tok-1"
    assert tokens.minted == ["demo"]


# ---------------------------------------------------------------------------------------------------------
# The read-only handlers never import the kubernetes package
# ---------------------------------------------------------------------------------------------------------
OLD, NEW = "nginx:1.27", "nginx:1.28"
_CHILD = r"""
import json, os, sys

from moto import mock_aws

with mock_aws():
    import boto3

    ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    tg = elbv2.create_target_group(Name="k8s-readines-nginxsvc", Protocol="HTTP", Port=80, VpcId=vpc,
                                   TargetType="ip", HealthCheckIntervalSeconds=5)["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip, "Port": 80} for ip in sys.argv[3].split(",")])
    state = json.loads(os.environ["ALBGATE_TEST_STATE"])
    state["target_groups"][0]["arn"] = tg

    # The cluster's description: its endpoint is the fake API server (plain HTTP on 127.0.0.1).
    from lambdas.adapters.kube_http import ClusterEndpoint, EksClusters
    EksClusters.describe = lambda self, name: ClusterEndpoint(name, sys.argv[2], b"")

    import importlib
    handler = importlib.import_module("lambdas.handlers." + sys.argv[1]).handler
    out = handler(state, None)

loaded = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes."))
print("RESULT " + json.dumps({"kubernetes": loaded, "gate": out["gate"], "drain": out["drain"]}))
"""


def _rollout_world(apiserver: FakeApiServer) -> tuple[dict[str, Any], list[str]]:
    """Step 1 of 3 -> 1 new pod: the new ReplicaSet has one pod behind albgate's gate, two old pods serve."""
    gated = k8s.template([k8s.container(image=NEW)], gates=[ALBGATE_GATE])
    dep = k8s.deployment(tpl=gated, revision=2)
    apiserver.put("deployments", dep, "apps")
    old_rs = k8s.replica_set(dep, 1, "old111", tpl=k8s.template([k8s.container(image=OLD)]), replicas=2)
    new_rs = k8s.replica_set(dep, 2, "new222", tpl=gated, replicas=1)
    for rs in (old_rs, new_rs):
        apiserver.put("replicasets", rs, "apps")
    ready = [{"type": t, "status": "True"} for t in ("PodScheduled", "ContainersReady", "Ready")]
    for name, ip in (("old-a", "10.0.1.10"), ("old-b", "10.0.1.11")):
        labels = {"app": "nginx", "pod-template-hash": "old111"}
        apiserver.put("pods", k8s.pod(name, ip=ip, labels=labels, owner_rs=old_rs["metadata"]["name"], conditions=ready))
    new_labels = {"app": "nginx", "pod-template-hash": "new222"}
    apiserver.put("pods", k8s.pod("new-a", ip="10.0.1.30", labels=new_labels, gates=[ALBGATE_GATE],
                                  owner_rs=new_rs["metadata"]["name"]))
    now = time.time()
    state = {
        "request": {"cluster": "demo", "namespace": NS, "deployment": NAME, "container": "nginx", "image": NEW},
        "execution_name": "light-path",
        "started_at": now,
        "replicas": 3,
        "plan": [1, 3],
        "target_image": NEW,
        "previous_image": OLD,
        "previous_revision": 1,
        "original_max_surge": "25%",
        "original_max_unavailable": "25%",
        "target_groups": [{"arn": "set-by-the-child", "service": "nginx-svc", "health_check_interval_seconds": 5,
                           "healthy_threshold": 2, "deregistration_delay_seconds": 30}],
        "next_step": 1,
        "step": 0,
        "step_deadline": now + 900,
        "drain_deadline": now + 150,
        "watched_ips": ["10.0.1.10", "10.0.1.11"],
        "steps": [{"step": 1, "mode": "rollout", "target": 1, "started_at": now}],
    }
    return state, ["10.0.1.10", "10.0.1.11", "10.0.1.30"]


@pytest.mark.parametrize("module", ["check_target_health", "verify_drain"])
def test_the_gate_and_the_drain_check_never_import_the_kubernetes_package(
    apiserver: FakeApiServer, module: str, tmp_path: Path
) -> None:
    # Given a rollout in step 1 on the fake API server, an ALB target group (moto) and a fresh interpreter
    state, ips = _rollout_world(apiserver)
    # and the allow-list every deployed function carries (without one the real ports are never built)
    allow_list = tmp_path / "allow-list.json"
    allow_list.write_text(json.dumps({"clusters": ["demo"], "applications": [
        {"cluster": "demo", "namespace": NS, "deployment": NAME, "service": "nginx-svc", "ingress": "nginx"}]}))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "ALBGATE_TEST_STATE": json.dumps(state),
        "ALBGATE_ALLOW_LIST": str(allow_list),
        "PYTHONPATH": str(ROOT),
    }
    # When the handler module is imported and invoked once, with the real ports (wiring)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, module, apiserver.url, ",".join(ips)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    # Then it read the Deployment, its ReplicaSets and its pods over HTTP with an EKS token ...
    paths = {r.path for r in apiserver.requests}
    assert paths == {
        f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}",
        f"/apis/apps/v1/namespaces/{NS}/replicasets",
        f"/api/v1/namespaces/{NS}/pods",
    }
    assert all(r.method == "GET" and r.authorization.startswith("Bearer k8s-aws-v1.") for r in apiserver.requests)
    # ... decided on the targets (moto reports a registered target healthy at once) ...
    if module == "check_target_health":
        assert result["gate"]["status"] == "PASSED" and result["gate"]["release"] == ["new-a"]
    else:
        assert result["drain"]["status"] in ("WAITING", "PASSED")
    # ... and the kubernetes package was never imported
    assert result["kubernetes"] == []
