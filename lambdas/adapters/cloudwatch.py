"""CloudWatch adapter: the metric alarms a rollout's policy names (``AlarmPort``) and a target group's ALB metrics
(``MetricsPort``), read through boto3.

Job: one DescribeAlarms request per ``describe_alarms`` call (``AlarmTypes`` MetricAlarm, ``MaxRecords`` 100, never a
second page: the caller decides what a page that says "more" means) and one DescribeAlarmHistory request per
``state_changes`` call (the alarm's ``StateUpdate`` items in the window, newest first, one page of 100), each
answer turned into the port's frozen values (docs/facts.md, "CloudWatch alarms albgate watches").

Invariant: nothing but domain errors leaves this module (the ELB adapter's mapping: a throttled call is retried
inside botocore, then becomes ``ThrottledError``); the client is made on the first call, so a function whose
rollout names no alarm never builds it.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.ports import (
    ALARM_PAGE,
    METRIC_PERIOD_SECONDS,
    Alarm,
    AlarmPage,
    MetricMinute,
    StateChange,
    StateChanges,
)

# Metric alarms only: reading composite alarms takes cloudwatch:DescribeAlarms on "*", and albgate's grant is
# narrower (docs/facts.md, "CloudWatch alarms albgate watches").
ALARM_TYPES = ["MetricAlarm"]
# HistorySummary of a state change, as CloudWatch writes it: "Alarm updated from OK to ALARM".
_SUMMARY = re.compile(r"from (?P<old>[A-Z_]+) to (?P<new>[A-Z_]+)")


# The ALB's metrics a target group's analysis reads: (query id, metric name, statistic).
ALB_NAMESPACE = "AWS/ApplicationELB"
ALB_METRICS = (
    ("requests", "RequestCount", "Sum"),
    ("target5xx", "HTTPCode_Target_5XX_Count", "Sum"),
    ("latency", "TargetResponseTime", "Average"),
    ("latencymax", "TargetResponseTime", "Maximum"),
)


def dimension_value(arn: str, marker: str) -> str:
    """The ALB metrics' dimension value of a target group or load balancer ARN: what follows ``:targetgroup/``
    (``targetgroup/<name>/<id>``) or ``:loadbalancer/`` (``app/<name>/<id>``)."""
    head, sep, tail = arn.partition(f":{marker}/")
    if not sep or not tail:
        raise ValueError(f"{arn!r} is not an ELB {marker} ARN")
    return tail if marker == "loadbalancer" else f"{marker}/{tail}"


def metric_queries(target_group_arn: str, load_balancer_arn: str) -> list[dict[str, Any]]:
    dimensions = [{"Name": "TargetGroup", "Value": dimension_value(target_group_arn, "targetgroup")},
                  {"Name": "LoadBalancer", "Value": dimension_value(load_balancer_arn, "loadbalancer")}]
    return [{"Id": qid, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": ALB_NAMESPACE, "MetricName": name, "Dimensions": dimensions},
        "Period": METRIC_PERIOD_SECONDS, "Stat": stat}} for qid, name, stat in ALB_METRICS]


def minutes_of(results: list[dict[str, Any]], start: float, end: float) -> list[MetricMinute]:
    """GetMetricData's MetricDataResults as one MetricMinute per period with requests, oldest first."""
    by_id: dict[str, dict[float, float]] = {}
    for r in results:
        by_id[str(r.get("Id"))] = {_epoch(t): float(v) for t, v in zip(r.get("Timestamps", []), r.get("Values", []))}
    requests = by_id.get("requests", {})
    out = []
    for t in sorted(requests):
        if not start <= t < end or requests[t] <= 0:
            continue
        out.append(MetricMinute(t, requests[t], by_id.get("target5xx", {}).get(t, 0.0),
                                by_id.get("latency", {}).get(t), by_id.get("latencymax", {}).get(t)))
    return out


