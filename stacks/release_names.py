"""The names that let a release reach another environment's stack: fixed at synth, the same on both sides.

Invariant: the release stack computes the ARNs from these names and the environment's stack gives its resources
exactly these names; both import them from here.
"""

from __future__ import annotations

import hashlib

MAX_ROLE_NAME = 64  # IAM role names
MAX_STATE_MACHINE_NAME = 80


def partition_of(region: str) -> str:
    """The partition of a Region (ARNs of another account cannot use the stack's partition token)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _bounded(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:limit - 9]}-{digest}"


def rollout_state_machine_name(env_stack_name: str) -> str:
    """The name an environment's stack gives its rollout state machine when releases are configured."""
    return _bounded(f"{env_stack_name}-Rollout", MAX_STATE_MACHINE_NAME)


def release_role_name(env_stack_name: str) -> str:
    """The role an environment's stack in another account creates for the release to start its rollouts."""
    return _bounded(f"{env_stack_name}-Release", MAX_ROLE_NAME)




def release_stack_name(root_stack_name: str) -> str:
    """The release stack's name; the roles of the other accounts trust only roles of this stack."""
    return f"{root_stack_name}-Release"
