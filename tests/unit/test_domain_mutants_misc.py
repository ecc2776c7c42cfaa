"""The smaller rules of the domain, each at the edge where a neighbouring input behaves differently.

Given inputs one step either side of a boundary (a line of exactly the summary's length, a request one byte into
the next KiB, a worst case of exactly the history budget, a wait of one nanosecond, a key given three times), or
two of something where the code loops (two namespaces, two apps, two bindings, two subnets), when the public
function of each module runs, then it answers with the exact value, message or list a person or the next state
reads: the preflight report's risks word for word, the bootstrap's states and helm arguments, the worst case's
events, the image grammar's reasons, the allow-list's refusals, the documents' line numbers, the safety rules'
findings, the plan's problems, the poll waits, the budget's admissions and the smaller helpers behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any

import pytest
from pydantic import TypeAdapter

from lambdas.domain import bootstrap as b
from lambdas.domain import limits, poll, validators
from lambdas.domain.allow_list import AllowedApplication, AllowList, Target, targets_of
from lambdas.domain.budget import BudgetSpec, admit
from lambdas.domain.documents import DocumentError, decode_utf8, parse_json, quote
from lambdas.domain.errors import InvalidInputError, ThrottledError
from lambdas.domain.health_check import INTERVAL, TIMEOUT, hardened_health_check
from lambdas.domain.image_reference import (
    ImageReference, ImageReferenceError, normalised_path, split_domain,
)
from lambdas.domain.lbc_annotations import fix, parse_attributes
from lambdas.domain.limits import WorstCase, duration_problem, most_steps_within_history, worst_case
from lambdas.domain.manifests import TARGET_TYPE, Change
from lambdas.domain.models import RolloutPolicy, RolloutRequest, parse_image, parse_request
from lambdas.domain.network import EndpointNeed, NetworkSpec, NetworkView, Route, RouteTable, unmet_needs
from lambdas.domain.plan import step_problems
from lambdas.domain.ports import (
    INJECT_LABEL, Container, Deployment, Pod, PodCondition, PodTemplate, TargetGroupBinding,
)
from lambdas.domain.preflight_report import (
    Report, ReportRequest, Risk, controller_risks, deployment_risks, preflight_report,
)
from lambdas.domain.safety import deployment_findings
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo
from lambdas.domain.trigger import EcrPush, Ignored, TriggerApplication
from lambdas.domain.trigger_use_case import roll_push
from tests.bootstrap.conftest import app_request
from tests.trigger.test_use_case import ACCOUNT, DIGEST_A, REGION
from tests.trigger.test_use_case import Target as PushTarget
from tests.trigger.test_use_case import world as trigger_world
from tests.unit.test_domain_mutants_bootstrap import NOW, TGB, Clock, Cluster, bound, controller_deployment, state
from tests.unit.test_domain_mutants_bootstrap_steps import (
    app_deployment, app_pod, request_of_size, serving, settled_world, two_apps,
)
from tests.unit.test_domain_mutants_preflight_report import (
    GATE, LBC, TG_ARN, Elb, ReportCluster, healthy_cluster, ingress, serving_of, target_group,
)

IP_FIX = ("set the annotation alb.ingress.kubernetes.io/target-type: ip on the backend Service if it already has that "
          "annotation (the controller uses the Service's value over the Ingress's), else on the Ingress")


# ---------------------------------------------------------------------------------------------------------
# preflight_report: controller_risks
# ---------------------------------------------------------------------------------------------------------
def test_a_controller_deployment_without_containers_names_no_version():
    # Given the controller's Deployment with an empty pod template
    empty = dataclass_replace(controller_deployment(), template=PodTemplate(containers=()))
    kube = ReportCluster(controller=empty, hook=None, endpoints=1)
    # When its risks are listed / Then the first says the (empty) image names no version
    assert controller_risks(kube, "kube-system", "v3.5.0")[0] == Risk(
        "controller-version-unknown", "warning", f"Deployment {LBC}",
        "the controller image '' names no version, so albgate cannot tell whether it is older than v3.5.0",
        "pin the image by its version tag (the bootstrap installs v3.5.0)")


def test_an_old_controller_from_a_registry_with_a_port_is_named_by_its_tag():
    image = "registry.example.com:5000/eks/aws-load-balancer-controller:v2.7.1"
    kube = ReportCluster(controller=controller_deployment(image=image), hook=None, endpoints=1)
    assert controller_risks(kube, "kube-system", "v3.5.0")[0].problem == (
        "controller v2.7.1 is older than v3.5.0, the version albgate installs and tests against")


# ---------------------------------------------------------------------------------------------------------
# preflight_report: deployment_risks
# ---------------------------------------------------------------------------------------------------------
def test_deployment_risks_keep_the_findings_words_and_name_a_container_only_when_there_is_one():
    assert deployment_risks(app_deployment(), RolloutPolicy()) == [
        Risk("missing-prestop", "error", "Deployment shop/web container web",
             "container web has no preStop: the ALB keeps sending new requests for some seconds after deregistration "
             "starts; it needs a preStop sleep of 30 s", "add lifecycle.preStop sleep of 30 s to container web"),
        Risk("grace-too-short", "error", "Deployment shop/web",
             "terminationGracePeriodSeconds is 30: it must cover the preStop (30 s) plus the longest request (30 s), "
             "60 s", "set spec.template.spec.terminationGracePeriodSeconds: 60"),
    ]


# ---------------------------------------------------------------------------------------------------------
# preflight_report: serving_risks
# ---------------------------------------------------------------------------------------------------------
def test_a_service_selecting_a_template_label_outside_the_selector_serves_the_pods():
    # Given pods labelled app=web and tier=front (the selector only app=web), and a Service selecting tier=front
    kube = healthy_cluster(services=[serving(labels={"tier": "front"})])
    dep = app_deployment()
    kube.deployments[("shop", "web")] = dataclass_replace(
        dep, template=dataclass_replace(dep.template, labels={"app": "web", "tier": "front"}))
    # Then that Service counts: served, bound and gated, nothing to report
    assert serving_of(kube, Elb({TG_ARN: target_group()})) == []


def test_an_ingress_of_another_service_listed_first_does_not_hide_the_apps_instance_ingress():
    kube = healthy_cluster(ingresses=[ingress({}, backend="other"), ingress({})])
    assert serving_of(kube, Elb({TG_ARN: target_group()})) == [Risk(
        "instance-targets", "error", "Ingress shop/web",
        "target type is instance (the controller default): the ALB targets nodes, not pods, so no readiness gate can "
        "hold an old pod", IP_FIX)]


def test_an_instance_ingress_and_its_instance_group_are_one_risk_named_on_the_ingress():
    kube = healthy_cluster(ingresses=[ingress({})])
    risks = serving_of(kube, Elb({TG_ARN: target_group("instance")}))
    assert [(r.code, r.subject) for r in risks] == [("instance-targets", "Ingress shop/web")]


def test_an_instance_group_behind_an_ip_ingress_is_named_with_its_binding_and_the_fix():
    assert serving_of(healthy_cluster(), Elb({TG_ARN: target_group("instance")})) == [Risk(
        "instance-targets", "error", f"TargetGroupBinding shop/{TGB}", f"target group {TG_ARN} uses instance targets",
        IP_FIX)]


def test_two_services_without_a_binding_are_named_in_order():
    kube = healthy_cluster(services=[serving(), serving(name="api")])
    kube.bindings = []
    assert serving_of(kube, Elb())[0].problem == (
        "no TargetGroupBinding for Service(s) api, web: the ALB has no target group for these pods")


def test_a_missing_group_does_not_stop_the_next_binding_from_being_checked():
    # Given a binding whose group is gone, then the app's binding to a group attached to no listener
    kube = healthy_cluster()
    kube.bindings = [TargetGroupBinding("shop", "k8s-gone", "arn:gone", "ip", "web", 80),
                     TargetGroupBinding("shop", TGB, TG_ARN, "ip", "web", 80)]
    assert serving_of(kube, Elb({TG_ARN: target_group(attached=False)})) == [
        Risk("target-group-missing", "error", "TargetGroupBinding shop/k8s-gone", "its target group arn:gone does not "
             "exist", "delete the binding or let the controller re-create the group (re-apply the Ingress)"),
        Risk("target-group-not-attached", "error", f"target group {TG_ARN}",
             "it is not attached to a load balancer listener, so no target in it ever becomes healthy "
             "(aws-load-balancer-controller#3753)",
             "check the Ingress rules route to this Service, and the controller's events"),
    ]


def test_a_short_deregistration_delay_is_an_error_with_the_attribute_to_set():
    risks = serving_of(healthy_cluster(), Elb({TG_ARN: target_group(delay=10)}),
                       policy=RolloutPolicy(max_request_seconds=60))
    assert risks == [Risk(
        "deregistration-delay-short", "error", f"target group {TG_ARN}",
        "deregistration delay 10 s is shorter than the longest request (60 s): requests still running are dropped",
        "set the annotation alb.ingress.kubernetes.io/target-group-attributes: deregistration_delay.timeout_seconds=60 "
        "on the backend Service if it already has that annotation (the controller uses the Service's value over the "
        "Ingress's), else on the Ingress")]


def test_six_pods_without_the_gate_are_named_five_and_an_ellipsis():
    kube = healthy_cluster()
    kube.pods = [app_pod(f"web-{i}", "h") for i in range(6)]
    [risk] = serving_of(kube, Elb({TG_ARN: target_group()}))
    assert risk.problem.endswith(": web-0, web-1, web-2, web-3, web-4 ...")


# ---------------------------------------------------------------------------------------------------------
# preflight_report: preflight_report, Report
# ---------------------------------------------------------------------------------------------------------
def report_of(namespace_labels: dict[str, str]) -> Report:
    """The report on namespaces gone (missing) and shop (labelled as given), shop/web's pods without the gate."""
    kube = healthy_cluster(namespaces={"shop": namespace_labels})
    kube.pods = [app_pod("web-1", "h")]
    request = ReportRequest(cluster="prod", namespaces=["gone", "shop"], expect_controller=False)
    return preflight_report(kube, Elb({TG_ARN: target_group()}), request)


