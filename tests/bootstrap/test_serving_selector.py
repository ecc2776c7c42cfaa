"""The hardened Service's serving label joins its selector only once every pod it would select carries the label
(lambdas/domain/bootstrap.py, ``serving_selector_now``): Services are applied before Deployments, so pods born
before the label would otherwise leave the load balancer until the Deployment has rolled."""

from __future__ import annotations

import copy

from lambdas.domain.bootstrap import serving_selector_now
from lambdas.domain.ports import SERVING_LABEL, Pod

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"selector": {"app": "web", SERVING_LABEL: "true"}, "ports": [{"port": 80}]}}


def a_pod(name: str, serving: str | None, *, terminating: bool = False) -> Pod:
    labels = {"app": "web", **({SERVING_LABEL: serving} if serving is not None else {})}
    return Pod(namespace="shop", name=name, uid=name, ip="10.0.0.1", labels=labels, phase="Running",
               readiness_gates=(), conditions=(), terminating=terminating, restart_count=0, created_at=0.0)


class Kube:
    def __init__(self, pods: list[Pod]) -> None:
        self.pods, self.selectors = pods, []

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        self.selectors.append(dict(selector))
        return [p for p in self.pods if all(p.labels.get(k) == v for k, v in selector.items())]


def test_pods_born_before_the_label_keep_it_out_of_the_selector_for_now():
    kube = Kube([a_pod("web-b", None), a_pod("web-a", None), a_pod("web-c", "true")])
    service, waiting = serving_selector_now(kube, "shop", SERVICE)  # type: ignore[arg-type]
    # Then the Service is applied selecting what it selected before, and the pods without the label are named
    assert service["spec"]["selector"] == {"app": "web"} and waiting == ["web-a", "web-b"]
    assert kube.selectors == [{"app": "web"}]
    assert SERVICE["spec"]["selector"][SERVING_LABEL] == "true"  # the hardened manifest itself is unchanged


def test_once_every_pod_carries_it_or_there_is_none_the_selector_has_it():
    for pods in ([], [a_pod("web-a", "true"), a_pod("web-b", "false"), a_pod("web-old", None, terminating=True)]):
        # Given no pod yet, or pods that carry the label (one taken out of service by a rollout: "false"), and a
        # terminating one without it
        service, waiting = serving_selector_now(Kube(pods), "shop", copy.deepcopy(SERVICE))  # type: ignore[arg-type]
        assert service == SERVICE and waiting == []


def test_a_service_without_the_serving_label_is_applied_as_it_is():
    plain = copy.deepcopy(SERVICE)
    plain["spec"]["selector"].pop(SERVING_LABEL)
    kube = Kube([a_pod("web-a", None)])
    assert serving_selector_now(kube, "shop", plain) == (plain, []) and kube.selectors == []  # type: ignore[arg-type]
