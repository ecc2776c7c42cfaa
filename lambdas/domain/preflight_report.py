"""The preflight report: every zero-downtime risk a cluster shows right now, each with its fix.

Job: read the cluster (through ``BootstrapKubernetesPort``) and the target groups (``ElbPort``) and list, for the
controller and for each configured namespace and application: the controller missing, old or not available; its pod
webhook missing, without endpoints, or with ``failurePolicy: Ignore`` (docs/facts.md, Load Balancer Controller:
readiness gate: pods are then created with no gate while the webhook is down); a namespace without the inject label;
pods without the controller's gate; instance targets; target groups not attached to a listener (#3753: never
healthy); ``maxUnavailable`` above 0; containers without a preStop drain; a grace period shorter than preStop plus
the longest request; a deregistration delay shorter than the longest request; and, where the target groups' ALB
metrics can be read, requests longer than the policy declares (the longest TargetResponseTime of the policy's
``long_requests_window_minutes``), by which the last two are then checked.

Invariant: reads only, never changes anything, and never stops at the first problem: a check that cannot
run (a missing Deployment, a missing Service) becomes a risk itself and the others still run. Throttling and
API outages are not risks: they raise the retryable domain errors so the caller retries. The report is data
(``Report.as_dict``) and text (``Report.render``) for the albgate command.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas.domain import lbc_annotations as lbc
from lambdas.domain import safety
from lambdas.domain.bootstrap import (
    CONTROLLER_DEPLOYMENT,
    CONTROLLER_NAMESPACE,
    CONTROLLER_VERSION,
    POD_WEBHOOK,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_SERVICE,
    BootstrapKubernetesPort,
    image_version,
    parse_version,
    parse_bootstrap,
)
from lambdas.domain.errors import InvalidInputError, NotFoundError
from lambdas.domain.manifests import DEFAULT_TARGET_TYPE, TARGET_TYPE
from lambdas.domain.models import RolloutPolicy, validation_message
from lambdas.domain.ports import INJECT_LABEL, LBC_GATE_PREFIX, Deployment, ElbPort, MetricsPort, TargetGroup
from lambdas.domain.rollout.analysis import MAX_REQUEST_SECONDS, longest_request
from lambdas.domain.validators import ClusterName, ControllerVersion, KubernetesName, KubernetesObjectName

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Risk:
    code: str  # stable identifier, e.g. "namespace-unlabelled"
    severity: Severity  # error: requests can be dropped; warning: slower or fragile, not (yet) dropping
    subject: str  # what it is about: "namespace shop", "Deployment shop/web"
    problem: str
    fix: str


@dataclass
class Report:
    cluster: str
    risks: list[Risk] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(r.severity == "error" for r in self.risks)

    def codes(self) -> list[str]:
        return [r.code for r in self.risks]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "ok": self.ok,
            "errors": sum(r.severity == "error" for r in self.risks),
            "warnings": sum(r.severity == "warning" for r in self.risks),
            "risks": [asdict(r) for r in self.risks],
            "checked": list(self.checked),
        }

    def render(self) -> str:
        lines = [f"albgate preflight report for cluster {self.cluster}: checked {', '.join(self.checked) or 'nothing'}"]
        if not self.risks:
            lines.append("no zero-downtime risk found")
        for r in self.risks:
            lines.append(f"[{r.severity.upper()}] {r.subject}: {r.problem}")
            lines.append(f"    fix: {r.fix}")
        errors, warnings = (sum(r.severity == s for r in self.risks) for s in ("error", "warning"))
        lines.append(f"{errors} error(s), {warnings} warning(s)")
        return "\n".join(lines)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportApp(_Strict):
    namespace: KubernetesName
    deployment: KubernetesObjectName
    container: KubernetesName | None = None


class ReportRequest(_Strict):
    """What to check. With no applications, every Deployment of the namespaces is checked."""

    cluster: ClusterName
    namespaces: list[KubernetesName] = Field(default_factory=list)
    applications: list[ReportApp] = Field(default_factory=list)
    controller_namespace: KubernetesName = CONTROLLER_NAMESPACE
    minimum_controller_version: ControllerVersion = CONTROLLER_VERSION
    expect_controller: bool = Field(default=True, description="false on EKS Auto Mode (no controller to install)")
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)

    def all_namespaces(self) -> list[str]:
        return list(dict.fromkeys([*self.namespaces, *(a.namespace for a in self.applications)]))


def parse_report_request(data: Any) -> ReportRequest:
    try:
        return ReportRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid preflight report input: {validation_message(exc)}") from exc


def report_request_from_bootstrap(raw_request: Any) -> ReportRequest:
    """The report a bootstrap execution ends with: its namespaces, applications and policy."""
    b = parse_bootstrap(raw_request)
    return ReportRequest(
        cluster=b.cluster,
        namespaces=b.all_namespaces(),
        applications=[ReportApp(namespace=a.namespace, deployment=a.deployment, container=a.container)
                      for a in b.applications],
        controller_namespace=b.controller.namespace,
        expect_controller=b.controller.require_gate_injection,
        policy=b.policy,
    )


# ---------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------
def controller_risks(kube: BootstrapKubernetesPort, namespace: str, minimum: str) -> list[Risk]:
    risks: list[Risk] = []
    subject = f"Deployment {namespace}/{CONTROLLER_DEPLOYMENT}"
    try:
        dep = kube.get_deployment(namespace, CONTROLLER_DEPLOYMENT)
    except NotFoundError:
        return [Risk("controller-missing", "error", subject,
                     "the AWS Load Balancer Controller is not installed: no target group is bound, no gate is injected",
                     "run the albgate bootstrap (it installs the pinned controller with Helm)")]
    image = dep.template.containers[0].image if dep.template.containers else ""
    have, want = image_version(image), parse_version(minimum)
    if have is None:
        risks.append(Risk("controller-version-unknown", "warning", subject,
                          f"the controller image {image!r} names no version, so albgate cannot tell whether it is "
                          f"older than {minimum}", f"pin the image by its version tag (the bootstrap installs {minimum})"))
    elif want is not None and have < want:
        risks.append(Risk("controller-old", "warning", subject,
                          f"controller {image.rsplit(':', 1)[-1]} is older than {minimum}, the version albgate "
                          "installs and tests against", "re-run the bootstrap: it upgrades the Helm release"))
    if dep.available_replicas < 1:
        risks.append(Risk("controller-unavailable", "error", subject,
                          f"no controller pod is available ({dep.available_replicas}/{dep.replicas})",
                          f"kubectl -n {namespace} describe deployment {CONTROLLER_DEPLOYMENT}; check its IAM identity "
                          "(Pod Identity association or IRSA role) and its logs"))
    try:
        webhook = kube.get_mutating_webhook(WEBHOOK_CONFIGURATION)
    except NotFoundError:
        webhook = None
    entry = webhook.entry(POD_WEBHOOK) if webhook else None
    if entry is None:
        risks.append(Risk("webhook-missing", "error", f"MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}",
                          f"the pod webhook {POD_WEBHOOK} is not configured, so no pod gets the controller's gate",
                          "re-install the controller with the bootstrap"))
    elif entry.failure_policy != "Fail":
        risks.append(Risk("webhook-failure-policy-ignore", "warning",
                          f"MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}",
                          f"{POD_WEBHOOK} has failurePolicy {entry.failure_policy}: while the webhook is down, pods "
                          "are created without their readiness gate and can turn Ready before their target is healthy",
                          "install with podMutatorWebhookConfig.failurePolicy=Fail (the bootstrap does); its object "
                          "selector keeps the controller's own pods out"))
    if kube.ready_endpoints(namespace, WEBHOOK_SERVICE) < 1:
        risks.append(Risk("webhook-no-endpoints", "error", f"Service {namespace}/{WEBHOOK_SERVICE}",
                          "the webhook Service has no ready endpoint: pod creation in labelled namespaces fails "
                          "(failurePolicy Fail) or skips the gate (Ignore)",
                          "wait for the controller pods to be Ready; check their events"))
    return risks


def namespace_risks(kube: BootstrapKubernetesPort, namespace: str) -> tuple[list[Risk], bool]:
    """(risks, exists)."""
    try:
        ns = kube.get_namespace(namespace)
    except NotFoundError:
        return [Risk("namespace-missing", "error", f"namespace {namespace}", "the namespace does not exist",
                     "create it with the bootstrap (Label Namespaces creates it, labelled)")], False
    if ns.labels.get(INJECT_LABEL) != "enabled":
        return [Risk("namespace-unlabelled", "error", f"namespace {namespace}",
                     f"the namespace lacks {INJECT_LABEL}=enabled, so the controller's webhook injects no readiness "
                     "gate: a new pod can turn Ready before the ALB has seen it healthy",
                     f"kubectl label namespace {namespace} {INJECT_LABEL}=enabled (the bootstrap does it), then "
                     "re-create the pods through a gated restart")], True
    return [], True


def deployment_risks(dep: Deployment, policy: RolloutPolicy) -> list[Risk]:
    """What in the Deployment's own spec drops requests while it rolls or scales down: the findings Preflight
    refuses on (lambdas/domain/safety.py), as risks."""
    subject = f"Deployment {dep.namespace}/{dep.name}"
    return [Risk(f.code, f.severity, f"{subject} container {f.container}" if f.container else subject, f.message, f.fix)
            for f in safety.deployment_findings(dep, policy)]


def longest_request_risk(metrics: MetricsPort | None, tg: TargetGroup, policy: RolloutPolicy,
                         now: float | None) -> tuple[RolloutPolicy, list[Risk]]:
    """Requests the target group answered more slowly than the policy's ``max_request_seconds`` (TargetResponseTime
    Maximum over ``long_requests_window_minutes``, one GetMetricData call): a risk saying so, and the policy with that
    length, by which the grace period and the deregistration delay are then checked. Unchanged without metrics (or
    without ``now``, the time the window ends)."""
    window = policy.long_requests_window_minutes
    if metrics is None or now is None or window == 0 or not tg.load_balancer_arns:
        return policy, []
    seen = longest_request(metrics.target_group_minutes(tg.arn, tg.load_balancer_arns[0], now - window * 60.0, now))
    if seen is None or seen <= policy.max_request_seconds:
        return policy, []
    seconds = min(math.ceil(seen), MAX_REQUEST_SECONDS)
    risk = Risk("requests-longer-than-declared", "warning", f"target group {tg.arn}",
                f"it answered a request in {seen:.0f} s in the last {window} minutes (TargetResponseTime Maximum), "
                f"longer than max_request_seconds ({policy.max_request_seconds} s); the grace period and the "
                f"deregistration delay are checked for {seconds} s",
                f"declare max_request_seconds: {seconds} in the rollout policy (albgate's Preflight sizes the drain for "
                "it anyway)")
    return policy.model_copy(update={"max_request_seconds": seconds}), [risk]


def serving_risks(
    kube: BootstrapKubernetesPort, elb: ElbPort, dep: Deployment, policy: RolloutPolicy, labelled: bool,
    metrics: MetricsPort | None = None, now: float | None = None,
) -> list[Risk]:
    """Services, Ingresses, bindings, target groups and pods' gates of one Deployment; with ``metrics``, the longest
    requests too, read up to ``now`` (``longest_request_risk``: then the Deployment's grace period is checked again
    for them)."""
    if metrics is not None and now is None:
        raise ValueError("the longest requests are read up to a time: pass now with metrics")
    ns, subject = dep.namespace, f"Deployment {dep.namespace}/{dep.name}"
    labels = dep.template.labels or dep.selector
    services = [s for s in kube.list_services(ns)
                if s.selector and all(labels.get(k) == v for k, v in s.selector.items())]
    if not services:
        return [Risk("no-service", "error", subject, "no Service selects its pods, so no ALB target group can reach them",
                     "apply the app's Service (the bootstrap applies it before the Deployment)")]
    names = {s.name for s in services}
    risks: list[Risk] = []
    for ing in kube.list_ingresses(ns):
        if not any(b.service_name in names for b in ing.backends):
            continue
        ttype = ing.annotations.get(TARGET_TYPE, DEFAULT_TARGET_TYPE)
        if ttype != "ip":
            risks.append(Risk("instance-targets", "error", f"Ingress {ns}/{ing.name}",
                              f"target type is {ttype}{' (the controller default)' if TARGET_TYPE not in ing.annotations else ''}: "
                              "the ALB targets nodes, not pods, so no readiness gate can hold an old pod",
                              lbc.fix(TARGET_TYPE, "ip")))
    bindings = [b for b in kube.list_target_group_bindings(ns) if b.service_name in names]
    if not bindings:
        risks.append(Risk("no-binding", "error", subject,
                          f"no TargetGroupBinding for Service(s) {', '.join(sorted(names))}: the ALB has no target "
                          "group for these pods", "apply an Ingress with ingressClassName alb routing to the "
                          "Service, and check that the controller reconciles it (its events)"))
        return risks
    ip_bindings = []
    for b in bindings:
        try:
            tg = elb.describe_target_group(b.target_group_arn)
        except NotFoundError:
            risks.append(Risk("target-group-missing", "error", f"TargetGroupBinding {ns}/{b.name}",
                              f"its target group {b.target_group_arn} does not exist",
                              "delete the binding or let the controller re-create the group (re-apply the Ingress)"))
            continue
        kind = tg.target_type or b.target_type
        if kind != "ip" and not any(r.code == "instance-targets" for r in risks):
            risks.append(Risk("instance-targets", "error", f"TargetGroupBinding {ns}/{b.name}",
                              f"target group {tg.arn} uses {kind} targets", lbc.fix(TARGET_TYPE, "ip")))
        if kind == "ip":
            ip_bindings.append(b.name)
        if not tg.load_balancer_arns:
            risks.append(Risk("target-group-not-attached", "error", f"target group {tg.arn}",
                              "it is not attached to a load balancer listener, so no target in it ever becomes "
                              "healthy (aws-load-balancer-controller#3753)",
                              "check the Ingress rules route to this Service, and the controller's events"))
        sized, long_risks = longest_request_risk(metrics, tg, policy, now)
        risks += long_risks
        if long_risks:
            # the Deployment's own findings were made for the declared length: its grace period again, for this one
            risks += [r for r in deployment_risks(dep, sized) if r.code == "grace-too-short"
                      and not any(o.code == r.code for o in risks)]
        if tg.deregistration_delay_seconds < sized.max_request_seconds:
            risks.append(Risk("deregistration-delay-short", "error", f"target group {tg.arn}",
                              f"deregistration delay {tg.deregistration_delay_seconds} s is shorter than the longest "
                              f"request ({sized.max_request_seconds} s): requests still running are dropped",
                              lbc.fix(lbc.TG_ATTRIBUTES, f"{lbc.DEREGISTRATION_DELAY}={sized.max_request_seconds}")))
    if ip_bindings:
        wanted = [LBC_GATE_PREFIX + b for b in ip_bindings]
        pods = [p for p in kube.list_pods(ns, dep.selector) if not p.terminating]
        ungated = sorted(p.name for p in pods if any(g not in p.readiness_gates for g in wanted))
        if ungated:
            why = ("they were created before the namespace was labelled (the gate is injected only at pod creation)"
                   if labelled else "the namespace is not labelled")
            risks.append(Risk("pods-without-gates", "error", subject,
                              f"{len(ungated)} of {len(pods)} pod(s) lack the controller's readiness gate ({why}): "
                              f"{', '.join(ungated[:5])}{' ...' if len(ungated) > 5 else ''}",
                              "re-create them through a gated restart: the bootstrap starts albgate's rollout state "
                              "machine with kind=restart (never a bulk delete)"))
    return risks


def preflight_report(kube: BootstrapKubernetesPort, elb: ElbPort, request: ReportRequest,
                     metrics: MetricsPort | None = None, now: float | None = None) -> Report:
    """Every risk of the request's cluster, namespaces and Deployments; with ``metrics`` (and ``now``, the time its
    window ends), the longest requests each target group answered too."""
    report = Report(cluster=request.cluster)
    if request.expect_controller:
        report.risks += controller_risks(kube, request.controller_namespace, request.minimum_controller_version)
        report.checked.append("controller")
    for ns in request.all_namespaces():
        ns_risks, exists = namespace_risks(kube, ns)
        report.risks += ns_risks
        report.checked.append(f"namespace {ns}")
        if not exists:
            continue
        labelled = not any(r.code == "namespace-unlabelled" for r in ns_risks)
        apps = [a for a in request.applications if a.namespace == ns]
        if apps:
            deployments = []
            for a in apps:
                try:
                    deployments.append(kube.get_deployment(ns, a.deployment))
                except NotFoundError:
                    report.risks.append(Risk("deployment-missing", "error", f"Deployment {ns}/{a.deployment}",
                                             "the configured Deployment does not exist",
                                             "apply it with the bootstrap (its manifests in the input)"))
        else:
            deployments = kube.list_deployments(ns)
        for dep in deployments:
            report.checked.append(f"Deployment {ns}/{dep.name}")
            serving = serving_risks(kube, elb, dep, request.policy, labelled, metrics, now)
            # a grace period checked for the longest request the ALB saw replaces the one checked for the declared
            own = [r for r in deployment_risks(dep, request.policy)
                   if not (r.code == "grace-too-short" and any(o.code == r.code for o in serving))]
            report.risks += own + serving
    return report


def run_report(kube: BootstrapKubernetesPort, elb: ElbPort, raw_request: Any) -> tuple[str, int]:
    """For the albgate command: (the report as text, exit code 0 when no error-level risk, else 1)."""
    report = preflight_report(kube, elb, parse_report_request(raw_request))
    return report.render(), 0 if report.ok else 1