def test_a_missing_namespace_does_not_stop_the_next_and_old_pods_in_a_labelled_one_predate_the_label():
    report = report_of({INJECT_LABEL: "enabled"})
    assert report.cluster == "prod"
    assert report.checked == ["namespace gone", "namespace shop", "Deployment shop/web"]
    assert report.codes() == ["namespace-missing", "missing-prestop", "grace-too-short", "pods-without-gates"]
    assert report.risks[-1].problem == (
        "1 of 1 pod(s) lack the controller's readiness gate (they were created before the namespace was labelled (the "
        "gate is injected only at pod creation)): web-1")


def test_pods_without_the_gate_in_an_unlabelled_namespace_lack_it_for_the_missing_label():
    report = report_of({})
    assert report.codes() == ["namespace-missing", "namespace-unlabelled", "missing-prestop", "grace-too-short",
                              "pods-without-gates"]
    assert report.risks[-1].problem == (
        "1 of 1 pod(s) lack the controller's readiness gate (the namespace is not labelled): web-1")


def test_the_counts_add_each_severity_on_its_own():
    report = Report("prod", [Risk("a", "error", "x", "p", "f"), Risk("b", "error", "y", "p", "f"),
                             Risk("c", "warning", "z", "p", "f")])
    assert (report.as_dict()["errors"], report.as_dict()["warnings"]) == (2, 1)
    assert report.render().endswith("\n2 error(s), 1 warning(s)")


