"""Run one scenario with one strategy and measure it: the engine behind ``albgate simulate``.

Job: build the world (after the strategy's ``prepare``), let traffic flow until the rollout start, run the
strategy, let the effects settle (no pod terminating, no target draining, then ``traffic.settle_seconds``
more), and report. ``lower_bound_seconds`` comes from the oracle strategy on the same scenario and seed.
Invariant: the report counts every request that arrived in the measured window [t=0, end of settling], and
``failed_requests`` equals the sum of ``failed_by_cause``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from albgate.sim.engine import EPOCH
from albgate.sim.lbc import CONTROLLER
from albgate.sim.scenario import Scenario
from albgate.sim.simulation import Simulation
from albgate.sim.strategies import SUCCEEDED, StrategyRun, get_strategy

LOWER_BOUND_STRATEGY = "oracle"


@dataclass
class SimulationResult:
    scenario: str
    strategy: str
    seed: int
    outcome: str
    requests: int
    failed_requests: int
    failed_by_cause: dict[str, int]
    rollout_seconds: float | None
    lower_bound_seconds: float | None
    describe_target_health_calls: int  # by the strategy (albgate's poll cost); the controller's are separate
    describe_target_health_calls_by_caller: dict[str, int]
    throttled_calls_by_caller: dict[str, int]
    kube_api_calls: int
    answered_badly: int  # answered 5xx by a pod's error rate (not failures: answered), every version
    answered_badly_by_new_version: int  # of those, answered by pods of the rollout's image
    get_metric_data_calls: int  # CloudWatch GetMetricData requests by the strategy
    # seconds from the rollout's start to its rollback's first write (the moment the failure was acted on); None
    # without a rollback
    detected_after_seconds: float | None
    state_transitions: int
    final_image: str
    detail: str
    simulated_seconds: float
    events: int
    wall_seconds: float
    timeline: list[tuple[float, str, str]] = field(default_factory=list, repr=False)
    failures: list[tuple[float, str]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("timeline")
        out.pop("failures")
        for k in ("rollout_seconds", "lower_bound_seconds", "simulated_seconds", "wall_seconds", "detected_after_seconds"):
            if out[k] is not None:
                out[k] = round(out[k], 3)
        return out


def run_strategy(scenario: Scenario, strategy: str, seed: int | None = None) -> tuple[Simulation, StrategyRun]:
    """Build the world for ``strategy``, run it to the end of settling; return the world and the run."""
    if scenario.fleet.deployments > 1:
        raise ValueError(f"scenario {scenario.name!r} is a fleet of {scenario.fleet.deployments} deployments: run it "
                         "with albgate.sim.fleet.run_fleet (albgate simulate does)")
    strat = get_strategy(strategy)
    sim = Simulation(strat.prepare(scenario), seed)
    sim.run_until(sim.rollout_start)
    sim.log("rollout", f"rollout starts: {strategy} -> {scenario.rollout.image}")
    run = strat.run(sim)
    end = f"{run.outcome}" + (f" after {run.seconds:.1f} s" if run.seconds is not None else "")
    sim.log("rollout", f"rollout ended: {end}" + (f" ({run.detail})" if run.detail else ""))
    limit = sim.rollout_start + scenario.horizon_seconds
    sim.run_until(limit, stop=sim.quiescent)
    sim.run_until(min(limit, sim.clock.t + scenario.traffic.settle_seconds))
    return sim, run


def simulate(scenario: Scenario, strategy: str = "kubernetes-default", seed: int | None = None, *,
             lower_bound: bool = True) -> SimulationResult:
    wall = time.perf_counter()
    sim, run = run_strategy(scenario, strategy, seed)
    lb: float | None = None
    if lower_bound:
        if strategy == LOWER_BOUND_STRATEGY:
            lb_run = run
        else:
            # The oracle runs in the world the strategy prepared (e.g. albgate's bootstrap-hardened app), so the
            # bound is for the same rollout, not for a different starting point.
            _, lb_run = run_strategy(get_strategy(strategy).prepare(scenario), LOWER_BOUND_STRATEGY, seed)
        # A bound only where both succeeded: the oracle's rollback is no bound on a success (throttled-account), and
        # a rollback's length is how soon the failure is seen, which the oracle does not bound (it waits for the
        # step deadline where albgate sees a crash-looping pod at once: broken-image, 39 s against 910 s).
        lb = lb_run.seconds if lb_run.outcome == SUCCEEDED and run.outcome == SUCCEEDED else None
    tr = sim.traffic
    return SimulationResult(
        scenario=scenario.name,
        strategy=strategy,
        seed=sim.seed,
        outcome=run.outcome,
        requests=tr.requests,
        failed_requests=tr.failed_requests,
        failed_by_cause=dict(sorted(tr.failed.items())),
        rollout_seconds=run.seconds,
        lower_bound_seconds=lb,
        describe_target_health_calls=sum(n for c, n in sim.alb.describe_calls.items() if c != CONTROLLER),
        describe_target_health_calls_by_caller=dict(sorted(sim.alb.describe_calls.items())),
        throttled_calls_by_caller=dict(sorted(sim.alb.throttled.items())),
        kube_api_calls=sum(sim.kube.calls.values()),
        answered_badly=tr.answered_badly,
        answered_badly_by_new_version=tr.answered_badly_by_new_version,
        get_metric_data_calls=sim.get_metric_data_calls,
        detected_after_seconds=rollback_started(sim),
        state_transitions=run.state_transitions,
        final_image=sim.current_image(),
        detail=run.detail,
        simulated_seconds=sim.elapsed,
        events=sim.loop.events_run,
        wall_seconds=time.perf_counter() - wall,
        timeline=list(sim.timeline),
        failures=list(tr.failures),
    )


def rollback_started(sim: Simulation) -> float | None:
    """Seconds from the rollout's start to the Deployment's rollback to the previous template, as the world logged
    it; None when nothing rolled it back."""
    start = sim.rollout_start - EPOCH
    return next((t - start for t, kind, text in sim.timeline
                 if kind == "deployment" and "rolled back to the template" in text and t >= start), None)


def failure_bursts(failures: list[tuple[float, str]], gap: float = 2.0) -> list[tuple[float, float, Counter]]:
    """Group failures (absolute times) into bursts separated by more than ``gap`` seconds."""
    bursts: list[tuple[float, float, Counter]] = []
    for t, cause in sorted(failures):
        rel = t - EPOCH
        if bursts and rel - bursts[-1][1] <= gap:
            start, _, c = bursts[-1]
            c[cause] += 1
            bursts[-1] = (start, rel, c)
        else:
            bursts.append((rel, rel, Counter({cause: 1})))
    return bursts


def render_timeline(result: SimulationResult, *, max_lines: int = 400, kinds: set[str] | None = None) -> list[str]:
    """Readable lines: the world's events merged with bursts of failed requests, in time order."""
    rows: list[tuple[float, int, str]] = []
    for t, kind, text in result.timeline:
        if kinds is None or kind in kinds:
            rows.append((t, 0, f"{kind:<10} {text}"))
    for start, end, c in failure_bursts(result.failures):
        causes = ", ".join(f"{k} {v}" for k, v in c.most_common())
        span = f"{start:.1f}-{end:.1f} s" if end > start else f"{start:.1f} s"
        rows.append((start, 1, f"{'FAILED':<10} {sum(c.values())} request(s) in {span}: {causes}"))
    rows.sort(key=lambda r: (r[0], r[1]))
    lines = [f"{t:8.1f} s  {text}" for t, _, text in rows]
    if len(lines) > max_lines:
        head = max_lines // 2
        lines = lines[:head] + [f"          ... {len(lines) - max_lines} more lines ..."] + lines[-(max_lines - head):]
    return lines
