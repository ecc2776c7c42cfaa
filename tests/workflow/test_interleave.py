"""Several executions of the tiny state machine (conftest.py) interleaved on one simulated world.

The world here is a clock with a list of scheduled events: what matters is that executions overlap in simulated
time (a Wait in one does not delay the others), that the world only moves forward, and that the order is the
same on every run.
"""

from __future__ import annotations

import pytest

from albgate.sfn_local.extract import ExtractedMachine
from albgate.sfn_local.interleave import Interleaver, Start
from albgate.sfn_local.runner import LocalRunnerError, LocalStateMachine, TaskTokenRequest
from tests.workflow.conftest import VirtualClock

T0 = 1_700_000_000.0


class EventWorld:
    """A world whose only events are the ones a test schedules; it records every time it was advanced to."""

    def __init__(self) -> None:
        self.t = T0
        self.advanced_to: list[float] = []
        self.events: list[tuple[float, str]] = []
        self.seen: list[tuple[float, str]] = []

    def now(self) -> float:
        return self.t

    def run_until(self, t: float) -> None:
        assert t >= self.t, f"the world was moved back from {self.t} to {t}"
        for at, what in sorted(self.events):
            if self.t < at <= t:
                self.seen.append((at - T0, what))
        self.t = t
        self.advanced_to.append(t - T0)


def approve(request: TaskTokenRequest) -> None:
    request.succeed({"approved_by": "test"})


@pytest.fixture(scope="module")
def machine(tiny_machine: ExtractedMachine):
    with LocalStateMachine(tiny_machine, VirtualClock(), on_task_token=approve) as opened:
        yield opened


def starts(*spec: tuple[float, int, int]) -> list[Start]:
    """(start second, polls needed, wait seconds) per execution."""
    return [Start(T0 + at, {"run_id": f"r{i}", "polls_needed": polls, "wait_seconds": wait}, f"run-{i}")
            for i, (at, polls, wait) in enumerate(spec)]


def test_waits_overlap_instead_of_adding_up(machine):
    # Given three executions started at 0, 10 and 20 s, each polling three times with 100 s waits
    world = EventWorld()
    # When they are interleaved on one world
    results = Interleaver(machine, world).run(starts((0, 3, 100), (10, 3, 100), (20, 3, 100)))
    # Then each took its own 200 s of waits, from its own start, and the world ran 220 s, not 600
    assert [r.status for r in results] == ["SUCCEEDED"] * 3
    assert [r.started_at - T0 for r in results] == [0, 10, 20]
    assert [r.simulated_seconds for r in results] == [200, 200, 200]
    assert world.t - T0 == 220
    # and the world only moved forward, through every execution's wake-up in time order
    assert world.advanced_to == sorted(world.advanced_to)
    assert {100, 110, 120, 200, 210, 220} <= set(world.advanced_to)


def test_a_world_event_falls_between_two_executions_steps(machine):
    # Given a world event at 50 s and two executions that wait 100 s and 30 s between polls
    world = EventWorld()
    world.events.append((T0 + 50, "controller reconciles"))
    # When they run together
    results = Interleaver(machine, world).run(starts((0, 2, 100), (0, 3, 30)))
    # Then the event happened once, at its time, while both were running, and both ended on their own schedule
    assert world.seen == [(50, "controller reconciles")]
    assert [r.simulated_seconds for r in results] == [100, 60]


def test_the_same_starts_give_the_same_interleaving(machine):
    # Given the same starts twice, with ties in time (two executions start at 0 and wake at 60 together)
    def invocation_order() -> list[tuple[str, float]]:
        world = EventWorld()
        results = Interleaver(machine, world).run(starts((0, 2, 60), (0, 2, 60), (5, 2, 55)))
        return sorted(((r.name, i.at - T0, i.function_logical_id) for r in results for i in r.invocations),
                      key=lambda x: (x[1], x[0]))

    # When each is run / Then the invocations come at the same times in the same order
    assert invocation_order() == invocation_order()


def test_an_executions_lambda_time_lets_the_others_run(machine):
    # Given every Lambda invocation charged 2 s on the shared clock, and two executions with one poll each
    def charged(clock):
        def invoke(logical_id, handler, event):
            clock.sleep(2)
            return machine.invoke_handler(logical_id, handler, event)
        return invoke

    world = EventWorld()
    # When both start at 0
    results = Interleaver(machine, world, invoke=charged).run(starts((0, 1, 10), (0, 1, 10)))
    # Then each took its own invocations' time (not the sum of both), as two concurrent executions would
    (one, two) = results
    assert one.simulated_seconds == two.simulated_seconds == 2 * len(one.invocations)
    assert world.t - T0 == 2 * len(one.invocations)


def test_execution_names_must_differ(machine):
    # Given two starts with the same name / When interleaved / Then it refuses before starting anything
    same = [Start(T0, {"run_id": "a", "polls_needed": 1, "wait_seconds": 1}, "twin")] * 2
    with pytest.raises(LocalRunnerError, match="names must differ"):
        Interleaver(machine, EventWorld()).run(same)
