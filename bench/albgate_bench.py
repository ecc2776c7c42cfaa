"""The ``albgate-bench`` strategy: the ``albgate`` strategy with read-only hooks, for bench_cost.py.

Job: run exactly the ``albgate`` strategy (same prepare, same execution name, same state machine) and record
what the cost benchmark counts: a timer around each Lambda handler call (which also notes the error class of a
call that raised), and a log of every Describe* call the world's token bucket saw, with the function that made
it and the start of its step. The recorded calls are what replay.py replays.
Invariant: the hooks only read; the rollout is the ``albgate`` strategy's own (tests/bench/test_smoke.py
compares it seed by seed with bench_safety's albgate runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

BENCH_ALBGATE = "albgate-bench"  # the albgate strategy with read-only hooks (see albgate_bench_run)


def albgate_bench_run(sim: Any) -> Any:
    """The ``albgate`` strategy plus read-only hooks: the in-process wall time of every Lambda handler call and the
    virtual time it waited inside (a watch of the cluster, a throttled call's back-off), which Lambda bills too,
    the error class of every handler call that raised (what a Retry or Catch then saw), and every Describe*
    call the account's token bucket saw (any caller, from the rollout start to the end of settling), as
    (seconds after the rollout start, caller, API, tokens, allowed, calling function, start of its step).
    The calling function is the role of the Lambda whose handler made the call (``Preflight``,
    ``CheckTargetHealth``, ``VerifyDrain``; empty for the controller); the step start is the time of the
    last ``Start Step`` invocation before the call (None before the first step)."""
    from albgate.sim.albgate_strategy import run_albgate

    calls: list[tuple[float, str, str, int, bool, str, float | None]] = []
    spend = sim.alb._spend
    now: dict[str, Any] = {"role": "", "step_start": None}  # what the running handler is

    def logged_spend(caller: str, api: str, n: int = 1) -> None:
        t = sim.clock.t - sim.rollout_start
        source = now["role"] if caller == "albgate" else ""
        try:
            spend(caller, api, n)
        except Exception:
            calls.append((t, caller, api, n, False, source, now["step_start"]))
            raise
        calls.append((t, caller, api, n, True, source, now["step_start"]))

    sim.alb._spend = logged_spend  # stays for the settling that follows the rollout (the same list grows)
    timings: list[tuple[str, float, float]] = []  # (function, wall seconds, virtual seconds waited inside)
    errors: list[tuple[float, str, str]] = []

    def timed(fid: str, handler: str, event: Any, deliver: Callable[[], Any]) -> Any:
        role = function_role(fid)
        if role == "StartStep":
            now["step_start"] = sim.clock.t - sim.rollout_start  # the clock start_step reads for its deadline
        now["role"] = role
        t0, v0 = time.perf_counter(), sim.clock.t
        try:
            return deliver()
        except Exception as e:
            errors.append((sim.clock.t - sim.rollout_start, role, type(e).__name__))
            raise
        finally:
            timings.append((fid, time.perf_counter() - t0, sim.clock.t - v0))
            now["role"] = ""

    run = run_albgate(sim, fault=timed)
    run.extra["describe_calls"] = calls
    run.extra["handler_timings"] = timings
    run.extra["handler_errors"] = errors
    return run


def function_role(logical_id: str) -> str:
    """``CheckTargetHealthFunction76657722`` -> ``CheckTargetHealth`` (the function's id in the stack)."""
    head, sep, _ = logical_id.partition("Function")
    return head if sep else logical_id


def register_bench_strategy() -> None:
    from albgate.sim.strategies import bootstrap_hardened, register_strategy, strategy_names

    if BENCH_ALBGATE not in strategy_names():
        register_strategy(BENCH_ALBGATE, albgate_bench_run, prepare=bootstrap_hardened,
                          description="albgate with a handler timer and a Describe* call log (benchmarks only)")