# ---------------------------------------------------------------------------------------------------------
# bootstrap: validate_input
# ---------------------------------------------------------------------------------------------------------
def test_an_ungated_app_may_ask_for_instance_targets_in_its_ingress():
    raw = app_request()
    app = raw["applications"][0]
    app["gated"] = False
    app["manifests"]["ingress"]["metadata"]["annotations"][TARGET_TYPE] = "instance"
    # Then the input is taken, and the instance annotation is left as the app wrote it (no change for it)
    assert b.validate_input(raw, "boot-1", NOW)["plans"] == [{"app": "shop/web", "changes": 5, "findings": 0}]


def test_manifests_that_name_the_apps_own_namespace_are_taken():
    raw = app_request()
    for manifest in raw["applications"][0]["manifests"].values():
        manifest["metadata"]["namespace"] = "shop"
    assert b.validate_input(raw, "boot-1", NOW)["plans"] == [{"app": "shop/web", "changes": 7, "findings": 0}]


def test_an_app_container_missing_from_its_manifest_is_refused_at_validation():
    raw = app_request()
    raw["applications"][0]["container"] = "sidecar"
    with pytest.raises(InvalidInputError) as caught:
        b.validate_input(raw, "boot-1", NOW)
    assert str(caught.value) == ("manifests are invalid: deployment.spec.template.spec.containers: no container named "
                                 "'sidecar' (the application's container); the template has ['web']")


def test_an_oversized_input_reports_its_size_rounded_to_the_nearest_kib():
    # 100 KiB and 600 bytes: 100.59 KiB, said as 101
    with pytest.raises(InvalidInputError, match=r"^input: 101 KiB of request \(manifests included\); albgate takes at "
                                                r"most 80 KiB,"):
        b.validate_input(request_of_size(100 * 1024 + 600), "boot-1", NOW)


def test_an_input_that_is_not_an_object_sets_no_configured_field():
    assert b.refuse_configured_fields(["controller"]) is None
    assert b.refuse_configured_fields("controller") is None


# ---------------------------------------------------------------------------------------------------------
# bootstrap: the chart and helm
# ---------------------------------------------------------------------------------------------------------
def test_a_chart_repository_loses_only_its_trailing_slashes():
    settings = b.ControllerSettings(chart_repository="https://charts.example.com/eks-charts-X/")
    assert b.chart_reference(settings) == ["--repo", "https://charts.example.com/eks-charts-X",
                                           "aws-load-balancer-controller"]


def test_an_ecr_chart_mirror_names_its_account_region_and_repository():
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert b.ecr_chart_mirror(f"oci://{host}/mirrorX/") == b.EcrChartMirror(
        host, "123456789012", "eu-west-1", "mirrorX/aws-load-balancer-controller")


def test_helm_keeps_ten_revisions_and_gives_up_after_ten_minutes():
    args = b.helm_upgrade_args(b.ControllerSettings(), "values.json")
    assert args == ["upgrade", "--install", "aws-load-balancer-controller",
                    "--repo", "https://aws.github.io/eks-charts", "aws-load-balancer-controller",
                    "--version", "3.5.0", "--namespace", "kube-system", "--values", "values.json", "--reset-values",
                    "--server-side", "true", "--force-conflicts", "--history-max", "10", "--timeout", "10m0s"]


# ---------------------------------------------------------------------------------------------------------
# bootstrap: the controller's version and what the cluster shows of it
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image,version", [
    ("registry.example.com:5000/eks/aws-load-balancer-controller:v2.7.1", (2, 7, 1)),
    ("aws-load-balancer-controller:v2.7.1:extra", (2, 7, 1)),  # the tag is all after the name's first ':'
    ("aws-load-balancer-controller@sha256:1.2.3", None),  # what follows the '@' is a digest, never a tag
    ("aws-load-balancer-controller@old:v1.2.3@sha256:abc", (1, 2, 3)),  # only the last '@' starts the digest
    ("registry.example.com/team:v9.9.9/aws-load-balancer-controller", None),  # only the last component's tag
])
def test_the_version_is_read_from_the_last_path_components_tag_before_the_digest(image, version):
    assert b.image_version(image) == version


def test_without_a_webhook_configuration_the_observation_holds_none():
    kube = Cluster(controller=controller_deployment(), hook=None, endpoints=3)
    assert b.observe_controller(kube, b.ControllerSettings()) == b.ControllerObservation(
        controller_deployment(), None, 3)


