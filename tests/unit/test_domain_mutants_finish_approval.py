"""The end of a rollout, the approval a person is asked for, and the error names the state machine's Retry and
Catch clauses list.

Given a rollout or rollback that passed its last step, when Finish Rollout runs, then the Deployment gets its own
maxSurge back and albgate's hold is cleared, and the outcome and its time are recorded. Given a step that waits
for a person, the approval request names the execution, the Deployment, the cluster, the step, how many new pods
it brings and the image, with the two commands to approve or reject. The error families list exactly their leaf
classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lambdas.domain import errors
from lambdas.domain.ports import DeploymentPatch, Ports
from lambdas.domain.rollout.approval import approval_request
from lambdas.domain.rollout.finish import finish_rollout
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from tests.unit.test_domain_mutants_gatekeeper import Clock
from tests.unit.test_domain_mutants_step import NEW, OLD, rollout_state


@dataclass
class Patches:
    patches: list[tuple[str, str, DeploymentPatch]] = field(default_factory=list)

    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> None:
        self.patches.append((namespace, name, patch))


@pytest.mark.parametrize("mode,outcome", [("rollout", "succeeded"), ("rollback", "rolled_back")])
def test_finishing_gives_back_max_surge_clears_the_hold_and_records_the_outcome(mode, outcome):
    # Given a rollout (or rollback) of a Deployment whose own maxSurge was "25%"
    kube = Patches()
    s = rollout_state(mode).model_copy(update={"original_max_surge": "25%"})
    # When Finish Rollout runs at t=1234.5
    s = finish_rollout(Ports(kube=kube, elb=None, clock=Clock(1234.5)), s)
    # Then one patch restores maxSurge and empties the hold, and the outcome and time are recorded
    assert kube.patches == [("shop", "web", DeploymentPatch(max_surge="25%", annotations={ROLLOUT_ANNOTATION: ""}))]
    assert (s.outcome, s.finished_at) == (outcome, 1234.5)


def test_an_approval_request_says_what_the_next_step_does_and_how_to_answer():
    # Given step 1 of the plan [1, 3] (3 replicas) waiting for a person
    s = rollout_state(next_step=0)
    # When the approval is requested / Then it names everything a person needs, and the two commands
    assert approval_request(s, "TOKEN-1", "exec-1") == {
        "execution_name": "exec-1", "deployment": "shop/web", "cluster": "prod", "step": 1, "new_pods_after_step": 1,
        "image": NEW,
        "approve": "aws stepfunctions send-task-success --task-token TOKEN-1 --task-output '{}'",
        "reject": "aws stepfunctions send-task-failure --task-token TOKEN-1 --error ApprovalRejected"}


def test_past_the_plan_an_approval_counts_every_replica():
    s = rollout_state("rollback", next_step=2)
    answer = approval_request(s, "T", "e")
    assert answer["new_pods_after_step"] == s.replicas == 3 and answer["image"] == OLD


def test_each_error_family_lists_its_leaf_classes_only():
    retryable, permanent = errors.retryable_error_names(), errors.permanent_error_names()
    assert "ThrottledError" in retryable and "ConflictError" in retryable and "RetryableError" not in retryable
    assert "InvalidInputError" in permanent and "UnsafeConfigurationError" in permanent
    assert "PermanentError" not in permanent and not set(retryable) & set(permanent)
    assert retryable == sorted(retryable) and permanent == sorted(permanent)
    leaves = {c.__name__ for c in vars(errors).values()
              if isinstance(c, type) and issubclass(c, errors.AlbgateError) and not c.__subclasses__()}
    assert set(retryable) | set(permanent) == leaves
