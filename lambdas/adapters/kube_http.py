"""The Kubernetes API of an EKS cluster over plain HTTPS, without the kubernetes client package.

Job:
- ``EksClusters``: what reaching a cluster takes, once per cluster and warm Lambda: the endpoint and CA from
  ``eks:DescribeCluster``, and a bearer token minted by ``eks_token`` (``RefreshingToken``) (docs/facts.md,
  "EKS bearer token"), described once per cluster (``kube_client.KubeClientFactory`` can share them too);
- ``HttpTransport``: one request, JSON in and JSON out, over urllib3 (already loaded by botocore, so it costs
  no import), TLS verified against the cluster's CA, the token in ``Authorization``. An answer outside 2xx
  raises ``ApiStatusError``; a connection failure leaves as urllib3's own error.

Why a transport and not a second, read-only adapter: ``kubernetes.KubernetesAdapter`` owns every decision
about the wire format (paths, label selectors, patch bodies, preconditions, the mapping of answers to domain
errors). It sends its requests through a ``KubeTransport``: this module's, or ``kube_client.ApiClientTransport``
over the kubernetes client. Both flavours are therefore the same adapter, and its tests run on both; a lean
reader would have been a second copy of the same reads, free to drift from the first. Why a transport at all:
the rollout handlers (``wiring`` sends all their requests, reads and writes, through this module) would
otherwise import the kubernetes client on their first call: ~100 ms with bytecode, ~780 ms without
(docs/benchmarks.md, "Start-up").

Invariant: importing or using this module never imports the ``kubernetes`` package. A request never leaves
with a token that has less than ``REFRESH_MARGIN_SECONDS`` left, and never over TLS that is not verified (the
cluster's CA when one is given, else the system's; there is no switch to turn verification off).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import boto3
import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.eks_token import EksToken, EksTokenGenerator
from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.errors import InvalidInputError, KubernetesUnavailableError

# Refresh a token when less than this is left (the token is handed out for 14 of the ~15 min the cluster
# accepts it, eks_token.TOKEN_LIFETIME_SECONDS; this is a second margin for a request that is slow to arrive).
REFRESH_MARGIN_SECONDS = 60
USER_AGENT = "albgate"
# (connect, read) seconds, or one number for the whole request; the adapter passes its own on every call.
Timeout = float | tuple[float, float]
DEFAULT_TIMEOUT: Timeout = (5, 20)
# Connection attempts per request, first excluded: a pooled keep-alive connection the server closed while
# the Lambda was frozen fails once and is re-opened. urllib3 re-sends after a read error only for idempotent
# methods (not PATCH/POST), as the kubernetes client's default does; redirects are not followed (the API
# server sends none, and the bearer token must not travel elsewhere).
RETRIES = urllib3.Retry(total=3, redirect=False, raise_on_redirect=False)
_PEM_HEADER = b"-----BEGIN CERTIFICATE-----"


class ApiStatusError(Exception):
    """The API server answered outside 2xx: its status code, reason phrase and body (a ``Status`` object).

    It has the attributes of the kubernetes client's ``ApiException`` that ``kubernetes.map_api_error`` reads
    (``status``, ``reason``, ``body``), so one mapping serves both transports.
    """

    def __init__(self, status: int, reason: str, body: bytes | str | None) -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class KubeTransport(ABC):
    """Sends one request to the Kubernetes API and returns the answer's JSON, parsed.

    ``path`` starts with ``/`` and is already quoted; ``query`` is a list of (name, value) pairs. Raises
    ``ApiStatusError`` (or the kubernetes client's ``ApiException``) for an answer outside 2xx, urllib3's
    errors or ``OSError`` when the server could not be reached, ``json.JSONDecodeError`` for an answer that
    is not JSON. ``kubernetes._calling`` turns each of these into a domain error.
    """

    @abstractmethod
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
    ) -> Any: ...


    @abstractmethod
    def first_event(self, path: str, *, query: Sequence[tuple[str, str]], timeout: Timeout) -> Any:
        """GET a watch (``query`` carries ``watch=true``) and return its first event, parsed, as soon as the server
        sends it; None when the server ended the stream without one (its ``timeoutSeconds`` passed). The
        connection is closed after it, never reused mid-stream. Errors as for ``request``."""


def first_line(chunks: Iterable[bytes]) -> Any:
    """The first newline-ended JSON document of a watch's byte stream (one event per line), or None when the
    stream ended without any; a last line without its newline counts."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        line, newline, _ = pending.partition(b"\n")
        if newline:
            return json.loads(line)
    return json.loads(pending) if pending.strip() else None


def urllib3_timeout(timeout: Timeout) -> urllib3.Timeout:
    """A pair is (connect, read) seconds, a number bounds the whole request (the kubernetes client's reading)."""
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(total=timeout)


class HttpTransport(KubeTransport):
    """``KubeTransport`` over a urllib3 pool: verified TLS, a bearer token read from ``token`` per request.

    ``host`` is the API server's URL (``https://...``; ``http://`` only for a local test server); ``ca_pem``
    the cluster's CA certificate(s), PEM. ``token`` returns the token to send (a ``RefreshingToken``).
    """

    def __init__(
        self,
        host: str,
        *,
        ca_pem: bytes | None = None,
        token: Callable[[], str] | None = None,
        max_connections: int = 4,
    ) -> None:
        self.host = host.rstrip("/")  # paths start with "/"
        self._token = token
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=max_connections,
            cert_reqs="CERT_REQUIRED",
            ca_cert_data=ca_pem.decode("ascii") if ca_pem else None,
            retries=RETRIES,
        )

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
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type or "application/json"
        url = f"{self.host}{path}?{urlencode(list(query))}" if query else f"{self.host}{path}"
        response = self._pool.request(
            method, url, body=data, headers=headers, timeout=urllib3_timeout(timeout), redirect=False
        )
        if not 200 <= response.status <= 299:
            raise ApiStatusError(response.status, response.reason or "", response.data)
        return json.loads(response.data or b"null")

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token()}"
        return headers

    def first_event(self, path: str, *, query: Sequence[tuple[str, str]], timeout: Timeout) -> Any:
        response = self._pool.request("GET", f"{self.host}{path}?{urlencode(list(query))}", headers=self._headers(),
                                      timeout=urllib3_timeout(timeout), redirect=False, preload_content=False)
        try:
            if not 200 <= response.status <= 299:
                raise ApiStatusError(response.status, response.reason or "", response.read())
            return first_line(response.stream(4096))
        finally:
            response.close()  # mid-stream: the connection cannot serve another request
            response.release_conn()


