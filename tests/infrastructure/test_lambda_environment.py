"""Lambda's 4 KB of environment per function, held by construction: a 60-application stack, synthesized.

Given the example config grown to the most applications a cluster may have, each pushed from its own ECR
repository (so the ECR trigger carries all of them), when the whole stack is synthesized, then every function's
environment, measured as Lambda measures it (the Variables map as compact JSON) with each deploy-time value at the
longest it can resolve to, is within 4,096 bytes, and the trigger's configuration travels in its layer instead,
at a size the environment could not have held.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.domain.limits import LAMBDA_ENVIRONMENT_MAX_BYTES, MAX_APPLICATIONS_PER_CLUSTER, lambda_environment_bytes
from lambdas.handlers.ecr_trigger import TriggerSettings
from tests.conftest import Synthesized, synthesize

# The longest string each deploy-time reference can resolve to (docs/facts.md, "AWS limits albgate checks"):
# Ref of a state machine is its ARN (StartExecution's stateMachineArn, at most 256), of a DynamoDB table its
# name (at most 255), of an event bus its name (at most 256).
LONGEST_REF = {"AWS::StepFunctions::StateMachine": 256, "AWS::DynamoDB::Table": 255, "AWS::Events::EventBus": 256}


def many_applications(example: dict[str, Any], count: int = MAX_APPLICATIONS_PER_CLUSTER) -> dict[str, Any]:
    """The example with ``count`` applications in its one cluster, long names, each with its own repository."""
    config = copy.deepcopy(example)
    base = config["applications"][0]
    config["applications"] = [
        {**base, "namespace": f"team-{i:02d}-storefront-services", "deployment": f"checkout-api-{i:02d}-deployment",
         "container": "application-server", "service": f"checkout-api-{i:02d}", "ingress": f"checkout-{i:02d}",
         "ecr_repository": f"platform/teams/team-{i:02d}/checkout-api", "tag_pattern": "release-v[0-9]*",
         "replicas": 12}
        for i in range(count)
    ]
    return config


@pytest.fixture(scope="module")
def wide_synth(cdk_app, example_config, tmp_path_factory) -> Synthesized:
    return synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out.wide"), many_applications(example_config))


def longest(value: Any, resources: dict[str, Any]) -> str:
    """A template value as the longest string it can be once deployed."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        rtype = resources[value["Ref"]]["Type"]
        assert rtype in LONGEST_REF, f"no known longest value for a Ref of a {rtype}"
        return "x" * LONGEST_REF[rtype]
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(longest(p, resources) for p in parts)
    raise AssertionError(f"no known longest value for {value!r}")


def test_the_config_has_the_most_applications_a_cluster_may_have(wide_synth):
    assert len(wide_synth.stack.config.applications) == MAX_APPLICATIONS_PER_CLUSTER
    assert wide_synth.problems == []


def test_every_functions_environment_fits_lambdas_4_kb(wide_synth):
    resources = wide_synth.template["Resources"]
    functions = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    handlers = {p["Handler"].split(".")[-2] for p in functions.values()}
    assert {"preflight", "gate_keeper", "bootstrap_validate", "ecr_trigger", "execution_events"} <= handlers
    sizes = {}
    for logical_id, props in functions.items():
        variables = props.get("Environment", {}).get("Variables", {})
        sizes[logical_id] = lambda_environment_bytes({k: longest(v, resources) for k, v in variables.items()})
    # Then every function is far below the limit, the trigger's included
    assert max(sizes.values()) <= LAMBDA_ENVIRONMENT_MAX_BYTES, sizes
    trigger = next(k for k, p in functions.items() if p["Handler"] == "lambdas.handlers.ecr_trigger.handler")
    assert sizes[trigger] < LAMBDA_ENVIRONMENT_MAX_BYTES // 3, sizes[trigger]


def test_the_triggers_configuration_is_in_its_layer_and_would_not_have_fit_the_environment(wide_synth):
    trigger = wide_synth.stack.ecr_trigger
    config_file = Path(trigger.config_layer.folder) / "albgate" / "trigger.json"
    # Given the configuration file the layer holds (what the old environment variables carried)
    text = config_file.read_text()
    assert len(text.encode()) > LAMBDA_ENVIRONMENT_MAX_BYTES
    # When the trigger reads it at cold start / Then it has every application and the policy
    settings = TriggerSettings.from_environ({
        "ALBGATE_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:Rollout",
        "ALBGATE_LOCK_TABLE": "locks", "ALBGATE_EVENT_BUS": "albgate", "ALBGATE_TRIGGER_CONFIG": str(config_file)})
    assert len(settings.applications) == MAX_APPLICATIONS_PER_CLUSTER
    assert settings.policy == wide_synth.stack.config.rollout_policy
    assert json.loads(text)["applications"][7]["ecr_repository"] == "platform/teams/team-07/checkout-api"
