"""The gated rollout state machine, built from readable fragments so the console graph tells the story.

Invariant: every loop is bounded (a deadline checked by the handler that decides it, and a poll budget) and
ends in an explicit Fail with an error and a cause a person can act on; every Lambda task retries exactly the
retryable error names of ``lambdas/domain/errors.py`` plus Lambda's transient errors, and catches everything
else. A task-token wait is never retried on its own timeout: an approval nobody answered counts as a rejection
(``Record Approval Timeout``, then the same rollback decision a rejection reaches). Throttling has a Retry
clause of its own (first, fully jittered, capped, more attempts: ``THROTTLE_ERRORS``), because concurrent
rollouts share the account's Describe* bucket and are throttled together. The rollback path is the
same step fragment as the rollout path, prefixed "Rollback: ", so a rollback is gated exactly like a rollout.

Data flow: each task takes the whole state (``$``) and returns the whole, updated state (``ResultPath: $``).
A caught error lands in ``$.failure`` ({Error, Cause}) and the rollback decision reads it.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_events as events
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas.domain.errors import permanent_error_names, retryable_error_names
from lambdas.domain.limits import APPROVAL_TIMEOUT_SECONDS, ROLLOUT_TIMEOUT_SECONDS
from lambdas.domain.contract import (
    APPROVAL_TIMED_OUT,
    EVENT_SOURCE,
    PREFLIGHT_WAITING,
    ROLLBACK_PREFIX,
    ROLLED_BACK_ERROR,
    ROLLOUT_STEP_PASSED,
    Verdict,
)
from stacks.constructs.handler_specs import HandlerSpec

# Lambda's own transient failures, plus a timed-out invocation: every handler is idempotent, so a retry after a
# timeout cannot double-step. The first four are the Step Functions best-practice list, which is also what CDK's
# LambdaInvoke retries by default (we turn that default off to own the policy); docs/facts.md, "Rollout state
# machine: retries and the approval timeout".
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Sandbox.Timedout",
    "Lambda.Unknown",  # what the Step Functions guide calls an unhandled Lambda error, timeouts included
    "States.Timeout",
]
# What a Task state raises when its TimeoutSeconds (States.Timeout) or HeartbeatSeconds (States.HeartbeatTimeout,
# also matched by States.Timeout) passes (docs/facts.md, "Rollout state machine: retries and the approval
# timeout"). For a task-token wait that is an answer (nobody called back in time), not a transient failure: such
# a task never retries them, and its caller catches them.
TASK_TIMEOUT_ERRORS = ["States.Timeout", "States.HeartbeatTimeout"]
RETRY_INTERVAL = Duration.seconds(2)
RETRY_MAX_ATTEMPTS = 5
RETRY_BACKOFF = 2.0

# Throttling is different from the other transient errors: the account's Describe* bucket (40 tokens, 10/s) is
# shared by every rollout and the Load Balancer Controller (docs/facts.md, "ELB API throttling"), so when it runs
# dry many executions are throttled at the same moment (an ECR push starts one rollout per Deployment at once).
# Retrying them all after the same 2, 4, 8 ... s keeps them in lock-step; full jitter (a delay drawn uniformly from
# 0 to the backoff) spreads them out, the cap keeps each wait at most a minute, and more attempts keep trying for a
# while. A throttled task has changed nothing (Preflight only reads; every other handler is idempotent), so waiting
# is safe: an overloaded account makes a new rollout wait at Preflight instead of refusing it. What it costs is a
# state transition per retry. Worst case, every draw at its maximum: 2+4+8+16+32 s, then 60 s per attempt, about 16
# minutes for 20 retries (about 8 on average), the order of a step's 900 s deadline. Measured with the Describe*
# replay of bench/bench_cost.py (docs/benchmarks.md, "Concurrent rollouts").
THROTTLE_ERRORS = ["ThrottledError", "Lambda.TooManyRequestsException"]
THROTTLE_RETRY_INTERVAL = Duration.seconds(2)
THROTTLE_RETRY_BACKOFF = 2.0
THROTTLE_RETRY_MAX_DELAY = Duration.seconds(60)
THROTTLE_RETRY_MAX_ATTEMPTS = 20

# How long `Wait For Approval` waits for a person (its TimeoutSeconds). Unanswered by then, the approval counts as
# a rejection: $.failure becomes APPROVAL_TIMED_OUT with a cause naming the step, and the rollout goes to the
# same rollback decision a SendTaskFailure reaches. A fixed 24 h, not a policy field: the policy has no place for
# it yet, and the execution's own timeout (ROLLOUT_TIMEOUT_SECONDS, 48 h) must leave room after the wait
# for the rollback it may lead to (docs/rollout.md, "Approvals").
APPROVAL_TIMEOUT_HOURS = APPROVAL_TIMEOUT_SECONDS // 3600  # Start Step holds the gates through the same wait

# Gate and drain verdicts written by the handlers into $.gate.status / $.drain.status (lambdas/domain/contract.py).
PASSED, WAITING, FAILED, DRAINING = (v.value for v in (Verdict.PASSED, Verdict.WAITING, Verdict.FAILED, Verdict.DRAINING))


def _drained_or_handed_over() -> sfn.Condition:
    """The step is done with its drain: a look saw its old targets out of the pool, or (between steps) albgate
    deregistered them and the next step's gate holds every release until a look shows them so."""
    return sfn.Condition.or_(
        sfn.Condition.string_equals("$.drain.status", PASSED),
        sfn.Condition.string_equals("$.drain.status", DRAINING),
    )


