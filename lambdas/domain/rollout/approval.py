"""Request Approval: what a person needs to approve or reject the next step."""

from __future__ import annotations

from lambdas.domain.contract import APPROVAL_REJECTED
from lambdas.domain.state import RolloutState


def approval_request(s: RolloutState, task_token: str, execution_name: str) -> dict:
    """What a person needs to approve or reject the next step."""
    step = s.next_step + 1
    return {
        "execution_name": execution_name,
        "deployment": f"{s.request.namespace}/{s.request.deployment}",
        "cluster": s.request.cluster,
        "step": step,
        "new_pods_after_step": s.plan[s.next_step] if s.next_step < len(s.plan) else s.replicas,
        "image": s.target_image,
        "approve": f"aws stepfunctions send-task-success --task-token {task_token} --task-output '{{}}'",
        "reject": f"aws stepfunctions send-task-failure --task-token {task_token} --error {APPROVAL_REJECTED}",
    }
