"""The ``albgate`` command: one sub-command per job, each registered with ``register_command``.

Job: parse the command line, run the chosen sub-command, turn expected failures (bad scenario, unknown
strategy) into one clear line on stderr and a non-zero exit code. Sub-commands today: ``simulate`` and
``demo`` (albgate/demo.py); more are added the same way (a ``configure(subparsers)`` that adds its parser
and sets ``handler``).
Invariant: ``main`` returns 0 on success, 1 when a run went wrong, 2 on bad input; it never prints a
traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

Configure = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], argparse.ArgumentParser]
_COMMANDS: dict[str, Configure] = {}

# Strategies that live in modules imported only when asked for (so `albgate simulate` stays light).
LAZY_STRATEGIES = {"albgate": "albgate.rollout_strategy"}
DEFAULT_STRATEGY = "albgate"


class UsageError(Exception):
    """Bad input on the command line or in a file it names: exit code 2, one line on stderr."""


def register_command(name: str, configure: Configure) -> None:
    """Add a sub-command: ``configure(subparsers)`` adds the parser and ``set_defaults(handler=fn)``;
    ``fn(args) -> int`` runs it."""
    _COMMANDS[name] = configure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="albgate", description="Zero-downtime rollouts for Kubernetes Deployments on EKS behind an ALB"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in sorted(_COMMANDS):
        _COMMANDS[name](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"albgate {args.command}: error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------------------
def resolve_strategy(name: str) -> str:
    """Make sure the strategy is registered, importing its module when it is a lazy one."""
    from albgate.sim.strategies import strategy_names

    if name in strategy_names():
        return name
    module = LAZY_STRATEGIES.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise UsageError(
                f"strategy {name!r} needs the module {module}, which does not exist yet (it comes with the "
                f"gated-rollout work); available now: {', '.join(strategy_names())}"
            ) from None
        if name in strategy_names():
            return name
        raise UsageError(f"{module} was imported but did not register the strategy {name!r}")
    known = sorted(set(strategy_names()) | set(LAZY_STRATEGIES))
    raise UsageError(f"unknown strategy {name!r}; choose one of: {', '.join(known)}")


def _simulate(args: argparse.Namespace) -> int:
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


def _configure_simulate(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = sub.add_parser(
        "simulate",
        help="run a rollout scenario on the simulated EKS cluster and ALB",
        description="Run one scenario (scenarios/README.md) with one strategy on the simulated cluster and "
        "load balancer, and report failed requests, duration and API calls.",
    )
    p.add_argument("scenario", metavar="SCENARIO.yaml", help="scenario file")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, metavar="NAME",
                   help="kubernetes-default, readiness-gate, hardened-readiness-gate, oracle, ideal-poller "
                   "or albgate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="override the scenario's seed")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the timeline")
    p.add_argument("--full-timeline", action="store_true", help="do not shorten the timeline")
    p.set_defaults(handler=_simulate)
    return p


register_command("simulate", _configure_simulate)
import albgate.demo  # noqa: E402,F401  (registers `albgate demo`; it imports this module's hooks)
import albgate.commands  # noqa: E402,F401  (registers `albgate start`, `watch` and `preflight`)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