def invoke_lambda(
    scope: Construct,
    state_name: str,
    fn: lambda_.IFunction,
    comment: str,
    *,
    integration: sfn.IntegrationPattern = sfn.IntegrationPattern.REQUEST_RESPONSE,
    payload: sfn.TaskInput | None = None,
    timeout: Duration | None = None,
    spread_throttles: bool = False,
) -> tasks.LambdaInvoke:
    """A Lambda task that retries the retryable error names with backoff and leaves the rest to a Catch.

    ``timeout``: the Task state's TimeoutSeconds; for a ``.waitForTaskToken`` task, how long it waits for the
    answer. A task-token task does not retry ``TASK_TIMEOUT_ERRORS`` (a retry would ask again, with a new
    token, instead of going on): the caller must catch them.
    ``spread_throttles``: throttling errors get their own, first Retry clause (``throttle_retry``): more
    attempts, capped, fully jittered, so that concurrent executions throttled together retry apart. Without
    it, throttling is retried like any other transient error.
    """
    waits_for_token = integration is sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN
    # payloadResponseOnly may not be combined with integrationPattern, so each shape sets only its own.
    shape: dict = (
        {"integration_pattern": integration, "payload": payload, "result_path": sfn.JsonPath.DISCARD}
        if waits_for_token
        else {"payload_response_only": True, "result_path": "$", "payload": payload}
    )
    task = tasks.LambdaInvoke(
        scope,
        state_name,
        lambda_function=fn,
        comment=comment,
        retry_on_service_exceptions=False,  # we own the retry policy: LAMBDA_TRANSIENT_ERRORS covers CDK's default
        task_timeout=sfn.Timeout.duration(timeout) if timeout else None,
        **shape,
    )
    transient = retryable_error_names() + LAMBDA_TRANSIENT_ERRORS
    if waits_for_token:
        transient = [e for e in transient if e not in TASK_TIMEOUT_ERRORS]
    if spread_throttles:
        # Step Functions uses the first Retry clause whose ErrorEquals matches, so this one goes first and the
        # general clause no longer names these errors.
        task.add_retry(**throttle_retry())
        transient = [e for e in transient if e not in THROTTLE_ERRORS]
    task.add_retry(
        errors=transient,
        interval=RETRY_INTERVAL,
        max_attempts=RETRY_MAX_ATTEMPTS,
        backoff_rate=RETRY_BACKOFF,
    )
    return task


def wait_for(scope: Construct, name: str, comment: str, path: str = "$.wait_seconds") -> sfn.Wait:
    """A Wait state for the seconds a task chose and put at ``path`` (whole seconds, the ASL's unit)."""
    return sfn.Wait(scope, name, comment=comment, time=sfn.WaitTime.seconds_path(path))


