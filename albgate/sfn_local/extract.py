"""Extract a state machine's ASL definition and the Lambda handlers it calls from a synthesized CDK template.

Job: turn what CloudFormation would receive (``DefinitionString`` as ``Fn::Join`` of strings and intrinsic
functions, plus ``DefinitionSubstitutions``) into the plain ASL dict moto executes, with every function ARN
pointing at a function named after its logical id, and read each called function's ``Handler``.

Invariant: the definition is the synthesized one, never a hand-written copy. Every intrinsic is resolved to a
fixed placeholder (partition ``aws``, region ``us-east-1``, account ``123456789012``: moto's defaults), and a
Lambda ARN always ends in ``function:<logical id>``, so the runner can create the function under that name and
look its handler up from it. An intrinsic this module cannot resolve raises ``ExtractionError`` rather than
leaving a dict inside the definition.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

PARTITION = "aws"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
LAMBDA_TYPE = "AWS::Lambda::Function"
STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"
# Lambda's defaults when the template does not set them (CloudFormation AWS::Lambda::Function reference).
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128

_PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "local",
    "AWS::NoValue": "",
}
_LAMBDA_ARN_RE = re.compile(r"arn:[^:]+:lambda:[^:]+:[^:]+:function:([A-Za-z0-9_-]+)")


class ExtractionError(ValueError):
    """The template does not hold what the runner needs (no such state machine, an unresolvable intrinsic)."""


@dataclass(frozen=True)
class FunctionSettings:
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB


@dataclass(frozen=True)
class ExtractedMachine:
    """The runnable parts of one state machine.

    ``functions`` maps the logical id of every Lambda function the definition references to its ``Handler``
    string (``"lambdas.handlers.check_target_health.handler"``). Functions the definition never calls (CDK's
    own custom-resource providers, whose handlers are not importable Python) are left out.
    """

    state_machine_logical_id: str
    definition: dict[str, Any]
    functions: dict[str, str]
    function_settings: dict[str, FunctionSettings] = field(default_factory=dict)

    @property
    def definition_json(self) -> str:
        return json.dumps(self.definition)


def lambda_arn(logical_id: str) -> str:
    """The placeholder ARN every reference to the function ``logical_id`` resolves to."""
    return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"


def extract_state_machine(template: dict, state_machine_logical_id: str | None = None) -> ExtractedMachine:
    """Resolve the definition of ``state_machine_logical_id`` (or of the only state machine) in ``template``."""
    resources: dict[str, dict] = template.get("Resources", {})
    machines = sorted(k for k, r in resources.items() if r.get("Type") == STATE_MACHINE_TYPE)
    if state_machine_logical_id is None:
        if len(machines) != 1:
            raise ExtractionError(
                f"template has {len(machines)} state machines ({machines}); pass state_machine_logical_id"
            )
        state_machine_logical_id = machines[0]
    elif state_machine_logical_id not in machines:
        raise ExtractionError(f"no state machine {state_machine_logical_id!r} in the template; it has {machines}")

    props = resources[state_machine_logical_id].get("Properties", {})
    resolver = _Resolver(resources)
    if "Definition" in props:  # an inline JSON object instead of a string (DefinitionBody.from_... rarely)
        text = json.dumps(resolver.resolve(props["Definition"]))
    elif "DefinitionString" in props:
        text = resolver.resolve(props["DefinitionString"])
    else:
        raise ExtractionError(f"{state_machine_logical_id} has neither DefinitionString nor Definition")
    if not isinstance(text, str):
        raise ExtractionError(f"DefinitionString of {state_machine_logical_id} did not resolve to a string")

    substitutions = {k: resolver.resolve(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", str(value))

    definition = json.loads(text)
    called = sorted(set(_LAMBDA_ARN_RE.findall(text)))
    functions: dict[str, str] = {}
    settings: dict[str, FunctionSettings] = {}
    for logical_id in called:
        resource = resources.get(logical_id)
        if resource is None or resource.get("Type") != LAMBDA_TYPE:
            raise ExtractionError(f"the definition calls function {logical_id!r}, which is not a {LAMBDA_TYPE}")
        fn_props = resource.get("Properties", {})
        handler = fn_props.get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            raise ExtractionError(f"function {logical_id} has no 'module.function' Handler: {handler!r}")
        functions[logical_id] = handler
        settings[logical_id] = FunctionSettings(
            timeout_seconds=int(fn_props.get("Timeout", DEFAULT_TIMEOUT_SECONDS)),
            memory_mb=int(fn_props.get("MemorySize", DEFAULT_MEMORY_MB)),
        )
    return ExtractedMachine(state_machine_logical_id, definition, functions, settings)


class _Resolver:
    """Resolves the CloudFormation intrinsics CDK emits into a state machine definition."""

    def __init__(self, resources: dict[str, dict]) -> None:
        self._resources = resources

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(logical_id, attribute)
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key.startswith("Fn::") or key == "Condition":
                raise ExtractionError(f"cannot resolve intrinsic {key} in the definition: {value!r}")
        return {k: self.resolve(v) for k, v in value.items()}

    def _type_of(self, logical_id: str) -> str:
        resource = self._resources.get(logical_id)
        if resource is None:
            raise ExtractionError(f"the definition references {logical_id!r}, which is not in the template")
        return resource.get("Type", "")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        typ = self._type_of(logical_id)
        if typ == LAMBDA_TYPE and attribute == "Arn":
            return lambda_arn(logical_id)
        # Any other ARN still needs a stable, recognisable value; services other than Lambda are not dispatched.
        service = typ.split("::")[1].lower() if typ.count("::") == 2 else "unknown"
        return f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT_ID}:{logical_id}/{attribute}"

    def _ref(self, name: str) -> str:
        if name in _PSEUDO:
            return _PSEUDO[name]
        # Ref of a Lambda function is its name; the runner names every function after its logical id.
        self._type_of(name)
        return name

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resolved = {k: str(self.resolve(v)) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in resolved:
                return resolved[name]
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return self._ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)
