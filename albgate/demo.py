"""The demo behind `albgate demo`: the example app rolled three ways on the simulated cluster, compared.

Job: run one scenario (the example app by default) through ``kubernetes-default`` (the example app's problem),
``readiness-gate`` (the controller's documented fix alone) and ``albgate`` (albgate's synthesized state
machine) with the same seed, so every strategy sees the same clients and the same pod start-up draws; show
progress per rollout on stderr; lay the results out as a side-by-side table; write a timeline per strategy,
the three stacked on one time axis, and the state machine graph (docs/demo.md says how to read them). The
command's flags, input checks and printed report are albgate/cli/demo.py.

Invariant: the numbers come from ``albgate.sim.runner.simulate`` unchanged: a recorder only watches the world
after every event (an observer, zero virtual time, no random draws), so a demo run measures exactly what
``albgate simulate SCENARIO --strategy NAME`` measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from albgate.cli.common import resolve_strategy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "seed-app.yaml"
DEFAULT_OUT = Path("out") / "demo"
STRATEGIES = ("kubernetes-default", "readiness-gate", "albgate")
COMPARISON_PNG = "demo-timelines.png"
STATE_MACHINE_PNG = "state-machine.png"


# ---------------------------------------------------------------------------------------------------------
# Recording a run
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Recording:
    """What the recorder saw in one strategy's world."""

    samples: list[Any] = field(default_factory=list)  # albgate.pictures.Sample
    new_ready: list[float] = field(default_factory=list)
    rollout_start: float = 0.0  # virtual seconds since t=0
    target_groups: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)  # states the albgate execution entered


class Recorder:
    """An observer: after every event, note target states and serving pods when they changed."""

    def __init__(self, sim: Any, rec: Recording, tick: Callable[[float, str], None]) -> None:
        from albgate.pictures import Sample

        self._sample = Sample
        self.sim, self.rec, self.tick = sim, rec, tick
        self.old = sim.scenario.app.image
        self.new = sim.scenario.rollout.image
        self.phase = "rolling out"
        self._ready: set[str] = set()
        self._last: tuple[int, ...] | None = None
        rec.rollout_start = sim.rollout_start - sim.clock.start
        rec.target_groups = [tg.name for tg in sim.alb.tgs.values()]

    def __call__(self) -> None:
        sim = self.sim
        t = sim.clock.t - sim.rollout_start
        states = {"healthy": 0, "initial": 0, "unhealthy": 0, "draining": 0}
        for tg in sim.alb.tgs.values():
            for target in tg.targets.values():
                if target.state in states:
                    states[target.state] += 1
        old = new = 0
        for pod in sim.cluster.pods.values():
            if pod.serving:
                if pod.version == self.new:
                    new += 1
                elif pod.version == self.old:
                    old += 1
            if pod.version == self.new and pod.ready and pod.name not in self._ready:
                self._ready.add(pod.name)
                self.rec.new_ready.append(t)
        row = (states["healthy"], states["initial"], states["unhealthy"], states["draining"], old, new)
        if row != self._last:
            self._last = row
            self.rec.samples.append(self._sample(t, *row))
        self.tick(t, self.phase)


@contextmanager
def recorded(name: str, tick: Callable[[float, str], None]) -> Iterator[Recording]:
    """While open, strategy ``name`` runs as registered, with a Recorder watching its world from the rollout
    start to the end of settling. The registry entry is restored on exit."""
    from albgate.sim.strategies import get_strategy, register_strategy

    original = get_strategy(name)
    rec = Recording()

    def run(sim: Any) -> Any:
        recorder = Recorder(sim, rec, tick)
        recorder()  # the steady state the rollout starts from
        sim.add_observer(recorder)  # stays for the settling that simulate() runs after the strategy returns
        result = original.run(sim)
        recorder.phase = "settling"
        rec.visited = list(result.extra.get("visited", []))
        return result

    register_strategy(name, run, prepare=original.prepare, description=original.description)
    try:
        yield rec
    finally:
        register_strategy(name, original.run, prepare=original.prepare, description=original.description)


# ---------------------------------------------------------------------------------------------------------
# Progress on stderr
# ---------------------------------------------------------------------------------------------------------
class Progress:
    """One line per rollout. On a terminal the line updates in place (simulated seconds, phase); otherwise
    only the finished line is written, so a log or CI output stays clean."""

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream, self.total = stream, total
        self.tty = stream.isatty()
        self.i, self.name, self._shown = 0, "", 0.0

    def start(self, i: int, name: str) -> None:
        self.i, self.name, self._shown = i, name, 0.0
        self.tick(0.0, "starting")

    def _prefix(self) -> str:
        return f"[{self.i}/{self.total}] {self.name:<19}"

    def tick(self, t: float, phase: str) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._shown < 0.1 and phase != "starting":
            return
        self._shown = now
        self.stream.write(f"\r\033[K{self._prefix()} {phase}, {max(t, 0):6.1f} s since the rollout started")
        self.stream.flush()

    def done(self, result: Any, wall: float) -> None:
        rs = "did not end" if result.rollout_seconds is None else f"rollout {result.rollout_seconds:.1f} s"
        line = (f"{self._prefix()} {result.outcome}, {rs}, {result.failed_requests} of {result.requests} "
                f"requests failed ({result.simulated_seconds:.0f} s simulated in {wall:.2f} s)")
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------------------
def _main_cause(result: Any) -> str:
    if not result.failed_by_cause:
        return "-"
    cause, n = max(result.failed_by_cause.items(), key=lambda kv: kv[1])
    return cause if n == result.failed_requests else f"{cause} ({n})"


