"""Handlers for the tiny test state machine (tests/workflow/conftest.py), called in-process by the runner.

Each is deterministic given its event: the state carries what a test wants to happen (how many polls until
done, how many times to fail) and a ``run_id`` keying the attempt counters kept here between retries.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lambdas.domain.errors import InvalidInputError, ThrottledError

ATTEMPTS: Counter[tuple[str, str]] = Counter()  # (run_id, handler) -> invocations so far
CONTEXTS: list[Any] = []  # the context objects handlers received, for the context test


def poll(event: dict, context: Any) -> dict:
    """One turn of a poll loop: DONE once ``polls`` reaches ``polls_needed``, else WAITING."""
    CONTEXTS.append(context)
    polls = event.get("polls", 0) + 1
    return {**event, "polls": polls, "status": "DONE" if polls >= event["polls_needed"] else "WAITING"}


def flaky(event: dict, context: Any) -> dict:
    """Raise ThrottledError (retryable) ``throttled`` times, InvalidInputError if ``invalid``, then succeed."""
    ATTEMPTS[(event["run_id"], "flaky")] += 1
    if event.get("invalid"):
        raise InvalidInputError("policy.steps must not be empty")
    if ATTEMPTS[(event["run_id"], "flaky")] <= event.get("throttled", 0):
        raise ThrottledError("Rate exceeded")
    return {**event, "flaky_attempts": ATTEMPTS[(event["run_id"], "flaky")]}


def request_approval(event: dict, context: Any) -> dict:
    """Announce the approval request; the task token travels in the event, as on AWS."""
    return {"announced": True, "token_length": len(event["task_token"])}


class FlakeError(Exception):
    """A custom error class: Step Functions must see exactly this name."""


def flake(event: dict, context: Any) -> dict:
    """Raise FlakeError ``fail_times`` times (counted per ``run_id``), then echo the event."""
    ATTEMPTS[(event["run_id"], "flake")] += 1
    if ATTEMPTS[(event["run_id"], "flake")] <= event.get("fail_times", 0):
        raise FlakeError(f"attempt {ATTEMPTS[(event['run_id'], 'flake')]}")
    return event
