"""`albgate simulate`: one scenario, one strategy, on the simulated EKS cluster and ALB.

Job: load the scenario (scenarios/README.md), make sure the strategy is registered, run it with the scenario's
seed (or ``--seed``) and print the timeline and a summary: outcome, failed requests by cause, rollout time
against the oracle's lower bound, DescribeTargetHealth calls; ``--json`` prints the result as one object.
Invariant: a scenario that cannot be read or validated, or an unknown strategy, is a ``UsageError`` (exit
code 2) before anything runs; the numbers are ``albgate.sim.simulate``'s, unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys

from albgate.cli import UsageError
from albgate.cli.common import resolve_strategy

DEFAULT_STRATEGY = "albgate"
HELP = "run a rollout scenario on the simulated EKS cluster and ALB"
DESCRIPTION = ("Run one scenario (scenarios/README.md) with one strategy on the simulated cluster and load "
               "balancer, and report failed requests, duration and API calls.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO.yaml", help="scenario file")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, metavar="NAME",
                   help="kubernetes-default, readiness-gate, hardened-readiness-gate, oracle, ideal-poller "
                   "or albgate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="override the scenario's seed")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the timeline")
    p.add_argument("--full-timeline", action="store_true", help="do not shorten the timeline")


def run(args: argparse.Namespace) -> int:
    from albgate.sim import ScenarioError, load_scenario, render_timeline, simulate

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    strategy = resolve_strategy(args.strategy)
    seed = scenario.seed if args.seed is None else args.seed
    if not args.json:
        print(f"simulating {scenario.name} with {strategy} (seed {seed}) ...", file=sys.stderr, flush=True)
    result = simulate(scenario, strategy, seed)
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True))
        return 0
    print(f"{scenario.name}: {scenario.description}".rstrip(": "))
    print()
    lines = render_timeline(result, max_lines=10**9 if args.full_timeline else 200)
    print("\n".join(lines))
    print()
    lb = result.lower_bound_seconds
    rs = result.rollout_seconds
    causes = ", ".join(f"{k} {v}" for k, v in result.failed_by_cause.items()) or "none"
    pct = 100 * result.failed_requests / result.requests if result.requests else 0.0
    print(f"outcome            {result.outcome} ({result.detail})" if result.detail else f"outcome  {result.outcome}")
    print(f"final image        {result.final_image}")
    print(f"requests           {result.requests} ({result.failed_requests} failed, {pct:.2f} %: {causes})")
    print(f"rollout            {'did not end' if rs is None else f'{rs:.1f} s'}"
          f" (lower bound {'n/a' if lb is None else f'{lb:.1f} s'}, oracle on the same scenario and seed)")
    calls = ", ".join(f"{k} {v}" for k, v in result.describe_target_health_calls_by_caller.items()) or "none"
    print(f"DescribeTargetHealth calls  {calls}; throttled: "
          f"{', '.join(f'{k} {v}' for k, v in result.throttled_calls_by_caller.items()) or 'none'}")
    print(f"simulated          {result.simulated_seconds:.0f} s in {result.wall_seconds:.3f} s wall, {result.events} events")
    return 0
