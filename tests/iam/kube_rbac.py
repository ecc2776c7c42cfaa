"""An RBAC evaluator for the requests the handlers sent the (fake) Kubernetes API server.

Job: turn a recorded request into what the API server's authorizer decides on (verb, API group, resource,
subresource, namespace, name; k8s.io/apiserver's RequestInfoFactory), then decide it as the RBAC authorizer does
for one identity: the rules of every ClusterRole or Role its groups are bound to, a RoleBinding's only in its own
namespace, plus the EKS access policies of its access entry, each acting as a binding in its access scope, plus
the discovery every authenticated user has.

What the API server does that matters here (docs/facts.md, "Kubernetes RBAC and EKS access policies"):
- a GET without a name is ``list`` (``watch`` with ``watch=true``), a POST ``create``, a PATCH ``patch``;
  ``dryRun=All`` changes nothing about authorization;
- a request for one Namespace (``/api/v1/namespaces/<name>``) carries that name as its namespace, so a
  RoleBinding in it covers that one Namespace object;
- a server-side apply that creates its object is also authorized as ``create``, with the object's name (the
  recorded answer is 201 Created);
- ``resourceNames`` never match a request without a name (a POST create): that is why a create cannot be limited
  to names.

Invariant: knows nothing of albgate: it reads RBAC manifests and policy rules as given, so a test that passes
here checks the rendered RBAC against the requests, not albgate's idea of itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tests.adapters.fake_apiserver import APPLY_PATCH, Recorded

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")  # /namespaces/<ns>/status is the Namespace's own subresource
# The default discovery roles bound to system:authenticated (system:discovery, system:basic-user,
# system:public-info-viewer): GET on these non-resource URLs.
DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                  "/version", "/version/"]
ALLOW_ALL_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
]


@dataclass(frozen=True)
class Attributes:
    """One authorization question, as k8s.io/apiserver's authorizer.AttributesRecord holds it."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        if not self.resource_request:
            return f"{self.verb} {self.path}"
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        group = f".{self.api_group}" if self.api_group else ""
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{group} {self.name or '(collection)'}{where}"


@dataclass(frozen=True)
class Grant:
    """Rules an identity holds; ``namespaces`` None: everywhere (a ClusterRoleBinding), else only there."""

    source: str
    rules: tuple[dict[str, Any], ...]
    namespaces: frozenset[str] | None = None


def attributes_of(request: Recorded) -> list[Attributes]:
    """What the authorizer is asked for one request: one question, two for a server-side apply that created."""
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        rest = []
    if not rest:  # discovery, /version, /openapi: a non-resource request
        return [Attributes(request.method.lower(), request.path, False)]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]  # /namespaces/<ns>/<resource>/...; else the Namespace itself, named <ns>
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    if request.method == "GET":
        verb = "get" if name else ("watch" if request.query.get("watch") in (["true"], ["1"]) else "list")
    elif request.method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS[request.method]
    asked = [Attributes(verb, request.path, True, group, resource, subresource, namespace, name)]
    if request.method == "PATCH" and request.content_type == APPLY_PATCH and request.status == 201:
        asked.append(Attributes("create", request.path, True, group, resource, subresource, namespace, name))
    return asked


def _matches(values: Iterable[str], wanted: str) -> bool:
    values = list(values)
    return "*" in values or wanted in values


def _url_matches(urls: Iterable[str], path: str) -> bool:
    return any(u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])) for u in urls)


def rule_allows(rule: dict[str, Any], asked: Attributes) -> bool:
    """k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac RuleAllows."""
    if not _matches(rule.get("verbs", []), asked.verb):
        return False
    if not asked.resource_request:
        return _url_matches(rule.get("nonResourceURLs", []), asked.path)
    combined = asked.resource + (f"/{asked.subresource}" if asked.subresource else "")
    resources = rule.get("resources", [])
    resource_ok = "*" in resources or combined in resources or (
        bool(asked.subresource) and f"*/{asked.subresource}" in resources)
    names = rule.get("resourceNames") or []
    return (_matches(rule.get("apiGroups", []), asked.api_group) and resource_ok
            and (not names or asked.name in names))


def allowed_by(grants: Sequence[Grant], asked: Attributes) -> Grant | None:
    """The first grant that allows the question, or None (the API server answers 403)."""
    for grant in grants:
        if grant.namespaces is not None and (not asked.resource_request or asked.namespace not in grant.namespaces):
            continue
        if any(rule_allows(rule, asked) for rule in grant.rules):
            return grant
    return None


def rbac_grants(manifests: Iterable[str], groups: Iterable[str]) -> list[Grant]:
    """The grants of these groups in RBAC manifests (YAML, several documents each)."""
    groups = set(groups)
    docs = [d for text in manifests for d in yaml.safe_load_all(text) if d]
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d.get("rules") or []
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    grants = []
    for d in docs:
        if d["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s.get("kind") == "Group" and s.get("name") in groups for s in d.get("subjects") or []):
            continue
        namespace = d["metadata"].get("namespace", "") if d["kind"] == "RoleBinding" else ""
        ref = d["roleRef"]
        rules = roles[(ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])]
        grants.append(Grant(f"{d['kind']} {namespace + '/' if namespace else ''}{d['metadata']['name']} -> "
                            f"{ref['kind']} {ref['name']}", tuple(rules),
                            frozenset([namespace]) if d["kind"] == "RoleBinding" else None))
    return grants


DISCOVERY = Grant("system:authenticated discovery roles", ({"nonResourceURLs": DISCOVERY_URLS, "verbs": ["get"]},))
