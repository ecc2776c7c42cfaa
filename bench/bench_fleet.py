"""Benchmark (not a test): many rollouts at once in one simulated account, albgate beside the controller's gate.

Job: for each fleet size N (``--sizes``), build one world with N copies of the scenario's app (one cluster, one Load
Balancer Controller reconciling every binding, one Describe* bucket shared by every caller), start the N rollouts
at seeded times within ``--within`` seconds, and run them concurrently with ``albgate`` (N interleaved executions
of the synthesized state machine) and with ``readiness-gate`` (N ``kubectl set image``, the controller's gate
alone). Per N and strategy: failed requests, failed rollouts, Describe* calls per rollout by caller, the calls the
bucket throttled by caller, rollout time (median / p99 / worst), the makespan (first start to last end), and
for a sample of the rollouts (``--alone``, spread over the fleet) the slowdown: the rollout's time in the
fleet over its time alone in the same world (same names, start and random draws, no other copy). In the
controller's-gate-alone world it also measures how close the controllers' own calls bring the account's bucket to
its limit in its busiest window, and how far one or two more calls per rollout at its start would take it past
(``busiest_window``): the room any tool's first look at a rollout has. Simulated seconds throughout, so machine
load does not enter them; the wall time of each world is reported beside.

Run: .venv/bin/python bench/bench_fleet.py [--scenario scenarios/seed-app-hardened.yaml] [--sizes 1 10 50]
     [--within 10] [--alone 10] [--seed 1 | --seeds 1 2 3 4 5] [--bucket 200 50] [--share 22.5 150]
     [--name fleet] [--out DIR] [--write-docs]
``--bucket`` sets the account's Describe* bucket (size, refill per second) instead of the scenario's; ``--share``
adds a row of albgate with that share of it (calls per second, burst) beside its default share; ``--name`` names
the results files (default ``fleet``).
Method: docs/benchmarks.md, "Concurrent rollouts in one account"; results: docs/results/fleet.md, and seed by
seed (``--seeds``, albgate with its default share only) docs/results/fleet-seeds.md; in a bucket of 200 refilled
at 50/s, docs/results/fleet-bucket-200.md.
"""

from __future__ import annotations

import argparse
import sys
import time
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
from lambdas.domain.budget import BudgetSpec, admit  # noqa: E402
from lambdas.domain.plan import step_targets  # noqa: E402
from lambdas.domain.rollout.preflight import CALLS_PER_GROUP  # noqa: E402

STRATEGIES = ("albgate", "readiness-gate")
# albgate is run twice at N > 1: with the stack's default share of the bucket (adaptive: it steps back when its calls
# are throttled) and with the same share fixed, side by side (lambdas/domain/budget.py).
FIXED_SHARE = "albgate, fixed share"
# The slowdown a rollout in a fleet of fifty should stay within, against the same rollout alone (docs/benchmarks.md,
# "Concurrent rollouts in one account"): the rollouts over it are counted.
SLOWDOWN_TARGET = 1.10


