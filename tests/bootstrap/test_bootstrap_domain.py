"""The bootstrap's pure decisions (lambdas/domain/bootstrap.py): Helm values and command, install action,
controller verdict, namespace refusal, restart inputs, input validation."""

from __future__ import annotations

import pytest

from lambdas.domain import bootstrap as b
from lambdas.domain.bootstrap import ControllerObservation, ControllerSettings, HelmRelease, MutatingWebhook, WebhookEntry
from lambdas.domain.errors import ConflictError, InvalidInputError, UnsafeConfigurationError
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


NOW = 1_796_548_455.0


def release(status: str, revision: int, written_ago: float | None) -> HelmRelease:
    return HelmRelease("aws-load-balancer-controller", "kube-system", b.CHART_VERSION, status, VALUES,
                       revision=revision, updated_at=None if written_ago is None else NOW - written_ago)


@pytest.mark.parametrize(("current", "fix"), [
    pytest.param(None, None, id="absent"),
    pytest.param(release("deployed", 3, 5), None, id="deployed"),
    pytest.param(release("failed", 3, 5), None, id="failed: upgraded over"),
    pytest.param(release("pending-upgrade", 3, b.STALE_PENDING_SECONDS), "rollback", id="stale-upgrade"),
    pytest.param(release("pending-rollback", 4, 86400), "rollback", id="stale-rollback"),
    pytest.param(release("pending-install", 1, b.STALE_PENDING_SECONDS + 1), "uninstall", id="stale-first-install"),
])
def test_a_stale_pending_release_is_rolled_back_or_uninstalled(current: HelmRelease | None, fix: str | None) -> None:
    # Given the release as helm lists it / When deciding before the upgrade / Then rollback (a revision before
    # it exists), uninstall (a first install) or nothing to clear
    assert b.pending_release_fix(current, NOW) == fix


@pytest.mark.parametrize(("written_ago", "said"), [
    (b.STALE_PENDING_SECONDS - 1, f"written {b.STALE_PENDING_SECONDS - 1} s ago"), (None, "at an unknown time")],
    ids=["young", "unknown-time"])
def test_a_pending_release_that_may_still_be_written_is_a_conflict_naming_it(written_ago: float | None,
                                                                             said: str) -> None:
    # Given a pending upgrade written less than the stale age ago, or at a time helm did not show
    # When deciding / Then nothing is cleared: a retryable conflict that names the release, its age and the rule
    with pytest.raises(ConflictError) as caught:
        b.pending_release_fix(release("pending-upgrade", 3, written_ago), NOW)
    message = str(caught.value)
    assert "kube-system/aws-load-balancer-controller is pending-upgrade (revision 3" in message and said in message
    assert f"once it is {b.STALE_PENDING_SECONDS // 60} minutes old" in message


def test_clearing_rolls_back_as_the_upgrade_applies_or_uninstalls() -> None:
    rollback = b.helm_clear_args("rollback", SETTINGS)
    upgrade = b.helm_upgrade_args(SETTINGS, b.VALUES_FILE)
    assert rollback[:2] == ["rollback", b.RELEASE_NAME] and rollback[rollback.index("--namespace") + 1] == "kube-system"
    for flag in ("--server-side", "--history-max", "--timeout"):
        assert rollback[rollback.index(flag) + 1] == upgrade[upgrade.index(flag) + 1]
    assert "--force-conflicts" in rollback
    assert b.helm_clear_args("uninstall", SETTINGS)[:4] == ["uninstall", b.RELEASE_NAME, "--namespace", "kube-system"]


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
    # a restart names no image: it keeps the one the pods run
    assert rollout.kind == "restart" and rollout.image is None


def test_validation_refuses_before_any_cluster_call() -> None:
    # Given an input naming kube-system / When validated / Then refused (the handler has no cluster port at all)
    with pytest.raises(InvalidInputError, match="kube-system"):
        b.validate_input({"cluster": "c", "namespaces": ["kube-system"]}, "x", 0)
    # And instance targets on a gated app are refused with their reason
    bad = app_request()
    bad["applications"][0]["manifests"]["ingress"] = ingress(annotations={"alb.ingress.kubernetes.io/target-type": "instance"})
    with pytest.raises(UnsafeConfigurationError, match="IP targets"):
        b.validate_input(bad, "x", 0)


MIRROR = "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/charts"
CONFIGURED = {
    "c": {"region": "us-east-1", "vpc_id": "vpc-0123456789abcdef0", "chart_repository": MIRROR,
          "chart_version": "3.5.0",
          "image_repository": "123456789012.dkr.ecr.us-east-1.amazonaws.com/eks/aws-load-balancer-controller",
          "role_arn": "arn:aws:iam::123456789012:role/lbc"},
    "d": {"region": "us-east-1", "chart_repository": b.CHART_REPOSITORY, "chart_version": "3.5.0"},
}


