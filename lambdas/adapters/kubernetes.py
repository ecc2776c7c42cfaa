"""Kubernetes adapter: ``KubernetesPort`` over a ``KubeTransport``, speaking the API server's wire format.

Job: read Namespaces, Deployments, ReplicaSets, Pods, Services, Ingresses and the Load Balancer Controller's
TargetGroupBindings into the ports' frozen dataclasses, and make the three writes albgate needs:
- ``patch_deployment``: a strategic merge patch (containers merged by ``name``); readiness gates are an atomic
  list in the Pod schema (k8s.io/api core/v1 types.go: ``readinessGates`` has no patchStrategy tag, so a patch
  replaces the whole list), so the patch carries the union of the gates already there and the new ones,
  conditional on the resourceVersion it was computed from, and never drops a gate;
- ``rollback_deployment``: what ``kubectl rollout undo`` does (docs/facts.md, "Kubernetes Deployment
  controller": undo is a template change): copy the chosen revision's ReplicaSet template back without its
  ``pod-template-hash`` label, with a JSON patch, and refuse a paused Deployment. Unlike kubectl it can be
  repeated: once the undo landed the controller gives that ReplicaSet the next revision and keeps the old number
  in its ``deployment.kubernetes.io/revision-history`` annotation, where the adapter finds it again (and then
  has nothing to change), so a caller that retries after a 409 is not told the revision is gone;
- ``set_pod_condition``: a strategic merge patch of ``pods/status``; ``status.conditions`` merge on ``type``
  (patchMergeKey in types.go), so the kubelet's own conditions are untouched;
- ``set_pod_serving``: a JSON merge patch (RFC 7386) of the pod's metadata: one label set, one annotation set or
  removed (``null``), every other label and annotation untouched.

It also watches: ``wait_for_pods`` and ``wait_for_bindings`` list one item to read the collection's
resourceVersion, then watch from it with the server's ``timeoutSeconds`` and return at the first event (the
transport's ``first_event``; docs/facts.md, "Kubernetes watches").

Every request is a path, a query and a JSON body handed to a transport (``kube_http.KubeTransport``): the
light ``kube_http.HttpTransport`` (urllib3 only), or ``kube_client.ApiClientTransport`` over the kubernetes
client when the adapter is given an ``ApiClient``. This module does not import the kubernetes client, so the
light flavour never loads it; the paths, bodies, parsing and error mapping are the same code for both.
Objects are read as the server's JSON rather than the client's generated models, so a rollback copies back
fields the client's models do not know and a new enum value cannot break parsing.

Invariant: every failure leaves as a domain error, raised ``from`` the transport's error (``ApiStatusError``,
the client's ``ApiException``, or the connection error), with a message that says what was being done and
what a person can do about it: 409 ConflictError; 429, 5xx and connection failures KubernetesUnavailableError
(WebhookNotReadyError when the Load Balancer Controller's webhook could not be called); 404 NotFoundError;
401/403 AccessDeniedError; 400/422 InvalidInputError.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import urllib3

from lambdas.adapters.kube_http import DEFAULT_TIMEOUT, ApiStatusError, KubeTransport, Timeout
from lambdas.domain.errors import (
    AccessDeniedError,
    AlbgateError,
    ConflictError,
    InvalidInputError,
    KubernetesUnavailableError,
    NotFoundError,
    WebhookNotReadyError,
)
from lambdas.domain import manifests
from lambdas.domain.manifests import pre_stop_sleep_seconds  # one reading of a preStop, shared with hardening
from lambdas.domain.ports import (
    IN_SERVICE,
    LBC_CHECKPOINT_ANNOTATION,
    OUT_OF_SERVICE,
    OUT_OF_SERVICE_DELETION_COST,
    POD_DELETION_COST,
    REVISION_ANNOTATION,
    SERVING_LABEL,
    Container,
    Deployment,
    DeploymentCondition,
    DeploymentPatch,
    Ingress,
    IngressBackend,
    Namespace,
    Pod,
    PodCondition,
    PodTemplate,
    ReplicaSet,
    Service,
    ServicePort,
    TargetGroupBinding,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
POD_TEMPLATE_HASH = "pod-template-hash"
TGB_GROUP, TGB_VERSION, TGB_PLURAL = "elbv2.k8s.aws", "v1beta1", "targetgroupbindings"
# Deployment annotations kubectl keeps from the Deployment (not copied from the ReplicaSet) on undo
# (kubectl polymorphichelpers/rollback.go, annotationsToSkip).
_UNDO_KEEP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
# Kubernetes defaults (docs/facts.md, Kubernetes Deployment controller, and Pod readiness and termination):
# rolling update 25 % / 25 %, grace period 30 s, progress deadline 600 s.
_DEFAULT_SURGE = _DEFAULT_UNAVAILABLE = "25%"
_DEFAULT_GRACE_SECONDS = 30
_DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
# The numbers a ReplicaSet had before an undo made it the newest revision, comma-separated (deployment_util.go
# SetNewReplicaSetAnnotations; docs/facts.md, "Kubelet and controllers: Ready after a gate, status writes").
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
# The native preStop sleep action is on by default from 1.30 (beta) and GA in 1.34 (docs/facts.md, Pod readiness
# and termination).
_NATIVE_SLEEP_SINCE = (1, 30)
# preStop exec commands that are a drain sleep: ["sleep", "30"], or a shell script starting "sleep 30".
_LBC_WEBHOOK_MARKERS = ("elbv2.k8s.aws", "aws-load-balancer-webhook")


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------
class StatusAnswer(Protocol):
    """An error answer as a transport raises it: ``kube_http.ApiStatusError`` or the client's ``ApiException``."""

    status: int | None
    reason: str | None
    body: bytes | str | None


