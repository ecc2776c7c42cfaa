"""cfn-lint on the synthesized template, and on a copy whose state machine definition is plain JSON.

cfn-lint does not look inside a DefinitionString written as Fn::Join (docs/facts.md, "Outside validators"),
which is how CDK writes it once ARNs are in it; the copy with placeholder ARNs gets the ASL schema check (E3601),
and a negative control per state machine proves each one's copy is really checked.

Ignored: W3005 "obsolete DependsOn". CDK makes every Lambda depend on its role AND the role's default policy,
so the function is only created once its permissions exist; the role half repeats the Fn::GetAtt and is harmless.
"""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from albgate.template import BOOTSTRAP_STATE_MACHINE_PREFIX, ROLLOUT_STATE_MACHINE_PREFIX, state_machine_id
from tests.infrastructure.cfn import state_machines, with_plain_definitions

IGNORED = ["W3005"]
MACHINE_PREFIXES = {"rollout": ROLLOUT_STATE_MACHINE_PREFIX, "bootstrap": BOOTSTRAP_STATE_MACHINE_PREFIX}


def cfn_lint(template: dict) -> list[str]:
    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"], ignore_checks=IGNORED))
    return [str(m) for m in matches]


@pytest.mark.parametrize("variant", ["as-synthesized", "plain-definition"])
def test_template_is_lint_clean(template, variant):
    candidate = template if variant == "as-synthesized" else with_plain_definitions(template)
    assert cfn_lint(candidate) == []


def test_private_variant_is_lint_clean(private_synth):
    assert cfn_lint(with_plain_definitions(private_synth.template)) == []


def test_every_state_machine_has_a_negative_control(template):
    # Given the template's state machines, Then each is one of the prefixes the negative control below breaks
    assert set(state_machines(template)) == {state_machine_id(template, prefix) for prefix in MACHINE_PREFIXES.values()}


@pytest.mark.parametrize("prefix", list(MACHINE_PREFIXES.values()), ids=list(MACHINE_PREFIXES))
def test_plain_definition_copy_is_really_checked(template, prefix):
    # Given the plain copy with one state of an unknown type in this state machine (a negative control for the
    # plain-definition runs above)
    broken = with_plain_definitions(template)
    logical_id = state_machine_id(broken, prefix)
    asl = json.loads(broken["Resources"][logical_id]["Properties"]["DefinitionString"])
    start = asl["StartAt"]
    asl["States"][start]["Type"] = "Taskk"
    broken["Resources"][logical_id]["Properties"]["DefinitionString"] = json.dumps(asl)
    # When cfn-lint lints it
    found = cfn_lint(broken)
    # Then its ASL check reports that state (the message names the state, not the resource)
    assert any("E3601" in m and f"at 'States/{start}/Type'" in m for m in found), found
