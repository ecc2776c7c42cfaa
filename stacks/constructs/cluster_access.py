"""Kubernetes access for albgate's function roles, least privilege, namespace by namespace.

Invariant: a function reaches only the namespaces of the applications configured for a cluster, and only
with what its ``HandlerSpec.kube`` names:

- ``read``: EKS access policy ``AmazonEKSViewPolicy`` scoped to those namespaces (get/list/watch, like the
  Kubernetes ``view`` role).
- ``rollout``: the same view policy, plus the Kubernetes group ``albgate-rollout``, which ``deploy/rbac.yaml``
  binds in each namespace to exactly: patch deployments, patch pods/status, read TargetGroupBindings. No EKS
  managed access policy is that narrow: the next one up, ``AmazonEKSEditPolicy``, also lets a principal create
  and delete most namespaced objects and read Secrets.
- ``none``: no access entry at all.

When a cluster's authentication mode is CONFIG_MAP there are no access entries (the API would refuse them):
the stack outputs the exact aws-auth ``mapRoles`` entries instead, mapping every role to the groups
``albgate-read`` (+ ``albgate-rollout``) that the same ``deploy/rbac.yaml`` binds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import yaml
from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_eks as eks
from constructs import Construct

from stacks.config import AlbgateConfig, ClusterConfig
from stacks.constructs.bootstrap_specs import BOOTSTRAP_KUBE_ACCESS, CLUSTER_ADMIN_POLICY, bootstrap_groups
from stacks.constructs.handler_specs import HandlerSpec
from stacks.constructs.lambda_function import AlbgateFunction

READ_GROUP = "albgate-read"
ROLLOUT_GROUP = "albgate-rollout"
VIEW_POLICY = "AmazonEKSViewPolicy"

# What the groups may do: exactly the calls of lambdas/adapters/kubernetes.py that lambdas/domain makes.
# Read = what the access-entry path gets from AmazonEKSViewPolicy (the aws-auth path binds this instead).
READ_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get", "list", "watch"]},
    # Preflight reads its namespace; bound by a RoleBinding, this allows getting that one Namespace object only.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]
ROLLOUT_RULES: list[dict] = [
    # Start Step / Roll Back / Finish: maxSurge, image, albgate's readiness gate in the template, annotations.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
    # Release Old Pods: set albgate's readiness-gate condition True on a step's healthy pods.
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    # Preflight: which target groups serve the Service (the LBC's TargetGroupBinding; not in `view`).
    {"apiGroups": ["elbv2.k8s.aws"], "resources": ["targetgroupbindings"], "verbs": ["get", "list", "watch"]},
    # Preflight: its own namespace; the Namespace object is cluster-scoped, so do not rely on the namespace-scoped
    # view policy for it.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]


def cluster_arn(stack: Stack, cluster: ClusterConfig) -> str:
    return stack.format_arn(
        service="eks",
        resource="cluster",
        resource_name=cluster.name,
        region=cluster.region,
        account=cluster.account or stack.account,
    )


def view_policy_arn(stack: Stack) -> str:
    return f"arn:{stack.partition}:eks::aws:cluster-access-policy/{VIEW_POLICY}"


def groups_for(spec: HandlerSpec, *, access_entry: bool) -> list[str]:
    """Kubernetes groups of a function: reads come from the view policy with access entries, else from RBAC."""
    if spec.kube == "none":
        return []
    groups = [] if access_entry else [READ_GROUP]
    if spec.kube == "rollout":
        groups.append(ROLLOUT_GROUP)
    if spec.name in BOOTSTRAP_KUBE_ACCESS:
        groups += bootstrap_groups(spec.name)
        if BOOTSTRAP_KUBE_ACCESS[spec.name] == "cluster-admin" and not access_entry:
            groups.append("system:masters")  # aws-auth's cluster admin (helm installs CRDs and webhooks)
    return groups


def needs_cluster_admin(spec: HandlerSpec) -> bool:
    """Only the controller install: helm creates CRDs, ClusterRoles and webhook configurations."""
    return BOOTSTRAP_KUBE_ACCESS.get(spec.name) == "cluster-admin"


def render_rbac(namespaces: Iterable[str]) -> str:
    """deploy/rbac.yaml for these namespaces: two ClusterRoles, bound only inside each app namespace."""
    namespaces = sorted(set(namespaces))
    meta_labels = {"app.kubernetes.io/part-of": "albgate"}
    docs: list[dict] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": group, "labels": meta_labels},
            "rules": rules,
        }
        for group, rules in ((READ_GROUP, READ_RULES), (ROLLOUT_GROUP, ROLLOUT_RULES))
    ]
    for ns in namespaces:
        for group in (READ_GROUP, ROLLOUT_GROUP):
            docs.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": group, "namespace": ns, "labels": meta_labels},
                    # A RoleBinding to a ClusterRole grants its rules in this namespace only.
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": group},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
                }
            )
    header = (
        "# albgate RBAC for namespaces: " + ", ".join(namespaces) + "\n"
        "# Generated by stacks/constructs/cluster_access.py (render_rbac); `python app.py` writes the file for\n"
        "# your config to <outdir>/albgate-rbac.yaml. Apply it on each cluster: kubectl apply -f <this file>\n"
    )
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)


def map_roles_yaml(entries: Iterable[tuple[str, str, list[str]]]) -> str:
    """aws-auth mapRoles entries (role ARN, Kubernetes username, groups) as the ConfigMap's YAML list."""
    lines: list[str] = []
    for role_arn, username, groups in entries:
        lines.append(f"- rolearn: {role_arn}")
        lines.append(f"  username: {username}")
        lines.append("  groups:")
        lines.extend(f"    - {g}" for g in groups)
    return "\n".join(lines) + "\n"


