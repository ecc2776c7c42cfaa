"""The simulated CloudWatch: the account's metric alarms, in the states the scenario's ``faults.alarms`` gives them.

Job: answer DescribeAlarms and DescribeAlarmHistory (``AlarmPort``, through ``albgate.sim.ports.SimAlarms``) as
CloudWatch does for the alarms a scenario names: each exists from the start of the world and is OK outside its
windows, in the window's state inside, with the time its state last changed (StateTransitionedTimestamp) and one
history item per change; an answer holds at most ``ALARM_PAGE`` alarms or changes and says when there were more
(docs/facts.md, "CloudWatch alarms albgate watches"). Calls take no virtual time and are counted per operation.

Invariant: what an alarm shows at a time is a function of the scenario alone (no randomness, nothing kept between
calls but the counters), so the same scenario answers the same, and no call sees a state change later than the
world's clock.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from albgate.sim.engine import EPOCH
from lambdas.domain.ports import ALARM_PAGE, OK, Alarm, AlarmPage, StateChange, StateChanges

if TYPE_CHECKING:
    from albgate.sim.simulation import Simulation

# The state an alarm shows before its first window: OK since before the world began.
BEFORE_THE_WORLD = EPOCH - 86_400.0
REASONS = {
    "ALARM": "Threshold Crossed (simulated: faults.alarms)",
    "INSUFFICIENT_DATA": "Insufficient Data (simulated: faults.alarms)",
    OK: "",
}


@dataclass(frozen=True)
class Interval:
    start: float  # epoch seconds
    end: float  # epoch seconds; inf: until the end
    state: str


class SimCloudWatch:
    """The alarms of one simulated world; ``calls`` counts DescribeAlarms and DescribeAlarmHistory."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.calls: Counter[str] = Counter()
        self.timelines: dict[str, list[Interval]] = {}
        windows: dict[str, list[Interval]] = {}
        for w in sim.scenario.faults.alarms:
            start = sim.rel_to_abs(w.at_seconds)
            end = math.inf if w.duration_seconds is None else start + w.duration_seconds
            windows.setdefault(w.name, []).append(Interval(start, end, w.state))
        for name, ws in windows.items():
            timeline, t = [], BEFORE_THE_WORLD
            for w in sorted(ws, key=lambda w: w.start):
                if w.start > t:
                    timeline.append(Interval(t, w.start, OK))
                timeline.append(w)
                t = w.end
            if t < math.inf:
                timeline.append(Interval(t, math.inf, OK))
            self.timelines[name] = timeline

    def alarm(self, name: str, at: float) -> Alarm:
        """The alarm as DescribeAlarms shows it at epoch ``at``."""
        now = next(i for i in self.timelines[name] if i.start <= at < i.end)
        return Alarm(name, now.state, now.start, REASONS[now.state])

    def describe_alarms(
        self, *, names: tuple[str, ...] = (), prefix: str | None = None, state: str | None = None
    ) -> AlarmPage:
        self.calls["DescribeAlarms"] += 1
        if names and prefix is not None:
            raise ValueError("DescribeAlarms takes AlarmNames or AlarmNamePrefix, not both")
        picked = [n for n in sorted(self.timelines)
                  if (n in names if names else prefix is None or n.startswith(prefix))]
        alarms = [a for a in (self.alarm(n, self.sim.clock.now()) for n in picked) if state is None or a.state == state]
        return AlarmPage(tuple(alarms[:ALARM_PAGE]), more=len(alarms) > ALARM_PAGE)

    def state_changes(self, name: str, start: float, end: float) -> StateChanges:
        """The alarm's changes within [start, end] that have happened by now, newest first (DescribeAlarmHistory,
        HistoryItemType StateUpdate, ScanBy TimestampDescending)."""
        self.calls["DescribeAlarmHistory"] += 1
        timeline = self.timelines.get(name, [])
        end = min(end, self.sim.clock.now())
        changes = [StateChange(after.start, before.state, after.state)
                   for before, after in zip(timeline, timeline[1:]) if start <= after.start <= end]
        changes.sort(key=lambda c: c.at, reverse=True)
        return StateChanges(tuple(changes[:ALARM_PAGE]), more=len(changes) > ALARM_PAGE)


_WORLDS: weakref.WeakKeyDictionary[Simulation, SimCloudWatch] = weakref.WeakKeyDictionary()


def cloudwatch_of(sim: "Simulation") -> SimCloudWatch:
    """The one simulated CloudWatch of ``sim`` (made on first use, kept as long as the world)."""
    if sim not in _WORLDS:
        _WORLDS[sim] = SimCloudWatch(sim)
    return _WORLDS[sim]
