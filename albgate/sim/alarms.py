"""The simulated CloudWatch: the account's metric alarms, in the states the scenario's ``faults.alarms`` gives them,
or evaluating the app's target group's ALB metrics (``metrics.alarms``).

Job: answer DescribeAlarms and DescribeAlarmHistory (``AlarmPort``, through ``albgate.sim.ports.SimAlarms``) as
CloudWatch does for the alarms a scenario names: each exists from the start of the world and is OK outside its
windows, in the window's state inside, with the time its state last changed (StateTransitionedTimestamp) and one
history item per change; an answer holds at most ``ALARM_PAGE`` alarms or changes and says when there were more
(docs/facts.md, "CloudWatch alarms albgate watches"). Calls take no virtual time and are counted per operation.

A metric alarm evaluates each time a period of its metric is published (albgate/sim/metrics.py: m + 60 + the
publication delay): ALARM when each of its last ``evaluation_periods`` published periods is above its threshold
(GreaterThanThreshold; a period without a datapoint does not breach, TreatMissingData notBreaching), else OK. What it
does not model: other comparison operators, M-of-N evaluation, statistics other than the period's Sum (counts) or
Average (TargetResponseTime), and CloudWatch's own evaluation delay.

Invariant: what a window alarm shows at a time is a function of the scenario alone, and what a metric alarm shows of
the metrics published by then (no randomness of its own), so the same run answers the same, and no call sees a
state change later than the world's clock.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from albgate.sim.engine import EPOCH
from lambdas.domain.ports import ALARM, ALARM_PAGE, OK, Alarm, AlarmPage, StateChange, StateChanges

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
        self.metric_alarms = {a.name: a for a in sim.scenario.metrics.alarms}
        for name in self.metric_alarms:
            self.timelines[name] = [Interval(BEFORE_THE_WORLD, math.inf, OK)]
        self.reasons: dict[str, str] = {}
        self._next_period: float | None = None  # the next period whose publication has not been evaluated yet

    # --- metric alarms ----------------------------------------------------------------------------------------
    def _value(self, rows: dict[float, list[float]], start: float, metric: str) -> float | None:
        from albgate.sim.metrics import ANSWERED, REQUESTS, TARGET_5XX, TIME_SUM

        row = rows.get(start)
        if row is None or row[REQUESTS] == 0:
            return None
        if metric == "RequestCount":
            return row[REQUESTS]
        if metric == "HTTPCode_Target_5XX_Count":
            return row[TARGET_5XX] if row[TARGET_5XX] else None  # no 5xx: no datapoint, as the ALB reports
        return row[TIME_SUM] / row[ANSWERED] if row[ANSWERED] else None

    def _advance(self, now: float) -> None:
        """Apply every evaluation instant of the metric alarms up to ``now``: one per published period."""
        if not self.metric_alarms:
            return
        from albgate.sim.metrics import period_start

        metrics = self.sim.metrics
        delay = metrics.delay
        tgs = self.sim.traffic.tgs
        group = metrics.groups.get(tgs[0].arn) if tgs else None
        if self._next_period is None:
            self._next_period = period_start(EPOCH)
        while self._next_period + 60 + delay <= now:
            m = self._next_period
            at = m + 60 + delay
            for name, spec in self.metric_alarms.items():
                starts = [m - 60 * k for k in range(spec.evaluation_periods)]
                values = [None if group is None else self._value(group.periods, s, spec.metric) for s in starts]
                breaching = all(v is not None and v > spec.threshold for v in values)
                state = ALARM if breaching else OK
                timeline = self.timelines[name]
                if timeline[-1].state != state:
                    last = timeline[-1]
                    timeline[-1] = Interval(last.start, at, last.state)
                    timeline.append(Interval(at, math.inf, state))
                    self.reasons[name] = (
                        f"Threshold Crossed (simulated: {spec.metric} above {spec.threshold:g} in the last "
                        f"{spec.evaluation_periods} period(s))" if breaching else "")
            self._next_period = m + 60

    def alarm(self, name: str, at: float) -> Alarm:
        """The alarm as DescribeAlarms shows it at epoch ``at``."""
        self._advance(self.sim.clock.now())
        now = next(i for i in self.timelines[name] if i.start <= at < i.end)
        reason = self.reasons.get(name, "") if name in self.metric_alarms else REASONS[now.state]
        return Alarm(name, now.state, now.start, reason)

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
        self._advance(self.sim.clock.now())
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
