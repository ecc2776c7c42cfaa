"""The bootstrap's cluster-facing steps, one by one, on an in-memory cluster and Helm.

Given a bootstrap state (the input as Validate Input keeps it) and a cluster that answers server-side applies,
dry runs, the controller's objects and TargetGroupBindings, when Install Controller, Check Controller, Apply
Workloads (Services and Ingresses, then Deployments) and Check Bindings run, then each makes exactly the changes
the workflow promises, in order, logs each one in the execution's change log, and answers PASSED / WAITING /
FAILED with the reason a person reads in the execution's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from lambdas.domain import bootstrap as b
from lambdas.domain.bootstrap import AppliedObject, HelmRelease, MutatingWebhook, WebhookEntry
from lambdas.domain.errors import ConflictError, NotFoundError, ThrottledError, UnsafeConfigurationError
from lambdas.domain.ports import (
    LBC_GATE_PREFIX, SERVING_LABEL, Container, Deployment, Pod, PodTemplate, TargetGroupBinding,
)
from tests.bootstrap.conftest import app_request

NOW = 5_000.0
TGB = "k8s-shop-web-0123456789"
GATE = LBC_GATE_PREFIX + TGB


def controller_deployment(*, replicas: int = 2, updated: int = 2, available: int = 2, generation: int = 1,
                          observed: int = 1, image: str = "public.ecr.aws/eks/aws-load-balancer-controller:v3.5.0"
                          ) -> Deployment:
    return Deployment(namespace="kube-system", name="aws-load-balancer-controller", uid="u", replicas=replicas,
                      selector={"app": "lbc"}, template=PodTemplate(containers=(Container("controller", image),)),
                      max_surge=1, max_unavailable=0, generation=generation, observed_generation=observed,
                      updated_replicas=updated, available_replicas=available)


def webhook(policy: str = "Fail") -> MutatingWebhook:
    return MutatingWebhook("aws-load-balancer-webhook",
                           (WebhookEntry("mpod.elbv2.k8s.aws", policy, {}, {}),))


@dataclass
class Cluster:
    """Server-side apply over a dict of objects, the controller's objects, bindings and dry-run pods."""

    version: tuple[int, int] = (1, 31)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    dry_runs: list[str] = field(default_factory=list)
    applies: list[str] = field(default_factory=list)
    controller: Deployment | None = None
    hook: MutatingWebhook | None = None
    endpoints: int = 0
    endpoint_asks: int = 0
    bindings: list[TargetGroupBinding] = field(default_factory=list)
    injected: tuple[str, ...] = ()  # the gates a dry-run pod comes back with
    dry_run_error: Exception | None = None
    probes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def server_version(self) -> tuple[int, int]:
        return self.version

    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False) -> AppliedObject:
        meta = manifest["metadata"]
        key = (manifest["kind"], meta.get("namespace", ""), meta["name"])
        if dry_run:
            self.dry_runs.append("/".join(key))
            return AppliedObject(*key, "validated")
        self.applies.append("/".join(key))
        before = self.objects.get(key)
        self.objects[key] = manifest
        return AppliedObject(*key, "created" if before is None else "unchanged" if before == manifest else "configured")

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        if self.controller is None:
            raise NotFoundError(f"deployments {namespace}/{name} not found")
        return self.controller

    def get_mutating_webhook(self, name: str) -> MutatingWebhook:
        if self.hook is None:
            raise NotFoundError(f"mutatingwebhookconfigurations {name} not found")
        return self.hook

    def ready_endpoints(self, namespace: str, service: str) -> int:
        self.endpoint_asks += 1
        return self.endpoints

    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]:
        return [t for t in self.bindings if t.namespace == namespace]

    pods: list[Pod] = field(default_factory=list)  # the pods in the API (none: a new application)

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        return [p for p in self.pods
                if p.namespace == namespace and all(p.labels.get(k) == v for k, v in selector.items())]

    def dry_run_create_pod(self, namespace: str, manifest: dict[str, Any]) -> Pod:
        self.probes.append((namespace, manifest))
        if self.dry_run_error is not None:
            raise self.dry_run_error
        return Pod(namespace=namespace, name="albgate-probe-x", uid="", ip=None, labels={}, phase="Pending",
                   readiness_gates=self.injected, conditions=(), terminating=False, restart_count=0, created_at=NOW)


