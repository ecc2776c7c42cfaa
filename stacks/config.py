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

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lambdas.domain.bootstrap import (
    CHART_NAME,
    CHART_REPOSITORY,
    CHART_VERSION,
    CONTROLLER_NAMESPACE,
    EcrChartMirror,
    ecr_chart_mirror,
)
from lambdas.domain.budget import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND
from lambdas.domain.documents import DocumentError, decode_utf8, parse_json, quote
from lambdas.domain.limits import MAX_APPLICATIONS_PER_CLUSTER, drain_deadline_seconds

from lambdas.domain.models import RolloutPolicy
from lambdas.domain.plan import step_problems
from lambdas.domain.rollout.preflight import limit_problems

# Every name rule is lambdas/domain/validators.py's, so the CDK config, a rollout request, the bootstrap input and
# the trigger accept exactly the same names.
from lambdas.domain.validators import (
    AccountId,
    AwsRegion,
    ChartRepository,
    ChartVersion,
    ClusterName,
    EcrRepositoryName,
    IamRoleArn,
    ImageRepository,
    JsonBool,
    KubernetesName,
    KubernetesObjectName,
    OidcProviderArn,
    SecurityGroupId,
    StackName,
    SubnetId,
    TagGlob,
    VpcId,
)

CONTEXT_KEY = "albgate"
CONTEXT_FILE_KEY = "albgate_config"

# CloudWatch Logs accepts only these retention values (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
MAX_LAMBDA_SUBNETS = 16  # Lambda VpcConfig limits
# A release's waves: a person reads them in one console graph and one `albgate release watch` screen.
MAX_WAVES = 20
DEFAULT_WAVE_BAKE_SECONDS = 300  # watch the new image take real traffic in a wave before the next one
MAX_WAVE_BAKE_SECONDS = 86_400
MAX_LAMBDA_SECURITY_GROUPS = 5


