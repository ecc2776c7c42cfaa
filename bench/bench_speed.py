"""Benchmark (not a test): how long albgate's gated rollout takes, against the oracle and the controller's gate.

Job: per scenario, over seeds 1..N, albgate's ``rollout_seconds / lower_bound_seconds`` (the lower bound is the
oracle strategy: albgate's plan with a perfect, free, instant gate, in the same world and seed) and albgate's
time over the ``hardened-readiness-gate`` strategy's (and the plain ``readiness-gate``'s) on the same seed, and
both ratios of the ``ideal-poller`` (the oracle seeing health once per interval, at no cost: what albgate's
polling rule alone costs):
median, p99 (nearest rank) and worst; the target is a median of at most 1.10 and a p99 of at most 1.25 per scenario. Ratios are of virtual (simulated) seconds, taken from runs of the same
benchmark invocation, so machine load does not enter them. Only runs where both rollouts succeeded are
ratioed; a rollback's time against an oracle that waits for the step deadline says nothing and is listed
apart (albgate's seconds to a finished rollback).
Invariant: reads the same per-run records bench_safety.py writes; with ``--from out/bench/safety.json`` it
reuses them (the simulation is deterministic: the same seed gives the same run), otherwise it runs albgate,
hardened-readiness-gate and readiness-gate itself.

Run: .venv/bin/python bench/bench_speed.py --from out/bench/safety.json
     .venv/bin/python bench/bench_speed.py [--seeds 200] [--scenarios a b] [--workers 2]
     with --write-docs the tables also go to docs/results/speed.md
Method: docs/benchmarks.md, section 2; results: docs/results/speed.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ALBGATE,
    IDEAL_POLLER,
    MAX_WORKERS,
    SUCCEEDED,
    MEDIAN_TARGET,
    TARGET_RATIO,
    add_write_docs,
    command_line,
    docs_header,
    fmt,
    machine,
    markdown_table,
    pinned_template,
    scenario_files,
    simulate_grid,
    summary,
    write_docs,
    write_result,
)

COMPARED = ("hardened-readiness-gate", "readiness-gate", "argo-rollouts", IDEAL_POLLER)


def speed(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in runs:
        by[(r["scenario"], r["strategy"])][r["seed"]] = r
    out: dict[str, dict[str, Any]] = {}
    for scenario in sorted({s for s, _ in by}):
        mine = by.get((scenario, ALBGATE), {})
        if not mine:
            continue
        ok = {s: r for s, r in mine.items() if r["outcome"] == SUCCEEDED and r["rollout_seconds"] is not None}
        lb = [r["rollout_seconds"] / r["lower_bound_seconds"] for r in ok.values() if r["lower_bound_seconds"]]
        worst_lb = max(ok.values(), key=lambda r: r["rollout_seconds"] / r["lower_bound_seconds"]
                       if r["lower_bound_seconds"] else 0.0, default=None)
        entry: dict[str, Any] = {
            "albgate_runs": len(mine),
            "albgate_outcomes": _count(r["outcome"] for r in mine.values()),
            "albgate_seconds": summary([r["rollout_seconds"] for r in ok.values()]),
            "lower_bound_seconds": summary([r["lower_bound_seconds"] for r in ok.values() if r["lower_bound_seconds"]]),
            "over_lower_bound": summary(lb),
            "seeds_over_target": sum(1 for x in lb if x > TARGET_RATIO),
            "worst_seed_over_lower_bound": worst_lb["seed"] if worst_lb and lb else None,
            "not_succeeded_seconds": summary([r["rollout_seconds"] for r in mine.values()
                                              if r["outcome"] != SUCCEEDED and r["rollout_seconds"] is not None]),
        }
        for other in COMPARED:
            theirs = by.get((scenario, other), {})
            pairs = [(ok[s]["rollout_seconds"], theirs[s]["rollout_seconds"]) for s in ok
                     if s in theirs and theirs[s]["outcome"] == SUCCEEDED and theirs[s]["rollout_seconds"]]
            entry[f"{other}_seconds"] = summary([t for _, t in pairs])
            entry[f"over_{other}"] = summary([a / t for a, t in pairs])
            entry[f"{other}_outcomes"] = _count(r["outcome"] for r in theirs.values())
        ideal = [r["rollout_seconds"] / r["lower_bound_seconds"] for r in by.get((scenario, IDEAL_POLLER), {}).values()
                 if r["outcome"] == SUCCEEDED and r["rollout_seconds"] and r["lower_bound_seconds"]]
        entry["ideal_over_lower_bound"] = summary(ideal)
        entry["ideal_seeds_over_target"] = sum(1 for x in ideal if x > TARGET_RATIO)
        out[scenario] = entry
    return out


def _count(xs: Any) -> dict[str, int]:
    c: dict[str, int] = {}
    for x in xs:
        c[x] = c.get(x, 0) + 1
    return dict(sorted(c.items(), key=lambda kv: -kv[1]))


def _trio(s: dict[str, Any]) -> str:
    return "-" if not s["n"] else f"{fmt(s['median'])} / {fmt(s['p99'])} / {fmt(s['max'])}"


def render(result: dict[str, dict[str, Any]]) -> str:
    rows, bound_rows = [], []
    for scenario, e in result.items():
        h = e["over_hardened-readiness-gate"]
        rg = e["over_readiness-gate"]
        argo = e["over_argo-rollouts"]
        rows.append([scenario, f"{e['over_lower_bound']['n']}/{e['albgate_runs']}",
                     fmt(e["albgate_seconds"]["median"], 1), fmt(e["lower_bound_seconds"]["median"], 1),
                     _trio(e["over_lower_bound"]),
                     fmt(e["hardened-readiness-gate_seconds"]["median"], 1), f"{_trio(h)} (n={h['n']})",
                     f"{_trio(rg)} (n={rg['n']})", f"{_trio(argo)} (n={argo['n']})"])
        ideal, mine = e["ideal_over_lower_bound"], e["over_lower_bound"]
        if ideal["n"]:
            bound_rows.append([scenario, f"{_trio(mine)} ({e['seeds_over_target']})",
                               f"{_trio(ideal)} ({e['ideal_seeds_over_target']})",
                               f"{_trio(e[f'over_{IDEAL_POLLER}'])} (n={e[f'over_{IDEAL_POLLER}']['n']})"])
    table = markdown_table(
        ["scenario", "albgate succeeded", "albgate median s", "lower bound median s",
         "albgate / lower bound: median / p99 / worst", "hardened-readiness-gate median s",
         "albgate / hardened-readiness-gate: median / p99 / worst", "albgate / readiness-gate",
         "albgate / argo-rollouts"], rows)
    if bound_rows:
        table += (f"\n\nAgainst the ideal poller (seeds over {TARGET_RATIO}x in brackets):\n\n" + markdown_table(
            ["scenario", "albgate / lower bound: median / p99 / worst", "ideal poller / lower bound",
             "albgate / ideal poller"], bound_rows))
    other = [f"- {s}: albgate {', '.join(f'{k} {v}' for k, v in e['albgate_outcomes'].items())}; "
             f"seconds to the end (median {fmt(e['not_succeeded_seconds']['median'], 1)}, "
             f"worst {fmt(e['not_succeeded_seconds']['max'], 1)})"
             for s, e in result.items() if e["not_succeeded_seconds"]["n"]]
    judged = {s: e["over_lower_bound"] for s, e in result.items() if e["over_lower_bound"]["n"]}
    missed = [f"{s} ({fmt(o['median'])} / {fmt(o['p99'])})" for s, o in judged.items()
              if o["median"] > MEDIAN_TARGET or o["p99"] > TARGET_RATIO]
    targets = (f"\n\nTargets, albgate / lower bound per scenario: median <= {MEDIAN_TARGET}, p99 <= {TARGET_RATIO}. "
               f"Met on {len(judged) - len(missed)} of {len(judged)} scenarios"
               + (f"; missed on {', '.join(missed)}." if missed else "."))
    return table + targets + ("\n\nRuns that did not succeed (not ratioed):\n" + "\n".join(other) if other else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", type=Path, default=None,
                    help="reuse the per-run records of a bench_safety.py result (safety.json)")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--scenarios", nargs="*", default=None)
    ap.add_argument("--workers", type=int, default=MAX_WORKERS)
    ap.add_argument("--out", type=Path, default=None)
    add_write_docs(ap, "speed")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.source:
        src = json.loads(args.source.read_text())
        runs = src["runs"]
        provenance = {"source": str(args.source), "source_command": src.get("command"),
                      "source_machine": src.get("machine"), "template_key": src.get("template_key"),
                      "seeds": src.get("albgate_seeds")}
        info = src.get("machine")
    else:
        files = scenario_files(args.scenarios)
        seeds = list(range(1, args.seeds + 1))
        info = machine()
        runs = simulate_grid(files, {ALBGATE: seeds, **{s: seeds for s in COMPARED}}, args.workers, label="speed")
        provenance = {"template_key": pinned_template()[0], "seeds": args.seeds}
    result = speed(runs)
    text = render(result)
    print(text)
    wall = time.perf_counter() - t0
    path = write_result("speed", {"benchmark": "speed", "command": command_line(), "machine": info,
                                  "wall_seconds": round(wall, 1), **provenance, "speed": result, "table": text,
                                  **({} if args.source else {"runs": runs})}, args.out)
    print(f"wrote {path}")
    if args.write_docs:
        n = sum(1 for r in runs if r["strategy"] == ALBGATE)
        header = docs_header(info or {}, sample=f"albgate seeds 1-{provenance['seeds']}: {n} runs",
                             template_key=provenance["template_key"],
                             source=provenance.get("source_command"))
        print(f"wrote {write_docs(args.write_docs, 'speed', 'Speed: albgate over the lower bound', header, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
