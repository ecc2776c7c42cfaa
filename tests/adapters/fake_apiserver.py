"""A small fake Kubernetes API server on 127.0.0.1 that answers the calls the Kubernetes adapter and helm make.

Job: let a client's real HTTP path (the kubernetes client's or client-go's serialization, content types, query
strings, auth header, error handling) run against answers shaped the way the API server documents them:
- discovery: ``/version``, ``/api``, ``/apis``, ``/api/v1`` and ``/apis/<group>/<version>`` (the legacy JSON
  documents; a client asking for aggregated discovery gets ``application/json`` and falls back to them, as it
  does against a server without aggregated discovery); ``/openapi/v3`` and one OpenAPI v3 document per group
  version holding each kind's PATCH and its query parameters, no schemas (clients read there that the server
  validates fields itself, ``fieldValidation``, and then skip client-side validation);
- request bodies in JSON, or in protobuf for Secret and ConfigMap (client-go's typed clients send built-in
  kinds so); answers are JSON, which their Accept header also lists;
- paths ``/api/v1/...`` and ``/apis/<group>/<version>/...`` for get, list (with ``labelSelector``), create
  (``POST``), replace (``PUT``), delete and patch, including the ``status`` subresource (a status patch changes
  only status, a main-resource write never does); ``dryRun=All`` validates and answers without storing;
- a create in a namespace that does not exist is a 404, a create of an existing name a 409 AlreadyExists;
- patch bodies by content type: ``application/strategic-merge-patch+json`` (maps merge, ``null`` deletes, lists
  with a patch merge key merge on it, other lists are replaced, ``$patch: replace|delete``),
  ``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json`` (RFC 6902 add, replace, remove,
  test); a strategic merge patch on a custom resource answers 415 as the real server does;
- server-side apply (``application/apply-patch+yaml``, a JSON body): ``fieldManager`` required, creates an
  absent object, tracks which manager owns which field (a map is owned leaf by leaf; the elements of the
  associative lists of ``LIST_MAP_KEYS`` and container and Service ports are owned by key, field by field, so
  two managers' containers or ports sit side by side; any other list is owned and replaced as a whole), answers
  409 with the conflicting fields (``.spec.template.spec.containers[name="web"].image``) when another manager,
  by apply or by update, owns a field the apply changes (``force=true`` takes it over; an equal value is shared
  ownership, no conflict), and removes the fields a manager stopped applying when no other manager owns them,
  an associative list's element with its last owned field. Ownership is kept beside the object (``managers``),
  not rendered as ``metadata.managedFields``;
- a CustomResourceDefinition, once stored, adds its served versions to discovery and to the paths served, and
  gets ``Established`` (``serve_new_crds = False`` holds that back until ``establish_crds()``, as a real
  server takes a moment to start serving a new kind);
- ``fieldValidation=Strict`` refuses top-level fields the kind does not have (400, ``strict decoding error``);
- a ``metadata.resourceVersion`` in the patched or replaced object is a precondition: 409 Conflict when it
  differs;
- a few of the validations the real server applies (every container has an image, a lifecycle handler has
  exactly one action, maxSurge and maxUnavailable not both 0, condition status True/False/Unknown): 422 Invalid;
- every error body is a ``Status`` object (kind, status Failure, message, reason, details, code).

Known gaps (what the real API server does and this fake does not), each with its risk for the tests:
- Nothing writes by itself: no controller or kubelet updates status, so a resourceVersion moves only when a test
  says so (``touch``, ``update``, ``after``). Risk: a client that assumes its own last write is still current
  passes here and meets 409s on a cluster; the tests in ``test_kube_conflicts.py`` put those writes in between.
- Server-side apply: associative lists other than ``LIST_MAP_KEYS`` and ports (e.g. webhooks, tolerations with
  keys, ``+listType=set`` lists such as finalizers) are atomic here; no defaulting beyond a map key's
  ``protocol``; no ``metadata.managedFields`` in answers; an apply's ``Update`` and ``Apply`` entries of one
  manager are not merged; version conversion of ownership is not modelled. Risk: a chart or manifest that
  shares such a list with another manager conflicts here as a whole where the real server would merge it.
- Strategic merge patch: merge keys only for the lists in ``MERGE_KEYS`` (not ports, whose patch merge key is
  ``containerPort``/``port``); no ``retainKeys`` and no ``$setElementOrder`` ordering. Risk: a patch of ports
  replaces the whole list here.
- Validation: only the few rules in ``validate``; no admission webhooks (the controller's pod webhook is not
  called on creates), no immutable-field checks beyond what tests set up. Risk: a request the real server
  refuses with 422 passes here.
- A watch (``watch=true`` on a list) answers the first change of the collection after its ``resourceVersion``
  (``ADDED``, ``MODIFIED`` or ``DELETED``, the object as stored, ``labelSelector`` applied to it), as one line of a
  chunked stream, and then ends the stream; with no change it ends it after ``timeoutSeconds``. A real server
  keeps streaming every later event, sends ``BOOKMARK`` events when asked and answers a resourceVersion older than
  its history with a 410 ``ERROR`` event. Risk: a client that needs a second event from one stream is not
  exercised.
- No field selectors, no pagination (``limit`` is ignored, ``continue`` unknown), no ``resourceVersion``
  semantics on reads; deletes are immediate (no finalizers, no graceful deletion). Risk: a client that pages
  large lists or relies on a terminating object being readable is not exercised.
- Every request is answered at once; no request latency, timeouts, throttling (APF 429) or watch cache lag
  unless injected with ``fail_next``. Risk: a read right after a write here always sees it.

Invariant: the fake knows nothing of albgate: it stores what it is sent and answers like the API server, so a
test that passes here checks the client's requests, not an agreement between two copies of the same idea.
Tests seed objects with ``put``, read them back with ``get`` and ``find``, see field owners with ``managers``,
inspect ``requests`` (each with the status it was answered with), inject failures with ``fail_next``, run code
between two requests with ``before`` and ``after``, and write as another writer would with ``touch`` and
``update``.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (group, version, plural) -> (kind, namespaced). The core group is "".
RESOURCES: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False),
    ("", "v1", "pods"): ("Pod", True),
    ("", "v1", "services"): ("Service", True),
    ("", "v1", "secrets"): ("Secret", True),
    ("", "v1", "configmaps"): ("ConfigMap", True),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True),
    ("apps", "v1", "deployments"): ("Deployment", True),
    ("apps", "v1", "replicasets"): ("ReplicaSet", True),
    ("networking.k8s.io", "v1", "ingresses"): ("Ingress", True),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"): ("MutatingWebhookConfiguration", False),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): ("CustomResourceDefinition", False),
    ("elbv2.k8s.aws", "v1beta1", "targetgroupbindings"): ("TargetGroupBinding", True),
}
CUSTOM_GROUPS = {"elbv2.k8s.aws"}
APPLY_PATCH = "application/apply-patch+yaml"
# A boolean query parameter is true in any spelling Go's strconv.ParseBool reads as true (the kubernetes Python
# client sends force=True).
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
PROTOBUF = "application/vnd.kubernetes.protobuf"
# Top-level fields of the kinds whose fields are not just spec and status (k8s.io/api types.go).
TOP_LEVEL_FIELDS = {
    "Secret": {"data", "stringData", "type", "immutable"},
    "ConfigMap": {"data", "binaryData", "immutable"},
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "MutatingWebhookConfiguration": {"webhooks"},
}
# metadata fields the server sets or that name the object: no manager owns them.
_UNOWNED_METADATA = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                     "managedFields", "selfLink", "deletionTimestamp"}
# Patch merge keys of the list fields the adapter's patches touch (k8s.io/api core/v1 and apps/v1 types.go).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
}
# Associative lists for server-side apply (``+listType=map`` with ``+listMapKey``, k8s.io/api core/v1 types.go
# at v0.34.0; docs/facts.md, "Server-side apply: associative lists"): each element is owned by key, field by
# field. Container ports key on containerPort and protocol, a Service's on port and protocol (_list_map_keys).
LIST_MAP_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
}
CONTAINER_PORT_KEYS = ("containerPort", "protocol")
SERVICE_PORT_KEYS = ("port", "protocol")
KEY_DEFAULTS = {"protocol": "TCP"}  # a key field's default, which the server fills in before merging
_ELEMENT = "k:"  # a path part naming an associative list's element by its key, as in managedFields
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


class ApiError(Exception):
    def __init__(self, code: int, message: str, details: dict[str, Any] | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}
        self.reason = reason or REASONS.get(code, "Unknown")

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    authorization: str
    body: Any
    status: int = 0  # the answer's HTTP status, set once it is sent


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    code: int
    message: str
    reason: str
    times: int


@dataclass
class _Hook:
    method: str
    path: re.Pattern[str]
    action: Callable[[], None]


@dataclass
class FakeApiServer:
    version: tuple[int, int] = (1, 31)
    crds_installed: bool = True
    serve_new_crds: bool = True
    requests: list[Recorded] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        # object key -> {(manager, operation): paths owned}; operation is Apply or Update.
        self._owners: dict[tuple[str, str, str, str], dict[tuple[str, str], set[tuple[str, ...]]]] = {}
        self._crd_resources: dict[tuple[str, str, str], tuple[str, bool]] = {}
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self._after_hooks: list[_Hook] = []
        self._rv = 1000
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._events: list[tuple[int, str, tuple[str, str, str, str], dict[str, Any]]] = []  # rv, type, key, object
        self._serving = threading.local()  # the request being served on this thread (its status is set on answer)
        self._httpd: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # --- state -------------------------------------------------------------------------------------------
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put(self, plural: str, obj: dict[str, Any], group: str = "") -> dict[str, Any]:
        """Store (create or replace) an object as-is, with a fresh resourceVersion; returns the stored copy."""
        with self._lock:
            stored = copy.deepcopy(obj)
            meta = stored.setdefault("metadata", {})
            meta["resourceVersion"] = self._next_rv()
            meta.setdefault("uid", f"uid-{plural}-{meta.get('namespace', '')}-{meta['name']}")
            meta.setdefault("creationTimestamp", "2026-01-02T03:04:05Z")
            meta.setdefault("generation", 1)
            key = (group, plural, meta.get("namespace", ""), meta["name"])
            self._note("MODIFIED" if key in self._objects else "ADDED", key, stored)
            self._objects[key] = stored
            if (group, plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._register_crd(stored)
            return copy.deepcopy(stored)

    def get(self, plural: str, namespace: str, name: str, group: str = "") -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._objects[(group, plural, namespace, name)])

    def find(self, plural: str, group: str = "", namespace: str = "") -> list[dict[str, Any]]:
        """The stored objects of one resource (in one namespace when given), in name order."""
        with self._lock:
            return [copy.deepcopy(o) for (g, p, n, _), o in sorted(self._objects.items())
                    if g == group and p == plural and (not namespace or n == namespace)]

    def managers(self, plural: str, namespace: str, name: str, group: str = "") -> dict[str, str]:
        """Field owners of an object: ``{".data.key": "manager (Apply|Update)"}`` (a shared field lists all)."""
        with self._lock:
            owned: dict[str, list[str]] = {}
            for (manager, operation), paths in self._owners.get((group, plural, namespace, name), {}).items():
                for path in paths:
                    owned.setdefault(_dotted(path), []).append(f"{manager} ({operation})")
            return {path: ", ".join(sorted(who)) for path, who in sorted(owned.items())}

    def touch(self, plural: str, namespace: str, name: str, group: str = "") -> None:
        """Another writer changed the object: its resourceVersion moves on."""
        with self._lock:
            key = (group, plural, namespace, name)
            self._objects[key]["metadata"]["resourceVersion"] = self._next_rv()
            self._note("MODIFIED", key, self._objects[key])

    def update(self, plural: str, namespace: str, name: str, change: Callable[[dict[str, Any]], None],
               group: str = "") -> dict[str, Any]:
        """Another writer (a controller's status or annotation update, the kubelet's pod status) changes the
        stored object: ``change`` edits it in place, its resourceVersion moves on, its generation does not (only
        a change of spec moves that). Returns the stored copy."""
        with self._lock:
            obj = self._objects[(group, plural, namespace, name)]
            spec = copy.deepcopy(obj.get("spec"))
            change(obj)
            if obj.get("spec") != spec:
                obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._note("MODIFIED", (group, plural, namespace, name), obj)
            return copy.deepcopy(obj)

    def establish_crds(self) -> None:
        """The server starts serving the kinds of every stored CustomResourceDefinition."""
        with self._lock:
            self.serve_new_crds = True
            for (group, plural, _, _), obj in list(self._objects.items()):
                if (group, plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
                    self._register_crd(obj)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        code: int,
        message: str = "injected failure",
        reason: str = "",
        times: int = 1,
    ) -> None:
        """The next ``times`` requests matching method and path answer ``code`` with a Status body."""
        self._faults.append(_Fault(method, re.compile(path_regex), code, message, reason, times))

    def before(self, method: str, path_regex: str, action: Callable[[], None]) -> None:
        """Run ``action`` (once) just before serving the next matching request."""
        self._hooks.append(_Hook(method, re.compile(path_regex), action))

    def after(self, method: str, path_regex: str, action: Callable[[], None]) -> None:
        """Run ``action`` (once) just after the next matching request succeeded, before its answer is sent: how a
        controller reacting to a write at once is modelled (its write lands before the client's next request)."""
        self._after_hooks.append(_Hook(method, re.compile(path_regex), action))

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # --- discovery ---------------------------------------------------------------------------------------
    def _served(self) -> dict[tuple[str, str, str], tuple[str, bool]]:
        served = {k: v for k, v in RESOURCES.items() if k[0] not in CUSTOM_GROUPS or self.crds_installed}
        served.update(self._crd_resources)
        return served

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        status = crd.setdefault("status", {})
        status["acceptedNames"] = copy.deepcopy(names)
        status["storedVersions"] = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        established = "True" if self.serve_new_crds else "False"
        status["conditions"] = [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "message": "no conflicts found"},
            {"type": "Established", "status": established, "reason": "InitialNamesAccepted",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "message": "the initial names have been accepted"},
        ]
        if not self.serve_new_crds:
            return
        for v in spec.get("versions") or []:
            if v.get("served"):
                key = (spec["group"], v["name"], names["plural"])
                self._crd_resources[key] = (names["kind"], spec.get("scope") == "Namespaced")

    def _discovery(self, path: str) -> dict[str, Any] | None:
        served = self._served()
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.url[7:]}]}
        if path == "/apis":
            versions: dict[str, list[str]] = {}
            for group, version, _ in served:
                if group and version not in versions.setdefault(group, []):
                    versions[group].append(version)
            groups = [
                {"name": g,
                 "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in sorted(versions.items())
            ]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        group_versions = sorted({(g, v) for g, v, _ in served})
        if path == "/openapi/v3":
            return {"paths": {_gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash={self._rv}"}
                              for g, v in group_versions}}
        m = re.fullmatch(r"(?P<openapi>/openapi/v3)?/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))",
                         path)
        if not m:
            return None
        group, version = m.group("group") or "", m.group("core") or m.group("version")
        if m.group("openapi"):
            return _openapi_v3(group, version, served) if (group, version) in group_versions else None
        resources = [
            {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for (g, v, plural), (kind, namespaced) in sorted(served.items())
            if g == group and v == version
        ]
        if not resources:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # --- serving -----------------------------------------------------------------------------------------
    def serve(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any]:
        answer = self._answer(method, raw_path, headers, raw_body)
        path = urlsplit(raw_path).path
        for hook in list(self._after_hooks):
            if hook.method == method and hook.path.search(path):
                self._after_hooks.remove(hook)
                hook.action()
        return answer

    def _answer(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        content_type = headers.get("content-type", "").split(";")[0].strip()
        body: Any = None
        if raw_body and method != "DELETE":  # a delete's body is DeleteOptions, which the fake does not apply
            if content_type == PROTOBUF:
                body = decode_protobuf(raw_body)
            else:
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    raise ApiError(400, "the request body is not JSON") from None
        recorded = Recorded(method, split.path, query, content_type, headers.get("authorization", ""), body)
        self.requests.append(recorded)
        self._serving.recorded = recorded
        for hook in list(self._hooks):
            if hook.method == method and hook.path.search(split.path):
                self._hooks.remove(hook)
                hook.action()
        for fault in list(self._faults):
            if fault.method == method and fault.path.search(split.path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                raise ApiError(fault.code, fault.message, reason=fault.reason)
        if split.path.rstrip("/") == "/version" and method == "GET":
            major, minor = self.version
            return 200, {
                "major": str(major),
                "minor": f"{minor}+",
                "emulationMajor": str(major),
                "emulationMinor": str(minor),
                "minCompatibilityMajor": str(major),
                "minCompatibilityMinor": str(minor - 1),
                "gitVersion": f"v{major}.{minor}.2-eks-0000000",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24.0",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if method == "GET":
            with self._lock:
                document = self._discovery(split.path.rstrip("/"))
            if document is not None:
                return 200, document
        m = _PATH.match(split.path)
        if not m:
            raise ApiError(404, "the server could not find the requested resource")
        group = m.group("group") or ""
        version = m.group("core") or m.group("version")
        ns, plural, name, sub = m.group("ns"), m.group("plural"), m.group("name"), m.group("sub")
        # /api/v1/namespaces/<name> matches with ns=None, plural=namespaces, name=<name>.
        with self._lock:
            served = self._served()
        if (group, version, plural) not in served:
            raise ApiError(404, "the server could not find the requested resource")
        kind, namespaced = served[(group, version, plural)]
        if (not namespaced and ns is not None) or (namespaced and ns is None and name is not None):
            raise ApiError(404, "the server could not find the requested resource")
        api_version = f"{group}/{version}" if group else version
        dry_run = query.get("dryRun") == ["All"]
        strict = query.get("fieldValidation") == ["Strict"]
        manager = query.get("fieldManager", [""])[0] or _manager_from(headers.get("user-agent", ""))
        if name is None and method == "GET" and query.get("watch", [""])[0] in _TRUE:
            return 200, _WatchStream(lambda: self.watch(group, plural, ns or "", query))
        with self._lock:
            if name is None:
                if method == "GET":
                    return 200, self._list(group, version, plural, kind, ns or "", query)
                if method == "POST":
                    return 201, self._create(group, plural, kind, api_version, ns or "", namespaced, body,
                                             manager, dry_run, strict)
                raise ApiError(405, f"{method} is not supported on a collection here")
            key = (group, plural, ns or "", name)
            if method == "PATCH" and content_type == APPLY_PATCH and sub is None:
                if not query.get("fieldManager"):
                    raise ApiError(400, "PATCH with apply requires a fieldManager")
                return self._server_side_apply(key, kind, api_version, namespaced, body, query["fieldManager"][0],
                                               query.get("force", [""])[0] in _TRUE, dry_run, strict)
            if key not in self._objects:
                raise _not_found(plural, group, name)
            if method == "GET" and sub is None:
                return 200, copy.deepcopy(self._objects[key])
            if method == "PATCH" and sub in (None, "status"):
                return 200, self._patch(key, kind, group, plural, sub, content_type, body, manager)
            if method == "PUT" and sub in (None, "status"):
                return 200, self._replace(key, kind, sub, body, manager, dry_run, strict)
            if method == "DELETE" and sub is None:
                return 200, self._delete(key)
        raise ApiError(405, f"{method} {split.path} is not supported by the fake")

    def _list(
        self, group: str, version: str, plural: str, kind: str, ns: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        selector = parse_selector(query.get("labelSelector", [""])[0])
        items = [
            copy.deepcopy(o)
            for (g, p, n, _), o in sorted(self._objects.items())
            if g == group
            and p == plural
            and (not ns or n == ns)
            and matches(selector, (o.get("metadata") or {}).get("labels") or {})
        ]
        return {
            "kind": f"{kind}List",
            "apiVersion": f"{group}/{version}" if group else version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _check_body(self, kind: str, api_version: str, body: Any, strict: bool, name: str | None = None) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body is not an object")
        if body.get("kind", kind) != kind or body.get("apiVersion", api_version) != api_version:
            raise ApiError(400, f"the body is a {body.get('apiVersion')}, Kind={body.get('kind')}, "
                                f"not a {api_version}, Kind={kind}")
        if name is not None and (body.get("metadata") or {}).get("name", name) != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        if strict:
            known = {"apiVersion", "kind", "metadata"} | TOP_LEVEL_FIELDS.get(kind, {"spec", "status"})
            unknown = sorted(set(body) - known)
            if unknown:
                raise ApiError(400, f'strict decoding error: unknown field "{unknown[0]}"')

    def _require_namespace(self, namespaced: bool, ns: str) -> None:
        if namespaced and ("", "namespaces", "", ns) not in self._objects:
            raise _not_found("namespaces", "", ns)

    def _store(self, key: tuple[str, str, str, str], kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        validate(kind, obj, key[3])
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = self._next_rv()
        self._note("MODIFIED" if key in self._objects else "ADDED", key, obj)
        self._objects[key] = obj
        if key[:2] == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(obj)
        return copy.deepcopy(obj)

    def _note(self, kind: str, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        """A change for the watches: at the current resourceVersion (a deletion takes a new one)."""
        self._events.append((self._rv, kind, key, copy.deepcopy(obj)))
        self._changed.notify_all()

    def watch(self, group: str, plural: str, ns: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
        """The first event of the collection after the watch's resourceVersion that its labelSelector selects,
        waiting up to its timeoutSeconds; None when none came (called without the lock held)."""
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        selector = parse_selector(query.get("labelSelector", [""])[0])
        timeout = float(query.get("timeoutSeconds", ["30"])[0])

        def first() -> dict[str, Any] | None:
            for rv, kind, (g, p, n, _), obj in self._events:
                if rv > since and g == group and p == plural and (not ns or n == ns) and matches(
                        selector, (obj.get("metadata") or {}).get("labels") or {}):
                    return {"type": kind, "object": obj}
            return None

        with self._changed:
            self._changed.wait_for(lambda: first() is not None, timeout)
            return first()

    def _create(
        self, group: str, plural: str, kind: str, api_version: str, ns: str, namespaced: bool, body: Any,
        manager: str, dry_run: bool, strict: bool,
    ) -> dict[str, Any]:
        self._check_body(kind, api_version, body, strict)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _invalid(kind, "", [("metadata.name", "Required value: name or generateName is required")])
            meta["name"] = f"{meta['generateName']}{self._rv:05d}"[-63:]
        if namespaced:
            meta["namespace"] = ns
        self._require_namespace(namespaced, ns)
        key = (group, plural, ns, meta["name"])
        if key in self._objects:
            resource = f"{plural}.{group}" if group else plural
            raise ApiError(409, f'{resource} "{meta["name"]}" already exists',
                           {"name": meta["name"], "group": group, "kind": plural}, reason="AlreadyExists")
        meta.pop("resourceVersion", None)
        meta["uid"] = f"uid-{plural}-{ns}-{meta['name']}"
        meta["creationTimestamp"] = "2026-01-02T03:04:05Z"
        meta["generation"] = 1
        if dry_run:
            validate(kind, obj, meta["name"])
            return obj
        stored = self._store(key, kind, obj)
        self._owners[key] = {(manager, "Update"): set(_leaves(obj, kind=kind))}
        return stored

    def _replace(
        self, key: tuple[str, str, str, str], kind: str, sub: str | None, body: Any, manager: str, dry_run: bool,
        strict: bool,
    ) -> dict[str, Any]:
        current = self._objects[key]
        self._check_body(kind, current.get("apiVersion", body.get("apiVersion", "")), body, strict, key[3])
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise _modified(key)
        if sub == "status":
            result = copy.deepcopy(current)
            result["status"] = copy.deepcopy(body.get("status") or {})
        else:
            result = copy.deepcopy(body)
            meta = result.setdefault("metadata", {})
            for server_set in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                if server_set in current["metadata"]:
                    meta[server_set] = current["metadata"][server_set]
            meta.pop("managedFields", None)
            if "status" in current:
                result["status"] = copy.deepcopy(current["status"])
            if result.get("spec") != current.get("spec"):
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if dry_run:
            validate(kind, result, key[3])
            return result
        stored = self._store(key, kind, result)
        self._record_update(key, kind, current, result, manager)
        return stored

    def _delete(self, key: tuple[str, str, str, str]) -> dict[str, Any]:
        gone = self._objects.pop(key)
        self._owners.pop(key, None)
        self._next_rv()
        self._note("DELETED", key, gone)
        if key[:2] == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = gone.get("spec") or {}
            for v in spec.get("versions") or []:
                self._crd_resources.pop((spec.get("group"), v.get("name"), (spec.get("names") or {}).get("plural")),
                                        None)
        return gone

    def _record_update(
        self, key: tuple[str, str, str, str], kind: str, before: dict[str, Any], after: dict[str, Any], manager: str
    ) -> None:
        """An update makes its manager the owner of every field it changed (the server's field manager)."""
        old, new = _leaves(before, kind=kind), _leaves(after, kind=kind)
        changed = {p for p, v in new.items() if old.get(p, _ABSENT) != v}
        removed = set(old) - set(new)
        owners = self._owners.setdefault(key, {})
        for entry, paths in owners.items():
            if entry != (manager, "Update"):
                paths -= changed
            paths -= removed
        owners.setdefault((manager, "Update"), set()).update(changed)
        self._owners[key] = {entry: paths for entry, paths in owners.items() if paths}

    def _server_side_apply(
        self, key: tuple[str, str, str, str], kind: str, api_version: str, namespaced: bool, body: Any,
        manager: str, force: bool, dry_run: bool, strict: bool,
    ) -> tuple[int, dict[str, Any]]:
        self._check_body(kind, api_version, body, strict, key[3])
        if "kind" not in body or "apiVersion" not in body:
            raise ApiError(400, "apply requires the object's apiVersion and kind")
        applied = _leaves(body, kind=kind)
        current = self._objects.get(key)
        if current is None:
            self._require_namespace(namespaced, key[2])
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            meta.update({"name": key[3], "uid": f"uid-{key[1]}-{key[2]}-{key[3]}",
                         "creationTimestamp": "2026-01-02T03:04:05Z", "generation": 1})
            meta.pop("resourceVersion", None)
            if namespaced:
                meta["namespace"] = key[2]
            if dry_run:
                validate(kind, obj, key[3])
                return 201, obj
            stored = self._store(key, kind, obj)
            self._owners[key] = {(manager, "Apply"): set(applied)}
            return 201, stored
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise _modified(key)
        owners = {entry: set(paths) for entry, paths in self._owners.get(key, {}).items()}
        live = _leaves(current, kind=kind)
        conflicts = sorted(
            (path, other)
            for path, value in applied.items()
            if live.get(path, _ABSENT) != value
            for other, paths in owners.items()
            if other != (manager, "Apply") and path in paths
        )
        if conflicts and not force:
            raise _apply_conflict(conflicts, api_version)
        for path, other in conflicts:
            owners[other].discard(path)
        result = copy.deepcopy(current)
        previous = owners.get((manager, "Apply"), set())
        others = set().union(*(p for e, p in owners.items() if e != (manager, "Apply"))) if owners else set()
        for path in sorted(previous - set(applied) - others, key=len, reverse=True):
            _remove(result, path, keep=set(applied) | others)
        for path, value in applied.items():
            _assign(result, path, copy.deepcopy(value))
        owners[(manager, "Apply")] = set(applied)
        if result.get("spec") != current.get("spec"):
            result["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if dry_run:
            validate(kind, result, key[3])
            return 200, result
        if result == current:
            validate(kind, result, key[3])
            stored = copy.deepcopy(current)  # nothing changed: no write, same resourceVersion
        else:
            stored = self._store(key, kind, result)
        self._owners[key] = {e: p for e, p in owners.items() if p}
        return 200, stored

    def _patch(
        self,
        key: tuple[str, str, str, str],
        kind: str,
        group: str,
        plural: str,
        sub: str | None,
        content_type: str,
        body: Any,
        manager: str = "",
    ) -> dict[str, Any]:
        current = self._objects[key]
        if content_type == "application/strategic-merge-patch+json":
            if group in CUSTOM_GROUPS or (group, plural) in {(g, p) for g, _, p in self._crd_resources}:
                raise ApiError(415, "strategic merge patch is not supported for custom resources")
            patched = strategic_merge(current, body)
        elif content_type == "application/merge-patch+json":
            patched = merge_patch(current, body)
        elif content_type == "application/json-patch+json":
            patched = json_patch(current, body)
        else:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json-patch+json, application/merge-patch+json, "
                f"application/apply-patch+yaml, application/strategic-merge-patch+json "
                f"(got {content_type!r})",
            )
        wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if wanted_rv != current["metadata"]["resourceVersion"]:
            raise _modified(key)
        if sub == "status":
            result = copy.deepcopy(current)
            result["status"] = patched.get("status") or {}
        else:
            result = patched
            if "status" in current:
                result["status"] = copy.deepcopy(current["status"])
            result["metadata"]["uid"] = current["metadata"]["uid"]
            if result.get("spec") != current.get("spec"):
                result["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        stored = self._store(key, kind, result)
        self._record_update(key, kind, current, result, manager or "unknown")
        return stored


_ABSENT = object()


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _openapi_v3(group: str, version: str, served: dict[tuple[str, str, str], tuple[str, bool]]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group version: the item paths and the query parameters their PATCH takes
    (clients read it to learn that the server validates fields itself: ``fieldValidation``)."""
    parameters = [{"name": name, "in": "query", "schema": {"type": "string"}}
                  for name in ("dryRun", "fieldManager", "fieldValidation", "force")]
    paths: dict[str, Any] = {}
    for (g, v, plural), (kind, namespaced) in sorted(served.items()):
        if (g, v) != (group, version):
            continue
        scope = "/namespaces/{namespace}" if namespaced else ""
        paths[f"/{_gv_path(g, v)}{scope}/{plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{kind}",
                "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": kind},
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "unversioned"}, "paths": paths,
            "components": {"schemas": {}}}


def _manager_from(user_agent: str) -> str:
    """The server's default field manager: the user agent up to its first '/'."""
    return user_agent.split("/", 1)[0] or "unknown"


def _not_found(plural: str, group: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(404, f'{resource} "{name}" not found', {"name": name, "group": group, "kind": plural})


def _modified(key: tuple[str, str, str, str]) -> ApiError:
    group, plural, _, name = key
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; please apply your '
        "changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def _apply_conflict(conflicts: list[tuple[tuple[str, ...], tuple[str, str]]], api_version: str) -> ApiError:
    """409 as server-side apply words it: which manager owns which field."""
    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{manager}" using {api_version}',
               "field": _dotted(path)} for path, (manager, _) in conflicts]
    if len(conflicts) == 1:
        (path, (manager, _)), = conflicts
        text = f'Apply failed with 1 conflict: conflict with "{manager}" using {api_version}: {_dotted(path)}'
    else:
        text = f"Apply failed with {len(conflicts)} conflicts: " + "; ".join(
            f'conflict with "{manager}" using {api_version}: {_dotted(path)}' for path, (manager, _) in conflicts)
    return ApiError(409, text, {"causes": causes}, reason="Conflict")


# ---------------------------------------------------------------------------------------------------------
# Field ownership (server-side apply): an object as its leaf fields
# ---------------------------------------------------------------------------------------------------------
def _list_map_keys(kind: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The key fields of the list at ``path`` when its schema makes it an associative list (``+listType=map``
    with ``+listMapKey``, k8s.io/api core/v1 types.go), else None: the list is atomic, owned and replaced whole.
    Only the lists of LIST_MAP_KEYS are associative here; every other list is atomic (a known gap)."""
    name = path[-1] if path else ""
    if name == "ports":
        if kind == "Service" and path == ("spec", "ports"):
            return SERVICE_PORT_KEYS
        return CONTAINER_PORT_KEYS if len(path) >= 2 and _is_element(path[-2]) else None
    return LIST_MAP_KEYS.get(name)


def _is_element(part: str) -> bool:
    return part.startswith(_ELEMENT)


def _element_key(item: Any, keys: tuple[str, ...]) -> str | None:
    """The path part naming one element of an associative list (``k:{"name":"web"}``, as managedFields write
    it), its key fields in schema order; a missing ``protocol`` is its default, TCP. None if a key is missing."""
    if not isinstance(item, dict):
        return None
    values: dict[str, Any] = {}
    for k in keys:
        if k in item:
            values[k] = item[k]
        elif k in KEY_DEFAULTS:
            values[k] = KEY_DEFAULTS[k]
        else:
            return None
    return _ELEMENT + json.dumps(values, separators=(",", ":"))


def _leaves(obj: dict[str, Any], prefix: tuple[str, ...] = (), kind: str = "") -> dict[tuple[str, ...], Any]:
    """Path -> value of every field a manager can own: maps are walked, the elements of an associative list are
    walked by key (each element's fields owned on their own), other lists and scalars are leaves."""
    out: dict[tuple[str, ...], Any] = {}
    for k, v in obj.items():
        if not prefix and k in ("apiVersion", "kind", "status"):
            continue
        if prefix == ("metadata",) and k in _UNOWNED_METADATA:
            continue
        path = (*prefix, k)
        keys = _list_map_keys(kind, path) if isinstance(v, list) else None
        element_keys = [_element_key(item, keys) for item in v] if keys else []
        if isinstance(v, dict) and v:
            out.update(_leaves(v, path, kind))
        elif keys and element_keys and None not in element_keys:
            for part, item in zip(element_keys, v):
                out.update(_leaves(item, (*path, part), kind))
        elif keys and not v:
            continue  # an empty associative list claims no element
        else:
            out[path] = v
    return out


def _dotted(path: tuple[str, ...]) -> str:
    """A field path as the API server prints it: ``.spec.template.spec.containers[name="web"].image``."""
    text = ""
    for part in path:
        if _is_element(part):
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(part[len(_ELEMENT):]).items()) + "]"
        else:
            text += "." + part
    return text


def _child(obj: Any, part: str, create: bool) -> Any:
    """One step down a path: a map's field, or (``k:...``) the element of an associative list with that key."""
    if isinstance(obj, list):
        key = json.loads(part[len(_ELEMENT):])
        for item in obj:
            if _element_key(item, tuple(key)) == part:
                return item
        if not create:
            return None
        item = dict(key)  # a new element starts with its key fields (protocol defaulted, as the server does)
        obj.append(item)
        return item
    if not isinstance(obj, dict):
        return None
    return obj.get(part)


def _assign(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target: Any = obj
    for i, part in enumerate(path[:-1]):
        if isinstance(target, dict) and not isinstance(target.get(part), (dict, list)):
            target[part] = [] if _is_element(path[i + 1]) else {}
        elif isinstance(target, dict) and isinstance(target[part], list) and not _is_element(path[i + 1]):
            target[part] = {}
        target = _child(target, part, create=True)
    if value == {} and isinstance(target.get(path[-1]), dict):
        return  # an empty map applied claims no field: the map's fields set by others stay
    target[path[-1]] = value


def _remove(obj: dict[str, Any], path: tuple[str, ...], keep: set[tuple[str, ...]] = frozenset()) -> None:
    """Remove one field, then the maps left empty by it and the elements of associative lists left with nothing
    but their key fields when no path in ``keep`` (the fields someone still owns) lies inside them."""
    trail: list[tuple[Any, str]] = []
    target: Any = obj
    for part in path[:-1]:
        child = _child(target, part, create=False)
        if not isinstance(child, (dict, list)):
            return
        trail.append((target, part))
        target = child
    in_element = bool(trail) and _is_element(trail[-1][1])
    key_fields = set(json.loads(trail[-1][1][len(_ELEMENT):])) if in_element else set()
    if path[-1] not in key_fields:  # an element's key fields go with the element only
        target.pop(path[-1], None)
    for depth in range(len(trail) - 1, -1, -1):
        parent, part = trail[depth]
        child = _child(parent, part, create=False)
        inside = path[: depth + 1]
        if _is_element(part):
            keys = set(json.loads(part[len(_ELEMENT):]))
            owned = any(p[: depth + 1] == inside for p in keep)
            if isinstance(child, dict) and set(child) <= keys and not owned:
                parent.remove(child)
        elif isinstance(child, (dict, list)) and not child:
            del parent[part]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            code, payload = self.fake.serve(self.command, self.path, headers, raw)
        except ApiError as e:
            code, payload = e.code, e.status()
        except Exception as e:  # a bug in the fake: answer, and let the test's teardown report it
            self.fake.crashes.append(f"{self.command} {self.path}: {type(e).__name__}: {e}")
            code, payload = 500, ApiError(500, f"fake API server crashed: {e!r}").status()
        recorded = getattr(self.fake._serving, "recorded", None)
        if recorded is not None:
            recorded.status, self.fake._serving.recorded = code, None
        if isinstance(payload, _WatchStream):
            self._stream(payload)
            return
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, watch: _WatchStream) -> None:
        """A watch's answer: chunked, one JSON event per line; the stream ends after the first (or with none)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        event = watch.first()
        if event is not None:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve


@dataclass(frozen=True)
class _WatchStream:
    """A watch request's answer, streamed by the handler once the headers are out: ``first`` waits for the event."""

    first: Callable[[], dict[str, Any] | None]


# ---------------------------------------------------------------------------------------------------------
# Patch semantics
# ---------------------------------------------------------------------------------------------------------
def _strip(value: Any) -> Any:
    """A new value from a strategic merge patch: directives and nulls removed."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def strategic_merge(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return _strip(patch)
    if patch.get("$patch") == "replace":
        return _strip(patch)
    result = copy.deepcopy(original)
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering and pruning hints
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = strategic_merge(result[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        else:
            result[key] = _strip(value)
    return result


def _merge_list(original: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = copy.deepcopy(original)
    for item in patch:
        index = next((i for i, o in enumerate(merged) if o.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append(_strip(item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(original: dict[str, Any], ops: Any) -> dict[str, Any]:
    if not isinstance(ops, list):
        raise ApiError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(original)
    for op in ops:
        *parents, last = _pointer(op["path"])
        target: Any = doc
        for part in parents:
            try:
                target = target[int(part)] if isinstance(target, list) else target[part]
            except (KeyError, IndexError, ValueError):
                raise ApiError(422, f"doc is missing path: {op['path']}") from None
        kind = op["op"]
        if kind in ("add", "replace"):
            if kind == "replace" and isinstance(target, dict) and last not in target:
                raise ApiError(422, f"replace operation does not apply: doc is missing key: {op['path']}")
            if isinstance(target, list):
                index = len(target) if last == "-" else int(last)
                if kind == "add":
                    target.insert(index, op["value"])
                else:
                    target[index] = op["value"]
            else:
                target[last] = op["value"]
        elif kind == "remove":
            try:
                del target[int(last) if isinstance(target, list) else last]
            except (KeyError, IndexError):
                raise ApiError(422, f"remove operation does not apply: doc is missing path: {op['path']}") from None
        elif kind == "test":
            actual = target[int(last)] if isinstance(target, list) else target.get(last)
            if actual != op["value"]:
                raise ApiError(422, f"testing value {op['path']} failed")
        else:
            raise ApiError(422, f"unsupported JSON patch operation {kind!r}")
    return doc


# ---------------------------------------------------------------------------------------------------------
# Validation (the part of the API server's that the adapter's patches can trip)
# ---------------------------------------------------------------------------------------------------------
_HANDLER_KINDS = ("exec", "httpGet", "tcpSocket", "sleep")


def _invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    text = "; ".join(f"{f}: {m}" for f, m in causes)
    return ApiError(
        422,
        f'{kind} "{name}" is invalid: {text}',
        {
            "name": name,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "field": f, "message": m} for f, m in causes],
        },
    )


def validate(kind: str, obj: dict[str, Any], name: str) -> None:
    causes: list[tuple[str, str]] = []
    if kind == "Deployment":
        spec = obj.get("spec") or {}
        pod_spec = (spec.get("template") or {}).get("spec") or {}
        for i, c in enumerate(pod_spec.get("containers") or []):
            where = f"spec.template.spec.containers[{i}]"
            if not c.get("image"):
                causes.append((f"{where}.image", "Required value"))
            for hook in ("preStop", "postStart"):
                handler = (c.get("lifecycle") or {}).get(hook)
                if handler is not None and sum(k in handler for k in _HANDLER_KINDS) != 1:
                    causes.append((f"{where}.lifecycle.{hook}", "must specify exactly one handler type"))
        for i, g in enumerate(pod_spec.get("readinessGates") or []):
            if not g.get("conditionType"):
                causes.append((f"spec.template.spec.readinessGates[{i}].conditionType", "Required value"))
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate")
        if strategy.get("type") == "Recreate" and rolling is not None:
            causes.append(("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
        if rolling and rolling.get("maxSurge") in (0, "0%") and rolling.get("maxUnavailable") in (0, "0%"):
            causes.append(("spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"))
    if kind == "Pod":
        for i, c in enumerate((obj.get("status") or {}).get("conditions") or []):
            if c.get("status") not in ("True", "False", "Unknown"):
                causes.append((f"status.conditions[{i}].status", "Unsupported value"))
    if causes:
        raise _invalid(kind, name, causes)


# ---------------------------------------------------------------------------------------------------------
# Protobuf request bodies (client-go's typed clients send built-in kinds as protobuf; the answer is JSON, which
# their Accept header also lists). Field numbers: k8s.io/api core/v1 and k8s.io/apimachinery generated.proto.
# ---------------------------------------------------------------------------------------------------------
_PB_MAGIC = b"k8s\x00"
_OBJECT_META: dict[int, tuple[str, Any]] = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    14: ("finalizers", ("repeated", "string")),
}  # timestamps, owner references and managed fields are the server's: not decoded
_PB_KINDS: dict[str, dict[int, tuple[str, Any]]] = {
    "Secret": {1: ("metadata", _OBJECT_META), 2: ("data", ("map", "bytes")), 3: ("type", "string"),
               4: ("stringData", ("map", "string")), 5: ("immutable", "bool")},
    "ConfigMap": {1: ("metadata", _OBJECT_META), 2: ("data", ("map", "string")),
                  3: ("binaryData", ("map", "bytes")), 4: ("immutable", "bool")},
}


def _pb_varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(buf):
            raise ApiError(400, "truncated protobuf body")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i


def _pb_fields(buf: bytes) -> list[tuple[int, Any]]:
    fields, i = [], 0
    while i < len(buf):
        key, i = _pb_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _pb_varint(buf, i)
        elif wire == 2:
            size, i = _pb_varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i:i + size], i + size
        else:
            raise ApiError(400, f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _pb_value(kind: Any, raw: Any) -> Any:
    if kind == "string":
        return raw.decode()
    if kind == "bytes":
        return base64.b64encode(raw).decode()  # JSON carries bytes as base64
    if kind == "int":
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind == "bool":
        return bool(raw)
    return _pb_message(kind, raw)


def _pb_message(schema: dict[int, tuple[str, Any]], buf: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, raw in _pb_fields(buf):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = dict(_pb_fields(raw))
            out.setdefault(name, {})[entry.get(1, b"").decode()] = _pb_value(kind[1], entry.get(2, b""))
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            out.setdefault(name, []).append(_pb_value(kind[1], raw))
        else:
            out[name] = _pb_value(kind, raw)
    return out


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """A protobuf request body (the ``k8s\\0`` envelope around a runtime.Unknown) as the JSON object it stands for."""
    if not body.startswith(_PB_MAGIC):
        raise ApiError(400, "the protobuf body does not start with the k8s envelope")
    envelope = dict(_pb_fields(body[len(_PB_MAGIC):]))
    type_meta = {n: v.decode() for n, v in _pb_fields(envelope.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if kind not in _PB_KINDS:
        raise ApiError(415, f"the fake decodes protobuf bodies of {', '.join(sorted(_PB_KINDS))} only, not {kind!r}")
    return {"apiVersion": api_version, "kind": kind, **_pb_message(_PB_KINDS[kind], envelope.get(2, b""))}


# ---------------------------------------------------------------------------------------------------------
# Label selectors (the query syntax: a=b, a!=b, a in (x,y), a notin (x), a, !a)
# ---------------------------------------------------------------------------------------------------------
def parse_selector(text: str) -> list[tuple[str, str, set[str]]]:
    requirements: list[tuple[str, str, set[str]]] = []
    for part in re.findall(r"(?:[^,(]|\([^)]*\))+", text):
        part = part.strip()
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", part):
            requirements.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}))
        elif m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", part):
            requirements.append((m.group(1), "!=" if m.group(2) == "!=" else "=", {m.group(3)}))
        elif part.startswith("!"):
            requirements.append((part[1:], "!", set()))
        elif part:
            requirements.append((part, "exists", set()))
    return requirements


def matches(requirements: list[tuple[str, str, set[str]]], labels: dict[str, str]) -> bool:
    for key, op, values in requirements:
        present = key in labels
        ok = {
            "=": present and labels.get(key) in values,
            "in": present and labels.get(key) in values,
            "!=": not present or labels.get(key) not in values,
            "notin": not present or labels.get(key) not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True