def _answer_errors() -> tuple[type[Exception], ...]:
    """The exception types that carry the API server's error answer.

    ``ApiStatusError``, and the kubernetes client's ``ApiException`` once the client is loaded: only then can
    one have been raised, and looking it up here (rather than importing it) keeps this module free of the
    client. ``except`` evaluates this only when an exception is being matched.
    """
    client = sys.modules.get("kubernetes.client.exceptions")
    return (ApiStatusError,) if client is None else (ApiStatusError, client.ApiException)


def _status_message(e: StatusAnswer) -> str:
    """The ``message`` of the Status object the API server sends with an error, else the raw reason."""
    body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else (e.body or "")
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.strip()
    return message or str(e.reason or "").strip()


def map_api_error(e: StatusAnswer, action: str) -> AlbgateError:
    """The domain error for an error answer met while doing ``action`` (e.g. "patch Deployment shop/web")."""
    status = int(e.status or 0)
    said = f"{action}: the Kubernetes API answered {status or 'no status'}: {_status_message(e)}"
    if status == 409:
        return ConflictError(f"{said}. Somebody changed the object since albgate read it; it reads it again")
    if status == 404:
        return NotFoundError(f"{said}. Check the namespace and name (and that the resource type is installed)")
    if status == 401:
        return AccessDeniedError(
            f"{said}. The cluster did not accept the token: give the function's IAM role an EKS access entry "
            "(or an aws-auth mapping) on this cluster"
        )
    if status == 403:
        return AccessDeniedError(
            f"{said}. The function's identity lacks this permission: extend its EKS access policy or RBAC role"
        )
    if status in (400, 422):
        return InvalidInputError(f"{said}. The API server rejected the change; fix the field it names")
    if status == 429 or status >= 500 or status == 0:
        message = _status_message(e)
        if "failed calling webhook" in message and any(m in message for m in _LBC_WEBHOOK_MARKERS):
            return WebhookNotReadyError(
                f"{said}. The AWS Load Balancer Controller's webhook is not serving yet; albgate retries"
            )
        return KubernetesUnavailableError(f"{said}. The API server is busy or failing; albgate retries")
    return InvalidInputError(f"{said}. The request was refused; fix what the message names")


@contextmanager
def _calling(action: str) -> Iterator[None]:
    try:
        yield
    except _answer_errors() as e:
        raise map_api_error(e, action) from e
    except json.JSONDecodeError as e:  # e.g. an HTML page from a proxy in front of the API server
        raise KubernetesUnavailableError(f"{action}: the Kubernetes API answered with something not JSON ({e})") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise KubernetesUnavailableError(
            f"{action}: could not reach the Kubernetes API ({type(e).__name__}: {e}); check the cluster endpoint "
            "and that the function can reach it (VPC, security groups); albgate retries"
        ) from e


