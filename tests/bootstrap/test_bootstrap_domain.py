"""The bootstrap's pure decisions (lambdas/domain/bootstrap.py): Helm values and command, install action,
controller verdict, namespace refusal, restart inputs, input validation."""

from __future__ import annotations

import pytest

from lambdas.domain import bootstrap as b
from lambdas.domain.bootstrap import ControllerObservation, ControllerSettings, HelmRelease, MutatingWebhook, WebhookEntry
from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.gate import Verdict
from lambdas.domain.ports import Container, Deployment, PodTemplate
from tests.bootstrap.conftest import app_request, ingress

SETTINGS = ControllerSettings(region="us-east-1", vpc_id="vpc-0123456789abcdef0")


def test_helm_values_are_the_recipe_plus_the_zero_downtime_settings() -> None:
    # Given the default controller settings with Region and VPC
    # When the values are rendered
    values = b.helm_values("my-cluster", SETTINGS)
    # Then they carry the install recipe and the webhook/backoff hardening (docs/facts.md, Load Balancer
    # Controller: install)
    assert values["clusterName"] == "my-cluster"
    assert values["serviceAccount"] == {"create": False, "name": "aws-load-balancer-controller"}
    assert values["region"] == "us-east-1" and values["vpcId"] == "vpc-0123456789abcdef0"
    assert values["podMutatorWebhookConfig"] == {"failurePolicy": "Fail"}
    assert values["objectSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["aws-load-balancer-controller"]}]
    assert values["targetgroupbindingMaxExponentialBackoffDelay"] == "60s"
    assert "image" not in values


def test_a_mirrored_image_is_pinned_to_the_controller_version() -> None:
    values = b.helm_values("c", ControllerSettings(image_repository="123.dkr.ecr.us-east-1.amazonaws.com/lbc"))
    assert values["image"] == {"repository": "123.dkr.ecr.us-east-1.amazonaws.com/lbc", "tag": b.CONTROLLER_VERSION}
    assert "region" not in values and "vpcId" not in values


COMMANDS = [
    pytest.param(ControllerSettings(), ["--repo", "https://aws.github.io/eks-charts", "aws-load-balancer-controller"], id="repository"),
    pytest.param(ControllerSettings(chart_repository="oci://123.dkr.ecr.us-east-1.amazonaws.com/charts/"),
                 ["oci://123.dkr.ecr.us-east-1.amazonaws.com/charts/aws-load-balancer-controller"], id="oci-mirror"),
]


@pytest.mark.parametrize(("settings", "chart"), COMMANDS)
def test_helm_command_line(settings: ControllerSettings, chart: list[str]) -> None:
    # Given a repository or an OCI mirror / When the command is built
    args = b.helm_upgrade_args(settings, "values.json")
    # Then it is an upgrade --install of the pinned chart version, in the controller namespace, albgate's values only
    assert args[:3] == ["upgrade", "--install", "aws-load-balancer-controller"]
    assert args[3:3 + len(chart)] == chart
    assert args[args.index("--version") + 1] == b.CHART_VERSION
    assert args[args.index("--namespace") + 1] == "kube-system"
    assert args[args.index("--values") + 1] == "values.json"
    assert "--reset-values" in args and "--wait" not in args
    # And Helm 4 applies server-side, taking over fields another manager changed (docs/facts.md, "Helm 4")
    assert args[args.index("--server-side") + 1] == "true" and "--force-conflicts" in args


VALUES = b.helm_values("c", SETTINGS)
ACTIONS = [
    pytest.param(None, "install", id="absent"),
    pytest.param(HelmRelease("r", "kube-system", b.CHART_VERSION, "deployed", VALUES), "unchanged", id="same"),
    pytest.param(HelmRelease("r", "kube-system", "1.7.2", "deployed", VALUES), "upgrade", id="older-chart"),
    pytest.param(HelmRelease("r", "kube-system", b.CHART_VERSION, "deployed", {**VALUES, "vpcId": "x"}), "upgrade", id="other-values"),
    pytest.param(HelmRelease("r", "kube-system", b.CHART_VERSION, "failed", VALUES), "upgrade", id="failed-release"),
]


@pytest.mark.parametrize(("current", "action"), ACTIONS)
def test_install_action(current: HelmRelease | None, action: str) -> None:
    # Given the release as helm shows it / When deciding / Then install, upgrade or leave it alone
    assert b.install_action(current, b.CHART_VERSION, VALUES) == action


@pytest.mark.parametrize(("role", "annotated"), [(None, False), ("arn:aws:iam::123456789012:role/lbc", True)],
                         ids=["pod-identity", "irsa"])
def test_service_account_is_annotated_only_for_irsa(role: str | None, annotated: bool) -> None:
    sa = b.service_account_manifest(ControllerSettings(role_arn=role))
    assert sa["metadata"]["name"] == "aws-load-balancer-controller" and sa["metadata"]["namespace"] == "kube-system"
    assert ("eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {})) is annotated


@pytest.mark.parametrize(("namespace", "controller_ns", "refused", "cites"), [
    ("kube-system", "kube-system", True, "#1628"),
    ("kube-system", "lbc", True, "#2282"),
    ("lbc", "lbc", True, "#1628"),
    ("shop", "kube-system", False, ""),
], ids=["kube-system-hosting-controller", "kube-system", "controller-namespace", "app-namespace"])
def test_protected_namespaces_are_refused(namespace: str, controller_ns: str, refused: bool, cites: str) -> None:
    # Given a namespace to label / When checked / Then the controller's and kube-system are refused, citing why
    if refused:
        with pytest.raises(InvalidInputError) as e:
            b.refuse_namespace(namespace, controller_ns)
        assert cites in str(e.value) and namespace in str(e.value)
    else:
        b.refuse_namespace(namespace, controller_ns)


def _controller(available: int = 2, generation: int = 1, observed: int = 1, updated: int = 2) -> Deployment:
    return Deployment(namespace="kube-system", name=b.CONTROLLER_DEPLOYMENT, uid="u", replicas=2, selector={},
                      template=PodTemplate((Container("c", "lbc:v3.5.0"),)), max_surge=1, max_unavailable=0,
                      generation=generation, observed_generation=observed, updated_replicas=updated,
                      available_replicas=available)


def _webhook(policy: str = "Fail") -> MutatingWebhook:
    return MutatingWebhook(b.WEBHOOK_CONFIGURATION, (WebhookEntry(b.POD_WEBHOOK, policy, {}, {}),))


VERDICTS = [
    pytest.param(ControllerObservation(_controller(), _webhook(), 2), 0, Verdict.PASSED, "", id="working"),
    pytest.param(ControllerObservation(None, None, 0), 0, Verdict.WAITING, "does not exist", id="not-there-yet"),
    pytest.param(ControllerObservation(_controller(available=0), _webhook(), 0), 0, Verdict.WAITING, "no controller pod", id="starting"),
    pytest.param(ControllerObservation(_controller(generation=2), _webhook(), 2), 0, Verdict.WAITING, "still rolling", id="upgrading"),
    pytest.param(ControllerObservation(_controller(), _webhook("Ignore"), 2), 0, Verdict.WAITING, "failurePolicy is Ignore", id="old-policy"),
    pytest.param(ControllerObservation(_controller(), _webhook(), 0), 0, Verdict.WAITING, "no ready endpoint", id="no-endpoints"),
    pytest.param(ControllerObservation(None, None, 0), 100, Verdict.FAILED, "deadline", id="deadline-passed"),
]


@pytest.mark.parametrize(("seen", "now", "verdict", "says"), VERDICTS)
def test_controller_verdict(seen: ControllerObservation, now: float, verdict: Verdict, says: str) -> None:
    # Given what the cluster shows / When judged against the deadline 100 / Then the verdict and its reason
    got, reason = b.controller_verdict(seen, ControllerSettings(), now, 100)
    assert got is verdict and says in reason


@pytest.mark.parametrize(("image", "version"), [
    ("public.ecr.aws/eks/aws-load-balancer-controller:v2.13.0", (2, 13, 0)),
    ("602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-load-balancer-controller:v2.7.2-eksbuild.1", (2, 7, 2)),
    ("registry:5000/lbc@sha256:" + "a" * 64, None),
    ("lbc:latest", None),
], ids=["public", "eks-build", "digest-only", "latest"])
def test_image_version(image: str, version: tuple | None) -> None:
    assert b.image_version(image) == version


def test_restart_refuses_an_image_without_tag_or_digest() -> None:
    # Given a Deployment running an untagged image / When a gated restart is prepared / Then it says why not
    request = b.parse_bootstrap({"cluster": "c"})
    with pytest.raises(InvalidInputError, match="names no tag or digest"):
        b.restart_request(request, "shop", "web", "web", "nginx")


def test_restart_request_is_a_valid_rollout_input() -> None:
    from lambdas.domain.models import parse_request

    request = b.parse_bootstrap({"cluster": "c"})
    rollout = parse_request(b.restart_request(request, "shop", "web", "web", "nginx:1.27"))
    assert rollout.kind == "restart" and rollout.image == "nginx:1.27"


def test_validation_refuses_before_any_cluster_call() -> None:
    # Given an input naming kube-system / When validated / Then refused (the handler has no cluster port at all)
    with pytest.raises(InvalidInputError, match="kube-system"):
        b.validate_input({"cluster": "c", "namespaces": ["kube-system"]}, "x", 0)
    # And instance targets on a gated app are refused with their reason
    bad = app_request()
    bad["applications"][0]["manifests"]["ingress"] = ingress(annotations={"alb.ingress.kubernetes.io/target-type": "instance"})
    with pytest.raises(UnsafeConfigurationError, match="IP targets"):
        b.validate_input(bad, "x", 0)


def test_stack_defaults_fill_only_what_the_input_leaves_out() -> None:
    # Given the stack's defaults and an input that sets its own region
    raw = {"cluster": "c", "controller": {"region": "eu-west-1"}}
    # When validated
    state = b.validate_input(raw, "x", 0, {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/r"})
    # Then the input wins where it speaks, the defaults fill the rest
    assert state["request"]["controller"]["region"] == "eu-west-1"
    assert state["request"]["controller"]["role_arn"] == "arn:aws:iam::123456789012:role/r"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("max_backoff", "sixty", "Go duration"),
    ("vpc_id", "vpc-1", "vpc_id"),
    ("chart_version", "latest", "chart_version"),
], ids=["backoff", "vpc", "chart"])
def test_controller_settings_are_validated(field: str, value: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        b.parse_bootstrap({"cluster": "c", "controller": {field: value}})


def test_manifest_name_must_match_the_application() -> None:
    raw = app_request()
    raw["applications"][0]["deployment"] = "other"
    with pytest.raises(InvalidInputError, match="make them equal"):
        b.parse_bootstrap(raw)
