"""EKS bearer token: shape, what is signed, and the window it is handed out for (docs/facts.md, EKS bearer
token)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from unittest import mock
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from botocore.credentials import ReadOnlyCredentials

from lambdas.adapters.eks_token import (
    CLUSTER_ID_HEADER,
    TOKEN_PREFIX,
    EksTokenGenerator,
    presign_caller_identity,
    presigned_url_from_token,
    signed_at,
    token_from_presigned_url,
)
from lambdas.domain.errors import AccessDeniedError

SIGNED_AT = datetime.datetime(2026, 1, 2, 3, 4, 5)
SIGNED_AT_EPOCH = 1_767_323_045.0
KEYS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def session(token: str | None = None, region: str = "eu-west-1") -> boto3.Session:
    return boto3.Session(**KEYS, aws_session_token=token, region_name=region)


def mint(cluster: str, token: str | None = None, region: str = "eu-west-1") -> str:
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        return EksTokenGenerator(region, session(token, region)).token(cluster).value


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def sigv4_signature(url: str, headers: dict[str, str], secret: str, region: str) -> str:
    """SigV4 for a presigned GET, computed from the AWS specification (not botocore), to check the signature."""
    parts = urlsplit(url)
    params = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params)
    signed = query(url)["X-Amz-SignedHeaders"].split(";")
    all_headers = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{h}:{all_headers[h].strip()}\n" for h in signed)
    canonical = "\n".join(
        [
            "GET",
            parts.path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    stamp = query(url)["X-Amz-Date"]
    scope = f"{stamp[:8]}/{region}/sts/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (stamp[:8], region, "sts", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# The cluster name travels in a header, not in the URL; the session token's length is what moves the URL's
# length, so these three need 0, 2 and 1 padding characters in standard base64.
@pytest.mark.parametrize(
    "session_token,padding", [("a", 0), ("ab", 2), ("abc", 1)], ids=["no-padding", "two-pad-chars", "one-pad-char"]
)
def test_token_is_prefix_plus_unpadded_base64url_of_a_presigned_sts_url(session_token: str, padding: int) -> None:
    # Given fixed credentials and a fixed signing time
    # When a token is minted for the cluster
    token = mint("demo", session_token)
    # Then it is "k8s-aws-v1." + base64url without padding, decoding to an STS GetCallerIdentity GET URL
    assert token.startswith(TOKEN_PREFIX)
    body = token[len(TOKEN_PREFIX) :]
    assert "=" not in body and set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    assert len(base64.urlsafe_b64encode(url.encode())) - len(body) == padding
    assert url == presigned_url_from_token(token)
    assert url.startswith("https://sts.eu-west-1.amazonaws.com/?")
    assert query(url)["Action"] == "GetCallerIdentity" and query(url)["Version"] == "2011-06-15"


@pytest.mark.parametrize(
    "session_token,expect_security_token",
    [(None, False), ("FwoGZXIvYXdzEXAMPLE", True)],
    ids=["long-term-keys", "role-session"],
)
def test_presigned_url_signs_the_cluster_header_for_60_seconds(
    session_token: str | None, expect_security_token: bool
) -> None:
    # Given credentials with or without a session token (a Lambda role always has one)
    # When a token is minted
    q = query(presigned_url_from_token(mint("demo", session_token)))
    # Then the cluster header is signed, the URL expires after 60 s, and the scope is STS in the Region
    assert q["X-Amz-SignedHeaders"].split(";") == ["host", CLUSTER_ID_HEADER]
    assert q["X-Amz-Expires"] == "60"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Credential"] == "AKIDEXAMPLE/20260102/eu-west-1/sts/aws4_request"
    assert q["X-Amz-Date"] == "20260102T030405Z"
    assert ("X-Amz-Security-Token" in q) is expect_security_token
    if expect_security_token:
        assert q["X-Amz-Security-Token"] == session_token


def test_url_equals_what_botocores_sts_client_presigns_for_a_get_with_the_header() -> None:
    # Given botocore's own STS presigner, told to add x-k8s-aws-id before signing and to sign a GET
    sts = session().client("sts", region_name="eu-west-1")
    sts.meta.events.register(
        "before-sign.sts.GetCallerIdentity", lambda request, **_: request.headers.__setitem__(CLUSTER_ID_HEADER, "demo")
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        expected = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    # When albgate mints a token with the same credentials at the same instant
    url = presigned_url_from_token(mint("demo"))
    # Then both URLs carry the same parameters, signature included
    assert query(url) == query(expected)
    assert urlsplit(url)[:3] == urlsplit(expected)[:3]


@pytest.mark.parametrize(
    "presented_cluster,valid",
    [("demo", True), ("other-cluster", False)],
    ids=["same-cluster-verifies", "replayed-for-another-cluster-fails"],
)
def test_signature_covers_the_cluster_header(presented_cluster: str, valid: bool) -> None:
    # Given a URL presigned for cluster "demo"
    creds = ReadOnlyCredentials(KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"], None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        url = presign_caller_identity(creds, "eu-west-1", "demo", "https://sts.eu-west-1.amazonaws.com")
    # When STS recomputes the signature with the header value the caller presents
    recomputed = sigv4_signature(
        url, {CLUSTER_ID_HEADER: presented_cluster}, KEYS["aws_secret_access_key"], "eu-west-1"
    )
    # Then it matches only for the cluster the token was minted for
    assert (recomputed == query(url)["X-Amz-Signature"]) is valid


def test_token_window_starts_at_the_signature_and_ends_before_fifteen_minutes() -> None:
    # Given fixed credentials and a fixed signing time
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        token = EksTokenGenerator("eu-west-1", session()).token("demo")
    # Then the token is handed out from its X-Amz-Date for 14 minutes, under the ~15 the cluster accepts
    assert token.issued_at == SIGNED_AT_EPOCH == signed_at(presigned_url_from_token(token.value))
    assert token.expires_at == SIGNED_AT_EPOCH + 14 * 60
    assert token.lifetime_seconds < 15 * 60


def test_token_window_follows_an_injected_clock() -> None:
    # Given a clock the caller controls (the client factory's)
    # When a token is minted with it
    token = EksTokenGenerator("eu-west-1", session()).token("demo", now=lambda: 1000.0)
    # Then the window is measured on that clock
    assert (token.issued_at, token.expires_at) == (1000.0, 1000.0 + 14 * 60)


def test_partition_endpoint_comes_from_botocore() -> None:
    # Given a China Region
    # When a token is minted there
    url = presigned_url_from_token(mint("demo", region="cn-north-1"))
    # Then the STS endpoint is the partition's, and the scope names the Region
    assert urlsplit(url).netloc == "sts.cn-north-1.amazonaws.com.cn"
    assert "/cn-north-1/sts/" in query(url)["X-Amz-Credential"]


def test_missing_credentials_is_access_denied_with_a_fix() -> None:
    # Given a session that finds no credentials
    class NoCredentials:
        def get_credentials(self) -> None:
            return None

    # When a token is requested
    # Then AccessDeniedError says to run with a role
    with pytest.raises(AccessDeniedError, match="IAM role"):
        EksTokenGenerator("eu-west-1", NoCredentials()).token("demo")  # type: ignore[arg-type]


def test_token_round_trip_rejects_foreign_tokens() -> None:
    # Given a string that is not an EKS token / When it is decoded / Then ValueError names the prefix
    assert presigned_url_from_token(token_from_presigned_url("https://x/?a=b")) == "https://x/?a=b"
    with pytest.raises(ValueError, match="k8s-aws-v1"):
        presigned_url_from_token("Bearer abc")