def _summary(result: Any) -> str:
    pct = 100 * result.failed_requests / result.requests if result.requests else 0.0
    rs = "never ended" if result.rollout_seconds is None else f"rollout {result.rollout_seconds:.1f} s"
    return f"{result.outcome}, {result.failed_requests} of {result.requests} requests failed ({pct:.1f} %), {rs}"


def shows_lower_bound(r: Any) -> bool:
    """The oracle's time bounds a rollout that succeeded; for a rollback it is the oracle's own deadline-driven
    rollback, not a bound on albgate's (which may detect the failure sooner). --json has the raw value."""
    return r.strategy == "albgate" and r.outcome == "succeeded" and r.lower_bound_seconds is not None


def render_table(results: Sequence[Any]) -> list[str]:
    """The side-by-side table: one row per strategy."""
    header = ("strategy", "outcome", "requests", "failed", "rollout s", "lower bound s", "DescribeTargetHealth",
              "state transitions", "main cause of failed requests")
    rows = []
    for r in results:
        pct = 100 * r.failed_requests / r.requests if r.requests else 0.0
        rows.append((
            r.strategy,
            r.outcome,
            str(r.requests),
            f"{r.failed_requests} ({pct:.1f} %)" if r.failed_requests else "0",
            "-" if r.rollout_seconds is None else f"{r.rollout_seconds:.1f}",
            f"{r.lower_bound_seconds:.1f}" if shows_lower_bound(r) else "-",
            str(r.describe_target_health_calls),
            str(r.state_transitions),
            _main_cause(r),
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    right = {2, 3, 4, 5, 6, 7}

    def fmt(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def run_demo(scenario: Any, seed: int, out: Path, progress: Progress) -> dict[str, Any]:
    """Run the three strategies, draw the pictures; return the results, recordings and paths."""
    from albgate import pictures
    from albgate.sfn_local.extract import extract_state_machine
    from albgate.sim import simulate
    from albgate.template import CACHE_DIR, state_machine_id, synthesized_template, template_key

    for name in STRATEGIES:
        resolve_strategy(name)
    if not (CACHE_DIR / f"template-{template_key()}.json").is_file():
        progress.note(f"synthesizing albgate's CDK app once for this checkout (a few seconds; cached in "
                      f"{CACHE_DIR.name}/) ...")
    template = synthesized_template()
    definition = extract_state_machine(template, state_machine_id(template)).definition

    results, recordings = [], []
    for i, name in enumerate(STRATEGIES, 1):
        progress.start(i, name)
        wall = time.perf_counter()
        with recorded(name, progress.tick) as rec:
            result = simulate(scenario, name, seed)
        results.append(result)
        recordings.append(rec)
        progress.done(result, time.perf_counter() - wall)

    progress.note(f"drawing the pictures into {out}/ ...")
    title = f"{scenario.name} (seed {seed}, {scenario.traffic.rate_per_second:g} requests/s): {scenario.description}"
    traces = [_trace(r, rec, scenario) for r, rec in zip(results, recordings)]
    x_end = max(t.end for t in traces)
    paths: dict[str, Path] = {}
    paths["comparison"] = pictures.comparison_png(traces, out / COMPARISON_PNG, title)
    for tr in traces:
        paths[tr.strategy] = pictures.timeline_png(tr, out / f"timeline-{tr.strategy}.png", title, x_end=x_end)
    albgate_rec = recordings[STRATEGIES.index("albgate")]
    albgate_res = results[STRATEGIES.index("albgate")]
    sm_title = (f"albgate's rollout state machine, as synthesized from stacks/ ({len(definition['States'])} states)\n"
                f"green: the {scenario.name} execution of this demo, {albgate_res.state_transitions} state "
                f"transitions, ended in {albgate_rec.visited[-1] if albgate_rec.visited else '-'}")
    paths["state_machine"] = pictures.state_machine_png(definition, out / STATE_MACHINE_PNG, sm_title,
                                                        visited=albgate_rec.visited)
    return {"results": results, "recordings": recordings, "pictures": paths}


def _trace(result: Any, rec: Recording, scenario: Any) -> Any:
    from albgate.pictures import Trace
    from albgate.sim.engine import EPOCH

    start = rec.rollout_start
    return Trace(
        strategy=result.strategy,
        summary=_summary(result),
        samples=rec.samples,
        end=result.simulated_seconds - start,
        rollout_end=result.rollout_seconds,
        failures=[(t - EPOCH - start, cause) for t, cause in result.failures],
        new_ready=rec.new_ready,
        old_version=scenario.app.image.rsplit("/", 1)[-1],
        new_version=scenario.rollout.image.rsplit("/", 1)[-1],
        target_groups=", ".join(rec.target_groups) or "the target group",
    )
