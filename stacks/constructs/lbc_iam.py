"""The AWS Load Balancer Controller's IAM policy for the pinned version, and its service account's identity.

Job: ``lbc_policy_document`` writes the controller's documented policy (docs/install/iam_policy.json of the
pinned version; docs/facts.md, Load Balancer Controller: install: unchanged from v2.13.0 through v3.5.0, 16
Allow statements) for a partition;
``LbcIdentity`` creates that managed policy, a role for it, and binds the role to the controller's service
account ``kube-system/aws-load-balancer-controller``: an EKS Pod Identity association
(``AWS::EKS::PodIdentityAssociation``) by default, IRSA (a web-identity trust on the cluster's OIDC provider,
scoped to that one service account) when an OIDC provider ARN is configured.

Invariant: the version and the policy's source URL live in one place, ``lambdas.domain.bootstrap``
(``CONTROLLER_VERSION``, ``IAM_POLICY_SOURCE``), which the Helm install reads too; the statements below are
that document's, in its order, with only the partition substituted. Changing the pinned version means
re-reading that file and updating ``POLICY_STATEMENTS`` (a test counts statements and actions).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from lambdas.domain.bootstrap import CONTROLLER_NAMESPACE, CONTROLLER_VERSION, IAM_POLICY_SOURCE, SERVICE_ACCOUNT

CLUSTER_TAG = "elbv2.k8s.aws/cluster"
_REQUEST_TAG_SET = {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"}}
_RESOURCE_TAG_SET = {"Null": {f"aws:ResourceTag/{CLUSTER_TAG}": "false"}}
_ONLY_EXISTING_TAG = {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "true", f"aws:ResourceTag/{CLUSTER_TAG}": "false"}}


def _elb(p: str, resource: str) -> str:
    return f"arn:{p}:elasticloadbalancing:*:*:{resource}"


def policy_statements(p: str = "aws") -> list[dict[str, Any]]:
    """The controller's iam_policy.json statements (see IAM_POLICY_SOURCE) for partition ``p``."""
    tg_and_lbs = [_elb(p, "targetgroup/*/*"), _elb(p, "loadbalancer/net/*/*"), _elb(p, "loadbalancer/app/*/*")]
    sg = f"arn:{p}:ec2:*:*:security-group/*"
    return [
        {"Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole"], "Resource": "*",
         "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
        {"Effect": "Allow", "Action": [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
            "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools",
            "ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools", "ec2:DescribeRouteTables",
            "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeListenerCertificates",
            "elasticloadbalancing:DescribeSSLPolicies", "elasticloadbalancing:DescribeRules",
            "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTrustStores", "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:DescribeCapacityReservation"], "Resource": "*"},
        {"Effect": "Allow", "Action": [
            "cognito-idp:DescribeUserPoolClient", "acm:ListCertificates", "acm:DescribeCertificate",
            "iam:ListServerCertificates", "iam:GetServerCertificate", "waf-regional:GetWebACL",
            "waf-regional:GetWebACLForResource", "waf-regional:AssociateWebACL", "waf-regional:DisassociateWebACL",
            "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
            "shield:GetSubscriptionState", "shield:DescribeProtection", "shield:CreateProtection",
            "shield:DeleteProtection"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
         "Resource": "*"},
        {"Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": sg,
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **_REQUEST_TAG_SET}},
        {"Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:DeleteTags"], "Resource": sg,
         "Condition": _ONLY_EXISTING_TAG},
        {"Effect": "Allow", "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
                                       "ec2:DeleteSecurityGroup"], "Resource": "*", "Condition": _RESOURCE_TAG_SET},
        {"Effect": "Allow", "Action": ["elasticloadbalancing:CreateLoadBalancer",
                                       "elasticloadbalancing:CreateTargetGroup"], "Resource": "*",
         "Condition": _REQUEST_TAG_SET},
        {"Effect": "Allow", "Action": ["elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
                                       "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule"],
         "Resource": "*"},
        {"Effect": "Allow", "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
         "Resource": tg_and_lbs, "Condition": _ONLY_EXISTING_TAG},
        {"Effect": "Allow", "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
         "Resource": [_elb(p, "listener/net/*/*/*"), _elb(p, "listener/app/*/*/*"),
                      _elb(p, "listener-rule/net/*/*/*"), _elb(p, "listener-rule/app/*/*/*")]},
        {"Effect": "Allow", "Action": [
            "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
            "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup",
            "elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:ModifyCapacityReservation",
            "elasticloadbalancing:ModifyIpPools"], "Resource": "*", "Condition": _RESOURCE_TAG_SET},
        {"Effect": "Allow", "Action": ["elasticloadbalancing:AddTags"], "Resource": tg_and_lbs,
         "Condition": {"StringEquals": {"elasticloadbalancing:CreateAction": ["CreateTargetGroup",
                                                                              "CreateLoadBalancer"]},
                       **_REQUEST_TAG_SET}},
        {"Effect": "Allow", "Action": ["elasticloadbalancing:RegisterTargets",
                                       "elasticloadbalancing:DeregisterTargets"],
         "Resource": _elb(p, "targetgroup/*/*")},
        {"Effect": "Allow", "Action": [
            "elasticloadbalancing:SetWebAcl", "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
            "elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities"], "Resource": "*"},
    ]


