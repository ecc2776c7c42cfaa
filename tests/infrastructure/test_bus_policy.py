"""albgate's event bus: entries with ``source: albgate`` are accepted only from the roles the stack lets publish.

Given the synthesized example (its application has an ECR repository, so the stack has the ``albgate`` bus),
then the bus has exactly one resource-policy statement, a Deny of ``events:PutEvents`` for the ``albgate`` source
to every role but those an IAM policy of the template grants ``events:PutEvents``, which are the ECR trigger,
the function that reports an execution's end and the rollout state machine.
"""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.contract import EVENT_SOURCE
from stacks.constructs.bus_policy import SID


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted_put_events(template: dict[str, Any]) -> set[str]:
    """Logical ids of the roles an IAM policy of the template grants events:PutEvents, read from the template."""
    roles = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        props = resource["Properties"]
        if any("events:PutEvents" in _list(s["Action"]) for s in props["PolicyDocument"]["Statement"]):
            roles.update(r["Ref"] for r in props["Roles"])
    return roles


@pytest.fixture(scope="module")
def bus_policy(synth) -> dict[str, Any]:
    (bus_id,) = [k for k, v in synth.resources("AWS::Events::EventBus").items() if v["Properties"]["Name"] == "albgate"]
    policies = [v["Properties"] for v in synth.resources("AWS::Events::EventBusPolicy").values()
                if v["Properties"]["EventBusName"] == {"Ref": bus_id}]
    (policy,) = policies
    return policy


def test_the_bus_denies_albgate_events_from_anyone_albgate_does_not_let_publish(bus_policy) -> None:
    statement = bus_policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"}
    assert statement["Action"] == "events:PutEvents"
    assert statement["Sid"].endswith(SID)
    assert statement["Condition"]["StringEquals"] == {"events:source": EVENT_SOURCE}
    assert set(statement["Condition"]) == {"StringEquals", "ArnNotEquals"}


def test_the_exceptions_are_exactly_the_roles_the_stack_grants_put_events(synth, bus_policy) -> None:
    # Given the roles named in the Deny's exception, and those the template's IAM policies let publish
    excepted = {a["Fn::GetAtt"][0] for a in bus_policy["Statement"]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
    # Then they are the same roles, never a wildcard
    assert excepted == granted_put_events(synth.template)
    # And they are the trigger's, the execution reporter's and the rollout state machine's
    functions = {v["Properties"]["Handler"].split(".")[-2]: v["Properties"]["Role"]["Fn::GetAtt"][0]
                 for v in synth.resources("AWS::Lambda::Function").values()}
    machines = {k: v["Properties"]["RoleArn"]["Fn::GetAtt"][0] for k, v in synth.resources(
        "AWS::StepFunctions::StateMachine").items()}
    rollout_role = next(role for k, role in machines.items() if k.startswith("RolloutStateMachine"))
    assert {functions["ecr_trigger"], functions["execution_events"], rollout_role} <= excepted
    assert functions["preflight"] not in excepted


@pytest.mark.parametrize(
    ("caller", "source", "denied"),
    [("ecr_trigger", EVENT_SOURCE, False), ("execution_events", EVENT_SOURCE, False),
     ("preflight", EVENT_SOURCE, True), ("someone-else", EVENT_SOURCE, True), ("someone-else", "team.app", False)],
    ids=["trigger", "execution-reporter", "another-albgate-role", "another-role", "another-source"],
)
def test_who_the_statement_denies(synth, bus_policy, caller, source, denied) -> None:
    # Given a PutEvents entry from a caller's role with a source
    functions = {v["Properties"]["Handler"].split(".")[-2]: v["Properties"]["Role"]["Fn::GetAtt"][0]
                 for v in synth.resources("AWS::Lambda::Function").values()}
    role = functions.get(caller, caller)
    condition = bus_policy["Statement"]["Condition"]
    # When the Deny's conditions are evaluated (both must hold for it to apply)
    source_matches = condition["StringEquals"]["events:source"] == source
    not_excepted = role not in {a["Fn::GetAtt"][0] for a in condition["ArnNotEquals"]["aws:PrincipalArn"]}
    # Then only albgate's publishers may send albgate's source; other sources are left to IAM
    assert (source_matches and not_excepted) is denied
