"""The state machine's Retry and Catch clauses name exactly the error classes of lambdas/domain/errors.py.

Step Functions matches error names exactly (docs/facts.md, Step Functions error names), so a renamed or added
exception class that the definition does not list would silently stop being retried or caught."""

from __future__ import annotations

import pytest

from lambdas.domain.errors import permanent_error_names, retryable_error_names
from tests.infrastructure.cfn import definition, walk_states
from tests.infrastructure.test_template import lambda_target

# The families written out, not read from the functions that also generate the definition: a class moved to the
# wrong family (a permanent error retried for minutes, a transient one failing the rollout) fails here.
RETRYABLE = {"AwsUnavailableError", "ConflictError", "KubernetesUnavailableError", "ThrottledError",
             "WebhookNotReadyError"}
PERMANENT = {"AccessDeniedError", "InvalidInputError", "NotFoundError", "UnsafeConfigurationError"}


def _domain_names() -> set[str]:
    return RETRYABLE | PERMANENT


def test_the_families_are_the_documented_ones():
    assert set(retryable_error_names()) == RETRYABLE
    assert set(permanent_error_names()) == PERMANENT


def _lambda_tasks(template):
    return [(name, state) for name, state in walk_states(definition(template)["States"]) if lambda_target(state)]


def test_the_definition_has_lambda_tasks(template):
    # Guards the tests below against passing on an empty list
    assert len(_lambda_tasks(template)) >= 7


def test_retry_names_equal_the_retryable_family(template):
    # Given every Retry clause of every Lambda task / Then the domain names it lists are exactly the retryable ones
    for name, state in _lambda_tasks(template):
        listed = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert listed & _domain_names() == RETRYABLE, name


def test_catch_names_equal_the_permanent_family(template):
    # Given every Catch clause that names domain errors / Then it names exactly the permanent family
    clauses = [
        (name, set(c["ErrorEquals"]))
        for name, state in _lambda_tasks(template)
        for c in state.get("Catch", [])
        if set(c["ErrorEquals"]) & _domain_names()
    ]
    assert clauses, "no Catch clause names a domain error"
    for name, errors in clauses:
        assert errors & _domain_names() == PERMANENT, name


def test_no_permanent_error_is_retried(template):
    for name, state in _lambda_tasks(template):
        for retry in state.get("Retry", []):
            assert not set(retry["ErrorEquals"]) & PERMANENT, name
            assert "States.ALL" not in retry["ErrorEquals"], name


@pytest.mark.parametrize("family", ["retryable", "permanent"])
def test_every_name_of_a_family_appears_in_the_definition(template, family):
    names = RETRYABLE if family == "retryable" else PERMANENT
    key = "Retry" if family == "retryable" else "Catch"
    seen = {e for _, s in _lambda_tasks(template) for clause in s.get(key, []) for e in clause["ErrorEquals"]}
    assert set(names) <= seen


def test_every_lambda_task_is_caught(template):
    # A task without a Catch would end the execution with a raw Lambda error instead of a Fail a person can act on
    for name, state in _lambda_tasks(template):
        assert state.get("Catch"), name
