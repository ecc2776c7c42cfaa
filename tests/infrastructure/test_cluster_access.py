"""Kubernetes RBAC shipped with albgate: the checked-in manifest is the generated one, and it grants no more than
the adapters use (read in the app namespaces; patch deployments and pods/status)."""

from __future__ import annotations

import pytest
import yaml

from stacks.config import parse_config
from stacks.constructs.cluster_access import (
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
    assert kinds == ["ClusterRole", "ClusterRole", "RoleBinding", "RoleBinding"]
    for d in rbac_docs:
        if d["kind"] == "RoleBinding":
            assert d["metadata"]["namespace"] == "readiness"
            group = d["roleRef"]["name"]
            assert d["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]


def _rules(rbac_docs, name):
    (role,) = [d for d in rbac_docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name]
    return role["rules"]


def test_read_role_only_reads(rbac_docs):
    for rule in _rules(rbac_docs, READ_GROUP):
        assert set(rule["verbs"]) <= READ_VERBS, rule


def test_rollout_role_writes_only_deployments_and_pod_status(rbac_docs):
    writes = {
        (group, resource, verb)
        for rule in _rules(rbac_docs, ROLLOUT_GROUP)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if verb not in READ_VERBS
    }
    assert writes == {("apps", "deployments", "patch"), ("", "pods/status", "patch")}


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
        ("read", True, []),
        ("rollout", True, [ROLLOUT_GROUP]),
        ("none", False, []),
        ("read", False, [READ_GROUP]),
        ("rollout", False, [READ_GROUP, ROLLOUT_GROUP]),
    ],
    ids=["none-api", "read-api", "rollout-api", "none-aws-auth", "read-aws-auth", "rollout-aws-auth"],
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
