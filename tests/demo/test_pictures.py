"""The state machine graph's layout (albgate.pictures): every state once, every transition once, loops drawn up.

Table-driven over small ASL definitions that have what albgate's machine has: a poll loop (Task -> Choice ->
Wait -> back to the Task), a Catch, two catchers to one state, a Choice Default, and a terminal Fail/Succeed.
"""

from __future__ import annotations

import pytest

from albgate.pictures import START, layout_state_machine, rule_label

POLL_LOOP = {
    "StartAt": "Check",
    "States": {
        "Check": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:Check", "Next": "Ready?",
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}]},
        "Ready?": {"Type": "Choice", "Choices": [
            {"Variable": "$.gate.status", "StringEquals": "PASSED", "Next": "Done"},
            {"Variable": "$.gate.status", "StringEquals": "FAILED", "Next": "Failed"}], "Default": "Wait"},
        "Wait": {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "Check"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail"},
    },
}
STEPS = {  # an outer loop around an inner one, like More Steps? -> Approval Needed?
    "StartAt": "Start Step",
    "States": {
        "Start Step": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:S", "Next": "Check"},
        "Check": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:C", "Next": "Healthy?"},
        "Healthy?": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "More?"}],
                     "Default": "Wait"},
        "Wait": {"Type": "Wait", "Seconds": 15, "Next": "Check"},
        "More?": {"Type": "Choice", "Choices": [{"Variable": "$.more", "BooleanEquals": True, "Next": "Start Step"}],
                  "Default": "End"},
        "End": {"Type": "Pass", "End": True},
    },
}
TWO_CATCHERS = {  # like Release Old Pods: a timeout and everything else both caught into one state
    "StartAt": "Release",
    "States": {
        "Release": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:R", "Next": "Done",
                    "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Failed"},
                              {"ErrorEquals": ["States.ALL"], "Next": "Failed"}]},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail"},
    },
}
CASES = [
    ("poll-loop", POLL_LOOP, {("Wait", "Check")}, 6),
    ("nested-loops", STEPS, {("Wait", "Check"), ("More?", "Start Step")}, 7),
    ("two-catchers", TWO_CATCHERS, set(), 2),
]


def _ends(lay, e):
    """The edge's upper and lower box."""
    src, dst = lay.nodes[e.src], lay.nodes[e.dst]
    return (dst, src) if e.back else (src, dst)


@pytest.mark.parametrize("case,definition,loops,transitions", CASES, ids=[c[0] for c in CASES])
def test_layout_places_every_state_once_and_draws_loops_upwards(case, definition, loops, transitions):
    # Given a definition, When it is laid out
    lay = layout_state_machine(definition)
    real = {n.key for n in lay.real()}
    # Then every state is a box (plus Start), exactly once across the rows
    assert real == set(definition["States"]) | {START}
    placed = [n for row in lay.layers for n in row if n in real]
    assert sorted(placed) == sorted(real)
    # And every transition is one arrow (Start's included); exactly the loop-closing ones point up
    assert len(lay.edges) == transitions + 1
    assert len({(e.src, e.dst) for e in lay.edges}) == len(lay.edges)
    assert {(e.src, e.dst) for e in lay.edges if e.back} == loops
    for e in lay.edges:
        src, dst = lay.nodes[e.src], lay.nodes[e.dst]
        assert (dst.layer < src.layer) if e.back else (dst.layer > src.layer), (e.src, e.dst)
    # And each arrow runs from its upper box to its lower one through one point in every row between, and that
    # point lies in a gap of its row, not in a box
    row_y = [lay.nodes[row[0]].y for row in lay.layers]
    assert all(lay.nodes[n].y == y for row, y in zip(lay.layers, row_y) for n in row)
    for e in lay.edges:
        top, bottom = _ends(lay, e)
        assert e.route[0] == (top.x, top.y) and e.route[-1] == (bottom.x, bottom.y), (e.src, e.dst)
        assert [y for _, y in e.route] == row_y[top.layer:bottom.layer + 1], (e.src, e.dst)
        for (x, _), row in zip(e.route[1:-1], lay.layers[top.layer + 1:]):
            assert all(abs(x - lay.nodes[n].x) >= lay.nodes[n].w / 2 for n in row), (e.src, e.dst, row)
    # And boxes in a row never overlap
    for row in lay.layers:
        boxes = sorted((lay.nodes[n] for n in row if n in real), key=lambda n: n.x)
        for a, b in zip(boxes, boxes[1:]):
            assert b.x - a.x >= (a.w + b.w) / 2


def test_layout_keeps_a_self_loop_and_a_state_nothing_reaches():
    # Given a Choice that can go back to itself, and a state no transition reaches
    definition = {"StartAt": "Again?", "States": {
        "Again?": {"Type": "Choice", "Choices": [{"Variable": "$.again", "BooleanEquals": True, "Next": "Again?"}],
                   "Default": "Done"},
        "Done": {"Type": "Succeed"},
        "Stray": {"Type": "Fail"},
    }}
    # When it is laid out
    lay = layout_state_machine(definition)
    # Then every state is placed once, the stray one beside the rest without overlapping them
    placed = [n for row in lay.layers for n in row]
    assert sorted(placed) == sorted([START, "Again?", "Done", "Stray"])
    for row in lay.layers:
        boxes = [lay.nodes[n] for n in row]
        for a, b in zip(boxes, boxes[1:]):
            assert b.x - a.x >= (a.w + b.w) / 2
    # And the self-loop is one arrow at its box, beside the other two
    assert [(e.src, e.dst) for e in lay.edges] == [(START, "Again?"), ("Again?", "Again?"), ("Again?", "Done")]
    loop = lay.nodes["Again?"]
    assert lay.edges[1].route == [(loop.x, loop.y)]


RULES = [
    ("string", {"Variable": "$.gate.status", "StringEquals": "PASSED"}, "gate.status = PASSED"),
    ("boolean-true", {"Variable": "$.more_steps", "BooleanEquals": True}, "more_steps"),
    ("boolean-false", {"Variable": "$.ok", "BooleanEquals": False}, "not ok"),
    ("numeric", {"Variable": "$.n", "NumericGreaterThan": 3}, "n > 3"),
    ("compound", {"And": [{"Variable": "$.a", "IsPresent": True}, {"Variable": "$.b", "StringEquals": "x"}]},
     "Rule #2"),
    ("guarded-comparison", {"And": [{"Variable": "$.preflight", "IsPresent": True},
                                    {"Variable": "$.preflight", "StringEquals": "WAITING_FOR_DESCRIBE_TURN"}]},
     "preflight = WAITING_FOR_DESCRIBE_TURN"),
    ("or-of-one-variable", {"Or": [{"Variable": "$.drain.status", "StringEquals": "PASSED"},
                                   {"Variable": "$.drain.status", "StringEquals": "DRAINING"}]},
     "drain.status = PASSED or DRAINING"),
    ("or-of-two-variables", {"Or": [{"Variable": "$.a", "StringEquals": "x"}, {"Variable": "$.b", "StringEquals": "y"}]},
     "Rule #2"),
]


@pytest.mark.parametrize("case,rule,label", RULES, ids=[r[0] for r in RULES])
def test_choice_rules_read_as_short_labels(case, rule, label):
    assert rule_label({**rule, "Next": "X"}, 2) == label
