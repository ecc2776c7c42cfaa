"""Bad execution inputs through the real state machine: a typed, readable error, and the cluster untouched.

Each input replaces what a person (or a broken caller) would pass to StartExecution. The simulated cluster is
compared before and after: a refused rollout must not have changed a single field of the Deployment, its
ReplicaSets or its pods. Some problems are visible in the input alone (the model refuses them); others only
against the Deployment (Preflight refuses them once it has read the replicas and the running image): both end
in `Rollout Refused` naming the field. A cause quotes at most ``MAX_QUOTED`` characters of a bad value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from albgate.sim.albgate_strategy import run_albgate
from albgate.sim import Simulation, load_scenario
from albgate.sim.runner import run_strategy
from albgate.sim.strategies import bootstrap_hardened, register_strategy
from albgate.template import use_template
from lambdas.domain.documents import MAX_QUOTED

SEED_APP = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
RUNNING = "ikubernetes/myapp:v1"  # what the example app runs: 3 replicas of it
GOOD = {
    "cluster": "my-cluster",
    "namespace": "readiness",
    "deployment": "nginx-app",
    "container": "nginx",
    "image": "ikubernetes/myapp:v2",
}


def policy(**fields: Any) -> dict[str, Any]:
    return {**GOOD, "policy": fields}


def scaled_to_zero(sim: Simulation) -> None:
    """`kubectl scale --replicas=0`: the Deployment controller removes every pod; wait until they are gone."""
    d = sim.deployment()
    d.replicas = 0
    d.generation += 1
    sim.cluster.request_sync(d)
    sim.run_until(sim.clock.t + 900, stop=lambda: not sim.cluster.pods_selected(d.namespace, d.selector))
    assert not sim.cluster.pods_selected(d.namespace, d.selector), "the pods of a Deployment at 0 should be gone"


World = Callable[[Simulation], None] | None

CORPUS: list[tuple[str, Any, str, str, World]] = [
    # id, input, error name, words the cause must contain, change to the cluster before the run
    ("not-an-object", ["cluster"], "InvalidInputError", "JSON object", None),
    ("empty", {}, "InvalidInputError", "cluster", None),
    ("missing-image", {k: v for k, v in GOOD.items() if k != "image"}, "InvalidInputError", "image: required", None),
    ("namespace-injection", {**GOOD, "namespace": "readiness; kubectl delete ns"}, "InvalidInputError", "namespace",
     None),
    ("deployment-path", {**GOOD, "deployment": "../../etc/passwd"}, "InvalidInputError", "deployment", None),
    ("label-unicode", {**GOOD, "container": "nginx\u202e"}, "InvalidInputError", "container", None),
    ("image-shell", {**GOOD, "image": "nginx:v2 && curl evil"}, "InvalidInputError", "image", None),
    ("image-huge", {**GOOD, "image": "a" * 5000 + ":v1"}, "InvalidInputError", "image", None),
    ("steps-wrong-type", policy(steps="all"), "InvalidInputError", "policy.steps", None),
    ("unknown-field", {**GOOD, "replicas": 0}, "InvalidInputError", "replicas", None),
    ("unknown-field-huge", {**GOOD, "note": "x" * 5000}, "InvalidInputError", "note: no such field", None),
    ("unknown-namespace", {**GOOD, "namespace": "nope"}, "NotFoundError", "nope", None),
    ("unknown-deployment", {**GOOD, "deployment": "nope"}, "NotFoundError", "nope", None),
    ("unknown-container", {**GOOD, "container": "sidecar"}, "NotFoundError", "sidecar", None),
    ("same-image", {**GOOD, "image": RUNNING}, "InvalidInputError", "already runs", None),
    # steps: the shape in the model, the numbers in Preflight (the example app has 3 replicas)
    ("steps-counts-unsorted", policy(steps=[3, 1, "100%"]), "InvalidInputError", "policy.steps: step 2 (1 pod)",
     None),
    ("steps-percentages-unsorted", policy(steps=["50%", "25%", "100%"]), "InvalidInputError",
     "policy.steps: step 2 (25%)", None),
    ("steps-count-as-string", policy(steps=["1", "100%"]), "InvalidInputError", "as a number", None),
    ("steps-boolean", policy(steps=[True, "100%"]), "InvalidInputError", "policy.steps: item 1 is true", None),
    ("steps-shrink-on-3-replicas", policy(steps=[3, "50%", "100%"]), "InvalidInputError",
     "fewer new pods than step 1 (3 pods)", None),
    ("steps-and-batch-size", policy(steps=[1, "100%"], batch_size=1), "InvalidInputError",
     "batch_size (1) and steps", None),
    # approvals: distinct and >= 1 in the model, within the plan in Preflight
    ("approval-twice", policy(approval_before_steps=[2, 2]), "InvalidInputError",
     "policy.approval_before_steps: names step 2 twice", None),
    ("approval-beyond-the-list", policy(steps=[1, "100%"], approval_before_steps=[3]), "InvalidInputError",
     "policy.approval_before_steps: names step 3, but steps lists 2", None),
    ("approval-beyond-the-plan", policy(approval_before_steps=[4]), "InvalidInputError",
     "the plan has 3 step(s)", None),
    ("approval-beyond-the-batches", policy(batch_size=2, approval_before_steps=[3]), "InvalidInputError",
     "the plan has 2 step(s)", None),
    # booleans are JSON booleans
    ("harden-string", policy(harden="true"), "InvalidInputError", "policy.harden: 'true' is not a boolean", None),
    ("rollback-yes", policy(rollback_on_failure="yes"), "InvalidInputError",
     "policy.rollback_on_failure: 'yes' is not a boolean", None),
    ("harden-number", policy(harden=1), "InvalidInputError", "policy.harden: 1 is not a boolean", None),
    # a restart keeps the image it finds
    ("restart-with-an-image", {**GOOD, "kind": "restart"}, "InvalidInputError", "given with kind 'restart'", None),
    # nothing to gate
    ("zero-replicas", GOOD, "InvalidInputError", "deployment: readiness/nginx-app has 0 replicas", scaled_to_zero),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _session_template(template):
    use_template(template)


def snapshot(sim):
    kube = sim.kube
    return (
        kube.get_deployment("readiness", "nginx-app"),
        sorted(kube.list_replica_sets("readiness", "nginx-app"), key=lambda rs: rs.name),
        sorted(kube.list_pods("readiness", {"app": "nginx"}), key=lambda p: p.name),
    )


def long_strings(value: Any) -> list[str]:
    """Every string in ``value`` (keys too) longer than a message may quote."""
    if isinstance(value, str):
        return [value] if len(value) > MAX_QUOTED else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in long_strings(k) + long_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in long_strings(v)]
    return []


@pytest.mark.parametrize("raw,error,words,world", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_is_refused_with_a_readable_error_and_changes_nothing(raw, error, words, world):
    seen = {}

    def bad_input(logical_id, handler, event, deliver):
        if "Preflight" in logical_id:
            event["request"] = raw
        return deliver()

    def refused(sim):
        if world is not None:
            world(sim)
        seen["before"] = snapshot(sim)
        run = run_albgate(sim, bad_input)
        seen["after"] = snapshot(sim)
        return run

    # Given the example app (changed by the case's world, if any) / When the bad input starts a rollout
    register_strategy("albgate-bad-input-corpus", refused, prepare=bootstrap_hardened)
    _, run = run_strategy(SEED_APP, "albgate-bad-input-corpus")
    # Then the execution ends in Rollout Refused with the error's class name and a cause naming the problem
    assert run.outcome == "failed"
    assert run.extra["visited"][-1] == "Rollout Refused"
    assert run.extra["error"] == error
    assert words in run.detail, run.detail
    # And the cause quotes no long value whole
    assert not [s for s in long_strings(raw) if s in run.detail]
    # And the cluster is exactly as it was
    assert seen["after"] == seen["before"]


def test_a_restart_without_an_image_goes_through_the_gates():
    # Given the example app and a restart that names no image (what the refusal above tells a person to write)
    restart = {k: v for k, v in GOOD.items() if k != "image"} | {"kind": "restart"}
    seen = {}

    def as_restart(logical_id, handler, event, deliver):
        if "Preflight" in logical_id:
            event["request"] = restart
        return deliver()

    def restarted(sim):
        seen["before"] = {p.name for p in sim.kube.list_pods("readiness", {"app": "nginx"})}
        return run_albgate(sim, as_restart)

    # When it runs through the state machine
    register_strategy("albgate-restart-without-image", restarted, prepare=bootstrap_hardened)
    sim, run = run_strategy(SEED_APP, "albgate-restart-without-image")
    # Then it succeeds: every pod is new and runs the image it ran before
    assert run.outcome == "succeeded", run.detail
    pods = sim.kube.list_pods("readiness", {"app": "nginx"})
    assert len(pods) == 3 and not {p.name for p in pods} & seen["before"]
    assert sim.current_image() == RUNNING
