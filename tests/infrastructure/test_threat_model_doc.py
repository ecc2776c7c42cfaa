"""docs/threat-model.md's table of what each function may do lists exactly the deployed functions, and says what
the stack gives them in Kubernetes: none, cluster admin, or the groups they carry. A function added, removed or
given other Kubernetes rights is a change to review in the threat model too."""

from __future__ import annotations

import re

import pytest

from stacks.constructs.cluster_access import READ_EXTRA_GROUP, groups_for, needs_cluster_admin
from stacks.constructs.release_trigger import RELEASE_TRIGGER
from stacks.constructs.release_workflow import RELEASE_HANDLERS
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER
from tests.conftest import ROOT

# the environments' functions and the release stack's
SPECS = {s.name: s for s in ALL_HANDLERS + TRIGGER + RELEASE_HANDLERS + (RELEASE_TRIGGER,)}


def function_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "threat-model.md").read_text()
    section = text[text.index("## What each function may do"):text.index("## What albgate does about it")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| function") and not line.startswith("| ---")]
    return {row[0]: row for row in rows}


def test_the_table_lists_exactly_the_deployed_functions() -> None:
    assert sorted(function_rows()) == sorted(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_row_states_the_functions_kubernetes_rights(name) -> None:
    spec, (_, _, kubernetes, _) = SPECS[name], function_rows()[name]
    if spec.kube == "none":
        assert kubernetes == "none"
    elif needs_cluster_admin(spec):
        assert "cluster admin" in kubernetes
    else:
        # every group beyond the one all readers share is named
        named = set(re.findall(r"`(albgate-[a-z-]+)`", kubernetes))
        expected = set(groups_for(spec, access_entry=True)) - {READ_EXTRA_GROUP}
        assert expected <= named, (name, kubernetes, expected)
