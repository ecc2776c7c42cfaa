"""What the state machines' CloudWatch logs carry: every event (level ALL), with each state's input and output
unless the config's ``include_execution_data`` is false, for the rollout and the bootstrap state machine alike.

The input and output hold the `Wait For Approval` task's token (whoever reads it can approve a step), so a stack
whose log readers should not approve sets the option to false; the execution history keeps the data either way.
"""

from __future__ import annotations

import copy

import pytest

from albgate.template import state_machine_id
from tests.infrastructure.cfn import definition, walk_states
from stacks.config import ConfigError, parse_config
from tests.conftest import Synthesized, synthesize

MACHINES = ["RolloutStateMachine", "BootstrapStateMachine"]


@pytest.fixture(scope="module")
def without_data(cdk_app, example_config, tmp_path_factory) -> Synthesized:
    config = copy.deepcopy(example_config)
    config["include_execution_data"] = False
    return synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out.no-data"), config)


def logging_of(synth: Synthesized, prefix: str) -> dict:
    return synth.template["Resources"][state_machine_id(synth.template, prefix)]["Properties"]["LoggingConfiguration"]


@pytest.mark.parametrize("prefix", MACHINES)
def test_by_default_every_state_machine_logs_its_execution_data(synth, prefix) -> None:
    # Given the example config, which leaves the option at its default / Then events and data are logged
    assert synth.stack.config.include_execution_data is True
    logging = logging_of(synth, prefix)
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", True)


@pytest.mark.parametrize("prefix", MACHINES)
def test_include_execution_data_false_keeps_the_events_and_drops_the_data(without_data, prefix) -> None:
    # Given include_execution_data: false / Then every event is still logged, without inputs and outputs
    logging = logging_of(without_data, prefix)
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", False)
    assert without_data.problems == []


def test_the_option_is_a_json_boolean(example_config) -> None:
    # Given the option written as a string / Then the config is refused, naming the field
    config = {**copy.deepcopy(example_config), "include_execution_data": "false"}
    with pytest.raises(ConfigError, match="include_execution_data"):
        parse_config(config)


def test_the_approval_request_gets_the_execution_arn_where_the_token_is_read(synth) -> None:
    # Given the rollout state machine's `Wait For Approval` task
    machine = state_machine_id(synth.template, "RolloutStateMachine")
    (task,) = [s for name, s in walk_states(definition(synth.template, machine)["States"])
               if name == "Wait For Approval"]
    payload = task["Parameters"]["Payload"]
    # Then RequestApproval gets the token (to wait on) and the execution's ARN (to say where an approver reads it)
    assert payload["task_token.$"] == "$$.Task.Token"
    assert payload["execution_arn.$"] == "$$.Execution.Id"
