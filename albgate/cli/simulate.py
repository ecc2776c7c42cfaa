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
# Every strategy the simulation registers, named in --help without importing the simulation (a test keeps the two
# lists equal)
STRATEGIES = ("kubernetes-default", "readiness-gate", "hardened-readiness-gate", "argo-rollouts", "oracle",
              "ideal-poller", "albgate")
HELP = "run a rollout scenario on the simulated EKS cluster and ALB"
DESCRIPTION = ("Run one scenario (scenarios/README.md) with one strategy on the simulated cluster and load "
               "balancer, and report failed requests, duration and API calls.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO.yaml", help="scenario file")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, metavar="NAME",
                   help=f"{', '.join(STRATEGIES[:-1])} or {STRATEGIES[-1]} (default: %(default)s)")
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
    if scenario.fleet.deployments > 1:
        return _run_fleet(scenario, strategy, seed, args.json)
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
    if result.answered_badly:
        print(f"answered badly     {result.answered_badly} answered 5xx ({result.answered_badly_by_new_version} by the "
              f"new version)")
    if result.detected_after_seconds is not None:
        print(f"rolled back        {result.detected_after_seconds:.1f} s after the start")
    calls = ", ".join(f"{k} {v}" for k, v in result.describe_target_health_calls_by_caller.items()) or "none"
    print(f"DescribeTargetHealth calls  {calls}; throttled: "
          f"{', '.join(f'{k} {v}' for k, v in result.throttled_calls_by_caller.items()) or 'none'}")
    print(f"simulated          {result.simulated_seconds:.0f} s in {result.wall_seconds:.3f} s wall, {result.events} events")
    return 0


def _run_fleet(scenario, strategy: str, seed: int, as_json: bool) -> int:  # noqa: ANN001 - a Scenario
    """A fleet scenario: every copy's rollout at once in one world; one line per rollout, then the world's totals."""
    from albgate.sim.fleet import FLEET_STRATEGIES, print_progress, run_fleet

    if strategy not in FLEET_STRATEGIES:
        raise UsageError(f"--strategy {strategy}: a fleet scenario ({scenario.fleet.deployments} deployments) runs "
                         f"with {', '.join(FLEET_STRATEGIES)}")
    n = scenario.fleet.deployments
    if not as_json:
        print(f"simulating {scenario.name}: {n} rollouts at once with {strategy} (seed {seed}) ...",
              file=sys.stderr, flush=True)
    result = run_fleet(scenario, strategy, seed, progress=None if as_json else print_progress)
    if as_json:
        print(json.dumps(result.to_json(), sort_keys=True))
        return 0
    print(f"{scenario.name}: {scenario.description}".rstrip(": "))
    print()
    print(f"{'deployment':<24} {'start s':>8} {'outcome':<12} {'rollout s':>9} {'failed requests':>16}")
    for r in result.rollouts:
        took = "-" if r.seconds is None else f"{r.seconds:.1f}"
        print(f"{r.deployment:<24} {r.started_at:>8.1f} {r.outcome:<12} {took:>9} "
              f"{f'{r.failed_requests} of {r.requests}':>16}")
    print()
    times = result.to_json()["rollout_seconds"]
    causes = ", ".join(f"{k} {v}" for k, v in result.failed_by_cause.items()) or "none"
    print(f"rollouts           {n - result.failed_rollouts} of {n} succeeded")
    print(f"requests           {result.requests} ({result.failed_requests} failed: {causes})")
    if times:
        print(f"rollout time       median {times['median']:.1f} s, p99 {times['p99']:.1f} s, worst {times['worst']:.1f} s;"
              f" makespan {'n/a' if result.makespan_seconds is None else f'{result.makespan_seconds:.1f} s'}")
    calls = ", ".join(f"{k} {v} ({v / n:.1f} per rollout)" for k, v in result.describe_calls_by_caller.items())
    print(f"DescribeTargetHealth calls  {calls or 'none'}; throttled: "
          f"{', '.join(f'{k} {v}' for k, v in result.throttled_calls_by_caller.items()) or 'none'}")
    print(f"simulated          {result.simulated_seconds:.0f} s in {result.wall_seconds:.3f} s wall, {result.events} events")
    return 0
