"""Template helpers for the infrastructure tests: resolve a state machine definition to plain ASL JSON.

Invariant: pure functions over the synthesized template (a dict); every intrinsic they meet is either resolved
to a placeholder (a fixed partition, Region, account and ARNs named after the logical id) or rejected loudly,
so a new kind of intrinsic in the definition fails a test instead of producing a wrong definition.
"""

from __future__ import annotations

import copy
import json

from albgate.template import state_machine_id
from typing import Any

PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}

# Placeholder ARN per resource type, named after the logical id (albgate/sfn_local/extract.py gives the local runner's
# functions the same shape).
_ARN = {
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:{id}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{id}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{id}",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{id}",
    "AWS::Events::EventBus": "arn:aws:events:{r}:{a}:event-bus/{id}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{r}:{a}:table/{id}",
}


def placeholder_arn(logical_id: str, resources: dict[str, Any]) -> str:
    rtype = resources[logical_id]["Type"]
    if rtype not in _ARN:
        raise ValueError(f"no placeholder ARN for {logical_id} ({rtype}); add one to tests/infrastructure/cfn.py")
    return _ARN[rtype].format(r=REGION, a=ACCOUNT, id=logical_id)


def resolve(value: Any, resources: dict[str, Any]) -> Any:
    """Resolve Fn::Join / Fn::GetAtt(Arn) / Ref(pseudo or resource) to strings with placeholder values."""
    if isinstance(value, list):
        return [resolve(v, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Fn::Join":
            sep, parts = arg
            return sep.join(str(resolve(p, resources)) for p in parts)
        if key == "Fn::GetAtt":
            logical_id, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            if attr != "Arn":
                raise ValueError(f"unexpected Fn::GetAtt {logical_id}.{attr} in a definition")
            return placeholder_arn(logical_id, resources)
        if key == "Ref":
            if arg in PSEUDO:
                return PSEUDO[arg]
            return placeholder_arn(arg, resources)
        if key.startswith("Fn::"):
            raise ValueError(f"unexpected intrinsic {key} in a definition")
    return {k: resolve(v, resources) for k, v in value.items()}


def state_machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::StepFunctions::StateMachine"}


def definition(template: dict[str, Any], logical_id: str | None = None) -> dict[str, Any]:
    """The ASL of a state machine (the rollout's when no id is given) as a dict."""
    machines = state_machines(template)
    if logical_id is None:
        logical_id = state_machine_id(template)
    raw = machines[logical_id]["Properties"]["DefinitionString"]
    return json.loads(resolve(raw, template["Resources"]) if not isinstance(raw, str) else raw)


def with_plain_definitions(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of the template whose state machine DefinitionStrings are plain JSON strings (cfn-lint E3601)."""
    out = copy.deepcopy(template)
    for logical_id, resource in state_machines(out).items():
        resource["Properties"]["DefinitionString"] = json.dumps(definition(template, logical_id))
    return out


def walk_states(states: dict[str, Any]):
    """Every state, nested ones too (Parallel branches, Map iterators), as (name, state) pairs."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from walk_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from walk_states(state[key]["States"])
