"""The scenario's app as the manifests albgate's bootstrap would be given, and back.

Job: ``scenario_manifests`` renders a scenario's Deployment, Service and Ingress as Kubernetes manifests;
``bootstrap_hardened`` passes them through the product's own hardening (``lambdas.domain.manifests.harden``, the
function the bootstrap runs) and writes what it changed back into the scenario. So the simulated hardened app is
exactly what the bootstrap would apply, by construction: there is no second copy of the rules.

Invariant: only what the simulation models travels each way: one container (its image, port and preStop
sleep), the grace period, maxSurge/maxUnavailable, the pod template's labels beyond the selector and the Service's
selector (the serving label), and the Ingress's annotations (target type, health check,
target-group attributes; the app's own Ingress, not ``extra_ingresses``, which the bootstrap does not manage), and
the namespace labelled for the controller's gate as the bootstrap leaves it, and the Load Balancer Controller as
the bootstrap installs it (``installed_controller``: its webhook's failure policy and its back-off cap, read from the
Helm values the bootstrap writes) where the scenario runs the version albgate installs. The
simulated Service carries no annotations, so hardening writes nothing there. An
app whose Ingress asks for instance targets is hardened as the bootstrap hardens an app marked not gated (its
target type kept); the bootstrap would refuse it as a gated app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lambdas.domain.bootstrap import CONTROLLER_VERSION, ControllerSettings, helm_values
from lambdas.domain.manifests import HardeningPolicy, Hardened, harden, pre_stop_sleep_seconds
from lambdas.domain.lbc_annotations import TARGET_TYPE
from lambdas.domain.validators import go_duration_seconds

if TYPE_CHECKING:
    from albgate.sim.scenario import IngressSpec, Scenario


def scenario_manifests(
    scenario: "Scenario", ingress_spec: "IngressSpec | None" = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Deployment, Service, Ingress) manifests of the scenario's app, with its first Ingress or ``ingress_spec``."""
    app, svc, ing = scenario.app, scenario.service, ingress_spec or scenario.ingress
    container: dict[str, Any] = {"name": app.container, "image": app.image, "ports": [{"containerPort": app.port}]}
    if app.pre_stop_sleep_seconds is not None:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": app.pre_stop_sleep_seconds}}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app.deployment},
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": dict(app.labels)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": app.max_surge, "maxUnavailable": app.max_unavailable}},
            "template": {"metadata": {"labels": app.template_labels},
                         "spec": {"terminationGracePeriodSeconds": app.termination_grace_period_seconds,
                                  "containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": svc.name},
        "spec": {"selector": dict(svc.selector or app.labels), "ports": [{"port": svc.port, "targetPort": app.port}]},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": ing.name, "annotations": dict(ing.annotations)},
        "spec": {"ingressClassName": ing.ingress_class, "rules": [{"http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": svc.name, "port": {"number": svc.port}}}}]}}]},
    }  # fmt: skip
    return deployment, service, ingress


def hardened_manifests(scenario: "Scenario", ingress_spec: "IngressSpec | None" = None) -> Hardened:
    """The scenario's manifests as the bootstrap hardens them (native preStop sleep: clusters >= 1.30), with its
    first Ingress or ``ingress_spec``."""
    deployment, service, ingress = scenario_manifests(scenario, ingress_spec)
    gated = ingress["metadata"]["annotations"].get(TARGET_TYPE) != "instance"
    policy = HardeningPolicy.from_rollout_policy(scenario.rollout.policy, native_sleep=True, gated=gated)
    return harden(deployment, service, ingress, policy, namespace=scenario.namespace.name,
                  container=scenario.app.container)


def installed_controller(scenario: "Scenario") -> dict[str, Any]:
    """The scenario's controller settings as albgate's bootstrap installs the controller with its defaults: the
    Helm values it writes (``helm_values``), the pod webhook's ``failurePolicy`` and the TargetGroupBinding
    back-off cap ``targetgroupbindingMaxExponentialBackoffDelay``, in the simulation's terms. Empty where the
    scenario names a controller version other than the one albgate installs: that controller is the user's own
    (bootstrap input ``controller.install: false``), with the settings the scenario gives it."""
    if scenario.controller.version != CONTROLLER_VERSION:
        return {}
    values = helm_values(scenario.cluster.name, ControllerSettings())
    return {
        "webhook_failure_policy": values["podMutatorWebhookConfig"]["failurePolicy"],
        "max_backoff_seconds": go_duration_seconds(values["targetgroupbindingMaxExponentialBackoffDelay"]),
    }


def bootstrap_hardened(scenario: "Scenario", *, label_namespace: bool = True,
                       controller: bool = True) -> "Scenario":
    """The scenario with its app as albgate's bootstrap leaves it: hardened (``hardened_manifests``) in a namespace
    labelled for the controller's readiness gate (``label_namespace`` False: the namespace as the scenario has it,
    for a tool that does not rely on that gate), behind the controller the bootstrap installed
    (``installed_controller``; ``controller`` False: the controller as the scenario has it, for a tool whose users
    install their own)."""
    hardened = hardened_manifests(scenario)
    spec = hardened.deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == scenario.app.container]
    rolling = spec["strategy"]["rollingUpdate"]
    # The bootstrap labels every app namespace for the controller's readiness gate and re-creates the pods born
    # before the label through a gated restart, so its app ends with every pod gated: labelled before the pods.
    # (Without the controller's gate, nothing makes the controller reconcile when a pod held by albgate's gate
    # turns ContainersReady, and albgate registers it itself after a grace: docs/facts.md, "Load Balancer
    # Controller: requeue and back-off by version"; tests/workflow/test_unlabelled_namespace.py.)
    labelled = {"inject_label": "before_pods"} if label_namespace and scenario.namespace.unlabelled else {}
    selector = spec["selector"]["matchLabels"]
    pod_labels = {k: v for k, v in spec["template"]["metadata"]["labels"].items() if k not in selector}
    return scenario.with_changes(
        namespace=labelled,
        app={"pre_stop_sleep_seconds": pre_stop_sleep_seconds(container),
             "termination_grace_period_seconds": pod["terminationGracePeriodSeconds"],
             "max_surge": rolling["maxSurge"], "max_unavailable": rolling["maxUnavailable"],
             "pod_labels": pod_labels},
        service={"selector": dict(hardened.service["spec"]["selector"])},
        # The bootstrap hardens the app's own Ingress (an application names one); extra Ingresses stay as written
        ingress={"annotations": hardened.ingress["metadata"]["annotations"]},
        controller=installed_controller(scenario) if controller else {},
    )


def without_serving_label(scenario: "Scenario") -> "Scenario":
    """The scenario with its Service not selecting albgate's serving label and its pods not carrying it: an app
    hardened before the label, or whose Service someone else owns. albgate then releases a step's new pods without
    taking old ones out of service first (docs/rollout.md, "Out of service before release"), and its drains prove or
    deregister the old targets after Kubernetes deleted their pods."""
    from lambdas.domain.ports import SERVING_LABEL

    selector = {k: v for k, v in (scenario.service.selector or scenario.app.labels).items() if k != SERVING_LABEL}
    pod_labels = {k: v for k, v in scenario.app.pod_labels.items() if k != SERVING_LABEL}
    return scenario.with_changes(service={"selector": selector}, app={"pod_labels": pod_labels})
