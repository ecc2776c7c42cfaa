"""Several executions at once, on one simulated world, as the service runs them.

Job: ``Interleaver(machine, world).run(starts)`` starts each execution at its simulated time and lets them run
concurrently in simulated time: whenever one of them waits (a Wait state, a Retry backoff, the time its Lambda
takes: anything that calls ``clock.sleep``), the world advances to the earliest moment something is due (another
execution's wake-up or start) and that one goes on. It returns every execution's result, in index order.
This is how N rollouts in one account are measured in one world (one cluster, one controller, one Describe*
bucket) instead of being replayed one by one.

An execution may start others while it holds the turn (``interleaver.start(Start(...))`` from a handler or an
``invoke`` hook, as a parent state machine starts its children), of the machine's main state machine or of a
companion (``Start.state_machine``), and poll them with ``result_of(index)``. Indices number executions in the
order they were registered: ``start`` calls made before ``run``, then ``run``'s starts, then those started while
it runs.

Invariants:
  * One thing runs at a time: the coordinator (the calling thread, the only one that advances the world) or
    exactly one execution's interpreter thread, which holds the turn until it sleeps or ends. Handlers therefore
    see a world that nobody changes under them, exactly as in a single run.
  * Deterministic: wake-ups at the same simulated instant go in the order they were scheduled, starts at the
    same instant in the order they were made; nothing depends on the host's thread timing.
  * Execution names are unique across everything one interleaver runs (given or started later).
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
    """One execution to start at simulated time ``at`` with ``input``, named ``name`` (names must differ), of
    ``state_machine`` (a logical id known to the machine; None: its main state machine)."""

    at: float
    input: Any
    name: str
    state_machine: str | None = None


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
        self._running = False
        self._yielded = threading.Event()
        self._starts: list[Start] = []  # by index
        self._results: list[ExecutionResult | None] = []  # by index; None until the execution ended
        self._lock = threading.Lock()  # start() may come from an interpreter thread: keep registration atomic

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

    # --- starting executions ---------------------------------------------------------------------------
    def start(self, start: Start) -> int:
        """Schedule ``start`` and return its index. Call it before ``run``, or while ``run`` goes on from whatever
        holds the turn (a running execution's handler or ``invoke`` hook, ``on_end``, the world's events): the
        execution begins at ``max(start.at, world.now())``, after everything already due at that instant.

        A name already taken or an unknown state machine raises LocalRunnerError; raised during ``run``, it is
        also recorded against the execution holding the turn, so ``run`` fails loudly even if a handler
        swallows it (a test's mistake must not pass for a state machine failure)."""
        with self._lock:
            try:
                if self._closed:
                    raise LocalRunnerError("this interleaver's run has ended: start executions before or during it")
                return self._register(start, max(start.at, self.world.now()))
            except LocalRunnerError as exc:
                current = self.machine.current_run if self._running else None
                if current is not None:
                    current.errors.append(exc)
                raise

    def result_of(self, index: int) -> ExecutionResult | None:
        """The result of execution ``index``, or None while it has not ended (or not begun)."""
        if not 0 <= index < len(self._results):
            raise LocalRunnerError(f"no execution {index}: {len(self._results)} registered")
        return self._results[index]

    def _register(self, start: Start, at: float) -> int:
        self.machine.state_machine_id(start.state_machine)  # unknown -> LocalRunnerError naming the known ones
        if any(s.name == start.name for s in self._starts):
            raise LocalRunnerError(f"execution names must differ: {start.name!r} is already taken")
        index = len(self._starts)
        self._starts.append(start)
        self._results.append(None)
        heapq.heappush(self._queue, (at, next(self._seq), index))
        return index

    # --- the coordinator -------------------------------------------------------------------------------
    def run(self, starts: Sequence[Start]) -> list[ExecutionResult]:
        """Run the executions registered with ``start`` and ``starts`` (and any they start) to their ends; return
        every result in index order. ``on_end(index, result)`` is called as each one ends."""
        if self._closed or self._running:
            raise LocalRunnerError("an Interleaver runs once: build a new one")
        names = [s.name for s in starts]
        taken = {s.name for s in self._starts}
        if len(set(names)) != len(names) or taken & set(names):
            raise LocalRunnerError(f"execution names must differ: {names} (already started: {sorted(taken)})")
        with self._lock:
            for start in starts:
                self._register(start, start.at)
        self._running = True
        outer = self.machine.current_run  # served again at the end, so the machine is usable after the run
        runs: dict[int, _Run] = {}
        index_of: dict[int, int] = {}
        try:
            while self._queue:
                at, _, item = heapq.heappop(self._queue)
                if at > self.world.now():
                    self.world.run_until(at)
                if isinstance(item, int):
                    start = self._starts[item]
                    run = self.machine.begin(
                        start.input, start.name, clock=self.clock, invoke=self._invoke,
                        on_task_token=self._on_task_token, state_machine=start.state_machine,
                    )
                    runs[item], index_of[id(run)] = run, item
                else:
                    run, resume = item
                    self.machine.serve(run)
                    resume.set()
                if self._wait_for_turn(run):
                    i = index_of[id(run)]
                    self._results[i] = self.machine.result(run)
                    self.machine.end(run)
                    del runs[i]
                    if self._on_end is not None:
                        self._on_end(i, self._results[i])
            if runs:
                raise LocalRunnerError(f"executions {sorted(self._starts[i].name for i in runs)} are neither "
                                       "running nor waiting on the clock (an unanswered task token?)")
        finally:
            with self._lock:
                self._closed = True
                self._running = False
            for wake in self._queue:  # wake every sleeper so its thread can end
                if not isinstance(wake[2], int):
                    wake[2][1].set()
            for run in runs.values():
                self.machine.end(run)
            self._queue.clear()
            self.machine.serve(outer)
        return [r for r in self._results if r is not None]

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
