"""Kubernetes client factory: built from eks:DescribeCluster (moto), token refreshed before it expires."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes.client import CoreV1Api
from moto import mock_aws

from lambdas.adapters.eks_token import TOKEN_PREFIX, EksToken, presigned_url_from_token
from lambdas.adapters.kube_client import KubeClientFactory
from lambdas.domain.errors import InvalidInputError, KubernetesUnavailableError, NotFoundError
from tests.adapters import k8s_objects as k8s
from tests.adapters.fake_apiserver import FakeApiServer

REGION = "eu-west-1"
LIFETIME = 14 * 60


@pytest.fixture(scope="module")
def ca_pem() -> bytes:
    """A self-signed CA certificate, like the one EKS returns base64-encoded (moto's is random bytes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class Clock:
    def __init__(self, t: float = 10_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class CountingTokens:
    """A token source that records each mint; token n is "tok-n", valid LIFETIME seconds on the test clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.minted: list[str] = []

    def __call__(self, cluster: str) -> EksToken:
        self.minted.append(cluster)
        now = self.clock()
        return EksToken(f"tok-{len(self.minted)}", now, now + LIFETIME)


class MotoEks:
    """A moto EKS client with clusters "demo" and "other", whose DescribeCluster answers carry a real PEM CA."""

    def __init__(self, ca_pem: bytes) -> None:
        self.client = boto3.client("eks", region_name=REGION)
        self.ca_pem = ca_pem
        self.describe_calls: list[str] = []
        self.override: dict[str, Any] | None = None
        for name in ("demo", "other"):
            self.client.create_cluster(
                name=name,
                roleArn="arn:aws:iam::123456789012:role/eks",
                resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]},
            )
        self.client.meta.events.register("after-call.eks.DescribeCluster", self._edit_answer)

    def _edit_answer(self, parsed: dict[str, Any], **_: Any) -> None:
        if "cluster" not in parsed:
            return  # an error answer
        self.describe_calls.append(parsed["cluster"]["name"])
        # moto's certificateAuthority.data is random bytes; EKS sends base64 of a PEM certificate.
        parsed["cluster"]["certificateAuthority"]["data"] = base64.b64encode(self.ca_pem).decode()
        parsed["cluster"].update(self.override or {})


@pytest.fixture(scope="module")
def moto_eks(ca_pem: bytes) -> Iterator[MotoEks]:
    with mock_aws():
        yield MotoEks(ca_pem)


@pytest.fixture
def eks(moto_eks: MotoEks) -> MotoEks:
    moto_eks.describe_calls.clear()
    moto_eks.override = None
    return moto_eks


def factory(
    eks: MotoEks, clock: Clock, tokens: CountingTokens | None = None, tmp_path: Any = None
) -> KubeClientFactory:
    return KubeClientFactory(
        REGION,
        eks_client=eks.client,
        token_source=tokens or CountingTokens(clock),
        now=clock,
        ca_dir=str(tmp_path) if tmp_path else None,
    )


def test_client_points_at_the_cluster_endpoint_and_trusts_its_ca(eks: MotoEks, ca_pem: bytes, tmp_path: Any) -> None:
    # Given an ACTIVE cluster in EKS
    endpoint = eks.client.describe_cluster(name="demo")["cluster"]["endpoint"]
    # When the factory builds its client
    configuration = factory(eks, Clock(), tmp_path=tmp_path).api_client("demo").configuration
    # Then it talks to the endpoint over verified TLS with the cluster's CA and a bearer token
    assert configuration.host == endpoint.rstrip("/")  # moto's endpoint ends in "/", the client adds "/api/..."
    assert configuration.verify_ssl is True
    with open(configuration.ssl_ca_cert, "rb") as f:
        assert f.read() == ca_pem
    assert configuration.auth_settings()["BearerToken"]["value"] == "Bearer tok-1"


def test_one_client_per_cluster_is_cached_for_a_warm_lambda(eks: MotoEks, tmp_path: Any) -> None:
    # Given one factory (one warm Lambda)
    f = factory(eks, Clock(), tmp_path=tmp_path)
    # When clients are asked for twice per cluster
    first, again, other = f.api_client("demo"), f.api_client("demo"), f.api_client("other")
    # Then each cluster is described once and keeps its client
    assert first is again and first is not other
    assert eks.describe_calls == ["demo", "other"]


@pytest.mark.parametrize(
    "seconds_later,expected_token,mints",
    [
        (0, "tok-1", 1),
        (LIFETIME - 61, "tok-1", 1),  # 61 s left: still used
        (LIFETIME - 60, "tok-2", 2),  # 60 s left: refreshed before the request goes out
        (LIFETIME + 300, "tok-2", 2),  # long idle warm Lambda: refreshed once, not per call
    ],
    ids=["fresh", "61s-left-kept", "60s-left-refreshed", "expired-refreshed"],
)
def test_token_is_refreshed_when_less_than_a_minute_is_left(
    eks: MotoEks, tmp_path: Any, seconds_later: float, expected_token: str, mints: int
) -> None:
    # Given a client whose token was minted at t0
    clock = Clock()
    tokens = CountingTokens(clock)
    configuration = factory(eks, clock, tokens, tmp_path).api_client("demo").configuration
    # When a request is prepared some time later (the client reads the token through the refresh hook)
    clock.t += seconds_later
    configuration.auth_settings()
    header = configuration.auth_settings()["BearerToken"]["value"]
    # Then the token is the one expected, minted no more often than needed
    assert header == f"Bearer {expected_token}"
    assert len(tokens.minted) == mints


def test_refreshed_token_is_what_the_api_server_receives(eks: MotoEks, tmp_path: Any) -> None:
    # Given a client from the factory, pointed at a local API server instead of the (unreachable) EKS endpoint
    clock = Clock()
    client = factory(eks, clock, tmp_path=tmp_path).api_client("demo")
    server = FakeApiServer().start()
    try:
        server.put("namespaces", k8s.namespace("readiness"))
        client.configuration.host = server.url
        core = CoreV1Api(client)
        # When it makes a request, then another after the token aged past its refresh point
        core.read_namespace("readiness")
        clock.t += LIFETIME
        core.read_namespace("readiness")
    finally:
        server.stop()
    # Then the server saw the first token, then a new one
    assert [r.authorization for r in server.requests] == ["Bearer tok-1", "Bearer tok-2"]


def test_default_token_source_signs_an_eks_token_for_the_cluster(eks: MotoEks, tmp_path: Any) -> None:
    # Given the factory with its default token source (the session's credentials)
    session = boto3.Session(region_name=REGION)
    f = KubeClientFactory(REGION, session=session, eks_client=eks.client, ca_dir=str(tmp_path))
    # When the client for "demo" is built
    header = f.api_client("demo").configuration.auth_settings()["BearerToken"]["value"]
    # Then its bearer token is an EKS token presigned for that cluster
    assert header.startswith(f"Bearer {TOKEN_PREFIX}")
    url = presigned_url_from_token(header.removeprefix("Bearer "))
    assert "x-k8s-aws-id" in url and "X-Amz-Expires=60" in url


@pytest.mark.parametrize(
    "override,error,match",
    [
        ({"certificateAuthority": {"data": base64.b64encode(b"\x8f\x01random").decode()}}, InvalidInputError, "PEM"),
        ({"certificateAuthority": {"data": "not base64!"}}, InvalidInputError, "base64"),
        ({"endpoint": "", "status": "CREATING"}, KubernetesUnavailableError, "CREATING"),
    ],
    ids=["ca-not-pem", "ca-not-base64", "cluster-still-creating"],
)
def test_unusable_cluster_description_is_a_domain_error(
    eks: MotoEks, tmp_path: Any, override: dict[str, Any], error: type[Exception], match: str
) -> None:
    # Given DescribeCluster answering with something the client cannot use
    eks.override = override
    # When the factory builds a client / Then it raises the domain error that says why
    with pytest.raises(error, match=match):
        factory(eks, Clock(), tmp_path=tmp_path).api_client("demo")


def test_unknown_cluster_is_not_found(eks: MotoEks, tmp_path: Any) -> None:
    # Given no cluster named "nope" / When a client is asked for / Then NotFoundError, caused by the AWS error
    with pytest.raises(NotFoundError, match="nope") as caught:
        factory(eks, Clock(), tmp_path=tmp_path).api_client("nope")
    assert type(caught.value.__cause__).__name__ == "ResourceNotFoundException"
