"""The ALB's CloudWatch metrics of each target group, as GetMetricData shows them (``MetricsPort``).

Job: count, per target group and per 60 s period aligned to multiples of 60 epoch seconds, what the clients'
requests did (``albgate.sim.traffic`` records them as it routes them), and answer ``target_group_minutes`` with the
periods CloudWatch has published by the world's clock:
- RequestCount: every request the load balancer routed to the group, whatever became of it;
- HTTPCode_Target_5XX_Count: the requests a target answered 5xx (a broken version's 500s, and the share a pod's
  error rate answers badly);
- TargetResponseTime, Average and Maximum: the duration of the requests a target answered (5xx included).
A period [m, m + 60) is visible from m + 60 + ``metrics.publication_delay_seconds``; a period without requests is
absent, as the ALB reports nothing for it. A request counts in the period it arrived in.
What is not modelled: RequestCount here also counts the requests the ALB answered 503 itself for want of a
routable target (before choosing one); a request cut in flight later (SIGKILL, the deregistration delay) stays in
its period's response time with its full duration; TargetResponseTime is the whole request's duration, not the
time to the response's first byte; the AvailabilityZone dimension, percentiles, the other metrics (the ALB's own
5xx among them) and throttling of GetMetricData are absent.
Invariant: a count once made never changes, and a call never shows a period before it is published.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from lambdas.domain.ports import METRIC_PERIOD_SECONDS, MetricMinute

if TYPE_CHECKING:
    from albgate.sim.alb import TargetGroupSim

# One period's counters, a list the traffic loop updates in place (indices below).
REQUESTS, TARGET_5XX, TIME_SUM, ANSWERED, TIME_MAX = range(5)


def period_start(t: float) -> float:
    """The start of the 60 s period holding epoch time ``t`` (exact: fmod and the difference are exact)."""
    return t - math.fmod(t, METRIC_PERIOD_SECONDS)


def new_row() -> list[float]:
    return [0, 0, 0.0, 0, 0.0]


def published(start: float, now: float, delay: float) -> bool:
    """The period starting at ``start`` is visible in CloudWatch at ``now``."""
    return start + METRIC_PERIOD_SECONDS + delay <= now


def minute_of(start: float, row: list[float]) -> MetricMinute | None:
    """What GetMetricData shows for one period's counters; None for a period without requests."""
    if row[REQUESTS] == 0:
        return None
    answered = row[ANSWERED]
    return MetricMinute(
        start=start, requests=float(row[REQUESTS]), target_5xx=float(row[TARGET_5XX]),
        response_time=row[TIME_SUM] / answered if answered else None,
        response_time_max=row[TIME_MAX] if answered else None,
    )


class GroupMetrics:
    """One target group's periods, keyed by their start; ``lb_arns`` are its load balancers (DescribeTargetGroups
    LoadBalancerArns), the LoadBalancer dimension its metrics carry."""

    __slots__ = ("arn", "lb_arns", "periods")

    def __init__(self, arn: str, lb_arns: tuple[str, ...]) -> None:
        self.arn, self.lb_arns = arn, lb_arns
        self.periods: dict[float, list[float]] = {}

    def row(self, start: float) -> list[float]:
        """The counters of the period starting at ``start``, made empty on first use."""
        row = self.periods.get(start)
        if row is None:
            row = self.periods[start] = new_row()
        return row


class AlbMetrics:
    """The world's ALB metrics: every target group's periods, and the GetMetricData calls made (``calls``)."""

    def __init__(self, publication_delay_seconds: float) -> None:
        self.delay = publication_delay_seconds
        self.groups: dict[str, GroupMetrics] = {}
        self.calls: Counter[str] = Counter()

    def group(self, tg: "TargetGroupSim") -> GroupMetrics:
        """The periods of ``tg`` (made on first use)."""
        g = self.groups.get(tg.arn)
        if g is None:
            g = self.groups[tg.arn] = GroupMetrics(tg.arn, tg.lb_arns)
        return g

    def minutes(self, target_group_arn: str, load_balancer_arn: str, start: float, end: float,
                now: float) -> list[MetricMinute]:
        """One GetMetricData request: the periods starting in [start, end) published at ``now``, oldest first."""
        self.calls["GetMetricData"] += 1
        g = self.groups.get(target_group_arn)
        if g is None:
            raise ValueError(f"{target_group_arn} is not a target group of this load balancer's world")
        if load_balancer_arn not in g.lb_arns:
            raise ValueError(f"{load_balancer_arn} is not the load balancer of {target_group_arn} "
                             f"(its LoadBalancerArns: {', '.join(g.lb_arns)})")
        out = []
        for s in sorted(g.periods):
            if start <= s < end and published(s, now, self.delay):
                m = minute_of(s, g.periods[s])
                if m is not None:
                    out.append(m)
        return out
