"""Benchmark (not a test): what one albgate rollout costs, and how many can run at once in one account.

Job, per scenario over seeds 1..N (the ``albgate`` strategy: the synthesized state machine in moto on the
simulation, with a timer around each handler call and a log of the account's Describe* calls):
- DescribeTargetHealth calls (albgate's and the Load Balancer Controller's), DescribeTargetGroups and
  DescribeTargetGroupAttributes calls, Step Functions state transitions and Lambda invocations, per rollout and
  per step (a step = one ``Start Step`` or ``Rollback: Start Step`` entered);
- Lambda GB-seconds, memory from the template's functions; duration (a) measured: the in-process wall time of
  each handler call against the simulated ports (no network: a floor), (b) assumed: ``LAMBDA_SECONDS`` = 0.3 s
  per invocation, the figure the simulation charges to its clock; to each, the virtual time the handler waited
  inside (a watch of the cluster, a throttled call's back-off); each invocation billed in 1 ms units;
- dollars per rollout at public prices (PRICES below; ELB Describe calls are free);
- concurrency: N rollouts sharing the account's Describe* bucket (40 tokens, 10/s). Recorded call schedules
  (both callers, each albgate call with the function that made it and its step) of the replay scenario are
  replayed N times with random start offsets against the same token bucket class the simulation uses
  (``replay.replay``), with each caller's back-off on a throttle (Preflight: the synthesized state machine's
  Retry for ThrottledError, read from the template, jitter included), plus a constant background rate; the
  largest N with no throttled call, with no rollout failed or slowed by more than 10 %, and with no rollout
  failed; and, at given N (``--at-n``), the throttled calls, rollouts given up and slow-downs. A replay model:
  docs/benchmarks.md says what it leaves out.
Invariant: counts are the simulation's and the state machine's own; prices and assumptions are constants
here and are written to the result file with the numbers.

Run: .venv/bin/python bench/bench_cost.py [--seeds 20] [--scenarios a b] [--workers 2] [--trials 20]
     [--at-n 28 50 ...] [--preflight-retry template|legacy|none|I,B,A[,MAX[,FULL]]] [--runs-from cost.json]
     [--write-docs]   (the tables also go to docs/results/cost.md, or cost-replay-<what-if>.md)
Method: docs/benchmarks.md, section 3; results: docs/results/cost*.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MAX_WORKERS,
    add_write_docs,
    chunks,
    command_line,
    docs_header,
    fmt,
    machine,
    markdown_table,
    pinned_template,
    run_parallel,
    scenario_files,
    summary,
    write_docs,
    write_result,
)
from albgate_bench import BENCH_ALBGATE  # noqa: E402
from replay import (  # noqa: E402
    LEGACY_PREFLIGHT_RETRY,
    Call,
    RetryPolicy,
    Schedule,
    concurrency_limits,
    replay_at,
    template_budget,
    template_retry_policy,
)
from lambdas.domain.budget import BudgetSpec  # noqa: E402

# Public on-demand prices, us-east-1, x86 (aws.amazon.com/step-functions/pricing, aws.amazon.com/lambda/pricing;
# the published pages as read on PRICES_DATE). Free tiers ignored.
PRICES = {
    "step_functions_standard_per_state_transition": 0.025 / 1000,
    "lambda_per_gb_second_x86": 0.0000166667,
    "lambda_per_request": 0.20 / 1_000_000,
    "elb_describe_calls": 0.0,
}
PRICES_DATE = "2026-11 (pages as published since 2020 for these three prices)"
ASSUMED_INVOCATION_SECONDS = 0.3  # albgate.sim.albgate_strategy.LAMBDA_SECONDS
REPLAY_SCENARIOS = ("seed-app", "slow-registration")
WINDOWS = (0.0, 10.0, 60.0, 300.0)
BACKGROUNDS = (0.0, 2.0)
AT_N = (28, 50, 75, 100, 150, 200)  # the target is 50 concurrent rollouts; 28 was the earlier limit
AT_N_WINDOWS = (10.0,)


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
        errors = run.extra["handler_errors"]
        visited = Counter(run.extra["visited"])
        steps = sum(n for name, n in visited.items() if name.endswith("Start Step"))
        # billed: the handler's own time and what it waited inside (a watch, a back-off), in 1 ms units
        gbs_measured = sum(memory.get(fid, 256) / 1024 * math.ceil((sec + waited) * 1000) / 1000
                           for fid, sec, waited in timings)
        gbs_assumed = sum(memory.get(fid, 256) / 1024 * (ASSUMED_INVOCATION_SECONDS + waited)
                          for fid, _, waited in timings)
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
            "step_deadline_seconds": sim.rollout_request().policy.step_deadline_seconds,
            "albgate_describe_target_health": n("albgate", "DescribeTargetHealth"),
            "albgate_describe_target_groups": n("albgate", "DescribeTargetGroups"),
            "albgate_describe_target_group_attributes": n("albgate", "DescribeTargetGroupAttributes"),
            "controller_describe_target_health": n("controller", "DescribeTargetHealth"),
            "albgate_throttled": sum(1 for c in calls if c[1] == "albgate" and not c[4]),
            "controller_throttled": sum(1 for c in calls if c[1] == "controller" and not c[4]),
            "state_transitions": run.state_transitions, "invocations": n_inv,
            "invocations_by_function": dict(Counter(fid for fid, _, _ in timings).most_common()),
            # handler errors by class: ThrottledError ones went to the Retry for throttling (jittered in moto)
            "handler_errors": dict(Counter(f"{role}:{err}" for _t, role, err in errors).most_common()),
            "handler_seconds_total": sum(s for _, s, _ in timings),
            "handler_seconds_max": max((s for _, s, _ in timings), default=0.0),
            "handler_waited_seconds_total": sum(w for _, _, w in timings),
            "gb_seconds_measured": gbs_measured, "gb_seconds_assumed": gbs_assumed, "usd": usd,
            "failed_requests": sim.traffic.failed_requests,
            # (t, caller, API, tokens, allowed, calling function, start of its step): see albgate_bench.albgate_bench_run
            "describe_calls": [[round(c[0], 3), c[1], c[2], c[3], c[4], c[5],
                                None if c[6] is None else round(c[6], 3)] for c in calls],
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
            "albgate_describe_target_group_attributes": med("albgate_describe_target_group_attributes"),
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
            "handler_errors": dict(sum((Counter(r.get("handler_errors", {})) for r in rs), Counter())),
        }
    return out


def med_usd(rs: list[dict[str, Any]], key: str) -> float:
    return summary([r["usd"][key] for r in rs])["median"]


def schedules_of(runs: list[dict[str, Any]], scenarios: tuple[str, ...]) -> list[Schedule]:
    """The recorded Describe* calls of the succeeded runs of these scenarios, as replay schedules. Records from
    before the calling function was logged (5 fields a call) replay with the older, cruder rules."""
    out = []
    for r in runs:
        if r["scenario"] in scenarios and r["outcome"] == "succeeded" and r["rollout_seconds"]:
            calls = tuple(Call(x[0], x[1], x[2], x[3], *(x[5:7] if len(x) >= 7 else ())) for x in r["describe_calls"])
            out.append(Schedule(f"{r['scenario']}-{r['seed']}", calls, r["rollout_seconds"],
                                float(r.get("step_deadline_seconds", 900))))
    return out


def parse_budget(text: str, template: dict[str, Any] | None) -> BudgetSpec | None:
    """--budget: ``template`` (the synthesized stack's), ``none``, or ``RATE,BURST``."""
    if text == "template":
        assert template is not None
        return template_budget(template)
    if text == "none":
        return None
    try:
        rate, burst = text.split(",")
        return BudgetSpec(float(rate), int(burst))
    except ValueError as e:
        raise SystemExit(f"--budget {text!r}: template, none or RATE,BURST (e.g. 4,10): {e}") from None


def parse_retry(text: str, template: dict[str, Any] | None) -> RetryPolicy | None:
    """--preflight-retry: ``template`` (the synthesized state machine's Retry for ThrottledError at Preflight),
    ``legacy`` (the Retry before the throttling clause: 2 s doubling, 5 retries, no jitter), ``none`` (no
    retry) or ``INTERVAL,BACKOFF,ATTEMPTS[,MAX_DELAY[,FULL|NONE]]`` (a what-if)."""
    if text == "template":
        assert template is not None
        return template_retry_policy(template)
    if text == "legacy":
        return LEGACY_PREFLIGHT_RETRY
    if text == "none":
        return None
    parts = text.split(",")
    if not 3 <= len(parts) <= 5:
        raise SystemExit(f"--preflight-retry {text!r}: template, legacy, none or "
                         "INTERVAL,BACKOFF,ATTEMPTS[,MAX_DELAY[,JITTER]]")
    delay = float(parts[3]) if len(parts) > 3 and parts[3] else None
    jitter = parts[4].upper() if len(parts) > 4 else "NONE"
    return RetryPolicy(float(parts[0]), float(parts[1]), int(parts[2]), delay, jitter)


def render(per: dict[str, dict[str, Any]], conc: list[dict[str, Any]], at_n: list[dict[str, Any]],
           replay_info: dict[str, Any], with_runs: bool = True) -> str:
    """The tables: per rollout, handler errors and dollars (unless ``with_runs`` is false), then the replay's."""
    rows = []
    for s, e in per.items():
        rows.append([s, e["runs"], ", ".join(f"{k} {v}" for k, v in e["outcomes"].items()), fmt(e["steps"], 0),
                     f"{fmt(e['albgate_describe_target_health']['median'], 0)} ({fmt(e['albgate_describe_target_health']['max'], 0)})",
                     fmt(e["albgate_describe_target_health_per_step"], 1),
                     f"{fmt(e['albgate_describe_target_groups'], 0)} / "
                     f"{fmt(e['albgate_describe_target_group_attributes'], 0)}",
                     fmt(e["controller_describe_target_health"], 0),
                     f"{fmt(e['state_transitions']['median'], 0)} ({fmt(e['state_transitions']['max'], 0)})",
                     fmt(e["state_transitions_per_step"], 1),
                     f"{fmt(e['invocations']['median'], 0)} ({fmt(e['invocations']['max'], 0)})",
                     fmt(e["invocations_per_step"], 1)])
    t1 = markdown_table(["scenario", "runs", "outcomes", "steps", "albgate DescribeTargetHealth (max)",
                         "per step", "DescribeTargetGroups / Attributes", "controller DescribeTargetHealth",
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
    rows = [[a["replay_scenario"], fmt(a["window_seconds"], 0), fmt(a["background_calls_per_second"], 0), r["n"],
             f"{fmt(r['throttled_calls_median'], 0)} ({r['throttled_calls_max']})",
             fmt(r.get("budget_waits_median", 0), 0),
             f"{r['failed_rollouts_max']} ({r['failed_rollouts_total']})" + _why(r["failed_by"]),
             " / ".join(_pct(r[k]) for k in ("slowdown_median", "slowdown_p90", "slowdown_max")),
             f"{r['rollouts_over_slow_limit']} of {r['rollouts']}", r["preflight_retries_max"]]
            for a in at_n for r in a["rows"]]
    t4 = markdown_table(["replayed rollouts", "start window s", "background Describe*/s", "N",
                         "throttled calls per replay: median (max)", "waits for albgate's share per replay (median)",
                         "rollouts given up: most in one replay (all)",
                         "slow-down of the others vs alone: median / p90 / max", "rollouts > 10 % slower",
                         "most Preflight retries"], rows, "lrrrrrrrrr")
    rates = [f"- {s}: {i['schedules']} rollouts, median {fmt(i['rollout_seconds']['median'], 0)} s; Describe* tokens/s "
             f"per rollout: albgate {fmt(i['albgate_tokens_per_second']['median'], 3)}, controller "
             f"{fmt(i['controller_tokens_per_second']['median'], 3)}" for s, i in replay_info["by_scenario"].items()]
    errors = [f"- {s}: " + ", ".join(f"{k} {v}" for k, v in e["handler_errors"].items())
              for s, e in per.items() if e["handler_errors"]]
    policy = replay_info["preflight_retry"]
    runs_parts = [
        "Per rollout (median over seeds; max in brackets):", t1,
        "Handler errors (Retry or Catch saw them; ThrottledError goes to the jittered Retry), all seeds:",
        "\n".join(errors) or "- none",
        "Dollars per rollout (median; prices in the result file):", t2]
    return "\n\n".join([
        *(runs_parts if with_runs else []),
        f"Concurrent rollouts on one Describe* bucket (40 tokens, 10/s; replay of recorded rollouts, "
        f"{replay_info['trials']} trials per N; albgate's share: {_budget(replay_info)}; "
        f"Preflight's Retry for ThrottledError: "
        f"{RetryPolicy(**policy).describe() if policy else 'none'}, {replay_info['preflight_retry_from']}):", t3,
        f"At given N ({replay_info['trials']} trials each):", t4, "\n".join(rates)])


def _budget(replay_info: dict[str, Any]) -> str:
    b = replay_info.get("budget")
    if not b:
        return f"none ({replay_info.get('budget_from', '')})"
    return f"{fmt(b['rate_per_second'], 1)} calls/s, bursts of {b['burst']} ({replay_info.get('budget_from', '')})"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _why(failed_by: dict[str, int]) -> str:
    return (": " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in failed_by.items())) if failed_by else ""


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


def concurrency_task(task: tuple[str, list[Schedule], float, float, int, int, dict | None]) -> dict[str, Any]:
    """Worker: the concurrency limits of one replayed scenario, start window and background rate."""
    scenario, schedules, window, background, trials, n_max, policy, budget = task
    lim = concurrency_limits(schedules, window=window, background=background, trials=trials, n_max=n_max,
                             preflight_retry=RetryPolicy(**policy) if policy else None,
                             budget=BudgetSpec(**budget) if budget else None)
    return {"replay_scenario": scenario, **lim}


def at_n_task(task: tuple[str, list[Schedule], float, float, int, list[int], dict | None]) -> dict[str, Any]:
    """Worker: what N concurrent rollouts see at each given N, for one scenario, window and background rate."""
    scenario, schedules, window, background, trials, ns, policy, budget = task
    rows = replay_at(schedules, ns, window=window, background=background, trials=trials,
                     preflight_retry=RetryPolicy(**policy) if policy else None,
                     budget=BudgetSpec(**budget) if budget else None)
    return {"replay_scenario": scenario, "window_seconds": window, "background_calls_per_second": background,
            "rows": rows}


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
    ap.add_argument("--at-n", nargs="*", type=int, default=list(AT_N),
                    help="also report throttled calls, rollouts given up and slow-downs at exactly these N")
    ap.add_argument("--at-n-windows", nargs="*", type=float, default=list(AT_N_WINDOWS),
                    help="start windows (s) of the --at-n table")
    ap.add_argument("--preflight-retry", default="template",
                    help="Preflight's Retry for ThrottledError in the replay: template (the synthesized state "
                         "machine's, default), legacy (2 s doubling, 5 retries, no jitter), none, or "
                         "INTERVAL,BACKOFF,ATTEMPTS[,MAX_DELAY[,FULL|NONE]]")
    ap.add_argument("--budget", default="template",
                    help="albgate's share of the Describe* bucket in the replay: template (the rate and burst the "
                         "synthesized stack gives its functions, default), none (every rollout polls at its own "
                         "pace), or RATE,BURST (a what-if)")
    ap.add_argument("--runs-from", type=Path, default=None,
                    help="replay the runs of an earlier cost result file instead of simulating again")
    ap.add_argument("--out", type=Path, default=None)
    add_write_docs(ap, "cost")  # cost-replay[-what-if] with --runs-from, --budget or --preflight-retry
    args = ap.parse_args(argv)
    info = machine()
    t0 = time.perf_counter()
    if args.runs_from:
        earlier = json.loads(args.runs_from.read_text())
        runs = earlier["runs"]
        runs_from = {"file": str(args.runs_from), "command": earlier.get("command"),
                     "template_key": earlier.get("template_key")}
    else:
        files = scenario_files(args.scenarios)
        tasks = [(str(f), c) for f in files for c in chunks(list(range(1, args.seeds + 1)), 5)]
        runs = [r for rs in run_parallel(cost_task, tasks, args.workers, "cost") for r in rs]
        runs_from = None
    per = per_scenario(runs)
    policy = parse_retry(args.preflight_retry, pinned_template()[1] if args.preflight_retry == "template" else None)
    budget = parse_budget(args.budget, pinned_template()[1] if args.budget == "template" else None)
    replay_info: dict[str, Any] = {
        "budget": dataclasses.asdict(budget) if budget else None,
        "budget_from": "the synthesized template" if args.budget == "template" else f"--budget {args.budget}",
        "trials": args.trials, "by_scenario": {}, "preflight_retry": policy.as_dict() if policy else None,
        "preflight_retry_from": "the synthesized template" if args.preflight_retry == "template"
        else f"--preflight-retry {args.preflight_retry}"}
    limit_tasks, at_tasks = [], []
    for scenario in args.replay_scenarios:
        schedules = schedules_of(runs, (scenario,))
        if not schedules:
            continue
        replay_info["by_scenario"][scenario] = {
            "schedules": len(schedules), "rollout_seconds": summary([s.rollout_seconds for s in schedules]),
            "calls_with_source": all(c.source or c.caller != "albgate" for s in schedules for c in s.calls),
            **{f"{who}_tokens_per_second": summary([sum(c.tokens for c in s.calls if c.caller == who)
                                                    / s.rollout_seconds for s in schedules])
               for who in ("albgate", "controller")}}
        retry = replay_info["preflight_retry"]
        for bg in args.background:
            for w in args.windows:
                limit_tasks.append((scenario, schedules, w, bg, args.trials, args.max_n, retry, replay_info["budget"]))
            for w in args.at_n_windows:
                if args.at_n:
                    at_tasks.append((scenario, schedules, w, bg, args.trials, args.at_n, retry, replay_info["budget"]))
    conc = run_parallel(concurrency_task, limit_tasks, args.workers, "replay") if limit_tasks else []
    at_n = run_parallel(at_n_task, at_tasks, args.workers, "at N") if at_tasks else []
    text = render(per, conc, at_n, replay_info)
    print(text)
    wall = time.perf_counter() - t0
    name, title, with_runs = docs_name(args)  # a replay or a what-if never overwrites the cost.json it read
    path = write_result(name, {
        "benchmark": "cost", "command": command_line(), "machine": info, "wall_seconds": round(wall, 1),
        "template_key": pinned_template()[0], "runs_from": runs_from, "seeds": args.seeds, "prices_usd": PRICES,
        "prices_date": PRICES_DATE, "assumed_invocation_seconds": ASSUMED_INVOCATION_SECONDS,
        "memory_mb_by_function": memory_by_function(pinned_template()[1]),
        "per_scenario": per, "replay": replay_info, "concurrency": conc, "at_n": at_n, "table": text, "runs": runs,
    }, args.out)
    print(f"wrote {path}")
    if args.write_docs:
        body = render(per, conc, at_n, replay_info, with_runs=with_runs)
        trials = f"{args.trials} replay trials per N"
        if runs_from:
            sample = f"{len(runs)} recorded runs of `{runs_from['command']}`, {trials}"
        else:
            sample = f"seeds 1-{args.seeds} of {len(per)} scenarios: {len(runs)} runs; {trials}"
        header = docs_header(info, sample=f"{sample}; {wall:.0f} s on {min(args.workers, MAX_WORKERS)} process(es)",
                             template_key=pinned_template()[0])
        print(f"wrote {write_docs(args.write_docs, name, title, header, body)}")
    return 0


def docs_name(args: argparse.Namespace) -> tuple[str, str, bool]:
    """The result's name (out/bench/<name>.json, docs/results/<name>.md) and title, and whether its Markdown
    holds the per-rollout tables: ``cost`` for the default run (all tables); ``cost-replay`` for a replay of an
    earlier result's runs or a what-if (--budget, --preflight-retry, appended to the name): only the replay's
    tables, so the per-rollout ones keep one home."""
    options = (("budget", args.budget), ("preflight-retry", args.preflight_retry))
    what_ifs = [(option, value) for option, value in options if value != "template"]
    if not args.runs_from and not what_ifs:
        return "cost", "Cost per rollout, and concurrent rollouts", True
    name, title = "cost-replay", "Cost: concurrent rollouts, replayed"
    for option, value in what_ifs:
        name += f"-{option}-" + "".join(ch if ch.isalnum() or ch == "." else "-" for ch in value)
        title += f", --{option} {value}"
    return name, title, False


if __name__ == "__main__":
    sys.exit(main())
