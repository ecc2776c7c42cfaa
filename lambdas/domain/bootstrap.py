"""The bootstrap workflow's use cases: install the Load Balancer Controller, label namespaces, apply hardened
workloads, re-create pods born before the label; one function per state machine task, (ports, state) -> state.

Job: turn the documented manual steps (docs/facts.md, Load Balancer Controller: install and readiness gate)
into steps a state machine can run and re-run: install or upgrade the controller with Helm and wait until it really works; label each
app namespace ``elbv2.k8s.aws/pod-readiness-gate-inject=enabled`` (never kube-system or the controller's own
namespace: #1628, #2282); server-side apply each app's Service and Ingress, wait until the controller has
bound them to an IP target group and its webhook injects the gate into a dry-run pod, then apply the
Deployment (the gate is injected only at pod CREATE, docs/facts.md, Load Balancer Controller: readiness
gate); list the pods of a settled Deployment that still have no gate, as the ``restart`` inputs of albgate's gated rollout.

Invariant: every use case is idempotent. Each change is a server-side apply (field manager ``albgate``) or a
``helm upgrade --install`` that is skipped when the release already has the pinned chart and values, so a
second run reports ``unchanged`` everywhere and starts no restart. Waiting is data: a check returns
``PASSED | WAITING | FAILED`` with a reason and the seconds to wait, and fails by itself once its deadline has
passed. Nothing here imports boto3 or the kubernetes client; the ports do the I/O.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lambdas.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RetryableError,
    UnsafeConfigurationError,
)
from lambdas.domain.gate import Verdict
from lambdas.domain.limits import MAX_APPLICATIONS_PER_CLUSTER, STATE_PAYLOAD_MAX_BYTES, payload_bytes
from lambdas.domain.health_check import HARDENED
from lambdas.domain.lbc_annotations import HC_INTERVAL
from lambdas.domain.manifests import HardeningPolicy, harden
from lambdas.domain.models import RolloutPolicy, parse_image, validation_message
from lambdas.domain.ports import (
    IN_SERVICE,
    INJECT_LABEL,
    LBC_GATE_PREFIX,
    SERVING_LABEL,
    Clock,
    Deployment,
    KubernetesPort,
    Pod,
)
from lambdas.domain.validators import (
    ECR_REGISTRY_PATTERN,
    ChartVersion,
    ClusterName,
    GoDuration,
    JsonBool,
    KubernetesName,
    KubernetesObjectName,
    VpcId,
    version_numbers,
)

# ---------------------------------------------------------------------------------------------------------
# The pinned controller: version, chart and IAM policy source, in ONE place (the CDK policy in
# stacks/constructs/lbc_iam.py and the Helm install read these). The policy JSON is unchanged from
# v2.13.0 through v3.5.0; eks-charts chart 3.5.0 ships controller v3.5.0 (docs/facts.md, Load Balancer
# Controller: install).
# ---------------------------------------------------------------------------------------------------------
CONTROLLER_VERSION = "v3.5.0"
CHART_VERSION = "3.5.0"
CHART_NAME = "aws-load-balancer-controller"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
IAM_POLICY_SOURCE = (
    f"https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/{CONTROLLER_VERSION}"
    "/docs/install/iam_policy.json"
)
RELEASE_NAME = "aws-load-balancer-controller"
CONTROLLER_NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"  # docs/facts.md, Load Balancer Controller: install
CONTROLLER_DEPLOYMENT = "aws-load-balancer-controller"
# The chart names its webhooks after the prefix "aws-load-balancer" (templates/webhook.yaml).
WEBHOOK_CONFIGURATION = "aws-load-balancer-webhook"
POD_WEBHOOK = "mpod.elbv2.k8s.aws"
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"
CONTROLLER_NAME_LABEL = ("app.kubernetes.io/name", "aws-load-balancer-controller")
# Lower than the controller's 16m40s default: gates stuck for 16 minutes were fixed by lowering it (#3622,
# #3677; PR #2029 verified a 60 s cap). Kept well above the 15 s requeue so a throttled account (the Describe*
# bucket is shared, docs/facts.md, ELB API throttling) is not hammered.
DEFAULT_MAX_BACKOFF = "60s"
# CDK's own Helm install waits up to 15 min (docs/facts.md, Load Balancer Controller: install); the controller gets as long to work.
DEFAULT_CONTROLLER_DEADLINE_SECONDS = 900
# A new Ingress -> the controller creates the load balancer, target group and binding; then the webhook must
# inject the gate. Minutes on a busy controller (docs/facts.md, Load Balancer Controller:
# registration and timing: leader change pauses reconciles up to 2 min).
DEFAULT_BINDING_DEADLINE_SECONDS = 600
# Waiting for a Deployment the apply changed to settle: Kubernetes' own progress deadline default (docs/facts.md,
# Kubernetes Deployment controller).
DEFAULT_SETTLE_DEADLINE_SECONDS = 600
POLL_SECONDS = 10  # between checks of a bootstrap wait (Kubernetes reads only, no Describe* tokens)
NATIVE_SLEEP_SINCE = (1, 30)  # docs/facts.md, Pod readiness and termination
FIELD_MANAGER = "albgate"
VALUES_FILE = "values.json"  # the values file argument; the helm adapter writes the values there
PROTECTED_NAMESPACES = frozenset({"kube-system"})
# The bootstrap's state carries the request (manifests included) and what each step found and changed; Step
# Functions refuses a state over 256 KB with States.DataLimitExceeded, which no Catch takes (docs/facts.md,
# "AWS limits albgate checks"). So the request is refused above MAX_REQUEST_BYTES, and what grows with it is
# capped: the change log and the hardening summary to a byte budget each (then counted), the pods listed per
# Deployment, the applies to counts. tests/bootstrap/test_state_size.py runs the largest allowed bootstrap.
MAX_REQUEST_BYTES = 80 * 1024
MAX_EXTRA_NAMESPACES = MAX_APPLICATIONS_PER_CLUSTER
CHANGE_LOG_MAX_BYTES = 24 * 1024
HARDENING_MAX_BYTES = 24 * 1024
SUMMARY_LINE_MAX_CHARS = 200
MAX_PODS_LISTED = 3  # per Deployment in stale_pods (pod_count has them all)
MAX_GATES_LISTED = 5  # per application in bindings.gates


# ---------------------------------------------------------------------------------------------------------
# Ports the bootstrap needs beyond the rollout's KubernetesPort
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedObject:
    """What a server-side apply did: ``created``, ``configured`` (fields changed), ``unchanged`` or
    ``validated`` (a dry run)."""

    kind: str
    namespace: str
    name: str
    action: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class WebhookEntry:
    name: str
    failure_policy: str  # Fail | Ignore
    namespace_selector: dict[str, Any]
    object_selector: dict[str, Any]


@dataclass(frozen=True)
class MutatingWebhook:
    name: str
    webhooks: tuple[WebhookEntry, ...]

    def entry(self, name: str) -> WebhookEntry | None:
        return next((w for w in self.webhooks if w.name == name), None)


@runtime_checkable
class BootstrapKubernetesPort(KubernetesPort, Protocol):
    """The Kubernetes calls of the bootstrap, on top of the rollout's (``lambdas.domain.ports``)."""

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server."""
        ...

    def list_deployments(self, namespace: str) -> list[Deployment]: ...

    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False) -> AppliedObject:
        """Server-side apply (field manager ``albgate``, strict field validation); a dry run persists nothing."""
        ...

    def get_mutating_webhook(self, name: str) -> MutatingWebhook:
        """A MutatingWebhookConfiguration; NotFoundError when absent."""
        ...

    def ready_endpoints(self, namespace: str, service: str) -> int:
        """How many endpoints of the Service are ready (EndpointSlices)."""
        ...

    def dry_run_create_pod(self, namespace: str, manifest: dict[str, Any]) -> Pod:
        """Create a pod with dryRun=All: admission webhooks run, nothing is persisted; the pod as admitted."""
        ...


@dataclass(frozen=True)
class HelmRelease:
    name: str
    namespace: str
    chart_version: str
    status: str  # deployed | failed | pending-install | pending-upgrade | ...
    values: dict[str, Any]
    revision: int = 0
    updated_at: float | None = None  # when its latest revision was written (helm list's `updated`), epoch seconds


class HelmPort(Protocol):
    """The helm command line, pointed at one cluster."""

    def release(self, name: str, namespace: str) -> HelmRelease | None:
        """The release as ``helm list`` + ``helm get values`` show it; None when not installed."""
        ...

    def upgrade_install(self, args: list[str], values: dict[str, Any]) -> str:
        """Run ``helm <args>`` with ``values`` as the values file; returns helm's output."""
        ...

    def run(self, args: list[str]) -> str:
        """Run ``helm <args>``, a command that takes no values (rollback, uninstall); returns helm's output."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControllerSettings(_Strict):
    """How the AWS Load Balancer Controller is installed (docs/bootstrap.md lists every field).

    ``chart_repository``, ``chart_version``, ``image_repository`` and ``role_arn`` come from the deployed config
    (``CONFIGURED_CONTROLLER_FIELDS``), never from an execution's input: ``validate_input`` refuses them there."""

    install: JsonBool = Field(default=True, description="false: only check the controller that is there")
    chart_repository: str = Field(
        default=CHART_REPOSITORY,
        description="eks-charts repository URL, or an OCI mirror 'oci://<registry>/<path>' for private clusters",
    )
    chart_version: ChartVersion = Field(default=CHART_VERSION)
    namespace: KubernetesName = Field(default=CONTROLLER_NAMESPACE)
    service_account: KubernetesName = Field(default=SERVICE_ACCOUNT)
    region: str | None = Field(default=None, description="else the controller reads instance metadata")
    vpc_id: VpcId | None = Field(default=None)
    image_repository: str | None = Field(default=None, description="controller image mirror (no internet)")
    webhook_failure_policy: Literal["Fail", "Ignore"] = Field(
        default="Fail",
        description="Fail: no pod is created without its gate while the webhook is down (docs/facts.md)",
    )
    max_backoff: GoDuration = Field(
        default=DEFAULT_MAX_BACKOFF, description="targetgroupbindingMaxExponentialBackoffDelay"
    )
    role_arn: str | None = Field(default=None, description="IRSA: annotate the service account with this role")
    require_gate_injection: JsonBool = Field(
        default=True, description="false on EKS Auto Mode, which injects no gate (aws/containers-roadmap#2511)"
    )
    deadline_seconds: int = Field(default=DEFAULT_CONTROLLER_DEADLINE_SECONDS, ge=60, le=3600)


