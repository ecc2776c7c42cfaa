"""Lambda `Gate Keeper` (EventBridge schedule): open albgate's gate on healthy pods born outside a rollout.

Thin: for each configured application, lambdas.domain.gatekeeper.keep_gates; the event carries the list
({"applications": [{"cluster", "namespace", "deployment"}, ...]}) as the schedule's input.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.errors import AlbgateError, InvalidInputError
from lambdas.domain.gatekeeper import keep_gates
from lambdas.handlers._observability import logger
from lambdas.handlers._runtime import ports_for, task


@task("Gate Keeper")
def handler(event: dict, context: Any) -> dict:
    apps = event.get("applications") if isinstance(event, dict) else None
    if not isinstance(apps, list):
        raise InvalidInputError("applications: the schedule input must list {cluster, namespace, deployment}")
    reports = []
    for app in apps:
        try:
            report = keep_gates(ports_for(app["cluster"]), app["namespace"], app["deployment"]).as_dict()
        except AlbgateError as exc:  # one broken application must not starve the others
            logger.warning("gate keeper skipped an application", extra={"application": app, "error": repr(exc)})
            report = {"deployment": f"{app.get('namespace')}/{app.get('deployment')}", "error": str(exc)}
        reports.append(report)
    return {"applications": reports}
