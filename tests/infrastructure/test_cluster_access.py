"""Kubernetes RBAC shipped with albgate: the checked-in manifest is the generated one, and it grants no more than
the adapters use (read in the app namespaces; patch pods and pods/status; patch deployments); the bootstrap labels only the
configured namespaces and creates none. tests/iam/test_kubernetes_rbac.py checks every recorded request against
the same manifests."""

from __future__ import annotations

import pytest
import yaml

from stacks.config import parse_config
from stacks.constructs.bootstrap_specs import BOOTSTRAP_GROUP, namespace_rules, render_bootstrap_rbac
from stacks.constructs.cluster_access import (
    READ_EXTRA_GROUP,
    PODS_GROUP,
    READ_GROUP,
    ROLLOUT_GROUP,
    groups_for,
    map_roles_yaml,
    render_rbac,
)
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS
from tests.conftest import ROOT

READ_VERBS = {"get", "list", "watch"}


@pytest.fixture(scope="module")
def rbac_docs(example_config):
    config = parse_config(example_config)
    text = (ROOT / "deploy" / "rbac.yaml").read_text()
    # The checked-in file is exactly what the generator writes for the example (no hand edits drift in)
    assert text == render_rbac(config.namespaces("my-cluster"))
    return list(yaml.safe_load_all(text))


def test_only_namespaced_bindings(rbac_docs):
    kinds = sorted(d["kind"] for d in rbac_docs)
    assert kinds == ["ClusterRole"] * 4 + ["RoleBinding"] * 4
    for d in rbac_docs:
        if d["kind"] == "RoleBinding":
            assert d["metadata"]["namespace"] == "readiness"
            group = d["roleRef"]["name"]
            assert d["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]


def _rules(rbac_docs, name):
    (role,) = [d for d in rbac_docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name]
    return role["rules"]


@pytest.mark.parametrize("group", [READ_GROUP, READ_EXTRA_GROUP])
def test_read_roles_only_read(rbac_docs, group):
    for rule in _rules(rbac_docs, group):
        assert set(rule["verbs"]) <= READ_VERBS, rule


def test_target_group_bindings_are_read_where_every_reading_function_reads_them(rbac_docs):
    # Given the LBC's custom resource, which the EKS view policy does not cover
    def readers(resource):
        return [g for g in (READ_GROUP, READ_EXTRA_GROUP, PODS_GROUP, ROLLOUT_GROUP)
                if any(resource in r["resources"] for r in _rules(rbac_docs, g))]

    # Then it is in the group both modes give every function that reads, and nowhere else
    assert readers("targetgroupbindings") == [READ_EXTRA_GROUP]
    assert readers("namespaces") == [READ_EXTRA_GROUP]


def _writes(rbac_docs, role):
    return {
        (group, resource, verb)
        for rule in _rules(rbac_docs, role)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if verb not in READ_VERBS
    }


def test_pods_role_patches_only_pods_and_their_status(rbac_docs):
    assert _writes(rbac_docs, PODS_GROUP) == {("", "pods", "patch"), ("", "pods/status", "patch")}


def test_rollout_role_patches_only_deployments(rbac_docs):
    assert _writes(rbac_docs, ROLLOUT_GROUP) == {("apps", "deployments", "patch")}


def test_no_wildcards(rbac_docs):
    for d in rbac_docs:
        for rule in d.get("rules", []):
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule


def test_secrets_are_never_readable(rbac_docs):
    resources = {r for d in rbac_docs for rule in d.get("rules", []) for r in rule["resources"]}
    assert "secrets" not in resources


@pytest.mark.parametrize(
    ("kube", "access_entry", "groups"),
    [
        ("none", True, []),
        ("read", True, [READ_EXTRA_GROUP]),
        ("pods", True, [READ_EXTRA_GROUP, PODS_GROUP]),
        ("rollout", True, [READ_EXTRA_GROUP, PODS_GROUP, ROLLOUT_GROUP]),
        ("none", False, []),
        ("read", False, [READ_GROUP, READ_EXTRA_GROUP]),
        ("pods", False, [READ_GROUP, READ_EXTRA_GROUP, PODS_GROUP]),
        ("rollout", False, [READ_GROUP, READ_EXTRA_GROUP, PODS_GROUP, ROLLOUT_GROUP]),
    ],
    ids=["none-api", "read-api", "pods-api", "rollout-api", "none-aws-auth", "read-aws-auth", "pods-aws-auth",
         "rollout-aws-auth"],
)
def test_groups_per_access_kind(kube, access_entry, groups):
    spec = next(s for s in ROLLOUT_HANDLERS if s.kube == kube)
    assert groups_for(spec, access_entry=access_entry) == groups


def test_map_roles_text_is_the_aws_auth_list_shape():
    # Given two roles / When rendered / Then it is a YAML list aws-auth's mapRoles accepts
    text = map_roles_yaml(
        [
            ("arn:aws:iam::123456789012:role/a", "albgate:{{SessionName}}", [READ_GROUP]),
            ("arn:aws:iam::123456789012:role/b", "albgate:{{SessionName}}", [READ_GROUP, ROLLOUT_GROUP]),
        ]
    )
    assert yaml.safe_load(text) == [
        {"rolearn": "arn:aws:iam::123456789012:role/a", "username": "albgate:{{SessionName}}", "groups": [READ_GROUP]},
        {
            "rolearn": "arn:aws:iam::123456789012:role/b",
            "username": "albgate:{{SessionName}}",
            "groups": [READ_GROUP, ROLLOUT_GROUP],
        },
    ]


@pytest.mark.parametrize(
    ("namespaces", "names"),
    [(["readiness"], ["readiness"]), (["web", "shop", "web"], ["shop", "web"])],
    ids=["one", "several-deduplicated"],
)
def test_the_bootstrap_gets_and_patches_the_configured_namespaces_and_creates_none(namespaces, names):
    # Given the bootstrap RBAC for the app namespaces
    docs = list(yaml.safe_load_all(render_bootstrap_rbac(namespaces)))
    (role,) = [d for d in docs if d["metadata"]["name"] == f"{BOOTSTRAP_GROUP}-namespaces" and d["kind"] == "ClusterRole"]
    (binding,) = [d for d in docs if d["metadata"]["name"] == f"{BOOTSTRAP_GROUP}-namespaces"
                  and d["kind"] == "ClusterRoleBinding"]
    # Then its cluster-wide binding reaches those Namespace objects by name, to read and label them, never create
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": names,
                              "verbs": ["get", "patch"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    creates = [(r["resources"], d["metadata"]["name"]) for d in docs if d["kind"] == "ClusterRole"
               for r in d["rules"] if "create" in r["verbs"] and "namespaces" in r["resources"]]
    assert creates == []


def test_no_namespace_is_never_all_namespaces():
    # Given no namespace / Then no rule: an empty resourceNames list would allow every namespace
    with pytest.raises(ValueError, match="at least one app namespace"):
        namespace_rules([])
