"""`albgate demo`: the command that runs albgate/demo.py's comparison and prints it.

Job: read the flags, check the scenario, ``--out`` and matplotlib before anything runs, run the three strategies
(``albgate.demo.run_demo``) and print the side-by-side table with notes on how to read it and the pictures'
paths, or one JSON object with ``--json``.
Invariant: bad input (an unreadable scenario, an ``--out`` that cannot be written, no matplotlib) is refused
before any simulation runs, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from albgate.cli import UsageError
from albgate.demo import (
    DEFAULT_OUT,
    DEFAULT_SCENARIO,
    STRATEGIES,
    Progress,
    render_table,
    run_demo,
    shows_lower_bound,
)

HELP = "roll the example app three ways on the simulated cluster and compare (table and pictures)"
DESCRIPTION = ("Run a scenario (the example app by default) with kubernetes-default, readiness-gate and albgate "
               "under the same clients and seed; print a comparison table and write timeline pictures and the "
               "state machine graph.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), metavar="PATH",
                   help="scenario file (default: the example app, scenarios/seed-app.yaml)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="override the scenario's seed")
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                   help="where the pictures go (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the three results")


def _check_out(out: Path) -> Path:
    """Create --out and prove it can be written, before any simulation runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".albgate-demo-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write pictures there ({exc.strerror or exc}); "
                         f"choose a writable directory") from None
    return out


def run(args: argparse.Namespace) -> int:
    from albgate.sim import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    out = _check_out(Path(args.out))
    try:
        import grandalf  # noqa: F401  (the graph's layout)
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as missing:
        raise UsageError(f"the pictures need {missing.name}: pip install -r requirements.txt (or run ./dev demo)") from None
    seed = scenario.seed if args.seed is None else args.seed
    progress = Progress(sys.stderr, len(STRATEGIES))
    progress.note(f"albgate demo: {scenario.name} (seed {seed}) with {', '.join(STRATEGIES)}")
    wall = time.perf_counter()
    done = run_demo(scenario, seed, out, progress)
    results, paths = done["results"], done["pictures"]
    wall = time.perf_counter() - wall

    if args.json:
        print(json.dumps({
            "scenario": scenario.name,
            "seed": seed,
            "strategies": list(STRATEGIES),
            "results": {r.strategy: r.to_json() for r in results},
            "pictures": {k: str(v) for k, v in paths.items()},
            "wall_seconds": round(wall, 3),
        }, sort_keys=True))
        return 0

    print(f"{scenario.name}: {scenario.description}".rstrip(": "))
    print(f"seed {seed}, {scenario.traffic.rate_per_second:g} requests/s; every strategy gets the same seed, so the "
          f"same clients")
    print()
    print("\n".join(render_table(results)))
    print()
    a = next(r for r in results if r.strategy == "albgate")
    bound = f" ({a.lower_bound_seconds:.1f} s here)" if shows_lower_bound(a) else ""
    print("notes:")
    print("  albgate runs on the app as its bootstrap leaves it (preStop drain, grace period; docs/rollout.md),")
    print("    the other two on the app as the scenario has it")
    print("  requests: every request from t=0 until the rollout's effects settled, so a longer run counts more")
    print(f"  lower bound: the oracle (a perfect, instant gate) in albgate's world and seed{bound}; shown when")
    print("    albgate succeeded")
    print("  DescribeTargetHealth: calls by the strategy (the controller's own are in --json);")
    print("    state transitions: Step Functions state transitions, what a Standard workflow bills")
    print()
    print("pictures:")
    for path in paths.values():
        print(f"  {path}")
    print(f"done in {wall:.1f} s")
    return 0
