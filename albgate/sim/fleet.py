"""Many rollouts at once in one simulated account: the engine behind ``albgate simulate`` on a scenario with ``fleet:``
and bench/bench_fleet.py.

Job: build one world holding every copy of the scenario's app (``fleet.deployments``: one cluster, one Load
Balancer Controller reconciling every binding, one Describe* bucket), start each copy's rollout at its own time
(``fleet.start_within_seconds``), let all of them run concurrently in simulated time, let the effects settle,
and report each rollout (outcome, time, its app's failed requests) and the world (makespan, Describe* calls and
throttled calls by caller). ``alone_seconds`` runs one copy by itself, exactly as it is in the fleet (names, start,
random draws), so a rollout's slowdown among the others is measured against the same rollout alone.

Strategies: ``albgate`` (one execution of the synthesized state machine per copy, interleaved on the world's
clock by ``albgate.sfn_local.interleave``: the executions' Waits overlap, their handlers share the account's
budget and bucket, as on AWS) and the two ``kubectl set image`` baselines, ``readiness-gate`` and
``kubernetes-default`` (the controller's gate alone is what albgate's demand on the bucket is compared with).
Invariant: every copy's requests are counted in its own stream; the world's totals are their sums.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from albgate.sim.albgate_strategy import LAMBDA_SECONDS, SimClock, _outcome, quiet_powertools
from albgate.sim.engine import EPOCH
from albgate.sim.lbc import CONTROLLER
from albgate.sim.scenario import Scenario
from albgate.sim.simulation import Simulation
from albgate.sim.strategies import FAILED, SUCCEEDED, TIMED_OUT, StrategyRun, get_strategy
from lambdas.domain.budget import BudgetSpec
from lambdas.domain.ports import DeploymentPatch

FLEET_STRATEGIES = ("albgate", "readiness-gate", "kubernetes-default")
# How often a kubectl-like watcher looks at its Deployments (kubectl rollout status watches; one look per
# simulated second is finer than any rollout's steps and keeps a 1,000-Deployment world cheap).
_WATCH_SECONDS = 1.0


@dataclass
class FleetRollout:
    """One copy's rollout in the fleet."""

    deployment: str
    outcome: str
    started_at: float  # seconds since t=0
    seconds: float | None
    requests: int
    failed_requests: int
    state_transitions: int = 0
    detail: str = ""  # how it ended, as the strategy said (a failed albgate rollout: its failure summary)


@dataclass
class FleetResult:
    scenario: str
    strategy: str
    seed: int
    deployments: int
    rollouts: list[FleetRollout]
    requests: int
    failed_requests: int
    failed_by_cause: dict[str, int]
    makespan_seconds: float | None  # first rollout start to last rollout end; None when one never ended
    describe_calls_by_caller: dict[str, int]
    throttled_calls_by_caller: dict[str, int]
    simulated_seconds: float
    events: int
    wall_seconds: float
    alone_seconds: dict[str, float] = field(default_factory=dict)  # deployment -> its time alone (when measured)
    # RegisterTargets + DeregisterTargets by caller (the controller's own included), and those throttled
    mutating_calls_by_caller: dict[str, int] = field(default_factory=dict)
    mutating_throttled_by_caller: dict[str, int] = field(default_factory=dict)
    # when the controllers asked for each Describe* token (seconds since t=0, as ``FleetRollout.started_at``),
    # throttled or not: the world's demand on the bucket over time (not in ``to_json``)
    controller_asks: list[float] = field(default_factory=list)

    @property
    def failed_rollouts(self) -> int:
        return sum(r.outcome != SUCCEEDED for r in self.rollouts)

    def calls_per_rollout(self, caller: str) -> float:
        return self.describe_calls_by_caller.get(caller, 0) / max(1, len(self.rollouts))

    def slowdowns(self) -> list[float]:
        """time in the fleet / time alone, for every rollout whose time alone was measured."""
        return sorted(r.seconds / self.alone_seconds[r.deployment] for r in self.rollouts
                      if r.seconds is not None and self.alone_seconds.get(r.deployment))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("controller_asks")
        out["failed_rollouts"] = self.failed_rollouts
        times = [r.seconds for r in self.rollouts if r.seconds is not None]
        out["rollout_seconds"] = summary(times)
        out["slowdown"] = summary(self.slowdowns())
        return out


