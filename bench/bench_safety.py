"""Benchmark (not a test): failed requests of every shipped scenario x strategy x N seeds.

Job: run ``albgate.sim.simulate(scenario, strategy, seed=s)`` for every scenario in scenarios/*.yaml, every
strategy (kubernetes-default, readiness-gate, hardened-readiness-gate, ideal-poller, albgate) and seeds 1..N, in at most two
processes, and report the failed-request rate per strategy and scenario; for albgate also the runs with any
failed request (the target is none, each listed with the command that reproduces it) and the outcome counts.
Every run's record (outcome, requests, failures by cause, rollout and lower-bound seconds, Describe* calls)
goes to out/bench/safety.json, which bench_speed.py can read instead of running albgate again.
Invariant: the numbers are the simulation's own counters; this script only aggregates them.

Run: .venv/bin/python bench/bench_safety.py [--seeds 200] [--albgate-seeds N] [--scenarios a b] [--workers 2]
     [--write-docs]   (the tables also go to docs/results/safety.md)
Method: docs/benchmarks.md; results: docs/results/safety.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ALBGATE,
    BASELINES,
    MAX_WORKERS,
    STRATEGIES,
    add_write_docs,
    command_line,
    docs_header,
    fmt_rate,
    machine,
    markdown_table,
    pinned_template,
    reproduce,
    scenario_files,
    simulate_grid,
    write_docs,
    write_result,
)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{scenario: {strategy: totals}} over the seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["scenario"], r["strategy"])].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (scenario, strategy), rs in sorted(groups.items()):
        failed = [r["failed_requests"] for r in rs]
        causes: Counter[str] = Counter()
        for r in rs:
            causes.update(r["failed_by_cause"])
        worst = max(rs, key=lambda r: (r["failed_requests"], -r["seed"]))
        out[scenario][strategy] = {
            "runs": len(rs),
            "seeds": [min(r["seed"] for r in rs), max(r["seed"] for r in rs)],
            "requests": sum(r["requests"] for r in rs),
            "failed_requests": sum(failed),
            "failed_rate": sum(failed) / max(1, sum(r["requests"] for r in rs)),
            "runs_with_failures": sum(1 for f in failed if f),
            "max_failed_in_a_run": max(failed),
            "worst_seed": worst["seed"],
            "failed_by_cause": dict(causes.most_common()),
            "outcomes": dict(Counter(r["outcome"] for r in rs).most_common()),
        }
    return dict(out)


def albgate_failures(runs: list[dict[str, Any]], files: dict[str, Path]) -> list[dict[str, Any]]:
    """Every albgate run that dropped a request: the most valuable finding, with how to reproduce it."""
    bad = [r for r in runs if r["strategy"] == ALBGATE and r["failed_requests"] > 0]
    return [{"scenario": r["scenario"], "seed": r["seed"], "outcome": r["outcome"],
             "failed_requests": r["failed_requests"], "failed_by_cause": r["failed_by_cause"],
             "reproduce": reproduce(files[r["scenario"]], ALBGATE, r["seed"])}
            for r in sorted(bad, key=lambda r: (r["scenario"], r["seed"]))]


def render(summary: dict[str, dict[str, dict[str, Any]]], failures: list[dict[str, Any]]) -> str:
    strategies = [s for s in STRATEGIES if any(s in v for v in summary.values())]
    rows = []
    for scenario, by in summary.items():
        row: list[Any] = [scenario]
        for s in strategies:
            t = by.get(s)
            row.append("-" if t is None else f"{fmt_rate(t['failed_requests'], t['requests'])} "
                                             f"({t['runs_with_failures']}/{t['runs']})")
        rows.append(row)
    parts = ["Failed-request rate (runs with any failed request / runs):", "",
             markdown_table(["scenario", *strategies], rows)]
    if any(ALBGATE in v for v in summary.values()):
        arows = []
        total = Counter()
        for scenario, by in summary.items():
            t = by.get(ALBGATE)
            if t is None:
                continue
            total.update(t["outcomes"])
            arows.append([scenario, t["runs"], t["runs_with_failures"], t["failed_requests"],
                          ", ".join(f"{k} {v}" for k, v in t["outcomes"].items())])
        parts += ["", "albgate:", "", markdown_table(
            ["scenario", "runs", "runs with any failed request", "failed requests", "outcomes"], arows, "lrrrl")]
        parts += ["", f"albgate runs with any failed request: {len(failures)} of "
                      f"{sum(t[ALBGATE]['runs'] for t in summary.values() if ALBGATE in t)} (target: 0); "
                      f"outcomes: {', '.join(f'{k} {v}' for k, v in total.most_common())}"]
        for f in failures[:50]:
            parts.append(f"  DROPPED {f['failed_requests']} on {f['scenario']} seed {f['seed']} ({f['outcome']}, "
                         f"{f['failed_by_cause']}): {f['reproduce']}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200, help="seeds 1..N for the baseline strategies (default 200)")
    ap.add_argument("--albgate-seeds", type=int, default=None, help="seeds 1..N for albgate (default: --seeds)")
    ap.add_argument("--scenarios", nargs="*", default=None, help="scenario names or files (default: all shipped)")
    ap.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--workers", type=int, default=MAX_WORKERS, help=f"processes, at most {MAX_WORKERS}")
    ap.add_argument("--out", type=Path, default=None, help="directory for safety.json (default out/bench)")
    add_write_docs(ap, "safety")
    args = ap.parse_args(argv)
    files = scenario_files(args.scenarios)
    n_albgate = args.seeds if args.albgate_seeds is None else args.albgate_seeds
    plan = {s: list(range(1, (n_albgate if s == ALBGATE else args.seeds) + 1)) for s in args.strategies}
    info = machine()
    t0 = time.perf_counter()
    runs = simulate_grid(files, plan, args.workers, label="safety")
    wall = time.perf_counter() - t0
    from albgate.sim import load_scenario

    names = {load_scenario(f).name: f for f in files}
    summary = aggregate(runs)
    failures = albgate_failures(runs, names)
    text = render(summary, failures)
    print(text)
    sample = (f"seeds 1-{args.seeds} of each strategy, albgate 1-{n_albgate}, on {len(files)} scenarios: "
              f"{len(runs)} runs in {wall:.0f} s on {min(args.workers, MAX_WORKERS)} process(es)")
    print(f"\n{sample}")
    path = write_result("safety", {
        "benchmark": "safety", "command": command_line(), "machine": info, "wall_seconds": round(wall, 1),
        "workers": min(args.workers, MAX_WORKERS),
        "template_key": pinned_template()[0], "seeds": args.seeds, "albgate_seeds": n_albgate,
        "strategies": args.strategies, "baselines": [s for s in BASELINES if s in args.strategies],
        "scenarios": {n: str(f.relative_to(f.parents[1])) for n, f in names.items()},
        "summary": summary, "albgate_runs_with_failed_requests": failures, "table": text, "runs": runs,
    }, args.out)
    print(f"wrote {path}")
    if args.write_docs:
        header = docs_header(info, sample=sample, template_key=pinned_template()[0])
        print(f"wrote {write_docs(args.write_docs, 'safety', 'Safety: failed requests', header, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
