"""Fixtures for the workflow layer: one tiny CDK stack synthesized per session, and a virtual clock.

The stack has what the runner must execute faithfully: a Lambda poll loop through a Choice and a Wait with
SecondsPath, a Retry on a domain error class name with backoff, a Catch into a Fail that takes its error and
cause from the state, and a ``.waitForTaskToken`` approval with a TimeoutSeconds.
"""

from __future__ import annotations

import os

import pytest

from albgate.sfn_local.extract import ExtractedMachine, extract_state_machine

HANDLERS = "tests.workflow.handlers"
POLL_TIMEOUT_SECONDS = 10  # the Poll function's Timeout: an emulated Lambda timeout lasts this long
RETRY_INTERVAL, RETRY_BACKOFF, RETRY_MAX_ATTEMPTS = 2, 2.0, 3


class VirtualClock:
    """Simulated time: ``sleep`` only moves ``now`` forward and records how far."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.start = self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    @property
    def elapsed(self) -> float:
        return self.t - self.start


def synth_tiny_template() -> dict:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk import App, Duration, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks
    from aws_cdk.assertions import Template

    from lambdas.domain.errors import retryable_error_names

    app = App(context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Tiny")

    def fn(name: str, handler: str, timeout: int = 30) -> lambda_.Function:
        return lambda_.Function(
            stack,
            name,
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler=f"{HANDLERS}.{handler}",
            code=lambda_.Code.from_inline("# dispatched in-process"),
            timeout=Duration.seconds(timeout),
            memory_size=256,
        )

    poll_fn = fn("Poll", "poll", timeout=POLL_TIMEOUT_SECONDS)
    flaky_fn = fn("Flaky", "flaky")
    approval_fn = fn("RequestApproval", "request_approval")

    step_failed = sfn.Fail(stack, "Step Failed", error_path="$.failure.Error", cause_path="$.failure.Cause")
    no_approval = sfn.Fail(stack, "Not Approved", error_path="$.failure.Error", cause_path="$.failure.Cause")

    check = tasks.LambdaInvoke(
        stack, "Check", lambda_function=poll_fn, payload_response_only=True, retry_on_service_exceptions=False
    )
    check.add_retry(errors=["Sandbox.Timedout"], interval=Duration.seconds(1), max_attempts=2, backoff_rate=1.0)
    done = sfn.Choice(stack, "Done?")
    wait = sfn.Wait(stack, "Wait For Poll", time=sfn.WaitTime.seconds_path("$.wait_seconds"))

    step = tasks.LambdaInvoke(
        stack, "Flaky Step", lambda_function=flaky_fn, payload_response_only=True, retry_on_service_exceptions=False
    )
    step.add_retry(
        errors=retryable_error_names(),
        interval=Duration.seconds(RETRY_INTERVAL),
        backoff_rate=RETRY_BACKOFF,
        max_attempts=RETRY_MAX_ATTEMPTS,
    )
    step.add_catch(step_failed, errors=["States.ALL"], result_path="$.failure")

    approval = tasks.LambdaInvoke(
        stack,
        "Wait For Approval",
        lambda_function=approval_fn,
        integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
        payload=sfn.TaskInput.from_object(
            {"task_token": sfn.JsonPath.task_token, "state": sfn.JsonPath.entire_payload}
        ),
        result_path="$.approval",
        task_timeout=sfn.Timeout.duration(Duration.hours(1)),
        retry_on_service_exceptions=False,
    )
    approval.add_catch(no_approval, errors=["States.ALL"], result_path="$.failure")

    definition = check.next(
        done.when(sfn.Condition.string_equals("$.status", "DONE"), step.next(approval).next(sfn.Succeed(stack, "Done")))
        .otherwise(wait.next(check))
    )
    sfn.StateMachine(stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(definition))
    return Template.from_stack(stack).to_json()


@pytest.fixture(scope="session")
def tiny_template() -> dict:
    return synth_tiny_template()


@pytest.fixture(scope="session")
def tiny_machine(tiny_template: dict) -> ExtractedMachine:
    return extract_state_machine(tiny_template)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()
