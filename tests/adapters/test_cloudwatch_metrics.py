"""The CloudWatch adapter's GetMetricData for a target group (lambdas.adapters.cloudwatch), against a stub client
that answers as CloudWatch's API reference shows (MetricDataResults: Id, Timestamps, Values)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas.adapters.cloudwatch import CloudWatchAdapter, dimension_value, metric_queries
from lambdas.domain.errors import ThrottledError
from lambdas.domain.ports import MetricMinute

TG = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-web-0a1b2c3d4e/73e2d6bc24d8a067"
LB = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/k8s-shop-9f8e7d6c5b/50dc6c495c0c9188"


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class Stub:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_dimensions_are_the_arns_tails_as_the_alb_names_them():
    assert dimension_value(TG, "targetgroup") == "targetgroup/k8s-shop-web-0a1b2c3d4e/73e2d6bc24d8a067"
    assert dimension_value(LB, "loadbalancer") == "app/k8s-shop-9f8e7d6c5b/50dc6c495c0c9188"
    with pytest.raises(ValueError, match="is not an ELB loadbalancer ARN"):
        dimension_value(TG, "loadbalancer")


def test_one_call_asks_four_metrics_of_the_group_at_a_60_s_period():
    queries = metric_queries(TG, LB)
    assert [(q["Id"], q["MetricStat"]["Metric"]["MetricName"], q["MetricStat"]["Stat"]) for q in queries] == [
        ("requests", "RequestCount", "Sum"), ("target5xx", "HTTPCode_Target_5XX_Count", "Sum"),
        ("latency", "TargetResponseTime", "Average"), ("latencymax", "TargetResponseTime", "Maximum")]
    assert {q["MetricStat"]["Period"] for q in queries} == {60}
    assert queries[0]["MetricStat"]["Metric"]["Namespace"] == "AWS/ApplicationELB"
    assert queries[0]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "TargetGroup", "Value": "targetgroup/k8s-shop-web-0a1b2c3d4e/73e2d6bc24d8a067"},
        {"Name": "LoadBalancer", "Value": "app/k8s-shop-9f8e7d6c5b/50dc6c495c0c9188"}]


def test_periods_come_back_as_minutes_with_absent_5xx_read_as_zero_and_the_window_aligned():
    stub = Stub({"MetricDataResults": [
        {"Id": "requests", "Timestamps": [ts(1200), ts(1260), ts(1320)], "Values": [600.0, 580.0, 0.0]},
        {"Id": "target5xx", "Timestamps": [ts(1260)], "Values": [7.0]},
        {"Id": "latency", "Timestamps": [ts(1200), ts(1260)], "Values": [0.2, 0.25]},
        {"Id": "latencymax", "Timestamps": [ts(1200), ts(1260)], "Values": [1.5, 2.0]},
    ]})
    minutes = CloudWatchAdapter(stub).target_group_minutes(TG, LB, 1170.0, 1330.0)
    assert minutes == [MetricMinute(1200.0, 600.0, 0.0, 0.2, 1.5), MetricMinute(1260.0, 580.0, 7.0, 0.25, 2.0)]
    call = stub.calls[0]
    assert (call["StartTime"], call["EndTime"], call["ScanBy"]) == (ts(1200), ts(1380), "TimestampAscending")


def test_a_window_without_a_whole_period_asks_nothing():
    stub = Stub({"MetricDataResults": []})
    assert CloudWatchAdapter(stub).target_group_minutes(TG, LB, 1201.0, 1230.0) == []
    assert stub.calls == []


def test_a_throttled_call_is_a_throttled_error():
    err = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "GetMetricData")
    with pytest.raises(ThrottledError):
        CloudWatchAdapter(Stub(err)).target_group_minutes(TG, LB, 1200.0, 1500.0)
