"""The bootstrap workflow's Lambdas and the Kubernetes rights each needs: the list the stack, IAM and tests share.

Invariant: one entry per bootstrap handler module in ``lambdas/handlers`` (``bootstrap_common`` is glue, not a
Lambda); each entry names only what the handler's use case calls (least privilege). The Kubernetes rights go
beyond the rollout's ``read``/``rollout`` (``HandlerSpec.kube``): ``BOOTSTRAP_KUBE_ACCESS`` says which extra
access each function needs and ``render_bootstrap_rbac`` writes the RBAC for it, which the stack's cluster
access must bind (see docs/bootstrap.md, "Permissions").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import yaml

from stacks.constructs.handler_specs import HandlerSpec

BOOTSTRAP_HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec(
        "BootstrapValidate",
        "bootstrap_validate",
        kube="none",
        elb_read=False,
        description="validate the bootstrap input and manifests before touching the cluster",
    ),
    HandlerSpec(
        "BootstrapCheckNetwork",
        "bootstrap_check_network",
        kube="none",
        elb_read=False,
        network_read=True,
        description="the functions' subnets reach every AWS service they call (VPC endpoints or a NAT route)",
    ),
    HandlerSpec(
        "BootstrapInstallController",
        "bootstrap_install_controller",
        kube="rollout",
        elb_read=False,
        chart_pull=True,
        memory_mb=1024,  # helm loads the chart and renders ~40 objects
        timeout_seconds=720,  # helm's own --timeout 10m0s plus start-up
        description="helm upgrade --install the pinned AWS Load Balancer Controller chart",
    ),
    HandlerSpec(
        "BootstrapCheckController",
        "bootstrap_check_controller",
        kube="read",
        elb_read=False,
        description="controller available, webhook serving with failurePolicy Fail",
    ),
    HandlerSpec(
        "BootstrapLabelNamespaces",
        "bootstrap_label_namespaces",
        kube="read",  # its writes come from the group albgate-bootstrap (BOOTSTRAP_KUBE_ACCESS), not albgate-rollout
        elb_read=False,
        description="label app namespaces for the controller's readiness gate",
    ),
    HandlerSpec(
        "BootstrapApplyWorkloads",
        "bootstrap_apply_workloads",
        kube="read",  # its writes come from the group albgate-bootstrap (BOOTSTRAP_KUBE_ACCESS), not albgate-rollout
        elb_read=False,
        timeout_seconds=120,
        description="server-side apply hardened Services, Ingresses, then Deployments",
    ),
    HandlerSpec(
        "BootstrapCheckBindings",
        "bootstrap_check_bindings",
        kube="read",  # its writes come from the group albgate-bootstrap (BOOTSTRAP_KUBE_ACCESS), not albgate-rollout
        elb_read=False,
        description="Services bound to IP target groups; a dry-run pod gets the gate",
    ),
    HandlerSpec(
        "BootstrapFindUngatedPods",
        "bootstrap_find_ungated_pods",
        kube="read",
        elb_read=False,
        description="pods born before the namespace label, to restart through the gates",
    ),
    HandlerSpec(
        "PreflightReport",
        "preflight_report",
        kube="read",
        elb_read=True,
        metrics_read=True,  # the target groups' longest TargetResponseTime: requests longer than the policy declares
        description="every zero-downtime risk of the cluster, with its fix (reads only)",
    ),
)

BootstrapAccess = Literal["none", "read", "controller-read", "bootstrap", "cluster-admin"]

# What each function needs from Kubernetes beyond its HandlerSpec.kube ("none": it reaches no cluster; every
# other value reaches it through the bootstrap's adapter, on the kubernetes client):
# - cluster-admin: helm installs CRDs, ClusterRoles, webhook configurations and the controller's Deployment
#   in kube-system. No narrower EKS access policy can do that: AmazonEKSClusterAdminPolicy, cluster scope.
# - bootstrap: the group albgate-bootstrap (below): label the app namespaces, server-side apply of Services,
#   Ingresses and Deployments and a dry-run pod create in app namespaces, read the controller's state.
# - controller-read: only the controller's state (the cluster-wide part of albgate-bootstrap).
# - read: nothing beyond the reads of its HandlerSpec.kube.
# The functions that only read the cluster (Check Controller, Find Ungated Pods, Preflight Report) hold no write.
BOOTSTRAP_KUBE_ACCESS: dict[str, BootstrapAccess] = {
    "BootstrapValidate": "none",
    "BootstrapCheckNetwork": "none",
    "BootstrapInstallController": "cluster-admin",
    "BootstrapCheckController": "controller-read",
    "BootstrapLabelNamespaces": "bootstrap",
    "BootstrapApplyWorkloads": "bootstrap",
    "BootstrapCheckBindings": "bootstrap",
    "BootstrapFindUngatedPods": "read",
    "PreflightReport": "controller-read",  # it also checks the controller (its Deployment, its webhook)
}
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
BOOTSTRAP_GROUP = "albgate-bootstrap"
CONTROLLER_READ_GROUP = "albgate-controller-read"

# Read the controller's state: its webhook configuration (cluster-scoped, this one object only) and, bound
# in the controller's namespace only, its Deployment and the webhook Service's EndpointSlices.
CONTROLLER_WEBHOOK_RULES: list[dict] = [
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
     "resourceNames": ["aws-load-balancer-webhook"], "verbs": ["get"]},
]
CONTROLLER_READ_RULES: list[dict] = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
]
# Label Namespaces: read, then server-side apply the inject label on, the configured namespaces only
# (``namespace_rules``). Never create: RBAC cannot limit a create to names (docs/facts.md, "Kubernetes RBAC and EKS
# access policies"), and a namespace albgate may act in must exist before its RBAC can be applied anyway (every
# RoleBinding below lives in it), so a missing one is for a person to create, with their own quotas and policies.
NAMESPACE_VERBS = ["get", "patch"]


def namespace_rules(namespaces: Iterable[str]) -> list[dict]:
    """get/patch on these Namespace objects and no other: a ClusterRole's resourceNames, bound cluster-wide."""
    names = sorted(set(namespaces))
    if not names:
        # An empty resourceNames list restricts nothing: it would allow every namespace.
        raise ValueError("namespace_rules: no namespace; the bootstrap RBAC names at least one app namespace")
    return [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": names, "verbs": list(NAMESPACE_VERBS)}]


# Bound by a RoleBinding in each app namespace only.
WORKLOAD_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "create", "patch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list"]},
    # Check Bindings: a dry-run pod create (dryRun=All is authorised like a real create; nothing is stored).
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create"]},
    {"apiGroups": ["elbv2.k8s.aws"], "resources": ["targetgroupbindings"], "verbs": ["get", "list"]},
]