def alone_sample(n: int, k: int) -> list[int]:
    """``k`` copies spread evenly over a fleet of ``n`` (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})


def forced_controller_calls(steps: int) -> int:
    """The fewest DescribeTargetHealth calls the Load Balancer Controller's rules let a gated rollout of ``steps``
    steps cost, however its reconciles fall: 1 per step and 1 more.

    The controller reads a target group through its targets cache (albgate/sim/lbc.py, as its source does: docs/
    facts.md, "Load Balancer Controller: requeue and back-off by version"): the first reconcile of the rollout
    fills it with one call (the rollout starts with no entry younger than the cache's 5 minutes), and a later one
    calls only while some cached target is not `healthy`. A step's new pods are written healthy only by a
    reconcile after their targets passed their checks, and the targets it registered have no health in the cache
    until then, so that reconcile makes a call: one per step. Registering the next step's pods and deregistering
    the old ones can share one reconcile that finds every cached target healthy and calls nothing. Requeues while
    a gate waits, reconciles on other events and refills every 5 minutes come on top, and fewer of them come when
    the controller is throttled and backs off: so this, not the calls of a rollout alone, is what any run needs."""
    return steps + 1


def forced_mutating_calls(steps: int) -> int:
    """The fewest RegisterTargets/DeregisterTargets calls a gated rollout of ``steps`` steps can cost without a drop,
    whoever makes them: 1 per step and 1 more. A step's new pods are created only once the previous step's gate
    released its pods, and their targets must be registered before that gate can pass, so each step registers in a
    call of its own; the released old targets must be deregistered by someone, in one call at the least (all of
    them together, which is fewer than any safe schedule of the drains needs: a bound from below)."""
    return steps + 1


def physical_bound(starts: list[float], alone: dict[int, float], calls_per_rollout: float, capacity: float,
                   refill: float, mutating: tuple[float, float, float] | None = None) -> float:
    """The shortest makespan the buckets and the rollouts themselves allow, from the first start: the latest end
    of a rollout timed alone (``alone``: copy -> its time alone in the same world, its own start and random draws;
    every copy, or a sample of them, which still bounds from below), the time the Describe* bucket needs to serve
    the minimum demand of every rollout (``calls_per_rollout``: ``forced_controller_calls``) after its first
    ``capacity`` calls, or, with ``mutating`` (calls per rollout: ``forced_mutating_calls``, the bucket's size, its
    refill), the same for the RegisterTargets/DeregisterTargets bucket: whichever is longest."""
    first = min(starts)
    by_rollouts = max((starts[k] - first + seconds for k, seconds in alone.items()), default=0.0)
    by_bucket = max(0.0, len(starts) * calls_per_rollout - capacity) / refill
    by_mutating = 0.0
    if mutating is not None:
        per_rollout, size, per_second = mutating
        by_mutating = max(0.0, len(starts) * per_rollout - size) / per_second
    return max(by_rollouts, by_bucket, by_mutating)


def start_turns(starts: list[float], tokens: int, spec: BudgetSpec) -> list[float]:
    """The seconds each rollout's Preflight waits for its turn in albgate's share if it asks for ``tokens``
    Describe* calls at its start, in the order the rollouts start (``starts`` sorted): the share's own schedule
    (``lambdas.domain.budget.admit``, turns booked as Preflight books them), at its full rate, with nothing else
    spending from it. A computation over the fleet's start times, not a measurement: the fleet's looks and the
    adaptive cut are left out, and a Wait state rounds each wait up to whole seconds."""
    tat: float | None = None
    waits = []
    for t in sorted(starts):
        a = admit(tat, t, tokens, spec, reserve=True)
        tat = a.tat
        waits.append(a.wait)
    return waits


def busiest_window(asks: list[float], starts: list[float], per_start: int, capacity: float, refill: float) -> float:
    """How far the bucket is over-asked in its busiest window: the most, over every window of time, of the tokens
    asked in it (one per entry of ``asks``, ``per_start`` at each of ``starts``) less what the bucket can give in it
    (``capacity`` + ``refill`` x its length). Negative: tokens to spare even there. Over a window [t_i, t_j] that
    is P(j) - refill t_j - (P(i) - refill t_i) - capacity with P the running sum, so one pass keeps the least
    P(i) - refill t_i seen."""
    events = sorted([(t, 1) for t in asks] + [(t, per_start) for t in starts if per_start])
    worst = -capacity
    before = 0.0  # tokens asked before the current event
    least = float("inf")  # the least of P(i) - refill t_i over the events so far
    for t, n in events:
        least = min(least, before - refill * t)
        before += n
        worst = max(worst, before - refill * t - least - capacity)
    return worst


def run(scenario_path: Path, sizes: list[int], within: float, alone: int, seed: int,
        fixed_share: bool = True, bucket: tuple[int, float] | None = None,
        share: tuple[float, int] | None = None) -> dict[str, Any]:
    from albgate.sim import load_scenario
    from albgate.sim.scenario import MAX_REQUESTS
    from albgate.sim.albgate_strategy import register_strategy  # importing it registers the albgate strategy
    from albgate.sim.fleet import alone_seconds, print_progress, run_fleet

    assert register_strategy
    base = load_scenario(scenario_path)
    if bucket is not None:
        base = base.with_changes(alb={"describe_bucket_capacity": bucket[0],
                                      "describe_bucket_refill_per_second": bucket[1]})
    rows: list[dict[str, Any]] = []
    # The demand every gated rollout puts on the bucket whoever runs it: the controller's forced calls for a rollout
    # of the policy's steps (it registers, writes healthy and deregisters the targets every gate waits for).
    # albgate's own calls are left out of the bound: no other tool needs them. The controller's calls for one
    # rollout alone are reported beside it; they are no minimum (a throttled controller coalesces reconciles).
    steps = len(step_targets(base.app.replicas, base.rollout.policy))
    controller_calls = float(forced_controller_calls(steps))
    one = run_fleet(base.with_changes(fleet={"deployments": 1, "start_within_seconds": 0}), "readiness-gate", seed)
    alone_calls = float(one.describe_calls_by_caller.get("controller", 0))
    for n in sizes:
        # A world simulates at most MAX_REQUESTS requests (albgate/sim/scenario.py): a large fleet's clients send
        # fewer requests per second each (recorded in the row), which changes no rollout's pace.
        rate = min(base.traffic.rate_per_second,
                   int(MAX_REQUESTS / (n * (base.rollout.start_at_seconds + base.horizon_seconds))))
        scenario = base.with_changes(fleet={"deployments": n, "start_within_seconds": within if n > 1 else 0},
                                     traffic={"rate_per_second": rate})
        runs = [(s, s, None) for s in STRATEGIES]
        if n > 1 and fixed_share:
            runs.insert(1, (FIXED_SHARE, "albgate", BudgetSpec(adaptive=False)))
        if n > 1 and share is not None:
            runs.insert(1, (f"albgate, share {share[0]:g}/s, burst {share[1]}", "albgate",
                            BudgetSpec(rate_per_second=share[0], burst=share[1])))
        for label, strategy, budget in runs:
            print(f"{scenario.name}: {n} rollout(s) with {label} ...", file=sys.stderr, flush=True)
            result = run_fleet(scenario, strategy, seed, progress=print_progress if n >= 10 else None, budget=budget)
            sample = alone_sample(n, alone) if n > 1 else [0]
            t0 = time.perf_counter()
            timed: dict[int, float] = {}
            for k in sample:
                seconds = (result.rollouts[0].seconds if n == 1
                           else alone_seconds(scenario, strategy, seed, k, budget=budget))
                if seconds:
                    result.alone_seconds[result.rollouts[k].deployment] = seconds
                    timed[k] = seconds
            row = result.to_json()
            row["label"] = label
            row["rate_per_second"] = rate
            row["physical_bound_seconds"] = round(physical_bound(
                [r.started_at for r in result.rollouts], timed, controller_calls, base.alb.describe_bucket_capacity,
                base.alb.describe_bucket_refill_per_second,
                (forced_mutating_calls(steps), base.alb.mutating_bucket_capacity,
                 base.alb.mutating_bucket_refill_per_second)), 3)
            row["alone_wall_seconds"] = round(time.perf_counter() - t0, 3)
            row["over_target"] = sum(x > SLOWDOWN_TARGET for x in result.slowdowns())
            if strategy == "readiness-gate" and n > 1:
                starts = [r.started_at for r in result.rollouts]
                row["busiest_window"] = {str(k): round(busiest_window(
                    result.controller_asks, starts, k, base.alb.describe_bucket_capacity,
                    base.alb.describe_bucket_refill_per_second), 1) for k in (0, 1, CALLS_PER_GROUP)}
            if strategy == "albgate" and n > 1:
                starts = [r.started_at for r in result.rollouts]
                row["start_turns"] = {str(tokens): start_turns(starts, tokens, budget or BudgetSpec())
                                      for tokens in (CALLS_PER_GROUP, 1)}
            row.pop("rollouts")
            rows.append(row)
    return {"scenario": str(scenario_path.relative_to(ROOT) if scenario_path.is_absolute() else scenario_path),
            "sizes": sizes, "within_seconds": within, "alone_sample": alone, "seed": seed, "steps": steps,
            "bucket": [base.alb.describe_bucket_capacity, base.alb.describe_bucket_refill_per_second],
            "mutating_bucket": [base.alb.mutating_bucket_capacity, base.alb.mutating_bucket_refill_per_second],
            "bound_calls_per_rollout": controller_calls, "controller_calls_alone": alone_calls, "rows": rows}


def busiest_text(over: dict[str, float] | None) -> str:
    """A row's busiest window with 0, 1 and 2 calls per rollout, signed tokens; "-" where it was not measured."""
    if not over:
        return "-"
    return " / ".join(f"{over[k]:+.0f}" for k in ("0", "1", str(CALLS_PER_GROUP)))


def tables(payload: dict[str, Any]) -> str:
    def spread(d: dict[str, Any] | None, digits: int = 1) -> str:
        if not d:
            return "-"
        return f"{fmt(d['median'], digits)} / {fmt(d['p99'], digits)} / {fmt(d['worst'], digits)}"

    def bound(row: dict[str, Any]) -> str:
        b, m = row.get("physical_bound_seconds"), row.get("makespan_seconds")
        if not b:
            return "-"
        return f"{fmt(b, 1)} ({fmt(m / b, 2)}x)" if m else fmt(b, 1)

    def mutating(row: dict[str, Any]) -> str:
        made, refused = row.get("mutating_calls_by_caller", {}), row.get("mutating_throttled_by_caller", {})
        n = row["deployments"]
        mine = "-" if row["strategy"] != "albgate" else f"{made.get('albgate', 0) / n:.1f}"
        return (f"{mine} / {made.get('controller', 0) / n:.1f} "
                f"({refused.get(row['strategy'], 0)} / {refused.get('controller', 0)})")

    def turns(row: dict[str, Any]) -> str:
        computed = row.get("start_turns")
        if not computed:
            return "-"

        def one(waits: list[float]) -> str:
            booked = [w for w in waits if w > 0]
            return f"{len(booked)}, last {fmt(max(booked), 1)} s" if booked else "none"

        return " / ".join(one(computed[k]) for k in (str(CALLS_PER_GROUP), "1"))

    def calls(row: dict[str, Any], caller: str) -> str:
        n = max(1, row["deployments"])
        return fmt(row["describe_calls_by_caller"].get(caller, 0) / n, 1)

    body = [
        f"Scenario `{payload['scenario']}`, seed {payload['seed']}, the account's Describe* bucket "
        f"{payload['bucket'][0]:g} tokens refilled at {payload['bucket'][1]:g}/s; with N > 1 the rollouts start at "
        "seeded times "
        f"within {payload['within_seconds']:g} s; slowdown = time in the fleet / the same rollout alone, for "
        f"{payload['alone_sample']} rollouts spread over the fleet. Physical bound: the longer of (the latest end of "
        "those rollouts timed alone, each from its own start) and (N x the fewest Describe* calls the controller's "
        f"rules let a rollout of {payload['steps']} steps cost, {payload['steps']} + 1 = "
        f"{payload['bound_calls_per_rollout']:g}, minus the bucket's size, at its refill rate) and (the same for the "
        f"RegisterTargets/DeregisterTargets bucket, {payload['mutating_bucket'][0]:g} tokens refilled at "
        f"{payload['mutating_bucket'][1]:g}/s, with the fewest such calls a rollout can make without a drop, "
        f"{payload['steps']} + 1), from the first "
        "start (docs/benchmarks.md; the controller's calls for one rollout alone under its own gate, "
        f"{payload['controller_calls_alone']:g} here, are no minimum: a throttled controller coalesces reconciles). "
        f"Preflight turns: how many Preflights albgate's share books for later, and the longest wait, computed from "
        f"the share's schedule over the rollouts' start times, each Preflight asking for {CALLS_PER_GROUP} "
        "Describe* calls (each describing its own target group) or for 1 (each that waits reading its group's "
        "settings from a describer, lambdas/domain/descriptions.py; the describers' own second calls left out), "
        "at its start, the share at its full rate. Busiest "
        "window (the controller's gate alone): the most the account's bucket is over-asked in any window of the run "
        "(the controllers' calls, plus 0, 1 or 2 calls per rollout at its start, less the bucket's size and its "
        "refill over the window; negative: tokens to spare).",
        "",
        markdown_table(
            ["N", "strategy", "failed requests", "failed rollouts", "rollout s: median / p99 / worst",
             "slowdown: median / p99 / worst", "makespan s", "physical bound s (makespan / bound)",
             "Describe* per rollout: strategy / controller",
             "throttled: strategy / controller",
             "Register/DeregisterTargets per rollout: strategy / controller (throttled)", f"Preflight turns: {CALLS_PER_GROUP} / 1 call(s) each",
             f"busiest window, tokens: + 0 / 1 / {CALLS_PER_GROUP} per rollout", "wall s"],
            [[r["deployments"], r.get("label", r["strategy"]),
              f"{r['failed_requests']} of {r['requests']}" + (f" ({r['rate_per_second']:g}/s each)"
                                                              if r.get("rate_per_second") else ""),
              r["failed_rollouts"],
              spread(r["rollout_seconds"]), spread(r["slowdown"], 2), fmt(r["makespan_seconds"], 1),
              bound(r),
              f"{calls(r, r['strategy']) if r['strategy'] == 'albgate' else '-'} / {calls(r, 'controller')}",
              pair(r["throttled_calls_by_caller"], r["strategy"]),
              mutating(r),
              turns(r),
              busiest_text(r.get("busiest_window")),
              fmt(r["wall_seconds"], 1)]
             for r in payload["rows"]],
            align="rl" + "r" * 12,
        ),
    ]
    return "\n".join(body)


def seed_table(payload: dict[str, Any]) -> str:
    """One line per seed and fleet size: albgate's slowdowns and the rollouts over the target, beside how full the
    controller's-gate-alone world left the account's bucket and how often each world throttled the controllers."""
    lines = []
    for world in payload["worlds"]:
        rows = {(r["deployments"], r["strategy"]): r for r in world["rows"]}
        for n in world["sizes"]:
            mine, theirs = rows.get((n, "albgate")), rows.get((n, "readiness-gate"))
            if n < 2 or mine is None or theirs is None:
                continue
            slow = mine["slowdown"] or {}
            lines.append([
                n, world["seed"], f"{mine['failed_requests']} of {mine['requests']}", mine["failed_rollouts"],
                " / ".join(fmt(slow.get(k), 2) for k in ("median", "p99", "worst")),
                f"{mine['over_target']} of {len(mine['alone_seconds'])}",
                f"{mine['throttled_calls_by_caller'].get('controller', 0)} / "
                f"{theirs['throttled_calls_by_caller'].get('controller', 0)}",
                busiest_text(theirs.get("busiest_window")),
            ])
    return "\n".join([
        f"Scenario `{payload['scenario']}`; each seed is its own world: the rollouts start at that seed's times within "
        f"{payload['within_seconds']:g} s, and {payload['alone_sample']} of them are timed alone (every one up to "
        f"N = {payload['alone_sample']}). Over {SLOWDOWN_TARGET:.2f}x: the rollouts timed alone whose time in the "
        "fleet is more than that times their time alone. Controllers throttled: their throttled Describe* calls "
        "in albgate's world and in the controller's-gate-alone world. Busiest window: as in fleet.md, in the "
        "controller's-gate-alone world (tokens over the bucket; negative: to spare), with 0, 1 or 2 calls per "
        "rollout at its start.",
        "",
        markdown_table(
            ["N", "seed", "albgate: failed requests", "failed rollouts", "slowdown: median / p99 / worst",
             f"over {SLOWDOWN_TARGET:.2f}x", "controllers throttled: albgate / own gate",
             f"busiest window, tokens: + 0 / 1 / {CALLS_PER_GROUP} per rollout"],
            lines, align="r" * 8),
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "seed-app-hardened.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--within", type=float, default=10.0, help="start window, seconds (default %(default)s)")
    ap.add_argument("--alone", type=int, default=10, help="rollouts per fleet timed alone (default %(default)s)")
    seeds = ap.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=1)
    seeds.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="several worlds, one per seed: albgate (its default share) and the controller's gate "
                            "alone at each size, summed up seed by seed in NAME-seeds.json/.md")
    ap.add_argument("--bucket", type=float, nargs=2, default=None, metavar=("SIZE", "REFILL"),
                    help="the account's Describe* bucket: tokens and refill per second (default: the scenario's)")
    ap.add_argument("--share", type=float, nargs=2, default=None, metavar=("RATE", "BURST"),
                    help="also run albgate with this share of the bucket: calls per second and burst")
    ap.add_argument("--name", default="fleet", help="name of the results files (default %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="directory for NAME.json (default out/bench)")
    add_write_docs(ap, "NAME")
    args = ap.parse_args()
    if any(n < 1 for n in args.sizes):
        ap.error("--sizes: every size must be 1 or more")
    if args.bucket is not None and not (args.bucket[0] >= 1 and args.bucket[0].is_integer() and args.bucket[1] > 0):
        ap.error("--bucket: the size must be a whole number of tokens, 1 or more, and the refill above 0")
    if args.share is not None and not (args.share[0] > 0 and args.share[1] >= 1 and args.share[1].is_integer()):
        ap.error("--share: the rate must be above 0 and the burst a whole number of calls, 1 or more")
    if args.share is not None and args.seeds:
        ap.error("--share: with --seeds each world runs albgate with its default share only; run one seed with --seed")
    bucket = None if args.bucket is None else (int(args.bucket[0]), args.bucket[1])
    share = None if args.share is None else (args.share[0], int(args.share[1]))
    info = machine()
    key, _ = pinned_template()
    sizes = ", ".join(map(str, args.sizes))
    if args.seeds:
        worlds = [run(args.scenario.resolve(), args.sizes, args.within, args.alone, s, fixed_share=False,
                      bucket=bucket) for s in args.seeds]
        payload = {"scenario": worlds[0]["scenario"], "within_seconds": args.within, "alone_sample": args.alone,
                   "worlds": worlds, "machine": info}
        seeds_name = f"{args.name}-seeds"
        write_result(seeds_name, payload, args.out)
        text = seed_table(payload)
        print(text)
        if args.write_docs:
            header = docs_header(info, sample=f"N = {sizes}, seeds {', '.join(map(str, args.seeds))}",
                                 template_key=key)
            write_docs(args.write_docs, seeds_name, "Concurrent rollouts in one account, seed by seed", header,
                       text)
        return 0
    payload = run(args.scenario.resolve(), args.sizes, args.within, args.alone, args.seed, bucket=bucket,
                  share=share)
    payload["machine"] = info
    write_result(args.name, payload, args.out)
    text = tables(payload)
    print(text)
    if args.write_docs:
        header = docs_header(info, sample=f"N = {sizes}, seed {args.seed}", template_key=key)
        write_docs(args.write_docs, args.name, "Concurrent rollouts in one account", header, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
