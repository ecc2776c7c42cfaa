"""Every shipped scenario x every strategy at the scenario's own seed, as Markdown tables.

Job: one row per scenario (failed / requests of each strategy users run, albgate's outcome, time, lower bound,
DescribeTargetHealth calls and state transitions: the table README.md and docs/demo.md link to), then one row
per scenario and strategy with the failures by cause (the table docs/simulation.md links to). Each number is
``albgate simulate SCENARIO --strategy NAME --json`` at the scenario's own seed.
Invariant: the numbers are the simulation's own; this script only lays them out. With ``--write-docs`` the
tables go to docs/results/scenarios.md, their only home.

Usage: .venv/bin/python bench/scenario_table.py [--scenarios a b] [--write-docs]   (about 30 s: albgate runs its
state machine)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_write_docs, docs_header, machine, markdown_table, scenario_files, write_docs  # noqa: E402

STRATEGIES = ["kubernetes-default", "readiness-gate", "hardened-readiness-gate", "argo-rollouts", "oracle", "ideal-poller",
              "albgate"]
SUMMARY = ["kubernetes-default", "readiness-gate", "hardened-readiness-gate", "albgate"]  # the strategies users run


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _failed(r: Any) -> str:
    """``failed / requests``, and the outcome when the rollout did not succeed."""
    return f"{r.failed_requests} / {r.requests}" + ("" if r.outcome == "succeeded" else f", {r.outcome}")


def summary_table(results: list[tuple[Any, dict[str, Any]]]) -> str:
    rows = []
    for sc, by in results:
        a = by["albgate"]
        rows.append([sc.name, sc.seed, *(_failed(by[s]) for s in SUMMARY if s != "albgate"),
                     f"**{a.failed_requests}** / {a.requests}", a.outcome,
                     f"{fmt(a.rollout_seconds)} / {fmt(a.lower_bound_seconds)}",
                     a.describe_target_health_calls, a.state_transitions])
    return markdown_table(["scenario", "seed", *(f"{s}: failed / requests" for s in SUMMARY[:-1]),
                           "albgate: failed / requests", "albgate outcome", "albgate s / lower bound s",
                           "albgate DescribeTargetHealth", "albgate state transitions"], rows, "lrlllllrrr")


def full_table(results: list[tuple[Any, dict[str, Any]]]) -> str:
    rows = []
    for sc, by in results:
        for strategy in STRATEGIES:
            r = by[strategy]
            causes = ", ".join(f"{k} {v}" for k, v in sorted(r.failed_by_cause.items(), key=lambda kv: -kv[1])) or "-"
            rows.append([sc.name, strategy, r.outcome, f"{r.failed_requests} / {r.requests}", causes,
                         fmt(r.rollout_seconds), fmt(r.lower_bound_seconds)])
    return markdown_table(["scenario", "strategy", "outcome", "failed / requests", "failed by cause", "rollout s",
                           "lower bound s"], rows, "lllllll")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", default=None, help="scenario names or files (default: all shipped)")
    add_write_docs(ap, "scenarios")
    args = ap.parse_args(argv)
    info = machine()
    import albgate.sim.albgate_strategy  # noqa: F401  (registers the albgate strategy)
    from albgate.sim import load_scenario
    from albgate.sim.runner import simulate
    from albgate.template import template_key

    results = []
    for path in scenario_files(args.scenarios):
        sc = load_scenario(path)
        by = {}
        for strategy in STRATEGIES:
            r = by[strategy] = simulate(sc, strategy)
            r.timeline, r.failures = [], []  # the tables read counts only: a run's event lists can be 100 MB
        results.append((sc, by))
    text = "\n\n".join([
        "Per scenario (each at its own seed; failed requests in bold for albgate):", summary_table(results),
        "Every strategy, with the failed requests by cause (`lower bound s`: the oracle in the world the row's "
        "strategy prepared):", full_table(results)])
    print(text)
    if args.write_docs:
        sample = f"{len(results)} scenario(s) x {len(STRATEGIES)} strategies, each scenario at its own seed"
        header = docs_header(info, sample=sample, template_key=template_key())
        print(f"wrote {write_docs(args.write_docs, 'scenarios', 'Scenarios at their own seed', header, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