def render_bootstrap_rbac(namespaces: Iterable[str], controller_namespace: str = "kube-system") -> str:
    """The RBAC the bootstrap functions need, for ``kubectl apply -f`` (like deploy/rbac.yaml for the rollout)."""
    namespaces = sorted(set(namespaces))
    labels = {"app.kubernetes.io/part-of": "albgate"}
    rbac = "rbac.authorization.k8s.io"

    def role(name: str, rules: list[dict]) -> dict:
        return {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": labels},
                "rules": rules}

    def binding(kind: str, name: str, role_name: str, groups: list[str], namespace: str | None = None) -> dict:
        meta: dict = {"name": name, "labels": labels}
        if namespace:
            meta["namespace"] = namespace
        return {"apiVersion": f"{rbac}/v1", "kind": kind, "metadata": meta,
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role_name},
                "subjects": [{"apiGroup": rbac, "kind": "Group", "name": g} for g in groups]}

    readers = [CONTROLLER_READ_GROUP, BOOTSTRAP_GROUP]
    docs: list[dict] = [
        role(f"{CONTROLLER_READ_GROUP}-webhook", CONTROLLER_WEBHOOK_RULES),
        role(CONTROLLER_READ_GROUP, CONTROLLER_READ_RULES),
        role(f"{BOOTSTRAP_GROUP}-namespaces", namespace_rules(namespaces)),
        role(f"{BOOTSTRAP_GROUP}-workloads", WORKLOAD_RULES),
        binding("ClusterRoleBinding", f"{CONTROLLER_READ_GROUP}-webhook", f"{CONTROLLER_READ_GROUP}-webhook", readers),
        # A RoleBinding to a ClusterRole grants its rules in that namespace only.
        binding("RoleBinding", CONTROLLER_READ_GROUP, CONTROLLER_READ_GROUP, readers, controller_namespace),
        binding("ClusterRoleBinding", f"{BOOTSTRAP_GROUP}-namespaces", f"{BOOTSTRAP_GROUP}-namespaces",
                [BOOTSTRAP_GROUP]),
    ]
    docs += [binding("RoleBinding", f"{BOOTSTRAP_GROUP}-workloads", f"{BOOTSTRAP_GROUP}-workloads", [BOOTSTRAP_GROUP], ns)
             for ns in namespaces]
    header = ("# albgate bootstrap RBAC for namespaces: " + ", ".join(namespaces) + "\n"
              "# Generated by stacks/constructs/bootstrap_specs.py (render_bootstrap_rbac).\n")
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)


def bootstrap_groups(name: str) -> list[str]:
    """Kubernetes groups a bootstrap function's access entry (or aws-auth entry) must carry."""
    access = BOOTSTRAP_KUBE_ACCESS[name]
    return {"bootstrap": [BOOTSTRAP_GROUP], "controller-read": [CONTROLLER_READ_GROUP]}.get(access, [])
