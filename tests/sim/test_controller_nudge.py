"""The simulated API server and controller under albgate's nudge (lambdas/domain/rollout/nudge.py): a write that
changes only a condition's message is stored and watched, and a controller that backs off after throttled calls
reconciles at once when a pod carrying its gate changes (from v3.4.0), as docs/facts.md's "What is watched" and
"The workqueue" describe."""

from __future__ import annotations

import pytest

from albgate.sim.alb import HEALTHY
from lambdas.domain.errors import ThrottledError
from lambdas.domain.ports import ALBGATE_GATE, LBC_GATE_PREFIX, DeploymentPatch
from tests.sim.conftest import scenario, started

V2 = "ikubernetes/myapp:v2"


def _new_pod_with_a_throttled_controller(version: str):
    """A new pod carrying the controller's gate and albgate's, while every DescribeTargetHealth of the controller is
    throttled; returns (sim, binding, pod, stop throttling)."""
    sim = started(scenario(namespace={"inject_label": "before_pods"}, controller={"version": version},
                           app={"max_surge": 1, "max_unavailable": 0}))
    binding = sim.lbc.bindings[0]
    real = sim.alb.describe_target_health

    def throttled(arn: str, caller: str = "albgate"):
        if caller == "controller":
            raise ThrottledError("Rate exceeded")
        return real(arn, caller=caller)

    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={"nginx": V2},
                                                                      add_readiness_gates=(ALBGATE_GATE,)))
    # registered and written `initial` first, then throttled
    assert sim.run_until(sim.clock.t + 300, stop=lambda: any(
        p.version == V2 and LBC_GATE_PREFIX + binding.tgb.name in p.conditions for p in sim.cluster.all_pods))
    [pod] = [p for p in sim.cluster.all_pods if p.version == V2]
    sim.alb.describe_target_health = throttled

    def stop() -> None:
        sim.alb.describe_target_health = real

    return sim, binding, pod, stop


def test_a_write_that_changes_nothing_is_not_stored_and_a_message_change_is():
    sim, binding, pod, stop = _new_pod_with_a_throttled_controller("v3.5.0")
    stop()
    sim.cluster.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "False", "Waiting", "one")
    rv, ready = pod.rv, pod.ready
    sim.cluster.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "False", "Waiting", "one")
    assert pod.rv == rv
    sim.cluster.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "False", "Waiting", "two")
    assert pod.rv > rv and pod.conditions[ALBGATE_GATE] == ("False", "Waiting", "two") and pod.ready == ready


@pytest.mark.parametrize("version,reacts", [("v3.5.0", True), ("v3.4.0", True), ("v3.2.0", False)])
def test_a_backed_off_controller_writes_at_once_when_another_writer_changes_the_pod_from_v3_4_0(version, reacts):
    # Given a controller whose calls were throttled for 200 s: its next try is minutes away, and ELB meanwhile
    # calls the new pod's target healthy while its condition still says `initial`
    sim, binding, pod, stop = _new_pod_with_a_throttled_controller(version)
    gate = LBC_GATE_PREFIX + binding.tgb.name
    sim.advance(200)
    stop()
    assert binding.waiting is not None and binding.waiting.time - sim.clock.t > 60
    assert binding.tg.targets[pod.ip].state == HEALTHY and pod.conditions[gate][0] == "False"
    sim.advance(5)
    assert pod.conditions[gate][0] == "False"  # nothing makes it look before its retry
    # When albgate writes its own gate's condition again, only its message changed
    sim.cluster.set_pod_condition(pod.namespace, pod.name, ALBGATE_GATE, "False", "WaitingForLoadBalancerController",
                                  "ELB shows this pod's target healthy")
    sim.advance(3)
    # Then from v3.4.0 the controller's pod watch adds the binding beside its back-off and it writes the condition
    assert (pod.conditions[gate][0] == "True") is reacts
