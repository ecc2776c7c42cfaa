"""Every shipped scenario x every strategy at the scenario's own seed, as the Markdown table in docs/simulation.md.

Usage: .venv/bin/python bench/scenario_table.py > /tmp/table.md   (about 30 s: albgate runs its state machine)
"""

from __future__ import annotations

from pathlib import Path

import albgate.sim.albgate_strategy  # noqa: F401  (registers the albgate strategy)
from albgate.sim import load_scenario
from albgate.sim.runner import simulate

STRATEGIES = ["kubernetes-default", "readiness-gate", "hardened-readiness-gate", "oracle", "ideal-poller", "albgate"]
ROOT = Path(__file__).resolve().parents[1]


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main() -> None:
    print("| scenario | strategy | outcome | failed / requests | failed by cause | rollout s | lower bound s |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        sc = load_scenario(path)
        for strategy in STRATEGIES:
            r = simulate(sc, strategy)
            causes = ", ".join(f"{k} {v}" for k, v in sorted(r.failed_by_cause.items(), key=lambda kv: -kv[1])) or "-"
            print(f"| {sc.name} | {strategy} | {r.outcome} | {r.failed_requests} / {r.requests} | {causes} | "
                  f"{fmt(r.rollout_seconds)} | {fmt(r.lower_bound_seconds)} |")


if __name__ == "__main__":
    main()