# ---------------------------------------------------------------------------------------------------------
# bootstrap: hardening_summary
# ---------------------------------------------------------------------------------------------------------
def test_a_summary_line_of_exactly_two_hundred_characters_is_kept_whole():
    change = Change("Deployment/web", "spec.x", "a" * 170, 1, "why")
    [line] = b.hardening_summary([change])
    assert len(line) == 200 and line.endswith("a' -> 1")


# ---------------------------------------------------------------------------------------------------------
# bootstrap: check_bindings
# ---------------------------------------------------------------------------------------------------------
def web_and_api(**request: Any) -> dict[str, Any]:
    raw = app_request(**request)
    raw["applications"] += app_request("shop", "api")["applications"]
    return raw


def bindings_of(kube: Cluster, raw: dict[str, Any], **prior: Any) -> dict[str, Any]:
    return b.check_bindings(kube, Clock(), state(raw, **({"bindings": prior} if prior else {})))["bindings"]


def test_an_unbound_app_does_not_stop_the_next_apps_gate_check_and_both_are_named_at_the_deadline():
    # Given web not bound yet and api bound, but the dry-run pod comes back without the gate
    kube = Cluster(bindings=[bound(service="api")], injected=())
    out = bindings_of(kube, web_and_api(), deadline=NOW)
    assert out["status"] == "FAILED"
    assert out["reason"] == ("bindings or gate injection not ready by the deadline: no TargetGroupBinding for Service "
                             f"shop/web yet; a dry-run pod in shop came back without {GATE}")


def test_without_gate_injection_every_app_is_still_checked_for_its_binding():
    kube = Cluster(bindings=[bound()])
    out = bindings_of(kube, web_and_api(controller={"require_gate_injection": False}))
    assert (out["status"], out["reason"]) == ("WAITING", "no TargetGroupBinding for Service shop/api yet")


@dataclass
class ThrottledIn(Cluster):
    """A cluster whose API server refuses dry runs in one namespace for now (429)."""

    throttled: str = ""

    def dry_run_create_pod(self, namespace: str, manifest: dict[str, Any]) -> Pod:
        if namespace == self.throttled:
            raise ThrottledError("429 too many requests")
        return super().dry_run_create_pod(namespace, manifest)


def test_a_dry_run_refused_for_now_does_not_stop_the_next_apps_gate_check():
    # Given api in team (its dry run throttled), then web in shop (its probe pod back without the gate)
    raw = app_request("team", "api")
    raw["applications"] += app_request()["applications"]
    kube = ThrottledIn(bindings=[bound(namespace="team", service="api"), bound()], injected=(), throttled="team")
    out = bindings_of(kube, raw)
    assert out["reason"] == ("dry-run pod in team: 429 too many requests; a dry-run pod in shop came back without "
                             f"{GATE}")
    assert out["gates"] == {"shop/web": []}


# ---------------------------------------------------------------------------------------------------------
# bootstrap: find_pods_born_before_label
# ---------------------------------------------------------------------------------------------------------
def settle_of(kube: Any, raw: dict[str, Any], **prior: Any) -> dict[str, Any]:
    return b.find_pods_born_before_label(kube, Clock(), state(raw, **({"settle": prior} if prior else {})))


def test_a_deployment_still_rolling_does_not_stop_the_next_from_being_checked():
    # Given legacy/old still rolling, then shop/web settled with a stale pod
    kube = settled_world(pods=[app_pod("web-b2-a", "b2")])
    kube.deployments[("legacy", "old")] = app_deployment("legacy", "old", available=1, updated=2)
    out = settle_of(kube, two_apps())
    assert out["settle"]["reason"] == "Deployments still rolling: legacy/old (1/3 available, 2 updated)"
    assert out["stale_pods"] == [{"deployment": "shop/web", "pods": ["web-b2-a"], "pod_count": 1}]


def test_an_app_without_ip_bindings_does_not_stop_the_next_from_being_checked():
    # Given legacy/old settled but served by no bound Service, then shop/web with a stale pod
    kube = settled_world(pods=[app_pod("web-b2-a", "b2")])
    kube.deployments[("legacy", "old")] = app_deployment("legacy", "old")
    out = settle_of(kube, two_apps())
    assert [s["deployment"] for s in out["stale_pods"]] == ["shop/web"]


def test_every_deployment_still_rolling_is_named_while_waiting_and_at_the_deadline():
    kube = settled_world()
    kube.deployments[("legacy", "old")] = app_deployment("legacy", "old", available=1, updated=2)
    kube.deployments[("shop", "web")] = app_deployment(available=2, updated=3)
    both = "legacy/old (1/3 available, 2 updated); shop/web (2/3 available, 3 updated)"
    assert settle_of(kube, two_apps())["settle"]["reason"] == f"Deployments still rolling: {both}"
    assert settle_of(kube, two_apps(), deadline=NOW)["settle"]["reason"] == (
        f"Deployments did not settle by the deadline: {both}")


# ---------------------------------------------------------------------------------------------------------
# limits: worst_case, most_steps_within_history, duration_problem
# ---------------------------------------------------------------------------------------------------------
# One step under this policy, with a 3600 s drain and four booked Preflight turns, records exactly the history
# budget without the bus's announcements, and five events more (the rollback's one announcement) with them.
EXACT = RolloutPolicy(step_deadline_seconds=268)


