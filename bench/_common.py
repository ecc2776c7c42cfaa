"""What the benchmark scripts share: the scenario list, a two-process pool, result files, tables and statistics.

Job: keep bench_safety / bench_speed / bench_latency / bench_cost / bench_startup short and consistent: every
script prints Markdown tables, writes one JSON file under out/bench/ (git-ignored) that holds the machine, the
command and every per-run record the tables were computed from, and with ``--write-docs`` writes the same
tables into docs/results/<name>.md under a header naming the command, the machine and the commit.
Invariant: nothing here changes a rollout. The simulation runs are ``albgate.sim.simulate`` / ``run_strategy``
with the registered strategies and the ``albgate-bench`` strategy (albgate_bench.py: the ``albgate`` strategy
with read-only hooks), registered in every worker. At most ``MAX_WORKERS`` (2) processes run at once: the
machine has 2 cores shared with other work, and one moto machine opens per process. The Describe* replay is
replay.py.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from albgate_bench import register_bench_strategy

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "scenarios"
OUT_DIR = ROOT / "out" / "bench"
DOCS_RESULTS = ROOT / "docs" / "results"  # the generated results files (--write-docs); the docs link to them
DOCS_DO_NOT_EDIT = "Do not edit: re-run the command."
MAX_WORKERS = 2
ALBGATE = "albgate"
# The ideal poller is not a baseline users run; it is the bound for pollers (docs/benchmarks.md, section 2)
IDEAL_POLLER = "ideal-poller"
# argo-rollouts is the peer a release engineer would pick instead (albgate/sim/argo_strategy.py)
BASELINES = ("kubernetes-default", "readiness-gate", "hardened-readiness-gate", "argo-rollouts", IDEAL_POLLER)
STRATEGIES = (*BASELINES, ALBGATE)
SUCCEEDED = "succeeded"
TARGET_RATIO = 1.25  # albgate's speed target: rollout_seconds / lower_bound_seconds at most this
# ... per scenario over its seeds: the median at most MEDIAN_TARGET and the 99th percentile at most TARGET_RATIO
MEDIAN_TARGET = 1.10


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
        # uncommitted files that could change a run: the results the benchmarks write themselves are not (one
        # script's output must not mark the next one's run dirty)
        "git_dirty_files": _git("status", "--porcelain", "--", ".",
                                f":(exclude){DOCS_RESULTS.relative_to(ROOT).as_posix()}").splitlines(),
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


def add_write_docs(ap: Any, name: str) -> None:
    """The ``--write-docs [DIR]`` option every benchmark script has: also write its tables to DIR/<name>.md
    (default docs/results/, the only home of the tables the docs link to)."""
    ap.add_argument("--write-docs", nargs="?", type=Path, const=DOCS_RESULTS, default=None, metavar="DIR",
                    help=f"also write the tables to DIR/{name}.md under a generated-file header "
                         f"(default DIR: {DOCS_RESULTS.relative_to(ROOT)})")


def docs_header(info: dict[str, Any], *, sample: str, template_key: str | None = None,
                source: str | None = None) -> str:
    """The header line of a generated results file: the command that wrote it, the sample, where (machine,
    commit and uncommitted files, template key) and when, and that it is not to be edited by hand."""
    dirty = len(info.get("git_dirty_files") or [])
    commit = f"commit `{info.get('git_commit') or 'unknown'}`" + (f" with {dirty} uncommitted files" if dirty else "")
    key = f", template key `{template_key}`" if template_key else ""
    load = info.get("load_average_at_start") or []
    where = (f"{info.get('implementation', 'Python')} {info.get('python', '?')} on {info.get('cpu', '?')} "
             f"({info.get('cpus', '?')} CPUs, load {load[0] if load else '?'} at the start)")
    src = f", from the runs of `{source}`" if source else ""
    return (f"> Generated by `{command_line()}`{src} ({sample}) on {info.get('date_utc', '?')}: {commit}"
            f"{key}; {where}. {DOCS_DO_NOT_EDIT}")


def write_docs(directory: Path, name: str, title: str, header: str, body: str) -> Path:
    """Write ``directory/<name>.md``: a title, the header line, then the tables as the script printed them."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(f"# {title}\n\n{header}\n\n{body.strip()}\n")
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


def pair(counts: dict[str, int], caller: str, other: str = "controller") -> str:
    """"a / b": ``caller``'s count beside ``other``'s (0 for one absent), as the fleet tables show calls by caller."""
    return f"{counts.get(caller, 0)} / {counts.get(other, 0)}"


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
        return {"n": 0, "median": None, "p90": None, "p99": None, "max": None, "min": None}
    return {"n": len(xs), "median": statistics.median(xs), "p90": percentile(xs, 90), "p99": percentile(xs, 99),
            "max": max(xs), "min": min(xs)}


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