def lbc_policy_document(partition: str = "aws") -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": policy_statements(partition)}


def oidc_issuer(provider_arn: str) -> str:
    """``arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC`` -> the issuer host path."""
    marker = ":oidc-provider/"
    if marker not in provider_arn:
        raise ValueError(f"{provider_arn!r} is not an IAM OIDC provider ARN")
    return provider_arn.split(marker, 1)[1]


class LbcIdentity(Construct):
    """Managed policy + role for the controller, bound to its service account (Pod Identity or IRSA).

    ``mode`` is ``pod-identity`` or ``irsa``; ``role_arn`` goes to the bootstrap (the install annotates the
    service account with it for IRSA; Pod Identity needs no annotation).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster_name: str,
        oidc_provider_arn: str | None = None,
        namespace: str = CONTROLLER_NAMESPACE,
        service_account: str = SERVICE_ACCOUNT,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"AWS Load Balancer Controller {CONTROLLER_VERSION} for {cluster_name} ({IAM_POLICY_SOURCE})"[:1000],
            document=iam.PolicyDocument.from_json(lbc_policy_document(stack.partition)),
        )
        subject = f"system:serviceaccount:{namespace}:{service_account}"
        if oidc_provider_arn:
            issuer = oidc_issuer(oidc_provider_arn)
            principal: iam.IPrincipal = iam.FederatedPrincipal(
                oidc_provider_arn,
                conditions={"StringEquals": {f"{issuer}:sub": subject, f"{issuer}:aud": "sts.amazonaws.com"}},
                assume_role_action="sts:AssumeRoleWithWebIdentity",
            )
            self.mode = "irsa"
        else:
            # EKS Pod Identity: the agent assumes the role with session tags (EKS user guide, pod identities).
            principal = iam.SessionTagsPrincipal(iam.ServicePrincipal("pods.eks.amazonaws.com"))
            self.mode = "pod-identity"
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=principal,
            description=f"AWS Load Balancer Controller in {cluster_name} ({subject})"[:1000],
            managed_policies=[self.policy],
        )
        self.role_arn = self.role.role_arn
        self.association: eks.CfnPodIdentityAssociation | None = None
        if self.mode == "pod-identity":
            self.association = eks.CfnPodIdentityAssociation(
                self,
                "PodIdentity",
                cluster_name=cluster_name,
                namespace=namespace,
                service_account=service_account,
                role_arn=self.role.role_arn,
            )
        NagSuppressions.add_resource_suppressions(
            self.policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=f"The AWS Load Balancer Controller's documented policy for {CONTROLLER_VERSION} "
                    f"({IAM_POLICY_SOURCE}), verbatim: Describe*/Get* actions have no resource types; the "
                    "create/modify/delete actions on security groups, load balancers and target groups are "
                    "conditioned on the elbv2.k8s.aws/cluster tag; the controller names its resources at run time",
                    applies_to=[
                        "Resource::*",
                        RegexAppliesTo(regex=r"/^Resource::arn:(<AWS::Partition>|aws[a-z-]*):(ec2|elasticloadbalancing):\*:\*:.*\*$/g"),
                    ],
                )
            ],
        )
