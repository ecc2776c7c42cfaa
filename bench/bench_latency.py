"""Benchmark (not a test): how albgate's time over the lower bound depends on how long a Lambda task takes.

Job: the simulation charges every Lambda task albgate's state machine runs ``LAMBDA_SECONDS`` (0.3 s) of virtual
time, an assumption no AWS document fixes. Per scenario, over seeds 1..N, run albgate's state machine with each
task taking each of ``--task-seconds`` (default 0, 0.15 and 0.3, the shipped value) and the ideal poller beside
them, and report ``rollout_seconds / lower_bound_seconds`` (median, p90 and worst, nearest rank), the seeds over
the 1.25x speed target, and the lag of the last drain: the seconds between the last old target getting no new
requests (the load balancer's lag over) and the end of the execution (negative: it ended that much before; the ideal
poller ends as the oracle does, as its last old target turns draining behind a preStop longer than the lag).
Invariant: every variant is the ``albgate`` strategy's own run (``run_albgate``, same prepare, same state machine,
same world and seed) with only the task time changed; the lower bound is the oracle on the same seed, which no
task time touches. Ratios come from one invocation, in virtual seconds, so machine load does not enter them.

Run: .venv/bin/python bench/bench_latency.py [--seeds 200] [--scenarios a b] [--task-seconds 0 0.15 0.3]
     [--write-docs]   (the tables also go to docs/results/latency.md)
Method: docs/benchmarks.md, section 2; results: docs/results/latency.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    IDEAL_POLLER,
    MAX_WORKERS,
    SUCCEEDED,
    TARGET_RATIO,
    add_write_docs,
    chunks,
    command_line,
    docs_header,
    fmt,
    machine,
    markdown_table,
    pinned_template,
    run_parallel,
    scenario_files,
    summary,
    write_docs,
    write_result,
)

SHORT_SCENARIOS = ("seed-app", "seed-app-hardened", "auto-mode")  # the ones with seeds over 1.25x at 0.3 s
DEFAULT_TASK_SECONDS = (0.0, 0.15, 0.3)
PREFIX = "albgate-task-"


def strategy_name(task_seconds: float) -> str:
    return f"{PREFIX}{task_seconds:g}s"


def register_latency_strategy(task_seconds: float) -> str:
    """The ``albgate`` strategy with every Lambda task taking ``task_seconds`` (registered once per process)."""
    from albgate.sim.albgate_strategy import run_albgate
    from albgate.sim.strategies import bootstrap_hardened, register_strategy, strategy_names

    name = strategy_name(task_seconds)
    if name not in strategy_names():
        register_strategy(name, lambda sim: run_albgate(sim, task_seconds=task_seconds), prepare=bootstrap_hardened,
                          description=f"albgate, every Lambda task taking {task_seconds:g} s (bench_latency only)")
    return name


def last_drain_lag(timeline: list[tuple[float, str, str]]) -> float | None:
    """Seconds from the last released target getting no new requests (the load balancer's lag over: what the last
    drain verifies; ELB shows it `draining` until its delay ends) to the end of the rollout, from a run's timeline.
    Negative where the rollout ended before that lag was over: the last step's old pods were proven out of the pool
    by the controller's checkpoint before their release, and their pods serve what still comes in their preStop."""
    end = next((t for t, kind, text in timeline if kind == "rollout" and text.startswith("rollout ended")), None)
    if end is None:
        return None
    left = [t for t, kind, text in timeline if kind == "target" and " gets no new requests " in text]
    return end - max(left) if left else None


def latency_task(task: tuple[str, float | None, list[int]]) -> list[dict[str, Any]]:
    """Worker: one scenario file, one task time (None: the ideal poller), a chunk of seeds -> one record per seed."""
    from albgate.sim import load_scenario, simulate

    path, task_seconds, seeds = task
    name = IDEAL_POLLER if task_seconds is None else register_latency_strategy(task_seconds)
    sc = load_scenario(path)
    out = []
    for seed in seeds:
        r = simulate(sc, name, seed)
        out.append({"scenario": r.scenario, "task_seconds": task_seconds, "seed": seed, "outcome": r.outcome,
                    "failed_requests": r.failed_requests, "rollout_seconds": r.rollout_seconds,
                    "lower_bound_seconds": r.lower_bound_seconds,
                    "describe_target_health_calls": r.describe_target_health_calls,
                    "last_drain_lag_seconds": last_drain_lag(r.timeline)})
    return out