@dataclass
class Helm:
    """helm on one release: ``release`` shows ``current``; a rollback deploys it again, an uninstall removes it."""

    current: HelmRelease | None = None
    runs: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def release(self, name: str, namespace: str) -> HelmRelease | None:
        self.asked.append((name, namespace))
        return self.current

    def upgrade_install(self, args: list[str], values: dict[str, Any]) -> str:
        self.runs.append((args, values))
        return "deployed"

    def run(self, args: list[str]) -> str:
        self.runs.append((args, {}))
        assert self.current is not None
        if args[0] == "rollback":
            self.current = replace(self.current, status="deployed", revision=self.current.revision + 1)
        else:
            self.current = None
        return "done"


@dataclass
class Clock:
    t: float = NOW

    def now(self) -> float:
        return self.t


def state(request: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"request": request or app_request(), **extra}


def bound(target_type: str = "ip", namespace: str = "shop", service: str = "web") -> TargetGroupBinding:
    return TargetGroupBinding(namespace, TGB, "arn:tg", target_type, service, 80)


# ---------------------------------------------------------------------------------------------------------
# Install Controller
# ---------------------------------------------------------------------------------------------------------
def test_a_fresh_install_creates_the_account_then_installs_the_chart_and_logs_both():
    # Given a cluster without the controller
    kube, helm = Cluster(), Helm()
    # When Install Controller runs
    out = b.install_controller(kube, helm, Clock(), state())
    # Then it applied the service account, ran helm upgrade --install once with albgate's values, and logged both
    settings = b.ControllerSettings()
    values = b.helm_values("sim-cluster", settings)
    assert kube.applies == ["ServiceAccount/kube-system/aws-load-balancer-controller"]
    assert helm.runs == [(b.helm_upgrade_args(settings, "values.json"), values)]
    assert out["changes"] == [
        {"step": "Install Controller", "change": "created",
         "object": "ServiceAccount/kube-system/aws-load-balancer-controller"},
        {"step": "Install Controller", "change": "install",
         "object": "helm release kube-system/aws-load-balancer-controller",
         "detail": {"chart_version": "3.5.0", "from": None, "values": values}},
    ]
    # and it now waits for the controller to work, until its deadline
    assert out["controller"] == {"status": "WAITING", "reason": "installed; waiting for it to work",
                                 "deadline": NOW + 900, "polls": 0,
                                 "install": {"action": "install", "chart_version": "3.5.0"}}


def test_an_older_release_is_upgraded_and_the_log_says_from_which_version():
    # Given the chart installed at 1.8.0 by an earlier run, the account already applied
    kube = Cluster()
    kube.apply(b.service_account_manifest(b.ControllerSettings()))
    helm = Helm(HelmRelease("aws-load-balancer-controller", "kube-system", "1.8.0", "deployed", {}))
    # When Install Controller runs / Then only the upgrade is logged, naming the version it came from
    out = b.install_controller(kube, helm, Clock(), state())
    assert [(c["change"], c["detail"]["from"]) for c in out["changes"]] == [("upgrade", "1.8.0")]
    assert out["controller"]["install"] == {"action": "upgrade", "chart_version": "3.5.0"}


def test_a_second_run_changes_nothing_and_logs_nothing():
    # Given the account applied and the release at the pinned chart with albgate's values
    kube = Cluster()
    kube.apply(b.service_account_manifest(b.ControllerSettings()))
    values = b.helm_values("sim-cluster", b.ControllerSettings())
    helm = Helm(HelmRelease("aws-load-balancer-controller", "kube-system", "3.5.0", "deployed", values))
    # When Install Controller runs again / Then no helm run, no change logged, the install says unchanged
    out = b.install_controller(kube, helm, Clock(), state())
    assert helm.runs == [] and "changes" not in out
    assert out["controller"]["install"] == {"action": "unchanged", "chart_version": "3.5.0"}


PENDING_AT = NOW - b.STALE_PENDING_SECONDS


@pytest.mark.parametrize(("status", "revision", "fix", "action"), [
    ("pending-upgrade", 2, "rollback", "upgrade"), ("pending-install", 1, "uninstall", "install")])
