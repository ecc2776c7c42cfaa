"""The bootstrap's input check, its change log and hardening record, namespace labels, and the pods born before
the label, on the in-memory cluster of test_domain_mutants_bootstrap.

Given bootstrap inputs and cluster states a person meets (an existing app next to a new one, a controller in its
own namespace, a Deployment still rolling, pods of an old ReplicaSet, a change log near its size limit), when
Validate Input, Label Namespaces, Apply Workloads or Find Pods Born Before The Label run, then the state they hand
on says exactly what was done, what is waited for and which gated restarts follow, and the change log and
hardening record stay within their byte limits, counting what they cannot list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from lambdas.domain import bootstrap as b
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.limits import payload_bytes
from lambdas.domain.ports import (
    INJECT_LABEL, LBC_GATE_PREFIX, Container, Deployment, Pod, PodTemplate, ReplicaSet, Service, ServicePort,
    TargetGroupBinding,
)
from tests.bootstrap.conftest import app_request, deployment
from tests.unit.test_domain_mutants_bootstrap import NOW, TGB, Clock, Cluster, Helm, bound, state, webhook

GATE = LBC_GATE_PREFIX + TGB
LABELS = {"app": "web"}


@dataclass
class Workloads(Cluster):
    """The cluster of test_domain_mutants_bootstrap, plus Deployments, Services, ReplicaSets and pods to read."""

    deployments: dict[tuple[str, str], Deployment] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    replica_sets: list[ReplicaSet] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    version_asks: int = 0
    reads: list[tuple[str, ...]] = field(default_factory=list)

    def server_version(self) -> tuple[int, int]:
        self.version_asks += 1
        return super().server_version()

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        self.reads.append(("deployment", namespace, name))
        if (namespace, name) in self.deployments:
            return self.deployments[(namespace, name)]
        return super().get_deployment(namespace, name)

    def get_mutating_webhook(self, name: str):
        self.reads.append(("webhook", name))
        return super().get_mutating_webhook(name)

    def ready_endpoints(self, namespace: str, service: str) -> int:
        self.reads.append(("endpoints", namespace, service))
        return super().ready_endpoints(namespace, service)

    def list_services(self, namespace: str) -> list[Service]:
        return [s for s in self.services if s.namespace == namespace]

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]:
        return [r for r in self.replica_sets if r.namespace == namespace]

    def list_pods(self, namespace: str, selector: dict[str, str] | None) -> list[Pod]:
        """The namespace's pods the label selector matches (None: the API server's empty selector, all of them)."""
        return [p for p in self.pods if p.namespace == namespace
                and all(p.labels.get(k) == v for k, v in (selector or {}).items())]


def app_deployment(namespace: str = "shop", name: str = "web", *, available: int = 3, updated: int = 3,
                   containers: tuple[str, ...] = ("web",)) -> Deployment:
    template = PodTemplate(containers=tuple(Container(c, f"registry.example.com/{c}:1.4") for c in containers),
                           labels=dict(LABELS))
    return Deployment(namespace=namespace, name=name, uid=f"uid-{name}", replicas=3, selector=dict(LABELS),
                      template=template, max_surge=1, max_unavailable=0, updated_replicas=updated,
                      available_replicas=available)


def replica_set(revision: int, hash_: str, namespace: str = "shop") -> ReplicaSet:
    return ReplicaSet(namespace, f"web-{hash_}", revision, hash_, 3, 3, 3, PodTemplate(containers=()), NOW - 100)


def app_pod(name: str, hash_: str, gates: tuple[str, ...] = (), namespace: str = "shop",
            terminating: bool = False) -> Pod:
    return Pod(namespace=namespace, name=name, uid=name, ip="10.0.0.1", labels={**LABELS, "pod-template-hash": hash_},
               phase="Running", readiness_gates=gates, conditions=(), terminating=terminating, restart_count=0,
               created_at=NOW - 500)


def serving(namespace: str = "shop", labels: dict[str, str] | None = None, name: str = "web") -> Service:
    return Service(namespace, name, LABELS if labels is None else labels, (ServicePort(80, 80),))


def two_apps(first_has_manifests: bool = False) -> dict[str, Any]:
    """``old`` exists already in namespace ``legacy`` (no manifests, unless asked), ``web`` is new in ``shop``."""
    request = app_request()
    old = {"namespace": "legacy", "deployment": "old", "container": "old"}
    if first_has_manifests:
        old = app_request("legacy", "old")["applications"][0]
    request["applications"].insert(0, old)
    return request


# ---------------------------------------------------------------------------------------------------------
# Validate Input
# ---------------------------------------------------------------------------------------------------------
def test_validate_input_hands_on_the_request_and_a_plan_per_app_with_manifests():
    # Given an app that exists (no manifests) and a new one with manifests
    raw = two_apps()
    # When the input is validated
    out = b.validate_input(raw, "boot-1", NOW)
    # Then the state carries the parsed request, who runs it and since when, and one plan: the new app's
    applied = b.apply_services_and_ingresses(Workloads(version=(1, 31)), Clock(), state(raw))
    hardening = applied["hardening"]["shop/web"]
    assert out == {"request": b.parse_bootstrap(raw).model_dump(mode="json"), "execution_name": "boot-1",
                   "started_at": NOW, "changes": [], "wait_seconds": 0,
                   "plans": [{"app": "shop/web", "changes": len(hardening["changes"]),
                              "findings": len(hardening["findings"])}]}


def test_an_app_in_the_controllers_own_namespace_is_refused_before_anything_changes():
    # Given the controller installed in namespace lbc and an app there
    raw = app_request("lbc", controller={"namespace": "lbc"})
    # When validated / Then refused, citing the controller's own pods
    with pytest.raises(InvalidInputError, match="^namespaces: refusing to label namespace 'lbc' with "
                                                f"{INJECT_LABEL}=enabled: the controller's own pods would wait for a "
                                                r"gate only the controller can set \(aws-load-balancer-controller#1628\);"
                                                " run applications in their own namespaces$"):
        b.validate_input(raw, "boot-1", NOW)


def test_kube_system_is_refused_citing_cluster_recovery():
    with pytest.raises(InvalidInputError, match=r"^namespaces: refusing to label namespace 'kube-system' with .*: a "
                                                "readiness gate on a system pod can block cluster recovery "
                                                r"\(aws-load-balancer-controller#2282\); run applications in their "
                                                "own namespaces$"):
        b.refuse_namespace("kube-system", "lbc")


def request_of_size(size: int) -> dict[str, Any]:
    """A one-app input whose parsed request measures exactly ``size`` bytes (a padded annotation)."""
    raw = app_request()
    pad = raw["applications"][0]["manifests"]["deployment"]["metadata"].setdefault("annotations", {})
    pad["example.com/pad"] = ""
    base = payload_bytes(b.parse_bootstrap(raw).model_dump(mode="json"))
    pad["example.com/pad"] = "x" * (size - base)
    assert payload_bytes(b.parse_bootstrap(raw).model_dump(mode="json")) == size
    return raw


def test_an_input_of_exactly_the_limit_is_taken_and_one_byte_more_is_refused_with_the_sizes():
    # Given an input of exactly 80 KiB / Then it is taken
    assert b.validate_input(request_of_size(b.MAX_REQUEST_BYTES), "boot-1", NOW)["execution_name"] == "boot-1"
    # Given 100 KiB / Then it is refused, with its size, the limit and the state limit behind it
    with pytest.raises(InvalidInputError) as caught:
        b.validate_input(request_of_size(100 * 1024 + 300), "boot-1", NOW)
    assert str(caught.value) == (
        "input: 100 KiB of request (manifests included); albgate takes at most 80 KiB, because every state of the "
        "bootstrap carries it next to what the steps find and Step Functions keeps at most 256 KiB per state "
        "(docs/rollout.md, Limits): bootstrap the applications in several runs, or leave out the manifests of those "
        "already applied")


# ---------------------------------------------------------------------------------------------------------
# The deployed settings of the cluster
# ---------------------------------------------------------------------------------------------------------
def test_an_input_without_controller_settings_gets_the_deployed_ones():
    # Given a deployment that configured the cluster's Region and chart mirror, and an input without "controller"
    configured = {"sim-cluster": {"region": "eu-west-1", "chart_version": "3.5.0", "vpc_id": ""}}
    raw = app_request()
    # When validated / Then the request's controller is the deployed one (empty settings left out)
    out = b.validate_input(raw, "boot-1", NOW, configured)
    assert out["request"]["controller"]["region"] == "eu-west-1" and out["request"]["controller"]["vpc_id"] is None


def test_a_deployment_with_no_cluster_says_none_are_configured():
    with pytest.raises(InvalidInputError, match=r"^cluster: 'sim-cluster' is not a cluster of this deployment "
                                                r"\(configured: none\); add it under clusters in the albgate config "
                                                "and deploy$"):
        b.validate_input(app_request(), "boot-1", NOW, {})


def test_two_config_owned_fields_are_refused_in_one_message():
    raw = app_request(controller={"chart_version": "9.9.9", "role_arn": "arn:aws:iam::1:role/x"})
    with pytest.raises(InvalidInputError) as caught:
        b.validate_input(raw, "boot-1", NOW)
    assert str(caught.value) == (
        "controller.chart_version: not an input field, because it chooses what runs with cluster-admin rights; set "
        "clusters[].controller.chart_version in the albgate config and deploy; controller.role_arn: not an input "
        "field, because it chooses what runs with cluster-admin rights; set clusters[].controller.role_arn in the "
        "albgate config and deploy")


# ---------------------------------------------------------------------------------------------------------
# Label Namespaces, and the change log's limit
# ---------------------------------------------------------------------------------------------------------
def test_each_namespace_is_labelled_by_applying_only_the_label_and_each_change_is_logged():
    # Given an extra namespace and an app namespace that exists already with the label
    kube = Workloads()
    kube.apply(b.namespace_manifest("shop"))
    # When Label Namespaces runs
    out = b.label_namespaces(kube, state(app_request(namespaces=["team"])))
    # Then it applied the label alone to each, and logged only the namespace it created
    assert kube.objects[("Namespace", "", "team")] == {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {INJECT_LABEL: "enabled"}}}
    assert out["namespaces"] == [{"namespace": "team", "action": "created"}, {"namespace": "shop", "action": "unchanged"}]
    assert out["changes"] == [{"step": "Label Namespaces", "change": "created", "object": "Namespace/team",
                               "detail": {INJECT_LABEL: "enabled"}}]


def test_the_controllers_service_account_is_what_the_chart_expects():
    # Given IRSA configured / When Install Controller runs / Then the applied account is labelled and annotated
    kube = Workloads()
    b.install_controller(kube, Helm(), Clock(), state(app_request()))
    assert kube.objects[("ServiceAccount", "kube-system", "aws-load-balancer-controller")] == {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system",
                     "labels": {"app.kubernetes.io/name": "aws-load-balancer-controller",
                                "app.kubernetes.io/managed-by": "albgate"}}}


def log_entry_bytes(namespace: str) -> int:
    return payload_bytes({"step": "Label Namespaces", "change": "created", "object": f"Namespace/{namespace}",
                          "detail": {INJECT_LABEL: "enabled"}})


def log_of(size: int) -> list[dict[str, Any]]:
    """A change log of exactly ``size`` bytes (one earlier entry, padded)."""
    entry = {"step": "Validate Input", "change": "noted", "object": ""}
    entry["object"] = "x" * (size - payload_bytes([entry]))
    assert payload_bytes([entry]) == size
    return [entry]


@pytest.mark.parametrize("over,listed", [(0, True), (1, False)])
def test_the_change_log_lists_a_change_while_it_fits_and_then_only_counts_it(over, listed):
    # Given a change log with room for exactly one more entry (over 0), or one byte less (over 1), 4 not listed
    prior = log_of(b.CHANGE_LOG_MAX_BYTES - log_entry_bytes("team") - 2 + over)
    kube = Workloads()
    kube.apply(b.namespace_manifest("shop"))
    # When Label Namespaces creates namespace team (shop is labelled already)
    out = b.label_namespaces(kube, state(app_request(namespaces=["team"]), changes=prior, changes_not_listed=4))
    # Then the change is listed, or counted among those not listed
    assert (len(out["changes"]) == 2) is listed
    assert out["changes_not_listed"] == (4 if listed else 5)
    assert payload_bytes(out["changes"]) <= b.CHANGE_LOG_MAX_BYTES


def test_the_first_change_not_listed_starts_the_count_at_one():
    # Given a full change log / When two namespaces are created / Then neither is listed, both are counted
    prior = log_of(b.CHANGE_LOG_MAX_BYTES)
    out = b.label_namespaces(Workloads(), state(app_request(namespaces=["team"]), changes=prior))
    assert out["changes"] == prior and out["changes_not_listed"] == 2


# ---------------------------------------------------------------------------------------------------------
# Apply Workloads, and the hardening record's limit
# ---------------------------------------------------------------------------------------------------------
def test_an_existing_app_listed_first_does_not_stop_the_new_app_from_being_applied():
    # Given an app without manifests listed before a new one
    kube = Workloads()
    out = b.apply_services_and_ingresses(kube, Clock(), state(two_apps()))
    b.apply_deployments(kube, Clock(), state(two_apps()))
    # Then the new app's objects are applied, and the cluster's version was asked to choose its preStop
    assert kube.applies == ["Service/shop/web", "Ingress/shop/web", "Deployment/shop/web"]
    assert set(out["hardening"]) == {"shop/web"}


def test_with_nothing_to_apply_the_cluster_version_is_not_asked():
    kube = Workloads()
    request = {"cluster": "sim-cluster", "applications": [{"namespace": "shop", "deployment": "web", "container": "web"}]}
    b.apply_deployments(kube, Clock(), state(request))
    assert kube.version_asks == 0


def test_counts_of_an_earlier_apply_are_not_carried_into_this_one():
    out = b.apply_services_and_ingresses(Workloads(), Clock(), state(applied={"created": 5}))
    assert out["applied"] == {"created": 2}


def test_a_second_deployment_apply_logs_nothing():
    kube = Workloads()
    b.apply_deployments(kube, Clock(), state())
    out = b.apply_deployments(kube, Clock(), state())
    assert out["applied"] == {"unchanged": 1} and "changes" not in out


def test_the_ingress_gets_the_inputs_health_check_interval():
    # Given a health check interval of 10 s in the input / When the Ingress is applied / Then it carries 10
    kube = Workloads()
    b.apply_services_and_ingresses(kube, Clock(), state(app_request(health_check_interval_seconds=10)))
    annotations = kube.objects[("Ingress", "shop", "web")]["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/healthcheck-interval-seconds"] == "10"


def test_an_app_whose_container_is_not_in_its_deployment_is_refused_before_anything_is_applied():
    # Given an app naming container api, which its Deployment does not have
    raw = app_request()
    raw["applications"][0]["container"] = "api"
    kube = Workloads()
    # When the workloads are applied / Then it is refused, naming the container, and nothing was applied
    with pytest.raises(InvalidInputError, match="no container named 'api'"):
        b.apply_services_and_ingresses(kube, Clock(), state(raw))
    assert kube.applies == []


def hardening_of(size: int) -> dict[str, Any]:
    """A hardening record of exactly ``size`` bytes (one earlier app, padded)."""
    section = {"legacy/old": {"changes": [""], "findings": []}}
    section["legacy/old"]["changes"][0] = "x" * (size - payload_bytes(section))
    assert payload_bytes(section) == size
    return section


def web_hardening() -> dict[str, Any]:
    return b.apply_services_and_ingresses(Workloads(), Clock(), state())["hardening"]["shop/web"]


@pytest.mark.parametrize("over,summarised", [(0, True), (1, False)])
def test_the_hardening_record_keeps_the_summary_while_it_fits_and_then_only_counts(over, summarised):
    # Given a hardening record with room for exactly the new app's summary (over 0), or one byte less (over 1)
    entry = web_hardening()
    room = b.HARDENING_MAX_BYTES - payload_bytes({"shop/web": entry}) + over
    # When the app is applied
    out = b.apply_services_and_ingresses(Workloads(), Clock(), state(hardening=hardening_of(room)))
    # Then its summary is recorded, or only how many changes and findings it had
    expected = entry if summarised else {"changes": len(entry["changes"]), "findings": len(entry["findings"])}
    assert out["hardening"]["shop/web"] == expected


# ---------------------------------------------------------------------------------------------------------
# Check Bindings with several apps
# ---------------------------------------------------------------------------------------------------------
def test_every_app_is_checked_and_every_reason_listed():
    # Given two apps with manifests: legacy/old not bound yet; shop/web bound twice (one binding without a target
    # type, which counts as IP), its probe pod without either gate
    raw = two_apps(first_has_manifests=True)
    kube = Workloads(bindings=[bound(), TargetGroupBinding("shop", "k8s-shop-web-2", "arn:tg2", "", "web", 80)],
                     injected=())
    out = b.check_bindings(kube, Clock(), state(raw))
    # Then both apps' problems are listed, each missing gate named
    assert out["bindings"]["reason"] == (
        "no TargetGroupBinding for Service legacy/old yet; a dry-run pod in shop came back without "
        f"{GATE}, {LBC_GATE_PREFIX}k8s-shop-web-2")


def test_an_app_without_manifests_listed_first_does_not_stop_the_check():
    kube = Workloads(bindings=[bound()], injected=(GATE,))
    out = b.check_bindings(kube, Clock(), state(two_apps()))
    assert out["bindings"]["status"] == "PASSED" and out["bindings"]["gates"] == {"shop/web": [GATE]}


def test_a_probe_pods_gates_are_listed_up_to_five():
    gates = tuple(f"example.com/gate-{i}" for i in range(7)) + (GATE,)
    out = b.check_bindings(Workloads(bindings=[bound()], injected=gates), Clock(), state())
    assert out["bindings"]["gates"]["shop/web"] == list(gates[:5])


def test_an_ungated_app_first_does_not_hide_the_next_apps_missing_gate():
    raw = two_apps(first_has_manifests=True)
    raw["applications"][0]["gated"] = False
    kube = Workloads(bindings=[bound(namespace="legacy", service="old"), bound()], injected=())
    out = b.check_bindings(kube, Clock(), state(raw))
    assert out["bindings"]["reason"] == (f"a dry-run pod in legacy came back without {GATE}; "
                                         f"a dry-run pod in shop came back without {GATE}")


def test_two_instance_bindings_are_named_together():
    kube = Workloads(bindings=[bound("instance"), TargetGroupBinding("shop", "k8s-2", "arn:2", "instance", "web", 80)])
    with pytest.raises(b.UnsafeConfigurationError, match=f"^TargetGroupBinding\\(s\\) {TGB}, k8s-2 of Service"):
        b.check_bindings(kube, Clock(), state())


# ---------------------------------------------------------------------------------------------------------
# Check Controller: what it reads
# ---------------------------------------------------------------------------------------------------------
def test_the_controller_is_looked_for_where_it_is_installed():
    # Given the controller in namespace lbc
    kube = Workloads(controller=None, hook=webhook(), endpoints=1)
    kube.deployments[("lbc", "aws-load-balancer-controller")] = app_deployment("lbc", "aws-load-balancer-controller")
    # When checked / Then the Deployment, the webhook configuration and the webhook Service's endpoints were read
    b.check_controller(kube, Clock(), state(app_request(controller={"namespace": "lbc"})))
    assert kube.reads == [("deployment", "lbc", "aws-load-balancer-controller"), ("webhook", "aws-load-balancer-webhook"),
                          ("endpoints", "lbc", "aws-load-balancer-webhook-service")]


def test_a_webhook_configuration_without_the_pod_webhook_is_reported_missing():
    kube = Workloads(hook=b.MutatingWebhook("aws-load-balancer-webhook", (b.WebhookEntry("mservice.elbv2.k8s.aws",
                                                                                         "Fail", {}, {}),)))
    out = b.check_controller(kube, Clock(), state())
    assert "the pod webhook mpod.elbv2.k8s.aws in aws-load-balancer-webhook does not exist" in out["controller"]["reason"]


def test_one_available_controller_pod_is_enough():
    kube = Workloads(controller=b.Deployment(**{**app_deployment().__dict__, "replicas": 1, "updated_replicas": 1,
                                                "available_replicas": 1}), hook=webhook(), endpoints=1)
    assert b.check_controller(kube, Clock(), state())["controller"]["status"] == "PASSED"


def test_the_release_looked_up_is_albgates_in_the_controllers_namespace():
    helm = Helm()
    b.install_controller(Workloads(), helm, Clock(), state(app_request(controller={"namespace": "lbc"})))
    assert helm.asked == [("aws-load-balancer-controller", "lbc")]


# ---------------------------------------------------------------------------------------------------------
# Find Pods Born Before The Label
# ---------------------------------------------------------------------------------------------------------
def settled_world(**kw: Any) -> Workloads:
    """The app web in shop, settled, behind a bound Service, its current ReplicaSet b2 (b1 is older)."""
    kw.setdefault("services", [serving()])
    kube = Workloads(bindings=[bound()], replica_sets=[replica_set(1, "b1"), replica_set(2, "b2")], **kw)
    kube.deployments[("shop", "web")] = app_deployment()
    return kube


def found(kube: Workloads, request: dict[str, Any] | None = None, **settle: Any) -> dict[str, Any]:
    return b.find_pods_born_before_label(kube, Clock(), state(request, **({"settle": settle} if settle else {})))


def test_without_a_replica_set_listed_only_the_deployments_own_pods_are_checked():
    # Given the app's pods all gated but no ReplicaSet of it listed yet, and another app's ungated pod beside them
    kube = settled_world(pods=[app_pod(f"web-{i}", "b2", (GATE,)) for i in "abc"])
    kube.replica_sets = []
    other = app_pod("batch-x", "z9")
    kube.pods.append(replace(other, labels={"app": "batch", "pod-template-hash": "z9"}))
    # When the pods born before the label are found / Then only the Deployment's selector counts: nothing to restart
    out = found(kube, deadline=NOW + 30, polls=2)
    assert out["stale_pods"] == [] and out["restarts"] == []


def test_pods_of_the_current_replica_set_without_the_gate_become_one_gated_restart():
    # Given four current pods without the gate, one with it, an old-ReplicaSet pod and a terminating pod
    kube = settled_world(pods=[app_pod(f"web-b2-{i}", "b2") for i in "dcba"] + [
        app_pod("web-b2-gated", "b2", (GATE,)), app_pod("web-b1-old", "b1"), app_pod("web-b2-gone", "b2",
                                                                                      terminating=True)])
    # When the pods born before the label are found
    out = found(kube, deadline=NOW + 30, polls=2)
    # Then the Deployment is listed with three of its four stale pods and their count, and one restart follows
    assert out["stale_pods"] == [{"deployment": "shop/web", "pods": ["web-b2-a", "web-b2-b", "web-b2-c"],
                                  "pod_count": 4}]
    assert out["restarts"] == [b.restart_request(b.parse_bootstrap(app_request()), "shop", "web", "web",
                                                 "registry.example.com/web:1.4")]
    assert out["settle"] == {"status": "PASSED", "reason": "1 Deployment(s) have pods born before the label",
                             "deadline": NOW + 30, "polls": 3}
    assert out["wait_seconds"] == 0


def test_every_gated_pod_passes_with_nothing_to_restart():
    out = found(settled_world(pods=[app_pod("web-b2-a", "b2", (GATE,))]))
    assert out["settle"] == {"status": "PASSED", "reason": "every pod carries its gate", "deadline": NOW + 600,
                             "polls": 1}
    assert out["restarts"] == [] and out["stale_pods"] == []


def test_a_restart_names_the_apps_container_or_the_first_when_it_is_gone():
    kube = settled_world(pods=[app_pod("web-b2-a", "b2")])
    kube.deployments[("shop", "web")] = app_deployment(containers=("proxy", "web"))
    assert found(kube)["restarts"][0]["container"] == "web"
    kube.deployments[("shop", "web")] = app_deployment(containers=("proxy", "side"))
    assert found(kube)["restarts"][0]["container"] == "proxy"


def test_a_deployment_still_rolling_waits_and_fails_at_its_deadline():
    kube = settled_world()
    kube.deployments[("shop", "web")] = app_deployment(available=1, updated=2)
    out = found(kube)
    assert out["settle"]["status"] == "WAITING" and out["wait_seconds"] == 10
    assert out["settle"]["reason"] == "Deployments still rolling: shop/web (1/3 available, 2 updated)"
    out = found(kube, deadline=NOW)
    assert out["settle"]["status"] == "FAILED" and out["wait_seconds"] == 0
    assert out["settle"]["reason"] == "Deployments did not settle by the deadline: shop/web (1/3 available, 2 updated)"


def test_a_missing_deployment_does_not_stop_the_next_app_from_being_checked():
    # Given the first app's Deployment does not exist yet and the second has a stale pod
    kube = settled_world(pods=[app_pod("web-b2-a", "b2")])
    out = found(kube, two_apps())
    assert [s["deployment"] for s in out["stale_pods"]] == ["shop/web"]


def test_an_app_with_nothing_to_restart_does_not_stop_the_next():
    # Given legacy/old settled with its pods gated, then shop/web with a stale pod
    kube = settled_world(pods=[app_pod("web-b2-a", "b2"), app_pod("old-1", "o1", (LBC_GATE_PREFIX + "tgb-old",),
                                                                  namespace="legacy")])
    kube.deployments[("legacy", "old")] = app_deployment("legacy", "old")
    kube.services.append(serving("legacy"))
    kube.bindings.append(TargetGroupBinding("legacy", "tgb-old", "arn:old", "ip", "web", 80))
    out = found(kube, two_apps())
    assert [s["deployment"] for s in out["stale_pods"]] == ["shop/web"]


def test_only_ip_bindings_of_services_selecting_the_pods_count():
    # Given a Service selecting other pods with its own binding, and an instance binding of the app's Service
    kube = settled_world(pods=[app_pod("web-b2-a", "b2", (GATE,))],
                         services=[serving(), serving(labels={"app": "api"}, name="api")])
    kube.bindings += [TargetGroupBinding("shop", "tgb-api", "arn:api", "ip", "api", 80),
                      TargetGroupBinding("shop", "tgb-inst", "arn:inst", "instance", "web", 80)]
    # Then the pod, which has its own Service's IP gate, is not stale
    assert found(kube)["stale_pods"] == []


def test_a_binding_without_a_target_type_counts_as_ip():
    kube = settled_world(pods=[app_pod("web-b2-a", "b2", (GATE,))])
    kube.bindings = [TargetGroupBinding("shop", TGB, "arn:tg", "", "web", 80)]
    kube.bindings.append(TargetGroupBinding("shop", "k8s-other", "arn:o", "", "web", 80))
    assert found(kube)["stale_pods"][0]["pods"] == ["web-b2-a"]


def test_without_replica_sets_every_selected_pod_counts():
    kube = settled_world(pods=[app_pod("web-x-a", "x")])
    kube.replica_sets = []
    assert found(kube)["stale_pods"][0]["pods"] == ["web-x-a"]


def test_with_restarts_switched_off_stale_pods_are_listed_but_not_restarted():
    kube = settled_world(pods=[app_pod("web-b2-a", "b2")])
    out = found(kube, app_request(restart_pods_born_before_label=False))
    assert out["stale_pods"][0]["pod_count"] == 1 and out["restarts"] == []


def test_a_restart_input_is_a_json_ready_rollout_request():
    request = b.parse_bootstrap(app_request(policy={"step_deadline_seconds": 400}))
    out = b.restart_request(request, "shop", "web", "web", "web:1.4")
    assert out == {"cluster": "sim-cluster", "namespace": "shop", "deployment": "web", "container": "web",
                   "kind": "restart", "policy": request.policy.model_dump(mode="json")}
    assert out["policy"]["step_deadline_seconds"] == 400
