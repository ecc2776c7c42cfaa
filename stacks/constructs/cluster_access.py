"""Kubernetes access for albgate's function roles, least privilege, namespace by namespace.

Invariant: a function reaches only the namespaces of the applications configured for a cluster, and only
with what its ``HandlerSpec.kube`` names:

- ``read``: get/list/watch of what albgate reads in those namespaces. With access entries that is the EKS access
  policy ``AmazonEKSViewPolicy`` scoped to them (``VIEW_POLICY_RULES``, like the Kubernetes ``view`` role), plus
  the Kubernetes group ``albgate-read-extra``: the Load Balancer Controller's TargetGroupBindings (a custom
  resource, which no view policy covers) and the app's own Namespace object. With aws-auth the view part is the
  group ``albgate-read`` instead (``READ_RULES``).
- ``pods``: ``read``, plus the group ``albgate-pods``: patch pods and pods/status, nothing else.
- ``rollout``: ``pods``, plus the group ``albgate-rollout``: patch deployments. No EKS managed access policy is that
  narrow: the next one up, ``AmazonEKSEditPolicy``, also lets a principal create and delete most namespaced objects
  and read Secrets.
- ``none``: no access entry at all.

Every group is bound by ``deploy/rbac.yaml`` (``render_rbac``) with a RoleBinding in each app namespace only, so
the same manifest serves both authentication modes. tests/iam/test_kubernetes_rbac.py sends every request each
deployed handler makes (recorded on the fake API server while it runs through its real adapters) through an
RBAC evaluator fed with what albgate renders here and in ``bootstrap_specs``: each must be allowed for that
function's groups and access policies, in both modes.

When a cluster's authentication mode is CONFIG_MAP there are no access entries (the API would refuse them):
the stack outputs the exact aws-auth ``mapRoles`` entries instead, mapping every role to its groups.

The same construct hands each of those functions the list of what it may touch (``allow_list.AllowList``):
the clusters and applications of the config, refused at run time before any call to a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import yaml
from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_eks as eks
from constructs import Construct

from stacks.config import AlbgateConfig, ClusterConfig
from stacks.constructs.allow_list import AllowListLayer
from stacks.constructs.bootstrap_specs import BOOTSTRAP_KUBE_ACCESS, CLUSTER_ADMIN_POLICY, bootstrap_groups
from stacks.constructs.handler_specs import HandlerSpec
from stacks.constructs.lambda_function import AlbgateFunction

READ_GROUP = "albgate-read"
READ_EXTRA_GROUP = "albgate-read-extra"
ROLLOUT_GROUP = "albgate-rollout"
PODS_GROUP = "albgate-pods"
VIEW_POLICY = "AmazonEKSViewPolicy"

_READ = ["get", "list", "watch"]
# AmazonEKSViewPolicy as the EKS user guide lists it (docs/facts.md, "Kubernetes RBAC and EKS access policies"):
# what every kube function of an access-entry cluster may read in the app namespaces. Not rendered anywhere
# (EKS owns it): tests/iam/test_kubernetes_rbac.py evaluates the access entries with it.
VIEW_POLICY_RULES: list[dict] = [
    {"apiGroups": ["apps"], "resources": ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                                          "deployments/scale", "deployments/status", "replicasets",
                                          "replicasets/scale", "replicasets/status", "statefulsets",
                                          "statefulsets/scale", "statefulsets/status"], "verbs": _READ},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
     "verbs": _READ},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": ["extensions"], "resources": ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                                "deployments/status", "ingresses", "ingresses/status",
                                                "networkpolicies", "replicasets", "replicasets/scale",
                                                "replicasets/status", "replicationcontrollers/scale"], "verbs": _READ},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingresses/status", "networkpolicies"],
     "verbs": _READ},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["configmaps", "endpoints", "persistentvolumeclaims",
                                      "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                                      "replicationcontrollers/scale", "serviceaccounts", "services",
                                      "services/status"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["bindings", "events", "limitranges", "namespaces/status", "pods/log",
                                      "pods/status", "replicationcontrollers/status", "resourcequotas",
                                      "resourcequotas/status"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
]  # fmt: skip

# What the groups may do: exactly the calls of lambdas/adapters/kubernetes.py that lambdas/domain makes.
# Read = the part of the view policy albgate uses, for aws-auth clusters (access entries get the policy instead).
READ_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get", "list", "watch"]},
    # Preflight Report: which Ingresses route to the app's Service
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]},
]
# What every function that reads needs beyond the view policy, in both modes.
READ_EXTRA_RULES: list[dict] = [
    # Preflight and the Gate Keeper: which target groups serve the Service; Verify Drain: the controller's
    # reconcile checkpoint on them (the LBC's TargetGroupBinding, a custom resource: no EKS access policy short of
    # the admin ones covers it).
    {"apiGroups": ["elbv2.k8s.aws"], "resources": ["targetgroupbindings"], "verbs": ["get", "list", "watch"]},
    # Preflight: its own namespace. The Namespace object is cluster-scoped; bound by a RoleBinding, this rule
    # allows getting that one Namespace (the request's namespace is the name, docs/facts.md, "Kubernetes RBAC and
    # EKS access policies"), whatever a namespace-scoped access policy makes of it.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]
# The pods' own writes: albgate's readiness-gate condition (pods/status: Release Old Pods and the Gate Keeper open it,
# the gate's nudge writes it False with a note) and the serving label with its deletion cost (pods: the gate takes
# an old pod out of its Service's endpoints; Start Step and Finish Rollout put back one that stayed).
PODS_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["patch"]},
]
ROLLOUT_RULES: list[dict] = [
    # Start Step / Roll Back / Finish: maxSurge, image, albgate's readiness gate in the template, annotations.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
]
GROUP_RULES: dict[str, list[dict]] = {
    READ_GROUP: READ_RULES,
    READ_EXTRA_GROUP: READ_EXTRA_RULES,
    PODS_GROUP: PODS_RULES,
    ROLLOUT_GROUP: ROLLOUT_RULES,
}


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
    """Kubernetes groups of a function: the view part comes from the view policy with access entries, else from
    the group ``albgate-read``; what the view policy lacks, and every write, from albgate's own groups."""
    if spec.kube == "none":
        return []
    groups = [READ_EXTRA_GROUP] if access_entry else [READ_GROUP, READ_EXTRA_GROUP]
    if spec.kube in ("pods", "rollout"):
        groups.append(PODS_GROUP)
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
    """deploy/rbac.yaml for these namespaces: albgate's ClusterRoles, bound only inside each app namespace."""
    namespaces = sorted(set(namespaces))
    meta_labels = {"app.kubernetes.io/part-of": "albgate"}
    docs: list[dict] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": group, "labels": meta_labels},
            "rules": rules,
        }
        for group, rules in GROUP_RULES.items()
    ]
    for ns in namespaces:
        for group in GROUP_RULES:
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
    """Access entries (API modes) or an aws-auth output (CONFIG_MAP) for every function that talks to Kubernetes,
    and the allow-list every function carries (``allow_list``)."""

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
        # What the access below is for, at run time: only the configured clusters and applications.
        self.allow_list = AllowListLayer(self, "AllowList", config=config, functions=functions.values())

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
