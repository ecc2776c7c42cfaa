"""Benchmark (not a test): many seeded rollouts of one scenario, timed on the wall clock.

Job: show how cheap a simulated rollout is (the targets: 1,000 seeded rollouts of the example app in under a
minute for the baselines, and within 10 minutes on 2 processes for albgate, which runs its state machine). Each run builds a fresh world with seed 1..N, rolls it with the strategy, settles, and
reports; the lower bound (an extra oracle run per rollout) is left out unless --with-lower-bound. Several
strategies run one after the other, each over the same seeds.
Invariant: the counts (virtual time, requests, failed requests) are the simulation's own; only the wall time
depends on the machine and its load.
Run: .venv/bin/python bench/bench_simulation.py [--runs 1000] [--strategy NAME ...] [--scenario FILE] [--workers 2]
     [--write-docs]
Method: docs/simulation.md ("Speed"); results: docs/results/simulation-speed.md (with --write-docs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MAX_WORKERS,
    ROOT,
    add_write_docs,
    chunks,
    docs_header,
    machine,
    markdown_table,
    run_parallel,
    write_docs,
)
from albgate.sim import load_scenario, simulate  # noqa: E402


def _chunk(task: tuple[str, str, list[int], bool]) -> dict[str, Any]:
    """Worker: some seeds of one strategy -> their counts (failed requests and durations per run, totals)."""
    path, strategy, seeds, lower_bound = task
    sc = load_scenario(path)
    failed, durations, simulated, events, requests = [], [], 0.0, 0, 0
    for seed in seeds:
        r = simulate(sc, strategy, seed, lower_bound=lower_bound)
        failed.append(r.failed_requests)
        if r.rollout_seconds is not None:
            durations.append(r.rollout_seconds)
        simulated += r.simulated_seconds
        events += r.events
        requests += r.requests
    return {"failed": failed, "durations": durations, "simulated": simulated, "events": events,
            "requests": requests}


def run(path: str, strategy: str, runs: int, lower_bound: bool, workers: int = 1) -> dict[str, Any]:
    """Seeds 1..runs of one strategy on ``workers`` processes: wall time and the simulation's own totals."""
    tasks = [(path, strategy, c, lower_bound) for c in chunks(list(range(1, runs + 1)), 25)]
    t0 = time.perf_counter()
    parts = run_parallel(_chunk, tasks, workers, f"{strategy}:")
    wall = time.perf_counter() - t0
    return {"strategy": strategy, "wall": wall, "workers": max(1, min(workers, MAX_WORKERS, len(tasks))),
            "failed": [x for part in parts for x in part["failed"]],
            "durations": [x for part in parts for x in part["durations"]],
            "simulated": sum(part["simulated"] for part in parts), "events": sum(part["events"] for part in parts),
            "requests": sum(part["requests"] for part in parts)}


def report(m: dict[str, Any], scenario: str, runs: int) -> str:
    lines = [f"{runs} rollouts of {scenario} with {m['strategy']} (seeds 1..{runs}) on "
             f"Python {platform.python_version()}, {platform.machine()}",
             f"wall time          {m['wall']:.2f} s ({1000 * m['wall'] / runs:.2f} ms per rollout)",
             f"simulated          {m['simulated'] / 3600:.1f} h of virtual time, {m['events']} events, "
             f"{m['requests']} requests",
             f"failed requests    median {statistics.median(m['failed']):g}, min {min(m['failed'])}, "
             f"max {max(m['failed'])}"]
    if m["durations"]:
        lines.append(f"rollout seconds    median {statistics.median(m['durations']):.1f}, "
                     f"min {min(m['durations']):.1f}, max {max(m['durations']):.1f}")
    return "\n".join(lines)


def table(measured: list[dict[str, Any]], runs: int) -> str:
    rows = [[m["strategy"], m["workers"], f"{m['wall']:.2f} s", f"{1000 * m['wall'] / runs:.1f} ms",
             f"{m['simulated'] / 3600:.1f} h, {m['requests']:,} requests, {m['events']:,} events"]
            for m in measured]
    return markdown_table(["strategy", "processes", "wall time", "per rollout", "virtual time"], rows, "lrrrl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--strategy", nargs="+", default=["kubernetes-default"], help="one or more strategies")
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "seed-app.yaml"))
    ap.add_argument("--with-lower-bound", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help=f"processes (at most {MAX_WORKERS}; default %(default)s)")
    add_write_docs(ap, "simulation-speed")
    args = ap.parse_args(argv)
    info = machine()
    sc = load_scenario(args.scenario)
    measured = []
    for strategy in args.strategy:
        measured.append(run(args.scenario, strategy, args.runs, args.with_lower_bound, args.workers))
        print(report(measured[-1], sc.name, args.runs))
    text = table(measured, args.runs)
    print(text)
    if args.write_docs:
        sample = (f"seeds 1-{args.runs} of {sc.name} per strategy, "
                  + ("with" if args.with_lower_bound else "without") + " the lower bound")
        path = write_docs(args.write_docs, "simulation-speed", "Simulation speed", docs_header(info, sample=sample),
                          text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
