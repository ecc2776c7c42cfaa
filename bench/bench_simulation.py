"""Benchmark (not a test): many seeded rollouts of one scenario, timed on the wall clock.

Job: show how cheap a simulated rollout is (the target: 1,000 seeded rollouts of the example app in
under a minute). Each run builds a fresh world with seed 1..N, rolls it with the strategy, settles, and
reports; the lower bound (an extra oracle run per rollout) is left out unless --with-lower-bound. Several
strategies run one after the other, each over the same seeds.
Invariant: the counts (virtual time, requests, failed requests) are the simulation's own; only the wall time
depends on the machine and its load.
Run: .venv/bin/python bench/bench_simulation.py [--runs 1000] [--strategy NAME ...] [--scenario FILE] [--write-docs]
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

from _common import ROOT, add_write_docs, docs_header, machine, markdown_table, write_docs  # noqa: E402
from albgate.sim import load_scenario, simulate  # noqa: E402


def run(sc: Any, strategy: str, runs: int, lower_bound: bool) -> dict[str, Any]:
    """Seeds 1..runs of one strategy: wall time and the simulation's own totals."""
    failed, durations, simulated, events, requests = [], [], 0.0, 0, 0
    t0 = time.perf_counter()
    for seed in range(1, runs + 1):
        r = simulate(sc, strategy, seed, lower_bound=lower_bound)
        failed.append(r.failed_requests)
        if r.rollout_seconds is not None:
            durations.append(r.rollout_seconds)
        simulated += r.simulated_seconds
        events += r.events
        requests += r.requests
    return {"strategy": strategy, "wall": time.perf_counter() - t0, "failed": failed, "durations": durations,
            "simulated": simulated, "events": events, "requests": requests}


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
    rows = [[m["strategy"], f"{m['wall']:.2f} s", f"{1000 * m['wall'] / runs:.1f} ms",
             f"{m['simulated'] / 3600:.1f} h, {m['requests']:,} requests, {m['events']:,} events"]
            for m in measured]
    return markdown_table(["strategy", "wall time", "per rollout", "virtual time"], rows, "lrrl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--strategy", nargs="+", default=["kubernetes-default"], help="one or more strategies")
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "seed-app.yaml"))
    ap.add_argument("--with-lower-bound", action="store_true")
    add_write_docs(ap, "simulation-speed")
    args = ap.parse_args(argv)
    info = machine()
    sc = load_scenario(args.scenario)
    measured = []
    for strategy in args.strategy:
        measured.append(run(sc, strategy, args.runs, args.with_lower_bound))
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
