"""The EcrTrigger construct and the Deployment leases it queues pushes on, synthesized in a small stack with
cdk-nag: rules, DLQ + alarm, lease table, bus, IAM scope.

Given the example config and an imported rollout state machine, when a stack holding only these two constructs
(DeploymentLeases: the table, ExecutionEvents, its rule, the DLQ; EcrTrigger: the bus, the trigger, its rule) is
synthesized with AwsSolutionsChecks (as app.py runs them), then the template has exactly the promised resources
and permissions, and no unacknowledged finding. The two rules' patterns are also run through moto's EventBridge,
a matcher nobody here wrote, against the events ECR and Step Functions document.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_cdk import App, Aspects, Environment, Fn, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import AwsSolutionsChecks
from moto import mock_aws

from stacks.config import parse_config
from lambdas.handlers.ecr_trigger import TriggerSettings
from stacks.constructs.deployment_leases import DeploymentLeases
from stacks.constructs.ecr_trigger import TOKEN_MAX_CHARS, EcrTrigger, environment_problem
from tests.trigger.conftest import ecr_event, status_event

SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Rollout"
EXECUTIONS_REGEX = r"/^Resource::arn:[^:]+:states:[^:]+:(\d{12}|<AWS::AccountId>):execution:.+:\*$/g"


def _config(example: dict[str, Any], **changes: Any) -> Any:
    return parse_config({**example, **changes})


def _synth(cdk_app: Any, outdir: Any, config: Any) -> tuple[list[str], dict[str, Any], EcrTrigger]:
    context = {k: v for k, v in cdk_app.cdk_json_context().items() if k.startswith("@aws-cdk")}
    app = App(outdir=str(outdir), context=context)
    stack = Stack(app, "TriggerOnly", env=Environment(account="123456789012", region="us-east-1"))
    machine = sfn.StateMachine.from_state_machine_arn(stack, "Rollout", SM_ARN)
    code = lambda_.Code.from_inline("def handler(event, context):\n    return {}\n")
    leases = DeploymentLeases(stack, "Leases", config=config, state_machine=machine, code=code, functions=[],
                              event_bus_name="albgate")
    trigger = EcrTrigger(stack, "EcrTrigger", config=config, state_machine=machine, code=code,
                         lease_table=leases.table, dead_letters=leases.dead_letters)
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
                # X-Ray on "*", and DescribeExecution on the rollout state machine's executions (a lease's holder)
                assert s["applies_to"] in (["Resource::*"], [{"regex": EXECUTIONS_REGEX}]), (logical_id, s)


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


def deliveries(pattern: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, as EventBridge delivers them, that a rule with ``pattern`` sends to its target: moto's own
    EventBridge (a pattern matcher nobody here wrote) with an SQS queue as the target, each event put as the AWS
    service emits it (source, detail-type, detail; the account is the caller's, moto's default 123456789012)."""
    with mock_aws():
        region = "us-east-1"
        queue_url = boto3.client("sqs", region_name=region).create_queue(QueueName="seen")["QueueUrl"]
        queue_arn = boto3.client("sqs", region_name=region).get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bridge = boto3.client("events", region_name=region)
        bridge.put_rule(Name="rule", EventPattern=json.dumps(pattern))
        bridge.put_targets(Rule="rule", Targets=[{"Id": "queue", "Arn": queue_arn}])
        for e in events:
            bridge.put_events(Entries=[{"Source": e["source"], "DetailType": e["detail-type"],
                                        "Detail": json.dumps(e["detail"])}])
        answer = boto3.client("sqs", region_name=region).receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_an_independent_eventbridge_delivers_exactly_the_successful_pushes_of_the_configured_repositories(
        synthesized):
    # Given the synthesized push rule, and ECR's documented push event for pushes that should and should not start
    _, template, _ = synthesized
    pattern = _rule_with_source(template, "aws.ecr")["EventPattern"]
    candidates = [ecr_event(repository="myapp"), ecr_event(repository="team/cart", tag="release-7"),
                  ecr_event(repository="other"), ecr_event(repository="myapp", result="FAILURE"),
                  ecr_event(repository="myapp", action="DELETE"), ecr_event(repository="team/cart", tag=None)]
    # When an EventBridge that is not albgate's code matches them against it
    delivered = deliveries(pattern, candidates)
    # Then exactly the successful pushes to the two configured repositories (a digest-only push included: the
    # trigger itself decides about tags) reach the trigger
    assert sorted((d["detail"]["repository-name"], d["detail"].get("image-tag", "")) for d in delivered) == [
        ("myapp", "v2"), ("team/cart", ""), ("team/cart", "release-7")]


