"""Benchmark (not a test): rollouts of Deployments behind one Service, with and without shared looks, side by side.

Job: for each world (``--worlds``: N copies of the scenario's app, ``per_service`` of them behind each Service and
its target groups, rollouts started at seeded times within ``--within`` seconds), run albgate's N executions twice
in one process: sharing their DescribeTargetHealth answers per target group (lambdas/domain/looks.py, the default)
and each calling for its own. Per world and mode: failed requests, failed rollouts, albgate's and the controllers'
Describe* calls per rollout, the calls the bucket throttled, rollout time (median / p99 / worst) and the makespan.
Simulated seconds throughout; the wall time of each world is reported beside.

Run: .venv/bin/python bench/bench_shared_looks.py [--scenario scenarios/auto-mode.yaml] [--worlds 20x2 20x4 200x2]
     [--within 10] [--seed 1] [--write-docs]
Method: docs/benchmarks.md, "Looks shared between rollouts of one target group"; results: docs/results/shared-looks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    add_write_docs,
    docs_header,
    fmt,
    machine,
    markdown_table,
    pair,
    pinned_template,
    write_docs,
    write_result,
)

MODES = (("shared", True), ("each its own", False))


def world(text: str) -> tuple[int, int]:
    """``NxK``: N copies, K behind each Service."""
    try:
        n, k = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a world as NxK, e.g. 20x2 (20 copies, 2 per Service)")
    if n < 1 or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be 1 or more and K between 1 and N")
    return n, k


def run(scenario_path: Path, worlds: list[tuple[int, int]], within: float, seed: int) -> dict[str, Any]:
    from albgate.sim import load_scenario
    from albgate.sim.albgate_strategy import register_strategy  # importing it registers the albgate strategy
    from albgate.sim.fleet import print_progress, run_fleet
    from albgate.sim.scenario import MAX_REQUESTS

    assert register_strategy
    base = load_scenario(scenario_path)
    rows: list[dict[str, Any]] = []
    for n, k in worlds:
        # the clients of a Service send at the scenario's rate; a large world's fewer (MAX_REQUESTS)
        services = -(-n // k)
        rate = min(base.traffic.rate_per_second,
                   int(MAX_REQUESTS / (services * (base.rollout.start_at_seconds + base.horizon_seconds))))
        scenario = base.with_changes(fleet={"deployments": n, "start_within_seconds": within, "per_service": k},
                                     traffic={"rate_per_second": max(1, rate)})
        for label, share in MODES:
            print(f"{scenario.name}: {n} rollouts, {k} per Service, looks {label} ...", file=sys.stderr, flush=True)
            result = run_fleet(scenario, "albgate", seed, progress=print_progress if n >= 10 else None,
                               share_looks=share)
            row = result.to_json()
            row.pop("rollouts")
            row.update(mode=label, per_service=k, rate_per_second=max(1, rate))
            rows.append(row)
    return {"scenario": str(scenario_path.relative_to(ROOT) if scenario_path.is_absolute() else scenario_path),
            "worlds": [f"{n}x{k}" for n, k in worlds], "within_seconds": within, "seed": seed, "rows": rows}


def tables(payload: dict[str, Any]) -> str:
    def spread(d: dict[str, Any] | None) -> str:
        return f"{fmt(d['median'], 1)} / {fmt(d['p99'], 1)} / {fmt(d['worst'], 1)}" if d else "-"

    def per(row: dict[str, Any], caller: str) -> str:
        return fmt(row["describe_calls_by_caller"].get(caller, 0) / max(1, row["deployments"]), 2)

    body = [
        f"Scenario `{payload['scenario']}`, seed {payload['seed']}; the rollouts start at seeded times within "
        f"{payload['within_seconds']:g} s. Both modes of a world run in one process, one after the other, on the "
        "same world and draws.",
        "",
        markdown_table(
            ["N", "per Service", "looks", "failed requests", "failed rollouts", "rollout s: median / p99 / worst",
             "makespan s", "Describe* per rollout: albgate / controller", "throttled: albgate / controller",
             "wall s"],
            [[r["deployments"], r["per_service"], r["mode"],
              f"{r['failed_requests']} of {r['requests']} ({r['rate_per_second']:g}/s per Service)",
              r["failed_rollouts"], spread(r["rollout_seconds"]), fmt(r["makespan_seconds"], 1),
              f"{per(r, 'albgate')} / {per(r, 'controller')}",
              pair(r["throttled_calls_by_caller"], "albgate"),
              fmt(r["wall_seconds"], 1)]
             for r in payload["rows"]],
            align="rrl" + "r" * 7,
        ),
    ]
    return "\n".join(body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "auto-mode.yaml")
    ap.add_argument("--worlds", type=world, nargs="+", default=[(20, 2), (20, 4), (200, 2)])
    ap.add_argument("--within", type=float, default=10.0, help="start window, seconds (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="directory for shared_looks.json (default out/bench)")
    add_write_docs(ap, "shared-looks")
    args = ap.parse_args()
    info = machine()
    key, _ = pinned_template()
    payload = run(args.scenario.resolve(), args.worlds, args.within, args.seed)
    payload["machine"] = info
    write_result("shared_looks", payload, args.out)
    text = tables(payload)
    print(text)
    if args.write_docs:
        sample = ", ".join(payload["worlds"]) + f" (N x per Service), seed {args.seed}"
        header = docs_header(info, sample=sample, template_key=key)
        write_docs(args.write_docs, "shared-looks", "Looks shared between rollouts of one target group", header, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
