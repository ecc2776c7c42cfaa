"""Benchmark (not a test): what a new version that answers worse gets through, with and without analysis.

Job: for each scenario of a degraded new version (it passes every health check but answers more 5xx, or slower,
than the noisy baseline) and seeds 1..N, run
- albgate with ``policy.analysis`` (the scenario's policy): when it failed the rollout (the rollback's start), at
  which step, and how many requests the new version answered 5xx in the measured window;
- health checks alone (``hardened-readiness-gate``: the controller's gate on the hardened app), which rolls the
  new version out fully: what it answered 5xx in the window;
- on that same run, an Argo-Rollouts-style background analysis with a fixed threshold on the whole target group,
  as its documentation's success-rate example sets it (success rate >= 0.95 of the target group's requests,
  measured every ``interval``, the analysis failing once more than ``failureLimit`` measurements failed; the
  abort sends no more traffic to the new version): read from the run's published ALB metrics (the last
  ``interval`` of published periods at each measurement), counting the new version's 5xx answers before the
  abort. Two settings: the documented example (5 min, failureLimit 3) and a fast one (1 min, failureLimit 0).
Then the healthy new version on the same noisy baseline (``noisy-baseline-healthy``) over ``--healthy-seeds``
seeds: albgate's false rollbacks, and the fixed-threshold analyses' false aborts on the same runs' metrics.
The window is the same for every run: ``WINDOW_SECONDS`` from the rollout's start (runs continue to its end).
Invariant: the numbers are the simulation's own counters and published metrics; this script only aggregates them.

Run: .venv/bin/python bench/bench_analysis.py [--seeds 20] [--healthy-seeds 200] [--workers 2] [--scenarios a b]
     [--write-docs]   (about 4 minutes on 2 processes with the defaults)
Method and numbers: docs/benchmarks.md, "Analysis"; results: docs/results/analysis.md.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MAX_WORKERS,
    add_write_docs,
    docs_header,
    machine,
    markdown_table,
    write_docs,
    write_result,
)

DEGRADED = ["new-version-5x-errors", "new-version-25x-errors", "new-version-all-errors", "new-version-slow"]
HEALTHY = "noisy-baseline-healthy"
NO_ANALYSIS = "hardened-readiness-gate"
WINDOW_SECONDS = 1800.0
SUCCESS_RATE = 0.95  # Argo Rollouts' documented success-rate example: successCondition result[0] >= 0.95


@dataclass(frozen=True)
class FixedAnalysis:
    name: str
    interval: float  # seconds between measurements
    failure_limit: int  # the analysis fails once more measurements than this failed


FIXED = (FixedAnalysis("Argo-style, documented example (5 min, failureLimit 3)", 300.0, 3),
         FixedAnalysis("Argo-style, fast (1 min, failureLimit 0)", 60.0, 0))


def fixed_abort(periods: dict[float, list[float]], delay: float, start: float, end: float,
                f: FixedAnalysis) -> float | None:
    """When a fixed-threshold analysis started with the rollout would abort it (epoch seconds), or None: at each
    measurement it reads the periods published by then within the last ``interval`` (RequestCount and
    HTTPCode_Target_5XX_Count of the target group); a success rate below ``SUCCESS_RATE`` is a failed
    measurement, one without data is inconclusive."""
    from albgate.sim.metrics import REQUESTS, TARGET_5XX, published

    failed = 0
    t = start + f.interval
    while t <= end:
        # the ``interval`` / 60 newest published periods: starting after t - interval - delay - 60 (published by t
        # is starting at or before t - delay - 60)
        oldest = t - f.interval - delay - 60
        rows = [row for s, row in periods.items() if s > oldest and published(s, t, delay)]
        requests = sum(r[REQUESTS] for r in rows)
        if requests > 0 and 1 - sum(r[TARGET_5XX] for r in rows) / requests < SUCCESS_RATE:
            failed += 1
            if failed > f.failure_limit:
                return t
        t += f.interval
    return None


def _bad_before(times: list[float], until: float) -> int:
    return bisect.bisect_left(times, until)


def one_run(args: tuple[str, str, int]) -> dict[str, Any]:
    """One scenario x strategy x seed, run to the end of the window."""
    name, strategy, seed = args
    import albgate.sim.albgate_strategy  # noqa: F401  (registers the albgate strategy)
    from albgate.sim import load_scenario
    from albgate.sim.runner import run_strategy

    root = Path(__file__).resolve().parent.parent
    sc = load_scenario(root / "scenarios" / f"{name}.yaml")
    sim, run = run_strategy(sc, strategy, seed)
    end = sim.rollout_start + WINDOW_SECONDS
    if sim.clock.t < end:
        sim.run_until(end)
    times = sorted(t for s in sim.traffic.streams for t in s.answered_badly_new_at)
    rollback_at = next((t for t, kind, text in sim.timeline
                        if kind == "deployment" and "rolled back to the template" in text), None)
    failed_step = steps = None
    if "failed at step " in run.detail:  # "rollout failed at step 1/3: ..."
        failed_step, steps = (int(x) for x in run.detail.split("failed at step ", 1)[1].split(":", 1)[0].split("/"))
    record: dict[str, Any] = {
        "scenario": name, "strategy": strategy, "seed": seed, "outcome": run.outcome, "detail": run.detail[:300],
        "bad_new": _bad_before(times, end), "requests": sim.traffic.requests,
        "failed_requests": sim.traffic.failed_requests,
        # the timeline's times are seconds since the world's start; the rollout started at start_at_seconds
        "detected_after": None if rollback_at is None else rollback_at - sc.rollout.start_at_seconds,
        "failed_step": failed_step, "steps": steps,
        "get_metric_data_calls": sum(sim.metrics.calls.values()),
    }
    if strategy != "albgate" or name == HEALTHY:
        (group,) = sim.metrics.groups.values()
        for f in FIXED:
            abort = fixed_abort(group.periods, sim.metrics.delay, sim.rollout_start, end, f)
            record[f.name] = {"abort_after": None if abort is None else abort - sim.rollout_start,
                              "bad_new": _bad_before(times, end if abort is None else abort)}
    return record


def run_all(seeds: int, healthy_seeds: int, workers: int, degraded: list[str]) -> list[dict[str, Any]]:
    jobs = [(n, s, seed) for n in degraded for s in ("albgate", NO_ANALYSIS) for seed in range(1, seeds + 1)]
    jobs += [(HEALTHY, "albgate", seed) for seed in range(1, healthy_seeds + 1)]
    out: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as ex:
        for i, r in enumerate(ex.map(one_run, jobs, chunksize=4), start=1):
            out.append(r)
            if i % 20 == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def _median(xs: list[float]) -> str:
    return "-" if not xs else f"{statistics.median(xs):.0f}"


def degraded_table(runs: list[dict[str, Any]], degraded: list[str]) -> str:
    rows = []
    for name in degraded:
        mine = [r for r in runs if r["scenario"] == name and r["strategy"] == "albgate"]
        bare = [r for r in runs if r["scenario"] == name and r["strategy"] == NO_ANALYSIS]
        early = sum(1 for r in mine if r["outcome"] == "rolled_back" and r["failed_step"] is not None
                    and r["failed_step"] < r["steps"])
        drops = sum(r["failed_requests"] for r in mine)
        row = [name, len(mine), f"{early} / {len(mine)}", drops,
               _median([r["detected_after"] for r in mine if r["detected_after"] is not None]),
               _median([r["bad_new"] for r in mine]), _median([r["bad_new"] for r in bare])]
        for f in FIXED:
            aborted = [r[f.name]["abort_after"] for r in bare if r[f.name]["abort_after"] is not None]
            row += [f"{len(aborted)} / {len(bare)}, {_median(aborted)}", _median([r[f.name]["bad_new"] for r in bare])]
        rows.append(row)
    headers = ["scenario", "seeds", "albgate: rolled back before the last step", "albgate: failed requests",
               "albgate: detected after (s, median)", "albgate: new version's 5xx (median)",
               "health checks alone: new version's 5xx (median)"]
    for f in FIXED:
        headers += [f"{f.name}: aborted, after (s, median)", f"{f.name}: new version's 5xx (median)"]
    return markdown_table(headers, rows, "lrrrrrr" + "rr" * len(FIXED))


def healthy_table(runs: list[dict[str, Any]]) -> str:
    mine = [r for r in runs if r["scenario"] == HEALTHY]
    rows = [["albgate with policy.analysis", len(mine), sum(1 for r in mine if r["outcome"] != "succeeded"),
             sum(r["failed_requests"] for r in mine)]]
    for f in FIXED:
        rows.append([f.name, len(mine), sum(1 for r in mine if r[f.name]["abort_after"] is not None), "-"])
    calls = [r["get_metric_data_calls"] for r in mine]
    table = markdown_table(["analysis", "seeds", "false rollbacks / aborts", "failed requests"], rows, "lrrr")
    return table + (f"\n\nGetMetricData calls per albgate rollout (Preflight's baseline included): median "
                    f"{statistics.median(calls):.0f}, max {max(calls)}." if calls else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds of each degraded scenario")
    ap.add_argument("--healthy-seeds", type=int, default=200, help="seeds of the healthy noisy scenario")
    ap.add_argument("--workers", type=int, default=MAX_WORKERS)
    ap.add_argument("--scenarios", nargs="+", default=DEGRADED, choices=DEGRADED, help="degraded scenarios to run")
    add_write_docs(ap, "analysis")
    args = ap.parse_args(argv)
    info = machine()
    t0 = time.perf_counter()
    runs = run_all(args.seeds, args.healthy_seeds, args.workers, args.scenarios)
    wall = time.perf_counter() - t0
    text = "\n\n".join([
        f"Degraded new versions, seeds 1-{args.seeds}; new version's 5xx counted over the first "
        f"{WINDOW_SECONDS / 60:.0f} minutes from the rollout's start:", degraded_table(runs, args.scenarios),
        f"A healthy new version on the same noisy baseline, seeds 1-{args.healthy_seeds}:", healthy_table(runs)])
    print(text)
    print(f"wrote {write_result('analysis', {'machine': info, 'wall_seconds': wall, 'runs': runs})}",
          file=sys.stderr)
    if args.write_docs:
        sample = (f"{len(args.scenarios)} degraded scenario(s) x seeds 1-{args.seeds} x 2 strategies, {HEALTHY} x seeds "
                  f"1-{args.healthy_seeds}; {wall / 60:.0f} min on {args.workers} processes")
        print(f"wrote {write_docs(args.write_docs, 'analysis', 'Analysis of the ALB metrics', docs_header(info, sample=sample), text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