def summary(values: list[float]) -> dict[str, float] | None:
    """median, p99 and worst of ``values`` (p99 by the nearest-rank method)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, -(-99 * len(ordered) // 100) - 1)
    return {"median": round(statistics.median(ordered), 3), "p99": round(ordered[rank], 3),
            "worst": round(ordered[-1], 3), "n": len(ordered)}


Progress = Callable[[int, int], None]  # (rollouts ended, rollouts in all)


def run_fleet(scenario: Scenario, strategy: str = "albgate", seed: int | None = None, *,
              only: list[int] | None = None, progress: Progress | None = None,
              budget: BudgetSpec | None = None, share_looks: bool = True) -> FleetResult:
    """Build the fleet's world for ``strategy`` (or only some copies of it), run every rollout, settle, report.
    ``budget``: albgate's share of the bucket (default: the stack's default, adaptive). ``share_looks``: whether
    albgate's executions share their DescribeTargetHealth answers (lambdas/domain/looks.py), as they do by default."""
    if strategy not in FLEET_STRATEGIES:
        raise ValueError(f"strategy {strategy!r} cannot run a fleet; use one of {', '.join(FLEET_STRATEGIES)}")
    wall = time.perf_counter()
    sim = Simulation(get_strategy(strategy).prepare(scenario), seed, only=only, budget=budget, share_looks=share_looks)
    first = min(c.start for c in sim.copies)
    sim.run_until(first)
    sim.log("rollout", f"{len(sim.copies)} rollout(s) start: {strategy} -> {scenario.rollout.image}")
    if strategy == "albgate":
        runs = _albgate_fleet(sim, progress)
    else:
        runs = _set_image_fleet(sim, progress)
    ended = [r.finished_at for r in runs if r.finished_at is not None]
    limit = _limit(sim)
    sim.run_until(limit, stop=sim.quiescent)
    sim.run_until(min(limit, sim.clock.t + scenario.traffic.settle_seconds))
    rollouts = [
        FleetRollout(c.deployment, r.outcome, round(c.start - EPOCH, 3),
                     None if r.seconds is None else round(r.seconds, 3), c.traffic.requests,
                     c.traffic.failed_requests, r.state_transitions, "" if r.outcome == "succeeded" else r.detail)
        for c, r in zip(sim.copies, runs)
    ]
    return FleetResult(
        scenario=scenario.name, strategy=strategy, seed=sim.seed, deployments=len(sim.copies), rollouts=rollouts,
        requests=sim.traffic.requests, failed_requests=sim.traffic.failed_requests,
        failed_by_cause=dict(sorted(sim.traffic.failed.items())),
        makespan_seconds=round(max(ended) - first, 3) if len(ended) == len(runs) else None,
        describe_calls_by_caller=dict(sorted(sim.alb.describe_calls.items())),
        throttled_calls_by_caller=dict(sorted(sim.alb.throttled.items())),
        simulated_seconds=round(sim.elapsed, 3), events=sim.loop.events_run,
        wall_seconds=round(time.perf_counter() - wall, 3),
        mutating_calls_by_caller=dict(sorted(sim.alb.mutating_calls.items())),
        mutating_throttled_by_caller=dict(sorted(sim.alb.mutating_throttled.items())),
        controller_asks=[t - EPOCH for t, caller, n in sim.alb.asked if caller == CONTROLLER for _ in range(n)],
    )


def alone_seconds(scenario: Scenario, strategy: str, seed: int | None, copy: int,
                  budget: BudgetSpec | None = None) -> float | None:
    """How long copy ``copy``'s rollout takes with no other copy in the world (same names, start and draws)."""
    result = run_fleet(scenario, strategy, seed, only=[copy], budget=budget)
    (rollout,) = result.rollouts
    return rollout.seconds if rollout.outcome == SUCCEEDED else None


def _limit(sim: Simulation) -> float:
    return max(c.start for c in sim.copies) + sim.scenario.horizon_seconds


