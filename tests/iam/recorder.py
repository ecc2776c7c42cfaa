"""Records every AWS call the handlers make, per function, from inside botocore.

Job: while ``installed``, every botocore client created anywhere in the process (by the adapters' own
``boto3.Session(...).client(...)`` or ``boto3.client(...)``) gets a ``provide-client-params.*.*`` handler,
which botocore emits once per API call, before validation and before any retry (docs/facts.md, "IAM from
recorded calls"). The handler files the call as ``service:Action`` with its parameters and the client's
Region under the function being exercised (``as_function``). The EKS token is not an API call of the
function: it is an STS ``GetCallerIdentity`` URL the function presigns and the cluster sends
(lambdas/adapters/eks_token.py); each presigning is filed as that call too.

A chart pulled by helm from a private ECR mirror (the install function's process, with the token its registry
login got) is filed as the ECR actions that pull authorizes, ``ecr:BatchGetImage`` for the manifest and
``ecr:GetDownloadUrlForLayer`` for the layers, on the chart's repository (``registry_pull_calls``; docs/facts.md,
"Private ECR mirror of the controller").

``on_client`` lets a test world act on every new client (answer a call with throttling, say) through the same
creation hook, so no adapter is changed or bypassed.

Invariant: a call made while no function is being exercised is still filed (``function`` None), so a stray call
is seen, not lost; recording changes no parameter and no answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import pytest

import lambdas.adapters.eks_token as eks_token
from lambdas.domain.bootstrap import ecr_chart_mirror

REGISTRY_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


@dataclass(frozen=True)
class RecordedCall:
    function: str | None  # the HandlerSpec name of the function being exercised
    action: str  # IAM action: "<service prefix>:<Operation>", e.g. "elasticloadbalancing:DeregisterTargets"
    region: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.action.split(":", 1)[0]

    @property
    def operation(self) -> str:
        return self.action.split(":", 1)[1]


def iam_prefix(service_model: Any) -> str:
    """The IAM service prefix of a botocore service: its SigV4 signing name (elbv2 -> elasticloadbalancing,
    stepfunctions -> states; the same for every service albgate calls, see docs/facts.md)."""
    return str(service_model.signing_name)


def registry_pull_calls(function: str | None, helm_args: list[str]) -> list[RecordedCall]:
    """The ECR actions a ``helm upgrade`` of an ECR-mirrored chart makes the registry authorize; [] otherwise."""
    chart = next((a for a in helm_args if a.startswith("oci://")), None)
    mirror = ecr_chart_mirror(chart.rsplit("/", 1)[0]) if chart else None
    if helm_args[:1] != ["upgrade"] or mirror is None:
        return []
    params = {"registryId": mirror.account, "repositoryName": mirror.repository, "via": "helm registry pull"}
    return [RecordedCall(function, action, mirror.region, dict(params)) for action in REGISTRY_PULL_ACTIONS]


class CallRecorder:
    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self.function: str | None = None
        self._client_hooks: list[Callable[[Any], None]] = []

    # --- attribution -------------------------------------------------------------------------------------
    @contextmanager
    def as_function(self, name: str) -> Iterator[None]:
        """File the calls made inside the block under ``name``."""
        previous, self.function = self.function, name
        try:
            yield
        finally:
            self.function = previous

    def calls_of(self, function: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.function == function]

    def actions_of(self, function: str) -> set[str]:
        return {c.action for c in self.calls_of(function)}

    # --- hooks -------------------------------------------------------------------------------------------
    def on_client(self, hook: Callable[[Any], None]) -> None:
        """Run ``hook(client)`` on every client created from now on (while installed)."""
        self._client_hooks.append(hook)

    def _instrument(self, client: Any) -> None:
        region = client.meta.region_name

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            action = f"{iam_prefix(model.service_model)}:{model.name}"
            self.calls.append(RecordedCall(self.function, action, region, dict(params)))

        client.meta.events.register("provide-client-params.*.*", record)
        for hook in self._client_hooks:
            hook(client)

    def _record_presign(self, original: Callable[..., str]) -> Callable[..., str]:
        def presign(credentials: Any, region: str, cluster_name: str, sts_endpoint_url: str) -> str:
            self.calls.append(
                RecordedCall(self.function, "sts:GetCallerIdentity", region,
                             {eks_token.CLUSTER_ID_HEADER: cluster_name, "presigned": True})
            )
            return original(credentials, region, cluster_name, sts_endpoint_url)

        return presign

    @contextmanager
    def installed(self) -> Iterator[CallRecorder]:
        create_client = botocore.session.Session.create_client
        recorder = self

        def recording_create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = create_client(session, *args, **kwargs)
            recorder._instrument(client)
            return client

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(botocore.session.Session, "create_client", recording_create_client)
            mp.setattr(eks_token, "presign_caller_identity", self._record_presign(eks_token.presign_caller_identity))
            yield self
