"""What the stack grants for the CloudWatch alarms a rollout's policy names: the two read actions, on this account's
alarms in the stack's Region, to exactly the functions that call them (docs/rollout.md, "What the gate watches");
and the monitoring endpoint a private cluster needs when the config's rollout policy names alarms."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stacks.config import parse_config
from stacks.constructs.specs import ALL_HANDLERS
from stacks.constructs.vpc_endpoints import vpc_endpoint_needs
from tests.infrastructure.conftest import private_mirror_variant
from tests.infrastructure.test_private_endpoints import role_statements

FUNCTIONS = sorted(s.name for s in ALL_HANDLERS)  # the trigger's functions are checked by tests/iam
METRICS_READERS = {"Preflight", "StartStep", "CheckTargetHealth", "VerifyDrain", "PreflightReport"}
CALLERS = {"Preflight": ["cloudwatch:DescribeAlarms"],
           "CheckTargetHealth": ["cloudwatch:DescribeAlarms"],
           "VerifyDrain": ["cloudwatch:DescribeAlarms"],
           "StartStep": ["cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory"]}


def flat(value: Any) -> str:
    """A resource as a string, each Ref as <name>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(flat(part) for part in value["Fn::Join"][1])
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    raise AssertionError(f"unexpected token in a resource: {value}")


def alarm_statements(synth: Any, function: str) -> list[dict[str, Any]]:
    def actions(statement: dict[str, Any]) -> list[str]:
        return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]

    return [s for s in role_statements(synth, function)
            if any(a.startswith("cloudwatch:") and "Alarm" in a for a in actions(s))]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_the_functions_that_look_at_alarms_may_read_them(synth, function):
    statements = alarm_statements(synth, function)
    if function not in CALLERS:
        assert statements == []
        return
    (statement,) = statements
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    assert (statement["Effect"], sorted(actions)) == ("Allow", sorted(CALLERS[function]))
    # On every alarm of this account in the stack's Region: the alarm resource type, never "*"
    assert re.fullmatch(r"arn:(aws[a-z-]*|<AWS::Partition>):cloudwatch:([a-z0-9-]+|<AWS::Region>):"
                        r"([0-9]{12}|<AWS::AccountId>):alarm:\*", flat(statement["Resource"])), statement["Resource"]


@pytest.mark.parametrize("alarms,window,endpoint", [([], 0, False), (["app-5xx", "app-*"], 0, True), ([], 60, True)],
                         ids=["none", "named", "longest-requests"])
def test_a_private_cluster_needs_the_monitoring_endpoint_when_the_rollout_policy_reads_cloudwatch(
        example_config, alarms, window, endpoint):
    config = private_mirror_variant(example_config)
    config["rollout_policy"] = {**config.get("rollout_policy", {}), "alarms": alarms,
                                "long_requests_window_minutes": window}
    needs = {n.service: n for n in vpc_endpoint_needs(ALL_HANDLERS, parse_config(config))}
    assert ("monitoring" in needs) is endpoint
    if endpoint:
        assert needs["monitoring"].kind == "Interface"
        assert sorted(needs["monitoring"].used_by) == sorted(set(CALLERS) | METRICS_READERS)



@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_the_functions_that_analyse_alb_metrics_may_read_them_and_only_that(synth, function):
    statements = [s for s in role_statements(synth, function)
                  if "cloudwatch:GetMetricData" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    if function not in METRICS_READERS:
        assert statements == []
        return
    (statement,) = statements
    # no resource types in the Service Authorization Reference: "*", shared only with the ELB reads that need "*"
    assert (statement["Effect"], statement["Resource"]) == ("Allow", "*")
    granted = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
    others = {a for a in granted if a != "cloudwatch:GetMetricData"}
    assert all(a.startswith("elasticloadbalancing:Describe") for a in others), others


def test_a_private_cluster_needs_the_monitoring_endpoint_when_the_rollout_policy_asks_for_analysis(example_config):
    config = private_mirror_variant(example_config)
    config["rollout_policy"] = {**config.get("rollout_policy", {}), "alarms": [], "analysis": {},
                                "long_requests_window_minutes": 0}
    needs = {n.service: n for n in vpc_endpoint_needs(ALL_HANDLERS, parse_config(config))}
    assert "monitoring" in needs
