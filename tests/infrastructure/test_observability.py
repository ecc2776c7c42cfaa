"""The dashboard, the alarm and the gate keeper's schedule in the synthesized template."""

from __future__ import annotations

import json
from pathlib import Path

HANDLERS = Path(__file__).resolve().parents[2] / "lambdas" / "handlers"


def test_alarm_fires_on_any_failed_or_rolled_back_execution(synth):
    (alarm,) = [a for a in synth.resources("AWS::CloudWatch::Alarm").values() if a["Properties"].get("Namespace") == "AWS/States"]
    props = alarm["Properties"]
    # Given a rolled-back rollout ends in a Fail state / Then ExecutionsFailed >= 1 in 5 minutes raises it
    assert props["MetricName"] == "ExecutionsFailed" and props["Namespace"] == "AWS/States"
    assert props["Threshold"] == 1 and props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["TreatMissingData"] == "notBreaching"


def test_dashboard_shows_the_metrics_the_handlers_emit(synth):
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    # the metric names written by lambdas/handlers (check_target_health, roll_back, finish_rollout)
    for name in ("GateWaitSeconds", "Rollouts", "Rollbacks", "DescribeTargetHealthCalls", "SharedTargetHealthLooks"):
        assert name in body
    handlers = "".join(
        (HANDLERS / f"{m}.py").read_text() for m in ("check_target_health", "roll_back", "finish_rollout")
    )
    for name in ("GateWaitSeconds", "Rollouts", "Rollbacks", "DescribeTargetHealthCalls", "SharedTargetHealthLooks"):
        assert f'name="{name}"' in handlers


def test_gate_keeper_runs_every_minute_with_the_configured_applications(synth):
    (rule,) = [r for r in synth.resources("AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    (target,) = rule["Properties"]["Targets"]
    apps = json.loads(target["Input"])["applications"]
    assert apps == [{"cluster": "my-cluster", "namespace": "readiness", "deployment": "nginx-app"}]
