"""Several executions of one state machine at once, on one simulated world, as the service runs them.

Job: ``Interleaver(machine, world).run(starts)`` starts each execution at its simulated time and lets them run
concurrently in simulated time: whenever one of them waits (a Wait state, a Retry backoff, the time its Lambda
takes: anything that calls ``clock.sleep``), the world advances to the earliest moment something is due (another
execution's wake-up or start) and that one goes on. It returns every execution's result, in the order given.
This is how N rollouts in one account are measured in one world (one cluster, one controller, one Describe*
bucket) instead of being replayed one by one.

Invariants:
  * One thing runs at a time: the coordinator (the calling thread, the only one that advances the world) or
    exactly one execution's interpreter thread, which holds the turn until it sleeps or ends. Handlers therefore
    see a world that nobody changes under them, exactly as in a single run.
  * Deterministic: wake-ups at the same simulated instant go in the order they were scheduled, starts at the
    same instant in the order given; nothing depends on the host's thread timing.
  * The executions share the world's clock, so a Wait in one overlaps the others' work instead of adding up.
  * Real time guards against a hang: an execution that neither sleeps nor ends within ``real_timeout_seconds``
    of real time stops the whole run with LocalRunnerError (and every execution is released).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from albgate.sfn_local.runner import (
    ExecutionResult,
    Invoke,
    LocalRunnerError,
    LocalStateMachine,
    OnTaskToken,
    _Run,
)


class World(Protocol):
    """What the interleaver needs of the simulated world: its time, and a way to process events up to a time."""

    def now(self) -> float: ...

    def run_until(self, t: float) -> None: ...


@dataclass(frozen=True)
class Start:
    """One execution to start at simulated time ``at`` with ``input``, named ``name`` (names must differ)."""

    at: float
    input: Any
    name: str


class TurnClock:
    """The clock every interleaved execution runs on: ``sleep`` gives the turn back to the coordinator until the
    world reaches the wake-up time. ``now`` is the world's."""

    def __init__(self, interleaver: "Interleaver") -> None:
        self._interleaver = interleaver

    def now(self) -> float:
        return self._interleaver.world.now()

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise LocalRunnerError(f"cannot sleep {seconds} s")
        self._interleaver._yield_until(self.now() + seconds)


# How the caller builds an execution's invoke hook: given the shared clock, return the hook (or None: the
# machine's). The hook charges its Lambda time with clock.sleep, so other executions run meanwhile.
InvokeFactory = Callable[[TurnClock], Invoke | None]


class Interleaver:
    def __init__(
        self,
        machine: LocalStateMachine,
        world: World,
        *,
        invoke: InvokeFactory | None = None,
        on_task_token: OnTaskToken | None = None,
        real_timeout_seconds: float = 120.0,
        on_end: Callable[[int, ExecutionResult], None] | None = None,
    ) -> None:
        self.machine = machine
        self.world = world
        self.clock = TurnClock(self)
        self._invoke = invoke(self.clock) if invoke is not None else None
        self._on_task_token = on_task_token
        self.real_timeout_seconds = real_timeout_seconds
        self._on_end = on_end
        self._queue: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._closed = False
        self._yielded = threading.Event()

    # --- called on the current execution's thread ------------------------------------------------------
    def _yield_until(self, wake: float) -> None:
        run = self.machine.current_run  # begin() makes a run current before its thread starts
        if run is None or self._closed:
            raise LocalRunnerError("an interleaved execution slept while no run held the turn")
        resume = threading.Event()
        heapq.heappush(self._queue, (wake, next(self._seq), (run, resume)))
        self._yielded.set()
        resume.wait()
        if self._closed:  # released by the coordinator (it failed or is closing)
            raise LocalRunnerError("the interleaved run was stopped")

    # --- the coordinator -------------------------------------------------------------------------------
    def run(self, starts: Sequence[Start]) -> list[ExecutionResult]:
        names = [s.name for s in starts]
        if len(set(names)) != len(names):
            raise LocalRunnerError(f"execution names must differ: {names}")
        for index, start in enumerate(starts):
            heapq.heappush(self._queue, (start.at, next(self._seq), index))
        results: list[ExecutionResult | None] = [None] * len(starts)
        runs: dict[int, _Run] = {}
        index_of: dict[int, int] = {}
        try:
            while self._queue:
                at, _, item = heapq.heappop(self._queue)
                if at > self.world.now():
                    self.world.run_until(at)
                if isinstance(item, int):
                    start = starts[item]
                    run = self.machine.begin(
                        start.input, start.name, clock=self.clock, invoke=self._invoke,
                        on_task_token=self._on_task_token,
                    )
                    runs[item], index_of[id(run)] = run, item
                else:
                    run, resume = item
                    self.machine.serve(run)
                    resume.set()
                if self._wait_for_turn(run):
                    i = index_of[id(run)]
                    results[i] = self.machine.result(run)
                    self.machine.end(run)
                    del runs[i]
                    if self._on_end is not None:
                        self._on_end(i, results[i])
            if runs:
                raise LocalRunnerError(f"executions {sorted(starts[i].name for i in runs)} are neither running nor "
                                       "waiting on the clock (an unanswered task token?)")
        finally:
            self._closed = True
            for wake in self._queue:  # wake every sleeper so its thread can end
                if not isinstance(wake[2], int):
                    wake[2][1].set()
            for run in runs.values():
                self.machine.end(run)
            self._queue.clear()
        return [r for r in results if r is not None]

    def _wait_for_turn(self, run: _Run) -> bool:
        """Wait until ``run`` sleeps (False) or ends (True)."""
        deadline = time.monotonic() + self.real_timeout_seconds
        pause = 0.0002
        while True:
            if self._yielded.wait(pause):
                self._yielded.clear()
                return False
            if not self.machine.running(run):
                # it may have slept just before its status changed: a sleep is a turn, not an end
                if self._yielded.is_set():
                    self._yielded.clear()
                    return False
                return True
            if time.monotonic() > deadline:
                raise LocalRunnerError(f"execution {run.name!r} held the turn for {self.real_timeout_seconds} s "
                                       "of real time without sleeping or ending")
            pause = min(pause * 2, 0.002)
