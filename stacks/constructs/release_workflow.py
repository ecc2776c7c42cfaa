"""The release state machine: one image through ordered waves of clusters, each cluster's own gated rollout.

Job: the functions `Plan Release` and the wave look (``RELEASE_HANDLERS``), the releases file they read (a small
layer, like the allow-list), their rights on exactly the rollout state machines the releases name, the event bus
the release announces itself on, and the state machine::

    Plan Release -> Announce Release Started -> Approve Wave? -> [Wait For Wave Approval] -> Start Wave Rollouts
      -> Wait For Wave Rollouts -> Check Wave Rollouts -> Wave Passed?
         WAITING: Wait For Wave Rollouts;  PASSED: Announce Wave Passed -> More Waves? -> Bake Before Next Wave
         -> Approve Wave? ... or Announce Release Succeeded;  FAILED: Roll Back Completed Waves? -> (Start Rollbacks
         -> Wait For Rollbacks -> Check Rollbacks -> Rollbacks Done?) -> Announce Release Stopped -> Release Stopped

The children are started and read by a Lambda, not by the ``states:startExecution.sync:2`` integration: that
integration reaches other accounts (a task's Credentials) but not other Regions, and a release spans both
(docs/facts.md, "Releases across accounts and Regions"). Each child is an execution of the cluster's own rollout
state machine, its graph readable on its own; the release's history names every child's ARN.

Invariant: the release functions may start and read executions of the configured rollout state machines only
(their ARNs are fixed at synth: each environment's stack names its rollout state machine), and assume only the
release roles of the other accounts the releases reach.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from lambdas.domain.contract import (
    EVENT_SOURCE,
    RELEASE_STARTED,
    RELEASE_STOPPED,
    RELEASE_STOPPED_ERROR,
    RELEASE_SUCCEEDED,
    RELEASE_WAVE_AWAITS_APPROVAL,
    RELEASE_WAVE_PASSED,
)
from lambdas.domain.release import WaveVerdict
from lambdas.handlers._release import RELEASES_ENV, RELEASES_PATH
from stacks.constructs.config_layer import layer_dir, layer_version
from stacks.constructs.handler_specs import HandlerSpec
from stacks.constructs.lambda_asset import CORE, PROJECT_ROOT, lambdas_code
from stacks.constructs.lambda_function import AlbgateFunction
from stacks.constructs.rollout_workflow import catch_all, invoke_lambda, wait_for

CACHE_DIR = PROJECT_ROOT / ".albgate-cache" / "releases"
# A release waits for its waves' rollouts (each at most the rollout's own timeout), their bakes and approvals.
RELEASE_TIMEOUT = Duration.days(7)
WAVE_APPROVAL_TIMEOUT = Duration.hours(24)

RELEASE_HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec("PlanRelease", "release_plan", kube="none", elb_read=False, timeout_seconds=30,
                description="check a release's input and name every child rollout before its first wave"),
    HandlerSpec("ReleaseWave", "release_wave", kube="none", elb_read=False, timeout_seconds=60,
                description="start and read a release wave's rollouts in their own accounts and Regions"),
)


def rollout_execution_arn_pattern(state_machine_arn: str) -> str:
    """Every execution of a state machine: ``arn:...:execution:<name>:*``."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":*"


def event_detail(scope: Construct) -> dict:
    """What every release event says: the release, the image, the execution and its console page."""
    region = Stack.of(scope).region
    return {
        "release": sfn.JsonPath.string_at("$.release.release"),
        "image": sfn.JsonPath.string_at("$.release.image"),
        "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
        "console_url": sfn.JsonPath.format(
            "https://{}.console.aws.amazon.com/states/home?region={}#/v2/executions/details/{}",
            region, region, sfn.JsonPath.string_at("$$.Execution.Id"),
        ),
    }


def release_event(scope: Construct, state_name: str, detail_type: str, bus: events.IEventBus, comment: str,
                  extra: dict | None = None) -> tasks.EventBridgePutEvents:
    """PutEvents on the release bus, straight from the state machine: which release, which image, the wave and
    the execution's console link."""
    detail = {**event_detail(scope), **(extra or {})}
    return tasks.EventBridgePutEvents(
        scope, state_name, comment=comment,
        entries=[tasks.EventBridgePutEventsEntry(detail=sfn.TaskInput.from_object(detail), detail_type=detail_type,
                                                 source=EVENT_SOURCE, event_bus=bus)],
        result_path=sfn.JsonPath.DISCARD,
    )