def test_a_stale_pending_release_is_cleared_logged_read_again_then_installed(status, revision, fix, action):
    # Given the account applied and the release left pending exactly STALE_PENDING_SECONDS ago
    kube = Cluster()
    kube.apply(b.service_account_manifest(b.ControllerSettings()))
    helm = Helm(HelmRelease("aws-load-balancer-controller", "kube-system", "1.8.0", status, {}, revision=revision,
                            updated_at=PENDING_AT))
    # When Install Controller runs
    out = b.install_controller(kube, helm, Clock(), state())
    # Then helm cleared it with albgate's command, the release was read again, and the upgrade (or, after an
    # uninstall, the install) ran with albgate's values
    settings = b.ControllerSettings()
    values = b.helm_values("sim-cluster", settings)
    assert helm.runs == [(b.helm_clear_args(fix, settings), {}), (b.helm_upgrade_args(settings, "values.json"), values)]
    assert helm.asked == [("aws-load-balancer-controller", "kube-system")] * 2
    # And the log says what was cleared, then what was installed (from the version the rollback left, or none)
    cleared, installed = out["changes"]
    assert cleared == {"step": "Install Controller", "change": fix,
                       "object": "helm release kube-system/aws-load-balancer-controller",
                       "detail": {"was": status, "revision": revision, "written_at": PENDING_AT}}
    assert (installed["change"], installed["detail"]["from"]) == (action, "1.8.0" if fix == "rollback" else None)
    assert out["controller"]["install"] == {"action": action, "chart_version": "3.5.0"}


def test_a_pending_release_younger_than_the_stale_age_stops_install_controller_before_any_helm_run():
    helm = Helm(HelmRelease("aws-load-balancer-controller", "kube-system", "1.8.0", "pending-upgrade", {}, revision=3,
                            updated_at=PENDING_AT + 1))
    with pytest.raises(ConflictError) as caught:
        b.install_controller(Cluster(), helm, Clock(), state())
    assert str(caught.value) == (
        f"helm release kube-system/aws-load-balancer-controller is pending-upgrade (revision 3, written "
        f"{b.STALE_PENDING_SECONDS - 1} s ago): another helm operation may still be running; albgate clears a "
        "pending release once it is 30 minutes old, or finish or clear that operation and run the bootstrap again")
    assert helm.runs == []


def test_a_pending_release_written_at_an_unknown_time_is_never_cleared():
    pending = HelmRelease("aws-load-balancer-controller", "kube-system", "1.8.0", "pending-install", {}, revision=1)
    with pytest.raises(ConflictError) as caught:
        b.pending_release_fix(pending, NOW + 10 * b.STALE_PENDING_SECONDS)
    assert str(caught.value) == (
        "helm release kube-system/aws-load-balancer-controller is pending-install (revision 1, written at an "
        "unknown time): another helm operation may still be running; albgate clears a pending release once it "
        "is 30 minutes old, or finish or clear that operation and run the bootstrap again")


def test_the_commands_that_clear_a_pending_release_are_exactly_these():
    settings = b.ControllerSettings(namespace="lbc")
    assert b.helm_clear_args("rollback", settings) == [
        "rollback", "aws-load-balancer-controller", "--namespace", "lbc", "--server-side", "true", "--force-conflicts",
        "--history-max", "10", "--timeout", "10m0s"]
    assert b.helm_clear_args("uninstall", settings) == [
        "uninstall", "aws-load-balancer-controller", "--namespace", "lbc", "--timeout", "10m0s"]


def test_with_install_false_nothing_is_applied_and_the_check_still_waits_for_the_controller():
    kube, helm = Cluster(), Helm()
    out = b.install_controller(kube, helm, Clock(), state(app_request(controller={"install": False})))
    assert kube.applies == [] and helm.runs == []
    assert out["controller"] == {"status": "WAITING", "reason": "installed; waiting for it to work",
                                 "deadline": NOW + 900, "polls": 0,
                                 "install": {"action": "skipped", "reason": "controller.install is false"}}


def test_a_state_without_a_request_is_refused_naming_the_first_step():
    with pytest.raises(b.InvalidInputError, match="^state: expected the bootstrap state with a request; start with "
                                                  "Validate Input$"):
        b.install_controller(Cluster(), Helm(), Clock(), {"changes": []})