class Manifests(_Strict):
    deployment: dict[str, Any]
    service: dict[str, Any]
    ingress: dict[str, Any]


class AppBootstrap(_Strict):
    namespace: KubernetesName
    deployment: KubernetesObjectName
    container: KubernetesName
    manifests: Manifests | None = Field(default=None, description="None: the app exists; only label and check it")
    gated: JsonBool = Field(default=True, description="rolled behind readiness gates: instance targets are refused")
    harden: JsonBool = Field(default=True, description="false: apply as given, report the would-be changes")

    @model_validator(mode="after")
    def _names_agree(self) -> "AppBootstrap":
        if self.manifests is not None:
            name = (self.manifests.deployment.get("metadata") or {}).get("name")
            if name != self.deployment:
                raise ValueError(
                    f"manifests.deployment.metadata.name is {name!r} but the application's deployment is "
                    f"{self.deployment!r}; make them equal"
                )
        return self


class BootstrapRequest(_Strict):
    """The input of one bootstrap execution."""

    cluster: ClusterName
    namespaces: list[KubernetesName] = Field(
        default_factory=list, max_length=MAX_EXTRA_NAMESPACES, description="labelled too; the apps' are always labelled"
    )
    applications: list[AppBootstrap] = Field(default_factory=list, max_length=MAX_APPLICATIONS_PER_CLUSTER)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)
    # The ALB's range is 5-300 s; hardening lowers the check timeout below the interval (lambdas/domain/health_check.py).
    health_check_interval_seconds: int = Field(default=HARDENED[HC_INTERVAL], ge=5, le=300)
    restart_pods_born_before_label: JsonBool = Field(default=True)

    def all_namespaces(self) -> list[str]:
        return list(dict.fromkeys([*self.namespaces, *(a.namespace for a in self.applications)]))


