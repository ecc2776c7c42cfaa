"""Extraction of the runnable definition and handlers from a synthesized template (albgate/sfn_local/extract.py)."""

from __future__ import annotations

import json

import pytest

from albgate.sfn_local.extract import ExtractionError, FunctionSettings, extract_state_machine, lambda_arn


def fn(handler: str, **props) -> dict:
    return {"Type": "AWS::Lambda::Function", "Properties": {"Handler": handler, **props}}


def machine(definition, **props) -> dict:
    return {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"DefinitionString": definition, **props}}


def joined(*parts) -> dict:
    return {"Fn::Join": ["", list(parts)]}


TASK_PREFIX = '{"StartAt":"T","States":{"T":{"Type":"Task","End":true,"Resource":"'
TASK_SUFFIX = '"}}}'


def test_the_synthesized_definition_resolves_to_plain_asl(tiny_machine, tiny_template):
    # Given the tiny stack's template, whose DefinitionString is an Fn::Join with GetAtt and Ref AWS::Partition
    # When it is extracted (the session fixture did that)
    text = tiny_machine.definition_json
    # Then no intrinsic is left, and every function ARN names the function by its logical id
    assert "Fn::" not in text and '"Ref"' not in text
    states = tiny_machine.definition["States"]
    assert states["Check"]["Resource"] == lambda_arn(next(k for k in tiny_machine.functions if k.startswith("Poll")))
    approval = states["Wait For Approval"]
    assert approval["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert approval["Parameters"]["FunctionName"].startswith("arn:aws:lambda:us-east-1:123456789012:function:Request")
    # And the handlers and settings come from the functions' properties
    assert sorted(h.rsplit(".", 1)[1] for h in tiny_machine.functions.values()) == ["flaky", "poll", "request_approval"]
    poll = next(k for k in tiny_machine.functions if k.startswith("Poll"))
    assert tiny_machine.function_settings[poll] == FunctionSettings(timeout_seconds=10, memory_mb=256)


@pytest.mark.parametrize(
    ("resources", "machine_id", "expected_resource"),
    [
        pytest.param(
            {
                "Fn1": fn("pkg.mod.handler"),
                "M": machine(joined(TASK_PREFIX, {"Fn::GetAtt": ["Fn1", "Arn"]}, TASK_SUFFIX)),
            },
            None,
            lambda_arn("Fn1"),
            id="join-getatt",
        ),
        pytest.param(
            {
                "Fn1": fn("pkg.mod.handler"),
                "M": machine(
                    TASK_PREFIX + "${FnArn}" + TASK_SUFFIX,
                    DefinitionSubstitutions={"FnArn": {"Fn::GetAtt": ["Fn1", "Arn"]}},
                ),
            },
            None,
            lambda_arn("Fn1"),
            id="definition-substitutions",
        ),
        pytest.param(
            {
                "Fn1": fn("pkg.mod.handler"),
                "M": machine(
                    {"Fn::Sub": TASK_PREFIX + "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}"
                     ":function:${Fn1}" + TASK_SUFFIX}
                ),
            },
            None,
            lambda_arn("Fn1"),
            id="sub-with-pseudo-parameters-and-ref",
        ),
        pytest.param(
            {
                "Fn1": fn("pkg.mod.handler"),
                "Other": machine(TASK_PREFIX + "arn:aws:states:::pass" + TASK_SUFFIX),
                "M": machine(joined(TASK_PREFIX, {"Fn::GetAtt": ["Fn1", "Arn"]}, TASK_SUFFIX)),
            },
            "M",
            lambda_arn("Fn1"),
            id="picked-by-logical-id",
        ),
    ],
)
def test_intrinsics_resolve_to_placeholders(resources, machine_id, expected_resource):
    # Given a template written the ways CloudFormation allows
    # When the state machine is extracted
    extracted = extract_state_machine({"Resources": resources}, machine_id)
    # Then its task points at the function's placeholder ARN and the handler is known
    assert extracted.definition["States"]["T"]["Resource"] == expected_resource
    assert extracted.functions == {"Fn1": "pkg.mod.handler"}
    assert extracted.function_settings["Fn1"] == FunctionSettings()  # Lambda's defaults: 3 s, 128 MB


def test_functions_the_definition_does_not_call_are_left_out():
    # Given a template with a CDK custom-resource provider (Node handler) next to the called function
    resources = {
        "Fn1": fn("pkg.mod.handler"),
        "LogRetentionProvider": fn("index.handler", Runtime="nodejs20.x"),
        "M": machine(joined(TASK_PREFIX, {"Fn::GetAtt": ["Fn1", "Arn"]}, TASK_SUFFIX)),
    }
    # When extracted, Then only the called function is listed
    assert extract_state_machine({"Resources": resources}).functions == {"Fn1": "pkg.mod.handler"}


@pytest.mark.parametrize(
    ("resources", "machine_id", "message"),
    [
        pytest.param({"Fn1": fn("a.b")}, None, "0 state machines", id="no-state-machine"),
        pytest.param(
            {"A": machine('{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}'), "B": machine("{}")},
            None,
            "2 state machines",
            id="ambiguous",
        ),
        pytest.param({"A": machine("{}")}, "Nope", "no state machine 'Nope'", id="unknown-id"),
        pytest.param(
            {"A": machine(joined(TASK_PREFIX, {"Fn::ImportValue": "x"}, TASK_SUFFIX))},
            None,
            "cannot resolve intrinsic Fn::ImportValue",
            id="unresolvable-intrinsic",
        ),
        pytest.param(
            {"A": machine(joined(TASK_PREFIX, {"Fn::GetAtt": ["Missing", "Arn"]}, TASK_SUFFIX))},
            None,
            "'Missing', which is not in the template",
            id="dangling-reference",
        ),
        pytest.param(
            {"A": machine(TASK_PREFIX + lambda_arn("Ghost") + TASK_SUFFIX)},
            None,
            "calls function 'Ghost'",
            id="calls-a-function-not-in-the-template",
        ),
    ],
)
def test_templates_the_runner_cannot_use_are_refused_with_the_reason(resources, machine_id, message):
    # Given a template the runner cannot use, When extracting, Then the error says why
    with pytest.raises(ExtractionError, match=message):
        extract_state_machine({"Resources": resources}, machine_id)


def test_the_definition_round_trips_through_json(tiny_machine):
    # The runner hands moto definition_json; it must be the same definition
    assert json.loads(tiny_machine.definition_json) == tiny_machine.definition
