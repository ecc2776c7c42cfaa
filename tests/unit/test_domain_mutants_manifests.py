"""What the bootstrap says about manifests it cannot apply safely, sentence for sentence.

Given the example app's three manifests with one thing wrong (a missing spec, a bad count, a selector made of
expressions, labels that do not match, a strategy albgate cannot roll, a Service that selects no pod, an Ingress
that routes elsewhere), when they are validated, then every problem is named by the field it is in, with what
was found and what to write instead, before anything is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lambdas.domain.manifests import validate
from tests.bootstrap.conftest import deployment, ingress, service


def spec(**change: Any) -> Callable[[dict], None]:
    def edit(manifests: dict) -> None:
        manifests["deployment"]["spec"].update(change)
    return edit


def pod_spec(**change: Any) -> Callable[[dict], None]:
    def edit(manifests: dict) -> None:
        manifests["deployment"]["spec"]["template"]["spec"].update(change)
    return edit


def set_path(kind: str, path: str, value: Any) -> Callable[[dict], None]:
    def edit(manifests: dict) -> None:
        node = manifests[kind]
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return edit


CASES = [
    ("no-spec", set_path("deployment", "spec", None), ["deployment.spec: required (selector, template)"]),
    ("replicas-true", spec(replicas=True), ["deployment.spec.replicas: True is not a whole number >= 0"]),
    ("replicas-negative", spec(replicas=-1), ["deployment.spec.replicas: -1 is not a whole number >= 0"]),
    ("match-expressions-only",
     spec(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
     ["deployment.spec.selector.matchLabels: required (a Deployment's selector must name the pod labels); albgate "
      "does not support selectors made of matchExpressions alone"]),
    ("no-template", set_path("deployment", "spec.template", ...),
     ["deployment.spec.template: required (metadata.labels and spec.containers)"]),
    ("labels-do-not-match", set_path("deployment", "spec.template.metadata.labels", {"app": "other"}),
     ["deployment.spec.template.metadata.labels: {'app': 'other'} do not match spec.selector.matchLabels "
      "{'app': 'web'}; the API server refuses such a Deployment",
      "service.spec.selector: {'app': 'web'} does not select the Deployment's pod labels {'app': 'other'}; the ALB "
      "would have no targets"]),
    ("strategy-not-a-mapping", spec(strategy="fast"),
     ["deployment.spec.strategy: must be a mapping (type, rollingUpdate)"]),
    ("strategy-type", spec(strategy={"type": "BlueGreen"}),
     ["deployment.spec.strategy.type: 'BlueGreen'; use RollingUpdate or Recreate"]),
    ("surge-and-unavailable", spec(strategy={"rollingUpdate": {"maxSurge": "lots", "maxUnavailable": -2}}),
     ["deployment.spec.strategy.rollingUpdate.maxSurge: 'lots' is not a pod count or a percentage like '25%'",
      "deployment.spec.strategy.rollingUpdate.maxUnavailable: -2 is not a pod count or a percentage like '25%'"]),
    ("no-pod-spec", set_path("deployment", "spec.template.spec", None),
     ["deployment.spec.template.spec: required (containers)"]),
    ("grace-negative", pod_spec(terminationGracePeriodSeconds=-5),
     ["deployment.spec.template.spec.terminationGracePeriodSeconds: -5 is not a whole number >= 0"]),
    ("service-without-selector", set_path("service", "spec.selector", {}),
     ["service.spec.selector: required; it must select the Deployment's pods (their template labels)"]),
    ("service-without-ports", set_path("service", "spec.ports", []),
     ["service.spec.ports: required, at least one port",
      "ingress.spec: the backend port 80 of Service 'web' is not one of its ports []"]),
    ("service-selects-other-pods", set_path("service", "spec.selector", {"app": "api"}),
     ["service.spec.selector: {'app': 'api'} does not select the Deployment's pod labels {'app': 'web'}; the ALB "
      "would have no targets"]),
    ("ingress-routes-elsewhere", lambda m: m.update(ingress=ingress(backend="api")),
     ["ingress.spec: no backend names Service 'web' (backends: ['api']); route at least one path (or the "
      "defaultBackend) to it"]),
    ("ingress-other-port", lambda m: m.update(ingress=ingress(port=8080)),
     ["ingress.spec: the backend port 8080 of Service 'web' is not one of its ports [80]"]),
    ("ingress-without-rules", set_path("ingress", "spec.rules", []),
     ["ingress.spec: no backend names Service 'web' (backends: none); route at least one path (or the "
      "defaultBackend) to it"]),
]


@pytest.mark.parametrize("edit,problems", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_unsafe_manifest_is_named_with_its_field_and_fix(edit, problems):
    # Given the example app's manifests with one thing wrong
    manifests = {"deployment": deployment(), "service": service(), "ingress": ingress()}
    edit(manifests)
    # When they are validated / Then exactly these problems are named
    assert validate(manifests["deployment"], manifests["service"], manifests["ingress"], namespace="shop",
                    container="web") == problems


def test_the_example_manifests_have_no_problem():
    assert validate(deployment(), service(), ingress(), namespace="shop", container="web") == []