def _epoch(value: Any) -> float:
    """An SDK timestamp (a datetime) as epoch seconds; 0 when absent."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return float(value or 0)


def _alarm(answer: dict[str, Any]) -> Alarm:
    # StateTransitionedTimestamp: when StateValue last changed; StateUpdatedTimestamp also moves with
    # EvaluationState, so it is only the fallback of an answer without the first.
    since = answer.get("StateTransitionedTimestamp") or answer.get("StateUpdatedTimestamp")
    return Alarm(name=str(answer["AlarmName"]), state=str(answer.get("StateValue", "")), state_since=_epoch(since),
                 reason=str(answer.get("StateReason", "")))


def state_change(item: dict[str, Any]) -> StateChange | None:
    """One AlarmHistoryItem of type StateUpdate as (time, old state, new state): from HistoryData's
    ``oldState.stateValue`` / ``newState.stateValue``, else from HistorySummary; None when neither says."""
    at = _epoch(item.get("Timestamp"))
    try:
        data = json.loads(item.get("HistoryData") or "")
        old, new = data["oldState"]["stateValue"], data["newState"]["stateValue"]
        return StateChange(at, str(old), str(new))
    except (ValueError, TypeError, KeyError):
        pass
    m = _SUMMARY.search(str(item.get("HistorySummary", "")))
    return StateChange(at, m.group("old"), m.group("new")) if m else None


class CloudWatchAdapter:
    """``AlarmPort`` over a boto3 ``cloudwatch`` client: given (tests stub one), or made on the first call."""

    def __init__(self, client: Any = None, *, region: str | None = None, session: boto3.Session | None = None) -> None:
        if client is None and region is None:
            raise ValueError("CloudWatchAdapter needs a client or the Region to make one in")
        self._client = client
        self._region = region
        self._session = session
        self._lock = threading.Lock()

    @classmethod
    def for_region(cls, region: str, session: boto3.Session | None = None) -> CloudWatchAdapter:
        return cls(region=region, session=session)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                session = self._session or boto3.Session(region_name=self._region)
                self._client = session.client("cloudwatch", region_name=self._region, config=client_config())
            return self._client

    def describe_alarms(
        self, *, names: tuple[str, ...] = (), prefix: str | None = None, state: str | None = None
    ) -> AlarmPage:
        if names and prefix is not None:
            raise ValueError("DescribeAlarms takes AlarmNames or AlarmNamePrefix, not both")
        if len(names) > ALARM_PAGE:
            raise ValueError(f"DescribeAlarms takes at most {ALARM_PAGE} AlarmNames, not {len(names)}")
        params: dict[str, Any] = {"AlarmTypes": ALARM_TYPES, "MaxRecords": ALARM_PAGE}
        if names:
            params["AlarmNames"] = list(names)
        if prefix is not None:
            params["AlarmNamePrefix"] = prefix
        if state is not None:
            params["StateValue"] = state
        what = f"names {list(names)}" if names else f"prefix {prefix!r}" if prefix is not None else "every alarm"
        try:
            answer = self.client().describe_alarms(**params)
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"cloudwatch:DescribeAlarms ({what})") from e
        return AlarmPage(tuple(_alarm(a) for a in answer.get("MetricAlarms", [])), more=bool(answer.get("NextToken")))

    def state_changes(self, name: str, start: float, end: float) -> StateChanges:
        try:
            answer = self.client().describe_alarm_history(
                AlarmName=name,
                AlarmTypes=ALARM_TYPES,
                HistoryItemType="StateUpdate",
                StartDate=datetime.fromtimestamp(start, timezone.utc),
                EndDate=datetime.fromtimestamp(end, timezone.utc),
                MaxRecords=ALARM_PAGE,
                ScanBy="TimestampDescending",
            )
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"cloudwatch:DescribeAlarmHistory of {name!r}") from e
        changes = [c for item in answer.get("AlarmHistoryItems", []) if (c := state_change(item)) is not None]
        newest_first = tuple(sorted(changes, key=lambda c: c.at, reverse=True))
        return StateChanges(newest_first, more=bool(answer.get("NextToken")))

    def target_group_minutes(
        self, target_group_arn: str, load_balancer_arn: str, start: float, end: float
    ) -> list[MetricMinute]:
        # periods starting in [start, end): the first whole period from start on, up to the last that starts before end
        first = -(-start // METRIC_PERIOD_SECONDS) * METRIC_PERIOD_SECONDS
        last = -(-end // METRIC_PERIOD_SECONDS) * METRIC_PERIOD_SECONDS
        if last <= first:
            return []
        try:
            answer = self.client().get_metric_data(
                MetricDataQueries=metric_queries(target_group_arn, load_balancer_arn),
                StartTime=datetime.fromtimestamp(first, timezone.utc),
                EndTime=datetime.fromtimestamp(last, timezone.utc),
                ScanBy="TimestampAscending",
            )
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"cloudwatch:GetMetricData of {dimension_value(target_group_arn, 'targetgroup')}") from e
        # At most 4 x (end - start) / 60 datapoints: far under a page (100,800), so NextToken never comes for the
        # windows albgate asks (a rollout's minutes).
        return minutes_of(answer.get("MetricDataResults", []), first, last)