def parse_bootstrap(data: Any) -> BootstrapRequest:
    try:
        return BootstrapRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid bootstrap input: {validation_message(exc)}") from exc


# ---------------------------------------------------------------------------------------------------------
# State passed from task to task
# ---------------------------------------------------------------------------------------------------------
def _wait(status: Verdict, reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": status.value, "reason": reason, **extra}


def _state(raw: Any) -> tuple[dict[str, Any], BootstrapRequest]:
    if not isinstance(raw, dict) or "request" not in raw:
        raise InvalidInputError("state: expected the bootstrap state with a request; start with Validate Input")
    # A deep copy: the use cases append to lists in the state (``changes``); aliasing the caller's lists would
    # change its input too, and the handler's log of "what changed" compares the two.
    return copy.deepcopy(raw), parse_bootstrap(raw["request"])


def _log(state: dict[str, Any], step: str, what: str, ref: str, detail: Any = None) -> None:
    """Every change the workflow makes, in order (the execution's output is its audit trail), while the log
    stays within ``CHANGE_LOG_MAX_BYTES``; past that a change is only counted in ``changes_not_listed`` (the
    functions' logs still have each one)."""
    entry = {"step": step, "change": what, "object": ref}
    if detail is not None:
        entry["detail"] = detail
    changes = state.setdefault("changes", [])
    if payload_bytes(changes) + payload_bytes(entry) + 2 > CHANGE_LOG_MAX_BYTES:
        state["changes_not_listed"] = int(state.get("changes_not_listed", 0)) + 1
        return
    changes.append(entry)


def _count_applied(state: dict[str, Any], action: str) -> None:
    """How many objects each apply created, configured or left unchanged (the changed ones are in the log)."""
    counts = state.setdefault("applied", {})
    counts[action] = int(counts.get(action, 0)) + 1


def hardening_summary(changes: list[Any]) -> list[str]:
    """One short line per hardening change or finding: the object, the field, before -> after. The reasons are
    the rules' own (docs/bootstrap.md, "Manifest hardening"); a line is cut at ``SUMMARY_LINE_MAX_CHARS``."""
    lines = []
    for c in changes:
        line = f"{c.object} {c.field}: {c.before!r} -> {c.after!r}"
        lines.append(line if len(line) <= SUMMARY_LINE_MAX_CHARS else line[: SUMMARY_LINE_MAX_CHARS - 3] + "...")
    return lines


def _record_hardening(state: dict[str, Any], key: str, hardened: Any) -> None:
    """The hardening of one application, summarised, while ``hardening`` stays within
    ``HARDENING_MAX_BYTES``; past that only its counts."""
    entry: dict[str, Any] = {"changes": hardening_summary(hardened.changes),
                             "findings": hardening_summary(hardened.findings)}
    section = state.setdefault("hardening", {})
    if payload_bytes(section) + payload_bytes({key: entry}) > HARDENING_MAX_BYTES:
        entry = {"changes": len(hardened.changes), "findings": len(hardened.findings)}
    section[key] = entry


def refuse_namespace(namespace: str, controller_namespace: str) -> None:
    """kube-system and the controller's namespace are never labelled (docs/facts.md, Load Balancer Controller: readiness gate)."""
    if namespace in PROTECTED_NAMESPACES or namespace == controller_namespace:
        why = (
            "the controller's own pods would wait for a gate only the controller can set "
            "(aws-load-balancer-controller#1628)"
            if namespace == controller_namespace
            else "a readiness gate on a system pod can block cluster recovery (aws-load-balancer-controller#2282)"
        )
        raise InvalidInputError(
            f"namespaces: refusing to label namespace {namespace!r} with {INJECT_LABEL}=enabled: {why}; "
            "run applications in their own namespaces"
        )


# What an execution's input may not set: these choose what runs with cluster-admin rights (the chart helm installs
# from, its version, the controller image, the role the controller's service account is annotated with). The
# deployed config sets them per cluster (stacks/config.py, ``ControllerConfig``); the field to use instead:
CONFIGURED_CONTROLLER_FIELDS: dict[str, str] = {
    "chart_repository": "clusters[].controller.chart_repository",
    "chart_version": "clusters[].controller.chart_version",
    "image_repository": "clusters[].controller.image_repository",
    "role_arn": "clusters[].controller.role_arn",
}
# What the deployment knows of each cluster and the input may only repeat (cluster names and Regions are checked
# against the configured ones).
CONFIGURED_CLUSTER_FIELDS = ("region", "vpc_id")


def refuse_configured_fields(raw: Any) -> None:
    """An input that sets a controller field the config owns is refused, naming the config field to use."""
    controller = raw.get("controller") if isinstance(raw, dict) else None
    if not isinstance(controller, dict):
        return
    given = [k for k in CONFIGURED_CONTROLLER_FIELDS if k in controller]
    if given:
        raise InvalidInputError(
            "; ".join(
                f"controller.{k}: not an input field, because it chooses what runs with cluster-admin rights; set "
                f"{CONFIGURED_CONTROLLER_FIELDS[k]} in the albgate config and deploy"
                for k in given
            )
        )


def configured_controller(raw: Any, configured: dict[str, Any]) -> Any:
    """The input with the deployed settings of its cluster merged into ``controller``.

    ``configured``: cluster name -> the controller settings the stack was deployed with (Region, VPC, chart
    repository and version, image mirror, IRSA role). A cluster not in it is refused, and so is a Region or VPC
    that differs from the configured one."""
    if not isinstance(raw, dict):
        return raw  # parse_bootstrap names the problem
    cluster = raw.get("cluster")
    if not isinstance(cluster, str) or cluster not in configured:
        names = ", ".join(repr(c) for c in sorted(configured)) or "none"
        raise InvalidInputError(
            f"cluster: {cluster!r} is not a cluster of this deployment (configured: {names}); add it under clusters "
            "in the albgate config and deploy"
        )
    settings = {k: v for k, v in dict(configured[cluster] or {}).items() if v not in (None, "")}
    given = raw.get("controller", {})
    if not isinstance(given, dict):
        return raw  # parse_bootstrap names the problem
    for key in CONFIGURED_CLUSTER_FIELDS:
        if key in settings and given.get(key) not in (None, settings[key]):
            raise InvalidInputError(
                f"controller.{key}: {given[key]!r}, but cluster {cluster!r} is deployed with {key} "
                f"{settings[key]!r} (clusters[].{key} in the albgate config); leave it out of the input"
            )
    return {**raw, "controller": {**given, **settings}}


def validate_input(
    raw: Any, execution_name: str, now: float, configured: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate everything that can be validated without the cluster, so a bad input changes nothing.

    ``configured``: cluster name -> its deployed controller settings (the state machine passes them from the
    stack's config; ``configured_controller``). None outside a deployment (the simulation, tests): the input
    then gets the pinned defaults. Either way the input may not set what ``CONFIGURED_CONTROLLER_FIELDS`` names.
    """
    refuse_configured_fields(raw)
    if configured is not None:
        raw = configured_controller(raw, configured)
    request = parse_bootstrap(raw)
    size = payload_bytes(request.model_dump(mode="json"))
    if size > MAX_REQUEST_BYTES:
        raise InvalidInputError(
            f"input: {size / 1024:.0f} KiB of request (manifests included); albgate takes at most "
            f"{MAX_REQUEST_BYTES // 1024} KiB, because every state of the bootstrap carries it next to what the "
            f"steps find and Step Functions keeps at most {STATE_PAYLOAD_MAX_BYTES // 1024} KiB per state "
            "(docs/rollout.md, Limits): bootstrap the applications in several runs, or leave out the manifests "
            "of those already applied"
        )
    for ns in request.all_namespaces():
        refuse_namespace(ns, request.controller.namespace)
    plans = []
    for app in request.applications:
        if app.manifests is None:
            continue
        # The provisional harden validates the shape and refuses instance targets; Apply hardens again with the
        # cluster's real version (native sleep or exec).
        hardened = harden(
            app.manifests.deployment,
            app.manifests.service,
            app.manifests.ingress,
            _hardening_policy(request, app, native_sleep=True),
            namespace=app.namespace,
            container=app.container,
        )
        plans.append({"app": f"{app.namespace}/{app.deployment}", "changes": len(hardened.changes),
                      "findings": len(hardened.findings)})
    return {
        "request": request.model_dump(mode="json"),
        "execution_name": execution_name,
        "started_at": now,
        "plans": plans,
        "changes": [],
        "wait_seconds": 0,
    }


def _hardening_policy(request: BootstrapRequest, app: AppBootstrap, *, native_sleep: bool) -> HardeningPolicy:
    return HardeningPolicy.from_rollout_policy(
        request.policy,
        native_sleep=native_sleep,
        health_check_interval_seconds=request.health_check_interval_seconds,
        gated=app.gated,
        harden=app.harden,
    )


# ---------------------------------------------------------------------------------------------------------
# Install the controller
# ---------------------------------------------------------------------------------------------------------
def helm_values(cluster: str, settings: ControllerSettings) -> dict[str, Any]:
    """The chart values albgate installs with (docs/facts.md, Load Balancer Controller: install)."""
    values: dict[str, Any] = {
        "clusterName": cluster,
        # The identity is albgate's (Pod Identity association or IRSA, stacks/constructs/lbc_iam.py): the
        # chart must not create its own account.
        "serviceAccount": {"create": False, "name": settings.service_account},
        # Fail: while the webhook is down no pod is created without its gate (docs/facts.md, Load Balancer Controller: readiness gate: Ignore is the default
        # after v2.11.0 and then pods get created with no gate). The object selector keeps the controller's own
        # pods out (the chart's template excludes them too; stated here so a chart change cannot drop it):
        # with Fail they could otherwise never be created while no controller pod serves the webhook (#1628).
        "podMutatorWebhookConfig": {"failurePolicy": settings.webhook_failure_policy},
        "objectSelector": {
            "matchExpressions": [
                {"key": CONTROLLER_NAME_LABEL[0], "operator": "NotIn", "values": [CONTROLLER_NAME_LABEL[1]]}
            ]
        },
        "targetgroupbindingMaxExponentialBackoffDelay": settings.max_backoff,
    }
    if settings.region:
        values["region"] = settings.region
    if settings.vpc_id:
        values["vpcId"] = settings.vpc_id
    if settings.image_repository:
        values["image"] = {"repository": settings.image_repository, "tag": CONTROLLER_VERSION}
    return values


def chart_reference(settings: ControllerSettings) -> list[str]:
    """The chart argument(s): ``--repo URL aws-load-balancer-controller`` or ``oci://mirror/aws-load-balancer-controller``."""
    repo = settings.chart_repository.rstrip("/")
    if repo.startswith("oci://"):
        return [f"{repo}/{CHART_NAME}"]
    return ["--repo", repo, CHART_NAME]


# A private ECR registry's host: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn] (docs/facts.md, "Private
# ECR mirror of the controller"); the account and Region are validators.py's rules.
_ECR_REGISTRY = re.compile(ECR_REGISTRY_PATTERN)


@dataclass(frozen=True)
class EcrChartMirror:
    """An ``oci://`` chart repository in a private ECR registry: helm logs in to ``host`` before it pulls, and the
    chart lives in the ECR repository ``repository`` (``helm push chart.tgz oci://<host>/<path>`` stores it at
    ``<path>/<chart name>``)."""

    host: str
    account: str
    region: str
    repository: str


def ecr_chart_mirror(chart_repository: str) -> EcrChartMirror | None:
    """The ECR mirror a chart repository names, or None (eks-charts, or another OCI registry: no login)."""
    if not chart_repository.startswith("oci://"):
        return None
    host, _, path = chart_repository.removeprefix("oci://").rstrip("/").partition("/")
    m = _ECR_REGISTRY.fullmatch(host)
    if m is None:
        return None
    return EcrChartMirror(host, m.group("account"), m.group("region"), f"{path}/{CHART_NAME}" if path else CHART_NAME)


HELM_HISTORY_MAX = "10"  # release records kept (helm's own default)
HELM_TIMEOUT = "10m0s"  # for any one Kubernetes operation of a helm run; the install function allows 12 minutes


def helm_upgrade_args(settings: ControllerSettings, values_file: str) -> list[str]:
    """Helm 4's ``helm upgrade --install`` for the pinned chart (docs/facts.md, "Helm 4").

    No --wait: the state machine checks that the controller works (Helm 4's default, hookOnly, waits for hooks
    only). Server-side apply always, with conflicts forced: the chart owns the fields it renders, as albgate's
    own applies do (FIELD_MANAGER, force) and as Helm 3's three-way merge did. Helm 4's own default, "auto",
    would keep a release that Helm 3 installed on client-side apply, and --force-conflicts is refused unless
    server-side apply is on; without it, a field someone changed with kubectl makes every upgrade fail."""
    return [
        "upgrade",
        "--install",
        RELEASE_NAME,
        *chart_reference(settings),
        "--version",
        settings.chart_version,
        "--namespace",
        settings.namespace,
        "--values",
        values_file,
        "--reset-values",  # the values are exactly albgate's, never merged with a previous run's
        "--server-side",
        "true",
        "--force-conflicts",
        "--history-max",
        HELM_HISTORY_MAX,
        "--timeout",
        HELM_TIMEOUT,
    ]


# A helm that dies between writing its release record as pending-install/-upgrade/-rollback and marking it done
# (a Lambda timeout, or a failed last write) leaves the release pending, and every later upgrade answers "another
# operation (install/upgrade/rollback) is in progress". Helm does not recover it by itself: a pending state is one
# it cannot trust, and its maintainers point to rolling back or deleting and re-installing (docs/facts.md, "Helm
# 4": pending releases). albgate does that itself once the pending revision is older than any helm run that could
# still be writing it: its own install function stops after 12 minutes (tests/bootstrap/test_specs.py checks the
# bound against the function's timeout), helm's own --timeout defaults to 5 minutes; a person's run with a longer
# --timeout is the one case this waits out with a ConflictError instead of clearing.
STALE_PENDING_SECONDS = 30 * 60
PENDING_PREFIX = "pending-"


def pending_release_fix(current: HelmRelease | None, now: float) -> str | None:
    """How to clear a pending release before upgrading it: None when it is not pending; ``rollback`` (to the
    revision before, which helm re-applies as a new deployed revision) when it has one, else ``uninstall``. A
    release pending for less than STALE_PENDING_SECONDS, or since an unknown time, may still be written by the
    helm that started it: ConflictError (retried, then the bootstrap fails naming it)."""
    if current is None or not current.status.startswith(PENDING_PREFIX):
        return None
    since = current.updated_at
    if since is None or now - since < STALE_PENDING_SECONDS:
        when = "at an unknown time" if since is None else f"{int(now - since)} s ago"
        raise ConflictError(
            f"helm release {current.namespace}/{current.name} is {current.status} (revision {current.revision}, "
            f"written {when}): another helm operation may still be running; albgate clears a pending release "
            f"once it is {STALE_PENDING_SECONDS // 60} minutes old, or finish or clear that operation and run the "
            "bootstrap again"
        )
    return "rollback" if current.revision > 1 else "uninstall"


def helm_clear_args(fix: str, settings: ControllerSettings) -> list[str]:
    """``helm rollback`` to the revision before (applied as ``helm_upgrade_args`` applies: server-side, conflicts
    forced) or ``helm uninstall``, of albgate's release."""
    if fix == "rollback":
        return ["rollback", RELEASE_NAME, "--namespace", settings.namespace, "--server-side", "true",
                "--force-conflicts", "--history-max", HELM_HISTORY_MAX, "--timeout", HELM_TIMEOUT]
    return ["uninstall", RELEASE_NAME, "--namespace", settings.namespace, "--timeout", HELM_TIMEOUT]


def install_action(current: HelmRelease | None, chart_version: str, values: dict[str, Any]) -> str:
    """``install``, ``upgrade`` or ``unchanged``: a release at the pinned chart with the same values is left alone."""
    if current is None:
        return "install"
    if current.status != "deployed" or current.chart_version != chart_version or current.values != values:
        return "upgrade"
    return "unchanged"


def service_account_manifest(settings: ControllerSettings) -> dict[str, Any]:
    """The controller's service account; annotated with the IRSA role when one is configured."""
    meta: dict[str, Any] = {
        "name": settings.service_account,
        "namespace": settings.namespace,
        "labels": {CONTROLLER_NAME_LABEL[0]: CONTROLLER_NAME_LABEL[1], "app.kubernetes.io/managed-by": "albgate"},
    }
    if settings.role_arn:
        meta["annotations"] = {"eks.amazonaws.com/role-arn": settings.role_arn}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def install_controller(kube: BootstrapKubernetesPort, helm: HelmPort, clock: Clock, raw_state: Any) -> dict[str, Any]:
    state, request = _state(raw_state)
    settings = request.controller
    now = clock.now()
    state["controller"] = _wait(Verdict.WAITING, "installed; waiting for it to work",
                                deadline=now + settings.deadline_seconds, polls=0)
    if not settings.install:
        state["controller"]["install"] = {"action": "skipped", "reason": "controller.install is false"}
        return state
    applied = kube.apply(service_account_manifest(settings))
    if applied.action != "unchanged":
        _log(state, "Install Controller", applied.action, applied.ref)
    values = helm_values(request.cluster, settings)
    current = helm.release(RELEASE_NAME, settings.namespace)
    fix = pending_release_fix(current, now)
    if fix is not None and current is not None:
        helm.run(helm_clear_args(fix, settings))
        _log(state, "Install Controller", fix, f"helm release {settings.namespace}/{RELEASE_NAME}",
             {"was": current.status, "revision": current.revision, "written_at": current.updated_at})
        current = helm.release(RELEASE_NAME, settings.namespace)
    action = install_action(current, settings.chart_version, values)
    if action != "unchanged":
        helm.upgrade_install(helm_upgrade_args(settings, VALUES_FILE), values)
        _log(state, "Install Controller", action, f"helm release {settings.namespace}/{RELEASE_NAME}",
             {"chart_version": settings.chart_version,
              "from": current.chart_version if current else None, "values": values})
    state["controller"]["install"] = {"action": action, "chart_version": settings.chart_version}
    return state


# ---------------------------------------------------------------------------------------------------------
# Is the controller working?
# ---------------------------------------------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of ``v2.13.0`` / ``2.13.0``; None when it is not such a version."""
    return version_numbers(text.strip())


def image_version(image: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from an image tag like ``...:v2.13.0``; None when the tag says no version."""
    tag = image.rsplit("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    return version_numbers(tag, prefix=True)


@dataclass(frozen=True)
class ControllerObservation:
    """What the cluster shows of the controller at one instant (read by ``observe_controller``)."""

    deployment: Deployment | None
    webhook: MutatingWebhook | None
    ready_endpoints: int


def observe_controller(kube: BootstrapKubernetesPort, settings: ControllerSettings) -> ControllerObservation:
    try:
        dep: Deployment | None = kube.get_deployment(settings.namespace, CONTROLLER_DEPLOYMENT)
    except NotFoundError:
        dep = None
    try:
        webhook: MutatingWebhook | None = kube.get_mutating_webhook(WEBHOOK_CONFIGURATION)
    except NotFoundError:
        webhook = None
    endpoints = kube.ready_endpoints(settings.namespace, WEBHOOK_SERVICE) if dep is not None else 0
    return ControllerObservation(dep, webhook, endpoints)


def controller_verdict(
    seen: ControllerObservation, settings: ControllerSettings, now: float, deadline: float
) -> tuple[Verdict, str]:
    """PASSED when the Deployment is available and fully rolled, the pod webhook has the wanted failure
    policy and its Service has ready endpoints; WAITING until then; FAILED at the deadline."""
    problems: list[str] = []
    dep = seen.deployment
    if dep is None:
        problems.append(f"Deployment {settings.namespace}/{CONTROLLER_DEPLOYMENT} does not exist")
    else:
        if dep.observed_generation < dep.generation or dep.updated_replicas < dep.replicas:
            problems.append(f"the controller Deployment is still rolling ({dep.updated_replicas}/{dep.replicas} updated)")
        if dep.available_replicas < 1:
            problems.append("no controller pod is available")
    entry = seen.webhook.entry(POD_WEBHOOK) if seen.webhook else None
    if entry is None:
        problems.append(f"the pod webhook {POD_WEBHOOK} in {WEBHOOK_CONFIGURATION} does not exist")
    elif settings.install and entry.failure_policy != settings.webhook_failure_policy:
        problems.append(f"the pod webhook's failurePolicy is {entry.failure_policy}, not {settings.webhook_failure_policy}")
    if seen.ready_endpoints < 1:
        problems.append(f"Service {settings.namespace}/{WEBHOOK_SERVICE} has no ready endpoint")
    if not problems:
        return Verdict.PASSED, "controller available, webhook serving"
    reason = "; ".join(problems)
    if now >= deadline:
        return Verdict.FAILED, f"the controller did not work within its deadline: {reason}"
    return Verdict.WAITING, reason


def check_controller(kube: BootstrapKubernetesPort, clock: Clock, raw_state: Any) -> dict[str, Any]:
    state, request = _state(raw_state)
    now = clock.now()
    controller = dict(state.get("controller") or {})
    deadline = float(controller.get("deadline") or now + request.controller.deadline_seconds)
    seen = observe_controller(kube, request.controller)
    verdict, reason = controller_verdict(seen, request.controller, now, deadline)
    image = seen.deployment.template.containers[0].image if seen.deployment and seen.deployment.template.containers else None
    state["controller"] = {**controller, **_wait(verdict, reason), "deadline": deadline,
                           "polls": int(controller.get("polls", 0)) + 1, "image": image}
    state["wait_seconds"] = POLL_SECONDS if verdict is Verdict.WAITING else 0
    return state


# ---------------------------------------------------------------------------------------------------------
# Label namespaces
# ---------------------------------------------------------------------------------------------------------
def namespace_manifest(name: str) -> dict[str, Any]:
    """Only the label: with server-side apply albgate owns that one field (and creates the namespace if new)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {INJECT_LABEL: "enabled"}}}


def label_namespaces(kube: BootstrapKubernetesPort, raw_state: Any) -> dict[str, Any]:
    state, request = _state(raw_state)
    results = []
    for ns in request.all_namespaces():
        refuse_namespace(ns, request.controller.namespace)
        applied = kube.apply(namespace_manifest(ns))
        results.append({"namespace": ns, "action": applied.action})
        if applied.action != "unchanged":
            _log(state, "Label Namespaces", applied.action, applied.ref, {INJECT_LABEL: "enabled"})
    state["namespaces"] = results
    return state


# ---------------------------------------------------------------------------------------------------------
# Apply workloads
# ---------------------------------------------------------------------------------------------------------
def native_sleep_supported(kube: BootstrapKubernetesPort) -> bool:
    return kube.server_version() >= NATIVE_SLEEP_SINCE


def _hardened_apps(kube: BootstrapKubernetesPort, request: BootstrapRequest) -> list[tuple[AppBootstrap, Any]]:
    native = native_sleep_supported(kube) if any(a.manifests for a in request.applications) else True
    out = []
    for app in request.applications:
        if app.manifests is None:
            continue
        out.append((app, harden(app.manifests.deployment, app.manifests.service, app.manifests.ingress,
                                _hardening_policy(request, app, native_sleep=native),
                                namespace=app.namespace, container=app.container)))
    return out


def apply_services_and_ingresses(kube: BootstrapKubernetesPort, clock: Clock, raw_state: Any) -> dict[str, Any]:
    """Dry-run every manifest (the API server validates them against its schemas, strictly), then apply the
    Services and Ingresses; the Deployments wait until their binding exists and the webhook injects the gate."""
    state, request = _state(raw_state)
    apps = _hardened_apps(kube, request)
    for _, hardened in apps:
        for manifest in hardened.manifests():
            kube.apply(manifest, dry_run=True)  # InvalidInputError (422/400) names the field; nothing applied
    state["applied"] = {}
    for app, hardened in apps:
        service, waiting = serving_selector_now(kube, app.namespace, hardened.service)
        if waiting:
            ref = f"Service/{app.namespace}/{service['metadata']['name']}"
            _log(state, "Apply Services And Ingresses", "serving label deferred", ref,
                 {"pods_without_label": waiting[:MAX_PODS_LISTED], "pod_count": len(waiting),
                  "next": "run the bootstrap again once the Deployment has rolled: every pod then carries the label"})
        for manifest in (service, hardened.ingress):
            result = kube.apply(manifest)
            _count_applied(state, result.action)
            if result.action != "unchanged":
                _log(state, "Apply Services And Ingresses", result.action, result.ref)
        _record_hardening(state, f"{app.namespace}/{app.deployment}", hardened)
    state["bindings"] = _wait(Verdict.WAITING, "waiting for the controller to bind the Services",
                              deadline=clock.now() + DEFAULT_BINDING_DEADLINE_SECONDS, polls=0)
    state["wait_seconds"] = 0
    return state


def serving_selector_now(kube: BootstrapKubernetesPort, namespace: str,
                         service: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The hardened Service to apply now, and the pods it would select that lack the serving label (sorted names).

    The hardening adds ``SERVING_LABEL: IN_SERVICE`` to the pod template and to the Service's selector (lambdas/
    domain/manifests.py). Services are applied before Deployments, so a Service of pods born before the label would
    select none of them until the Deployment has rolled: every request would fail meanwhile. So while a pod the rest
    of the selector selects has no serving label at all, the selector is applied without it; the Deployment then
    rolls to the labelled template, and the next bootstrap adds it. A pod whose label albgate set to
    ``OUT_OF_SERVICE`` (a step took it out) carries it, and does not hold the selector back."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if selector.get(SERVING_LABEL) != IN_SERVICE:
        return service, []
    rest = {k: v for k, v in selector.items() if k != SERVING_LABEL}
    waiting = sorted(p.name for p in kube.list_pods(namespace, rest)
                     if not p.terminating and SERVING_LABEL not in p.labels)
    if not waiting:
        return service, []
    deferred = copy.deepcopy(service)
    deferred["spec"]["selector"] = rest
    return deferred, waiting


def probe_pod(namespace: str, deployment: dict[str, Any]) -> dict[str, Any]:
    """A minimal pod with the Deployment's template labels, for a dry-run create (never persisted)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    containers = [{"name": c["name"], "image": c["image"]} for c in (template.get("spec") or {}).get("containers", [])[:1]]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "albgate-probe-", "namespace": namespace, "labels": labels},
        "spec": {"containers": containers},
    }


def check_bindings(kube: BootstrapKubernetesPort, clock: Clock, raw_state: Any) -> dict[str, Any]:
    """Each app's Service is bound to an IP target group, and a pod created now gets the controller's gate."""
    state, request = _state(raw_state)
    now = clock.now()
    bindings = dict(state.get("bindings") or {})
    deadline = float(bindings.get("deadline") or now + DEFAULT_BINDING_DEADLINE_SECONDS)
    waiting: list[str] = []
    gates: dict[str, list[str]] = {}
    for app in request.applications:
        if app.manifests is None:
            continue
        svc = app.manifests.service["metadata"]["name"]
        tgbs = [b for b in kube.list_target_group_bindings(app.namespace) if b.service_name == svc]
        if not tgbs:
            waiting.append(f"no TargetGroupBinding for Service {app.namespace}/{svc} yet")
            continue
        wrong = [b.name for b in tgbs if b.target_type and b.target_type != "ip"]
        if wrong and app.gated:
            raise UnsafeConfigurationError(
                f"TargetGroupBinding(s) {', '.join(wrong)} of Service {app.namespace}/{svc} use instance targets; "
                "set alb.ingress.kubernetes.io/target-type: ip on the Ingress and re-run the bootstrap"
            )
        if not request.controller.require_gate_injection:
            continue
        # the pod template as applied: the hardening's serving label is one the Service selects (native sleep or
        # not changes no label)
        applied = harden(app.manifests.deployment, app.manifests.service, app.manifests.ingress,
                         _hardening_policy(request, app, native_sleep=True), namespace=app.namespace,
                         container=app.container).deployment
        try:
            pod = kube.dry_run_create_pod(app.namespace, probe_pod(app.namespace, applied))
        except RetryableError as e:
            waiting.append(f"dry-run pod in {app.namespace}: {e}")
            continue
        expected = [LBC_GATE_PREFIX + b.name for b in tgbs if b.target_type in ("ip", "")]
        missing = [g for g in expected if g not in pod.readiness_gates]
        gates[f"{app.namespace}/{app.deployment}"] = list(pod.readiness_gates)[:MAX_GATES_LISTED]
        if missing:
            waiting.append(f"a dry-run pod in {app.namespace} came back without {', '.join(missing)}")
    if not waiting:
        verdict, reason = Verdict.PASSED, "every Service is bound to an IP target group; the webhook injects the gates"
    elif now >= deadline:
        verdict, reason = Verdict.FAILED, "bindings or gate injection not ready by the deadline: " + "; ".join(waiting)
    else:
        verdict, reason = Verdict.WAITING, "; ".join(waiting)
    state["bindings"] = {**bindings, **_wait(verdict, reason), "deadline": deadline,
                         "polls": int(bindings.get("polls", 0)) + 1, "gates": gates}
    state["wait_seconds"] = POLL_SECONDS if verdict is Verdict.WAITING else 0
    return state


def apply_deployments(kube: BootstrapKubernetesPort, clock: Clock, raw_state: Any) -> dict[str, Any]:
    state, request = _state(raw_state)
    for app, hardened in _hardened_apps(kube, request):
        result = kube.apply(hardened.deployment)
        _count_applied(state, result.action)
        if result.action != "unchanged":
            # What the hardening changed is in the state's `hardening`, once
            _log(state, "Apply Deployments", result.action, result.ref,
                 {"hardening_changes": len(hardened.changes)} if hardened.changes else None)
    state["settle"] = _wait(Verdict.WAITING, "waiting for the Deployments to settle",
                            deadline=clock.now() + DEFAULT_SETTLE_DEADLINE_SECONDS, polls=0)
    state["wait_seconds"] = 0
    return state


# ---------------------------------------------------------------------------------------------------------
# Pods born before the label
# ---------------------------------------------------------------------------------------------------------
def settled(dep: Deployment) -> bool:
    """What ``kubectl rollout status`` waits for: the latest spec seen, every replica updated and available."""
    return (
        dep.observed_generation >= dep.generation
        and dep.updated_replicas == dep.replicas
        and dep.available_replicas >= dep.replicas
    )


def ungated_pods(pods: list[Pod], ip_bindings: list[str]) -> list[Pod]:
    """Pods that miss one of the controller's gates they would get if created now."""
    wanted = [LBC_GATE_PREFIX + b for b in ip_bindings]
    return [p for p in pods if not p.terminating and any(g not in p.readiness_gates for g in wanted)]


def find_pods_born_before_label(kube: BootstrapKubernetesPort, clock: Clock, raw_state: Any) -> dict[str, Any]:
    """Wait for the apps' Deployments to settle; then list those whose current pods lack the controller's gate,
    as inputs of albgate's gated ``restart`` (never a bulk delete)."""
    state, request = _state(raw_state)
    now = clock.now()
    settle = dict(state.get("settle") or {})
    deadline = float(settle.get("deadline") or now + DEFAULT_SETTLE_DEADLINE_SECONDS)
    busy: list[str] = []
    restarts: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for app in request.applications:
        try:
            dep = kube.get_deployment(app.namespace, app.deployment)
        except NotFoundError:
            continue  # nothing to restart; the preflight report names the missing Deployment
        if not settled(dep):
            busy.append(f"{app.namespace}/{app.deployment} ({dep.available_replicas}/{dep.replicas} available, "
                        f"{dep.updated_replicas} updated)")
            continue
        selected = [s.name for s in kube.list_services(app.namespace)
                    if s.selector and all(dep.template.labels.get(k) == v for k, v in s.selector.items())]
        ip_bindings = [b.name for b in kube.list_target_group_bindings(app.namespace)
                       if b.service_name in selected and b.target_type in ("ip", "")]
        if not ip_bindings or not request.controller.require_gate_injection:
            continue
        current = max(kube.list_replica_sets(app.namespace, app.deployment), key=lambda rs: rs.revision, default=None)
        pods = [p for p in kube.list_pods(app.namespace, dep.selector)
                if current is None or p.labels.get("pod-template-hash") == current.pod_template_hash]
        missing = ungated_pods(pods, ip_bindings)
        if not missing:
            continue
        names = sorted(p.name for p in missing)
        stale.append({"deployment": f"{app.namespace}/{app.deployment}", "pods": names[:MAX_PODS_LISTED],
                      "pod_count": len(names)})
        container = dep.template.container(app.container) or dep.template.containers[0]
        restarts.append(restart_request(request, app.namespace, app.deployment, container.name, container.image))
    if busy and now < deadline:
        verdict, reason = Verdict.WAITING, "Deployments still rolling: " + "; ".join(busy)
    elif busy:
        verdict, reason = Verdict.FAILED, "Deployments did not settle by the deadline: " + "; ".join(busy)
    else:
        verdict, reason = Verdict.PASSED, (f"{len(restarts)} Deployment(s) have pods born before the label"
                                           if restarts else "every pod carries its gate")
    state["settle"] = {**settle, **_wait(verdict, reason), "deadline": deadline, "polls": int(settle.get("polls", 0)) + 1}
    state["stale_pods"] = stale
    state["restarts"] = restarts if verdict is Verdict.PASSED and request.restart_pods_born_before_label else []
    state["wait_seconds"] = POLL_SECONDS if verdict is Verdict.WAITING else 0
    return state


def restart_request(
    request: BootstrapRequest, namespace: str, deployment: str, container: str, image: str
) -> dict[str, Any]:
    """The input of albgate's rollout state machine that re-creates every pod through the gates, same image (a
    restart names none: it keeps the one the pods run, which must have a tag or digest to be pinned)."""
    try:
        parse_image(image)
    except ValueError as e:
        raise InvalidInputError(
            f"Deployment {namespace}/{deployment} runs image {image!r}, which names no tag or digest, so a gated "
            f"restart cannot pin it: {e}"
        ) from e
    return {
        "cluster": request.cluster,
        "namespace": namespace,
        "deployment": deployment,
        "container": container,
        "kind": "restart",
        "policy": request.policy.model_dump(mode="json"),
    }

