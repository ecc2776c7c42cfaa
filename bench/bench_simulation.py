"""Benchmark (not a test): many seeded rollouts of one scenario, timed on the wall clock.

Job: show how cheap a simulated rollout is (the target: 1,000 seeded rollouts of the example app in
under a minute). Each run builds a fresh world with seed 1..N, rolls it with the strategy, settles, and
reports; the lower bound (an extra oracle run per rollout) is left out unless --with-lower-bound.
Run: .venv/bin/python bench/bench_simulation.py [--runs 1000] [--strategy NAME] [--scenario FILE]
The numbers go to docs/simulation.md ("Speed").
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from albgate.sim import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--strategy", default="kubernetes-default")
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "seed-app.yaml"))
    ap.add_argument("--with-lower-bound", action="store_true")
    args = ap.parse_args(argv)
    sc = load_scenario(args.scenario)
    failed, durations, simulated, events, requests = [], [], 0.0, 0, 0
    t0 = time.perf_counter()
    for seed in range(1, args.runs + 1):
        r = simulate(sc, args.strategy, seed, lower_bound=args.with_lower_bound)
        failed.append(r.failed_requests)
        if r.rollout_seconds is not None:
            durations.append(r.rollout_seconds)
        simulated += r.simulated_seconds
        events += r.events
        requests += r.requests
    wall = time.perf_counter() - t0
    print(f"{args.runs} rollouts of {sc.name} with {args.strategy} (seeds 1..{args.runs}) on "
          f"Python {platform.python_version()}, {platform.machine()}")
    print(f"wall time          {wall:.2f} s ({1000 * wall / args.runs:.2f} ms per rollout)")
    print(f"simulated          {simulated / 3600:.1f} h of virtual time, {events} events, {requests} requests")
    print(f"failed requests    median {statistics.median(failed):g}, min {min(failed)}, max {max(failed)}")
    if durations:
        print(f"rollout seconds    median {statistics.median(durations):.1f}, min {min(durations):.1f}, "
              f"max {max(durations):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
