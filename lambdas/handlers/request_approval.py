"""Lambda `Wait For Approval`: announce that a step waits for a person, with the task token to answer.

Thin: the approval request is logged as structured JSON (a log subscription or the console shows it); the
execution waits until somebody calls SendTaskSuccess or SendTaskFailure with the token.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import rollout
from lambdas.handlers._observability import logger
from lambdas.handlers._runtime import task


@task("Wait For Approval")
def handler(event: dict, context: Any) -> dict:
    request = rollout.approval_request(event["state"], event["task_token"], event["execution_name"])
    logger.info("approval needed", extra={"approval": request})
    return request
