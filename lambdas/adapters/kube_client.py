"""Kubernetes API clients for EKS clusters, built from ``eks:DescribeCluster`` and an IAM-signed bearer token.

Job: give each cluster one ``kubernetes.client.ApiClient`` per warm Lambda: endpoint and CA from
DescribeCluster (the CA, base64 PEM, written once to a file because the client's TLS layer reads a path), and
a bearer token minted by ``eks_token`` (FACTS.md, "EKS API from a Lambda").

Invariant: a request never leaves with a token that has less than ``refresh_margin_seconds`` left. The
kubernetes client calls ``Configuration.refresh_api_key_hook`` before it reads the token for every request;
the hook here swaps in a new token when the current one is that close to ``expires_at``, so a warm Lambda that
lives for hours keeps working and a cold one pays for one token, not one per call.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import ApiClient, Configuration

from lambdas.adapters.eks_token import EksToken, EksTokenGenerator
from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.errors import InvalidInputError, KubernetesUnavailableError

# Refresh a token when less than this is left (the token is handed out for 14 of the ~15 min the cluster
# accepts it, eks_token.TOKEN_LIFETIME_SECONDS; this is a second margin for a request that is slow to arrive).
REFRESH_MARGIN_SECONDS = 60
# kubernetes >= 36 reads the token from api_key["BearerToken"] (older releases used "authorization").
_API_KEY = "BearerToken"
USER_AGENT = "albgate"
_PEM_HEADER = b"-----BEGIN CERTIFICATE-----"


class _TokenRefresher:
    """``refresh_api_key_hook``: keeps ``configuration.api_key`` holding a token that is not about to expire."""

    def __init__(
        self, cluster_name: str, token_source: Callable[[str], EksToken], now: Callable[[], float], margin: float
    ) -> None:
        self._cluster = cluster_name
        self._source = token_source
        self._now = now
        self._margin = margin
        self._lock = threading.Lock()
        self.token: EksToken | None = None

    def __call__(self, configuration: Configuration) -> None:
        with self._lock:
            if self.token is None or self._now() >= self.token.expires_at - self._margin:
                self.token = self._source(self._cluster)
                configuration.api_key[_API_KEY] = self.token.value


class KubeClientFactory:
    """Builds and caches one ``ApiClient`` per EKS cluster of a Region.

    ``eks_client``, ``token_source`` and ``now`` are seams for tests: a moto EKS client, a token minter that
    does not sign, a clock that jumps. By default the token comes from :class:`EksTokenGenerator` with the
    session's credentials and ``now`` is the wall clock.
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
    ) -> None:
        session = session or boto3.Session(region_name=region)
        self._eks = eks_client or session.client("eks", region_name=region, config=client_config())
        if token_source is None:
            generator = EksTokenGenerator(region, session)
            token_source = lambda cluster: generator.token(cluster, now=now)  # noqa: E731
        self._token_source = token_source
        self._now = now
        self._margin = refresh_margin_seconds
        self._ca_dir = ca_dir
        self._lock = threading.Lock()
        self._clients: dict[str, ApiClient] = {}

    def api_client(self, cluster_name: str) -> ApiClient:
        """The cached client for ``cluster_name``; the first call describes the cluster and mints a token."""
        with self._lock:
            client = self._clients.get(cluster_name)
            if client is None:
                client = ApiClient(configuration=self.configuration(cluster_name))
                client.user_agent = USER_AGENT
                self._clients[cluster_name] = client
            return client

    def configuration(self, cluster_name: str) -> Configuration:
        """A fresh ``Configuration`` for the cluster (endpoint, CA file, self-refreshing bearer token)."""
        endpoint, ca_pem = self._describe(cluster_name)
        # No trailing slash: the client appends paths starting with "/".
        configuration = Configuration(host=endpoint.rstrip("/"))
        configuration.ssl_ca_cert = self._write_ca(cluster_name, ca_pem)
        configuration.verify_ssl = True
        configuration.api_key_prefix[_API_KEY] = "Bearer"
        refresher = _TokenRefresher(cluster_name, self._token_source, self._now, self._margin)
        refresher(configuration)  # mint now: a credentials problem shows at start-up, not on the first call
        configuration.refresh_api_key_hook = refresher
        return configuration

    def _describe(self, cluster_name: str) -> tuple[str, bytes]:
        try:
            cluster = self._eks.describe_cluster(name=cluster_name)["cluster"]
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"eks:DescribeCluster of {cluster_name!r}") from e
        endpoint = cluster.get("endpoint") or ""
        ca_data = (cluster.get("certificateAuthority") or {}).get("data") or ""
        if not endpoint or not ca_data:
            raise KubernetesUnavailableError(
                f"EKS cluster {cluster_name!r} is {cluster.get('status', 'not ACTIVE')} and has no API endpoint or CA "
                "yet; albgate retries, and the cluster must become ACTIVE"
            )
        try:
            pem = base64.b64decode(ca_data, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidInputError(
                f"EKS cluster {cluster_name!r}: certificateAuthority.data is not base64 ({e})"
            ) from e
        if _PEM_HEADER not in pem:
            raise InvalidInputError(
                f"EKS cluster {cluster_name!r}: certificateAuthority.data does not hold a PEM certificate, so the "
                "API server's TLS certificate cannot be verified; check the cluster in the EKS console"
            )
        return endpoint, pem

    def _write_ca(self, cluster_name: str, pem: bytes) -> str:
        # One file per configuration; the name says which cluster it belongs to (Lambda's /tmp is private).
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster_name)
        fd, path = tempfile.mkstemp(prefix=f"albgate-ca-{safe}-", suffix=".crt", dir=self._ca_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return path
