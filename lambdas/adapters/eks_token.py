"""EKS bearer tokens: how a Lambda proves its IAM identity to a cluster's Kubernetes API.

Job: turn AWS credentials into the token the EKS authenticator accepts, written from the documented algorithm
(docs/facts.md, "EKS bearer token"): ``k8s-aws-v1.`` + base64url, padding stripped, of an STS
``GetCallerIdentity`` URL presigned (SigV4 in the query string, method GET) with the header
``x-k8s-aws-id: <cluster name>`` among the signed headers and an expiry of 60 s. The cluster replays the URL
against STS to learn who is calling, so the signature must cover that header, or a token minted for one
cluster could be replayed against another.

Invariant: a token is never handed out without the time after which it must not be used; that time is earlier
than the ~15 min the cluster accepts it, so a caller that refreshes on ``expires_at`` never sends a token the
cluster rejects. This module makes no network call: presigning is local computation.
"""

from __future__ import annotations

import base64
import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from lambdas.domain.errors import AccessDeniedError

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
# X-Amz-Expires of the presigned URL (docs/facts.md, EKS bearer token: presign expiry 60 s, as `aws eks get-token`
# sets it). STS ignores it: the authenticator on the cluster accepts the token for its own, longer window after
# X-Amz-Date (next constant), and only checks that this value is 0-900.
PRESIGN_EXPIRES_SECONDS = 60
# The cluster accepts a token for 15 min after signing (docs/facts.md, EKS bearer token). Hand it out for 14 min:
# one minute of margin for clock skew between the Lambda and the control plane.
TOKEN_LIFETIME_SECONDS = 14 * 60
_STS_QUERY = "Action=GetCallerIdentity&Version=2011-06-15"


@dataclass(frozen=True)
class EksToken:
    """A bearer token and the window in which to use it (epoch seconds)."""

    value: str
    issued_at: float
    expires_at: float

    @property
    def lifetime_seconds(self) -> float:
        return self.expires_at - self.issued_at


def presign_caller_identity(
    credentials: ReadOnlyCredentials, region: str, cluster_name: str, sts_endpoint_url: str
) -> str:
    """A GET URL for STS GetCallerIdentity, SigV4-presigned with ``x-k8s-aws-id`` as a signed header."""
    request = AWSRequest(
        method="GET",
        url=f"{sts_endpoint_url.rstrip('/')}/?{_STS_QUERY}",
        headers={CLUSTER_ID_HEADER: cluster_name},
    )
    # SigV4QueryAuth signs every header present on the request (host plus ours) and lists them in
    # X-Amz-SignedHeaders; the method (GET) is part of the signature, and the authenticator replays a GET.
    SigV4QueryAuth(credentials, "sts", region, expires=PRESIGN_EXPIRES_SECONDS).add_auth(request)
    return str(request.url)


def token_from_presigned_url(url: str) -> str:
    """``k8s-aws-v1.`` + the URL in base64url without ``=`` padding."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


def presigned_url_from_token(token: str) -> str:
    """The inverse of :func:`token_from_presigned_url` (for tests and diagnostics)."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError(f"not an EKS token: it must start with {TOKEN_PREFIX!r}")
    body = token[len(TOKEN_PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")


def signed_at(url: str) -> float:
    """Epoch seconds of the URL's X-Amz-Date (the moment the cluster starts counting the token's life)."""
    stamp = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))


class EksTokenGenerator:
    """Mints tokens for clusters in one Region from a boto3 session's (refreshable) credentials."""

    def __init__(self, region: str, session: boto3.Session | None = None) -> None:
        self._region = region
        self._session = session or boto3.Session(region_name=region)
        self._sts_endpoint_url: str | None = None

    def _endpoint(self) -> str:
        # Ask botocore for the Region's STS endpoint (partition-aware: amazonaws.com.cn, us-gov, ...); creating
        # a client makes no network call, and it is done once per generator.
        if self._sts_endpoint_url is None:
            self._sts_endpoint_url = self._session.client("sts", region_name=self._region).meta.endpoint_url
        return self._sts_endpoint_url

    def token(self, cluster_name: str, now: Callable[[], float] | None = None) -> EksToken:
        """A fresh token for ``cluster_name``; ``now`` (default: the signature's own time) starts its window."""
        credentials = self._session.get_credentials()
        if credentials is None:
            raise AccessDeniedError(
                f"no AWS credentials found to sign an EKS token for cluster {cluster_name!r}: run with an IAM role "
                "(the Lambda execution role) or configure credentials locally"
            )
        # Freeze once: refreshable credentials could otherwise rotate between reading the key and the token.
        frozen = credentials.get_frozen_credentials()
        url = presign_caller_identity(frozen, self._region, cluster_name, self._endpoint())
        issued = now() if now is not None else signed_at(url)
        return EksToken(token_from_presigned_url(url), issued, issued + TOKEN_LIFETIME_SECONDS)