def test_the_worst_case_counts_the_preflight_turns_and_the_announcements_by_default():
    worst = worst_case(EXACT, 1, 3600, preflight_turns=4)
    assert worst.events == limits.HISTORY_BUDGET_EVENTS + 5
    # each booked turn: Wait For Describe Turn (2), Preflight (5) and Describe Turn Booked? (2)
    assert worst_case(EXACT, 1, 3600, preflight_turns=0).events == limits.HISTORY_BUDGET_EVENTS + 5 - 4 * 9


def test_without_the_bus_the_rollback_step_records_no_announcement():
    worst = worst_case(EXACT, 1, 3600, preflight_turns=4, announce=False)
    # start 5, 97 gate looks (7 each) and 96 waits (2), release 5, 1204 drain looks and 1203 waits,
    # then Bake Step and More Steps? (2 each)
    assert worst.breakdown["rollback events"] == 5 + (97 * 7 + 96 * 2) + 5 + (1204 * 7 + 1203 * 2) + 4


def test_a_one_step_worst_case_of_exactly_the_budget_fits_one_step():
    assert worst_case(EXACT, 1, 3600, preflight_turns=4, announce=False).events == limits.HISTORY_BUDGET_EVENTS
    assert most_steps_within_history(EXACT, 3600, preflight_turns=4, announce=False) == 1


def test_a_one_step_worst_case_five_events_over_the_budget_fits_none():
    assert most_steps_within_history(EXACT, 3600, preflight_turns=4, announce=True) == 0


def test_a_worst_case_of_exactly_the_budget_keeps_its_step_count():
    policy = RolloutPolicy(step_deadline_seconds=118)
    assert worst_case(policy, 15, 330, preflight_turns=3).events == limits.HISTORY_BUDGET_EVENTS
    assert most_steps_within_history(policy, 330, preflight_turns=3) == 15


def test_an_approval_before_the_second_step_can_leave_room_for_one_step_only():
    policy = RolloutPolicy(step_deadline_seconds=2233, steps=[1, "100%"], approval_before_steps=[2])
    assert worst_case(policy, 2, 330, preflight_turns=5).events == limits.HISTORY_BUDGET_EVENTS + 1
    assert most_steps_within_history(policy, 330, preflight_turns=5) == 1


def test_an_approval_before_the_last_fitting_step_costs_exactly_that_step():
    # Without the approval nine steps fit; with one before step 9 they are three events over, eight fit
    policy = RolloutPolicy(step_deadline_seconds=142, steps=[1, 2, 3, 4, 5, 6, 7, 8, "100%"], approval_before_steps=[9])
    assert worst_case(policy, 9, 600, preflight_turns=0).events == limits.HISTORY_BUDGET_EVENTS + 3
    assert most_steps_within_history(policy, 600, preflight_turns=0) == 8


def test_without_the_bus_the_steps_are_counted_without_their_announcements():
    policy = RolloutPolicy(step_deadline_seconds=91)
    assert worst_case(policy, 16, 330, preflight_turns=0, announce=False).events == 23_482
    assert most_steps_within_history(policy, 330, preflight_turns=0, announce=False) == 16


def test_the_hours_of_a_too_long_rollout_are_rounded_to_a_tenth():
    worst = WorstCase(steps=4, step_events=1, events=1, seconds=100_270, gate_looks=1, drain_looks=1, approvals=0)
    assert duration_problem(worst, 24 * 3600).startswith("this rollout could run 27.9 h (4 steps of ")


# ---------------------------------------------------------------------------------------------------------
# image_reference
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,reason", [
    ("", "an image reference needs at least a repository name"),
    ("0123456789abcdef" * 4, "a 64-character hexadecimal string is an image ID, not a repository name"),
    ("Shop/App:v1", "the repository name must be lower-case (a tag may have upper-case letters)"),
    ("/app:v1", "it starts with a separator; a reference starts with the repository name"),
    ("https://registry.example.com/app:v1",
     "it looks like a URL; write the registry host without a scheme, e.g. 'registry.example.com/app:v1'"),
    ("app:-v1", "it does not fit the grammar [registry/]path[:tag][@algorithm:hex]: path components are lower-case "
                "letters and digits joined by '.', '_', '__' or '-', a tag is at most 128 letters, digits, '_', '.' "
                "or '-' and does not start with '.' or '-'"),
    ("app@md5:" + "a" * 32,
     "digest algorithm 'md5' is not one a container runtime accepts; use sha256, sha384, sha512"),
    ("app@sha256:" + "a" * 63, "a sha256 digest is exactly 64 lower-case hex characters; this one has 63"),
    ("app@sha256:" + "A" * 64,
     "a sha256 digest is exactly 64 lower-case hex characters; this one has 64 and upper-case letters"),
    ("registry.example.com/" + "a" * 256, "the repository path is 256 characters; at most 255 are allowed"),
    ("a" * 250, "the repository path (as the runtime normalises it) is 258 characters; at most 255 are allowed"),
])
def test_a_reference_that_is_refused_says_why(text, reason):
    with pytest.raises(ImageReferenceError) as caught:
        ImageReference.parse(text)
    assert str(caught.value) == reason


def test_a_digest_with_a_second_colon_is_refused_for_its_hex_length():
    ref = ImageReference.parse("app:v1")
    with pytest.raises(ImageReferenceError, match="^a sha256 digest is exactly 64 lower-case hex characters; this one "
                                                  "has 67$"):
        ref.with_digest("sha256:" + "a" * 64 + ":ab")


