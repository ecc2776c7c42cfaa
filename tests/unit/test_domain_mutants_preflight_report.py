"""The preflight report a person reads before trusting a cluster with zero-downtime rollouts, word for word.

Given an in-memory cluster and load balancer with one thing wrong at a time (or everything at once), when the
report is made, then each risk has its code, severity, subject, the problem in a sentence and the fix to apply,
the rendered text lists them with the counts, and a bootstrap's own report checks what the bootstrap touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from lambdas.domain import bootstrap as b
from lambdas.domain.errors import InvalidInputError, NotFoundError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.ports import (
    INJECT_LABEL, LBC_GATE_PREFIX, Ingress, IngressBackend, Namespace, TargetGroup, TargetGroupBinding,
)
from lambdas.domain.preflight_report import (
    Report, ReportApp, ReportRequest, Risk, controller_risks, deployment_risks, namespace_risks, parse_report_request,
    preflight_report, report_request_from_bootstrap, run_report, serving_risks,
)
from tests.bootstrap.conftest import app_request
from tests.unit.test_domain_mutants_bootstrap import TGB, controller_deployment, webhook
from tests.unit.test_domain_mutants_bootstrap_steps import Workloads, app_deployment, app_pod, serving

GATE = LBC_GATE_PREFIX + TGB
TG_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s-shop-web/0a1b2c"
LBC = "kube-system/aws-load-balancer-controller"


@dataclass
class ReportCluster(Workloads):
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    ingresses: list[Ingress] = field(default_factory=list)

    def get_namespace(self, name: str) -> Namespace:
        if name not in self.namespaces:
            raise NotFoundError(f"namespaces {name} not found")
        return Namespace(name, self.namespaces[name])

    def get_deployment(self, namespace: str, name: str):
        if (namespace, name) in self.deployments:
            return self.deployments[(namespace, name)]
        if name == "aws-load-balancer-controller" and self.controller is not None:
            return self.controller
        raise NotFoundError(f"deployments {namespace}/{name} not found")

    def list_ingresses(self, namespace: str) -> list[Ingress]:
        return [i for i in self.ingresses if i.namespace == namespace]

    def list_deployments(self, namespace: str):
        return [d for (ns, _), d in self.deployments.items() if ns == namespace]


@dataclass
class Elb:
    groups: dict[str, TargetGroup] = field(default_factory=dict)

    def describe_target_group(self, arn: str) -> TargetGroup:
        if arn not in self.groups:
            raise NotFoundError(f"target group {arn} not found")
        return self.groups[arn]


def target_group(target_type: str = "ip", attached: bool = True, delay: int = 300) -> TargetGroup:
    return TargetGroup(arn=TG_ARN, target_type=target_type, protocol="HTTP", port=80,
                       health_check_interval_seconds=5, health_check_timeout_seconds=4, healthy_threshold=2,
                       unhealthy_threshold=2, load_balancer_arns=("arn:alb",) if attached else (),
                       deregistration_delay_seconds=delay)


def ingress(annotations: dict[str, str] | None = None, backend: str = "web") -> Ingress:
    return Ingress("shop", "web", "alb", {"alb.ingress.kubernetes.io/target-type": "ip"} if annotations is None
                   else annotations, (IngressBackend(backend, 80),))


def healthy_cluster(**kw: Any) -> ReportCluster:
    """The controller working, namespace shop labelled, web served through an IP target group, pods gated."""
    kube = ReportCluster(controller=controller_deployment(), hook=webhook(), endpoints=2,
                         namespaces={"shop": {INJECT_LABEL: "enabled"}}, services=[serving()], ingresses=[ingress()],
                         bindings=[TargetGroupBinding("shop", TGB, TG_ARN, "ip", "web", 80)],
                         pods=[app_pod("web-1", "h", (GATE,))])
    for name, value in kw.items():
        setattr(kube, name, value)
    kube.deployments[("shop", "web")] = app_deployment()
    return kube


POLICY = RolloutPolicy()


# ---------------------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------------------
def test_a_missing_controller_is_one_error_saying_to_run_the_bootstrap():
    assert controller_risks(ReportCluster(), "kube-system", "v3.5.0") == [Risk(
        "controller-missing", "error", f"Deployment {LBC}",
        "the AWS Load Balancer Controller is not installed: no target group is bound, no gate is injected",
        "run the albgate bootstrap (it installs the pinned controller with Helm)")]


def test_a_broken_controller_lists_every_problem_with_its_fix():
    # Given an unpinned image, no available pod, no webhook configuration and no webhook endpoint
    kube = ReportCluster(controller=controller_deployment(image="registry.example.com/lbc:latest", available=0))
    # When the controller is checked / Then four risks, each with its subject and fix
    assert controller_risks(kube, "kube-system", "v3.5.0") == [
        Risk("controller-version-unknown", "warning", f"Deployment {LBC}",
             "the controller image 'registry.example.com/lbc:latest' names no version, so albgate cannot tell whether "
             "it is older than v3.5.0", "pin the image by its version tag (the bootstrap installs v3.5.0)"),
        Risk("controller-unavailable", "error", f"Deployment {LBC}", "no controller pod is available (0/2)",
             "kubectl -n kube-system describe deployment aws-load-balancer-controller; check its IAM identity (Pod "
             "Identity association or IRSA role) and its logs"),
        Risk("webhook-missing", "error", "MutatingWebhookConfiguration aws-load-balancer-webhook",
             "the pod webhook mpod.elbv2.k8s.aws is not configured, so no pod gets the controller's gate",
             "re-install the controller with the bootstrap"),
        Risk("webhook-no-endpoints", "error", "Service kube-system/aws-load-balancer-webhook-service",
             "the webhook Service has no ready endpoint: pod creation in labelled namespaces fails (failurePolicy "
             "Fail) or skips the gate (Ignore)", "wait for the controller pods to be Ready; check their events"),
    ]


def test_an_old_controller_on_ignore_is_two_warnings():
    kube = ReportCluster(controller=controller_deployment(image="public.ecr.aws/eks/lbc:v2.7.1"), hook=webhook("Ignore"),
                         endpoints=1)
    assert controller_risks(kube, "kube-system", "v3.5.0") == [
        Risk("controller-old", "warning", f"Deployment {LBC}",
             "controller v2.7.1 is older than v3.5.0, the version albgate installs and tests against",
             "re-run the bootstrap: it upgrades the Helm release"),
        Risk("webhook-failure-policy-ignore", "warning", "MutatingWebhookConfiguration aws-load-balancer-webhook",
             "mpod.elbv2.k8s.aws has failurePolicy Ignore: while the webhook is down, pods are created without their "
             "readiness gate and can turn Ready before their target is healthy",
             "install with podMutatorWebhookConfig.failurePolicy=Fail (the bootstrap does); its object selector keeps "
             "the controller's own pods out"),
    ]


@pytest.mark.parametrize("image", ["public.ecr.aws/eks/lbc:v3.5.0", "public.ecr.aws/eks/lbc:v3.6.1"])
def test_a_current_controller_with_one_pod_has_no_risk(image):
    kube = ReportCluster(controller=controller_deployment(image=image, available=1), hook=webhook(), endpoints=1)
    assert controller_risks(kube, "kube-system", "v3.5.0") == []


# ---------------------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------------------
def test_a_missing_namespace_is_an_error_and_not_looked_into():
    assert namespace_risks(ReportCluster(), "shop") == ([Risk(
        "namespace-missing", "error", "namespace shop", "the namespace does not exist",
        "create it with the bootstrap (Label Namespaces creates it, labelled)")], False)


def test_an_unlabelled_namespace_is_an_error_with_the_kubectl_fix():
    kube = ReportCluster(namespaces={"shop": {}})
    assert namespace_risks(kube, "shop") == ([Risk(
        "namespace-unlabelled", "error", "namespace shop",
        f"the namespace lacks {INJECT_LABEL}=enabled, so the controller's webhook injects no readiness gate: a new pod "
        "can turn Ready before the ALB has seen it healthy",
        f"kubectl label namespace shop {INJECT_LABEL}=enabled (the bootstrap does it), then re-create the pods "
        "through a gated restart")], True)


# ---------------------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------------------
def serving_of(kube: ReportCluster, elb: Elb, labelled: bool = True, policy: RolloutPolicy = POLICY) -> list[Risk]:
    return serving_risks(kube, elb, kube.deployments[("shop", "web")], policy, labelled)


def test_a_served_and_gated_deployment_has_no_serving_risk():
    assert serving_of(healthy_cluster(), Elb({TG_ARN: target_group()})) == []


def test_a_deployment_no_service_selects_is_one_error():
    kube = healthy_cluster(services=[serving(labels={"app": "api"})])
    assert serving_of(kube, Elb()) == [Risk(
        "no-service", "error", "Deployment shop/web", "no Service selects its pods, so no ALB target group can reach them",
        "apply the app's Service (the bootstrap applies it before the Deployment)")]


def test_an_ingress_on_the_controllers_default_targets_and_no_binding_are_two_errors():
    # Given the Ingress without a target-type annotation (the controller's default: instance) and no binding yet
    kube = healthy_cluster(ingresses=[ingress({}), ingress({}, backend="other")])
    kube.bindings = []
    # When checked / Then the Ingress and the missing binding are named
    risks = serving_of(kube, Elb())
    assert [(r.code, r.subject) for r in risks] == [("instance-targets", "Ingress shop/web"),
                                                    ("no-binding", "Deployment shop/web")]
    assert risks[0].problem == ("target type is instance (the controller default): the ALB targets nodes, not pods, so "
                                "no readiness gate can hold an old pod")
    assert risks[1] == Risk("no-binding", "error", "Deployment shop/web",
                            "no TargetGroupBinding for Service(s) web: the ALB has no target group for these pods",
                            "apply an Ingress with ingressClassName alb routing to the Service, and check that the "
                            "controller reconciles it (its events)")


def test_an_explicit_instance_target_type_is_named_without_the_default_note():
    kube = healthy_cluster(ingresses=[ingress({"alb.ingress.kubernetes.io/target-type": "instance"})])
    risks = serving_of(kube, Elb({TG_ARN: target_group()}))
    assert risks[0].problem.startswith("target type is instance: the ALB targets nodes")


def test_a_target_group_that_is_gone_is_named_with_its_binding():
    assert serving_of(healthy_cluster(), Elb()) == [Risk(
        "target-group-missing", "error", f"TargetGroupBinding shop/{TGB}", f"its target group {TG_ARN} does not exist",
        "delete the binding or let the controller re-create the group (re-apply the Ingress)")]


def test_an_instance_group_unattached_with_a_short_delay_lists_each_problem_once():
    # Given the binding's group uses instance targets, is attached to no listener, and drains for 10 s only
    kube = healthy_cluster()
    risks = serving_of(kube, Elb({TG_ARN: target_group("instance", attached=False, delay=10)}),
                       policy=RolloutPolicy(max_request_seconds=60))
    # Then three errors name the group; the pods' gates are not judged (no IP binding)
    assert [(r.code, r.subject) for r in risks] == [
        ("instance-targets", f"TargetGroupBinding shop/{TGB}"), ("target-group-not-attached", f"target group {TG_ARN}"),
        ("deregistration-delay-short", f"target group {TG_ARN}")]
    assert risks[0].problem == f"target group {TG_ARN} uses instance targets"
    assert risks[1].problem == ("it is not attached to a load balancer listener, so no target in it ever becomes healthy "
                                "(aws-load-balancer-controller#3753)")
    assert risks[1].fix == "check the Ingress rules route to this Service, and the controller's events"
    assert risks[2].problem == ("deregistration delay 10 s is shorter than the longest request (60 s): requests still "
                                "running are dropped")


def test_a_delay_equal_to_the_longest_request_is_enough():
    risks = serving_of(healthy_cluster(), Elb({TG_ARN: target_group(delay=60)}), policy=RolloutPolicy(max_request_seconds=60))
    assert risks == []


def test_pods_without_the_gate_are_counted_and_the_first_five_named():
    # Given seven running pods without the gate, one gated, one terminating
    kube = healthy_cluster()
    kube.pods = [app_pod(f"web-{i}", "h") for i in range(7)] + [app_pod("web-ok", "h", (GATE,)),
                                                               app_pod("web-gone", "h", terminating=True)]
    # When checked in a labelled namespace / Then one error names five of the seven and why they lack it
    [risk] = serving_of(kube, Elb({TG_ARN: target_group()}))
    assert risk == Risk(
        "pods-without-gates", "error", "Deployment shop/web",
        "7 of 8 pod(s) lack the controller's readiness gate (they were created before the namespace was labelled (the "
        "gate is injected only at pod creation)): web-0, web-1, web-2, web-3, web-4 ...",
        "re-create them through a gated restart: the bootstrap starts albgate's rollout state machine with "
        "kind=restart (never a bulk delete)")


def test_in_an_unlabelled_namespace_the_reason_is_the_missing_label_and_five_pods_need_no_ellipsis():
    kube = healthy_cluster()
    kube.pods = [app_pod(f"web-{i}", "h") for i in range(5)]
    [risk] = serving_of(kube, Elb({TG_ARN: target_group()}), labelled=False)
    assert risk.problem == ("5 of 5 pod(s) lack the controller's readiness gate (the namespace is not labelled): "
                            "web-0, web-1, web-2, web-3, web-4")


def test_deployment_risks_name_the_container_they_are_about():
    risks = deployment_risks(app_deployment(), RolloutPolicy())
    assert risks and all(r.subject.startswith("Deployment shop/web") for r in risks)
    assert any(r.subject == "Deployment shop/web container web" for r in risks)


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------
def test_a_clean_cluster_renders_as_no_risk_found():
    request = ReportRequest(cluster="prod", applications=[ReportApp(namespace="shop", deployment="web")])
    kube = healthy_cluster()
    kube.deployments[("shop", "web")] = app_deployment()
    report = Report("prod", [], ["controller", "namespace shop"])
    assert report.render() == ("albgate preflight report for cluster prod: checked controller, namespace shop\n"
                               "no zero-downtime risk found\n0 error(s), 0 warning(s)")
    assert Report("prod").render().startswith("albgate preflight report for cluster prod: checked nothing\n")
    assert preflight_report(kube, Elb({TG_ARN: target_group()}), request).checked == [
        "controller", "namespace shop", "Deployment shop/web"]


def test_risks_render_with_their_severity_and_fix_and_the_counts():
    report = Report("prod", [Risk("a", "error", "namespace shop", "it is broken", "mend it"),
                             Risk("b", "warning", "Deployment shop/web", "it is slow", "speed it up")], ["controller"])
    assert report.render() == (
        "albgate preflight report for cluster prod: checked controller\n"
        "[ERROR] namespace shop: it is broken\n    fix: mend it\n"
        "[WARNING] Deployment shop/web: it is slow\n    fix: speed it up\n"
        "1 error(s), 1 warning(s)")
    assert report.as_dict() == {
        "cluster": "prod", "ok": False, "errors": 1, "warnings": 1,
        "risks": [{"code": "a", "severity": "error", "subject": "namespace shop", "problem": "it is broken",
                   "fix": "mend it"},
                  {"code": "b", "severity": "warning", "subject": "Deployment shop/web", "problem": "it is slow",
                   "fix": "speed it up"}],
        "checked": ["controller"]}


def test_a_configured_deployment_that_is_missing_is_reported_and_others_are_listed_per_namespace():
    # Given namespace shop with web and api, a request naming shop/cart only, and namespace team with no apps named
    kube = healthy_cluster()
    kube.namespaces["team"] = {INJECT_LABEL: "enabled"}
    kube.deployments[("team", "api")] = app_deployment("team", "api")
    request = ReportRequest(cluster="prod", namespaces=["team"], expect_controller=False,
                            applications=[ReportApp(namespace="shop", deployment="cart")])
    report = preflight_report(kube, Elb({TG_ARN: target_group()}), request)
    # Then cart is missing, team's Deployments are all checked, and the controller is not
    assert Risk("deployment-missing", "error", "Deployment shop/cart", "the configured Deployment does not exist",
                "apply it with the bootstrap (its manifests in the input)") in report.risks
    assert report.checked == ["namespace team", "Deployment team/api", "namespace shop"]


def test_the_command_exits_one_on_an_error_and_zero_on_warnings_only():
    kube = healthy_cluster()
    text, code = run_report(kube, Elb({TG_ARN: target_group()}), {"cluster": "prod", "expect_controller": False,
                                                                  "namespaces": ["nowhere"]})
    assert code == 1 and "[ERROR] namespace nowhere: the namespace does not exist" in text
    _, code = run_report(kube, Elb({TG_ARN: target_group()}), {"cluster": "prod", "expect_controller": False})
    assert code == 0


def test_a_bad_report_input_is_refused_naming_the_field():
    with pytest.raises(InvalidInputError, match="^invalid preflight report input: namespaces"):
        parse_report_request({"cluster": "prod", "namespaces": ["Shop"]})


def test_a_bootstraps_report_checks_its_namespaces_apps_controller_and_policy():
    raw = app_request(namespaces=["team"], controller={"namespace": "lbc", "require_gate_injection": False},
                      policy={"max_request_seconds": 45})
    assert report_request_from_bootstrap(raw) == ReportRequest(
        cluster="sim-cluster", namespaces=["team", "shop"],
        applications=[ReportApp(namespace="shop", deployment="web", container="web")], controller_namespace="lbc",
        expect_controller=False, policy=b.parse_bootstrap(raw).policy)
    assert report_request_from_bootstrap(raw).policy.max_request_seconds == 45
