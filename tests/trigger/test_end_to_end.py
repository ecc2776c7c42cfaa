"""From an ECR push event to a finished rollout on the simulated cluster, and the lock released by its end.

Given the example config's application (my-cluster/readiness/nginx-app, repository myapp, tags v*), when a push
of myapp:v2 reaches the trigger, then the execution input it starts is run by albgate's real rollout state
machine (the template this checkout synthesizes, moto's interpreter, the real handlers) on the example app's simulated
cluster and ALB: the Deployment ends on the pushed digest. (What the execution's terminal status event then does
is tested in test_handlers.py: the local runner starts its own moto mock, which resets the trigger's moto
backends, so the trigger's side is checked before the rollout runs.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albgate.sim.albgate_strategy import bootstrap_hardened, run_albgate
from albgate.sim import load_scenario
from albgate.sim.runner import run_strategy
from albgate.sim.strategies import register_strategy
from albgate.template import _memo as template_memo
from albgate.template import template_key, use_template
from lambdas.handlers.ecr_trigger import TriggerSettings, handle_push
from tests.trigger.conftest import DIGEST_B, ecr_event, settings_env, write_trigger_config

SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"


@pytest.fixture
def example_world(world, example_config, tmp_path):
    """The moto world, with the trigger configured from config/example.json (as its layer would hold it)."""
    config = write_trigger_config(
        tmp_path / "example-trigger.json",
        [a for a in example_config["applications"] if a.get("ecr_repository")],
        example_config["rollout_policy"],
    )
    world.settings = TriggerSettings.from_environ(settings_env(world.state_machine_arn, config))
    return world


def test_a_push_rolls_the_pushed_digest_on_the_simulated_cluster(
    example_world, template
):
    world = example_world
    # Given a push of myapp:v2 / When the trigger handles it
    answer = handle_push(ecr_event(repository="myapp", tag="v2", digest=DIGEST_B), world.settings, world.deps)
    assert [r["outcome"] for r in answer["results"]] == ["started"]
    (execution,) = world.executions()
    request = json.loads(execution["input"])
    assert world.lock("my-cluster/readiness/nginx-app")["execution_name"]["S"] == execution["name"]
    assert world.bus.types() == ["Rollout Started"]

    # Then albgate's state machine, given exactly that input, rolls the simulated seed app to the digest
    def pushed_input(logical_id, handler, event, deliver):
        if "Preflight" in logical_id:
            event["request"] = request
        return deliver()

    # Only the rollout state machine: the working tree's stack may hold others (bootstrap) the runner can't pick
    rollout_only = {**template, "Resources": {
        k: r for k, r in template["Resources"].items()
        if r["Type"] != "AWS::StepFunctions::StateMachine" or k.startswith("Rollout")}}
    saved = template_memo.get(template_key())
    use_template(rollout_only)
    try:
        register_strategy("albgate-from-ecr-push", lambda sim: run_albgate(sim, pushed_input),
                          prepare=bootstrap_hardened)
        sim, run = run_strategy(load_scenario(SEED_APP), "albgate-from-ecr-push")
    finally:  # leave the session's shared template as it was for the other layers
        if saved is None:
            template_memo.pop(template_key(), None)
        else:
            template_memo[template_key()] = saved
    assert run.outcome == "succeeded", run.detail
    assert sim.current_image() == request["image"] and request["image"].endswith("/myapp@" + DIGEST_B)
    assert sim.traffic.failed_requests == 0, dict(sim.traffic.failed)

