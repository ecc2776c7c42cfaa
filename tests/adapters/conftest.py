"""Fixtures for the adapter tests: fake AWS credentials (never real ones), the fake API server, a client on it, a
moto DynamoDB holding the budget table, and the helm binary albgate ships.

``kube`` is the Kubernetes adapter on each of its two transports in turn (``kube_http``'s urllib3 one and the
kubernetes client's), so every adapter test shows that both send the same requests and map the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes.client import ApiClient, Configuration
from moto import mock_aws

from lambdas.adapters.dynamodb_budget import KEY
from lambdas.adapters.kube_http import HttpTransport
from lambdas.adapters.kubernetes import KubernetesAdapter
from stacks.constructs.helm_binary import HelmPackageError, helm_from_package
from tests.adapters.fake_apiserver import FakeApiServer

FIXED_NOW = 1_767_322_800.0  # 2026-01-02T03:00:00Z
BUDGET_REGION = "eu-west-1"
BUDGET_TABLE = "albgate-describe-budget"


@pytest.fixture(scope="session")
def helm_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``helm/helm`` as the install function's layer gets it, executable, in a temporary folder."""
    try:
        data = helm_from_package()
    except HelmPackageError as exc:
        pytest.fail(str(exc))  # a pinned requirement: missing is a failure, never a skip
    binary = tmp_path_factory.mktemp("helm-binary") / "helm"
    binary.write_bytes(data)
    binary.chmod(0o755)
    return binary


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """A moto DynamoDB with the budget table as the stack creates it: partition key ``budget_key`` (string)."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=BUDGET_REGION)
        client.create_table(
            TableName=BUDGET_TABLE,
            KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


@pytest.fixture(autouse=True)
def fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Credentials that cannot reach AWS, and no instance metadata lookups: moto or a Stubber answers instead.
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()
    assert not server.crashes, f"the fake API server crashed: {server.crashes}"


def api_client_for(url: str, token: str = "test-token") -> ApiClient:
    configuration = Configuration(host=url)
    configuration.api_key["BearerToken"] = token
    configuration.api_key_prefix["BearerToken"] = "Bearer"
    return ApiClient(configuration)


def http_transport_for(url: str, token: str = "test-token") -> HttpTransport:
    return HttpTransport(url, token=lambda: token)


TRANSPORTS = {"http": http_transport_for, "kubernetes-client": api_client_for}


@pytest.fixture(params=sorted(TRANSPORTS))
def kube(request: pytest.FixtureRequest, apiserver: FakeApiServer) -> KubernetesAdapter:
    return KubernetesAdapter(TRANSPORTS[request.param](apiserver.url), now=lambda: FIXED_NOW)
