"""Lambda `Plan Release`: check the release input and name every child rollout before the first wave.

Thin: ``{"input": {"release", "image"}, "execution_name"}`` in; lambdas.domain.release.plan_release with the
configured release; ``{"release": <ReleaseState>}`` out.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.release import plan_release, spec_named
from lambdas.handlers._release import release_deps
from lambdas.handlers._runtime import task


@task("Plan Release")
def handler(event: dict, context: Any) -> dict:
    raw = event.get("input") if isinstance(event, dict) else None
    if not isinstance(raw, dict):
        raise InvalidInputError('input: expected {"release": "<configured release>", "image": "<repo>@sha256:..."}')
    unknown = sorted(set(raw) - {"release", "image"})
    if unknown:
        raise InvalidInputError(f"input: unknown field(s) {unknown}; a release input has release and image only")
    spec = spec_named(release_deps().specs, raw.get("release"))
    return {"release": plan_release(spec, raw.get("image", ""), str(event.get("execution_name") or "")).dump()}