def test_the_execution_rule_matches_terminal_statuses_of_the_rollout_state_machine_only(synthesized):
    _, template, _ = synthesized
    rule = _rule_with_source(template, "aws.states")
    assert rule["EventPattern"] == {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"], "stateMachineArn": [SM_ARN]}}


def test_an_independent_eventbridge_delivers_exactly_the_rollouts_terminal_statuses(synthesized):
    _, template, _ = synthesized
    pattern = _rule_with_source(template, "aws.states")["EventPattern"]
    execution = {"executionArn": SM_ARN.replace(":stateMachine:", ":execution:") + ":e1", "name": "e1", "input": "{}"}
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:Other"
    candidates = [status_event(SM_ARN, execution, status) for status in
                  ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")]
    candidates.append(status_event(other, execution, "SUCCEEDED"))
    delivered = deliveries(pattern, candidates)
    assert sorted((d["detail"]["stateMachineArn"], d["detail"]["status"]) for d in delivered) == sorted(
        (SM_ARN, status) for status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"))


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
    bus_arn = "arn:aws:events:us-east-1:123456789012:event-bus/albgate"
    expected = {
        "states:StartExecution": [SM_ARN, SM_ARN],
        "dynamodb:GetItem": [{"Fn::GetAtt": [table_id, "Arn"]}] * 2,
        "dynamodb:PutItem": [{"Fn::GetAtt": [table_id, "Arn"]}] * 2,
        "dynamodb:DeleteItem": [{"Fn::GetAtt": [table_id, "Arn"]}] * 2,
        # the trigger publishes on the bus it creates; ExecutionEvents (with every stack) names it
        "events:PutEvents": [bus_arn, {"Fn::GetAtt": [bus_id, "Arn"]}],
        "sqs:SendMessage": [{"Fn::GetAtt": [queue_id, "Arn"]}] * 2,
    }
    seen: dict[str, list[Any]] = {}
    for s in _statements(template):
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        for a in actions:
            seen.setdefault(a, []).append(s["Resource"])
    for action, resources in expected.items():
        assert sorted(map(str, seen.pop(action))) == sorted(map(str, resources)), action  # both functions
    # Only the trigger queues a push on a held lease, asks whether its holder runs, and asks ECR for push times
    assert seen.pop("dynamodb:UpdateItem") == [{"Fn::GetAtt": [table_id, "Arn"]}]
    (executions,) = seen.pop("states:DescribeExecution")
    assert executions == "arn:aws:states:us-east-1:123456789012:execution:Rollout:*"
    (repositories,) = seen.pop("ecr:DescribeImages")
    assert repositories == ["arn:aws:ecr:us-east-1:123456789012:repository/myapp",
                            "arn:aws:ecr:us-east-1:123456789012:repository/team/cart"]
    # Then what is left is the functions' own logs and X-Ray (AlbgateFunction), nothing on states/dynamodb/events
    assert {a.split(":")[0] for a in seen} <= {"logs", "xray"}, seen


def test_functions_get_names_and_arns_from_the_environment_and_the_trigger_its_configuration_from_a_layer(
    synthesized,
):
    _, template, trigger = synthesized
    fns = {fn["Properties"]["Handler"]: fn["Properties"] for fn in _resources(template, "AWS::Lambda::Function").values()}
    trigger_fn, events_fn = fns["lambdas.handlers.ecr_trigger.handler"], fns["lambdas.handlers.execution_events.handler"]
    # Then both read the state machine, the lock table and the bus from the environment, and nothing the config
    # could make long: the trigger only learns where its configuration file is
    trigger_env, events_env = trigger_fn["Environment"]["Variables"], events_fn["Environment"]["Variables"]
    assert trigger_env["ALBGATE_STATE_MACHINE_ARN"] == SM_ARN
    assert trigger_env["ALBGATE_TRIGGER_CONFIG"] == "/opt/albgate/trigger.json"
    assert set(events_env) >= {"ALBGATE_STATE_MACHINE_ARN", "ALBGATE_LOCK_TABLE", "ALBGATE_EVENT_BUS"}
    assert "ALBGATE_TRIGGER_CONFIG" not in events_env
    # And the trigger (only it) has one layer: the configuration
    (layer_id,) = _resources(template, "AWS::Lambda::LayerVersion")
    assert trigger_fn["Layers"] == [{"Ref": layer_id}] and "Layers" not in events_fn


def test_the_configuration_layer_holds_the_applications_and_the_policy(synthesized, tmp_path_factory):
    _, _, trigger = synthesized
    # Given the layer's folder as synthesized (what Lambda unpacks under /opt)
    folder = trigger.config_layer.folder
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert files == ["albgate/trigger.json"]
    # When the trigger Lambda reads it at cold start / Then it gets the config's applications and policy
    settings = TriggerSettings.from_environ({
        "ALBGATE_STATE_MACHINE_ARN": SM_ARN, "ALBGATE_LOCK_TABLE": "locks", "ALBGATE_EVENT_BUS": "albgate",
        "ALBGATE_TRIGGER_CONFIG": str(folder / "albgate" / "trigger.json")})
    assert [(a.deployment, a.ecr_repository, a.tag_pattern) for a in settings.applications] == [
        ("nginx-app", "myapp", "v*"), ("cart", "team/cart", "release-*")]
    assert settings.policy.steps == [1, "25%", "50%", "100%"]


def _ref(name: str) -> str:
    return Token.as_string(Fn.ref(name))  # a value CloudFormation resolves at deploy time


@pytest.mark.parametrize(
    ("environment", "over_by"),
    [
        # {"A":"x..."}: 8 bytes of JSON around the value
        pytest.param({"A": "x" * 4088}, None, id="exactly-4096"),
        pytest.param({"A": "x" * 4089}, 4097, id="one-byte-over"),
        # the lock table's name counts at its longest, 255 characters: 287 bytes of JSON besides the n x's
        pytest.param({"ALBGATE_LOCK_TABLE": _ref("T"), "A": "x" * 3809}, None, id="token-at-its-longest-fits"),
        pytest.param({"ALBGATE_LOCK_TABLE": _ref("T"), "A": "x" * 3810}, 4097, id="token-at-its-longest-over"),
    ],
)
def test_an_environment_that_could_pass_4_kb_is_refused_at_synth(environment, over_by):
    # Given a function's environment, its deploy-time values measured at their longest
    problem = environment_problem("Fn", environment, TOKEN_MAX_CHARS)
    # Then what fits Lambda's 4 KB passes and what could not is named with its size and the limit
    if over_by is None:
        assert problem is None
    else:
        assert problem is not None and f"could reach {over_by} bytes" in problem and "4096" in problem


def test_a_deploy_time_value_of_unknown_length_is_refused():
    problem = environment_problem("Fn", {"OTHER": _ref("T")}, TOKEN_MAX_CHARS)
    assert problem is not None and "OTHER" in problem and "no known longest value" in problem


def test_without_any_ecr_repository_the_construct_creates_nothing(example_config):
    apps = [{k: v for k, v in a.items() if k not in ("ecr_repository", "tag_pattern")}
            for a in example_config["applications"]]
    stack = Stack(App(), "NoTrigger")
    queue = sqs.Queue(stack, "Queue")
    table = dynamodb.Table(stack, "Table", partition_key=dynamodb.Attribute(name="k", type=dynamodb.AttributeType.STRING))
    trigger = EcrTrigger(stack, "EcrTrigger", config=_config(example_config, applications=apps),
                         state_machine=sfn.StateMachine.from_state_machine_arn(stack, "Rollout", SM_ARN),
                         code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
                         lease_table=table, dead_letters=queue)
    assert trigger.enabled is False
    assert trigger.node.children == []
