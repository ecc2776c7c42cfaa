"""The RBAC evaluator itself (tests/iam/kube_rbac.py): requests read as the API server reads them, and rules
matched as the RBAC authorizer matches them, so the recorded-requests check means what it says."""

from __future__ import annotations

import pytest

from tests.adapters.fake_apiserver import APPLY_PATCH, Recorded
from tests.iam.kube_rbac import DISCOVERY, Attributes, Grant, allowed_by, attributes_of, rbac_grants


def _request(method: str, path: str, query: dict | None = None, content_type: str = "application/json",
             status: int = 200) -> Recorded:
    return Recorded(method, path, query or {}, content_type, "", None, status)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_request("GET", "/api/v1/namespaces/shop"), ("get", "", "namespaces", "", "shop", "shop")),
        (_request("GET", "/api/v1/namespaces"), ("list", "", "namespaces", "", "", "")),
        (_request("GET", "/api/v1/namespaces/shop/pods"), ("list", "", "pods", "", "shop", "")),
        (_request("GET", "/api/v1/namespaces/shop/pods", {"watch": ["true"]}), ("watch", "", "pods", "", "shop", "")),
        (_request("PATCH", "/api/v1/namespaces/shop/pods/p-1/status"), ("patch", "", "pods", "status", "shop", "p-1")),
        (_request("POST", "/api/v1/namespaces/shop/pods", {"dryRun": ["All"]}), ("create", "", "pods", "", "shop", "")),
        (_request("GET", "/apis/apps/v1/namespaces/shop/deployments/web"),
         ("get", "apps", "deployments", "", "shop", "web")),
        (_request("GET", "/apis/elbv2.k8s.aws/v1beta1/namespaces/shop/targetgroupbindings"),
         ("list", "elbv2.k8s.aws", "targetgroupbindings", "", "shop", "")),
        (_request("GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/hook"),
         ("get", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "hook")),
        (_request("DELETE", "/api/v1/namespaces/shop/pods"), ("deletecollection", "", "pods", "", "shop", "")),
        (_request("PUT", "/api/v1/namespaces/shop/finalize"), ("update", "", "namespaces", "finalize", "shop", "shop")),
    ],
    ids=["one-namespace", "all-namespaces", "list-pods", "watch-pods", "pod-status", "dry-run-create",
         "get-deployment", "list-custom-resource", "cluster-scoped-get", "delete-collection", "namespace-finalize"],
)
def test_a_request_is_read_as_the_api_server_reads_it(request_, expected) -> None:
    # Given a request / When read / Then verb, group, resource, subresource, namespace and name are the server's
    (asked,) = attributes_of(request_)
    assert (asked.verb, asked.api_group, asked.resource, asked.subresource, asked.namespace, asked.name) == expected
    assert asked.resource_request


@pytest.mark.parametrize("path", ["/version/", "/api", "/apis", "/apis/apps/v1", "/openapi/v3"])
def test_discovery_is_a_non_resource_request_every_authenticated_user_may_make(path) -> None:
    (asked,) = attributes_of(_request("GET", path))
    assert not asked.resource_request and allowed_by([DISCOVERY], asked) is DISCOVERY


NAMED = Grant("named", ({"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["shop"],
                         "verbs": ["get", "patch", "create"]},))
IN_SHOP = Grant("in shop", ({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
                            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]}),
                frozenset({"shop"}))


@pytest.mark.parametrize(
    ("asked", "grant"),
    [
        (Attributes("get", "", True, "", "namespaces", "", "shop", "shop"), NAMED),
        (Attributes("get", "", True, "", "namespaces", "", "web", "web"), None),
        # a create has no name to match resourceNames against (the docs: create cannot be limited to names)
        (Attributes("create", "", True, "", "namespaces", "", "", ""), None),
        (Attributes("patch", "", True, "apps", "deployments", "", "shop", "web"), IN_SHOP),
        (Attributes("patch", "", True, "apps", "deployments", "", "web", "web"), None),
        (Attributes("patch", "", True, "", "pods", "status", "shop", "p-1"), IN_SHOP),
        (Attributes("patch", "", True, "", "pods", "", "shop", "p-1"), None),
        (Attributes("get", "", True, "apps", "deployments", "", "shop", "web"), None),
    ],
    ids=["named-namespace", "other-namespace", "create-by-name", "patch-in-namespace", "patch-elsewhere",
         "pod-status-subresource", "pod-itself", "verb-not-granted"],
)
def test_rules_match_as_the_rbac_authorizer_matches_them(asked, grant) -> None:
    assert allowed_by([NAMED, IN_SHOP], asked) is grant


def test_a_server_side_apply_that_created_also_asks_create() -> None:
    created = _request("PATCH", "/api/v1/namespaces/shop", content_type=APPLY_PATCH, status=201)
    assert [a.verb for a in attributes_of(created)] == ["patch", "create"]
    # and the name travels with that create: a resourceNames rule can match it
    assert allowed_by([NAMED], attributes_of(created)[1]) is NAMED


def test_bindings_grant_their_roles_rules_in_their_scope_to_their_groups_only() -> None:
    manifest = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: writer}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: writer, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: writers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: writer-everywhere}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: admins}]
"""
    patch_in = {ns: Attributes("patch", "", True, "apps", "deployments", "", ns, "web") for ns in ("shop", "web")}
    writers, admins, others = (rbac_grants([manifest], [g]) for g in ("writers", "admins", "others"))
    assert allowed_by(writers, patch_in["shop"]) and not allowed_by(writers, patch_in["web"])
    assert allowed_by(admins, patch_in["shop"]) and allowed_by(admins, patch_in["web"])
    assert others == []