def throttle_retry() -> dict:
    """The Retry clause for throttling errors, as ``add_retry`` keyword arguments (see THROTTLE_ERRORS)."""
    return {
        "errors": list(THROTTLE_ERRORS),
        "interval": THROTTLE_RETRY_INTERVAL,
        "backoff_rate": THROTTLE_RETRY_BACKOFF,
        "max_delay": THROTTLE_RETRY_MAX_DELAY,
        "max_attempts": THROTTLE_RETRY_MAX_ATTEMPTS,
        "jitter_strategy": sfn.JitterType.FULL,
    }


def rollout_task(
    scope: Construct, state_name: str, fn: lambda_.IFunction, comment: str, **kwargs
) -> tasks.LambdaInvoke:
    """A Lambda task of the rollout state machine: many rollouts of one account may run at once, so
    throttling is retried apart (``spread_throttles``)."""
    return invoke_lambda(scope, state_name, fn, comment, spread_throttles=True, **kwargs)


def catch_all(task: tasks.LambdaInvoke, handler: sfn.IChainable) -> None:
    """Permanent errors by name (the contract), then anything left (retries exhausted, runtime errors)."""
    task.add_catch(handler, errors=permanent_error_names(), result_path="$.failure")
    task.add_catch(handler, errors=["States.ALL"], result_path="$.failure")


def announce_step_passed(scope: Construct, bus: events.IEventBus) -> tasks.EventBridgePutEvents:
    """PutEvents ``Rollout Step Passed`` on albgate's bus, straight from the state machine (no Lambda): which
    execution, which Deployment, the step that passed (1-based, of how many, with how many new pods) and its
    mode (a rollback's steps are announced too), whether its old targets were seen out of the pool or are handed
    over, and the execution's console link."""
    region = Stack.of(scope).region
    detail = {
        "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
        "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
        "console_url": sfn.JsonPath.format(
            "https://{}.console.aws.amazon.com/states/home?region={}#/v2/executions/details/{}",
            region,
            region,
            sfn.JsonPath.string_at("$$.Execution.Id"),
        ),
        "cluster": sfn.JsonPath.string_at("$.request.cluster"),
        "namespace": sfn.JsonPath.string_at("$.request.namespace"),
        "deployment": sfn.JsonPath.string_at("$.request.deployment"),
        "container": sfn.JsonPath.string_at("$.request.container"),
        "image": sfn.JsonPath.string_at("$.target_image"),
        "mode": sfn.JsonPath.string_at("$.mode"),
        "step": sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.step"), 1),
        "steps": sfn.JsonPath.array_length(sfn.JsonPath.list_at("$.plan")),
        "new_pods": sfn.JsonPath.array_get_item(sfn.JsonPath.list_at("$.plan"), sfn.JsonPath.number_at("$.step")),
        # PASSED: a look saw the step's old targets out of the pool (draining or gone); DRAINING: albgate
        # deregistered them, and the next step releases nothing until a look shows them so
        "old_targets": sfn.JsonPath.string_at("$.drain.status"),
    }
    return tasks.EventBridgePutEvents(
        scope,
        "Announce Step Passed",
        comment="Tell the teams' event rules that a step passed its gate and its old targets are out of the pool "
        "(albgate's event bus)",
        entries=[
            tasks.EventBridgePutEventsEntry(
                detail=sfn.TaskInput.from_object(detail),
                detail_type=ROLLOUT_STEP_PASSED,
                source=EVENT_SOURCE,
                event_bus=bus,
            )
        ],
        result_path=sfn.JsonPath.DISCARD,
    )


