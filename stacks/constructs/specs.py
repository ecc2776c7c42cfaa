"""Every Lambda the stack deploys, in one tuple: the rollout's, the scheduled ones and the bootstrap's.

Invariant: the stack creates exactly one function per entry, and the tests iterate the same tuple.
"""

from __future__ import annotations

from stacks.constructs.bootstrap_specs import BOOTSTRAP_HANDLERS
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS, SCHEDULED_HANDLERS, HandlerSpec
from stacks.constructs.trigger_specs import TRIGGER_HANDLERS

ALL_HANDLERS: tuple[HandlerSpec, ...] = ROLLOUT_HANDLERS + SCHEDULED_HANDLERS + BOOTSTRAP_HANDLERS
# Created by the EcrTrigger construct (not by the loop over the specs above), listed for the tests
TRIGGER: tuple[HandlerSpec, ...] = TRIGGER_HANDLERS