def test_the_callers_state_is_not_changed_by_a_step():
    # Given a state with a change log already / When a step appends to it / Then the caller's copy is untouched
    before = state(changes=[{"step": "Validate Input", "change": "x", "object": "y"}])
    b.install_controller(Cluster(), Helm(), Clock(), before)
    assert before["changes"] == [{"step": "Validate Input", "change": "x", "object": "y"}]


# ---------------------------------------------------------------------------------------------------------
# Check Controller
# ---------------------------------------------------------------------------------------------------------
def test_a_working_controller_passes_and_the_image_it_runs_is_recorded():
    # Given the controller available and rolled, its webhook on Fail and serving
    kube = Cluster(controller=controller_deployment(), hook=webhook(), endpoints=2)
    prior = {"status": "WAITING", "deadline": NOW + 100, "polls": 3, "install": {"action": "install"}}
    # When Check Controller runs
    out = b.check_controller(kube, Clock(), state(controller=prior))
    # Then it passes, keeps the deadline and the install record, counts the poll, and says what runs
    assert out["controller"] == {"status": "PASSED", "reason": "controller available, webhook serving",
                                 "deadline": NOW + 100, "polls": 4, "install": {"action": "install"},
                                 "image": "public.ecr.aws/eks/aws-load-balancer-controller:v3.5.0"}
    assert out["wait_seconds"] == 0


def test_no_controller_yet_waits_ten_seconds_without_asking_for_endpoints():
    # Given nothing installed yet, and a first check (no deadline in the state)
    kube = Cluster()
    # When Check Controller runs
    out = b.check_controller(kube, Clock(), state())
    # Then it waits 10 s, listing every missing piece, with the deadline from now, and never asked for endpoints
    assert out["controller"] == {
        "status": "WAITING",
        "reason": "Deployment kube-system/aws-load-balancer-controller does not exist; the pod webhook "
                  "mpod.elbv2.k8s.aws in aws-load-balancer-webhook does not exist; Service "
                  "kube-system/aws-load-balancer-webhook-service has no ready endpoint",
        "deadline": NOW + 900, "polls": 1, "image": None}
    assert out["wait_seconds"] == 10 and kube.endpoint_asks == 0


def test_a_controller_still_rolling_past_its_deadline_fails_saying_why():
    # Given the controller rolling (1 of 2 updated, none available) and the deadline reached
    kube = Cluster(controller=controller_deployment(updated=1, available=0, generation=2, observed=1),
                   hook=webhook("Ignore"), endpoints=0)
    out = b.check_controller(kube, Clock(), state(controller={"deadline": NOW, "polls": 90}))
    # Then it fails, and the reason lists each problem
    assert out["controller"]["status"] == "FAILED" and out["wait_seconds"] == 0
    assert out["controller"]["reason"] == (
        "the controller did not work within its deadline: the controller Deployment is still rolling (1/2 updated); "
        "no controller pod is available; the pod webhook's failurePolicy is Ignore, not Fail; Service "
        "kube-system/aws-load-balancer-webhook-service has no ready endpoint")
    assert out["controller"]["polls"] == 91


def test_a_controller_albgate_did_not_install_may_keep_its_own_failure_policy():
    # Given install false and a controller whose webhook is on Ignore / When checked / Then that is not a problem
    kube = Cluster(controller=controller_deployment(), hook=webhook("Ignore"), endpoints=1)
    out = b.check_controller(kube, Clock(), state(app_request(controller={"install": False})))
    assert out["controller"]["status"] == "PASSED"


def test_what_the_cluster_shows_of_the_controller_is_read_in_one_look():
    kube = Cluster(controller=controller_deployment(), hook=webhook(), endpoints=3)
    seen = b.observe_controller(kube, b.ControllerSettings())
    assert seen == b.ControllerObservation(controller_deployment(), webhook(), 3)


