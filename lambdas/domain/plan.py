"""The step plan: how many pods run the new version after each step of a rollout.

Invariant: the plan is strictly increasing, every entry is between 1 and ``replicas``, and the last entry is
``replicas``. Percent steps round up (as Kubernetes rounds maxSurge: docs/facts.md, Kubernetes Deployment
controller) so that a step never asks for zero new pods; steps that resolve to the same count are merged.

What a policy's shape cannot say, the replica count does: a pod count against a percentage (``[1, '25%', 3]``
resolves to 1, 2, 3 pods on 8 replicas but to 1, 5, 3 on 20) and the plan's length, which
``approval_before_steps`` counts in. ``step_problems`` names those for one replica count; Preflight refuses a
rollout it finds any in before anything changes, and the CDK config checks its policy against the replicas it
lists. ``step_targets`` itself never refuses: it skips a step that would take pods back.
"""

from __future__ import annotations

import math

from lambdas.domain.documents import quote
from lambdas.domain.models import RolloutPolicy, pods


def resolve_step(step: int | str, replicas: int) -> int:
    """Pods a step asks for: an int is a pod count, '25%' is a share of replicas rounded up."""
    if isinstance(step, int):
        return min(step, replicas)
    return min(replicas, max(1, resolve_int_or_percent(step, replicas, round_up=True)))


def resolve_int_or_percent(value: int | str, replicas: int, *, round_up: bool) -> int:
    """A Deployment's maxSurge or maxUnavailable in pods: maxSurge rounds up, maxUnavailable rounds down
    (docs/facts.md, Kubernetes Deployment controller: ResolveFenceposts)."""
    if isinstance(value, int):
        return value
    pct = int(str(value).rstrip("%"))
    exact = replicas * pct / 100
    return math.ceil(exact) if round_up else math.floor(exact)


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


def step_problems(replicas: int, policy: RolloutPolicy) -> list[tuple[str, str]]:
    """Why ``policy`` makes no sound plan for ``replicas`` (>= 1): ``(field, message)`` pairs naming the policy's
    field (``steps``, ``approval_before_steps``) and the fix; empty when there is none.

    - a step that resolves to fewer pods than a step before it: the plan counts all new pods so far and cannot
      take pods back, so the step would be dropped without a word (a step that resolves to the *same* count
      is merged: that is how percentages round on few replicas, e.g. the default on 3 replicas);
    - an approval before a step the plan does not have (it has one step per distinct count)."""
    problems: list[tuple[str, str]] = []
    if policy.batch_size is None:
        largest: tuple[int, int | str, int] | None = None  # (step number, step, pods) of the largest so far
        for i, step in enumerate(policy.steps, start=1):
            n = resolve_step(step, replicas)
            if largest is not None and n < largest[2]:
                problems.append(("steps", (
                    f"{_described(i, step, n, replicas)} asks for fewer new pods than "
                    f"{_described(*largest, replicas)} before it; a plan counts all new pods so far and cannot take "
                    f"any back: on the Deployment's {replicas} replicas, order the steps so that each asks for at "
                    "least as many pods as the one before, or use only percentages (they grow on any replica count)"
                )))
                break
            if largest is None or n > largest[2]:
                largest = (i, step, n)
    plan = step_targets(replicas, policy)
    beyond = sorted(n for n in policy.approval_before_steps if n > len(plan))
    if beyond:
        how = (f"batches of {policy.batch_size}" if policy.batch_size is not None
               else "steps that resolve to the same count merge")
        problems.append(("approval_before_steps", (
            f"names step {', '.join(map(str, beyond))}, but on the Deployment's {replicas} replicas the plan has "
            f"{len(plan)} step(s), {plan} new pods after each ({how}); name steps 1 to {len(plan)}"
        )))
    return problems


def _described(i: int, step: int | str, n: int, replicas: int) -> str:
    """``step 2 (25% of 20 replicas = 5 pods)``, ``step 3 (3 pods)``."""
    if isinstance(step, str):
        return f"step {i} ({quote(step)} of {replicas} replicas = {pods(n)})"
    return f"step {i} ({pods(step)})" if step == n else f"step {i} ({pods(step)}, capped at {replicas})"


def batch_sizes(targets: list[int]) -> list[int]:
    """New pods each step adds: the differences of the cumulative plan."""
    return [b - a for a, b in zip([0] + targets, targets)]
