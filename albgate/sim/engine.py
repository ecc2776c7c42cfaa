"""The discrete-event core: a virtual clock and a heap of timed events.

Job: run callbacks in time order on a virtual clock, so an hour of rollout costs only the events in it.
Invariant: time never goes backwards; events at the same instant run in the order they were scheduled;
before each event the ``before_event`` hook runs with the event's time (the simulation uses it to deliver
the requests that arrived up to that instant against the state as it was), and after each event every
observer runs (the oracle strategy reacts there, in zero virtual time).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

# Virtual epoch of a simulation's t=0: 2026-01-01T00:00:00Z, so clock.now() looks like real epoch seconds.
EPOCH = 1_767_225_600.0


class Event:
    __slots__ = ("time", "seq", "fn", "args", "alive")

    def __init__(self, time: float, seq: int, fn: Callable[..., Any], args: tuple) -> None:
        self.time, self.seq, self.fn, self.args, self.alive = time, seq, fn, args, True

    def __lt__(self, other: "Event") -> bool:
        return (self.time, self.seq) < (other.time, other.seq)

    def cancel(self) -> None:
        self.alive = False


class VirtualClock:
    """The ``Clock`` port: ``now()`` returns virtual epoch seconds."""

    def __init__(self, start: float = EPOCH) -> None:
        self.start = start
        self.t = start

    def now(self) -> float:
        return self.t

    @property
    def elapsed(self) -> float:
        return self.t - self.start


class EventLoop:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._heap: list[Event] = []
        self._seq = 0
        self.events_run = 0
        self.before_event: Callable[[float], None] = lambda t: None
        self.observers: list[Callable[[], None]] = []

    def at(self, time: float, fn: Callable[..., Any], *args: Any) -> Event:
        """Schedule fn(*args) at an absolute virtual time (never earlier than now)."""
        self._seq += 1
        ev = Event(max(time, self.clock.t), self._seq, fn, args)
        heapq.heappush(self._heap, ev)
        return ev

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> Event:
        return self.at(self.clock.t + delay, fn, *args)

    def next_time(self) -> float | None:
        while self._heap and not self._heap[0].alive:
            heapq.heappop(self._heap)
        return self._heap[0].time if self._heap else None

    def step(self, until: float) -> bool:
        """Run the next live event if it is due by ``until``; False when there is none."""
        heap = self._heap
        while heap:
            ev = heap[0]
            if not ev.alive:
                heapq.heappop(heap)
                continue
            if ev.time > until:
                return False
            heapq.heappop(heap)
            self.before_event(ev.time)
            self.clock.t = ev.time
            self.events_run += 1
            ev.fn(*ev.args)
            for obs in self.observers:
                obs()
            return True
        return False

    def run_until(self, until: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to ``until`` (then set the clock there); with ``stop``, return True as soon as
        stop() holds after an event (the clock stays at that event)."""
        if stop is not None and stop():
            return True
        while self.step(until):
            if stop is not None and stop():
                return True
        if until > self.clock.t:
            self.before_event(until)
            self.clock.t = until
        return False