# ---------------------------------------------------------------------------------------------------------
# Apply Workloads: Services and Ingresses, then Deployments
# ---------------------------------------------------------------------------------------------------------
def test_every_manifest_is_dry_run_before_the_service_and_ingress_are_applied_and_logged():
    # Given one application with its three manifests
    kube = Cluster()
    # When the Services and Ingresses are applied
    out = b.apply_services_and_ingresses(kube, Clock(), state())
    # Then all three were validated by a dry run first, only the Service and Ingress were applied, and logged
    assert kube.dry_runs == ["Service/shop/web", "Ingress/shop/web", "Deployment/shop/web"]
    assert kube.applies == ["Service/shop/web", "Ingress/shop/web"]
    assert out["applied"] == {"created": 2}
    assert out["changes"] == [
        {"step": "Apply Services And Ingresses", "change": "created", "object": "Service/shop/web"},
        {"step": "Apply Services And Ingresses", "change": "created", "object": "Ingress/shop/web"},
    ]
    # and the hardening is summarised per application, and the bindings check starts with its deadline
    assert set(out["hardening"]) == {"shop/web"} and out["hardening"]["shop/web"]["changes"]
    assert all(" -> " in line for line in out["hardening"]["shop/web"]["changes"])
    assert out["bindings"] == {"status": "WAITING", "reason": "waiting for the controller to bind the Services",
                               "deadline": NOW + 600, "polls": 0}
    assert out["wait_seconds"] == 0


def test_a_second_apply_counts_unchanged_objects_and_logs_nothing():
    kube = Cluster()
    b.apply_services_and_ingresses(kube, Clock(), state())
    out = b.apply_services_and_ingresses(kube, Clock(), state())
    assert out["applied"] == {"unchanged": 2} and "changes" not in out


@pytest.mark.parametrize("version,pre_stop", [((1, 29), {"exec": {"command": ["sleep", "30"]}}),
                                              ((1, 30), {"sleep": {"seconds": 30}})])
def test_the_deployment_gets_the_pre_stop_sleep_its_cluster_version_supports(version, pre_stop):
    # Given a cluster at ``version``
    kube = Cluster(version=version)
    # When the Deployments are applied
    out = b.apply_deployments(kube, Clock(), state())
    # Then the hardened Deployment has the native sleep from 1.30 on, an exec sleep before
    dep = kube.objects[("Deployment", "shop", "web")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] == pre_stop
    assert out["applied"] == {"created": 1}
    assert out["changes"][0]["step"] == "Apply Deployments" and out["changes"][0]["object"] == "Deployment/shop/web"
    assert out["changes"][0]["detail"]["hardening_changes"] > 0
    assert out["settle"] == {"status": "WAITING", "reason": "waiting for the Deployments to settle",
                             "deadline": NOW + 600, "polls": 0}
    assert out["wait_seconds"] == 0


def test_an_application_without_manifests_is_only_labelled_never_applied():
    # Given an application that exists already (no manifests) / When the workloads are applied / Then nothing is
    request = {"cluster": "sim-cluster", "applications": [{"namespace": "shop", "deployment": "web", "container": "web"}]}
    kube = Cluster(version=(1, 20))
    b.apply_services_and_ingresses(kube, Clock(), state(request))
    b.apply_deployments(kube, Clock(), state(request))
    assert kube.applies == [] and kube.dry_runs == []


def test_an_unhardened_deployment_is_logged_without_a_hardening_count():
    # Given an application with harden false and manifests that need no change
    request = app_request()
    request["applications"][0]["harden"] = False
    kube = Cluster()
    out = b.apply_deployments(kube, Clock(), state(request))
    assert out["changes"] == [{"step": "Apply Deployments", "change": "created", "object": "Deployment/shop/web"}]


def test_the_hardening_summary_cuts_a_long_line_to_two_hundred_characters():
    @dataclass
    class Change:
        object: str
        field: str
        before: Any
        after: Any

    long = Change("Deployment/web", "spec.x", "a" * 300, 1)
    short = Change("Ingress/web", "metadata.annotations[x]", None, "10")
    lines = b.hardening_summary([long, short])
    assert len(lines[0]) == 200 and lines[0].endswith("...") and lines[0].startswith("Deployment/web spec.x: 'aaa")
    assert lines[1] == "Ingress/web metadata.annotations[x]: None -> '10'"