def test_index_docker_io_is_docker_hub_for_official_images():
    assert normalised_path("index.docker.io", "redis") == "library/redis"


def test_a_first_component_outside_the_domain_grammar_stays_in_the_path():
    assert split_domain("foo_bar.com/app") == (None, "foo_bar.com/app")


# ---------------------------------------------------------------------------------------------------------
# allow_list
# ---------------------------------------------------------------------------------------------------------
def allowed(*apps: tuple[str, str], clusters: tuple[str, ...] = ("prod",)) -> AllowList:
    return AllowList(clusters=list(clusters), applications=[
        AllowedApplication(cluster="prod", namespace=ns, deployment=dep, service=dep, ingress=f"{dep}-ingress")
        for ns, dep in apps])


FIX = "add it under applications in the CDK config (docs/foundation.md, Config reference) and deploy"


def refusal(allow: AllowList, target: Target) -> str:
    with pytest.raises(InvalidInputError) as caught:
        allow.refuse([target])
    return str(caught.value)


def test_a_namespace_of_a_cluster_without_applications_is_refused_listing_none():
    allow = allowed(("shop", "web"), clusters=("prod", "edge"))
    assert refusal(allow, Target("request.namespaces.0", "edge", "shop")) == (
        f"request.namespaces.0: namespace 'shop' of cluster 'edge' has no application this albgate stack manages "
        f"(its namespaces: none); {FIX}")


def test_an_unmanaged_namespace_is_refused_listing_the_clusters_namespaces():
    allow = allowed(("shop", "web"), ("team", "api"))
    assert refusal(allow, Target("request.namespaces.0", "prod", "other")) == (
        f"request.namespaces.0: namespace 'other' of cluster 'prod' has no application this albgate stack manages "
        f"(its namespaces: shop, team); {FIX}")


def test_five_managed_applications_are_all_listed_with_no_more_to_count():
    allow = allowed(*(("shop", f"d{i}") for i in range(1, 6)))
    assert refusal(allow, Target("request", "prod", "shop", "web")) == (
        "request: Deployment 'shop/web' of cluster 'prod' is not an application this albgate stack manages (it manages "
        f"shop/d1, shop/d2, shop/d3, shop/d4, shop/d5); {FIX}")


def test_an_ingress_manifest_named_as_configured_is_taken_though_the_service_is_named_otherwise():
    allow = allowed(("shop", "web"))
    assert allow.refuse([Target("request.applications.0", "prod", "shop", "web",
                                (("Service", "web"), ("Ingress", "web-ingress")))]) is None


def test_a_misnamed_service_manifest_is_refused_naming_the_configured_service():
    allow = allowed(("shop", "web"))
    assert refusal(allow, Target("request.applications.0", "prod", "shop", "web", (("Service", "api"),))) == (
        "request.applications.0: the Service manifest of shop/web is named 'api', but the configured service is "
        "'web'; name it so, or change the CDK config and deploy")


def test_a_namespace_without_a_deployment_names_only_the_cluster():
    assert targets_of({"request": {"cluster": "prod", "namespace": "shop"}}) == [Target("request.cluster", "prod")]


def test_applications_that_name_no_deployment_do_not_stop_the_next():
    event = {"applications": ["not-an-app", {"cluster": "prod", "deployment": "web"},
                              {"cluster": "prod", "namespace": "shop", "deployment": "web"}]}
    assert targets_of(event) == [Target("input.applications.2", "prod", "shop", "web")]


def test_an_events_own_fields_beside_its_request_are_not_read_as_a_request():
    assert targets_of({"request": {"cluster": "prod"}, "cluster": "edge"}) == [Target("request.cluster", "prod")]
    assert targets_of({"state": {"request": {"cluster": "prod"}}, "cluster": "edge"}) == [
        Target("state.request.cluster", "prod")]


# ---------------------------------------------------------------------------------------------------------
# documents
# ---------------------------------------------------------------------------------------------------------
def duplicate_message(text: str) -> str:
    with pytest.raises(DocumentError) as caught:
        parse_json(text, "input.json")
    return str(caught.value)


def test_a_key_given_three_times_is_placed_at_its_second_occurrence():
    assert duplicate_message('{"k": 1,\n "k": 2,\n "k": 3}') == (
        "input.json: key 'k' is given twice in one object (again at line 2); keep one of them")


def test_the_line_counts_a_leading_newline():
    assert duplicate_message('\n{"k": 1, "k": 2}') == (
        "input.json: key 'k' is given twice in one object (again at line 2); keep one of them")


def test_a_duplicate_key_the_text_spells_otherwise_is_named_without_a_line():
    # json.dumps writes é as \u00e9, which the text does not: no place to name
    assert duplicate_message('{"é": 1, "é": 2}') == (
        "input.json: key 'é' is given twice in one object; keep one of them")


def test_bytes_that_are_not_utf8_are_quoted_with_the_three_bytes_after_them():
    with pytest.raises(DocumentError) as caught:
        decode_utf8(b"ab\xffcdefg", "input.json")
    assert str(caught.value) == (
        "input.json: not UTF-8 text (line 1, byte 2: b'\\xffcde'); save the file as UTF-8")


def test_a_value_quoted_at_exactly_the_limit_is_kept_whole():
    assert quote("x" * 98) == "'" + "x" * 98 + "'"