def latency(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by: dict[tuple[str, float | None], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by[(r["scenario"], r["task_seconds"])].append(r)
    out: dict[str, dict[str, Any]] = {}
    for (scenario, task_seconds), rs in sorted(by.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None else kv[0][1])):
        ok = [r for r in rs if r["outcome"] == SUCCEEDED and r["rollout_seconds"] and r["lower_bound_seconds"]]
        ratios = [r["rollout_seconds"] / r["lower_bound_seconds"] for r in ok]
        key = IDEAL_POLLER if task_seconds is None else f"{task_seconds:g}"
        out.setdefault(scenario, {})[key] = {
            "runs": len(rs),
            "ratioed": len(ok),
            "failed_requests": sum(r["failed_requests"] for r in rs),
            "over_lower_bound": summary(ratios),
            "seeds_over_target": sum(1 for x in ratios if x > TARGET_RATIO),
            "last_drain_lag_seconds": summary([r["last_drain_lag_seconds"] for r in ok
                                               if r["last_drain_lag_seconds"] is not None]),
            "describe_target_health_calls": summary([r["describe_target_health_calls"] for r in ok]),
        }
    return out


def _cell(e: dict[str, Any]) -> str:
    s = e["over_lower_bound"]
    if not s["n"]:
        return "-"
    return f"{fmt(s['median'])} / {fmt(s['p90'])} / {fmt(s['max'])} ({e['seeds_over_target']})"


def _lag_cell(e: dict[str, Any]) -> str:
    s = e["last_drain_lag_seconds"]
    return "-" if not s["n"] else f"{fmt(s['median'], 1)} / {fmt(s['max'], 1)}"


def render(result: dict[str, dict[str, Any]], task_seconds: list[float]) -> str:
    keys = [IDEAL_POLLER] + [f"{x:g}" for x in task_seconds]
    heads = ["scenario", "ideal poller"] + [f"albgate, {k} s per task" for k in keys[1:]]
    rows = [[scenario] + [_cell(e[k]) if k in e else "-" for k in keys] for scenario, e in result.items()]
    lag_rows = [[scenario] + [_lag_cell(e[k]) if k in e else "-" for k in keys] for scenario, e in result.items()]
    return (f"rollout_seconds / lower_bound_seconds: median / p90 / worst (seeds over {TARGET_RATIO}x)\n\n"
            + markdown_table(heads, rows)
            + "\n\nLast drain: seconds from the last old target getting no new requests to the end of the rollout "
              "(median / worst; negative: the rollout ended that much before, its last old targets proven out of "
              "the pool before their pods were released, by the controller's checkpoint or, on Auto Mode, a look at "
              "ELB)\n\n"
            + markdown_table(heads, lag_rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--scenarios", nargs="*", default=list(SHORT_SCENARIOS))
    ap.add_argument("--task-seconds", nargs="*", type=float, default=list(DEFAULT_TASK_SECONDS))
    ap.add_argument("--workers", type=int, default=MAX_WORKERS)
    ap.add_argument("--out", type=Path, default=None)
    add_write_docs(ap, "latency")
    args = ap.parse_args(argv)
    if any(x < 0 for x in args.task_seconds):
        ap.error("--task-seconds: every value must be 0 or more (seconds of virtual time per Lambda task)")
    t0 = time.perf_counter()
    info = machine()
    files = scenario_files(args.scenarios)
    seeds = list(range(1, args.seeds + 1))
    variants: list[float | None] = [*args.task_seconds, None]
    tasks = [(str(f), x, c) for x in variants for f in files for c in chunks(seeds, 10)]
    runs: list[dict[str, Any]] = []
    for recs in run_parallel(latency_task, tasks, args.workers, "latency"):
        runs.extend(recs)
    result = latency(runs)
    text = render(result, args.task_seconds)
    print(text)
    wall = time.perf_counter() - t0
    path = write_result("latency", {"benchmark": "latency", "command": command_line(), "machine": info,
                                    "wall_seconds": round(wall, 1),
                                    "template_key": pinned_template()[0], "seeds": args.seeds,
                                    "task_seconds": args.task_seconds, "latency": result, "table": text,
                                    "runs": runs}, args.out)
    print(f"wrote {path}")
    if args.write_docs:
        sample = (f"seeds 1-{args.seeds} of {', '.join(result)} at "
                  f"{', '.join(f'{x:g}' for x in args.task_seconds)} s per task and the ideal poller: {len(runs)} runs "
                  f"in {wall:.0f} s on {min(args.workers, MAX_WORKERS)} process(es)")
        header = docs_header(info, sample=sample, template_key=pinned_template()[0])
        print(f"wrote {write_docs(args.write_docs, 'latency', 'Task time and the last drain', header, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