def test_the_probe_pod_has_the_template_labels_and_only_the_first_container():
    dep = {"spec": {"template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                                 "spec": {"containers": [{"name": "web", "image": "a:1", "ports": []},
                                                         {"name": "sidecar", "image": "b:1"}]}}}}
    assert b.probe_pod("shop", dep) == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "albgate-probe-", "namespace": "shop", "labels": {"app": "web", "tier": "front"}},
        "spec": {"containers": [{"name": "web", "image": "a:1"}]}}
    assert b.probe_pod("shop", {}) == {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"generateName": "albgate-probe-", "namespace": "shop",
                                                    "labels": {}}, "spec": {"containers": []}}


# ---------------------------------------------------------------------------------------------------------
# Check Bindings
# ---------------------------------------------------------------------------------------------------------
def checked(kube: Cluster, request: dict[str, Any] | None = None, **prior: Any) -> dict[str, Any]:
    return b.check_bindings(kube, Clock(), state(request, **({"bindings": prior} if prior else {})))


def test_a_service_not_bound_yet_waits_ten_seconds():
    out = checked(Cluster())
    assert out["bindings"] == {"status": "WAITING", "reason": "no TargetGroupBinding for Service shop/web yet",
                               "deadline": NOW + 600, "polls": 1, "gates": {}}
    assert out["wait_seconds"] == 10


def test_a_bound_service_whose_probe_pod_gets_the_gate_passes():
    # Given the Service bound to an IP target group and the webhook injecting its gate
    kube = Cluster(bindings=[bound()], injected=("other/gate", GATE))
    # When Check Bindings runs (second poll)
    out = checked(kube, deadline=NOW + 50, polls=1)
    # Then it passes, records the gates the probe pod came back with, and probed with the labels of the Deployment
    # as hardened (the serving label is one the Service selects)
    assert out["bindings"] == {"status": "PASSED",
                               "reason": "every Service is bound to an IP target group; the webhook injects the gates",
                               "deadline": NOW + 50, "polls": 2, "gates": {"shop/web": ["other/gate", GATE]}}
    assert out["wait_seconds"] == 0
    (probe,) = kube.probes
    assert probe[1]["metadata"]["labels"] == {"app": "web", SERVING_LABEL: "true"}


def test_a_probe_pod_without_the_gate_waits_naming_the_missing_gate():
    out = checked(Cluster(bindings=[bound()], injected=()))
    assert out["bindings"]["status"] == "WAITING"
    assert out["bindings"]["reason"] == f"a dry-run pod in shop came back without {GATE}"


def test_a_dry_run_the_api_refuses_for_now_waits_with_its_error():
    out = checked(Cluster(bindings=[bound()], dry_run_error=ThrottledError("429 too many requests")))
    assert out["bindings"]["reason"] == "dry-run pod in shop: 429 too many requests"


def test_past_the_deadline_a_missing_binding_fails():
    out = checked(Cluster(), deadline=NOW, polls=60)
    assert out["bindings"]["status"] == "FAILED" and out["wait_seconds"] == 0
    assert out["bindings"]["reason"] == ("bindings or gate injection not ready by the deadline: no TargetGroupBinding "
                                         "for Service shop/web yet")


def test_an_instance_target_group_of_a_gated_app_is_refused():
    with pytest.raises(UnsafeConfigurationError, match=f"^TargetGroupBinding\\(s\\) {TGB} of Service shop/web use "
                                                       "instance targets; set alb.ingress.kubernetes.io/target-type: "
                                                       "ip on the Ingress and re-run the bootstrap$"):
        checked(Cluster(bindings=[bound("instance")]))


def test_an_ungated_app_may_use_instance_targets():
    request = app_request()
    request["applications"][0]["gated"] = False
    out = checked(Cluster(bindings=[bound("instance")], injected=()), request)
    assert out["bindings"]["status"] == "PASSED"


def test_without_gate_injection_a_binding_is_enough_and_no_pod_is_probed():
    # Given EKS Auto Mode (no gate injection) and a bound Service
    kube = Cluster(bindings=[bound()])
    out = checked(kube, app_request(controller={"require_gate_injection": False}))
    assert out["bindings"]["status"] == "PASSED" and kube.probes == []


def test_bindings_of_other_services_do_not_count():
    out = checked(Cluster(bindings=[bound(service="api")], injected=(GATE,)))
    assert out["bindings"]["reason"] == "no TargetGroupBinding for Service shop/web yet"
