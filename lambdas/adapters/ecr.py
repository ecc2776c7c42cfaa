"""``ImagePort`` over Amazon ECR: pin ``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`` to its digest;
and ``ImagePushTimes``: when ECR received ``<repo>@<digest>`` (``imagePushedAt``), which orders two pushes of the
same second for the ECR trigger.

Invariant: only ECR image URIs are resolved (DescribeImages by tag, in the registry and Region the URI names);
any other registry gives None and the tag is recorded as given. AWS errors become domain errors through the
same mapping as the ELB adapter; an image or repository that does not exist is a NotFoundError naming it.
"""

from __future__ import annotations

import re
from typing import Any

import boto3
from botocore.exceptions import ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.errors import NotFoundError
from lambdas.domain.validators import (
    ECR_REGISTRY_PATTERN,
    ECR_REPOSITORY_NAME_PATTERN,
    IMAGE_TAG_PATTERN,
    SHA256_DIGEST_PATTERN,
)

# <12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repository>, each part by its rule in
# lambdas/domain/validators.py; then ':<tag>' (a tag to pin) or '@sha256:<64 hex>' (an image pinned).
_ECR_REPOSITORY = rf"(?P<registry>{ECR_REGISTRY_PATTERN})/(?P<repository>{ECR_REPOSITORY_NAME_PATTERN})"
_ECR_URI = re.compile(rf"{_ECR_REPOSITORY}:(?P<tag>{IMAGE_TAG_PATTERN})")
_ECR_DIGEST_URI = re.compile(rf"{_ECR_REPOSITORY}@(?P<digest>{SHA256_DIGEST_PATTERN})")


def parse_ecr_uri(image: str) -> dict[str, str] | None:
    """The parts of an ECR image URI with a tag (registry, account, region, repository, tag); None for another
    registry's image or an image already pinned."""
    m = _ECR_URI.fullmatch(image)
    return m.groupdict() if m else None


class RegionalEcrClients:
    """One ECR client per Region, made on first use (an image or registry names its own Region)."""

    def __init__(self, session: boto3.Session | None = None, clients: dict[str, Any] | None = None) -> None:
        self._session = session or boto3.Session()
        self._clients: dict[str, Any] = dict(clients or {})

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._session.client("ecr", region_name=region, config=client_config())
        return self._clients[region]


class EcrAdapter(RegionalEcrClients):

    def resolve_digest(self, image: str) -> str | None:
        uri = parse_ecr_uri(image)
        if uri is None:
            return None
        action = f"ecr:DescribeImages {uri['repository']}:{uri['tag']}"
        try:
            answer = self._client(uri["region"]).describe_images(
                registryId=uri["account"],
                repositoryName=uri["repository"],
                imageIds=[{"imageTag": uri["tag"]}],
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise NotFoundError(
                    f"image: {image} does not exist in ECR ({code}); push it first or fix the tag"
                ) from e
            raise map_aws_error(e, action) from e
        details = answer.get("imageDetails") or []
        if not details:
            raise NotFoundError(f"image: ECR has no image tagged {uri['tag']!r} in {uri['repository']}")
        return f"{uri['registry']}/{uri['repository']}@{details[0]['imageDigest']}"

    def pushed_at(self, image: str) -> float | None:
        """ECR's ``imagePushedAt`` of an image pinned by digest, in epoch seconds; None when the URI is not an ECR
        digest URI or ECR no longer has the image (it cannot then be rolled anyway)."""
        uri = _ECR_DIGEST_URI.fullmatch(image)
        if uri is None:
            return None
        try:
            answer = self._client(uri["region"]).describe_images(
                registryId=uri["account"],
                repositoryName=uri["repository"],
                imageIds=[{"imageDigest": uri["digest"]}],
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code", "") in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise map_aws_error(e, f"ecr:DescribeImages {uri['repository']}@{uri['digest']}") from e
        details = answer.get("imageDetails") or []
        pushed = details[0].get("imagePushedAt") if details else None
        return pushed.timestamp() if hasattr(pushed, "timestamp") else (float(pushed) if pushed is not None else None)