# ---------------------------------------------------------------------------------------------------------
# safety
# ---------------------------------------------------------------------------------------------------------
def deployment(*containers: Container, max_unavailable: int | str = 0, grace: int = 30) -> Deployment:
    return Deployment(namespace="shop", name="web", uid="u", replicas=4, selector={"app": "web"},
                      template=PodTemplate(containers=containers, termination_grace_period_seconds=grace),
                      max_surge=1, max_unavailable=max_unavailable)


def test_a_quarter_unavailable_is_a_finding_with_its_pods_and_the_fix():
    [finding] = deployment_findings(deployment(Container("web", "web:1", 30), max_unavailable="25%", grace=60),
                                    RolloutPolicy())
    assert (finding.code, finding.container, finding.message, finding.fix) == (
        "max-unavailable", None,
        "maxUnavailable is 25% (1 pod(s)): old pods could go before any replacement is healthy",
        "set spec.strategy.rollingUpdate.maxUnavailable: 0")


def test_a_missing_and_a_short_pre_stop_are_worded_apart():
    findings = deployment_findings(deployment(Container("web", "web:1"), Container("proxy", "proxy:1", 10), grace=60),
                                   RolloutPolicy())
    assert [f.message.partition(":")[0] for f in findings] == ["container web has no preStop",
                                                               "container proxy sleeps 10 s in its preStop"]


def test_with_no_pre_stop_wanted_the_grace_period_need_only_cover_the_longest_request():
    findings = deployment_findings(deployment(Container("web", "web:1"), grace=30),
                                   RolloutPolicy(pre_stop_seconds=0, max_request_seconds=30))
    assert [f.code for f in findings] == ["missing-prestop"]


# ---------------------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------------------
def test_a_step_asking_fewer_pods_names_the_first_step_that_reached_the_largest_count():
    # On 20 replicas: 11% and 15% are 3 pods each, then 2 pods
    problems = step_problems(20, RolloutPolicy(steps=["11%", "15%", 2, "100%"]))
    assert problems == [("steps", (
        "step 3 (2 pods) asks for fewer new pods than step 1 ('11%' of 20 replicas = 3 pods) before it; a plan counts "
        "all new pods so far and cannot take any back: on the Deployment's 20 replicas, order the steps so that each "
        "asks for at least as many pods as the one before, or use only percentages (they grow on any replica count)"))]


def test_an_approval_past_a_plan_of_merged_steps_says_that_steps_merge():
    assert step_problems(2, RolloutPolicy(approval_before_steps=[3])) == [("approval_before_steps", (
        "names step 3, but on the Deployment's 2 replicas the plan has 2 step(s), [1, 2] new pods after each (steps "
        "that resolve to the same count merge); name steps 1 to 2"))]


# ---------------------------------------------------------------------------------------------------------
# poll
# ---------------------------------------------------------------------------------------------------------
def test_a_throttled_drain_backs_off_like_the_gate():
    # 10 s doubled twice is 40 s; this key's jitter adds 2 of up to 9 s
    assert poll.drain_poll_seconds(10, "rollout-1/drain-1/look-1", throttles=2) == 42


@pytest.mark.parametrize("throttles,wait", [(1, 10), (3, 42)])
def test_each_throttle_doubles_the_interval(throttles, wait):
    # 5 s doubled once is 10 s (jitter 0 of up to 3 s), three times 40 s (jitter 2 of up to 9 s)
    assert poll.target_poll_seconds(5, "rollout-1/step-1/look-1", throttles) == wait


def test_an_interval_of_zero_is_looked_at_every_second():
    assert poll.target_poll_seconds(0, "rollout-1/step-1/look-1") == 1
    assert poll.registration_poll_seconds(0, 0.0, "rollout-1/step-1/look-1") == 1


def test_a_registration_pace_equal_to_the_interval_is_the_interval_unjittered():
    # 100 s of registration paces looks 10 s apart: the interval itself, so no jitter (this key's would add 1 s)
    assert poll.registration_poll_seconds(10, 100.0, "rollout-1/step-1/look-2") == 10


# ---------------------------------------------------------------------------------------------------------
# budget
# ---------------------------------------------------------------------------------------------------------
def test_a_schedule_ahead_by_one_nanosecond_still_lets_a_burst_go_now():
    admission = admit(1e-9, 0.0, 30, BudgetSpec(), reserve=False)
    assert admission.wait == 0.0
    assert admission.tat == pytest.approx(30 / 4.5)


# ---------------------------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------------------------
def test_entries_of_a_target_group_the_state_does_not_list_are_carried_as_written():
    group = TargetGroupInfo(arn="arn:g0", service="web", health_check_interval_seconds=5, healthy_threshold=2,
                            deregistration_delay_seconds=30)
    record = StepRecord(step=1, mode="rollout", target=1, started_at=1.0,
                        deregistered=["arn:g0|10.0.0.1", "arn:gone|10.0.0.2"],
                        unregistered_since={"arn:g0": 5.0, "arn:gone": 6.0})
    rollout = RolloutState(request=RolloutRequest(cluster="prod", namespace="shop", deployment="web", container="web",
                                                  image="web:1"),
                           execution_name="e", started_at=1.0, replicas=2, plan=[1, 2], target_image="web:1",
                           previous_image="web:0", previous_revision=1, original_max_surge=1,
                           original_max_unavailable=0, target_groups=[group], steps=[record], step=0)
    [dumped] = rollout.dump()["steps"]
    assert dumped["deregistered"] == ["#0|10.0.0.1", "arn:gone|10.0.0.2"]
    assert dumped["unregistered_since"] == {"#0": 5.0, "arn:gone": 6.0}


