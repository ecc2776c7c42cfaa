"""Every Lambda the stack deploys, in one tuple: the rollout's, the scheduled ones and the bootstrap's.

Invariant: the stack creates exactly one function per entry, and the tests iterate the same tuple.
"""

from __future__ import annotations

from stacks.constructs.bootstrap_specs import BOOTSTRAP_HANDLERS
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS, SCHEDULED_HANDLERS, HandlerSpec

ALL_HANDLERS: tuple[HandlerSpec, ...] = ROLLOUT_HANDLERS + SCHEDULED_HANDLERS + BOOTSTRAP_HANDLERS
