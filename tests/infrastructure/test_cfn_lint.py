"""cfn-lint on the synthesized template, and on a copy whose state machine definition is plain JSON.

cfn-lint does not look inside a DefinitionString written as Fn::Join (TOOLING.md), which is how CDK writes it
once ARNs are in it; the copy with placeholder ARNs gets the ASL schema check (E3601).

Ignored: W3005 "obsolete DependsOn". CDK makes every Lambda depend on its role AND the role's default policy,
so the function is only created once its permissions exist; the role half repeats the Fn::GetAtt and is harmless.
"""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from albgate.template import state_machine_id
from tests.infrastructure.cfn import state_machines, with_plain_definitions

IGNORED = ["W3005"]


def cfn_lint(template: dict) -> list[str]:
    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"], ignore_checks=IGNORED))
    return [str(m) for m in matches]


@pytest.mark.parametrize("variant", ["as-synthesized", "plain-definition"])
def test_template_is_lint_clean(template, variant):
    candidate = template if variant == "as-synthesized" else with_plain_definitions(template)
    assert cfn_lint(candidate) == []


def test_private_variant_is_lint_clean(private_synth):
    assert cfn_lint(with_plain_definitions(private_synth.template)) == []


def test_plain_definition_copy_is_really_checked(template):
    # Given the plain copy with one state of an unknown type (a negative control for the test above)
    broken = with_plain_definitions(template)
    logical_id = state_machine_id(broken)
    asl = json.loads(broken["Resources"][logical_id]["Properties"]["DefinitionString"])
    asl["States"][asl["StartAt"]]["Type"] = "Taskk"
    broken["Resources"][logical_id]["Properties"]["DefinitionString"] = json.dumps(asl)
    # Then cfn-lint's ASL check reports it
    assert any("E3601" in m for m in cfn_lint(broken))