# ---------------------------------------------------------------------------------------------------------
# Wire JSON -> ports
# ---------------------------------------------------------------------------------------------------------
def _epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _revision(meta: dict[str, Any]) -> int:
    try:
        return int((meta.get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


def _revision_history(meta: dict[str, Any]) -> set[int]:
    """The revisions a ReplicaSet had before its current one (an undo renumbered it), from its annotation."""
    text = (meta.get("annotations") or {}).get(REVISION_HISTORY_ANNOTATION, "")
    return {int(part) for part in text.split(",") if part.strip().isdigit()}


def _template(raw: dict[str, Any]) -> PodTemplate:
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    containers = tuple(
        Container(
            name=c["name"],
            image=c.get("image", ""),
            pre_stop_sleep_seconds=pre_stop_sleep_seconds(c),
            has_readiness_probe=c.get("readinessProbe") is not None,
        )
        for c in spec.get("containers") or []
    )
    return PodTemplate(
        containers=containers,
        readiness_gates=tuple(g["conditionType"] for g in spec.get("readinessGates") or []),
        termination_grace_period_seconds=int(spec.get("terminationGracePeriodSeconds", _DEFAULT_GRACE_SECONDS)),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )


def _deployment(raw: dict[str, Any]) -> Deployment:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        # Recreate stops every old pod before starting new ones: report it as the rolling update it amounts to.
        surge, unavailable = 0, "100%"
    else:
        rolling = strategy.get("rollingUpdate") or {}
        surge = rolling.get("maxSurge", _DEFAULT_SURGE)
        unavailable = rolling.get("maxUnavailable", _DEFAULT_UNAVAILABLE)
    return Deployment(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        uid=meta.get("uid", ""),
        replicas=int(spec.get("replicas", 1)),
        selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
        template=_template(spec.get("template") or {}),
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_seconds=int(spec.get("minReadySeconds", 0)),
        progress_deadline_seconds=int(spec.get("progressDeadlineSeconds", _DEFAULT_PROGRESS_DEADLINE_SECONDS)),
        paused=bool(spec.get("paused", False)),
        revision=_revision(meta),
        generation=int(meta.get("generation", 1)),
        observed_generation=int(status.get("observedGeneration", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        conditions=tuple(
            DeploymentCondition(
                c["type"], c["status"], c.get("reason", ""), c.get("message", ""),
                _epoch(c.get("lastUpdateTime")) if c.get("lastUpdateTime") else None,
            )
            for c in status.get("conditions") or []
        ),
        annotations=dict(meta.get("annotations") or {}),
        resource_version=meta.get("resourceVersion", ""),
    )


def _replica_set(raw: dict[str, Any]) -> ReplicaSet:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    template = spec.get("template") or {}
    return ReplicaSet(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        revision=_revision(meta),
        pod_template_hash=((template.get("metadata") or {}).get("labels") or {}).get(
            POD_TEMPLATE_HASH, (meta.get("labels") or {}).get(POD_TEMPLATE_HASH, "")
        ),
        replicas=int(spec.get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        template=_template(template),
        created_at=_epoch(meta.get("creationTimestamp")),
    )


def _controller(meta: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == kind and o.get("controller")), None)


def _pod(raw: dict[str, Any]) -> Pod:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    statuses = status.get("containerStatuses") or []
    waiting = next(
        (s["state"]["waiting"].get("reason", "") for s in statuses if (s.get("state") or {}).get("waiting")), ""
    )
    owner = _controller(meta, "ReplicaSet")
    return Pod(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        uid=meta.get("uid", ""),
        ip=status.get("podIP") or None,
        labels=dict(meta.get("labels") or {}),
        phase=status.get("phase", "Pending"),
        readiness_gates=tuple(g["conditionType"] for g in spec.get("readinessGates") or []),
        conditions=tuple(
            PodCondition(c["type"], c["status"], c.get("reason") or "", c.get("message") or "",
                         _epoch(c["lastTransitionTime"]) if c.get("lastTransitionTime") else None)
            for c in status.get("conditions") or []
        ),
        terminating=meta.get("deletionTimestamp") is not None,
        restart_count=sum(int(s.get("restartCount", 0)) for s in statuses),
        created_at=_epoch(meta.get("creationTimestamp")),
        owner_replica_set=owner["name"] if owner else None,
        waiting_reason=waiting,
    )


def _service(raw: dict[str, Any]) -> Service:
    meta, spec = raw["metadata"], raw.get("spec") or {}
    return Service(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        selector=dict(spec.get("selector") or {}),
        ports=tuple(
            ServicePort(port=int(p["port"]), target_port=p.get("targetPort", p["port"]), name=p.get("name", ""))
            for p in spec.get("ports") or []
        ),
    )


def _backend(backend: dict[str, Any] | None) -> IngressBackend | None:
    service = (backend or {}).get("service")
    if not service:
        return None  # a resource backend: not a Service, no target group
    port = service.get("port") or {}
    return IngressBackend(service["name"], port.get("number", port.get("name", "")))


def _ingress(raw: dict[str, Any]) -> Ingress:
    meta, spec = raw["metadata"], raw.get("spec") or {}
    annotations = dict(meta.get("annotations") or {})
    found = [_backend(spec.get("defaultBackend"))]
    for rule in spec.get("rules") or []:
        found.extend(_backend(p.get("backend")) for p in (rule.get("http") or {}).get("paths") or [])
    backends = tuple(dict.fromkeys(b for b in found if b is not None))  # unique, in order of appearance
    return Ingress(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        # spec.ingressClassName replaced the deprecated annotation; the Load Balancer Controller reads both.
        ingress_class=spec.get("ingressClassName") or annotations.get("kubernetes.io/ingress.class"),
        annotations=annotations,
        backends=backends,
    )


def _target_group_binding(raw: dict[str, Any]) -> TargetGroupBinding:
    meta, spec = raw["metadata"], raw.get("spec") or {}
    ref = spec.get("serviceRef") or {}
    return TargetGroupBinding(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        target_group_arn=spec.get("targetGroupARN", ""),
        target_type=spec.get("targetType", ""),  # optional in v1beta1: "" when the binding leaves it to the TG
        service_name=ref.get("name", ""),
        service_port=ref.get("port", ""),
        checkpoint=(meta.get("annotations") or {}).get(LBC_CHECKPOINT_ANNOTATION, ""),
    )


def label_selector(match_labels: dict[str, str], match_expressions: list[dict[str, Any]] | None = None) -> str:
    """A LabelSelector in the query syntax the API server takes (``a=b,c in (d,e),!f``)."""
    parts = [f"{k}={v}" for k, v in sorted(match_labels.items())]
    for e in match_expressions or []:
        key, op, values = e["key"], e["operator"], ",".join(e.get("values") or [])
        rendered = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }
        parts.append(rendered[op])
    return ",".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Ports -> wire JSON
# ---------------------------------------------------------------------------------------------------------
def pre_stop_handler(seconds: int, native_sleep: bool) -> dict[str, Any]:
    """A preStop that only sleeps (``manifests.pre_stop_handler``); as a strategic merge patch the other handler
    kinds are nulled, since a handler may have just one."""
    return {"sleep": None, "exec": None, "httpGet": None, "tcpSocket": None,
            **manifests.pre_stop_handler(seconds, native_sleep)}


def render_deployment_patch(current: dict[str, Any], patch: DeploymentPatch, native_sleep: bool) -> dict[str, Any]:
    """The strategic merge patch that applies ``patch`` to the Deployment ``current`` (as the server sent it).

    Raises NotFoundError when the patch names a container the template does not have: a strategic merge would
    otherwise *add* a container with only a name and an image.
    """
    body: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    pod_spec: dict[str, Any] = {}
    template_spec = (current.get("spec") or {}).get("template") or {}
    current_pod_spec = template_spec.get("spec") or {}
    known = [c["name"] for c in current_pod_spec.get("containers") or []]
    where = f"Deployment {current['metadata'].get('namespace')}/{current['metadata']['name']}"

    containers: dict[str, dict[str, Any]] = {}
    for name, image in (patch.images or {}).items():
        containers.setdefault(name, {"name": name})["image"] = image
    for name, seconds in (patch.pre_stop_sleep_seconds or {}).items():
        handler = pre_stop_handler(seconds, native_sleep)
        containers.setdefault(name, {"name": name})["lifecycle"] = {"preStop": handler}
    unknown = sorted(set(containers) - set(known))
    if unknown:
        raise NotFoundError(f"{where} has no container named {', '.join(unknown)}; its containers are {known}")
    if containers:
        pod_spec["containers"] = list(containers.values())  # merged on "name" (patchMergeKey)

    present = [g["conditionType"] for g in current_pod_spec.get("readinessGates") or []]
    missing = [g for g in dict.fromkeys(patch.add_readiness_gates) if g not in present]
    if missing:
        # readinessGates has no patch strategy: the list is replaced whole, so send every gate, old ones first.
        pod_spec["readinessGates"] = [{"conditionType": g} for g in present + missing]
    if patch.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = patch.termination_grace_period_seconds

    template: dict[str, Any] = {}
    if pod_spec:
        template["spec"] = pod_spec
    if patch.template_annotations:
        template["metadata"] = {"annotations": dict(patch.template_annotations)}
    if template:
        spec["template"] = template

    rolling: dict[str, Any] = {}
    if patch.max_surge is not None:
        rolling["maxSurge"] = patch.max_surge
    if patch.max_unavailable is not None:
        rolling["maxUnavailable"] = patch.max_unavailable
    if rolling:
        # rollingUpdate is only valid with type RollingUpdate (a Recreate Deployment is switched over).
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": rolling}
    if patch.min_ready_seconds is not None:
        spec["minReadySeconds"] = patch.min_ready_seconds
    if patch.paused is not None:
        spec["paused"] = patch.paused
    if spec:
        body["spec"] = spec
    if patch.annotations:
        body["metadata"] = {"annotations": dict(patch.annotations)}

    # A resourceVersion in a patch is a precondition: the server answers 409 if the object moved on
    # (kubernetes/kubernetes#63104; controller-runtime's MergeFromWithOptimisticLock relies on it). Use the
    # caller's, or the one the gate union was computed from (else a concurrent writer's gate could be lost).
    read_version = current["metadata"].get("resourceVersion")
    precondition = patch.expected_resource_version or (read_version if missing else None)
    if body and precondition:
        body.setdefault("metadata", {})["resourceVersion"] = precondition
    return body


def undo_patch(
    current: dict[str, Any], replica_set: dict[str, Any], add_readiness_gates: tuple[str, ...] = ()
) -> list[dict[str, Any]] | None:
    """The JSON patch ``kubectl rollout undo`` sends to restore ``replica_set``'s template; None if nothing changes.

    ``add_readiness_gates`` go into the restored template in the same write, so no pod of the restored revision
    is ever created without them (a second patch would race the Deployment controller).
    """
    template = json.loads(json.dumps((replica_set.get("spec") or {}).get("template") or {}))
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(POD_TEMPLATE_HASH, None)
    pod_spec = template.setdefault("spec", {})
    present = [g["conditionType"] for g in pod_spec.get("readinessGates") or []]
    missing = [g for g in dict.fromkeys(add_readiness_gates) if g not in present]
    if missing:
        pod_spec["readinessGates"] = [{"conditionType": g} for g in present + missing]
    if template == (current.get("spec") or {}).get("template"):
        return None  # kubectl: "skipped rollback (current template already matches revision N)"
    current_annotations = current["metadata"].get("annotations") or {}
    annotations = {k: v for k, v in current_annotations.items() if k in _UNDO_KEEP_ANNOTATIONS}
    copied = replica_set["metadata"].get("annotations") or {}
    annotations.update({k: v for k, v in copied.items() if k not in _UNDO_KEEP_ANNOTATIONS})
    return [
        # Precondition, as in the merge patch (kubernetes#63104): 409 if the Deployment changed since it was read.
        {"op": "replace", "path": "/metadata/resourceVersion", "value": current["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
    ]


# ---------------------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------------------
CORE_API, APPS_API, NETWORKING_API = "/api/v1", "/apis/apps/v1", "/apis/networking.k8s.io/v1"
# A watch's read may wait this much longer than the timeoutSeconds the server ends it after (its clock, the network).
WATCH_READ_MARGIN_SECONDS = 10


def _connect_seconds(timeout: Timeout) -> float:
    """The connect part of a request timeout (a pair is (connect, read); a number bounds the whole request)."""
    return timeout[0] if isinstance(timeout, tuple) else timeout
TGB_API = f"/apis/{TGB_GROUP}/{TGB_VERSION}"


def api_path(api: str, plural: str, name: str | None = None, *, namespace: str | None = None, sub: str = "") -> str:
    """``/api/v1/namespaces/shop/pods/web-1/status`` and the like, each name quoted as one path segment."""
    parts = [api]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if sub:
        parts.append(sub)
    return "/".join(parts)


class KubernetesAdapter:
    """``KubernetesPort`` over a ``KubeTransport``, or over a configured ``ApiClient`` (kubernetes client).

    In the rollout Lambdas the transport comes from ``kube_http.EksClusters.http_transport`` (``wiring``); the
    bootstrap's subclass gets an ``ApiClient`` from ``kube_client.KubeClientFactory``. Given an ``ApiClient``,
    the adapter sends its requests through ``kube_client.ApiClientTransport`` and also keeps the client's generated APIs
    (``_core``, ``_apps``, ``_networking``, ``_version``) for a subclass's extra calls (the bootstrap adapter).

    ``native_sleep``: write preStop as the native ``sleep`` action (True) or ``exec sleep N`` (False); None asks
    the API server's version once (>= 1.30). ``now`` stamps ``lastTransitionTime`` on conditions albgate sets.
    """

    def __init__(
        self,
        api: KubeTransport | ApiClient,
        *,
        native_sleep: bool | None = None,
        request_timeout: Timeout = DEFAULT_TIMEOUT,
        now: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(api, KubeTransport):
            self._transport = api
        else:
            self._use_api_client(api)
        self._native_sleep = native_sleep
        self._timeout = request_timeout
        self._now = now

    def _use_api_client(self, api_client: ApiClient) -> None:
        from kubernetes.client import AppsV1Api, CoreV1Api, NetworkingV1Api, VersionApi

        from lambdas.adapters.kube_client import ApiClientTransport

        self._transport: KubeTransport = ApiClientTransport(api_client)
        self._core = CoreV1Api(api_client)
        self._apps = AppsV1Api(api_client)
        self._networking = NetworkingV1Api(api_client)
        self._version = VersionApi(api_client)

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        return self._transport.request(
            method, path, query=query, body=body, content_type=content_type, timeout=self._timeout
        )

    def _json(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A call of the kubernetes client's generated API ``method``, its answer as JSON (subclasses' calls)."""
        response = method(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
        return json.loads(response.data or b"null")

    # --- reads ---------------------------------------------------------------------------------------------
    def get_namespace(self, name: str) -> Namespace:
        with _calling(f"get Namespace {name}"):
            raw = self._call("GET", api_path(CORE_API, "namespaces", name))
        return Namespace(name=raw["metadata"]["name"], labels=dict(raw["metadata"].get("labels") or {}))

    def _read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        with _calling(f"get Deployment {namespace}/{name}"):
            raw: dict[str, Any] = self._call("GET", api_path(APPS_API, "deployments", name, namespace=namespace))
        return raw

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        return _deployment(self._read_deployment(namespace, name))

    def _owned_replica_sets(self, namespace: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        selector = (deployment.get("spec") or {}).get("selector") or {}
        query = label_selector(selector.get("matchLabels") or {}, selector.get("matchExpressions"))
        name = deployment["metadata"]["name"]
        with _calling(f"list ReplicaSets of Deployment {namespace}/{name}"):
            path = api_path(APPS_API, "replicasets", namespace=namespace)
            items = self._call("GET", path, query=[("labelSelector", query)])["items"]
        # The selector can match ReplicaSets of other Deployments: keep those this Deployment controls (by uid).
        uid = deployment["metadata"].get("uid")
        owned = [rs for rs in items if (_controller(rs["metadata"], "Deployment") or {}).get("uid") == uid]
        return sorted(owned, key=lambda rs: _revision(rs["metadata"]))

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]:
        owned = self._owned_replica_sets(namespace, self._read_deployment(namespace, deployment))
        return [_replica_set(rs) for rs in owned]

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        query = label_selector(selector)
        with _calling(f"list Pods in {namespace} matching {query or 'everything'}"):
            path = api_path(CORE_API, "pods", namespace=namespace)
            items = self._call("GET", path, query=[("labelSelector", query)])["items"]
        return [_pod(p) for p in items]

    def list_services(self, namespace: str) -> list[Service]:
        with _calling(f"list Services in {namespace}"):
            items = self._call("GET", api_path(CORE_API, "services", namespace=namespace))["items"]
        return [_service(s) for s in items]

    def list_ingresses(self, namespace: str) -> list[Ingress]:
        with _calling(f"list Ingresses in {namespace}"):
            items = self._call("GET", api_path(NETWORKING_API, "ingresses", namespace=namespace))["items"]
        return [_ingress(i) for i in items]

    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]:
        with _calling(f"list TargetGroupBindings in {namespace}"):
            try:
                answer = self._call("GET", api_path(TGB_API, TGB_PLURAL, namespace=namespace))
            except _answer_errors() as e:
                if e.status != 404:
                    raise
                # A namespaced list answers 200 even for a namespace that does not exist; 404 means the resource
                # type is unknown: the Load Balancer Controller's CRDs are not installed.
                raise NotFoundError(
                    f"list TargetGroupBindings in {namespace}: the resource {TGB_PLURAL}.{TGB_GROUP}/{TGB_VERSION} "
                    "does not exist on this cluster; install the AWS Load Balancer Controller (and its CRDs) first"
                ) from e
        return [_target_group_binding(t) for t in answer.get("items") or []]

    # --- watches -------------------------------------------------------------------------------------------
    def wait_for_pods(self, namespace: str, selector: dict[str, str], seconds: int) -> bool:
        query = label_selector(selector)
        return self._watch(api_path(CORE_API, "pods", namespace=namespace), [("labelSelector", query)], seconds,
                           f"watch Pods in {namespace} matching {query or 'everything'}")

    def wait_for_bindings(self, namespace: str, seconds: int) -> bool:
        return self._watch(api_path(TGB_API, TGB_PLURAL, namespace=namespace), [], seconds,
                           f"watch TargetGroupBindings in {namespace}")

    def _watch(self, path: str, query: list[tuple[str, str]], seconds: int, action: str) -> bool:
        """A watch from the collection's current resourceVersion (a one-item list reads it), ended by the server
        after ``seconds`` (timeoutSeconds): True at its first event. Any event counts, an ERROR one too (e.g. 410
        Gone): the caller looks again either way (docs/facts.md, "Kubernetes watches")."""
        if seconds < 1:
            raise ValueError(f"a watch lasts at least 1 s, not {seconds}")
        with _calling(action):
            listed = self._call("GET", path, query=[*query, ("limit", "1")])
            since = str((listed.get("metadata") or {}).get("resourceVersion") or "")
            event = self._transport.first_event(
                path,
                query=[*query, ("watch", "true"), ("resourceVersion", since), ("timeoutSeconds", str(int(seconds))),
                       ("allowWatchBookmarks", "false")],
                timeout=(_connect_seconds(self._timeout), int(seconds) + WATCH_READ_MARGIN_SECONDS),
            )
        return event is not None

    # --- writes --------------------------------------------------------------------------------------------
    def _supports_native_sleep(self) -> bool:
        if self._native_sleep is None:
            with _calling("get the API server version"):
                info = self._call("GET", "/version/")
            major, minor = (int(re.sub(r"\D", "", str(info.get(k, ""))) or 0) for k in ("major", "minor"))
            self._native_sleep = (major, minor) >= _NATIVE_SLEEP_SINCE
        return self._native_sleep

    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> Deployment:
        current = self._read_deployment(namespace, name)
        native = self._supports_native_sleep() if patch.pre_stop_sleep_seconds else False
        body = render_deployment_patch(current, patch, native)
        if not body:
            return _deployment(current)
        with _calling(f"patch Deployment {namespace}/{name}"):
            path = api_path(APPS_API, "deployments", name, namespace=namespace)
            raw = self._call("PATCH", path, body=body, content_type=STRATEGIC_MERGE)
        return _deployment(raw)

    def rollback_deployment(
        self, namespace: str, name: str, to_revision: int, add_readiness_gates: tuple[str, ...] = (),
        *, expected_resource_version: str | None = None,
    ) -> Deployment:
        """kubectl rollout undo (0: the previous revision), plus ``add_readiness_gates`` in the same write;
        conditional on ``expected_resource_version`` when given (the version the caller checked), else on the
        version read here."""
        current = self._read_deployment(namespace, name)
        where = f"Deployment {namespace}/{name}"
        if (current.get("spec") or {}).get("paused"):
            raise InvalidInputError(
                f"{where} is paused and kubectl refuses to roll back a paused Deployment too: resume it "
                f"(kubectl rollout resume deployment/{name} -n {namespace}) and roll back again"
            )
        history = self._owned_replica_sets(namespace, current)
        revisions = [_revision(rs["metadata"]) for rs in history]
        if to_revision == 0:
            # kubectl's default: the revision before the newest one.
            older = sorted({r for r in revisions if r < max(revisions, default=0)})
            if not older:
                raise NotFoundError(f"{where} has no previous revision to roll back to (revisions: {revisions})")
            to_revision = older[-1]
        target = next((rs for rs in history if _revision(rs["metadata"]) == to_revision), None)
        if target is None:
            # An undo to it already landed (a retry after a 409): the controller renumbered that ReplicaSet.
            target = next((rs for rs in history if to_revision in _revision_history(rs["metadata"])), None)
        if target is None:
            raise NotFoundError(f"{where} has no revision {to_revision} in its history; revisions kept: {revisions}")
        ops = undo_patch(current, target, add_readiness_gates)
        if ops is None:
            return _deployment(current)
        if expected_resource_version:
            # The JSON patch's resourceVersion op is the precondition (as in the merge patch: 409 when stale).
            ops[0] = {**ops[0], "value": expected_resource_version}
        with _calling(f"roll back {where} to revision {to_revision}"):
            path = api_path(APPS_API, "deployments", name, namespace=namespace)
            raw = self._call("PATCH", path, body=ops, content_type=JSON_PATCH)
        return _deployment(raw)

    def set_pod_serving(self, namespace: str, pod: str, serving: bool) -> None:
        # A JSON merge patch of metadata: the label is set either way, the annotation set or removed (null).
        cost = None if serving else str(OUT_OF_SERVICE_DELETION_COST)
        body = {"metadata": {"labels": {SERVING_LABEL: IN_SERVICE if serving else OUT_OF_SERVICE},
                             "annotations": {POD_DELETION_COST: cost}}}
        what = "back into" if serving else "out of"
        with _calling(f"take Pod {namespace}/{pod} {what} its Service's endpoints (label {SERVING_LABEL})"):
            self._call("PATCH", api_path(CORE_API, "pods", pod, namespace=namespace), body=body,
                       content_type=MERGE_PATCH)

    def set_pod_condition(self, namespace: str, pod: str, type_: str, status: str, reason: str, message: str, *,
                          same_status: bool = False) -> None:
        if status not in ("True", "False", "Unknown"):
            raise InvalidInputError(f"pod condition status must be True, False or Unknown, not {status!r}")
        condition: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message}
        if not same_status:
            # lastTransitionTime is when the status last changed: left out, the merge keeps the stored one
            condition["lastTransitionTime"] = _rfc3339(self._now())
        condition["lastProbeTime"] = None
        # status.conditions merges on "type" (patchMergeKey): only this condition changes.
        body = {"status": {"conditions": [condition]}}
        with _calling(f"set condition {type_}={status} on Pod {namespace}/{pod} (pods/status)"):
            path = api_path(CORE_API, "pods", pod, namespace=namespace, sub="status")
            self._call("PATCH", path, body=body, content_type=STRATEGIC_MERGE)
