"""The `albgate` strategy: albgate's synthesized state machine, run by moto, against the simulated cluster.

Job: take the template CDK synthesizes for this checkout, run its rollout state machine in moto's Step
Functions interpreter (``albgate.sfn_local``) with every Lambda task dispatched to the real in-process handler,
and point those handlers at the simulation's ports. Waits and retry backoff advance the simulation's virtual
clock, so the rollout the simulation measures is exactly what the deployed state machine would do.

Invariant: nothing here decides anything about the rollout: the state machine and the handlers do. This
module only wires them to the simulated world and reads the outcome back from the execution.

The world is prepared as albgate's bootstrap leaves it (``bootstrap_hardened``): the running app already has
the preStop drain and grace period albgate applies to workloads, because pods that are replaced without a
preStop stop accepting connections at SIGTERM while the ALB still sends them requests, whatever gate the new
pods pass (docs/simulation.md); and its Load Balancer Controller has the webhook failure policy and back-off cap
the bootstrap's Helm values give it. The oracle runs in the same world, so the lower bound is comparable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from albgate.sfn_local.extract import extract_state_machine
from albgate.sfn_local.runner import LocalStateMachine, TaskTokenRequest
from albgate.sim.simulation import Simulation
from albgate.sim.strategies import (
    FAILED,
    ROLLED_BACK,
    SUCCEEDED,
    TIMED_OUT,
    StrategyRun,
    bootstrap_hardened,
    register_strategy,
)
from albgate.template import state_machine_id, synthesized_template
from lambdas.domain.contract import ROLLED_BACK_ERROR

# A warm Lambda invocation of these handlers (a few Kubernetes/ELB calls) takes a fraction of a second; charged
# to the virtual clock so the measured rollout time includes albgate's own latency, not just its waits. An
# assumption (no AWS document gives the number): bench/bench_latency.py measures what it does to the results.
LAMBDA_SECONDS = 0.3

# Handlers log and emit metrics through Powertools; locally that would print EMF blobs into the CLI's output.
_QUIET_ENV = {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}


class SimClock:
    """The runner's clock on the simulation: sleeping processes the world's events for that long. It is also the
    world as ``albgate.sfn_local.interleave`` sees it (``run_until``)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def now(self) -> float:
        return self.sim.clock.now()

    def sleep(self, seconds: float) -> None:
        self.sim.advance(seconds)

    def run_until(self, t: float) -> None:
        self.sim.run_until(t)


def _outcome(status: str, error: str | None) -> str:
    if status == "SUCCEEDED":
        return SUCCEEDED
    if status == "FAILED" and error == ROLLED_BACK_ERROR:
        return ROLLED_BACK
    if status in ("TIMED_OUT", "ABORTED"):
        return TIMED_OUT
    return FAILED


Fault = Callable[[str, str, Any, Callable[[], Any]], Any]  # (function id, handler, event, deliver) -> result


def run_albgate(sim: Simulation, fault: Fault | None = None, *, task_seconds: float = LAMBDA_SECONDS) -> StrategyRun:
    """Run one rollout execution; ``fault`` (for the reliability tests) wraps every Lambda invocation, each of
    which takes ``task_seconds`` of virtual time before its handler runs."""
    if task_seconds < 0:
        raise ValueError(f"task_seconds must be 0 or more, not {task_seconds}")
    with quiet_powertools():
        return _run(sim, fault, task_seconds)


@contextmanager
def quiet_powertools() -> Iterator[None]:
    """Powertools' metrics, tracing and info logs off while the handlers run in this process (set before their
    modules create their Powertools objects), and the process's environment as it was afterwards."""
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    for k, v in _QUIET_ENV.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def _run(sim: Simulation, fault: Fault | None, task_seconds: float) -> StrategyRun:
    from lambdas.handlers import _runtime
    template = synthesized_template()
    extracted = extract_state_machine(template, state_machine_id(template))
    clock = SimClock(sim)
    request = sim.rollout_request().model_dump(mode="json")
    start = sim.clock.now()

    def invoke(logical_id: str, handler: str, event: Any) -> Any:
        sim.advance(task_seconds)
        if fault is None:
            return machine.invoke_handler(logical_id, handler, event)
        return fault(logical_id, handler, event, lambda: machine.invoke_handler(logical_id, handler, event))

    def approve(token: TaskTokenRequest) -> None:
        token.succeed({})  # a simulated release engineer approves every step at once

    _runtime.use_ports(lambda cluster: sim.ports)
    try:
        with LocalStateMachine(extracted, clock, invoke=invoke, on_task_token=approve) as machine:
            result = machine.run(request, name=f"{sim.scenario.name}-{sim.seed}")
    finally:
        _runtime.use_ports(None)
    outcome = _outcome(result.status, result.error)
    output = result.output or {}
    detail = result.cause or result.error or ""
    if outcome == SUCCEEDED:
        detail = f"plan {output.get('plan')}, {len(output.get('steps', []))} step(s)"
    return StrategyRun(
        outcome,
        start,
        sim.clock.now(),
        state_transitions=result.state_transitions,
        detail=detail,
        extra={
            "visited": result.visited,
            "invocations": len(result.invocations),
            "execution_status": result.status,
            "error": result.error,
        },
    )


register_strategy(
    "albgate",
    run_albgate,
    prepare=bootstrap_hardened,
    description="albgate's synthesized state machine (moto) gating every step on ALB target health",
)
