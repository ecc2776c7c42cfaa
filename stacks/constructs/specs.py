"""Every Lambda the stack deploys, in one tuple: the rollout's, the scheduled ones and the bootstrap's.

Invariant: the stack creates exactly one function per entry, and the tests iterate the same tuple.
"""

from __future__ import annotations

from stacks.constructs.bootstrap_specs import BOOTSTRAP_HANDLERS, BOOTSTRAP_KUBE_ACCESS
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS, SCHEDULED_HANDLERS, HandlerSpec
from stacks.constructs.lambda_asset import CORE, KUBERNETES, AssetFamily
from stacks.constructs.trigger_specs import TRIGGER_HANDLERS

ALL_HANDLERS: tuple[HandlerSpec, ...] = ROLLOUT_HANDLERS + SCHEDULED_HANDLERS + BOOTSTRAP_HANDLERS
# Created by the EcrTrigger construct (not by the loop over the specs above), listed for the tests
TRIGGER: tuple[HandlerSpec, ...] = TRIGGER_HANDLERS


def asset_family(spec: HandlerSpec) -> AssetFamily:
    """Which code asset a function runs: the bootstrap's functions that reach the cluster do it through
    ``kubernetes_bootstrap``, on the kubernetes client; every other function reaches it over ``kube_http`` or not
    at all, and gets the lean asset."""
    needs_client = spec in BOOTSTRAP_HANDLERS and BOOTSTRAP_KUBE_ACCESS[spec.name] != "none"
    return KUBERNETES if needs_client else CORE
