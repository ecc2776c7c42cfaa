"""A small fake Kubernetes API server on 127.0.0.1 that answers the calls the Kubernetes adapter makes.

Job: let the adapter's real HTTP path (the kubernetes client's serialization, content types, query strings,
auth header, error handling) run against answers shaped the way the API server documents them:
- paths ``/api/v1/...`` and ``/apis/<group>/<version>/...`` for get, list (with ``labelSelector``) and patch,
  including the ``status`` subresource (a status patch changes only status, a main-resource patch never does);
- patch bodies by content type: ``application/strategic-merge-patch+json`` (maps merge, ``null`` deletes, lists
  with a patch merge key merge on it, other lists are replaced, ``$patch: replace|delete``),
  ``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json`` (RFC 6902 add, replace, remove,
  test); a strategic merge patch on a custom resource answers 415 as the real server does;
- a ``metadata.resourceVersion`` in the patched object is a precondition: 409 Conflict when it differs;
- a few of the validations the real server applies (every container has an image, a lifecycle handler has
  exactly one action, maxSurge and maxUnavailable not both 0, condition status True/False/Unknown): 422 Invalid;
- every error body is a ``Status`` object (kind, status Failure, message, reason, details, code).

Invariant: the fake knows nothing of albgate: it stores what it is sent and answers like the API server, so a
test that passes here checks the adapter's requests, not an agreement between two copies of the same idea.
Tests seed objects with ``put``, read them back with ``get``, inspect ``requests``, inject failures with
``fail_next`` and run code between two requests with ``before``.
"""

from __future__ import annotations

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
    ("apps", "v1", "deployments"): ("Deployment", True),
    ("apps", "v1", "replicasets"): ("ReplicaSet", True),
    ("networking.k8s.io", "v1", "ingresses"): ("Ingress", True),
    ("elbv2.k8s.aws", "v1beta1", "targetgroupbindings"): ("TargetGroupBinding", True),
}
CUSTOM_GROUPS = {"elbv2.k8s.aws"}
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
    requests: list[Recorded] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self._rv = 1000
        self._lock = threading.RLock()
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
            self._objects[(group, plural, meta.get("namespace", ""), meta["name"])] = stored
            return copy.deepcopy(stored)

    def get(self, plural: str, namespace: str, name: str, group: str = "") -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._objects[(group, plural, namespace, name)])

    def touch(self, plural: str, namespace: str, name: str, group: str = "") -> None:
        """Another writer changed the object: its resourceVersion moves on."""
        with self._lock:
            self._objects[(group, plural, namespace, name)]["metadata"]["resourceVersion"] = self._next_rv()

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

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # --- serving -----------------------------------------------------------------------------------------
    def serve(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        content_type = headers.get("content-type", "").split(";")[0].strip()
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                raise ApiError(400, "the request body is not JSON") from None
        self.requests.append(Recorded(method, split.path, query, content_type, headers.get("authorization", ""), body))
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
        m = _PATH.match(split.path)
        if not m:
            raise ApiError(404, "the server could not find the requested resource")
        group = m.group("group") or ""
        version = m.group("core") or m.group("version")
        ns, plural, name, sub = m.group("ns"), m.group("plural"), m.group("name"), m.group("sub")
        # /api/v1/namespaces/<name> matches with ns=None, plural=namespaces, name=<name>.
        if (group, version, plural) not in RESOURCES or (group in CUSTOM_GROUPS and not self.crds_installed):
            raise ApiError(404, "the server could not find the requested resource")
        kind, namespaced = RESOURCES[(group, version, plural)]
        if (not namespaced and ns is not None) or (namespaced and ns is None and name is not None):
            raise ApiError(404, "the server could not find the requested resource")
        with self._lock:
            if name is None:
                if method != "GET":
                    raise ApiError(405, f"{method} is not supported on a collection here")
                return 200, self._list(group, version, plural, kind, ns or "", query)
            key = (group, plural, ns or "", name)
            if key not in self._objects:
                resource = f"{plural}.{group}" if group else plural
                raise ApiError(404, f'{resource} "{name}" not found', {"name": name, "group": group, "kind": plural})
            if method == "GET" and sub is None:
                return 200, copy.deepcopy(self._objects[key])
            if method == "PATCH" and sub in (None, "status"):
                return 200, self._patch(key, kind, group, plural, sub, content_type, body)
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

    def _patch(
        self,
        key: tuple[str, str, str, str],
        kind: str,
        group: str,
        plural: str,
        sub: str | None,
        content_type: str,
        body: Any,
    ) -> dict[str, Any]:
        current = self._objects[key]
        if content_type == "application/strategic-merge-patch+json":
            if group in CUSTOM_GROUPS:
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
            resource = f"{plural}.{group}" if group else plural
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {resource} "{key[3]}": the object has been modified; please '
                "apply your changes to the latest version and try again",
                {"name": key[3], "group": group, "kind": plural},
            )
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
        validate(kind, result, key[3])
        result["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[key] = result
        return copy.deepcopy(result)


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
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve


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
