"""A `.waitForTaskToken` task of a service other than Lambda (EventBridge PutEvents: the token goes out in an event,
as the release's wave approval sends it) offers its token to the runner's ``on_task_token``, like a Lambda's.

A hand-written definition: `Ask` puts an event carrying `$$.Task.Token` on a bus and waits; `Approved` passes its
answer on; a failure is caught into `Rejected`. The answer's moment is the simulated clock's."""

from __future__ import annotations

import pytest

from albgate.sfn_local.extract import ExtractedMachine
from albgate.sfn_local.runner import LocalStateMachine, TaskTokenRequest, UnansweredTaskToken
from tests.workflow.conftest import VirtualClock

DEFINITION = {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
            "Parameters": {"Entries": [{"EventBusName": "approvals", "Source": "test", "DetailType": "Asked",
                                        "Detail": {"task_token.$": "$$.Task.Token", "what.$": "$.what"}}]},
            "TimeoutSeconds": 3600,
            "ResultPath": "$.answer",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Rejected"}],
            "Next": "Approved",
        },
        "Approved": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
    },
}
MACHINE = ExtractedMachine("Asker", DEFINITION, {})


def run(answer) -> tuple[object, list[TaskTokenRequest], VirtualClock]:  # noqa: ANN001 - a callback
    clock = VirtualClock()
    seen: list[TaskTokenRequest] = []

    def on_task_token(request: TaskTokenRequest) -> None:
        seen.append(request)
        answer(request, clock)

    with LocalStateMachine(MACHINE, clock, on_task_token=on_task_token) as machine:
        result = machine.run({"what": "wave 2"}, name="ask-1")
    return result, seen, clock


def test_the_token_an_event_carries_is_offered_and_an_approval_goes_on():
    # Given a person who takes five minutes to approve
    def approve(request, clock):  # noqa: ANN001
        clock.sleep(300)
        request.succeed({"by": "release engineer"})

    # When the execution waits for the event's token
    result, seen, clock = run(approve)
    # Then the token was offered once, named by its state and service, and the answer is the task's output
    assert [(r.function_logical_id, r.state_name, r.state_machine) for r in seen] == [("events", "Ask", "Asker")]
    assert result.status == "SUCCEEDED" and result.output["answer"] == {"by": "release engineer"}
    assert result.simulated_seconds == pytest.approx(300)


def test_a_rejection_fails_the_task_with_the_persons_error():
    result, _, _ = run(lambda request, clock: request.fail("ReleaseWaveRejected", "not today"))
    assert (result.status, result.error, result.cause) == ("FAILED", "ReleaseWaveRejected", "not today")


def test_a_token_nobody_answers_stops_the_run_loudly():
    with pytest.raises(UnansweredTaskToken, match="state 'Ask' \\(events\\) sent a task token"):
        run(lambda request, clock: None)