class GatedSteps(sfn.StateMachineFragment):
    """One pass over the step plan: approve?, start, gate on target health, release old pods, verify drain, bake.

    ``on_failure`` receives the state with ``$.failure`` set, whether a handler raised or a gate failed.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        on_failure: sfn.IChainable,
        with_approval: bool,
        event_bus: events.IEventBus | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        fn = functions

        start_step = rollout_task(
            self,
            "Start Step",
            fn["StartStep"],
            "Set maxSurge to this step's batch (maxUnavailable stays 0). On the first step also write the new "
            "image and albgate's readiness gate into the pod template, so every new pod waits for its target.",
        )
        check_health = rollout_task(
            self,
            "Check Target Health",
            fn["CheckTargetHealth"],
            "Gate: the step's new pods must be `healthy` in EVERY target group; `initial` (registered, no check "
            "passed yet) is not enough. Reads DescribeTargetHealth no faster than the health-check interval.",
        )
        healthy = sfn.Choice(self, "Targets Healthy?", comment="PASSED, WAITING (poll again) or FAILED")
        wait_health = wait_for(
            self, "Wait For Health Check",
            "Seconds chosen by the gate: the health-check interval, longer while registration is slow or when "
            "throttled",
        )
        gate_failed = sfn.Pass(
            self,
            "Record Gate Failure",
            comment="Turn the gate's verdict into the same $.failure shape a caught error has",
            parameters={"Error.$": "$.gate.error", "Cause.$": "$.gate.reason"},
            result_path="$.failure",
        )
        release = rollout_task(
            self,
            "Release Old Pods",
            fn["ReleaseOldPods"],
            "Open albgate's readiness gate on exactly this step's healthy pods: they turn Ready, and only then "
            "may the Deployment controller scale the old ReplicaSet down by the same number",
        )
        verify_drain = rollout_task(
            self,
            "Verify Drain",
            fn["VerifyDrain"],
            "The old pods' targets must leave every target group's pool (`draining` or gone; albgate deregisters any "
            "nobody did) before the next step releases anything; between steps the next step's gate checks it, "
            "on its own DescribeTargetHealth calls, while its pods start",
        )
        drained = sfn.Choice(
            self,
            "Old Targets Drained?",
            comment="PASSED, DRAINING (between steps: the next step's gate waits for them), WAITING (poll again) "
            "or FAILED",
        )
        wait_drain = wait_for(
            self, "Wait For Drain", "Draining lasts up to the deregistration delay, less when the target is idle"
        )
        drain_failed = sfn.Pass(
            self,
            "Record Drain Failure",
            parameters={"Error.$": "$.drain.error", "Cause.$": "$.drain.reason"},
            result_path="$.failure",
        )
        bake = wait_for(
            self, "Bake Step", "Watch the step under real traffic before the next one (policy.bake_seconds)",
            path="$.bake_seconds",
        )
        more = sfn.Choice(self, "More Steps?")
        done = sfn.Pass(self, "All Steps Passed")

        for task in (start_step, check_health, release, verify_drain):
            catch_all(task, on_failure)
        gate_failed.next(on_failure)
        drain_failed.next(on_failure)

        if with_approval:
            approval_needed = sfn.Choice(
                self, "Approval Needed?", comment="policy.approval_before_steps names this step"
            )
            approval = rollout_task(
                self,
                "Wait For Approval",
                fn["RequestApproval"],
                "A person approves with SendTaskSuccess (or rejects with SendTaskFailure) using the task token; "
                f"unanswered after {APPROVAL_TIMEOUT_HOURS} h it counts as a rejection (never asked again)",
                integration=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
                payload=sfn.TaskInput.from_object(
                    {
                        "task_token": sfn.JsonPath.task_token,
                        "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                        # where the approver reads the token (RequestApproval never logs it)
                        "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                        "state": sfn.JsonPath.entire_payload,
                    }
                ),
                timeout=Duration.hours(APPROVAL_TIMEOUT_HOURS),
            )
            # next_step is the 0-based index of the step the approval is for (approval_request names it + 1)
            not_answered = sfn.Pass(
                self,
                "Record Approval Timeout",
                comment="Nobody answered in time: a rejection, with the same $.failure shape a caught error has",
                parameters={
                    "Error": APPROVAL_TIMED_OUT,
                    "Cause.$": f"States.Format('approval for step {{}} not answered within {APPROVAL_TIMEOUT_HOURS} "
                    "h', States.MathAdd($.next_step, 1))",
                },
                result_path="$.failure",
            )
            not_answered.next(on_failure)
            # First, so neither the permanent-name nor the States.ALL Catch of catch_all takes a timeout.
            approval.add_catch(not_answered, errors=list(TASK_TIMEOUT_ERRORS), result_path=sfn.JsonPath.DISCARD)
            catch_all(approval, on_failure)
            approval_needed.when(sfn.Condition.boolean_equals("$.approval_required", True), approval)
            approval_needed.otherwise(start_step)
            approval.next(start_step)
            entry: sfn.State = approval_needed
        else:
            entry = start_step

        start_step.next(check_health)
        check_health.next(healthy)
        healthy.when(sfn.Condition.string_equals("$.gate.status", PASSED), release)
        healthy.when(sfn.Condition.string_equals("$.gate.status", FAILED), gate_failed)
        healthy.otherwise(wait_health)
        wait_health.next(check_health)
        release.next(verify_drain)
        verify_drain.next(drained)
        if event_bus is not None:
            announce = announce_step_passed(self, event_bus)
            # An event that could not be published must not stop a rollout whose step passed: go on, keep the state.
            announce.add_catch(bake, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
            announce.next(bake)
            drained.when(_drained_or_handed_over(), announce)
        else:
            drained.when(_drained_or_handed_over(), bake)
        drained.when(sfn.Condition.string_equals("$.drain.status", FAILED), drain_failed)
        drained.otherwise(wait_drain)
        wait_drain.next(verify_drain)
        bake.next(more)
        more.when(sfn.Condition.boolean_equals("$.more_steps", True), entry)
        more.otherwise(done)

        self._start = entry
        self._ends = [done]

    @property
    def start_state(self) -> sfn.State:
        return self._start

    @property
    def end_states(self) -> list[sfn.INextable]:
        return self._ends


class RolloutWorkflow(Construct):
    """The state machine `albgate-rollout`: preflight, gated steps, finish; on failure a gated rollback."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        specs: tuple[HandlerSpec, ...] = (),
        state_machine_name: str | None = None,
        event_bus: events.IEventBus | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        missing = {"Preflight", "StartStep", "CheckTargetHealth", "ReleaseOldPods", "VerifyDrain", "RollBack",
                   "FinishRollout", "RequestApproval"} - set(functions)
        if missing:
            raise ValueError(f"RolloutWorkflow needs functions for {sorted(missing)}")
        fn = functions

        refused = sfn.Fail(
            self,
            "Rollout Refused",
            comment="Preflight failed, or another execution holds the Deployment's lease: nothing in the cluster "
            "was changed",
            error_path="$.failure.Error",
            cause_path="$.failure.Cause",
        )
        failed = sfn.Fail(
            self,
            "Rollout Failed",
            comment="A step failed and the policy does not roll back, or there was nothing to roll back",
            error_path="$.failure.Error",
            cause_path="$.failure.Cause",
        )
        rolled_back = sfn.Fail(
            self,
            "Rollout Rolled Back",
            comment="The previous revision is serving again, reached through the same gates",
            error=ROLLED_BACK_ERROR,
            cause_path="$.failure_summary",
        )
        rollback_failed = sfn.Fail(
            self,
            "Rollback Failed",
            comment="The rollback itself could not pass its gates: a person must look at the Deployment now",
            error="RollbackFailed",
            cause_path="$.failure_summary",
        )
        succeeded = sfn.Succeed(self, "Rollout Succeeded")

        preflight = rollout_task(
            self,
            "Preflight",
            fn["Preflight"],
            "Take the Deployment's lease for this execution (one rollout per Deployment, whoever started it), "
            "validate the input, find every target group serving the Deployment and read its real health-check "
            "and deregistration settings; stop here, changing nothing, when the rollout cannot be safe",
            payload=sfn.TaskInput.from_object(
                {
                    "request": sfn.JsonPath.object_at("$$.Execution.Input"),
                    "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                    # the Deployment's lease is bound to this execution (lambdas/domain/lease.py)
                    "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                    # its own answer when it came back from `Wait For Describe Turn`
                    "state": sfn.JsonPath.entire_payload,
                }
            ),
        )
        preflight.add_catch(refused, errors=permanent_error_names(), result_path="$.failure")
        preflight.add_catch(refused, errors=["States.ALL"], result_path="$.failure")

        # --- rollback path ---------------------------------------------------------------------------------
        finish_rollback = rollout_task(
            self,
            "Record Rollback",
            fn["FinishRollout"],
            "Restore the strategy, record the outcome `rolled_back` and emit metrics",
        )
        summarise_rollback_failure = sfn.Pass(
            self,
            "Summarise Rollback Failure",
            parameters={
                "summary.$": "States.Format('rollback failed: {} ({}); it started because: {}', "
                "$.failure.Error, $.failure.Cause, $.failure_summary)"
            },
            result_path="$.rollback_failure",
        )
        summarise_rollback_failure.next(
            sfn.Pass(self, "Keep Rollback Cause", input_path="$.rollback_failure.summary", result_path="$.failure_summary")
        ).next(rollback_failed)
        rollback_steps = GatedSteps(
            self, "Rollback", functions=fn, on_failure=summarise_rollback_failure, with_approval=False,
            event_bus=event_bus,
        ).prefix_states(ROLLBACK_PREFIX)
        catch_all(finish_rollback, summarise_rollback_failure)
        rollback_steps.next(finish_rollback).next(rolled_back)

        roll_back = rollout_task(
            self,
            "Roll Back",
            fn["RollBack"],
            "Write the previous image back into the template (albgate's gate stays) and restart the plan, "
            "so the rollback drops nothing either",
        )
        could_not_start = sfn.Fail(
            self,
            "Rollback Could Not Start",
            comment="The previous image could not be written back: a person must look at the Deployment now",
            error_path="$.rollback_error.Error",
            cause_path="$.rollback_error.Cause",
        )
        roll_back.add_catch(could_not_start, errors=["States.ALL"], result_path="$.rollback_error")
        needs_rollback = sfn.Choice(
            self, "Anything To Roll Back?", comment="Nothing to undo when the template was never changed"
        )
        roll_back.next(needs_rollback)
        needs_rollback.when(sfn.Condition.boolean_equals("$.rollback_needed", True), rollback_steps)
        needs_rollback.otherwise(failed)

        should_roll_back = sfn.Choice(
            self,
            "Roll Back?",
            comment="policy.rollback_on_failure, unless the step's targets were never seen (throttled): a blind "
            "rollback could remove pods that serve",
        )
        should_roll_back.when(sfn.Condition.boolean_equals("$.rollback_allowed", True), roll_back)
        should_roll_back.otherwise(failed)

        # --- rollout path ----------------------------------------------------------------------------------
        rollout_steps = GatedSteps(
            self, "Rollout", functions=fn, on_failure=should_roll_back, with_approval=True, event_bus=event_bus
        )
        finish = rollout_task(
            self,
            "Finish Rollout",
            fn["FinishRollout"],
            "Restore maxSurge, record the outcome `succeeded` and emit metrics",
        )
        catch_all(finish, failed)

        # Preflight's look at the target groups waits for its turn in albgate's share of the account's Describe*
        # calls (lambdas/domain/budget.py); a booked turn always comes, and Preflight gives up after ten.
        turn_booked = sfn.Choice(
            self,
            "Describe Turn Booked?",
            comment="Preflight's Describe* calls wait for their turn in albgate's share of the account's bucket",
        )
        wait_for_turn = wait_for(
            self, "Wait For Describe Turn", "Until the turn booked for Preflight's Describe* calls"
        )
        preflight.next(turn_booked)
        turn_booked.when(
            sfn.Condition.and_(
                sfn.Condition.is_present("$.preflight"),
                sfn.Condition.string_equals("$.preflight", PREFLIGHT_WAITING),
            ),
            wait_for_turn.next(preflight),
        )
        turn_booked.otherwise(rollout_steps)
        rollout_steps.next(finish).next(succeeded)
        definition = preflight

        log_group = logs.LogGroup(
            self,
            "Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.RETAIN,  # the execution history is an audit trail, like the functions' logs
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            # The domain's lock on a Deployment (lambdas/domain/trigger.py, lock_seconds) assumes this cap.
            timeout=Duration.seconds(ROLLOUT_TIMEOUT_SECONDS),
            comment="albgate: roll a Deployment in steps, each gated on ALB target health; gated rollback",
        )
