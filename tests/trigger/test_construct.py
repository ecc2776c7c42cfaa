"""The EcrTrigger construct, synthesized in a small stack with cdk-nag: rules, DLQ + alarm, table, bus, IAM scope.

Given the example config and an imported rollout state machine, when a stack holding only the construct is
synthesized with AwsSolutionsChecks (as app.py runs them), then the template has exactly the promised resources
and permissions, and no unacknowledged finding.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Aspects, Environment, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import AwsSolutionsChecks

from stacks.config import parse_config
from stacks.constructs.ecr_trigger import EcrTrigger

SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Rollout"


def _config(example: dict[str, Any], **changes: Any) -> Any:
    return parse_config({**example, **changes})


def _synth(cdk_app: Any, outdir: Any, config: Any) -> tuple[list[str], dict[str, Any], EcrTrigger]:
    context = {k: v for k, v in cdk_app.cdk_json_context().items() if k.startswith("@aws-cdk")}
    app = App(outdir=str(outdir), context=context)
    stack = Stack(app, "TriggerOnly", env=Environment(account="123456789012", region="us-east-1"))
    machine = sfn.StateMachine.from_state_machine_arn(stack, "Rollout", SM_ARN)
    trigger = EcrTrigger(stack, "EcrTrigger", config=config, state_machine=machine,
                         code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"))
    Aspects.of(app).add(AwsSolutionsChecks())
    problems = cdk_app.synthesis_problems(app, stack)
    template = json.loads((outdir / stack.template_file).read_text())
    return problems, template, trigger


@pytest.fixture(scope="module")
def synthesized(cdk_app, example_config, tmp_path_factory):
    config = _config(example_config, applications=example_config["applications"] + [
        {**example_config["applications"][0], "deployment": "cart", "ecr_repository": "team/cart",
         "tag_pattern": "release-*"}])
    return _synth(cdk_app, tmp_path_factory.mktemp("trigger.out"), config)


def _resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def _one(template: dict[str, Any], rtype: str) -> dict[str, Any]:
    found = list(_resources(template, rtype).values())
    assert len(found) == 1, (rtype, len(found))
    return found[0]["Properties"]


def test_cdk_nag_finds_nothing_unacknowledged(synthesized):
    problems, _, _ = synthesized
    assert problems == []


def test_no_new_acknowledgments_beyond_the_function_defaults(synthesized):
    _, template, _ = synthesized
    for logical_id, resource in template["Resources"].items():
        for s in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert s["id"] in {"AwsSolutions-IAM5", "AwsSolutions-L1"}, (logical_id, s["id"])
            if s["id"] == "AwsSolutions-IAM5":
                assert s["applies_to"] == ["Resource::*"], (logical_id, s)


def _rule_with_source(template: dict[str, Any], source: str) -> dict[str, Any]:
    rules = [r["Properties"] for r in _resources(template, "AWS::Events::Rule").values()
             if r["Properties"]["EventPattern"]["source"] == [source]]
    assert len(rules) == 1
    return rules[0]


def test_the_push_rule_matches_successful_pushes_to_the_configured_repositories_of_this_account(synthesized):
    _, template, _ = synthesized
    rule = _rule_with_source(template, "aws.ecr")
    assert rule["EventPattern"] == {
        "source": ["aws.ecr"], "detail-type": ["ECR Image Action"], "account": ["123456789012"],
        "detail": {"action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": ["myapp", "team/cart"]}}
    assert "EventBusName" not in rule  # AWS service events arrive on the default bus


def test_the_execution_rule_matches_terminal_statuses_of_the_rollout_state_machine_only(synthesized):
    _, template, _ = synthesized
    rule = _rule_with_source(template, "aws.states")
    assert rule["EventPattern"] == {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"], "stateMachineArn": [SM_ARN]}}


def test_both_rule_targets_and_both_functions_dead_letter_into_one_encrypted_ssl_only_queue(synthesized):
    _, template, _ = synthesized
    queues = _resources(template, "AWS::SQS::Queue")
    assert len(queues) == 1
    (queue_id, queue), = queues.items()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    for rule in _resources(template, "AWS::Events::Rule").values():
        (target,) = rule["Properties"]["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    for fn in _resources(template, "AWS::Lambda::Function").values():
        assert fn["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    policy = _one(template, "AWS::SQS::QueuePolicy")["PolicyDocument"]["Statement"]
    deny = [s for s in policy if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_an_alarm_fires_on_the_first_dead_letter(synthesized):
    _, template, _ = synthesized
    alarm = _one(template, "AWS::CloudWatch::Alarm")
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Namespace"] == "AWS/SQS"
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_lock_table_is_on_demand_with_point_in_time_recovery_and_ttl(synthesized):
    _, template, _ = synthesized
    table = _one(template, "AWS::DynamoDB::Table")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["KeySchema"] == [{"AttributeName": "lock_key", "KeyType": "HASH"}]


def test_the_event_bus_is_named_albgate(synthesized):
    _, template, _ = synthesized
    assert _one(template, "AWS::Events::EventBus")["Name"] == "albgate"


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in _resources(template, "AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_iam_is_scoped_to_the_state_machine_the_table_the_bus_and_the_queue(synthesized):
    _, template, _ = synthesized
    table_id = next(iter(_resources(template, "AWS::DynamoDB::Table")))
    bus_id = next(iter(_resources(template, "AWS::Events::EventBus")))
    queue_id = next(iter(_resources(template, "AWS::SQS::Queue")))
    expected = {
        "states:StartExecution": SM_ARN,
        "dynamodb:GetItem": {"Fn::GetAtt": [table_id, "Arn"]},
        "dynamodb:PutItem": {"Fn::GetAtt": [table_id, "Arn"]},
        "dynamodb:UpdateItem": {"Fn::GetAtt": [table_id, "Arn"]},
        "dynamodb:DeleteItem": {"Fn::GetAtt": [table_id, "Arn"]},
        "events:PutEvents": {"Fn::GetAtt": [bus_id, "Arn"]},
        "sqs:SendMessage": {"Fn::GetAtt": [queue_id, "Arn"]},
    }
    seen: dict[str, list[Any]] = {}
    for s in _statements(template):
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        for a in actions:
            seen.setdefault(a, []).append(s["Resource"])
    for action, resource in expected.items():
        assert seen.pop(action) == [resource, resource], action  # both functions, this resource only
    # Then what is left is the functions' own logs and X-Ray (AlbgateFunction), nothing on states/dynamodb/events
    assert {a.split(":")[0] for a in seen} <= {"logs", "xray"}, seen


def test_functions_get_their_settings_from_the_environment(synthesized):
    _, template, trigger = synthesized
    envs = {fn["Properties"]["Handler"]: fn["Properties"]["Environment"]["Variables"]
            for fn in _resources(template, "AWS::Lambda::Function").values()}
    trigger_env = envs["lambdas.handlers.ecr_trigger.handler"]
    assert trigger_env["ALBGATE_STATE_MACHINE_ARN"] == SM_ARN
    apps = json.loads(trigger_env["ALBGATE_TRIGGER_APPLICATIONS"])
    assert [(a["deployment"], a["ecr_repository"], a["tag_pattern"]) for a in apps] == [
        ("nginx-app", "myapp", "v*"), ("cart", "team/cart", "release-*")]
    assert json.loads(trigger_env["ALBGATE_ROLLOUT_POLICY"])["steps"] == [1, "25%", "50%", "100%"]
    events_env = envs["lambdas.handlers.execution_events.handler"]
    assert set(events_env) >= {"ALBGATE_STATE_MACHINE_ARN", "ALBGATE_LOCK_TABLE", "ALBGATE_EVENT_BUS"}
    assert "ALBGATE_TRIGGER_APPLICATIONS" not in events_env


def test_without_any_ecr_repository_the_construct_creates_nothing(example_config):
    apps = [{k: v for k, v in a.items() if k not in ("ecr_repository", "tag_pattern")}
            for a in example_config["applications"]]
    stack = Stack(App(), "NoTrigger")
    trigger = EcrTrigger(stack, "EcrTrigger", config=_config(example_config, applications=apps),
                         state_machine=sfn.StateMachine.from_state_machine_arn(stack, "Rollout", SM_ARN),
                         code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"))
    assert trigger.enabled is False
    assert trigger.node.children == []
