"""The synthesized state machines pass two Amazon States Language validators nobody on the project wrote:
asl-validator (npm, its command line) and statelint (PyPI, a Python port of awslabs/statelint, its command line).

Each definition is the synthesized one, its ``Fn::Join`` resolved to plain JSON with placeholder ARNs
(``tests/infrastructure/cfn.py``, the same copy cfn-lint's E3601 checks). Invariant: every state machine in the
template is in the table below (a test says so), each validator runs for real (missing: the test fails, see
``outside_tools.py``), a broken definition fails both, and the one finding allowed is statelint's complaint
about an integer ``BackoffRate`` (docs/facts.md, "Outside validators"), matched exactly.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, ROLLOUT_STATE_MACHINE_PREFIX, state_machine_id
from tests.infrastructure.cfn import definition, state_machines
from tests.infrastructure.outside_tools import (
    installed_npm,
    installed_python,
    pinned_npm,
    pinned_python,
    require_module,
    require_npm_bin,
)

MACHINES = {"rollout": ROLLOUT_STATE_MACHINE_PREFIX, "bootstrap": BOOTSTRAP_STATE_MACHINE_PREFIX}

# statelint 3.1.0 types BackoffRate as a float (statelint/fields/__init__.py: BACKOFF_RATE = FloatField), so the
# integer CDK writes ("BackoffRate": 2) is reported. The ASL spec asks for a number >= 1.0 and Step Functions
# accepts integers: awslabs/statelint#35 (https://github.com/awslabs/statelint/issues/35), fixed in the Ruby
# original by https://github.com/awslabs/statelint/pull/68, not in this port (docs/facts.md, "Outside
# validators"). Only that message is allowed, and only for an integer >= 1: statelint checks the type before the
# floor, so an integer below 1 gets this same message and must still fail.
INTEGER_BACKOFF_RATE = re.compile(r"^State Machine\.States\..+\.Retry\[\d+\]\.BackoffRate is (\d+) but should be a Float$")


def is_statelint_limitation(problem: str) -> bool:
    match = INTEGER_BACKOFF_RATE.match(problem)
    return match is not None and int(match.group(1)) >= 1


def write_definition(directory: Path, name: str, asl: dict[str, Any]) -> Path:
    path = directory / f"{name}.asl.json"
    path.write_text(json.dumps(asl, indent=2))
    return path


@pytest.fixture(scope="module")
def definitions(template) -> dict[str, dict[str, Any]]:
    return {name: definition(template, state_machine_id(template, prefix)) for name, prefix in MACHINES.items()}


@pytest.fixture(scope="module")
def definition_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("asl")


# --- the two validators, as a person would run them -----------------------------------------------------------
def asl_validator(path: Path) -> subprocess.CompletedProcess[str]:
    """``asl-validator --json-path FILE`` with its default checks (schema, path expressions, Resource ARNs)."""
    command = require_npm_bin("asl-validator", "asl-validator")
    return subprocess.run([str(command), "--json-path", str(path)], capture_output=True, text=True, timeout=120)


def statelint(path: Path) -> list[str]:
    """``statelint FILE``: its problems, one per line (exit 0: none, 1: some, anything else: it broke)."""
    require_module("statelint", "statelint")
    run = subprocess.run([sys.executable, "-m", "statelint", str(path)], capture_output=True, text=True, timeout=120)
    if run.returncode not in (0, 1):
        pytest.fail(f"statelint exited {run.returncode}: {run.stdout}{run.stderr}", pytrace=False)
    problems = [line.strip() for line in run.stdout.splitlines() if line.startswith(" ")]
    assert bool(problems) == (run.returncode == 1), f"statelint output not understood: {run.stdout!r}"
    return problems


# --- the synthesized definitions pass ------------------------------------------------------------------------------
def test_the_table_holds_every_state_machine_of_the_template(template):
    # Given the template's state machines, When matched against the table, Then none is left unchecked
    covered = {state_machine_id(template, prefix) for prefix in MACHINES.values()}
    assert covered == set(state_machines(template))


@pytest.mark.parametrize("name", list(MACHINES))
def test_asl_validator_accepts_the_synthesized_definition(definitions, definition_dir, name):
    # Given the synthesized definition as a plain JSON file
    path = write_definition(definition_dir, name, definitions[name])
    # When asl-validator checks it
    run = asl_validator(path)
    # Then it is valid
    assert run.returncode == 0 and "is valid" in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize("name", list(MACHINES))
def test_statelint_accepts_the_synthesized_definition(definitions, definition_dir, name):
    # Given the synthesized definition as a plain JSON file
    path = write_definition(definition_dir, name, definitions[name])
    # When statelint checks it
    problems = statelint(path)
    # Then nothing is left beyond its known integer-BackoffRate limitation
    assert [p for p in problems if not is_statelint_limitation(p)] == []


# --- negative controls: a broken definition fails each validator ----------------------------------------------------
def next_names_no_state(asl: dict[str, Any]) -> None:
    start = asl["States"][asl["StartAt"]]
    start.pop("End", None)
    start["Next"] = "No Such State"


def unknown_state_type(asl: dict[str, Any]) -> None:
    asl["States"][asl["StartAt"]]["Type"] = "Taskk"


BROKEN = [
    pytest.param(next_names_no_state, "MISSING_TRANSITION_TARGET", 'No state found named "No Such State"',
                 id="next-names-no-state"),
    pytest.param(unknown_state_type, "SCHEMA_VALIDATION_FAILED", 'Type is "Taskk", not one of the allowed values',
                 id="unknown-state-type"),
]


@pytest.mark.parametrize(("breakage", "asl_validator_says", "statelint_says"), BROKEN)
def test_a_broken_definition_fails_both_validators(
    definitions, tmp_path, breakage: Callable[[dict[str, Any]], None], asl_validator_says: str, statelint_says: str
):
    # Given the rollout definition with one error
    broken = copy.deepcopy(definitions["rollout"])
    breakage(broken)
    path = write_definition(tmp_path, "broken", broken)
    # When both validators check it
    run = asl_validator(path)
    problems = [p for p in statelint(path) if not is_statelint_limitation(p)]
    # Then each reports it
    assert run.returncode == 1 and asl_validator_says in run.stderr, run.stdout + run.stderr
    assert any(statelint_says in p for p in problems), problems


def test_the_allowed_statelint_message_does_not_hide_a_backoff_rate_below_one(definitions, tmp_path):
    # Given the rollout definition with an integer BackoffRate of 0 (the spec's floor is 1.0)
    broken = copy.deepcopy(definitions["rollout"])
    start = broken["StartAt"]
    broken["States"][start]["Retry"][0]["BackoffRate"] = 0
    # When statelint checks it
    problems = [p for p in statelint(write_definition(tmp_path, "backoff-0", broken)) if not is_statelint_limitation(p)]
    # Then the message is not allowed away
    assert problems == [f"State Machine.States.{start}.Retry[0].BackoffRate is 0 but should be a Float"]


# --- the validators are the pinned ones ------------------------------------------------------------------------------
def test_the_installed_validators_are_the_pinned_versions():
    # Given the pins (package.json, requirements.txt), When the installed versions are read, Then they match
    assert installed_npm("asl-validator") == pinned_npm("asl-validator")
    assert installed_python("statelint") == pinned_python("statelint")