class RefreshingToken:
    """A cluster's bearer token: calling it returns one with at least ``margin`` seconds of life left.

    The first call mints; later calls mint again only when ``now()`` has come within ``margin`` of the
    token's ``expires_at``, so a warm Lambda that lives for hours keeps working and pays for one token per
    ~13 minutes, not one per request.
    """

    def __init__(
        self, cluster_name: str, source: Callable[[str], EksToken], now: Callable[[], float], margin: float
    ) -> None:
        self._cluster = cluster_name
        self._source = source
        self._now = now
        self._margin = margin
        self._lock = threading.Lock()
        self.token: EksToken | None = None

    def __call__(self) -> str:
        with self._lock:
            if self.token is None or self._now() >= self.token.expires_at - self._margin:
                self.token = self._source(self._cluster)
            return self.token.value


@dataclass(frozen=True)
class ClusterEndpoint:
    """Where a cluster's API server is (no trailing slash) and the CA that signed its certificate (PEM)."""

    name: str
    host: str
    ca_pem: bytes


class EksClusters:
    """Endpoints, tokens and light transports for the EKS clusters of one Region, cached per warm Lambda.

    ``eks_client``, ``token_source`` and ``now`` are seams for tests: a moto EKS client, a token minter that
    does not sign, a clock that jumps. By default the token comes from :class:`EksTokenGenerator` with the
    session's credentials and ``now`` is the wall clock. Creating this makes no AWS call.
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
    ) -> None:
        self._region = region
        self._session = session or boto3.Session(region_name=region)
        self._eks = eks_client
        if token_source is None:
            generator = EksTokenGenerator(region, self._session)
            token_source = lambda cluster: generator.token(cluster, now=now)  # noqa: E731
        self._token_source = token_source
        self._now = now
        self._margin = refresh_margin_seconds
        self._lock = threading.RLock()
        self._endpoints: dict[str, ClusterEndpoint] = {}
        self._tokens: dict[str, RefreshingToken] = {}
        self._transports: dict[str, HttpTransport] = {}

    def endpoint(self, cluster_name: str) -> ClusterEndpoint:
        """The cluster's endpoint and CA, described on the first call (an ACTIVE cluster keeps both)."""
        with self._lock:
            if cluster_name not in self._endpoints:
                self._endpoints[cluster_name] = self.describe(cluster_name)
            return self._endpoints[cluster_name]

    def token(self, cluster_name: str) -> RefreshingToken:
        """The cluster's shared, self-refreshing token."""
        with self._lock:
            if cluster_name not in self._tokens:
                self._tokens[cluster_name] = self.new_token(cluster_name)
            return self._tokens[cluster_name]

    def new_token(self, cluster_name: str) -> RefreshingToken:
        """A token of its own (helm gets one per run, so it starts with the token's whole life ahead)."""
        return RefreshingToken(cluster_name, self._token_source, self._now, self._margin)

    def http_transport(self, cluster_name: str) -> HttpTransport:
        """The cluster's light transport (the first call describes the cluster)."""
        with self._lock:
            transport = self._transports.get(cluster_name)
            if transport is None:
                endpoint = self.endpoint(cluster_name)
                transport = HttpTransport(endpoint.host, ca_pem=endpoint.ca_pem, token=self.token(cluster_name))
                self._transports[cluster_name] = transport
            return transport

    def describe(self, cluster_name: str) -> ClusterEndpoint:
        """``eks:DescribeCluster``, every time it is called: endpoint and CA, checked."""
        with self._lock:
            if self._eks is None:
                self._eks = self._session.client("eks", region_name=self._region, config=client_config())
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
        return ClusterEndpoint(cluster_name, endpoint.rstrip("/"), pem)
