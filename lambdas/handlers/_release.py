"""What the release functions share: the configured releases and the child executions, real or installed.

Invariant: in Lambda the releases come from the file the stack ships in a layer (``ALBGATE_RELEASES`` names it,
stacks/constructs/release_workflow.py) and the children are reached through Step Functions
(lambdas/adapters/release_children.py); the simulation installs its own with ``use_release_deps``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.ports import ChildExecutions
from lambdas.domain.release import ReleaseSpec, parse_specs

RELEASES_ENV = "ALBGATE_RELEASES"
RELEASES_PATH = "/opt/albgate/releases.json"


@dataclass(frozen=True)
class ReleaseDeps:
    specs: dict[str, ReleaseSpec]
    executions: ChildExecutions


_installed: ReleaseDeps | None = None


def use_release_deps(deps: ReleaseDeps | None) -> None:
    """Install the releases and child executions (the simulation does); None restores the real ones."""
    global _installed
    _installed = deps


def release_deps() -> ReleaseDeps:
    if _installed is not None:
        return _installed
    return _real_deps()


@functools.lru_cache(maxsize=1)
def _real_deps() -> ReleaseDeps:
    path = os.environ.get(RELEASES_ENV, "")
    if not path:
        raise InvalidInputError(f"handler environment: {RELEASES_ENV} is not set; the release stack sets it: redeploy")
    try:
        with open(path, encoding="utf-8") as f:
            specs = parse_specs(f.read())
    except OSError as exc:
        raise InvalidInputError(f"handler environment: {RELEASES_ENV} {path}: {exc}") from exc
    from lambdas.adapters.release_children import StepFunctionsChildren  # only Lambda pays for boto3

    return ReleaseDeps(specs, StepFunctionsChildren(os.environ.get("AWS_REGION", "")))
