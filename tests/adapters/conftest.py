"""Fixtures for the adapter tests: fake AWS credentials (never real ones), the fake API server, a client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient, Configuration

from lambdas.adapters.kubernetes import KubernetesAdapter
from tests.adapters.fake_apiserver import FakeApiServer

FIXED_NOW = 1_767_322_800.0  # 2026-01-02T03:00:00Z


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


@pytest.fixture
def kube(apiserver: FakeApiServer) -> KubernetesAdapter:
    return KubernetesAdapter(api_client_for(apiserver.url), now=lambda: FIXED_NOW)