class ReleaseWorkflow(Construct):
    """``state_machine``, ``functions`` (name -> AlbgateFunction) and ``event_bus`` of the releases."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        releases_json: str,
        rollout_state_machine_arns: Sequence[str],
        child_role_arns: Sequence[str],
        log_level: str = "INFO",
        log_retention_days: int = 30,
        include_execution_data: bool = True,
        bus_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.code = code = lambdas_code(CORE)
        self.releases_layer = layer = layer_version(self, "ReleasesLayer", layer_dir(releases_json, RELEASES_PATH, CACHE_DIR),
                              "albgate: the configured releases (waves, clusters, rollout state machines)")
        self.functions = {
            spec.name: AlbgateFunction(self, spec.name, spec=spec, code=code, cluster_arns=[], log_level=log_level,
                                       log_retention_days=log_retention_days,
                                       extra_environment={RELEASES_ENV: RELEASES_PATH})
            for spec in RELEASE_HANDLERS
        }
        for f in self.functions.values():
            f.function.add_layers(layer)
        wave = self.functions["ReleaseWave"]
        wave.role.add_to_policy(iam.PolicyStatement(
            sid="StartRollouts", actions=["states:StartExecution"], resources=sorted(set(rollout_state_machine_arns))))
        wave.role.add_to_policy(iam.PolicyStatement(
            sid="ReadRollouts", actions=["states:DescribeExecution"],
            resources=sorted({rollout_execution_arn_pattern(a) for a in rollout_state_machine_arns})))
        if child_role_arns:
            wave.role.add_to_policy(iam.PolicyStatement(
                sid="ReachOtherAccounts", actions=["sts:AssumeRole"], resources=sorted(set(child_role_arns))))
        NagSuppressions.add_resource_suppressions(wave.role, [NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="states:DescribeExecution on 'execution:<rollout state machine>:*': a release reads the "
            "executions it started, whose names are made at run time; the state machines are the configured ones",
            applies_to=[f"Resource::{rollout_execution_arn_pattern(a)}" for a in sorted(set(rollout_state_machine_arns))],
        )], apply_to_children=True)

        self.event_bus = events.EventBus(self, "Events", event_bus_name=bus_name)
        self.state_machine = self._state_machine(include_execution_data)
        self.event_bus.grant_put_events_to(self.state_machine)
        NagSuppressions.add_resource_suppressions(self.state_machine, [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="lambda:InvokeFunction on '<function ARN>:*' only covers the versions and aliases of the "
                "release's own functions (granted by LambdaInvoke); the function ARNs are explicit",
                applies_to=[f"Resource::<{Stack.of(self).get_logical_id(f.function.node.default_child)}.Arn>:*"
                            for f in self.functions.values()],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Resource '*' only for actions without resource types: the CloudWatch Logs vended-log "
                "delivery actions the Step Functions developer guide requires on '*' for logging level ALL, and "
                "the X-Ray tracing actions",
                applies_to=["Resource::*"],
            ),
        ], apply_to_children=True)

    def _state_machine(self, include_execution_data: bool) -> sfn.StateMachine:
        plan_fn = self.functions["PlanRelease"].function
        wave_fn = self.functions["ReleaseWave"].function
        bus = self.event_bus

        refused = sfn.Fail(self, "Release Refused", comment="The input names no configured release or no image by "
                           "digest: nothing was started", error_path="$.failure.Error", cause_path="$.failure.Cause")
        broken = sfn.Fail(self, "Release Could Not Go On", comment="The release could not start or read its "
                          "rollouts (access to an account or Region?); the rollouts already started go on by "
                          "themselves: see them in the release's history", error_path="$.failure.Error",
                          cause_path="$.failure.Cause")
        stopped = sfn.Fail(self, "Release Stopped", comment="A rollout of a wave failed: later waves never started",
                           error=RELEASE_STOPPED_ERROR, cause_path="$.release.cause")
        succeeded = sfn.Succeed(self, "Release Succeeded")

        plan = invoke_lambda(
            self, "Plan Release", plan_fn,
            "Check the input (a configured release, an image by digest) and name every child rollout, so that a "
            "retried start finds the same execution",
            payload=sfn.TaskInput.from_object({"input": sfn.JsonPath.object_at("$$.Execution.Input"),
                                               "execution_name": sfn.JsonPath.string_at("$$.Execution.Name")}),
        )
        catch_all(plan, refused)

        def look(name: str, comment: str, rollback: bool) -> tasks.LambdaInvoke:
            task = invoke_lambda(self, name, wave_fn, comment, payload=sfn.TaskInput.from_object(
                {"release": sfn.JsonPath.object_at("$.release"), "rollback": rollback}))
            catch_all(task, broken)
            return task

        start_wave = look("Start Wave Rollouts", "Start the wave's rollouts, each an execution of its cluster's "
                          "rollout state machine, at most the wave's max_concurrency at once", False)
        check_wave = look("Check Wave Rollouts", "Read the running rollouts; start the next ones as slots free up; "
                          "conclude the wave when none runs", False)
        wait_wave = wait_for(self, "Wait For Wave Rollouts", "Rollout steps take minutes: look again later",
                             "$.release.wait_seconds")
        bake = wait_for(self, "Bake Before Next Wave", "Let the passed wave serve real traffic on the new image "
                        "before the next wave starts", "$.release.bake_seconds")
        start_rollbacks = look("Start Rollbacks", "Roll the clusters that run the new image back to the image each "
                               "ran before, newest wave first, one at a time, through the same gates", True)
        check_rollbacks = look("Check Rollbacks", "Read the running rollback; start the next one", True)
        wait_rollbacks = wait_for(self, "Wait For Rollbacks", "Look again later", "$.release.wait_seconds")

        approve = tasks.EventBridgePutEvents(
            self, "Wait For Wave Approval",
            comment="A person approves the wave (`albgate release approve`, SendTaskSuccess with this task's token); "
            "a rejection or no answer in 24 h stops the release before the wave",
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            entries=[tasks.EventBridgePutEventsEntry(
                detail=sfn.TaskInput.from_object({
                    **event_detail(self),
                    "wave": sfn.JsonPath.array_get_item(sfn.JsonPath.list_at("$.release.waves"),
                                                        sfn.JsonPath.number_at("$.release.wave")),
                    "task_token": sfn.JsonPath.task_token,
                }),
                detail_type=RELEASE_WAVE_AWAITS_APPROVAL, source=EVENT_SOURCE, event_bus=bus)],
            task_timeout=sfn.Timeout.duration(WAVE_APPROVAL_TIMEOUT),
            result_path=sfn.JsonPath.DISCARD,
        )
        not_approved = sfn.Fail(self, "Wave Not Approved", comment="Nobody approved the wave in time, or a person "
                                "rejected it: later waves never started", error_path="$.failure.Error",
                                cause_path="$.failure.Cause")
        approve.add_catch(not_approved, errors=["States.ALL"], result_path="$.failure")

        announce_started = release_event(self, "Announce Release Started", RELEASE_STARTED, bus,
                                         "Tell the teams' event rules that a release started")
        announce_wave = release_event(
            self, "Announce Wave Passed", RELEASE_WAVE_PASSED, bus,
            "Every rollout of the wave succeeded: the wave passed",
            {"wave": sfn.JsonPath.string_at("$.release.passed_wave"),
             "waves_passed": sfn.JsonPath.number_at("$.release.wave"),
             "more_waves": sfn.JsonPath.string_at("$.release.more_waves")},
        )
        announce_succeeded = release_event(self, "Announce Release Succeeded", RELEASE_SUCCEEDED, bus,
                                           "Every wave passed")
        announce_stopped = release_event(self, "Announce Release Stopped", RELEASE_STOPPED, bus,
                                         "A wave failed: say where and why",
                                         {"cause": sfn.JsonPath.string_at("$.release.cause")})

        approve_wave = sfn.Choice(self, "Approve Wave?", comment="waves[].approval: a person approves first")
        wave_passed = sfn.Choice(self, "Wave Passed?")
        more_waves = sfn.Choice(self, "More Waves?")
        roll_back = sfn.Choice(self, "Roll Back Completed Waves?",
                               comment="rollback_completed_waves, when a cluster already runs the new image")
        rollbacks_done = sfn.Choice(self, "Rollbacks Done?")

        plan.next(announce_started).next(approve_wave)
        approve_wave.when(sfn.Condition.boolean_equals("$.release.approval_needed", True), approve.next(start_wave))
        approve_wave.otherwise(start_wave)
        start_wave.next(wave_passed)
        wait_wave.next(check_wave).next(wave_passed)
        wave_passed.when(sfn.Condition.string_equals("$.release.verdict", WaveVerdict.WAITING.value), wait_wave)
        wave_passed.when(sfn.Condition.string_equals("$.release.verdict", WaveVerdict.PASSED.value),
                         announce_wave.next(more_waves))
        wave_passed.otherwise(roll_back)
        more_waves.when(sfn.Condition.boolean_equals("$.release.more_waves", True), bake.next(approve_wave))
        more_waves.otherwise(announce_succeeded.next(succeeded))
        roll_back.when(sfn.Condition.boolean_equals("$.release.rollback_needed", True), start_rollbacks)
        roll_back.otherwise(announce_stopped)
        start_rollbacks.next(rollbacks_done)
        wait_rollbacks.next(check_rollbacks).next(rollbacks_done)
        rollbacks_done.when(sfn.Condition.string_equals("$.release.verdict", WaveVerdict.WAITING.value),
                            wait_rollbacks)
        rollbacks_done.otherwise(announce_stopped)
        announce_stopped.next(stopped)

        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=RemovalPolicy.RETAIN)
        return sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(plan),
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL,
                                include_execution_data=include_execution_data),
            timeout=RELEASE_TIMEOUT,
            comment="albgate: roll one image through waves of clusters, each wave's rollouts gated; stop at the "
            "first failing wave",
        )


def releases_file(specs: Sequence[dict]) -> str:
    """The releases file's text: a JSON list of ``ReleaseSpec`` (lambdas/domain/release.py)."""
    return json.dumps(list(specs), sort_keys=True, indent=1)
