"""Benchmark (not a test): what one albgate rollout costs, and how many can run at once in one account.

Job, per scenario over seeds 1..N (the ``albgate`` strategy: the synthesized state machine in moto on the
simulation, with a timer around each handler call and a log of the account's Describe* calls):
- DescribeTargetHealth calls (albgate's and the Load Balancer Controller's) and DescribeTargetGroups(+Attributes)
  calls, Step Functions state transitions and Lambda invocations, per rollout and per step (a step = one
  ``Start Step`` or ``Rollback: Start Step`` entered);
- Lambda GB-seconds, memory from the template's functions; duration (a) measured: the in-process wall time of
  each handler call against the simulated ports (no network: a floor), (b) assumed: ``LAMBDA_SECONDS`` = 0.3 s
  per invocation, the figure the simulation charges to its clock; each invocation billed in 1 ms units;
- dollars per rollout at public prices (PRICES below; ELB Describe calls are free);
- concurrency: N rollouts sharing the account's Describe* bucket (40 tokens, 10/s). Recorded call schedules
  (both callers) of the replay scenario are replayed N times with random start offsets against the same token
  bucket class the simulation uses (``_common.replay``), with each caller's back-off on a throttle, plus a
  constant background rate; the largest N with no throttled call, and the largest N with no rollout failed or
  slowed by more than 10 %. A replay model: docs/benchmarks.md says what it leaves out.
Invariant: counts are the simulation's and the state machine's own; prices and assumptions are constants
here and are written to the result file with the numbers.

Run: .venv/bin/python bench/bench_cost.py [--seeds 20] [--scenarios a b] [--workers 2] [--trials 20]
Method and results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_ALBGATE,
    MAX_WORKERS,
    Call,
    Schedule,
    chunks,
    command_line,
    concurrency_limits,
    fmt,
    machine,
    markdown_table,
    pinned_template,
    run_parallel,
    scenario_files,
    summary,
    write_result,
)

# Public on-demand prices, us-east-1, x86 (aws.amazon.com/step-functions/pricing, aws.amazon.com/lambda/pricing;
# the figures the benchmark brief gave, matching the published pages as read on PRICES_DATE). Free tiers ignored.
PRICES = {
    "step_functions_standard_per_state_transition": 0.025 / 1000,
    "lambda_per_gb_second_x86": 0.0000166667,
    "lambda_per_request": 0.20 / 1_000_000,
    "elb_describe_calls": 0.0,
}
PRICES_DATE = "2026-11 (pages as published since 2020 for these three prices)"
ASSUMED_INVOCATION_SECONDS = 0.3  # albgate.rollout_strategy.LAMBDA_SECONDS
REPLAY_SCENARIOS = ("seed-app", "slow-registration")
WINDOWS = (0.0, 10.0, 60.0, 300.0)
BACKGROUNDS = (0.0, 2.0)


def memory_by_function(template: dict[str, Any]) -> dict[str, int]:
    return {lid: int(r["Properties"].get("MemorySize", 128)) for lid, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::Function"}


def cost_task(task: tuple[str, list[int]]) -> list[dict[str, Any]]:
    """Worker: the instrumented albgate run for each seed of one scenario."""
    from albgate.sim import load_scenario, run_strategy
    from albgate.sim.strategies import bootstrap_hardened

    path, seeds = task
    sc = load_scenario(path)
    interval = bootstrap_hardened(sc).ingress.health_check()[0]
    memory = memory_by_function(pinned_template()[1])
    out = []
    for seed in seeds:
        t0 = time.perf_counter()
        sim, run = run_strategy(sc, BENCH_ALBGATE, seed)
        calls = run.extra["describe_calls"]
        timings = run.extra["handler_timings"]
        visited = Counter(run.extra["visited"])
        steps = sum(n for name, n in visited.items() if name.endswith("Start Step"))
        gbs_measured = sum(memory.get(fid, 256) / 1024 * math.ceil(sec * 1000) / 1000 for fid, sec in timings)
        gbs_assumed = sum(memory.get(fid, 256) / 1024 * ASSUMED_INVOCATION_SECONDS for fid, _ in timings)
        n_inv = run.extra["invocations"]
        usd = {
            "step_functions": run.state_transitions * PRICES["step_functions_standard_per_state_transition"],
            "lambda_requests": n_inv * PRICES["lambda_per_request"],
            "lambda_duration_measured": gbs_measured * PRICES["lambda_per_gb_second_x86"],
            "lambda_duration_assumed": gbs_assumed * PRICES["lambda_per_gb_second_x86"],
        }
        usd["total_assumed"] = usd["step_functions"] + usd["lambda_requests"] + usd["lambda_duration_assumed"]
        usd["total_measured"] = usd["step_functions"] + usd["lambda_requests"] + usd["lambda_duration_measured"]

        def n(caller: str, api: str) -> int:
            return sum(1 for c in calls if c[1] == caller and c[2] == api)

        out.append({
            "scenario": sc.name, "seed": seed, "outcome": run.outcome, "rollout_seconds": run.seconds,
            "steps": steps, "health_check_interval_seconds": interval,
            "albgate_describe_target_health": n("albgate", "DescribeTargetHealth"),
            "albgate_describe_target_groups": n("albgate", "DescribeTargetGroups"),
            "controller_describe_target_health": n("controller", "DescribeTargetHealth"),
            "albgate_throttled": sum(1 for c in calls if c[1] == "albgate" and not c[4]),
            "controller_throttled": sum(1 for c in calls if c[1] == "controller" and not c[4]),
            "state_transitions": run.state_transitions, "invocations": n_inv,
            "invocations_by_function": dict(Counter(fid for fid, _ in timings).most_common()),
            "handler_seconds_total": sum(s for _, s in timings),
            "handler_seconds_max": max((s for _, s in timings), default=0.0),
            "gb_seconds_measured": gbs_measured, "gb_seconds_assumed": gbs_assumed, "usd": usd,
            "failed_requests": sim.traffic.failed_requests,
            "describe_calls": [[round(c[0], 3), c[1], c[2], c[3], c[4]] for c in calls],
            "wall_seconds": time.perf_counter() - t0,
        })
    return out


def per_scenario(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[r["scenario"]].append(r)
    out = {}
    for scenario, rs in sorted(groups.items()):
        def med(key: str, per_step: bool = False) -> float:
            xs = [r[key] / r["steps"] if per_step else r[key] for r in rs if not per_step or r["steps"]]
            return summary(xs)["median"] if xs else float("nan")

        out[scenario] = {
            "runs": len(rs), "outcomes": dict(Counter(r["outcome"] for r in rs).most_common()),
            "steps": med("steps"), "rollout_seconds": med("rollout_seconds"),
            "albgate_describe_target_health": summary([r["albgate_describe_target_health"] for r in rs]),
            "albgate_describe_target_health_per_step": med("albgate_describe_target_health", True),
            "albgate_describe_target_groups": med("albgate_describe_target_groups"),
            "controller_describe_target_health": med("controller_describe_target_health"),
            "state_transitions": summary([r["state_transitions"] for r in rs]),
            "state_transitions_per_step": med("state_transitions", True),
            "invocations": summary([r["invocations"] for r in rs]),
            "invocations_per_step": med("invocations", True),
            "gb_seconds_measured": med("gb_seconds_measured"), "gb_seconds_assumed": med("gb_seconds_assumed"),
            "handler_ms_per_invocation": 1000 * sum(r["handler_seconds_total"] for r in rs)
            / max(1, sum(r["invocations"] for r in rs)),
            "handler_ms_max": 1000 * max(r["handler_seconds_max"] for r in rs),
            "usd_total_assumed": summary([r["usd"]["total_assumed"] for r in rs]),
            "usd_total_measured": med_usd(rs, "total_measured"),
            "usd_step_functions": med_usd(rs, "step_functions"),
            "albgate_throttled": sum(r["albgate_throttled"] for r in rs),
            "controller_throttled": sum(r["controller_throttled"] for r in rs),
            "failed_requests": sum(r["failed_requests"] for r in rs),
        }
    return out


def med_usd(rs: list[dict[str, Any]], key: str) -> float:
    return summary([r["usd"][key] for r in rs])["median"]


def schedules_of(runs: list[dict[str, Any]], scenarios: tuple[str, ...]) -> list[Schedule]:
    out = []
    for r in runs:
        if r["scenario"] in scenarios and r["outcome"] == "succeeded" and r["rollout_seconds"]:
            calls = tuple(Call(t, caller, api, n) for t, caller, api, n, _ok in r["describe_calls"])
            out.append(Schedule(f"{r['scenario']}-{r['seed']}", calls, r["rollout_seconds"]))
    return out


def render(per: dict[str, dict[str, Any]], conc: list[dict[str, Any]], replay_info: dict[str, Any]) -> str:
    rows = []
    for s, e in per.items():
        rows.append([s, e["runs"], ", ".join(f"{k} {v}" for k, v in e["outcomes"].items()), fmt(e["steps"], 0),
                     f"{fmt(e['albgate_describe_target_health']['median'], 0)} ({fmt(e['albgate_describe_target_health']['max'], 0)})",
                     fmt(e["albgate_describe_target_health_per_step"], 1),
                     fmt(e["albgate_describe_target_groups"], 0), fmt(e["controller_describe_target_health"], 0),
                     f"{fmt(e['state_transitions']['median'], 0)} ({fmt(e['state_transitions']['max'], 0)})",
                     fmt(e["state_transitions_per_step"], 1),
                     f"{fmt(e['invocations']['median'], 0)} ({fmt(e['invocations']['max'], 0)})",
                     fmt(e["invocations_per_step"], 1)])
    t1 = markdown_table(["scenario", "runs", "outcomes", "steps", "albgate DescribeTargetHealth (max)",
                         "per step", "DescribeTargetGroups", "controller DescribeTargetHealth",
                         "state transitions (max)", "per step", "Lambda invocations (max)", "per step"],
                        rows, "lrlrrrrrrrrr")
    rows = []
    for s, e in per.items():
        rows.append([s, fmt(e["handler_ms_per_invocation"], 2), fmt(e["gb_seconds_measured"], 4),
                     fmt(e["gb_seconds_assumed"], 2), f"{e['usd_step_functions']:.5f}",
                     f"{e['usd_total_measured']:.5f}", f"{e['usd_total_assumed']['median']:.5f}",
                     f"{e['usd_total_assumed']['max']:.5f}"])
    t2 = markdown_table(["scenario", "handler ms / invocation (measured, in-process)", "GB-s measured",
                         f"GB-s at {ASSUMED_INVOCATION_SECONDS} s / invocation", "$ Step Functions",
                         "$ / rollout (measured duration)", f"$ / rollout ({ASSUMED_INVOCATION_SECONDS} s)",
                         f"$ worst ({ASSUMED_INVOCATION_SECONDS} s)"], rows)
    rows = [[c["replay_scenario"], fmt(c["window_seconds"], 0), fmt(c["background_calls_per_second"], 0),
             c["largest_n_without_throttling"], c["largest_n_within_slowdown"], _first(c["first_too_slow"]),
             _failed(c)] for c in conc]
    t3 = markdown_table(["replayed rollouts", "start window s", "background Describe*/s", "largest N, no throttled call",
                         "largest N, none failed or >10 % slower", "first N over (failed, worst slow-down)",
                         "largest N, none failed"], rows, "lrrrrrr")
    rates = [f"- {s}: {i['schedules']} rollouts, median {fmt(i['rollout_seconds']['median'], 0)} s; Describe* tokens/s "
             f"per rollout: albgate {fmt(i['albgate_tokens_per_second']['median'], 3)}, controller "
             f"{fmt(i['controller_tokens_per_second']['median'], 3)}" for s, i in replay_info["by_scenario"].items()]
    return "\n\n".join([
        "Per rollout (median over seeds; max in brackets):", t1,
        "Dollars per rollout (median; prices in the result file):", t2,
        f"Concurrent rollouts on one Describe* bucket (40 tokens, 10/s; replay of recorded rollouts, "
        f"{replay_info['trials']} trials per N):", t3, "\n".join(rates)])


def _first(x: dict[str, Any] | None) -> str:
    if not x:
        return "-"
    return f"N={x['n']} ({x['failed_rollouts_max']} failed, {100 * x['max_slowdown']:.0f} %)"


def _failed(c: dict[str, Any]) -> str:
    """Largest N with no rollout given up, and why the next one was ('+': none up to the end of the grid)."""
    x = c["first_failed"]
    if not x:
        return f"{c['largest_n_without_failure']}+"
    why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in x["failed_by"].items())
    return f"{c['largest_n_without_failure']} (N={x['n']}: {why} in {c['trials']} trials)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--scenarios", nargs="*", default=None)
    ap.add_argument("--workers", type=int, default=MAX_WORKERS)
    ap.add_argument("--replay-scenarios", nargs="*", default=list(REPLAY_SCENARIOS))
    ap.add_argument("--windows", nargs="*", type=float, default=list(WINDOWS))
    ap.add_argument("--background", nargs="*", type=float, default=list(BACKGROUNDS))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--max-n", type=int, default=400)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    files = scenario_files(args.scenarios)
    info = machine()
    t0 = time.perf_counter()
    tasks = [(str(f), c) for f in files for c in chunks(list(range(1, args.seeds + 1)), 5)]
    runs = [r for rs in run_parallel(cost_task, tasks, args.workers, "cost") for r in rs]
    per = per_scenario(runs)
    conc, replay_info = [], {"trials": args.trials, "by_scenario": {}}
    for scenario in args.replay_scenarios:
        schedules = schedules_of(runs, (scenario,))
        if not schedules:
            continue
        replay_info["by_scenario"][scenario] = {
            "schedules": len(schedules), "rollout_seconds": summary([s.rollout_seconds for s in schedules]),
            **{f"{who}_tokens_per_second": summary([sum(c.tokens for c in s.calls if c.caller == who)
                                                    / s.rollout_seconds for s in schedules])
               for who in ("albgate", "controller")}}
        for bg in args.background:
            for w in args.windows:
                c = concurrency_limits(schedules, window=w, background=bg, trials=args.trials, n_max=args.max_n)
                conc.append({"replay_scenario": scenario, **c})
    text = render(per, conc, replay_info)
    print(text)
    wall = time.perf_counter() - t0
    path = write_result("cost", {
        "benchmark": "cost", "command": command_line(), "machine": info, "wall_seconds": round(wall, 1),
        "template_key": pinned_template()[0], "seeds": args.seeds, "prices_usd": PRICES,
        "prices_date": PRICES_DATE, "assumed_invocation_seconds": ASSUMED_INVOCATION_SECONDS,
        "memory_mb_by_function": memory_by_function(pinned_template()[1]),
        "per_scenario": per, "replay": replay_info, "concurrency": conc, "table": text, "runs": runs,
    }, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