class ClusterAccess(Construct):
    """Access entries (API modes) or an aws-auth output (CONFIG_MAP) for every function that talks to Kubernetes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AlbgateConfig,
        functions: Mapping[str, AlbgateFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.access_entries: list[eks.CfnAccessEntry] = []
        self.aws_auth: dict[str, str] = {}
        kube_functions = [f for f in functions.values() if f.spec.kube != "none"]

        for cluster in config.clusters:
            namespaces = config.namespaces(cluster.name)
            if cluster.uses_access_entries:
                for f in kube_functions:
                    entry = eks.CfnAccessEntry(
                        self,
                        f"{cluster.name}-{f.spec.name}",
                        cluster_name=cluster.name,
                        principal_arn=f.role.role_arn,
                        type="STANDARD",
                        kubernetes_groups=groups_for(f.spec, access_entry=True) or None,
                        access_policies=[
                            eks.CfnAccessEntry.AccessPolicyProperty(
                                policy_arn=view_policy_arn(stack),
                                access_scope=eks.CfnAccessEntry.AccessScopeProperty(
                                    type="namespace", namespaces=namespaces
                                ),
                            )
                        ]
                        + (
                            [
                                eks.CfnAccessEntry.AccessPolicyProperty(
                                    policy_arn=f"arn:{stack.partition}:eks::aws:cluster-access-policy/"
                                    f"{CLUSTER_ADMIN_POLICY}",
                                    access_scope=eks.CfnAccessEntry.AccessScopeProperty(type="cluster"),
                                )
                            ]
                            if needs_cluster_admin(f.spec)
                            else []
                        ),
                    )
                    self.access_entries.append(entry)
            else:
                text = map_roles_yaml(
                    (f.role.role_arn, "albgate:{{SessionName}}", groups_for(f.spec, access_entry=False))
                    for f in kube_functions
                )
                self.aws_auth[cluster.name] = text
                CfnOutput(
                    self,
                    f"AwsAuthMapRoles-{cluster.name}",
                    description=f"Append to data.mapRoles of kube-system/aws-auth in cluster {cluster.name}, "
                    "then apply the albgate RBAC manifest (deploy/rbac.yaml or <outdir>/albgate-rbac.yaml)",
                    value=text,
                )
