"""Kubernetes API clients for EKS clusters: the kubernetes client's ``ApiClient``, and a transport over it.

Job:
- ``KubeClientFactory``: one ``kubernetes.client.ApiClient`` per cluster and warm Lambda, built from the same
  endpoint, CA and self-refreshing token as the light transport (``kube_http.EksClusters``, shared when the
  caller passes one, so a Lambda that reads over ``kube_http`` and writes here describes the cluster once).
  The CA, base64 PEM in DescribeCluster, is written once to a file because the client's TLS layer reads a
  path. ``configuration`` builds a fresh one (described again, a token of its own) for helm's kubeconfig;
- ``ApiClientTransport``: ``kube_http.KubeTransport`` over an ``ApiClient`` (its REST layer, auth hook and
  ``ApiException``), so ``kubernetes.KubernetesAdapter`` runs the same code over either transport.

This is the module that imports the kubernetes client; the handlers that only read never import it
(``wiring``).

Invariant: a request never leaves with a token that has less than ``refresh_margin_seconds`` left. The
kubernetes client calls ``Configuration.refresh_api_key_hook`` before it reads the token for every request;
the hook asks the cluster's ``RefreshingToken``, which mints a new token only when the current one is that
close to ``expires_at``, so a warm Lambda that lives for hours keeps working and a cold one pays for one token,
not one per call.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from kubernetes.client import ApiClient, Configuration

from lambdas.adapters.eks_token import EksToken
from lambdas.adapters.kube_http import (
    DEFAULT_TIMEOUT,
    REFRESH_MARGIN_SECONDS,
    USER_AGENT,
    ClusterEndpoint,
    EksClusters,
    KubeTransport,
    RefreshingToken,
    Timeout,
    first_line,
)

__all__ = ["REFRESH_MARGIN_SECONDS", "USER_AGENT", "ApiClientTransport", "KubeClientFactory"]

# kubernetes >= 36 reads the token from api_key["BearerToken"] (older releases used "authorization").
_API_KEY = "BearerToken"


class _TokenHook:
    """``refresh_api_key_hook``: keeps ``configuration.api_key`` holding a token that is not about to expire."""

    def __init__(self, token: RefreshingToken) -> None:
        self._token = token

    def __call__(self, configuration: Configuration) -> None:
        configuration.api_key[_API_KEY] = self._token()


class KubeClientFactory:
    """Builds and caches one ``ApiClient`` per EKS cluster of a Region.

    ``eks_client``, ``token_source`` and ``now`` are seams for tests (see ``kube_http.EksClusters``), used
    when no ``clusters`` is given; with ``clusters``, endpoints and tokens are the ones it already holds.
    """

    def __init__(
        self,
        region: str,
        *,
        session: boto3.Session | None = None,
        eks_client: Any | None = None,
        token_source: Callable[[str], EksToken] | None = None,
        now: Callable[[], float] = time.time,
        refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
        ca_dir: str | None = None,
        clusters: EksClusters | None = None,
    ) -> None:
        self.clusters = clusters or EksClusters(
            region,
            session=session,
            eks_client=eks_client,
            token_source=token_source,
            now=now,
            refresh_margin_seconds=refresh_margin_seconds,
        )
        self._ca_dir = ca_dir
        self._lock = threading.Lock()
        self._clients: dict[str, ApiClient] = {}

    def api_client(self, cluster_name: str) -> ApiClient:
        """The cached client for ``cluster_name``; the first call describes the cluster and mints a token."""
        with self._lock:
            client = self._clients.get(cluster_name)
            if client is None:
                configuration = self._configure(
                    self.clusters.endpoint(cluster_name), self.clusters.token(cluster_name)
                )
                client = ApiClient(configuration=configuration)
                client.user_agent = USER_AGENT
                self._clients[cluster_name] = client
            return client

    def configuration(self, cluster_name: str) -> Configuration:
        """A fresh ``Configuration`` for the cluster: described again, with a newly minted token of its own."""
        return self._configure(self.clusters.describe(cluster_name), self.clusters.new_token(cluster_name))

    def _configure(self, endpoint: ClusterEndpoint, token: RefreshingToken) -> Configuration:
        # No trailing slash (ClusterEndpoint has none): the client appends paths starting with "/".
        configuration = Configuration(host=endpoint.host)
        configuration.ssl_ca_cert = self._write_ca(endpoint.name, endpoint.ca_pem)
        configuration.verify_ssl = True
        configuration.api_key_prefix[_API_KEY] = "Bearer"
        hook = _TokenHook(token)
        hook(configuration)  # mint now: a credentials problem shows at start-up, not on the first call
        configuration.refresh_api_key_hook = hook
        return configuration

    def _write_ca(self, cluster_name: str, pem: bytes) -> str:
        # One file per configuration; the name says which cluster it belongs to (Lambda's /tmp is private).
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster_name)
        fd, path = tempfile.mkstemp(prefix=f"albgate-ca-{safe}-", suffix=".crt", dir=self._ca_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return path


class ApiClientTransport(KubeTransport):
    """``KubeTransport`` over a kubernetes ``ApiClient``: its ``call_api`` with the path already built.

    Errors stay the client's: ``ApiException`` for an answer outside 2xx (and for a TLS failure, which the
    client reports as status 0), urllib3's errors for a connection that failed.
    """

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        response = self.api_client.call_api(
            path,
            method,
            query_params=list(query or []),
            header_params=headers,
            body=body,
            auth_settings=[_API_KEY],
            _preload_content=False,
            _request_timeout=timeout,
        )
        return json.loads(response.data or b"null")

    def first_event(self, path: str, *, query: Sequence[tuple[str, str]], timeout: Timeout) -> Any:
        response = self.api_client.call_api(
            path,
            "GET",
            query_params=list(query),
            header_params={"Accept": "application/json"},
            auth_settings=[_API_KEY],
            _preload_content=False,
            _request_timeout=timeout,
        )
        try:
            return first_line(response.stream(4096))
        finally:
            response.close()  # mid-stream: the connection cannot serve another request
            response.release_conn()
