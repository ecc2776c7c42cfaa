"""Every field a state machine reads is a field the code writes: each JSONPath of both synthesized definitions
resolves in the state models (lambdas/domain/state.py for the rollout, lambdas/domain/contract.py's
``BootstrapView`` for the bootstrap), and the bootstrap's real states, from a run on the simulated cluster, are
``BootstrapView``s. Renaming a field on one side only fails here, not at 3 a.m. in a Choice state."""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any, Union

import pytest
from pydantic import BaseModel

from albgate.sfn_local.extract import extract_state_machine
from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, state_machine_id
from lambdas.domain.contract import BootstrapView
from lambdas.domain.rollout.preflight import PreflightWaiting
from lambdas.domain.state import RolloutState
from tests.bootstrap.test_end_to_end_sim import SEED_INPUT, _quiet_powertools, cluster  # noqa: F401  (fixtures)

_PATH = re.compile(r"\$(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])*")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")
# The fields of a state (not of a task's result: ResultSelector reads the result) a definition names.
_READS = ("Variable", "InputPath", "OutputPath", "ItemsPath", "ResultPath")


def json_paths(definition: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(state, key, path) for every JSONPath over the state: in Choice rules, *Path fields, ``*.$`` parameters
    (inside intrinsic functions too); the context object (``$$``) and the whole input (``$``) are left out."""
    found: set[tuple[str, str, str]] = set()

    def walk(state: str, node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "States":
                    for name, s in v.items():
                        walk(name, s)
                elif k != "ResultSelector":
                    walk(state, v, k)
        elif isinstance(node, list):
            for item in node:
                walk(state, item, key)
        elif isinstance(node, str) and (key in _READS or key.endswith("Path") or key.endswith(".$")):
            for m in _PATH.finditer(node.replace("$$", "##")):
                if m.group(0) != "$":
                    found.add((state, key, m.group(0)))

    walk("", definition)
    return found


def _fields(model: Any) -> dict[str, Any] | None:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {n: f.annotation for n, f in model.model_fields.items()}
    fields = getattr(model, "__pydantic_fields__", None)
    return {n: f.annotation for n, f in fields.items()} if fields else None


def _options(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def resolves(model: Any, path: str) -> bool:
    """Whether ``path`` names a field of ``model``, step by step through nested models, lists and tuples; below a
    free-form mapping (``dict[str, Any]``: a caught error's Error and Cause) any key resolves."""
    steps = [(m.group(1), m.group(2)) for m in _STEP.finditer(path[1:])]

    def walk(annotation: Any, rest: list[tuple[str | None, str | None]]) -> bool:
        if not rest:
            return True
        (name, index), tail = rest[0], rest[1:]
        for option in _options(annotation):
            origin = typing.get_origin(option)
            if option is Any or origin is dict or option is dict:
                return True
            if index is not None and origin in (list, tuple):
                if walk(typing.get_args(option)[0], tail):
                    return True
            fields = _fields(option)
            if name is not None and fields and name in fields and walk(fields[name], tail):
                return True
        return False

    return walk(model, steps)


@pytest.fixture(scope="module")
def definitions(template) -> dict[str, dict[str, Any]]:
    return {
        "rollout": extract_state_machine(template, state_machine_id(template)).definition,
        "bootstrap": extract_state_machine(
            template, state_machine_id(template, BOOTSTRAP_STATE_MACHINE_PREFIX)).definition,
    }


# The models a path of each definition may name: after Preflight the rollout's state is a RolloutState or,
# while Preflight waits for its Describe* turn, its waiting answer.
MODELS = {"rollout": (RolloutState, PreflightWaiting), "bootstrap": (BootstrapView,)}


@pytest.mark.parametrize("machine", sorted(MODELS))
def test_every_path_a_definition_reads_names_a_field_of_its_state(definitions, machine):
    paths = json_paths(definitions[machine])
    assert len(paths) > 20  # the walk found the definition's paths (a broken walk would pass vacuously)
    unknown = sorted((s, k, p) for s, k, p in paths if not any(resolves(m, p) for m in MODELS[machine]))
    assert unknown == [], "JSONPaths naming no field of the state: " + "; ".join(f"{s} {k}: {p}" for s, k, p in unknown)


@pytest.mark.parametrize("path,ok", [
    ("$.gate.status", True), ("$.gate.groups[0].healthy", True), ("$.steps[2].gate_passed_at", True),
    ("$.request.cluster", True), ("$.failure.Cause", True), ("$.preflight", True),
    ("$.gate.state", False), ("$.request.clustername", False), ("$.steps[0].nope", False), ("$.drian.status", False),
])  # fmt: skip
def test_the_resolver_tells_a_real_field_from_a_misspelt_one(path, ok):
    assert any(resolves(m, path) for m in MODELS["rollout"]) is ok


def test_the_verdicts_the_definitions_compare_are_the_contracts(definitions):
    from lambdas.domain.contract import PREFLIGHT_WAITING, Verdict

    compared: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Variable" in node and "StringEquals" in node:
                compared.add(node["StringEquals"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(definitions["rollout"])
    walk(definitions["bootstrap"])
    assert compared and compared <= {v.value for v in Verdict} | {PREFLIGHT_WAITING, "rollout", "rollback"}


def test_the_bootstraps_real_states_are_what_its_definition_reads(cluster):
    # Given the deployed bootstrap run on the simulated cluster (the example app, from a cluster without the
    # controller: every check waits at least once)
    from tests.bootstrap.test_workflow_on_sim import run_synthesized

    sim, _, _ = cluster
    result = run_synthesized(sim, SEED_INPUT, "contract-1")
    assert result.status == "SUCCEEDED"
    # When each state's output is read as the definition reads it / Then every one is a BootstrapView, and the
    # checks the definition compares were all written
    outputs = [json.loads(e["stateExitedEventDetails"]["output"]) for e in result.history
               if "stateExitedEventDetails" in e and e["stateExitedEventDetails"].get("output")]
    views = [BootstrapView.model_validate(o) for o in outputs if isinstance(o, dict)]
    assert len(views) > 10
    for field in ("controller", "bindings", "settle", "report", "wait_seconds"):
        assert any(getattr(v, field) is not None for v in views), field
