"""The ECR adapter pins a tag to the digest ECR holds (moto), and maps what ECR refuses."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.adapters.ecr import EcrAdapter, parse_ecr_uri
from lambdas.domain.errors import NotFoundError, ThrottledError

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:" + "1" * 64},
        "layers": [],
    }
)


@pytest.mark.parametrize(
    "image,repo",
    [
        (f"{REGISTRY}/myapp:v2", "myapp"),
        (f"{REGISTRY}/team/app:1.2.3", "team/app"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1", "app"),
        ("docker.io/library/nginx:1.27", None),
        ("ikubernetes/myapp:v2", None),
    ],
    ids=["ecr", "ecr-nested", "ecr-china", "docker-hub", "short"],
)
def test_only_ecr_uris_are_resolved(image, repo):
    parsed = parse_ecr_uri(image)
    assert (parsed["repository"] if parsed else None) == repo


@mock_aws
def test_a_tag_is_pinned_to_the_digest_ecr_holds():
    # Given an image pushed to ECR with tag v2
    ecr = boto3.client("ecr", region_name="us-east-1")
    ecr.create_repository(repositoryName="myapp")
    pushed = ecr.put_image(repositoryName="myapp", imageManifest=MANIFEST, imageTag="v2")["image"]["imageId"]
    # When albgate resolves repo:v2 / Then it gets repo@<that digest>
    assert EcrAdapter().resolve_digest(f"{REGISTRY}/myapp:v2") == f"{REGISTRY}/myapp@{pushed['imageDigest']}"


@mock_aws
def test_a_missing_tag_is_not_found_naming_the_image():
    boto3.client("ecr", region_name="us-east-1").create_repository(repositoryName="myapp")
    with pytest.raises(NotFoundError, match="myapp:v9"):
        EcrAdapter().resolve_digest(f"{REGISTRY}/myapp:v9")


def test_a_non_ecr_registry_is_left_as_given():
    assert EcrAdapter().resolve_digest("ikubernetes/myapp:v2") is None


def test_throttling_maps_to_the_retryable_family():
    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_client_error("describe_images", service_error_code="ThrottlingException", service_message="Rate exceeded")
        with pytest.raises(ThrottledError):
            EcrAdapter(clients={"us-east-1": client}).resolve_digest(f"{REGISTRY}/myapp:v2")
