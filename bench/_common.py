"""What the benchmark scripts share: the scenario list, a two-process pool, result files, tables, statistics,
an instrumented `albgate` run, and the Describe* token-bucket replay used for the concurrency question.

Job: keep bench_safety / bench_speed / bench_cost / bench_startup short and consistent: every script prints a
Markdown table and writes one JSON file under out/bench/ (git-ignored) that holds the machine, the command and
every per-run record the table was computed from.
Invariant: nothing here changes a rollout. The simulation runs are ``albgate.sim.simulate`` / ``run_strategy``
with the registered strategies; the only addition, the ``albgate-bench`` strategy, is the ``albgate`` strategy
(same prepare, same execution name, same state machine) with two read-only hooks: a timer around each Lambda
handler call and a log of every Describe* call the world's token bucket saw. At most ``MAX_WORKERS`` (2)
processes run at once: the machine has 2 cores shared with other work, and one moto machine opens per process.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "scenarios"
OUT_DIR = ROOT / "out" / "bench"
MAX_WORKERS = 2
ALBGATE = "albgate"
BENCH_ALBGATE = "albgate-bench"  # the albgate strategy with read-only hooks (see albgate_bench_run)
BASELINES = ("kubernetes-default", "readiness-gate", "hardened-readiness-gate")
STRATEGIES = (*BASELINES, ALBGATE)


# ---------------------------------------------------------------------------------------------------------
# Scenarios, machine, files, tables
# ---------------------------------------------------------------------------------------------------------
def scenario_files(names: Iterable[str] | None = None) -> list[Path]:
    """Every shipped scenario (scenarios/*.yaml), or the named ones (by name or file stem)."""
    files = sorted(SCENARIO_DIR.glob("*.yaml"))
    if not names:
        return files
    wanted = list(names)
    by_stem = {f.stem: f for f in files}
    out = []
    for n in wanted:
        path = Path(n)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            out.append(path.resolve())
        elif n in by_stem:
            out.append(by_stem[n])
        else:
            raise SystemExit(f"unknown scenario {n!r}; shipped: {', '.join(by_stem)}")
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken (goes into every result file)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": _git("status", "--porcelain").splitlines(),
    }


def command_line() -> str:
    return " ".join([".venv/bin/python", *(_rel(a) for a in sys.argv)])


def _rel(arg: str) -> str:
    try:
        return str(Path(arg).resolve().relative_to(ROOT)) if Path(arg).exists() else arg
    except ValueError:
        return arg


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    out = Path(out_dir or OUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False, default=_json_default))
    tmp.replace(path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one char per column, 'l' or 'r' (default: first l, rest r)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_rate(failed: int, requests: int) -> str:
    """Failed-request rate as a percentage; exact 0 prints as 0."""
    if requests == 0:
        return "-"
    if failed == 0:
        return "0"
    pct = 100.0 * failed / requests
    return f"{pct:.3g} %"


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------
def percentile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): an observed value, never an interpolation."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, math.ceil(q / 100.0 * len(s)) - 1)
    return s[k]


def summary(xs: Sequence[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "median": None, "p90": None, "max": None, "min": None}
    return {"n": len(xs), "median": statistics.median(xs), "p90": percentile(xs, 90), "max": max(xs), "min": min(xs)}


# ---------------------------------------------------------------------------------------------------------
# Runs in at most two processes
# ---------------------------------------------------------------------------------------------------------
_PINNED: dict[str, Any] = {}


def pinned_template() -> tuple[str, dict[str, Any]]:
    """The stack's template, synthesized (or read from the cache) once per benchmark run, with its key.

    The cache key hashes stacks/ and lambdas/domain/; when someone edits those files during a long run, every
    worker would otherwise synthesize again (seconds of CPU each) and runs would mix two definitions."""
    if not _PINNED:
        os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
        from albgate.template import synthesized_template, template_key

        _PINNED["key"], _PINNED["template"] = template_key(), synthesized_template()
    return _PINNED["key"], _PINNED["template"]


def _init_worker(template: dict[str, Any] | None = None) -> None:
    import albgate.rollout_strategy as rs  # registers the `albgate` strategy

    if template is None:
        template = pinned_template()[1]
    rs.synthesized_template = lambda: template  # this process runs exactly the definition the run started with
    register_bench_strategy()


def run_parallel(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int, label: str = "") -> list[Any]:
    """``[fn(t) for t in tasks]`` on ``min(workers, MAX_WORKERS)`` spawned processes, in order, with progress on
    stderr. One process runs it inline (no pool), which is what the smoke tests use. Every process runs the
    template ``pinned_template`` returned when the run started."""
    workers = max(1, min(workers, MAX_WORKERS, len(tasks) or 1))
    t0 = time.perf_counter()
    results: list[Any] = []
    template = pinned_template()[1]
    if workers == 1:
        _init_worker(template)
        for i, t in enumerate(tasks, 1):
            results.append(fn(t))
            _progress(label, i, len(tasks), t0)
        return results
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(template,)) as ex:
        for i, r in enumerate(ex.map(fn, tasks), 1):
            results.append(r)
            _progress(label, i, len(tasks), t0)
    return results


def _progress(label: str, i: int, n: int, t0: float) -> None:
    el = time.perf_counter() - t0
    eta = el / i * (n - i)
    print(f"\r{label} {i}/{n} tasks, {el:.0f} s elapsed, ~{eta:.0f} s to go   ", end="", file=sys.stderr, flush=True)
    if i == n:
        print(file=sys.stderr)


def chunks(seeds: Sequence[int], size: int) -> list[list[int]]:
    return [list(seeds[i:i + size]) for i in range(0, len(seeds), size)]


def record(result: Any) -> dict[str, Any]:
    """The fields of a SimulationResult the benchmarks keep per run."""
    r = result.to_json()
    keep = ("scenario", "strategy", "seed", "outcome", "requests", "failed_requests", "failed_by_cause",
            "rollout_seconds", "lower_bound_seconds", "describe_target_health_calls",
            "describe_target_health_calls_by_caller", "throttled_calls_by_caller", "state_transitions",
            "final_image", "detail", "wall_seconds")
    return {k: r[k] for k in keep}


def simulate_task(task: tuple[str, str, list[int], bool]) -> list[dict[str, Any]]:
    """Worker: one scenario file, one strategy, a chunk of seeds -> one record per seed."""
    from albgate.sim import load_scenario, simulate

    path, strategy, seeds, lower_bound = task
    sc = load_scenario(path)
    return [record(simulate(sc, strategy, seed, lower_bound=lower_bound)) for seed in seeds]


def simulate_grid(files: Sequence[Path], strategies_seeds: dict[str, list[int]], workers: int, *,
                  lower_bound_for: Iterable[str] = (ALBGATE,), chunk: int = 10, label: str = "runs"
                  ) -> list[dict[str, Any]]:
    """Every scenario x strategy x its seeds, albgate's tasks first (the long ones), in at most 2 processes."""
    lb = set(lower_bound_for)
    tasks = []
    for strategy in sorted(strategies_seeds, key=lambda s: s != ALBGATE):
        for f in files:
            for c in chunks(strategies_seeds[strategy], chunk):
                tasks.append((str(f), strategy, c, strategy in lb))
    out: list[dict[str, Any]] = []
    for recs in run_parallel(simulate_task, tasks, workers, label):
        out.extend(recs)
    return out


def reproduce(scenario_file: str | Path, strategy: str, seed: int) -> str:
    return f".venv/bin/albgate simulate {_rel(str(scenario_file))} --strategy {strategy} --seed {seed}"


# ---------------------------------------------------------------------------------------------------------
# The instrumented albgate run (cost benchmark)
# ---------------------------------------------------------------------------------------------------------
def albgate_bench_run(sim: Any) -> Any:
    """The ``albgate`` strategy plus two read-only hooks: the in-process wall time of every Lambda handler call,
    and every Describe* call the account's token bucket saw (any caller, from the rollout start to the end of
    settling), as (seconds after the rollout start, caller, API, tokens, allowed)."""
    from albgate.rollout_strategy import run_albgate

    calls: list[tuple[float, str, str, int, bool]] = []
    spend = sim.alb._spend

    def logged_spend(caller: str, api: str, n: int = 1) -> None:
        t = sim.clock.t - sim.rollout_start
        try:
            spend(caller, api, n)
        except Exception:
            calls.append((t, caller, api, n, False))
            raise
        calls.append((t, caller, api, n, True))

    sim.alb._spend = logged_spend  # stays for the settling that follows the rollout (the same list grows)
    timings: list[tuple[str, float]] = []

    def timed(fid: str, handler: str, event: Any, deliver: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return deliver()
        finally:
            timings.append((fid, time.perf_counter() - t0))

    run = run_albgate(sim, fault=timed)
    run.extra["describe_calls"] = calls
    run.extra["handler_timings"] = timings
    return run


def register_bench_strategy() -> None:
    from albgate.sim.strategies import bootstrap_hardened, register_strategy, strategy_names

    if BENCH_ALBGATE not in strategy_names():
        register_strategy(BENCH_ALBGATE, albgate_bench_run, prepare=bootstrap_hardened,
                          description="albgate with a handler timer and a Describe* call log (benchmarks only)")


# ---------------------------------------------------------------------------------------------------------
# Describe* token-bucket replay (concurrency)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    t: float  # seconds after the rollout start
    caller: str  # "albgate" or "controller"
    api: str  # DescribeTargetHealth | DescribeTargetGroups
    tokens: int


@dataclass(frozen=True)
class Schedule:
    """One recorded rollout: its Describe* calls (both callers) and its duration."""

    name: str
    calls: tuple[Call, ...]
    rollout_seconds: float


# albgate's reactions to a throttled call (the code they come from):
PREFLIGHT_RETRY_INTERVAL, PREFLIGHT_RETRY_BACKOFF, PREFLIGHT_MAX_ATTEMPTS = 2.0, 2.0, 5  # rollout_workflow.py Retry
STEP_DEADLINE_SECONDS = 900.0  # RolloutPolicy.step_deadline_seconds default: a gate throttled this long fails
CONTROLLER_BACKOFF_START, CONTROLLER_BACKOFF_CAP = 0.005, 1000.0  # LBC workqueue back-off (FACTS.md 22-24)


@dataclass
class _Copy:
    sched: Schedule
    offset: float
    shift: float = 0.0  # delay added to every later call of this rollout by throttling so far
    consecutive: Counter = field(default_factory=Counter)  # per caller
    throttled_wait: float = 0.0  # consecutive back-off of albgate's gate, compared with the step deadline
    throttled: int = 0
    failed: bool = False


def _backoff(call: Call, k: int, interval: int, key: str) -> float | None:
    """The wait before the k-th consecutive retry of a throttled call; None = albgate gives the rollout up."""
    from lambdas.domain.poll import target_poll_seconds

    if call.caller == "controller":
        return min(CONTROLLER_BACKOFF_CAP, CONTROLLER_BACKOFF_START * 2 ** (k - 1))
    if call.api == "DescribeTargetGroups":  # Preflight: Step Functions' Retry on ThrottledError, then Catch
        return None if k > PREFLIGHT_MAX_ATTEMPTS else PREFLIGHT_RETRY_INTERVAL * PREFLIGHT_RETRY_BACKOFF ** (k - 1)
    return float(target_poll_seconds(interval, key, k))  # the gate / drain poll's own back-off


def replay(schedules: Sequence[Schedule], n: int, *, window: float, background: float, seed: int,
           capacity: int = 40, refill: float = 10.0, interval: int = 5) -> dict[str, Any]:
    """N rollouts on one account's Describe* bucket: copy i replays schedule i mod len(schedules), started at a
    uniform random offset in [0, window]. A throttled call is retried after the back-off its caller uses, and
    every later call of that rollout moves by the same delay (the whole rollout is assumed to wait: an upper
    bound on the slow-down). ``background`` calls/s come out of the bucket all the time (other pollers)."""
    from albgate.sim.alb import TokenBucket

    rng = random.Random(f"replay:{n}:{float(window)}:{float(background)}:{seed}")
    copies = [_Copy(schedules[(i + seed) % len(schedules)], rng.uniform(0.0, window)) for i in range(n)]
    bucket = TokenBucket(capacity, refill, 0.0, [(0.0, float("inf"), background)] if background else [])
    heap: list[tuple[float, int, int]] = []
    for i, c in enumerate(copies):
        if c.sched.calls:
            heapq.heappush(heap, (c.offset + c.sched.calls[0].t, i, 0))
    calls = throttled = 0
    failed_by: Counter[str] = Counter()
    while heap:
        t, i, j = heapq.heappop(heap)
        c = copies[i]
        call = c.sched.calls[j]
        calls += 1
        if bucket.take(t, call.tokens):
            c.consecutive[call.caller] = 0
            if call.caller == "albgate":
                c.throttled_wait = 0.0
            if j + 1 < len(c.sched.calls):
                heapq.heappush(heap, (c.offset + c.shift + c.sched.calls[j + 1].t, i, j + 1))
            continue
        throttled += 1
        c.throttled += 1
        c.consecutive[call.caller] += 1
        wait = _backoff(call, c.consecutive[call.caller], interval, f"{i}:{j}")
        if call.caller == "albgate" and wait is not None:
            c.throttled_wait += wait
        if wait is None or c.throttled_wait > STEP_DEADLINE_SECONDS:
            c.failed = True  # Preflight refused after its retries, or the gate throttled past the step deadline
            failed_by["preflight_refused" if wait is None else "gate_past_step_deadline"] += 1
            continue
        c.shift += wait
        heapq.heappush(heap, (t + wait, i, j))
    slow = [c.shift / c.sched.rollout_seconds for c in copies if not c.failed and c.sched.rollout_seconds > 0]
    return {
        "n": n, "calls": calls, "throttled_calls": throttled,
        "throttled_rollouts": sum(1 for c in copies if c.throttled),
        "failed_rollouts": sum(1 for c in copies if c.failed), "failed_by": dict(failed_by),
        "max_slowdown": max(slow, default=0.0),
    }


def concurrency_limits(schedules: Sequence[Schedule], *, window: float, background: float, trials: int,
                       slow_limit: float = 0.10, n_max: int = 400) -> dict[str, Any]:
    """The largest N (every N' <= N passing in every trial) with (a) no throttled call, (b) no rollout failed
    and none slowed by more than ``slow_limit``, (c) no rollout failed (Preflight refused after its retries,
    or a gate throttled past the step deadline). Grid: every N to 100, then every 5th, up to the first
    failure or ``n_max``."""
    grid = [n for n in [*range(1, 101), *range(105, n_max + 1, 5)] if n <= n_max]
    no_throttle = ok = no_failure = 0
    first_throttle: dict[str, Any] | None = None
    first_bad: dict[str, Any] | None = None
    first_failed: dict[str, Any] | None = None
    rows = []
    for n in grid:
        rs = [replay(schedules, n, window=window, background=background, seed=s) for s in range(trials)]
        worst = {
            "n": n,
            "trials_with_throttling": sum(1 for r in rs if r["throttled_calls"]),
            "throttled_calls_max": max(r["throttled_calls"] for r in rs),
            "failed_rollouts_max": max(r["failed_rollouts"] for r in rs),
            "failed_by": dict(sum((Counter(r["failed_by"]) for r in rs), Counter())),
            "max_slowdown": max(r["max_slowdown"] for r in rs),
        }
        rows.append(worst)
        if first_throttle is None:
            if worst["trials_with_throttling"] == 0:
                no_throttle = n
            else:
                first_throttle = worst
        bad = worst["failed_rollouts_max"] > 0 or worst["max_slowdown"] > slow_limit
        if first_bad is None:
            if not bad:
                ok = n
            else:
                first_bad = worst
        if worst["failed_rollouts_max"] == 0:
            no_failure = n
        else:
            first_failed = worst
            break
    return {"window_seconds": window, "background_calls_per_second": background, "trials": trials,
            "largest_n_without_throttling": no_throttle, "largest_n_within_slowdown": ok,
            "largest_n_without_failure": no_failure, "slow_limit": slow_limit, "first_throttled": first_throttle,
            "first_too_slow": first_bad, "first_failed": first_failed, "grid": rows}
