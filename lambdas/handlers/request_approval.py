"""Lambda `Wait For Approval`: announce that a step waits for a person, and how to answer it.

Thin: the approval request is logged as structured JSON (a log subscription or the console shows it); the
execution waits until somebody calls SendTaskSuccess or SendTaskFailure with the task token.

Invariant: the task token is never logged and never returned. Whoever holds it can approve the step (or fail it)
with nothing but states:SendTaskSuccess, so it stays where Step Functions keeps it: the `Wait For Approval` task's
input in the execution's history (event ``TaskScheduled``), which only principals allowed
states:GetExecutionHistory read (docs/threat-model.md, "Approvals"). The request built here names the token as a
shell variable and gives the command that reads it from there; this handler never logs its event (Powertools'
event logging is never enabled: ``observed`` does not use ``inject_lambda_context``).
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.rollout import approval
from lambdas.domain.state import RolloutState
from lambdas.handlers._observability import logger
from lambdas.handlers._runtime import task

TOKEN_VARIABLE = "TASK_TOKEN"  # the shell variable the commands read the token from


def token_command(execution_arn: str) -> str:
    """The command that sets ``TASK_TOKEN`` from the execution's history: the latest task scheduled, which is
    `Wait For Approval` while the execution waits there; its parameters are the Lambda invocation's, payload
    included."""
    return (
        f"{TOKEN_VARIABLE}=$(aws stepfunctions get-execution-history --execution-arn {execution_arn} "
        "--reverse-order --max-items 10 "
        "--query \"events[?type=='TaskScheduled'] | [0].taskScheduledEventDetails.parameters\" --output text "
        "| jq -r .Payload.task_token)"
    )


def approval_request(event: dict) -> dict[str, Any]:
    """What a person needs to approve or reject the next step, without the token itself."""
    name = event["execution_name"]
    arn = event.get("execution_arn") or f"<ARN of execution {name}>"
    request = approval.approval_request(RolloutState.model_validate(event["state"]), f'"${TOKEN_VARIABLE}"', name)
    return {**request, "execution_arn": arn, "task_token": token_command(arn)}


@task("Wait For Approval")
def handler(event: dict, context: Any) -> dict:
    request = approval_request(event)
    logger.info("approval needed", extra={"approval": request})
    return request
