"""The one typed configuration of the CDK app: which clusters, which applications, which rollout policy.

Invariant: the stack is only ever built from an ``AlbgateConfig`` that validated; anything else stops synth
with a ``ConfigError`` whose message names every bad field (``clusters.0.subnet_ids: ...``) and the fix.
Reading the config never calls AWS: account and region come from the config, else from the environment the
CDK CLI sets (CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION), else the stack stays account-agnostic.

Where the config comes from (first match wins):
1. context ``albgate_config`` = path to a JSON file (``cdk synth -c albgate_config=my.json`` or
   ``python app.py -c albgate_config=my.json``), relative to the working directory;
2. context ``albgate`` = the config object itself (cdk.json ships the example app's config there).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from lambdas.domain.budget import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND
from lambdas.domain.limits import MAX_APPLICATIONS_PER_CLUSTER, drain_deadline_seconds

# Kubernetes name rules are the rollout input's contract in lambdas/domain/models.py: reuse them so the CDK config and a
# rollout request accept exactly the same names.
from lambdas.domain.models import DNS1123_LABEL, DNS1123_SUBDOMAIN, RolloutPolicy
from lambdas.domain.rollout import limit_problems

CONTEXT_KEY = "albgate"
CONTEXT_FILE_KEY = "albgate_config"

_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")  # EKS CreateCluster name rule
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_VPC = re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
_SG = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
_OIDC_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$")
# ECR repository name rule (CreateRepository): lower-case components separated by '/'.
_ECR_REPO = re.compile(r"^(?=.{2,256}$)(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG_GLOB = re.compile(r"^[\w.*?\[\]!-]{1,128}$")

# CloudWatch Logs accepts only these retention values (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
MAX_LAMBDA_SUBNETS = 16  # Lambda VpcConfig limits
MAX_LAMBDA_SECURITY_GROUPS = 5


class ConfigError(ValueError):
    """The CDK context does not describe a deployable albgate; the message names each field and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterConfig(_Strict):
    """An EKS cluster albgate may roll Deployments in."""

    name: str = Field(description="EKS cluster name")
    region: str = Field(description="Region of the cluster; the stack deploys there (access entries are regional)")
    account: str | None = Field(
        default=None, description="12-digit account of the cluster; default CDK_DEFAULT_ACCOUNT, else agnostic"
    )
    authentication_mode: Literal["API", "API_AND_CONFIG_MAP", "CONFIG_MAP"] = Field(
        default="API_AND_CONFIG_MAP",
        description="the cluster's accessConfig.authenticationMode: API modes get EKS access entries, "
        "CONFIG_MAP gets printed aws-auth mapRoles entries instead",
    )
    endpoint_private: bool = Field(
        default=False, description="true when the API endpoint is private only: the functions then join the VPC"
    )
    vpc_id: str | None = Field(default=None, validate_default=True, description="cluster VPC (private endpoint)")
    subnet_ids: list[str] = Field(
        default_factory=list, validate_default=True, description="private subnets for the functions"
    )
    security_group_ids: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="security groups for the functions; the cluster security group must allow them on 443",
    )
    oidc_provider_arn: str | None = Field(default=None, description="IAM OIDC provider of the cluster (optional)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _CLUSTER_NAME.match(v):
            raise ValueError(
                f"{v!r} is not an EKS cluster name: letters, digits, '-' and '_', starting with a letter or "
                "digit, at most 100; copy it from `aws eks list-clusters`"
            )
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError(f"{v!r} is not an AWS Region code; write e.g. 'us-east-1'")
        return v

    @field_validator("account")
    @classmethod
    def _account(cls, v: str | None) -> str | None:
        if v is not None and not _ACCOUNT.match(v):
            raise ValueError(f"{v!r} is not a 12-digit AWS account id; write it as a string, e.g. '123456789012'")
        return v

    @field_validator("vpc_id")
    @classmethod
    def _vpc(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            if info.data.get("endpoint_private"):
                raise ValueError(
                    "required when endpoint_private is true: the functions must run in the cluster's VPC; copy "
                    "it from `aws eks describe-cluster --name <cluster> --query cluster.resourcesVpcConfig.vpcId`"
                )
            return v
        if not _VPC.match(v):
            raise ValueError(f"{v!r} is not a VPC id; write e.g. 'vpc-0123456789abcdef0'")
        return v

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, v: list[str], info: ValidationInfo) -> list[str]:
        for s in v:
            if not _SUBNET.match(s):
                raise ValueError(f"{s!r} is not a subnet id; write e.g. 'subnet-0123456789abcdef0'")
        if info.data.get("endpoint_private") and not v:
            raise ValueError(
                "required when endpoint_private is true: list private subnets of the cluster's VPC that reach "
                "the EKS endpoint (and a NAT or VPC endpoints for eks, elasticloadbalancing and xray)"
            )
        if len(v) > MAX_LAMBDA_SUBNETS:
            raise ValueError(f"{len(v)} subnets; a Lambda function accepts at most {MAX_LAMBDA_SUBNETS}")
        return v

    @field_validator("security_group_ids")
    @classmethod
    def _security_groups(cls, v: list[str], info: ValidationInfo) -> list[str]:
        for s in v:
            if not _SG.match(s):
                raise ValueError(f"{s!r} is not a security group id; write e.g. 'sg-0123456789abcdef0'")
        if info.data.get("endpoint_private") and not v:
            raise ValueError(
                "required when endpoint_private is true: list a security group the cluster security group "
                "accepts on port 443 (e.g. the cluster security group itself)"
            )
        if len(v) > MAX_LAMBDA_SECURITY_GROUPS:
            raise ValueError(
                f"{len(v)} security groups; a Lambda function accepts at most {MAX_LAMBDA_SECURITY_GROUPS}"
            )
        return v

    @field_validator("oidc_provider_arn")
    @classmethod
    def _oidc(cls, v: str | None) -> str | None:
        if v is not None and not _OIDC_ARN.match(v):
            raise ValueError(
                f"{v!r} is not an IAM OIDC provider ARN; write e.g. "
                "'arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC'"
            )
        return v

    @property
    def uses_access_entries(self) -> bool:
        return self.authentication_mode in ("API", "API_AND_CONFIG_MAP")


class ApplicationConfig(_Strict):
    """A Deployment behind an ALB Ingress that albgate rolls."""

    cluster: str = Field(description="name of an entry in clusters")
    namespace: str
    deployment: str
    container: str = Field(description="the container whose image a rollout changes")
    service: str = Field(description="the Service the Ingress routes to (target-type ip)")
    ingress: str = Field(description="the ALB Ingress")
    replicas: int | None = Field(
        default=None, ge=1, description="expected replicas, only for the printed plan; rollouts read the real value"
    )
    ecr_repository: str | None = Field(
        default=None, description="ECR repository name whose pushes may start a rollout (later issues)"
    )
    tag_pattern: str = Field(default="*", description="glob an image tag must match, e.g. 'v*'")

    @field_validator("namespace", "container")
    @classmethod
    def _label(cls, v: str) -> str:
        if not DNS1123_LABEL.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes name: lower-case letters, digits and '-', at most 63")
        return v

    @field_validator("deployment", "service", "ingress")
    @classmethod
    def _object_name(cls, v: str) -> str:
        if not DNS1123_SUBDOMAIN.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes object name: lower-case letters, digits, '-' and '.'")
        return v

    @field_validator("ecr_repository")
    @classmethod
    def _ecr(cls, v: str | None) -> str | None:
        if v is not None and (not _ECR_REPO.match(v) or ".amazonaws.com" in v):
            raise ValueError(
                f"{v!r} is not an ECR repository name (the part after '.amazonaws.com/'); write e.g. 'team/app'"
            )
        return v

    @field_validator("tag_pattern")
    @classmethod
    def _tag(cls, v: str) -> str:
        if not _TAG_GLOB.match(v):
            raise ValueError(f"{v!r} is not a tag glob; use tag characters with '*', '?' or '[...]', e.g. 'v*'")
        return v


class DescribeBudgetConfig(_Strict):
    """albgate's share of the account's ELB Describe* bucket (40 tokens, 10/s, docs/facts.md, ELB API throttling), for all its
    rollouts together; the rest is left to the Load Balancer Controllers (docs/rollout.md, "Sharing the
    Describe* bucket")."""

    enabled: bool = Field(default=True, description="false: every rollout polls at its own pace only")
    rate_per_second: float = Field(
        default=DEFAULT_RATE_PER_SECOND, gt=0, le=10, description="Describe* calls per second, all rollouts together"
    )
    burst: int = Field(default=DEFAULT_BURST, ge=1, le=40, description="calls albgate may make at once")


class AlbgateConfig(_Strict):
    """Everything the stack needs; see docs/foundation.md for the reference and config/example.json."""

    stack_name: str = Field(default="Albgate", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    clusters: list[ClusterConfig] = Field(min_length=1)
    applications: list[ApplicationConfig] = Field(min_length=1)
    rollout_policy: RolloutPolicy = Field(default_factory=RolloutPolicy)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_retention_days: int = Field(default=30, description="CloudWatch Logs retention of every function")
    describe_budget: DescribeBudgetConfig = Field(default_factory=lambda: DescribeBudgetConfig())

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"{v} is not a CloudWatch Logs retention; pick one of {list(LOG_RETENTION_DAYS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "AlbgateConfig":
        problems: list[tuple[str, str]] = []
        names = [c.name for c in self.clusters]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((f"clusters.{i}.name", f"{name!r} is listed twice; keep one entry per cluster"))
        first = self.clusters[0]
        for i, c in enumerate(self.clusters[1:], start=1):
            if c.region != first.region:
                problems.append(
                    (
                        f"clusters.{i}.region",
                        f"{c.region!r} differs from clusters.0 ({first.region!r}); one stack deploys to one Region "
                        "because access entries are created in the cluster's Region: use one config per Region",
                    )
                )
        accounts = {c.account for c in self.clusters if c.account}
        if len(accounts) > 1:
            i = next(i for i, c in enumerate(self.clusters) if c.account and c.account != self.clusters[0].account)
            problems.append(
                (f"clusters.{i}.account", "clusters are in different accounts; use one config per account")
            )
        private = [(i, c) for i, c in enumerate(self.clusters) if c.endpoint_private]
        for i, c in private[1:]:
            if c.vpc_id != private[0][1].vpc_id:
                problems.append(
                    (
                        f"clusters.{i}.vpc_id",
                        "a Lambda function joins one VPC; private clusters in different VPCs need one config each",
                    )
                )
        if len(self.vpc_subnet_ids) > MAX_LAMBDA_SUBNETS:
            problems.append(("clusters", f"private clusters list more than {MAX_LAMBDA_SUBNETS} distinct subnets"))
        if len(self.vpc_security_group_ids) > MAX_LAMBDA_SECURITY_GROUPS:
            problems.append(
                ("clusters", f"private clusters list more than {MAX_LAMBDA_SECURITY_GROUPS} distinct security groups")
            )
        seen_apps: set[tuple[str, str, str]] = set()
        for i, a in enumerate(self.applications):
            if a.cluster not in names:
                problems.append(
                    (f"applications.{i}.cluster", f"{a.cluster!r} is not in clusters; use one of {names}")
                )
            key = (a.cluster, a.namespace, a.deployment)
            if key in seen_apps:
                problems.append((f"applications.{i}", f"{'/'.join(key)} is listed twice; keep one entry"))
            seen_apps.add(key)
        for i, name in enumerate(names):
            count = sum(1 for a in self.applications if a.cluster == name)
            if count > MAX_APPLICATIONS_PER_CLUSTER:
                problems.append(
                    (
                        f"clusters.{i}",
                        f"{name!r} has {count} applications; albgate takes at most {MAX_APPLICATIONS_PER_CLUSTER} "
                        "per cluster (the bootstrap carries every one of them in each state, and Step Functions "
                        "keeps at most 256 KB per state, docs/rollout.md, Limits): split them over two stacks",
                    )
                )
        problems.extend(("rollout_policy", p) for p in self.policy_limit_problems())
        for i, name in enumerate(names):
            if not self.namespaces(name):
                problems.append(
                    (
                        f"clusters.{i}",
                        f"{name!r} has no application; add one under applications or remove the cluster "
                        "(albgate grants access only to the namespaces of configured applications)",
                    )
                )
        if problems:
            # A ValueError here reaches the reader as one message; keep each problem's own field path in it.
            raise ValueError(" | ".join(f"{loc}: {msg}" for loc, msg in problems))
        return self

    def policy_limit_problems(self) -> list[str]:
        """Whether ``rollout_policy``, every triggered rollout's policy, fits one execution's history and
        timeout (``lambdas.domain.rollout.limit_problems``) for the largest plan it can make here: as many
        steps as it lists, or with batch_size, as the largest known ``replicas`` needs (Preflight checks every
        rollout again with the real replica count and deregistration delay)."""
        policy = self.rollout_policy
        if policy.batch_size is None:
            steps = len(policy.steps)
        else:
            known = [a.replicas for a in self.applications if a.replicas]
            if not known:
                return []
            steps = max(math.ceil(r / policy.batch_size) for r in known)
        return limit_problems(policy, steps, drain_deadline_seconds(policy))

    # --- derived values the stack uses ------------------------------------------------------------------------
    @property
    def region(self) -> str:
        return self.clusters[0].region

    @property
    def account(self) -> str | None:
        return next((c.account for c in self.clusters if c.account), None)

    def namespaces(self, cluster: str) -> list[str]:
        """App namespaces of one cluster, sorted, without duplicates (the access scope)."""
        return sorted({a.namespace for a in self.applications if a.cluster == cluster})

    @property
    def private_vpc_id(self) -> str | None:
        return next((c.vpc_id for c in self.clusters if c.endpoint_private), None)

    @property
    def vpc_subnet_ids(self) -> list[str]:
        return list(dict.fromkeys(s for c in self.clusters if c.endpoint_private for s in c.subnet_ids))

    @property
    def vpc_security_group_ids(self) -> list[str]:
        return list(dict.fromkeys(s for c in self.clusters if c.endpoint_private for s in c.security_group_ids))


_FIX_BY_TYPE = {
    "extra_forbidden": "unknown field; remove it or fix its spelling (docs/foundation.md lists the fields)",
    "missing": "required field is missing; add it (config/example.json shows every field)",
}


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: ``field.path: what is wrong and how to fix it``."""
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in _FIX_BY_TYPE:
            msg = _FIX_BY_TYPE[err["type"]]
        if err["type"] == "value_error" and " | " in msg and ": " in msg:
            # The cross-field validator packs several "path: message" problems into one error.
            lines.extend(msg.split(" | "))
            continue
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def parse_config(data: Any, source: str = "config") -> AlbgateConfig:
    """Validate a config object; ConfigError lists every bad field with its fix."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a JSON object with clusters and applications, got {type(data).__name__}")
    try:
        return AlbgateConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems = "\n".join(f"  - {line}" for line in describe_errors(exc))
        raise ConfigError(f"albgate config is invalid ({source}):\n{problems}") from exc


def load_config(context: Mapping[str, Any], base_dir: Path | None = None) -> AlbgateConfig:
    """The config named by the CDK context: a file (``albgate_config``) or the inline object (``albgate``)."""
    path_value = context.get(CONTEXT_FILE_KEY)
    if path_value:
        path = Path(str(path_value))
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{CONTEXT_FILE_KEY}: file {path} does not exist; give a path to a JSON config") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{CONTEXT_FILE_KEY}: {path} is not JSON ({exc})") from exc
        return parse_config(data, source=str(path))
    data = context.get(CONTEXT_KEY)
    if data is None:
        raise ConfigError(
            f"no albgate config: add a '{CONTEXT_KEY}' object to the context in cdk.json, or pass "
            f"-c {CONTEXT_FILE_KEY}=path/to/config.json"
        )
    if isinstance(data, str):  # `-c albgate='{...}'` arrives as a string
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"context '{CONTEXT_KEY}' is a string but not JSON ({exc})") from exc
    return parse_config(data, source=f"context '{CONTEXT_KEY}'")