def _albgate_fleet(sim: Simulation, progress: Progress | None, task_seconds: float = LAMBDA_SECONDS) -> list[StrategyRun]:
    with quiet_powertools():  # before the handlers' modules are imported: they configure Powertools then
        return _albgate_executions(sim, progress, task_seconds)


def _albgate_executions(sim: Simulation, progress: Progress | None, task_seconds: float) -> list[StrategyRun]:
    from albgate.sfn_local.extract import extract_state_machine
    from albgate.sfn_local.interleave import Interleaver, Start, TurnClock
    from albgate.sfn_local.runner import LocalStateMachine, TaskTokenRequest
    from albgate.template import state_machine_id, synthesized_template
    from lambdas.handlers import _runtime

    template = synthesized_template()
    extracted = extract_state_machine(template, state_machine_id(template))
    total = len(sim.copies)

    def approve(token: TaskTokenRequest) -> None:
        token.succeed({})  # a simulated release engineer approves every step at once

    def charged(clock: TurnClock):  # noqa: ANN202 - the runner's Invoke
        sim.handlers_sleep_on(clock.sleep)  # a throttled call's back-off, or a watch, lets the others run too
        def invoke(logical_id: str, handler: str, event: Any) -> Any:
            clock.sleep(task_seconds)  # the Lambda's own time, during which the other executions go on
            return machine.invoke_handler(logical_id, handler, event)
        return invoke

    done = [0]

    def ended(_: int, __: Any) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    starts = [Start(c.start, c.request(sim.scenario).model_dump(mode="json"), f"{c.deployment}-{sim.seed}"[:80])
              for c in sim.copies]
    _runtime.use_ports(lambda cluster: sim.ports)
    try:
        with LocalStateMachine(extracted, SimClock(sim), on_task_token=approve) as machine:
            results = Interleaver(machine, SimClock(sim), invoke=charged, on_task_token=approve, on_end=ended,
                                  real_timeout_seconds=300).run(starts)
    finally:
        _runtime.use_ports(None)
        sim.handlers_sleep_on(None)
    by_name = {r.name: r for r in results}
    runs = []
    for start in starts:
        r = by_name[start.name]
        runs.append(StrategyRun(_outcome(r.status, r.error), r.started_at, r.stopped_at,
                                state_transitions=r.state_transitions, detail=r.cause or r.error or ""))
    return runs


def _set_image_fleet(sim: Simulation, progress: Progress | None) -> list[StrategyRun]:
    """``kubectl set image`` on every copy at its start time, then each watched until its Deployment completes or
    exceeds its progress deadline (kubectl rollout status)."""
    sc, cluster = sim.scenario, sim.cluster
    runs: dict[int, StrategyRun] = {}
    waiting: set[int] = set()

    def patch(i: int) -> None:
        d = sim.deployment(i)
        cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={sc.rollout_container: sc.rollout.image}))
        waiting.add(i)

    def look() -> None:
        for i in sorted(waiting):
            d = sim.deployment(i)
            if cluster.deployment_complete(d) or cluster.deadline_exceeded(d):
                waiting.discard(i)
                ok = cluster.deployment_complete(d)
                runs[i] = StrategyRun(SUCCEEDED if ok else FAILED, sim.copies[i].start, sim.clock.t,
                                      detail="" if ok else "Progressing=False ProgressDeadlineExceeded")
                if progress is not None:
                    progress(len(runs), len(sim.copies))
        if len(runs) < len(sim.copies):
            sim.loop.after(_WATCH_SECONDS, look)

    for i, c in enumerate(sim.copies):
        sim.loop.at(c.start, lambda i=i: patch(i))
    sim.loop.after(_WATCH_SECONDS, look)
    sim.run_until(_limit(sim), stop=lambda: len(runs) == len(sim.copies))
    return [runs.get(i) or StrategyRun(TIMED_OUT, c.start, None, detail="neither completed nor hit its deadline")
            for i, c in enumerate(sim.copies)]


def print_progress(done: int, total: int) -> None:
    """A progress line on stderr every tenth of the fleet (and at the end)."""
    step = max(1, total // 10)
    if done % step == 0 or done == total:
        print(f"  {done}/{total} rollouts ended", file=sys.stderr, flush=True)
