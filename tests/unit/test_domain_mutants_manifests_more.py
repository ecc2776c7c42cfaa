"""Manifest hardening, field by field: what validation names, what hardening changes, and why.

Given an app's Deployment, Service and Ingress with one thing unusual (a name that is not a Kubernetes name, a
port given by name, a preStop written as a shell script, a percentage maxUnavailable, a Service annotation that
overrides the Ingress's), when they are validated and hardened, then every problem is named with its field path
and fix, and every change comes back with the exact value before and after and the reason a person reads.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.ports import IN_SERVICE, SERVING_LABEL
from lambdas.domain.manifests import (
    Change, Hardened, HardeningPolicy, harden, ingress_backends, pre_stop_sleep_seconds, target_type, validate,
)

NS = "shop"
PREFIX = "alb.ingress.kubernetes.io/"
TARGET_TYPE = PREFIX + "target-type"
INTERVAL = PREFIX + "healthcheck-interval-seconds"
TIMEOUT = PREFIX + "healthcheck-timeout-seconds"
HEALTHY = PREFIX + "healthy-threshold-count"
ATTRIBUTES = PREFIX + "target-group-attributes"
IP = {TARGET_TYPE: "ip"}
HARDENED_CHECK = {INTERVAL: "5", TIMEOUT: "4"}
SERVING = {SERVING_LABEL: IN_SERVICE}

IP_REASON = ("the controller's default is instance; only IP targets map one pod to one target, which the readiness "
             "gates need")
UNAVAILABLE_REASON = "with maxUnavailable 0 the Deployment controller removes an old pod only for a new available one"
INTERVAL_REASON = "a new target needs one passing check to turn healthy; checking every 5 s shortens every gated step"
TIMEOUT_REASON = "lowered to 4 s: the ALB requires the check timeout to be shorter than the interval"


def a_deployment(name: str = "web", *, containers: list[Any] | None = None, strategy: Any = None,
                 **spec: Any) -> dict:
    pod: dict[str, Any] = {"containers": containers if containers is not None
                           else [{"name": "web", "image": "registry.example/web:1",
                                  "lifecycle": {"preStop": {"sleep": {"seconds": 30}}}}],
                           "terminationGracePeriodSeconds": 60}
    pod.update(spec.pop("pod", {}))
    # the pods already carry the serving label, and the Service selects it (the hardening's own change for it is
    # tested on its own: test_the_serving_label_*)
    body: dict[str, Any] = {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web", **SERVING}}, "spec": pod}}
    body["strategy"] = strategy if strategy is not None else {"rollingUpdate": {"maxUnavailable": 0}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": body}


def a_service(name: str = "web", *, ports: list[Any] | None = None, annotations: dict | None = None,
              **spec: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if annotations is not None:
        meta["annotations"] = annotations
    body = {"selector": {"app": "web", **SERVING}, "ports": ports if ports is not None else [{"port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


def an_ingress(name: str = "web", *, backend: Any = None, annotations: dict | None = None,
               spec: Any = ...) -> dict:
    meta: dict[str, Any] = {"name": name}
    if annotations is not None:
        meta["annotations"] = annotations
    if spec is ...:
        backend = backend if backend is not None else {"service": {"name": "web", "port": {"number": 80}}}
        spec = {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def safe_ingress(**kwargs: Any) -> dict:
    """An Ingress that already asks for IP targets and the hardened health check."""
    kwargs.setdefault("annotations", {**IP, **HARDENED_CHECK})
    return an_ingress(**kwargs)


def problems_of(deployment: Any = None, service: Any = None, ingress: Any = None, **kw: Any) -> list[str]:
    return validate(a_deployment() if deployment is None else deployment,
                    a_service() if service is None else service,
                    safe_ingress() if ingress is None else ingress, namespace=NS, **kw)


def hardened(deployment: dict | None = None, service: dict | None = None, ingress: dict | None = None,
             **policy: Any) -> Hardened:
    return harden(a_deployment() if deployment is None else deployment,
                  a_service() if service is None else service,
                  safe_ingress() if ingress is None else ingress,
                  HardeningPolicy(**policy), namespace=NS)


def rows(changes: list[Change]) -> list[tuple]:
    return [(c.object, c.field, c.before, c.after, c.reason) for c in changes]


def changes_of(result: Hardened) -> list[tuple]:
    return rows(result.changes)


# ---------------------------------------------------------------------------------------------------------
# pre_stop_sleep_seconds
# ---------------------------------------------------------------------------------------------------------
def exec_pre_stop(*command: str) -> dict:
    return {"name": "web", "lifecycle": {"preStop": {"exec": {"command": list(command)}}}}


def test_a_native_sleep_without_seconds_sleeps_zero_seconds():
    assert pre_stop_sleep_seconds({"lifecycle": {"preStop": {"sleep": {}}}}) == 0


def test_a_sleep_binary_named_by_its_path_is_read_as_a_sleep():
    assert pre_stop_sleep_seconds(exec_pre_stop("/bin/sleep", "20")) == 20
    assert pre_stop_sleep_seconds(exec_pre_stop("/usr/bin/sleep", "7")) == 7


def test_a_shell_named_without_a_path_runs_its_sleep_script():
    assert pre_stop_sleep_seconds(exec_pre_stop("sh", "-c", "sleep 5")) == 5


def test_a_shell_script_that_does_not_start_with_a_sleep_is_not_a_drain_sleep():
    assert pre_stop_sleep_seconds(exec_pre_stop("sh", "-c", "nginx -s quit")) is None


# ---------------------------------------------------------------------------------------------------------
# ingress_backends
# ---------------------------------------------------------------------------------------------------------
def test_a_backend_port_given_by_name_is_read_by_name():
    ing = an_ingress(backend={"service": {"name": "web", "port": {"name": "http"}}})
    assert ingress_backends(ing) == [("web", "http")]


def test_a_backend_without_a_port_is_read_with_an_empty_port():
    ing = an_ingress(backend={"service": {"name": "web"}})
    assert ingress_backends(ing) == [("web", "")]


def test_a_backend_that_is_not_a_mapping_names_no_service():
    assert ingress_backends(an_ingress(backend="web")) == []


def test_the_default_backend_comes_before_the_rules():
    ing = an_ingress()
    ing["spec"]["defaultBackend"] = {"service": {"name": "fallback", "port": {"number": 8080}}}
    assert ingress_backends(ing) == [("fallback", 8080), ("web", 80)]


def test_an_ingress_with_only_a_default_backend_has_that_one_backend():
    ing = an_ingress(spec={"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}})
    assert ingress_backends(ing) == [("web", 80)]


# ---------------------------------------------------------------------------------------------------------
# target_type
# ---------------------------------------------------------------------------------------------------------
def test_without_an_annotation_the_target_type_is_the_controllers_default_instance():
    assert target_type(an_ingress(annotations={}), a_service()) == ("instance", "default")


# ---------------------------------------------------------------------------------------------------------
# Change, Hardened, HardeningPolicy
# ---------------------------------------------------------------------------------------------------------
def test_a_change_as_a_dict_has_its_five_fields():
    change = Change("Deployment/web", "spec.replicas", 1, 2, "more pods")
    assert change.as_dict() == {"object": "Deployment/web", "field": "spec.replicas", "before": 1, "after": 2,
                                "reason": "more pods"}


def test_a_hardened_result_as_a_dict_names_the_three_manifests_the_changes_and_the_findings():
    change = Change("Ingress/web", "metadata.name", "a", "b", "why")
    result = Hardened(deployment={"d": 1}, service={"s": 1}, ingress={"i": 1}, changes=[change], findings=[change])
    as_dict = change.as_dict()
    assert result.as_dict() == {"deployment": {"d": 1}, "service": {"s": 1}, "ingress": {"i": 1},
                                "changes": [as_dict], "findings": [as_dict]}


def test_a_hardening_policy_takes_the_pre_stop_and_the_longest_request_from_the_rollout_policy():
    rollout = SimpleNamespace(pre_stop_seconds=45, max_request_seconds=90)
    policy = HardeningPolicy.from_rollout_policy(rollout, native_sleep=False, gated=False)
    assert (policy.pre_stop_seconds, policy.max_request_seconds, policy.native_sleep, policy.gated) == (
        45, 90, False, False)


# ---------------------------------------------------------------------------------------------------------
# validate: the three documents
# ---------------------------------------------------------------------------------------------------------
def test_safe_manifests_have_no_problem():
    assert problems_of() == []


def test_a_manifest_that_is_not_a_mapping_is_named_with_the_type_found():
    assert problems_of(deployment=[], service="web") == [
        "deployment: expected a Deployment manifest (a mapping), got list",
        "service: expected a Service manifest (a mapping), got str",
    ]


def test_a_wrong_api_version_and_kind_are_quoted_with_what_to_write():
    svc = a_service()
    svc.update(apiVersion="apps/v1", kind="Deployment")
    assert problems_of(service=svc) == [
        "service: apiVersion/kind is 'apps/v1'/'Deployment'; write apiVersion: v1 and kind: Service"]


def test_each_manifest_without_metadata_is_named():
    dep, svc = a_deployment(), a_service()
    del dep["metadata"], svc["metadata"]
    assert problems_of(deployment=dep, service=svc) == [
        "deployment.metadata: required; give at least metadata.name",
        "service.metadata: required; give at least metadata.name",
    ]


def test_a_deployment_name_may_start_with_a_digit_and_hold_dots():
    assert problems_of(deployment=a_deployment("1web.v2")) == []


def test_a_deployment_name_with_capitals_is_refused_with_the_subdomain_characters():
    assert problems_of(deployment=a_deployment("Web")) == [
        "deployment.metadata.name: 'Web' is not a valid Deployment name; use lower-case letters, digits, '-' and '.'"]


def test_a_service_name_starting_with_a_digit_is_refused_as_a_dns_1035_label():
    assert problems_of(service=a_service("1web")) == [
        "service.metadata.name: '1web' is not a valid Service name; use a DNS-1035 label (lower-case letters, "
        "digits, '-', starting with a letter, at most 63)"]


def test_a_namespace_other_than_the_applications_is_named_with_both():
    dep = a_deployment()
    dep["metadata"]["namespace"] = "other"
    assert problems_of(deployment=dep) == [
        "deployment.metadata.namespace: 'other' differs from the application's namespace 'shop'; remove it or make "
        "them equal"]


def test_labels_and_annotations_must_map_names_to_strings():
    dep, svc = a_deployment(), a_service()
    dep["metadata"]["labels"] = {"tier": 1}
    svc["metadata"]["annotations"] = ["a"]
    assert problems_of(deployment=dep, service=svc) == [
        "deployment.metadata.labels: must map names to strings (quote numbers: \"10\")",
        "service.metadata.annotations: must map names to strings (quote numbers: \"10\")",
    ]


def test_string_labels_and_annotations_are_accepted():
    dep = a_deployment()
    dep["metadata"].update(labels={"tier": "front"}, annotations={"owner": "team"})
    assert problems_of(deployment=dep) == []


# ---------------------------------------------------------------------------------------------------------
# validate: the Deployment
# ---------------------------------------------------------------------------------------------------------
def test_zero_replicas_is_a_valid_count():
    assert problems_of(deployment=a_deployment(replicas=0)) == []


def test_a_selector_that_is_not_a_mapping_asks_for_match_labels():
    assert problems_of(deployment=a_deployment(selector="app=web")) == [
        "deployment.spec.selector.matchLabels: required (a Deployment's selector must name the pod labels); "
        "albgate does not support selectors made of matchExpressions alone"]


def test_empty_match_labels_are_refused():
    assert problems_of(deployment=a_deployment(selector={"matchLabels": {}})) == [
        "deployment.spec.selector.matchLabels: required (a Deployment's selector must name the pod labels); "
        "albgate does not support selectors made of matchExpressions alone"]


def test_a_grace_period_of_zero_seconds_is_valid():
    assert problems_of(deployment=a_deployment(pod={"terminationGracePeriodSeconds": 0})) == []


@pytest.mark.parametrize("grace", ["30", True])
def test_a_grace_period_that_is_not_a_whole_number_is_refused(grace):
    assert problems_of(deployment=a_deployment(pod={"terminationGracePeriodSeconds": grace})) == [
        f"deployment.spec.template.spec.terminationGracePeriodSeconds: {grace!r} is not a whole number >= 0"]


def test_a_pod_without_containers_is_refused():
    assert problems_of(deployment=a_deployment(containers=[])) == [
        "deployment.spec.template.spec.containers: required, at least one container"]


def test_every_bad_container_is_named_by_its_index():
    containers = ["web", {"name": "Web", "image": "x"}, {"name": "side", "image": "x"},
                  {"name": "side", "image": "", "lifecycle": "stop"}]
    assert problems_of(deployment=a_deployment(containers=containers)) == [
        "deployment.spec.template.spec.containers[0]: must be a mapping with name and image",
        "deployment.spec.template.spec.containers[1].name: 'Web' is not a container name (lower-case letters, "
        "digits, '-')",
        "deployment.spec.template.spec.containers[3].name: 'side' is used twice; container names must be unique",
        "deployment.spec.template.spec.containers[3].image: required; name the image, preferably by digest",
        "deployment.spec.template.spec.containers[3].lifecycle: must be a mapping (preStop, postStart)",
    ]


# ---------------------------------------------------------------------------------------------------------
# validate: the Service
# ---------------------------------------------------------------------------------------------------------
def test_a_service_without_a_spec_is_refused():
    svc = a_service()
    del svc["spec"]
    assert problems_of(service=svc) == [
        "service.spec: required (selector, ports)",
        "ingress.spec: the backend port 80 of Service 'web' is not one of its ports []",
    ]


def test_an_external_name_service_is_refused():
    assert problems_of(service=a_service(type="ExternalName")) == [
        "service.spec.type: ExternalName has no pods behind it; an ALB can only target pods of a selector"]


def test_a_load_balancer_service_is_accepted():
    assert problems_of(service=a_service(type="LoadBalancer")) == []


@pytest.mark.parametrize("port,shown", [("80", "'80'"), (True, "True"), (0, "0"), (65536, "65536")])
def test_a_service_port_outside_1_to_65535_is_refused(port, shown):
    assert problems_of(service=a_service(ports=[{"port": 80}, {"port": port}])) == [
        f"service.spec.ports[1].port: {shown} is not a port number 1-65535"]


@pytest.mark.parametrize("port", [1, 65535])
def test_the_first_and_last_port_numbers_are_valid(port):
    ing = safe_ingress(backend={"service": {"name": "web", "port": {"number": port}}})
    assert problems_of(service=a_service(ports=[{"port": port}]), ingress=ing) == []


def test_a_service_port_that_is_not_a_mapping_is_named_with_no_number():
    assert problems_of(service=a_service(ports=[{"port": 80}, "443"])) == [
        "service.spec.ports[1].port: None is not a port number 1-65535"]


def test_a_malformed_health_check_annotation_on_the_service_is_named_in_seconds():
    svc = a_service(annotations={INTERVAL: "5s"})
    assert problems_of(service=svc) == [
        f"service.metadata.annotations[{INTERVAL}]: '5s' is not a whole number of seconds"]


def test_a_malformed_threshold_annotation_is_named_in_checks():
    svc = a_service(annotations={HEALTHY: "two"})
    assert problems_of(service=svc) == [
        f"service.metadata.annotations[{HEALTHY}]: 'two' is not a whole number of checks"]


# ---------------------------------------------------------------------------------------------------------
# validate: the Ingress
# ---------------------------------------------------------------------------------------------------------
def test_an_ingress_without_a_spec_is_refused():
    assert problems_of(ingress=safe_ingress(spec=None)) == [
        "ingress.spec: required (rules or defaultBackend pointing at the Service)"]


def test_a_backend_may_name_the_service_port_by_its_name():
    svc = a_service(ports=[{"name": "http", "port": 80}])
    ing = safe_ingress(backend={"service": {"name": "web", "port": {"name": "http"}}})
    assert problems_of(service=svc, ingress=ing) == []


def test_a_backend_port_that_the_service_lacks_is_named_with_the_service_port_names():
    svc = a_service(ports=[{"name": "http", "port": 80}])
    ing = safe_ingress(backend={"service": {"name": "web", "port": {"number": 8080}}})
    assert problems_of(service=svc, ingress=ing) == [
        "ingress.spec: the backend port 8080 of Service 'web' is not one of its ports ['http']"]


def test_a_malformed_timeout_annotation_on_the_ingress_is_named_on_the_ingress():
    ing = safe_ingress(annotations={**IP, TIMEOUT: "four"})
    assert problems_of(ingress=ing) == [
        f"ingress.metadata.annotations[{TIMEOUT}]: 'four' is not a whole number of seconds"]


# ---------------------------------------------------------------------------------------------------------
# harden: refusals
# ---------------------------------------------------------------------------------------------------------
def test_invalid_manifests_are_refused_with_every_problem_joined():
    dep = a_deployment(replicas=-1, pod={"terminationGracePeriodSeconds": -1})
    with pytest.raises(InvalidInputError) as refused:
        hardened(deployment=dep)
    assert str(refused.value) == (
        "manifests are invalid: deployment.spec.replicas: -1 is not a whole number >= 0; "
        "deployment.spec.template.spec.terminationGracePeriodSeconds: -1 is not a whole number >= 0")


def instance_refusal(where: str, obj: str) -> str:
    return (f"{where} {obj} asks for {TARGET_TYPE}: instance. A gated app needs IP targets: with instance targets "
            "the ALB sends traffic to node ports, so no target is one pod and no readiness gate (the controller's "
            "or albgate's) can hold an old pod until its replacement is healthy (docs/deploy/"
            f"pod_readiness_gate.md). Set {TARGET_TYPE}: ip, or mark the app as not gated")


def test_instance_targets_asked_for_on_the_service_are_refused_naming_the_service():
    svc = a_service(annotations={TARGET_TYPE: "instance"})
    with pytest.raises(UnsafeConfigurationError) as refused:
        hardened(service=svc, ingress=safe_ingress(name="web-ing"))
    assert str(refused.value) == instance_refusal("Service", "Service/web")


def test_instance_targets_asked_for_on_the_ingress_are_refused_naming_the_ingress():
    ing = safe_ingress(name="web-ing", annotations={TARGET_TYPE: "instance"})
    with pytest.raises(UnsafeConfigurationError) as refused:
        hardened(ingress=ing)
    assert str(refused.value) == instance_refusal("Ingress", "Ingress/web-ing")


# ---------------------------------------------------------------------------------------------------------
# harden: namespace, target type, strategy
# ---------------------------------------------------------------------------------------------------------
def test_safe_manifests_are_placed_in_the_namespace_with_the_strategy_type_spelled_out_and_no_change():
    dep, svc, ing = a_deployment(), a_service(), safe_ingress()
    result = hardened(dep, svc, ing)
    for obj in (dep, svc, ing):
        obj["metadata"]["namespace"] = NS
    dep["spec"]["strategy"]["type"] = "RollingUpdate"
    assert (result.deployment, result.service, result.ingress, result.changes) == (dep, svc, ing, [])


def test_an_ingress_without_a_target_type_is_given_ip_targets():
    result = hardened(ingress=an_ingress(annotations=dict(HARDENED_CHECK)))
    assert changes_of(result) == [("Ingress/web", f"metadata.annotations[{TARGET_TYPE}]", None, "ip", IP_REASON)]
    assert result.ingress["metadata"]["annotations"] == {**HARDENED_CHECK, **IP}


def test_a_recreate_strategy_becomes_a_rolling_update():
    result = hardened(deployment=a_deployment(strategy={"type": "Recreate"}))
    assert changes_of(result) == [
        ("Deployment/web", "spec.strategy.type", "Recreate", "RollingUpdate",
         "Recreate stops every old pod before any new one starts"),
        ("Deployment/web", "spec.strategy.rollingUpdate.maxUnavailable", "25%", 0, UNAVAILABLE_REASON),
    ]
    assert result.deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}


def test_a_deployment_without_a_strategy_gets_a_rolling_update_with_max_unavailable_0():
    dep = a_deployment()
    del dep["spec"]["strategy"]
    result = hardened(deployment=dep)
    assert changes_of(result) == [
        ("Deployment/web", "spec.strategy.rollingUpdate.maxUnavailable", "25%", 0, UNAVAILABLE_REASON)]
    assert result.deployment["spec"]["strategy"] == {"rollingUpdate": {"maxUnavailable": 0}, "type": "RollingUpdate"}


def test_an_explicit_max_unavailable_of_0_is_kept():
    result = hardened(deployment=a_deployment(replicas=4, strategy={"rollingUpdate": {"maxUnavailable": 0}}))
    assert result.changes == []


def test_a_max_unavailable_of_one_pod_is_recorded_as_it_was():
    result = hardened(deployment=a_deployment(strategy={"rollingUpdate": {"maxUnavailable": 1}}))
    assert changes_of(result) == [
        ("Deployment/web", "spec.strategy.rollingUpdate.maxUnavailable", 1, 0, UNAVAILABLE_REASON)]


def test_a_percentage_max_unavailable_counts_the_replicas():
    # 25 % of 4 pods is one pod: an old pod could go first
    result = hardened(deployment=a_deployment(replicas=4, strategy={"rollingUpdate": {"maxUnavailable": "25%"}}))
    assert changes_of(result) == [
        ("Deployment/web", "spec.strategy.rollingUpdate.maxUnavailable", "25%", 0, UNAVAILABLE_REASON)]


def test_without_replicas_a_percentage_max_unavailable_counts_one_replica():
    # 50 % of the default single replica rounds down to no pod: nothing to change
    dep = a_deployment(strategy={"rollingUpdate": {"maxUnavailable": "50%"}})
    del dep["spec"]["replicas"]
    assert hardened(deployment=dep).changes == []


def test_a_max_surge_of_0_becomes_one_pod():
    result = hardened(deployment=a_deployment(strategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}))
    assert changes_of(result) == [
        ("Deployment/web", "spec.strategy.rollingUpdate.maxSurge", 0, 1,
         "maxSurge 0 with maxUnavailable 0 is refused by the API server; one extra pod at a time")]
    assert result.deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_a_small_percentage_max_surge_rounds_up_to_one_pod_and_is_kept():
    result = hardened(deployment=a_deployment(strategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}}))
    assert result.changes == []


# ---------------------------------------------------------------------------------------------------------
# harden: preStop and grace period
# ---------------------------------------------------------------------------------------------------------
def pre_stop_reason(seconds: int, how: str) -> str:
    return (f"keep serving {seconds} s after deregistration starts, while the ALB still sends new requests "
            f"({how})")


def grace_reason(pre_stop: int, request: int) -> str:
    return (f"preStop ({pre_stop} s) runs inside the grace period; the requests taken just before it ends need up "
            f"to {request} s more")


def test_a_container_without_pre_stop_gets_the_native_sleep_and_the_default_grace_grows():
    dep = a_deployment(containers=[{"name": "web", "image": "x"}])
    del dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    result = hardened(deployment=dep)
    assert changes_of(result) == [
        ("Deployment/web", "spec.template.spec.containers[0](web).lifecycle.preStop", None,
         {"sleep": {"seconds": 30}}, pre_stop_reason(30, "the native sleep action")),
        ("Deployment/web", "spec.template.spec.terminationGracePeriodSeconds", 30, 60, grace_reason(30, 30)),
    ]


def test_a_short_sleep_becomes_an_exec_sleep_where_the_cluster_has_no_native_sleep():
    dep = a_deployment(containers=[exec_pre_stop("sleep", "5") | {"image": "x"}],
                       pod={"terminationGracePeriodSeconds": 20})
    result = hardened(deployment=dep, native_sleep=False)
    assert changes_of(result) == [
        ("Deployment/web", "spec.template.spec.containers[0](web).lifecycle.preStop", "sleep 5",
         {"exec": {"command": ["sleep", "30"]}}, pre_stop_reason(30, "exec sleep (the image needs a sleep binary)")),
        ("Deployment/web", "spec.template.spec.terminationGracePeriodSeconds", 20, 60, grace_reason(30, 30)),
    ]


def test_a_container_after_one_with_its_own_pre_stop_still_gets_a_drain():
    own = {"name": "web", "image": "x", "lifecycle": {"preStop": {"httpGet": {"path": "/quit", "port": 8080}}}}
    dep = a_deployment(containers=[own, {"name": "side", "image": "y"}])
    result = hardened(deployment=dep)
    assert changes_of(result) == [
        ("Deployment/web", "spec.template.spec.containers[1](side).lifecycle.preStop", None,
         {"sleep": {"seconds": 30}}, pre_stop_reason(30, "the native sleep action"))]
    assert result.deployment["spec"]["template"]["spec"]["containers"][0] == own


def test_a_zero_second_pre_stop_policy_needs_only_the_longest_request_as_grace():
    dep = a_deployment(containers=[{"name": "web", "image": "x"}], pod={"terminationGracePeriodSeconds": 10})
    result = hardened(deployment=dep, pre_stop_seconds=0, max_request_seconds=40)
    assert changes_of(result)[-1] == (
        "Deployment/web", "spec.template.spec.terminationGracePeriodSeconds", 10, 40, grace_reason(0, 40))


# ---------------------------------------------------------------------------------------------------------
# harden: target-group annotations
# ---------------------------------------------------------------------------------------------------------
def test_an_app_that_is_not_gated_and_has_no_ingress_annotations_gets_the_health_check_on_the_ingress():
    result = hardened(ingress=an_ingress(), gated=False)
    assert changes_of(result) == [
        ("Ingress/web", f"metadata.annotations[{INTERVAL}]", None, "5", INTERVAL_REASON),
        ("Ingress/web", f"metadata.annotations[{TIMEOUT}]", None, "4", TIMEOUT_REASON),
    ]
    assert result.ingress["metadata"]["annotations"] == HARDENED_CHECK


def test_an_interval_the_service_sets_is_lowered_on_the_service_naming_the_hidden_ingress_value():
    svc = a_service(annotations={INTERVAL: "15"})
    ing = safe_ingress(annotations={**IP, INTERVAL: "10", TIMEOUT: "4"})
    result = hardened(service=svc, ingress=ing)
    assert changes_of(result) == [
        ("Service/web", f"metadata.annotations[{INTERVAL}]", "15", "5",
         INTERVAL_REASON + "; changed on the Service because its annotation overrides the Ingress's ('10', ignored "
         "by the controller)")]


def test_an_interval_only_the_service_sets_is_lowered_on_the_service():
    svc = a_service(annotations={INTERVAL: "15"})
    ing = safe_ingress(annotations={**IP, TIMEOUT: "4"})
    result = hardened(service=svc, ingress=ing)
    assert changes_of(result) == [
        ("Service/web", f"metadata.annotations[{INTERVAL}]", "15", "5",
         INTERVAL_REASON + "; changed on the Service because its annotation overrides the Ingress's")]
    assert result.service["metadata"]["annotations"] == {INTERVAL: "5"}


def test_a_short_deregistration_delay_on_the_ingress_is_raised_to_the_longest_request():
    ing = safe_ingress(annotations={**IP, **HARDENED_CHECK, ATTRIBUTES: "deregistration_delay.timeout_seconds=10"})
    result = hardened(ingress=ing, max_request_seconds=45)
    assert changes_of(result)[-1] == (
        "Ingress/web", f"metadata.annotations[{ATTRIBUTES}]", "deregistration_delay.timeout_seconds=10",
        "deregistration_delay.timeout_seconds=45",
        "a deregistration delay of 10 s drops requests still running when it ends; the longest takes 45 s")


# ---------------------------------------------------------------------------------------------------------
# harden: findings only
# ---------------------------------------------------------------------------------------------------------
def test_without_hardening_the_manifests_come_back_unchanged_in_the_namespace_with_the_findings():
    dep, svc, ing = a_deployment(), a_service(), an_ingress(annotations={})
    before = copy.deepcopy((dep, svc, ing))
    result = hardened(dep, svc, ing, harden=False)
    assert (dep, svc, ing) == before
    expected = copy.deepcopy(before)
    for obj in expected:
        obj["metadata"]["namespace"] = NS
    assert (result.deployment, result.service, result.ingress) == expected
    assert result.changes == []
    assert rows(result.findings) == [
        ("Ingress/web", f"metadata.annotations[{TARGET_TYPE}]", None, "ip", IP_REASON),
        ("Ingress/web", f"metadata.annotations[{INTERVAL}]", None, "5", INTERVAL_REASON),
        ("Ingress/web", f"metadata.annotations[{TIMEOUT}]", None, "4", TIMEOUT_REASON),
    ]


# --- the serving label -------------------------------------------------------------------------------------------
def _without_serving(deployment: dict, service: dict) -> tuple[dict, dict]:
    deployment["spec"]["template"]["metadata"]["labels"].pop(SERVING_LABEL)
    service["spec"]["selector"].pop(SERVING_LABEL)
    return deployment, service


def test_the_serving_label_joins_the_pod_template_and_the_services_selector_not_the_deployments():
    dep, svc = _without_serving(a_deployment(), a_service())
    result = hardened(dep, svc, safe_ingress())
    assert result.deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", SERVING_LABEL: "true"}
    assert result.deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert result.service["spec"]["selector"] == {"app": "web", SERVING_LABEL: "true"}
    assert [(c.object, c.field, c.before, c.after) for c in result.changes] == [
        ("Deployment/web", f"spec.template.metadata.labels[{SERVING_LABEL}]", None, "true"),
        ("Service/web", f"spec.selector[{SERVING_LABEL}]", None, "true"),
    ]
    assert "before Kubernetes deletes them" in result.changes[0].reason


def test_a_serving_label_set_otherwise_is_set_to_true_and_said_so():
    dep, svc = a_deployment(), a_service()
    dep["spec"]["template"]["metadata"]["labels"][SERVING_LABEL] = "false"
    svc["spec"]["selector"].pop(SERVING_LABEL)
    result = hardened(dep, svc, safe_ingress())
    assert [(c.field, c.before, c.after) for c in result.changes] == [
        (f"spec.template.metadata.labels[{SERVING_LABEL}]", "false", "true"),
        (f"spec.selector[{SERVING_LABEL}]", None, "true")]


def test_an_app_that_is_not_gated_gets_no_serving_label():
    dep, svc = _without_serving(a_deployment(), a_service())
    result = hardened(dep, svc, safe_ingress(annotations={TARGET_TYPE: "instance", **HARDENED_CHECK}), gated=False)
    assert SERVING_LABEL not in result.deployment["spec"]["template"]["metadata"]["labels"]
    assert SERVING_LABEL not in result.service["spec"]["selector"] and result.changes == []


@pytest.mark.parametrize("selector", [
    {"matchLabels": {"app": "web", SERVING_LABEL: "true"}},
    {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": SERVING_LABEL, "operator": "Exists"}]},
], ids=["match-labels", "match-expressions"])
def test_a_deployment_selector_that_names_the_serving_label_is_refused(selector):
    problems = problems_of(deployment=a_deployment(selector=selector))
    assert problems == [
        f"deployment.spec.selector: names {SERVING_LABEL}, the label albgate changes on a pod to take it out of its "
        "Service's endpoints: a pod whose label changed would leave its ReplicaSet. Remove it from the selector (the "
        "Service selects it)"]