class ConfigError(ValueError):
    """The CDK context does not describe a deployable albgate; the message names each field and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Namespaces albgate never takes an application in: Kubernetes' own (kube-system, kube-public, kube-node-lease:
# https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/#initial-namespaces) and the Load
# Balancer Controller's (docs/facts.md, Load Balancer Controller: readiness gate).
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", CONTROLLER_NAMESPACE})


class ControllerConfig(_Strict):
    """How the bootstrap installs the AWS Load Balancer Controller on one cluster. What runs with cluster-admin
    rights (the chart, its version, the image, the controller's role) is chosen here, at deploy time: a bootstrap
    execution's input cannot set it (lambdas/domain/bootstrap.py, ``CONFIGURED_CONTROLLER_FIELDS``)."""

    chart_repository: ChartRepository = Field(
        default=CHART_REPOSITORY,
        description="eks-charts (https) or an OCI mirror 'oci://<registry>/<path>'; a private ECR registry "
        "'oci://<account>.dkr.ecr.<region>.amazonaws.com/<path>' gets a helm registry login and pull rights",
    )
    chart_version: ChartVersion = Field(
        default=CHART_VERSION, description="the aws-load-balancer-controller chart version"
    )
    # Without tag or digest: the tag stays pinned to the controller version.
    image_repository: ImageRepository | None = Field(
        default=None, description="controller image mirror, without tag (the tag stays the pinned version)"
    )
    role_arn: IamRoleArn | None = Field(
        default=None,
        description="an IRSA role you manage for the controller; albgate then creates no controller role or "
        "Pod Identity association for this cluster",
    )

    @field_validator("chart_repository")
    @classmethod
    def _chart_repository(cls, v: str) -> str:
        """What the repository's shape alone (validators.ChartRepository) cannot say."""
        if v.rstrip("/").endswith(f"/{CHART_NAME}") and v.startswith("oci://"):
            raise ValueError(
                f"{quote(v)} names the chart itself; give the path it was pushed to (albgate appends /{CHART_NAME})"
            )
        host = v.removeprefix("oci://").partition("/")[0]
        if v.startswith("oci://") and ".dkr.ecr" in host and ecr_chart_mirror(v) is None:
            raise ValueError(
                f"{quote(host)} is not an ECR registry host; write <12-digit account>.dkr.ecr.<region>.amazonaws.com"
            )
        return v


class ClusterConfig(_Strict):
    """An EKS cluster albgate may roll Deployments in."""

    name: ClusterName = Field(description="EKS cluster name")
    region: AwsRegion = Field(
        description="Region of the cluster; the stack deploys there (access entries are regional)"
    )
    account: AccountId | None = Field(
        default=None, description="12-digit account of the cluster; default CDK_DEFAULT_ACCOUNT, else agnostic"
    )
    authentication_mode: Literal["API", "API_AND_CONFIG_MAP", "CONFIG_MAP"] = Field(
        default="API_AND_CONFIG_MAP",
        description="the cluster's accessConfig.authenticationMode: API modes get EKS access entries, "
        "CONFIG_MAP gets printed aws-auth mapRoles entries instead",
    )
    endpoint_private: JsonBool = Field(
        default=False, description="true when the API endpoint is private only: the functions then join the VPC"
    )
    vpc_id: VpcId | None = Field(default=None, validate_default=True, description="cluster VPC (private endpoint)")
    subnet_ids: list[SubnetId] = Field(
        default_factory=list, validate_default=True, description="private subnets for the functions"
    )
    security_group_ids: list[SecurityGroupId] = Field(
        default_factory=list,
        validate_default=True,
        description="security groups for the functions; the cluster security group must allow them on 443",
    )
    oidc_provider_arn: OidcProviderArn | None = Field(
        default=None, description="IAM OIDC provider of the cluster (optional)"
    )
    controller: ControllerConfig = Field(
        default_factory=lambda: ControllerConfig(), description="how the bootstrap installs the controller"
    )

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

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("endpoint_private") and not v:
            raise ValueError(
                "required when endpoint_private is true: list private subnets of the cluster's VPC that reach "
                "the EKS endpoint (and a NAT route or the VPC endpoints docs/foundation.md lists under Private "
                "endpoints)"
            )
        if len(v) > MAX_LAMBDA_SUBNETS:
            raise ValueError(f"{len(v)} subnets; a Lambda function accepts at most {MAX_LAMBDA_SUBNETS}")
        return v

    @field_validator("security_group_ids")
    @classmethod
    def _security_groups(cls, v: list[str], info: ValidationInfo) -> list[str]:
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

    @model_validator(mode="after")
    def _mirror_in_region(self) -> "ClusterConfig":
        mirror = ecr_chart_mirror(self.controller.chart_repository)
        if self.endpoint_private and mirror is not None and mirror.region != self.region:
            raise ValueError(
                f"controller.chart_repository: the ECR registry is in {mirror.region}, the cluster in {self.region}; "
                "the functions of a private cluster reach ECR through its Region's VPC endpoints: mirror the chart "
                f"to {self.region}"
            )
        return self

    @property
    def ecr_chart_mirror(self) -> EcrChartMirror | None:
        """The private ECR registry the controller's chart is pulled from, if any (helm logs in to it)."""
        return ecr_chart_mirror(self.controller.chart_repository)

    @property
    def uses_access_entries(self) -> bool:
        return self.authentication_mode in ("API", "API_AND_CONFIG_MAP")


class ApplicationConfig(_Strict):
    """A Deployment behind an ALB Ingress that albgate rolls."""

    cluster: str = Field(description="name of an entry in clusters")
    namespace: KubernetesName
    deployment: KubernetesObjectName
    container: KubernetesName = Field(description="the container whose image a rollout changes")
    service: KubernetesObjectName = Field(description="the Service the Ingress routes to (target-type ip)")
    ingress: KubernetesObjectName = Field(description="the ALB Ingress")
    replicas: int | None = Field(
        default=None, ge=1, description="expected replicas, only for the printed plan; rollouts read the real value"
    )
    ecr_repository: EcrRepositoryName | None = Field(
        default=None, description="ECR repository name whose pushes may start a rollout (later issues)"
    )
    tag_pattern: TagGlob = Field(default="*", description="glob an image tag must match, e.g. 'v*'")


# The Describe* bucket per account and Region as the Load Balancer Controller reads AWS's page since v3.2.0: 200
# tokens refilled at 50 a second (docs/facts.md, ELB API throttling). The default share is sized for the 40 and 10
# of the page's worked example; an account with the larger bucket may take a larger share, never more.
MAX_BUDGET_RATE_PER_SECOND = 50
MAX_BUDGET_BURST = 200


class DescribeBudgetConfig(_Strict):
    """albgate's share of the account's ELB Describe* bucket (docs/facts.md, ELB API throttling), for all its rollouts
    together; the rest is left to the Load Balancer Controllers (docs/rollout.md, "Sharing the Describe*
    bucket")."""

    enabled: JsonBool = Field(default=True, description="false: every rollout polls at its own pace only")
    rate_per_second: float = Field(
        default=DEFAULT_RATE_PER_SECOND, gt=0, le=MAX_BUDGET_RATE_PER_SECOND,
        description="Describe* calls per second, all rollouts together; under the account's refill",
    )
    burst: int = Field(
        default=DEFAULT_BURST, ge=1, le=MAX_BUDGET_BURST,
        description="calls albgate may make at once; under the account's bucket size",
    )


class WaveTarget(_Strict):
    """One application a wave rolls, when it is not the release's own Deployment in a cluster (other names there)."""

    cluster: ClusterName
    namespace: KubernetesName | None = Field(default=None, description="default: the release's namespace")
    deployment: KubernetesObjectName | None = Field(default=None, description="default: the release's deployment")


class WaveConfig(_Strict):
    """One wave of a release: clusters (the release's Deployment in each) and other targets, rolled together after
    every earlier wave passed."""

    name: KubernetesName = Field(description="the wave's name, shown in the release's events and `albgate release`")
    clusters: list[ClusterName] = Field(
        default_factory=list, description="clusters whose release Deployment this wave rolls (each once per release)"
    )
    targets: list[WaveTarget] = Field(
        default_factory=list, description="cluster/application targets with names of their own"
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="rollouts of this wave running at once; default all of them"
    )
    bake_seconds: int = Field(
        default=DEFAULT_WAVE_BAKE_SECONDS, ge=0, le=MAX_WAVE_BAKE_SECONDS,
        description="how long the release waits after this wave passed before the next one starts",
    )
    approval: JsonBool = Field(
        default=False, description="a person approves (`albgate release approve`) before this wave starts"
    )

    @model_validator(mode="after")
    def _something(self) -> "WaveConfig":
        if not self.clusters and not self.targets:
            raise ValueError("a wave rolls something: list its clusters (or targets with their own names)")
        return self

    def resolved(self, release: "ReleaseConfig") -> list[tuple[str, str | None, str | None]]:
        """(cluster, namespace, deployment) of every rollout of the wave, in order: its clusters, then its
        targets; a name left out is the release's (None when the release names none either)."""
        return ([(c, release.namespace, release.deployment) for c in self.clusters]
                + [(t.cluster, t.namespace or release.namespace, t.deployment or release.deployment)
                   for t in self.targets])


class ReleaseConfig(_Strict):
    """One image through ordered waves of clusters (docs/releases.md)."""

    name: KubernetesName = Field(description="the release's name: `albgate release start <name>`")
    namespace: KubernetesName | None = Field(
        default=None, description="namespace of the Deployment in every cluster (required when a wave lists clusters)"
    )
    deployment: KubernetesObjectName | None = Field(
        default=None, description="the Deployment rolled in every cluster (required when a wave lists clusters)"
    )
    waves: list[WaveConfig] = Field(min_length=1, max_length=MAX_WAVES)
    rollback_completed_waves: JsonBool = Field(
        default=False,
        description="when a wave fails, roll the clusters that already run the new image back to the image each "
        "ran before, newest wave first, through the same gates",
    )
    ecr_repository: EcrRepositoryName | None = Field(
        default=None, description="a push to this ECR repository starts this release (instead of per-app rollouts)"
    )
    tag_pattern: TagGlob = Field(default="*", description="glob a pushed tag must match to start the release")

    def clusters(self) -> set[str]:
        """Every cluster the release rolls something in."""
        return {c for w in self.waves for c, _, _ in w.resolved(self)}


class ReleaseHome(_Strict):
    """Where the release state machine runs."""

    account: AccountId | None = Field(default=None, description="default: the first cluster's account")
    region: AwsRegion | None = Field(default=None, description="default: the first cluster's Region")


class AlbgateConfig(_Strict):
    """Everything the stack needs; see docs/foundation.md for the reference and config/example.json."""

    stack_name: StackName = "Albgate"
    clusters: list[ClusterConfig] = Field(min_length=1)
    applications: list[ApplicationConfig] = Field(min_length=1)
    rollout_policy: RolloutPolicy = Field(default_factory=RolloutPolicy)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_retention_days: int = Field(default=30, description="CloudWatch Logs retention of every function")
    include_execution_data: JsonBool = Field(
        default=True,
        description="the state machines' CloudWatch logs (level ALL) carry each state's input and output; false "
        "logs the events only: execution data then stays in the execution history (approval task tokens included)",
    )
    describe_budget: DescribeBudgetConfig = Field(default_factory=lambda: DescribeBudgetConfig())
    releases: list[ReleaseConfig] = Field(
        default_factory=list, description="images rolled through waves of clusters (docs/releases.md)"
    )
    release_home: ReleaseHome = Field(
        default_factory=lambda: ReleaseHome(), description="account and Region of the release state machine"
    )

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
        if len(self.environments()) > 1:
            # Several accounts or Regions: one stack each (access entries are regional, a stack deploys to one
            # account and Region), and the release reaches each by ARNs known at synth: every account is named.
            for i, c in enumerate(self.clusters):
                if c.account is None:
                    problems.append((
                        f"clusters.{i}.account",
                        "required when clusters span several accounts or Regions: albgate deploys one stack per "
                        "account and Region and names each one's resources at synth; write the 12-digit account",
                    ))
        private = [(i, c) for i, c in enumerate(self.clusters) if c.endpoint_private]
        for i, c in private[1:]:
            first_private = next(p for _, p in private if (p.account, p.region) == (c.account, c.region))
            if c.vpc_id != first_private.vpc_id:
                problems.append(
                    (
                        f"clusters.{i}.vpc_id",
                        "a Lambda function joins one VPC; private clusters of one account and Region in different "
                        "VPCs need one config each",
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
                    (f"applications.{i}.cluster", f"{quote(a.cluster)} is not in clusters; use one of {names}")
                )
            if a.namespace in SYSTEM_NAMESPACES:
                problems.append(
                    (
                        f"applications.{i}.namespace",
                        f"{quote(a.namespace)} is a Kubernetes system namespace or the Load Balancer Controller's; "
                        "albgate neither rolls nor labels workloads there (a readiness gate on a system pod can "
                        "block the cluster's recovery): move the app to its own namespace",
                    )
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
        for i, a in enumerate(self.applications):
            # The replicas listed here are only expected ones, but a policy that makes no plan for them would have
            # every triggered rollout of the app refused by Preflight: say so now.
            for field, message in step_problems(a.replicas, self.rollout_policy) if a.replicas else ():
                problems.append((f"rollout_policy.{field}", f"{message} (applications.{i}.replicas)"))
        for i, name in enumerate(names):
            if not self.namespaces(name):
                problems.append(
                    (
                        f"clusters.{i}",
                        f"{name!r} has no application; add one under applications or remove the cluster "
                        "(albgate grants access only to the namespaces of configured applications)",
                    )
                )
        problems.extend(self._release_problems(names))
        if problems:
            # A ValueError here reaches the reader as one message; keep each problem's own field path in it.
            raise ValueError(" | ".join(f"{loc}: {msg}" for loc, msg in problems))
        return self

    def _release_problems(self, names: list[str]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for r, release in enumerate(self.releases):
            where = f"releases.{r}"
            if release.name in seen:
                problems.append((f"{where}.name", f"{release.name!r} is listed twice; give each release its own name"))
            seen.add(release.name)
            in_waves: set[tuple[str, str | None, str | None]] = set()
            wave_names: set[str] = set()
            for w, wave in enumerate(release.waves):
                if wave.name in wave_names:
                    problems.append((f"{where}.waves.{w}.name", f"{wave.name!r} is listed twice in this release"))
                wave_names.add(wave.name)
                places = [f"{where}.waves.{w}.clusters.{k}" for k in range(len(wave.clusters))] + [
                    f"{where}.waves.{w}.targets.{k}" for k in range(len(wave.targets))]
                for at, key in zip(places, wave.resolved(release)):
                    cluster, namespace, deployment = key
                    if namespace is None or deployment is None:
                        problems.append((at, f"names no {'namespace' if namespace is None else 'deployment'}: set "
                                             f"{where}.namespace and .deployment, or give the target its own"))
                    elif cluster not in names:
                        problems.append((at, f"{quote(cluster)} is not in clusters; use one of {names}"))
                    elif not any(a.cluster == cluster and a.namespace == namespace and a.deployment == deployment
                                 for a in self.applications):
                        problems.append((at, f"{namespace}/{deployment} is not an application of {cluster!r}; add it "
                                             "under applications (albgate rolls only those)"))
                    if key in in_waves:
                        problems.append((at, f"{namespace}/{deployment} in {cluster!r} is already in an earlier place "
                                             "of this release; a Deployment is rolled once per release"))
                    in_waves.add(key)
            targets = {(n, d) for _, n, d in in_waves}
            if release.ecr_repository and any(
                a.ecr_repository == release.ecr_repository and (a.namespace, a.deployment) in targets
                for a in self.applications
            ):
                problems.append((f"{where}.ecr_repository", (
                    f"{release.ecr_repository!r} also starts per-application rollouts of a Deployment this release "
                    "rolls; a push must start one or the other: remove ecr_repository from those applications or "
                    "from the release")))
        if self.releases:
            in_releases = {c for r in self.releases for c in r.clusters()}
            for i, c in enumerate(self.clusters):
                if c.name in in_releases and c.account is None:
                    problems.append((f"clusters.{i}.account", (
                        "required for a cluster a release rolls: the release reaches its rollout state machine by "
                        "an ARN fixed at synth; write the 12-digit account")))
        return problems

    # --- environments: one stack per account and Region --------------------------------------------------------
    def environments(self) -> list[tuple[str | None, str]]:
        """(account, Region) of every cluster, in the order they first appear; one stack deploys to each."""
        return list(dict.fromkeys((c.account, c.region) for c in self.clusters))

    def for_environment(self, account: str | None, region: str) -> "AlbgateConfig":
        """The config of one environment's stack: its clusters and their applications, without releases."""
        clusters = [c for c in self.clusters if (c.account, c.region) == (account, region)]
        keep = {c.name for c in clusters}
        return self.model_copy(update={
            "clusters": clusters,
            "applications": [a for a in self.applications if a.cluster in keep],
            "releases": [],
            "stack_name": self.environment_stack_name(account, region),
        })

    def environment_stack_name(self, account: str | None, region: str) -> str:
        """The stack name of an environment: ``stack_name`` alone when there is one environment."""
        if len(self.environments()) == 1:
            return self.stack_name
        accounts = {a for a, _ in self.environments()}
        return f"{self.stack_name}-{account}-{region}" if len(accounts) > 1 else f"{self.stack_name}-{region}"

    @property
    def home(self) -> tuple[str | None, str]:
        """Account and Region of the release state machine."""
        return (self.release_home.account or self.clusters[0].account, self.release_home.region or self.region)

    def cluster(self, name: str) -> ClusterConfig:
        return next(c for c in self.clusters if c.name == name)

    def policy_limit_problems(self) -> list[str]:
        """Whether ``rollout_policy``, every triggered rollout's policy, fits one execution's history and
        timeout (``lambdas.domain.rollout.preflight.limit_problems``) for the largest plan it can make here: as many
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


_FIX_BY_TYPE = {  # the bad value, cut to documents.MAX_QUOTED characters, is {value}
    "extra_forbidden": "unknown field; remove it or fix its spelling (docs/foundation.md lists the fields)",
    "missing": "required field is missing; add it (config/example.json shows every field)",
    "bool_type": "{value} is not a boolean; write true or false (a JSON boolean, not a string or a number)",
}


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: ``field.path: what is wrong and how to fix it``."""
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in _FIX_BY_TYPE:
            msg = _FIX_BY_TYPE[err["type"]].format(value=quote(err.get("input")))
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
    """The config named by the CDK context: a file (``albgate_config``) or the inline object (``albgate``).

    Both are read strictly (``lambdas.domain.documents``): UTF-8 only and no key given twice in one object (a
    JSON parser would keep the last of two ``rollout_policy`` objects without a word); every problem is one
    ``ConfigError`` line naming the source and the place."""
    path_value = context.get(CONTEXT_FILE_KEY)
    if path_value:
        path = Path(str(path_value))
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        source = f"{CONTEXT_FILE_KEY}: {path}"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"{CONTEXT_FILE_KEY}: file {path} does not exist; give a path to a JSON config"
            ) from None
        except IsADirectoryError:
            raise ConfigError(f"{source} is a directory; give the path of a JSON config file in it") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot be read ({exc.strerror or exc}); check the path and its "
                              "permissions") from None
        try:
            data = parse_json(decode_utf8(raw, source), source)
        except DocumentError as exc:
            raise ConfigError(str(exc)) from None
        return parse_config(data, source=str(path))
    data = context.get(CONTEXT_KEY)
    if data is None:
        raise ConfigError(
            f"no albgate config: add a '{CONTEXT_KEY}' object to the context in cdk.json, or pass "
            f"-c {CONTEXT_FILE_KEY}=path/to/config.json"
        )
    if isinstance(data, str):  # `-c albgate='{...}'` arrives as a string (text already: no bytes to decode)
        try:
            data = parse_json(data, f"context '{CONTEXT_KEY}' (a string)")
        except DocumentError as exc:
            raise ConfigError(str(exc)) from None
    return parse_config(data, source=f"context '{CONTEXT_KEY}'")
