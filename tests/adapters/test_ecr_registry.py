"""The registry credentials helm logs in with: ECR's authorization token (moto), split, from the registry's Region;
and what ECR refuses, mapped."""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.adapters.ecr_registry import EcrRegistryAuth
from lambdas.domain.errors import AccessDeniedError, AlbgateError, InvalidInputError, ThrottledError

HOST = "123456789012.dkr.ecr.eu-central-1.amazonaws.com"


@mock_aws
def test_the_token_becomes_the_user_and_password_helm_logs_in_with() -> None:
    # Given ECR (moto's account 123456789012) / When albgate asks for the registry's credentials
    credentials = EcrRegistryAuth().credentials(HOST)
    # Then the token's user:password is split as `docker login` / `helm registry login` takes it
    assert (credentials.host, credentials.username, credentials.password) == (HOST, "AWS", "123456789012-auth-token")
    assert credentials.expires_at > 0
    # And the password is not in the object's printed form
    assert credentials.password not in repr(credentials)


def test_the_token_is_asked_in_the_registrys_own_region() -> None:
    # Given clients per Region, each answering with its own token
    clients = {}
    for region in ("us-east-1", "eu-central-1"):
        client = boto3.client("ecr", region_name=region)
        stub = Stubber(client)
        token = base64.b64encode(f"AWS:{region}-password".encode()).decode()
        stub.add_response("get_authorization_token", {"authorizationData": [{"authorizationToken": token}]}, {})
        stub.activate()
        clients[region] = client
    # When the eu-central-1 registry's credentials are asked / Then the eu-central-1 client answered
    assert EcrRegistryAuth(clients=clients).credentials(HOST).password == "eu-central-1-password"


@pytest.mark.parametrize(("answer", "error", "message"), [
    pytest.param({"service_error_code": "AccessDeniedException", "service_message": "not authorized"},
                 AccessDeniedError, "GetAuthorizationToken.*Grant the function's execution role", id="denied"),
    pytest.param({"service_error_code": "ThrottlingException", "service_message": "Rate exceeded"},
                 ThrottledError, "retries", id="throttled"),
    pytest.param({"response": {"authorizationData": [{"authorizationToken": "bm8tY29sb24="}]}},
                 AccessDeniedError, "no usable token", id="token-without-colon"),
    pytest.param({"response": {"authorizationData": [{"authorizationToken": "%%%"}]}},
                 AccessDeniedError, "not base64", id="token-not-base64"),
])
def test_what_ecr_refuses_is_a_domain_error(answer: dict, error: type[AlbgateError], message: str) -> None:
    # Given ECR answering with an error, or with a token albgate cannot use
    client = boto3.client("ecr", region_name="eu-central-1")
    stub = Stubber(client)
    if "response" in answer:
        stub.add_response("get_authorization_token", answer["response"], {})
    else:
        stub.add_client_error("get_authorization_token", http_status_code=400, **answer)
    stub.activate()
    # When albgate asks for credentials / Then the domain error names the action
    with pytest.raises(error, match=message):
        EcrRegistryAuth(clients={"eu-central-1": client}).credentials(HOST)


@pytest.mark.parametrize("host", ["ghcr.io", "public.ecr.aws", "123.dkr.ecr.us-east-1.amazonaws.com"],
                         ids=["ghcr", "ecr-public", "short-account"])
def test_only_private_ecr_registries_get_credentials(host: str) -> None:
    # Given a registry that is not a private ECR registry / Then no AWS call is made and the input is refused
    with pytest.raises(InvalidInputError, match="not a private ECR registry"):
        EcrRegistryAuth(clients={}).credentials(host)