# ---------------------------------------------------------------------------------------------------------
# validators and models
# ---------------------------------------------------------------------------------------------------------
def test_an_ec2_id_rule_takes_the_short_and_the_long_form_only():
    accepts = validators._ec2_id("vpc")
    assert accepts("vpc-0123abcd") and accepts("vpc-0123456789abcdef0")
    assert not accepts("vpc-0123abcd0") and not accepts("subnet-0123abcd")


def test_a_bad_pod_count_is_quoted_in_its_message():
    with pytest.raises(ValueError, match=r"'lots' is not a pod count or a percentage: write a pod count >= 0 or a "
                                         r"percentage like '25%'"):
        TypeAdapter(validators.IntOrPercent).validate_python("lots")


def test_only_text_can_be_a_percentage_or_a_version():
    assert validators.percent(25) is None
    assert validators.version_numbers(350) is None


def test_a_version_is_whole_unless_a_prefix_is_asked_for():
    assert validators.version_numbers("v3.5.0-rc.1") is None
    assert validators.version_numbers("v3.5.0-rc.1", prefix=True) == (3, 5, 0)
    assert b.parse_version("3.5.0.1") is None


def test_an_image_without_tag_or_digest_is_refused_with_examples():
    with pytest.raises(ValueError) as caught:
        parse_image("app")
    assert str(caught.value) == (
        "'app' is not an image reference with a tag or digest; write e.g. 'redis:7', 'repo/app:v2' or "
        "'123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:<64 hex>'")


def test_a_rollout_input_that_is_not_an_object_is_refused_as_the_input():
    with pytest.raises(InvalidInputError, match="^invalid rollout input: input: Input should be a valid dictionary"):
        parse_request("shop/web")


def test_every_problem_of_a_rollout_input_is_listed_in_one_line():
    with pytest.raises(InvalidInputError, match="^invalid rollout input: namespace: Field required; deployment: Field "
                                                "required; container: Field required; image: required"):
        parse_request({"cluster": "prod"})


# ---------------------------------------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------------------------------------
def test_a_condition_the_pod_does_not_report_reads_false():
    pod = Pod(namespace="shop", name="web-1", uid="u", ip=None, labels={}, phase="Pending", readiness_gates=(),
              conditions=(PodCondition("PodScheduled", "True"),), terminating=False, restart_count=0, created_at=0.0)
    assert pod.condition("Ready") == "False"
    assert pod.condition("PodScheduled") == "True"


# ---------------------------------------------------------------------------------------------------------
# lbc_annotations and health_check
# ---------------------------------------------------------------------------------------------------------
def test_an_attribute_value_may_hold_an_equals_sign_and_a_bare_key_reads_empty():
    assert parse_attributes("a=b=c, d") == {"a": "b=c", "d": ""}


def test_the_fix_says_where_the_annotation_takes_effect():
    assert fix("k", "v") == ("set the annotation k: v on the backend Service if it already has that annotation (the "
                             "controller uses the Service's value over the Ingress's), else on the Ingress")


def test_an_apps_own_timeout_equal_to_the_hardened_interval_keeps_the_interval_above_it():
    ingress_annotations, service_annotations = hardened_health_check({TIMEOUT: "5"})
    assert ingress_annotations == {TIMEOUT: "5", INTERVAL: "6"} and service_annotations == {}


# ---------------------------------------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------------------------------------
def test_a_subnet_with_a_nat_route_does_not_stop_the_next_subnet_from_being_checked():
    nat = RouteTable("rtb-nat", False, ("subnet-a",), (Route("0.0.0.0/0", "nat-gateway", "active"),))
    main = RouteTable("rtb-main", True, (), (Route("10.0.0.0/16", "local", "active"),))
    need = EndpointNeed("eks", "Interface", ("Preflight",), "the Kubernetes API token")
    spec = NetworkSpec("eu-west-1", "vpc-1", ("subnet-a", "subnet-b"), (need,))
    assert unmet_needs(spec, NetworkView(True, (), (nat, main)), "prod") == [
        "interface endpoint com.amazonaws.eu-west-1.eks: subnet(s) subnet-b have neither it nor a NAT route (0.0.0.0/0 "
        "to a NAT gateway, transit gateway or NAT instance); needed by Preflight (the Kubernetes API token)"]


# ---------------------------------------------------------------------------------------------------------
# trigger_use_case
# ---------------------------------------------------------------------------------------------------------
def test_a_push_of_an_unknown_repository_lists_every_known_one():
    apps = (TriggerApplication(cluster="prod", namespace="shop", deployment="cart", container="app",
                               ecr_repository="team/cart", tag_pattern="release-*"),
            TriggerApplication(cluster="prod", namespace="shop", deployment="web", container="web",
                               ecr_repository="team/web", tag_pattern="release-*"))
    ports, *_ = trigger_world()
    with pytest.raises(Ignored, match=r"^repository 'team/other' is not configured \(known: team/cart, team/web\)$"):
        roll_push(EcrPush(ACCOUNT, REGION, "team/other", DIGEST_A, "release-1", "2025-01-01T10:00:00Z"),
                  PushTarget(applications=apps), ports)
