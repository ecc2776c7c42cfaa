"""Kubernetes adapter failures over HTTP: each API server answer (a Status object) becomes the right domain error."""

from __future__ import annotations

import socket

import pytest
from kubernetes.client.exceptions import ApiException

from lambdas.adapters.kube_http import ApiStatusError
from lambdas.adapters.kubernetes import KubernetesAdapter
from lambdas.domain.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    KubernetesUnavailableError,
    NotFoundError,
    RetryableError,
    WebhookNotReadyError,
)
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch
from tests.adapters import k8s_objects as k8s
from tests.adapters.conftest import TRANSPORTS
from tests.adapters.fake_apiserver import FakeApiServer

NS, NAME = "readiness", "nginx-app"
WEBHOOK_DOWN = (
    'Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": failed to call webhook: Post '
    '"https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-v1-pod?timeout=10s": no endpoints '
    'available for service "aws-load-balancer-webhook-service"'
)
OTHER_WEBHOOK_DOWN = 'Internal error occurred: failed calling webhook "validate.kyverno.svc-fail": context deadline'


@pytest.mark.parametrize(
    "code,message,error,hint",
    [
        (401, "Unauthorized", AccessDeniedError, "access entry"),
        (
            403,
            'deployments.apps "nginx-app" is forbidden: User "arn:aws:sts::1:assumed-role/fn" cannot patch '
            'resource "deployments"',
            AccessDeniedError,
            "access policy or RBAC",
        ),
        (404, 'deployments.apps "nginx-app" not found', NotFoundError, "namespace and name"),
        (409, "the object has been modified", ConflictError, "reads it again"),
        (400, "json: cannot unmarshal string", InvalidInputError, "fix"),
        (422, 'Deployment.apps "nginx-app" is invalid', InvalidInputError, "fix the field"),
        (429, "storage is (re)initializing", KubernetesUnavailableError, "retries"),
        (500, "etcdserver: request timed out", KubernetesUnavailableError, "retries"),
        (503, "the server is currently unable to handle the request", KubernetesUnavailableError, "retries"),
        (500, WEBHOOK_DOWN, WebhookNotReadyError, "webhook is not serving yet"),
        (500, OTHER_WEBHOOK_DOWN, KubernetesUnavailableError, "retries"),
    ],
    ids=["401", "403", "404", "409", "400", "422", "429", "500", "503", "500-lbc-webhook", "500-other-webhook"],
)
def test_api_answers_become_domain_errors(
    apiserver: FakeApiServer, kube: KubernetesAdapter, code: int, message: str, error: type[Exception], hint: str
) -> None:
    # Given a Deployment, and an API server that answers the next patch with a Status of this code
    apiserver.put("deployments", k8s.deployment(), "apps")
    apiserver.fail_next("PATCH", "/deployments/nginx-app$", code, message)
    # When albgate patches the Deployment
    with pytest.raises(error) as caught:
        kube.patch_deployment(NS, NAME, DeploymentPatch(add_readiness_gates=(ALBGATE_GATE,)))
    # Then the domain error names the action, quotes the server and says what to do, caused by the transport's
    # error answer (ApiStatusError over kube_http, ApiException over the kubernetes client)
    text = str(caught.value)
    assert text.startswith(f"patch Deployment {NS}/{NAME}: the Kubernetes API answered {code}: {message}")
    assert hint in text
    assert isinstance(caught.value.__cause__, (ApiStatusError, ApiException)) and caught.value.__cause__.status == code


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.get_deployment(NS, NAME),
        lambda k: k.list_pods(NS, {"app": "nginx"}),
        lambda k: k.set_pod_condition(NS, "p", ALBGATE_GATE, "True", "r", "m"),
        lambda k: k.list_target_group_bindings(NS),
    ],
    ids=["get", "list", "status-patch", "custom-objects"],
)
def test_unreachable_api_server_is_retryable(call: object, transport: str) -> None:
    # Given an endpoint nobody listens on (a port just released)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kube = KubernetesAdapter(TRANSPORTS[transport](f"http://127.0.0.1:{port}"), request_timeout=1)
    # When any call is made / Then KubernetesUnavailableError (retryable) says to check the endpoint and network
    with pytest.raises(KubernetesUnavailableError, match="could not reach the Kubernetes API") as caught:
        call(kube)  # type: ignore[operator]
    assert isinstance(caught.value, RetryableError) and caught.value.__cause__ is not None