def test_what_is_installed_is_the_deployed_config_of_the_cluster() -> None:
    # Given the settings each cluster was deployed with, and an input that only names the cluster
    # When validated
    state = b.validate_input({"cluster": "c", "controller": {"webhook_failure_policy": "Fail"}}, "x", 0, CONFIGURED)
    # Then the chart, its version, the image and the role are the configured ones, next to the input's own fields
    controller = state["request"]["controller"]
    assert {k: controller[k] for k in CONFIGURED["c"]} == CONFIGURED["c"]
    assert controller["webhook_failure_policy"] == "Fail"
    # And the command line pulls from the configured mirror
    chart = b.chart_reference(b.parse_bootstrap(state["request"]).controller)
    assert chart == [f"{MIRROR}/aws-load-balancer-controller"]


@pytest.mark.parametrize("field", sorted(b.CONFIGURED_CONTROLLER_FIELDS))
@pytest.mark.parametrize("configured", [CONFIGURED, None], ids=["deployed", "outside-a-deployment"])
def test_an_input_cannot_choose_what_runs_with_cluster_admin_rights(field: str, configured: dict | None) -> None:
    # Given an input that sets a field the config owns (even to the configured value)
    raw = {"cluster": "c", "controller": {field: CONFIGURED["c"][field]}}
    # When validated / Then refused, naming the config field to set instead
    with pytest.raises(InvalidInputError, match=rf"controller\.{field}: not an input field.*"
                                                rf"clusters\[\]\.controller\.{field} in the albgate config"):
        b.validate_input(raw, "x", 0, configured)


def test_every_field_the_config_owns_is_refused_at_once() -> None:
    raw = {"cluster": "c", "controller": {"chart_repository": "oci://evil.example/charts", "role_arn": "arn:x"}}
    with pytest.raises(InvalidInputError) as refused:
        b.validate_input(raw, "x", 0, CONFIGURED)
    assert "controller.chart_repository" in str(refused.value) and "controller.role_arn" in str(refused.value)


@pytest.mark.parametrize(("raw", "message"), [
    pytest.param({"cluster": "other"}, r"cluster: 'other' is not a cluster of this deployment \(configured: 'c', 'd'\)",
                 id="unknown-cluster"),
    pytest.param({"controller": {}}, r"cluster: None is not a cluster of this deployment", id="no-cluster"),
    pytest.param({"cluster": "c", "controller": {"region": "eu-west-1"}},
                 r"controller\.region: 'eu-west-1', but cluster 'c' is deployed with region 'us-east-1'",
                 id="other-region"),
    pytest.param({"cluster": "c", "controller": {"vpc_id": "vpc-0123456789abcdef1"}},
                 r"controller\.vpc_id: .*deployed with vpc_id 'vpc-0123456789abcdef0'", id="other-vpc"),
])
def test_clusters_regions_and_vpcs_are_the_configured_ones(raw: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        b.validate_input(raw, "x", 0, CONFIGURED)


@pytest.mark.parametrize(("raw", "vpc_id"), [
    pytest.param({"cluster": "c", "controller": {"region": "us-east-1", "vpc_id": "vpc-0123456789abcdef0"}},
                 "vpc-0123456789abcdef0", id="repeated-as-configured"),
    pytest.param({"cluster": "d", "controller": {"vpc_id": "vpc-0123456789abcdef1"}}, "vpc-0123456789abcdef1",
                 id="vpc-the-config-leaves-open"),
])
def test_an_input_may_repeat_the_configured_region_or_name_what_the_config_leaves_open(raw: dict, vpc_id: str) -> None:
    state = b.validate_input(raw, "x", 0, CONFIGURED)
    assert (state["request"]["controller"]["region"], state["request"]["controller"]["vpc_id"]) == ("us-east-1", vpc_id)


@pytest.mark.parametrize(("repository", "mirror"), [
    pytest.param(MIRROR, ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1",
                          "charts/aws-load-balancer-controller"), id="ecr-path"),
    pytest.param("oci://123456789012.dkr.ecr.us-east-1.amazonaws.com", ("123456789012.dkr.ecr.us-east-1.amazonaws.com",
                 "us-east-1", "aws-load-balancer-controller"), id="ecr-root"),
    pytest.param("oci://123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/a/b/",
                 ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1",
                  "a/b/aws-load-balancer-controller"), id="ecr-fips-trailing-slash"),
    pytest.param("oci://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/charts",
                 ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1",
                  "charts/aws-load-balancer-controller"), id="ecr-china"),
    pytest.param("oci://harbor.internal.example/charts", None, id="other-oci-registry"),
    pytest.param("https://aws.github.io/eks-charts", None, id="eks-charts"),
    pytest.param("oci://public.ecr.aws/charts", None, id="ecr-public"),
])
def test_an_ecr_chart_mirror_is_recognised_by_its_registry_host(repository: str, mirror: tuple | None) -> None:
    found = b.ecr_chart_mirror(repository)
    assert (None if found is None else (found.host, found.region, found.repository)) == mirror


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
