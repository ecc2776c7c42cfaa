"""The two error families albgate raises, named once.

Invariant: every exception that leaves a handler is one of the leaf classes below. Step Functions sees the
exception's class name as the error name (docs/facts.md, Step Functions error names), so these names are a contract
with the state machine's Retry and Catch clauses; ``tests/infrastructure`` checks that the synthesized definition
names exactly these classes. Step Functions matches names exactly, not by inheritance, hence the helpers that list
the leaf names of each family.
"""

from __future__ import annotations


class AlbgateError(Exception):
    """Base of everything albgate raises on purpose."""


class RetryableError(AlbgateError):
    """Transient: the same call may succeed later (the state machine retries with backoff)."""


class PermanentError(AlbgateError):
    """Retrying cannot help: bad input or a cluster that must be changed by a person first."""


# --- retryable -------------------------------------------------------------------------------------------
class ThrottledError(RetryableError):
    """An AWS API answered ThrottlingException / Rate exceeded (the Describe* bucket is shared per account)."""


class KubernetesUnavailableError(RetryableError):
    """The Kubernetes API answered 5xx or could not be reached."""


class ConflictError(RetryableError):
    """The Kubernetes API answered 409: somebody changed the object since we read it."""


class WebhookNotReadyError(RetryableError):
    """The Load Balancer Controller's webhook is not serving yet (install still settling)."""


class AwsUnavailableError(RetryableError):
    """An AWS API answered 5xx or the connection failed."""


# --- permanent -------------------------------------------------------------------------------------------
class InvalidInputError(PermanentError):
    """The execution input or configuration is malformed; the message names the field and the fix."""


class NotFoundError(PermanentError):
    """A named cluster, namespace, Deployment, container or target group does not exist."""


class UnsafeConfigurationError(PermanentError):
    """The workload cannot be rolled without dropping requests and the policy forbids hardening it."""


class AccessDeniedError(PermanentError):
    """AWS or Kubernetes refused the call (IAM, access entry or RBAC is missing a permission)."""


def _leaves(family: type[AlbgateError]) -> list[str]:
    found: list[str] = []
    stack = [family]
    while stack:
        cls = stack.pop()
        subs = cls.__subclasses__()
        if not subs and cls is not family:
            found.append(cls.__name__)
        stack.extend(subs)
    return sorted(found)


def retryable_error_names() -> list[str]:
    """Error names a Retry clause must list to retry every transient failure."""
    return _leaves(RetryableError)


def permanent_error_names() -> list[str]:
    """Error names a Catch clause lists to stop (or roll back) on every permanent failure."""
    return _leaves(PermanentError)
