"""The step plan: how many pods run the new version after each step of a rollout.

Invariant: the plan is strictly increasing, every entry is between 1 and ``replicas``, and the last entry is
``replicas``. Percent steps round up (as Kubernetes rounds maxSurge: docs/facts.md, Kubernetes Deployment
controller) so that a step never asks for zero new pods; steps that round to the same count are merged.
"""

from __future__ import annotations

import math

from lambdas.domain.models import RolloutPolicy


def resolve_step(step: int | str, replicas: int) -> int:
    """Pods a step asks for: an int is a pod count, '25%' is a share of replicas rounded up."""
    if isinstance(step, int):
        return min(step, replicas)
    pct = int(step.rstrip("%"))
    return min(replicas, max(1, math.ceil(replicas * pct / 100)))


def step_targets(replicas: int, policy: RolloutPolicy) -> list[int]:
    """Cumulative new-pod counts after each step, e.g. 3 replicas, [1, 25%, 50%, 100%] -> [1, 2, 3]."""
    if replicas < 1:
        return []
    if policy.batch_size is not None:
        return list(range(policy.batch_size, replicas, policy.batch_size)) + [replicas]
    targets: list[int] = []
    for step in policy.steps:
        n = resolve_step(step, replicas)
        if not targets or n > targets[-1]:
            targets.append(n)
    if targets[-1] != replicas:  # the validator insists on a last '100%', this guards int-only plans
        targets.append(replicas)
    return targets


def batch_sizes(targets: list[int]) -> list[int]:
    """New pods each step adds: the differences of the cumulative plan."""
    return [b - a for a, b in zip([0] + targets, targets)]
