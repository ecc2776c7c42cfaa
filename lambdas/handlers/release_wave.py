"""Lambda `Start Wave Rollouts` / `Check Wave Rollouts` / the rollback's: one look at the release's children.

Thin: ``{"release": <ReleaseState>, "rollback": bool}`` in; on the first look of a rollback the phase turns to
it; lambdas.domain.release.advance_release through the child executions; ``{"release": ...}`` out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.release import ReleaseState, advance_release, begin_rollback
from lambdas.handlers._release import release_deps
from lambdas.handlers._runtime import task


@task("Release Wave")
def handler(event: dict, context: Any) -> dict:
    state = ReleaseState.parse(event.get("release") if isinstance(event, dict) else None)
    if event.get("rollback") and state.phase != "rollback":
        state = begin_rollback(state)
    return {"release": advance_release(release_deps().executions, state).dump()}
