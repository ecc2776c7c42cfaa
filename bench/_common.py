"""What the benchmark scripts share: the scenario list, a two-process pool, result files, tables, statistics,
an instrumented `albgate` run, and the Describe* token-bucket replay used for the concurrency question.

Job: keep bench_safety / bench_speed / bench_cost / bench_startup short and consistent: every script prints a
Markdown table and writes one JSON file under out/bench/ (git-ignored) that holds the machine, the command and
every per-run record the table was computed from.
Invariant: nothing here changes a rollout. The simulation runs are ``albgate.sim.simulate`` / ``run_strategy``
with the registered strategies; the only addition, the ``albgate-bench`` strategy, is the ``albgate`` strategy
(same prepare, same execution name, same state machine) with read-only hooks: a timer around each Lambda
handler call (which also notes the error class of a call that raised), and a log of every Describe* call the
world's token bucket saw, with the function that made it. At most ``MAX_WORKERS`` (2)
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

from lambdas.domain.budget import BudgetSpec, admit

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "scenarios"
OUT_DIR = ROOT / "out" / "bench"
MAX_WORKERS = 2
ALBGATE = "albgate"
BENCH_ALBGATE = "albgate-bench"  # the albgate strategy with read-only hooks (see albgate_bench_run)
# The ideal poller is not a baseline users run; it is the bound for pollers (docs/benchmarks.md, section 2)
IDEAL_POLLER = "ideal-poller"
BASELINES = ("kubernetes-default", "readiness-gate", "hardened-readiness-gate", IDEAL_POLLER)
STRATEGIES = (*BASELINES, ALBGATE)
SUCCEEDED = "succeeded"
TARGET_RATIO = 1.25  # albgate's speed target: rollout_seconds / lower_bound_seconds at most this


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
    import albgate.sim.albgate_strategy as rs  # registers the `albgate` strategy

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
                  lower_bound_for: Iterable[str] = (ALBGATE, IDEAL_POLLER), chunk: int = 10, label: str = "runs"
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
    """The ``albgate`` strategy plus read-only hooks: the in-process wall time of every Lambda handler call,
    the error class of every handler call that raised (what a Retry or Catch then saw), and every Describe*
    call the account's token bucket saw (any caller, from the rollout start to the end of settling), as
    (seconds after the rollout start, caller, API, tokens, allowed, calling function, start of its step).
    The calling function is the role of the Lambda whose handler made the call (``Preflight``,
    ``CheckTargetHealth``, ``VerifyDrain``; empty for the controller); the step start is the time of the
    last ``Start Step`` invocation before the call (None before the first step)."""
    from albgate.sim.albgate_strategy import run_albgate

    calls: list[tuple[float, str, str, int, bool, str, float | None]] = []
    spend = sim.alb._spend
    now: dict[str, Any] = {"role": "", "step_start": None}  # what the running handler is

    def logged_spend(caller: str, api: str, n: int = 1) -> None:
        t = sim.clock.t - sim.rollout_start
        source = now["role"] if caller == "albgate" else ""
        try:
            spend(caller, api, n)
        except Exception:
            calls.append((t, caller, api, n, False, source, now["step_start"]))
            raise
        calls.append((t, caller, api, n, True, source, now["step_start"]))

    sim.alb._spend = logged_spend  # stays for the settling that follows the rollout (the same list grows)
    timings: list[tuple[str, float]] = []
    errors: list[tuple[float, str, str]] = []

    def timed(fid: str, handler: str, event: Any, deliver: Callable[[], Any]) -> Any:
        role = function_role(fid)
        if role == "StartStep":
            now["step_start"] = sim.clock.t - sim.rollout_start  # the clock start_step reads for its deadline
        now["role"] = role
        t0 = time.perf_counter()
        try:
            return deliver()
        except Exception as e:
            errors.append((sim.clock.t - sim.rollout_start, role, type(e).__name__))
            raise
        finally:
            timings.append((fid, time.perf_counter() - t0))
            now["role"] = ""

    run = run_albgate(sim, fault=timed)
    run.extra["describe_calls"] = calls
    run.extra["handler_timings"] = timings
    run.extra["handler_errors"] = errors
    return run


def function_role(logical_id: str) -> str:
    """``CheckTargetHealthFunction76657722`` -> ``CheckTargetHealth`` (the function's id in the stack)."""
    head, sep, _ = logical_id.partition("Function")
    return head if sep else logical_id


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
    source: str = ""  # albgate's calling function: Preflight | CheckTargetHealth | VerifyDrain ("" unknown)
    step_start: float | None = None  # when the step this call belongs to started (seconds after the rollout start)


@dataclass(frozen=True)
class Schedule:
    """One recorded rollout: its Describe* calls (both callers), its duration and its step deadline."""

    name: str
    calls: tuple[Call, ...]
    rollout_seconds: float
    step_deadline_seconds: float = 900.0  # RolloutPolicy.step_deadline_seconds default: a gate throttled past it fails


@dataclass(frozen=True)
class RetryPolicy:
    """A Step Functions Retry clause, as the service applies it: before the k-th retry (k = 1..max_attempts)
    it waits ``interval * backoff_rate**(k-1)``, capped at ``max_delay`` (MaxDelaySeconds), and with
    JitterStrategy FULL a uniform draw from [0, that] instead (the CDK's JitterType.FULL: "a random number
    between 0 and the computed backoff"; moto's interpreter does the same). After ``max_attempts`` retries the
    error goes to the Catch."""

    interval: float
    backoff_rate: float = 2.0
    max_attempts: int = 3
    max_delay: float | None = None
    jitter: str = "NONE"  # NONE | FULL

    def delay(self, k: int, rng: random.Random) -> float | None:
        """The wait before retry k (1-based); None = retries exhausted, the task fails."""
        if k > self.max_attempts:
            return None
        wait = self.interval * self.backoff_rate ** (k - 1)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return rng.uniform(0.0, wait) if self.jitter == "FULL" else wait

    def worst_total(self) -> float:
        """Seconds of waiting before the task gives up when every draw is at its maximum."""
        return sum(min(self.interval * self.backoff_rate ** k, self.max_delay or math.inf)
                   for k in range(self.max_attempts))

    def describe(self) -> str:
        cap = f", at most {self.max_delay:g} s" if self.max_delay is not None else ""
        jitter = ", full jitter" if self.jitter == "FULL" else ", no jitter"
        return (f"{self.max_attempts} retries from {self.interval:g} s x{self.backoff_rate:g}{cap}{jitter} "
                f"(<= {self.worst_total():.0f} s)")

    def as_dict(self) -> dict[str, Any]:
        return {"interval": self.interval, "backoff_rate": self.backoff_rate, "max_attempts": self.max_attempts,
                "max_delay": self.max_delay, "jitter": self.jitter}


# The rollout state machine's Retry for ThrottledError before it had a clause of its own (commit 6f0ebc1 and
# earlier: the general clause, 2 s doubling, 5 retries, no jitter): kept to compare with (--preflight-retry legacy).
LEGACY_PREFLIGHT_RETRY = RetryPolicy(interval=2.0, backoff_rate=2.0, max_attempts=5)


def retry_policy(definition: dict[str, Any], state: str, error: str) -> RetryPolicy | None:
    """The Retry clause a Task state of an ASL definition applies to ``error`` (the first whose ErrorEquals
    names it or States.ALL, as Step Functions picks it); None when no clause matches (no retry)."""
    for clause in definition["States"][state].get("Retry", []):
        names = clause["ErrorEquals"]
        if error in names or "States.ALL" in names:
            return RetryPolicy(
                interval=float(clause.get("IntervalSeconds", 1)),
                backoff_rate=float(clause.get("BackoffRate", 2.0)),
                max_attempts=int(clause.get("MaxAttempts", 3)),
                max_delay=float(clause["MaxDelaySeconds"]) if "MaxDelaySeconds" in clause else None,
                jitter=str(clause.get("JitterStrategy", "NONE")),
            )
    return None


def template_retry_policy(template: dict[str, Any], state: str = "Preflight",
                          error: str = "ThrottledError") -> RetryPolicy | None:
    """The Retry the synthesized rollout state machine applies to ``error`` in ``state``."""
    from albgate.sfn_local.extract import extract_state_machine
    from albgate.template import state_machine_id

    return retry_policy(extract_state_machine(template, state_machine_id(template)).definition, state, error)


def template_budget(template: dict[str, Any]) -> BudgetSpec | None:
    """albgate's share of the Describe* bucket as the synthesized stack configures it: the rate and burst in
    the environment of the functions that poll (None: the stack has no budget)."""
    for res in template["Resources"].values():
        if res.get("Type") != "AWS::Lambda::Function":
            continue
        env = res.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if "ALBGATE_DESCRIBE_BUDGET_RATE" in env:
            return BudgetSpec(float(env["ALBGATE_DESCRIBE_BUDGET_RATE"]), int(env["ALBGATE_DESCRIBE_BUDGET_BURST"]))
    return None


# albgate's reactions to a throttled call, besides Preflight's Retry (the code they come from):
EXECUTION_TIMEOUT_SECONDS = 48 * 3600.0  # the state machine's TimeoutSeconds (rollout_workflow.py)
# LBC workqueue back-off (docs/facts.md, Load Balancer Controller: registration and timing)
CONTROLLER_BACKOFF_START, CONTROLLER_BACKOFF_CAP = 0.005, 1000.0
PREFLIGHT, GATE, DRAIN = "Preflight", "CheckTargetHealth", "VerifyDrain"  # function roles (function_role)


def _phase(call: Call) -> tuple[str, float] | None:
    """The gate or drain wait a poll belongs to (its function and step), or None (any other call)."""
    if call.caller == "albgate" and call.source in (GATE, DRAIN) and call.step_start is not None:
        return call.source, call.step_start
    return None


def _is_preflight(call: Call) -> bool:
    """Preflight's call (DescribeTargetGroups + Attributes; a record without a source: by its API)."""
    by_api = not call.source and call.api == "DescribeTargetGroups"
    return call.caller == "albgate" and (call.source == PREFLIGHT or by_api)


@dataclass
class _Stream:
    """One caller's calls of one recorded rollout, in order, with whether each one decides its phase."""

    calls: tuple[Call, ...]
    decisive: tuple[bool, ...]


def _streams(sched: Schedule) -> tuple[_Stream, _Stream]:
    """(albgate's calls, the controller's calls). A gate or drain poll decides its phase only if it is the last
    poll of that step's gate (or drain): the one that saw the targets healthy (or gone). Every other call
    decides: Preflight's, the controller's, and any call recorded without its source."""
    out = []
    for caller in ("albgate", "controller"):
        calls = tuple(c for c in sched.calls if c.caller == caller)
        phases = [_phase(c) for c in calls]
        decisive = tuple(ph is None or ph not in phases[j + 1:] for j, ph in enumerate(phases))
        out.append(_Stream(calls, decisive))
    return out[0], out[1]


@dataclass
class _Copy:
    sched: Schedule
    offset: float
    streams: tuple[_Stream, _Stream]
    shift: float = 0.0  # how late this rollout is so far: the whole rest of it happens that much later
    consecutive: Counter = field(default_factory=Counter)  # throttles in a row, per caller
    throttled_wait: float = 0.0  # consecutive back-off of albgate's polls (rule for calls of unknown source)
    step_shift: dict = field(default_factory=dict)  # step start -> shift when the step's first call was due
    throttled: int = 0
    preflight_retries: int = 0
    failed: bool = False

    def due(self, call: Call) -> float:
        return self.offset + self.shift + call.t


def _backoff(call: Call, k: int, interval: int, key: str, preflight_retry: RetryPolicy | None,
             rng: random.Random) -> float | None:
    """The wait before the k-th consecutive retry of a throttled call; None = albgate gives the rollout up."""
    from lambdas.domain.poll import drain_poll_seconds, target_poll_seconds

    if call.caller == "controller":
        return min(CONTROLLER_BACKOFF_CAP, CONTROLLER_BACKOFF_START * 2 ** (k - 1))
    if _is_preflight(call):  # ThrottledError from Preflight: Step Functions' Retry, then the Catch refuses
        return None if preflight_retry is None else preflight_retry.delay(k, rng)
    if call.source == DRAIN:
        return float(drain_poll_seconds(interval, key, k))
    return float(target_poll_seconds(interval, key, k))  # the gate's own back-off (rollout.check_target_health)


def _gate_gives_up(c: _Copy, call: Call, now: float, wait: float) -> bool:
    """Whether this throttled albgate poll ends the rollout, as the handlers decide it.

    Check Target Health fails the step when, at a throttled poll, the step deadline has passed; the step
    started when recorded plus however late the rollout was then. Verify Drain never fails on a throttled
    poll (``evaluate_drain`` without health answers WAITING). A call of unknown source (a record without it)
    uses the older rule: consecutive throttled waits past the step deadline."""
    if call.source == DRAIN:
        return False
    if call.source == GATE and call.step_start is not None:
        started = c.offset + c.step_shift.get(call.step_start, c.shift) + call.step_start
        return now - started >= c.sched.step_deadline_seconds
    c.throttled_wait += wait
    return c.throttled_wait > c.sched.step_deadline_seconds


def _fold(c: _Copy, st: _Stream, j: int, until: float) -> int:
    """The poll a retried (or booked) albgate call stands for: the polls of the same wait that fall due
    before ``until`` are folded into it (they would only have asked "not yet?")."""
    nxt = j
    phase = _phase(st.calls[j])
    if phase is not None:
        while nxt + 1 < len(st.calls) and _phase(st.calls[nxt + 1]) == phase and c.due(st.calls[nxt + 1]) <= until:
            nxt += 1
    return nxt


def replay(schedules: Sequence[Schedule], n: int, *, window: float, background: float, seed: int,
           preflight_retry: RetryPolicy | None, capacity: int = 40, refill: float = 10.0,
           interval: int = 5, budget: BudgetSpec | None = None) -> dict[str, Any]:
    """N rollouts on one account's Describe* bucket: copy i replays schedule (i + seed) mod len(schedules),
    started at a uniform random offset in [0, window]; ``background`` calls/s come out of the bucket all the
    time (other pollers).

    A throttled call is retried after the back-off its caller uses: Preflight's by ``preflight_retry`` (the
    state machine's Retry for ThrottledError: its delays, cap and jitter; past its attempts the rollout is
    refused), the gate's and drain's polls by ``lambdas.domain.poll`` (past the step deadline a gate fails),
    the controller's by its work-queue back-off. How late a retry makes the rollout depends on the call:
    - a call that decides something (Preflight's; the gate poll that saw the step's targets healthy; the
      drain poll that saw the old ones gone; every controller call) makes the whole rest of the rollout, both
      callers, as late as it succeeded after it was due;
    - an earlier gate or drain poll of the same wait only asked "not yet?": the world does not wait for it,
      so its back-off makes nothing later by itself; the polls that fell due during the back-off are folded
      into the retry, and if the retry lands after the deciding poll was due, that poll is late by the rest.
    The deciding poll is an upper bound on when the targets turned healthy, and a late controller call delays
    everything after it, so the slow-downs are still upper bounds, only no longer charged for a throttled
    "not yet". Stops a rollout past the state machine's 48 h timeout (only with background >= refill).

    With a ``budget`` (albgate's share of the bucket, lambdas/domain/budget.py), every albgate call first
    asks it, as the handlers do: a call told to wait is booked, and goes at its turn (whole seconds later, the
    Wait states' unit) without asking again, with the same lateness rules as a throttled poll's retry; that
    holds for Preflight too (`Wait For Describe Turn`). Such waits spend no token of the account's bucket and
    are counted as ``budget_waits``, not as throttled calls."""
    from albgate.sim.alb import TokenBucket

    rng = random.Random(f"replay:{n}:{float(window)}:{float(background)}:{seed}")
    jitter = random.Random(f"replay-retry-jitter:{n}:{float(window)}:{float(background)}:{seed}")
    cache: dict[int, tuple[_Stream, _Stream]] = {}
    copies = []
    for i in range(n):
        sched = schedules[(i + seed) % len(schedules)]
        streams = cache.setdefault(id(sched), _streams(sched))
        copies.append(_Copy(sched, rng.uniform(0.0, window), streams))
    bucket = TokenBucket(capacity, refill, 0.0, [(0.0, float("inf"), background)] if background else [])
    heap: list[tuple[float, int, int, int, bool]] = []  # (time, copy, stream, call index, is a retry)
    for i, c in enumerate(copies):
        for s, st in enumerate(c.streams):
            if st.calls:
                heapq.heappush(heap, (c.due(st.calls[0]), i, s, 0, False))
    calls = throttled = budget_waits = 0
    failed_by: Counter[str] = Counter()
    share_tat: float | None = None  # albgate's share of the bucket (budget.admit), shared by every copy
    booked: set[tuple[int, int, int]] = set()  # (copy, stream, call) that go at their booked slot
    while heap:
        t, i, s, j, retry = heapq.heappop(heap)
        c = copies[i]
        if c.failed:
            continue
        st = c.streams[s]
        call = st.calls[j]
        due = c.due(call)
        if not retry and due > t + 1e-9:  # the rollout got later since this call was queued
            heapq.heappush(heap, (due, i, s, j, False))
            continue
        if call.step_start is not None:
            c.step_shift.setdefault(call.step_start, c.shift)
        if budget is not None and call.caller == "albgate" and (i, s, j) not in booked:
            a = admit(share_tat, t, call.tokens, budget, reserve=True)
            share_tat = a.tat
            if a.wait > 0:  # booked: the call goes at its turn (whole seconds of Wait) without asking again
                budget_waits += 1
                wait = float(max(1, math.ceil(a.wait)))
                if not _is_preflight(call) and _gate_gives_up(c, call, t, wait):
                    c.failed = True  # the step deadline passed while the gate waited for its turn
                    failed_by["gate_past_step_deadline"] += 1
                    continue
                nxt = _fold(c, st, j, t + wait)
                booked.add((i, s, nxt))
                heapq.heappush(heap, (t + wait, i, s, nxt, True))
                continue
        booked.discard((i, s, j))
        calls += 1
        if bucket.take(t, call.tokens):
            c.consecutive[call.caller] = 0
            if call.caller == "albgate":
                c.throttled_wait = 0.0
            if st.decisive[j] and t > due:
                c.shift += t - due
            if j + 1 < len(st.calls):
                heapq.heappush(heap, (max(t, c.due(st.calls[j + 1])), i, s, j + 1, False))
            continue
        throttled += 1
        c.throttled += 1
        c.consecutive[call.caller] += 1
        k = c.consecutive[call.caller]
        wait = _backoff(call, k, interval, f"{i}:{j}", preflight_retry, jitter)
        if wait is None:
            c.failed = True  # Preflight's retries exhausted: the Catch refuses the rollout
            failed_by["preflight_refused"] += 1
            continue
        if _is_preflight(call):
            c.preflight_retries = max(c.preflight_retries, k)
        elif call.caller == "albgate" and _gate_gives_up(c, call, t, wait):
            c.failed = True  # the gate throttled past the step deadline
            failed_by["gate_past_step_deadline"] += 1
            continue
        if t + wait - c.offset > EXECUTION_TIMEOUT_SECONDS:
            c.failed = True
            failed_by["execution_timed_out"] += 1
            continue
        heapq.heappush(heap, (t + wait, i, s, _fold(c, st, j, t + wait), True))
    slow = [c.shift / c.sched.rollout_seconds for c in copies if not c.failed and c.sched.rollout_seconds > 0]
    return {
        "n": n, "calls": calls, "throttled_calls": throttled, "budget_waits": budget_waits,
        "throttled_rollouts": sum(1 for c in copies if c.throttled),
        "failed_rollouts": sum(1 for c in copies if c.failed), "failed_by": dict(failed_by),
        "max_slowdown": max(slow, default=0.0),
        "preflight_retries_max": max((c.preflight_retries for c in copies), default=0),
        "slowdowns": slow,
    }


def replay_at(schedules: Sequence[Schedule], ns: Iterable[int], *, window: float, background: float, trials: int,
              preflight_retry: RetryPolicy | None, budget: BudgetSpec | None = None) -> list[dict[str, Any]]:
    """What N concurrent rollouts see, for each given N, over ``trials`` replays: throttled calls per replay
    (median, max), rollouts given up (max in one replay, total), why, and the slow-down of the rollouts that
    finished (median, p90 and max over every rollout of every trial), with the most Preflight retries used."""
    rows = []
    for n in ns:
        rs = [replay(schedules, n, window=window, background=background, seed=s, preflight_retry=preflight_retry,
                     budget=budget) for s in range(trials)]
        slow = [x for r in rs for x in r["slowdowns"]]
        rows.append({
            "n": n, "trials": trials,
            "throttled_calls_median": statistics.median(r["throttled_calls"] for r in rs),
            "throttled_calls_max": max(r["throttled_calls"] for r in rs),
            "budget_waits_median": statistics.median(r["budget_waits"] for r in rs),
            "throttled_rollouts_max": max(r["throttled_rollouts"] for r in rs),
            "failed_rollouts_max": max(r["failed_rollouts"] for r in rs),
            "failed_rollouts_total": sum(r["failed_rollouts"] for r in rs),
            "failed_by": dict(sum((Counter(r["failed_by"]) for r in rs), Counter())),
            "slowdown_median": statistics.median(slow) if slow else None,
            "slowdown_p90": percentile(slow, 90),
            "slowdown_max": max(slow, default=None),
            "rollouts_over_slow_limit": sum(1 for x in slow if x > 0.10),
            "rollouts": len(slow) + sum(r["failed_rollouts"] for r in rs),
            "preflight_retries_max": max(r["preflight_retries_max"] for r in rs),
        })
    return rows


def _next_n(n: int, fine: bool) -> int:
    """The concurrency grid: every N while ``fine`` (up to 100), then every 5th up to 200, then every 25th."""
    if fine and n < 100:
        return n + 1
    step = 5 if n < 200 else 25
    return (n // step + 1) * step


def concurrency_limits(schedules: Sequence[Schedule], *, window: float, background: float, trials: int,
                       preflight_retry: RetryPolicy | None, slow_limit: float = 0.10,
                       n_max: int = 400, budget: BudgetSpec | None = None) -> dict[str, Any]:
    """The largest N (every N' <= N on the grid passing in every trial) with (a) no throttled call, (b) no
    rollout failed and none slowed by more than ``slow_limit``, (c) no rollout failed (Preflight refused
    after its retries, a gate throttled past the step deadline, or the execution timed out). Grid: every N
    until (a) and (b) are found (at most to 100), then every 5th N up to 200 and every 25th up to ``n_max``,
    stopping at the first failure; when that failure follows a coarse step, the N skipped over are looked at
    too (each one after a step of 5, every 5th after a step of 25), so (c) is exact to 1 below 200 and to 5
    above."""
    no_throttle = ok = no_failure = 0
    first_throttle: dict[str, Any] | None = None
    first_bad: dict[str, Any] | None = None
    first_failed: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    n = 1
    todo: list[int] = []  # after a coarse step ended in a failure: the N skipped over, to look at first
    while n <= n_max:
        rs = [replay(schedules, n, window=window, background=background, seed=s, preflight_retry=preflight_retry,
                     budget=budget) for s in range(trials)]
        worst = {
            "n": n,
            "trials_with_throttling": sum(1 for r in rs if r["throttled_calls"]),
            "throttled_calls_max": max(r["throttled_calls"] for r in rs),
            "failed_rollouts_max": max(r["failed_rollouts"] for r in rs),
            "failed_by": dict(sum((Counter(r["failed_by"]) for r in rs), Counter())),
            "max_slowdown": max(r["max_slowdown"] for r in rs),
            "preflight_retries_max": max(r["preflight_retries_max"] for r in rs),
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
        elif not todo and rows[-2:-1] and n - rows[-2]["n"] > 1:
            # a failure after a coarse step: look at the N skipped over (every one if the step was 5, else
            # every 5th), so that "largest N without failure" is exact to the finer step
            gap = n - rows[-2]["n"]
            todo = list(range(rows[-2]["n"] + (1 if gap <= 5 else 5), n, 1 if gap <= 5 else 5)) + [n]
            rows.pop()
        else:
            first_failed = worst
            break
        if todo:
            n = todo.pop(0)
            continue
        n = _next_n(n, first_throttle is None or first_bad is None)
    return {"window_seconds": window, "background_calls_per_second": background, "trials": trials,
            "preflight_retry": preflight_retry.as_dict() if preflight_retry else None,
            "largest_n_without_throttling": no_throttle, "largest_n_within_slowdown": ok,
            "largest_n_without_failure": no_failure, "slow_limit": slow_limit, "first_throttled": first_throttle,
            "first_too_slow": first_bad, "first_failed": first_failed, "grid": rows}
