"""Bad execution inputs through the real state machine: a typed, readable error, and the cluster untouched.

Each input replaces what a person (or a broken caller) would pass to StartExecution. The simulated cluster is
compared before and after: a refused rollout must not have changed a single field of the Deployment, its
ReplicaSets or its pods.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate.rollout_strategy import run_albgate
from albgate.sim import load_scenario
from albgate.sim.runner import run_strategy
from albgate.sim.strategies import bootstrap_hardened, register_strategy
from albgate.template import use_template

SEED_APP = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml")
GOOD = {
    "cluster": "my-cluster",
    "namespace": "readiness",
    "deployment": "nginx-app",
    "container": "nginx",
    "image": "ikubernetes/myapp:v2",
}

CORPUS = [
    # id, input, error name, words the cause must contain
    ("not-an-object", ["cluster"], "InvalidInputError", "JSON object"),
    ("empty", {}, "InvalidInputError", "cluster"),
    ("missing-image", {k: v for k, v in GOOD.items() if k != "image"}, "InvalidInputError", "image"),
    ("namespace-injection", {**GOOD, "namespace": "readiness; kubectl delete ns"}, "InvalidInputError", "namespace"),
    ("deployment-path", {**GOOD, "deployment": "../../etc/passwd"}, "InvalidInputError", "deployment"),
    ("label-unicode", {**GOOD, "container": "nginx\u202e"}, "InvalidInputError", "container"),
    ("image-shell", {**GOOD, "image": "nginx:v2 && curl evil"}, "InvalidInputError", "image"),
    ("image-huge", {**GOOD, "image": "a" * 5000 + ":v1"}, "InvalidInputError", "image"),
    ("steps-wrong-type", {**GOOD, "policy": {"steps": "all"}}, "InvalidInputError", "policy.steps"),
    ("unknown-field", {**GOOD, "replicas": 0}, "InvalidInputError", "replicas"),
    ("unknown-namespace", {**GOOD, "namespace": "nope"}, "NotFoundError", "nope"),
    ("unknown-deployment", {**GOOD, "deployment": "nope"}, "NotFoundError", "nope"),
    ("unknown-container", {**GOOD, "container": "sidecar"}, "NotFoundError", "sidecar"),
    ("same-image", {**GOOD, "image": "ikubernetes/myapp:v1"}, "InvalidInputError", "already runs"),
]


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


@pytest.mark.parametrize("raw,error,words", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_is_refused_with_a_readable_error_and_changes_nothing(raw, error, words):
    seen = {}

    def bad_input(logical_id, handler, event, deliver):
        if "Preflight" in logical_id:
            event["request"] = raw
        return deliver()

    def refused(sim):
        seen["before"] = snapshot(sim)
        run = run_albgate(sim, bad_input)
        seen["after"] = snapshot(sim)
        return run

    register_strategy("albgate-bad-input-corpus", refused, prepare=bootstrap_hardened)
    _, run = run_strategy(SEED_APP, "albgate-bad-input-corpus")
    # Then the execution ends in Rollout Refused with the error's class name and a cause naming the problem
    assert run.outcome == "failed"
    assert run.extra["visited"][-1] == "Rollout Refused"
    assert run.extra["error"] == error
    assert words in run.detail
    # And the cluster is exactly as it was
    assert seen["after"] == seen["before"]
