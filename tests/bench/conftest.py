"""Shared set-up for the benchmark smoke tests: bench/ (scripts, not a package) on sys.path, and a runner that
starts a bench script in a child process (the scripts pin a template and register a strategy in the process
they run in, which must not leak into the test session).

Nothing here times anything: these tests check that the scripts run on a tiny sample and write the result
keys docs/benchmarks.md relies on, and the results files (--write-docs) into a temporary folder, never into
docs/results/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def run_script(script: str, *args: str, timeout: float = 600) -> str:
    """Run bench/<script> with ``args`` in a child process; return its stdout."""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    p = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout, check=False)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def run_bench(script: str, *args: str, out: Path, timeout: float = 600,
              name: str | None = None) -> tuple[dict[str, Any], str]:
    """Run bench/<script> with ``--out out`` in a child process; return its JSON result (``name``.json, by default
    the script's name without ``bench_``) and its stdout."""
    stdout = run_script(script, *args, "--out", str(out), timeout=timeout)
    name = name or script.removeprefix("bench_").removesuffix(".py")
    return json.loads((out / f"{name}.json").read_text()), stdout


def docs_tables(path: Path) -> list[str]:
    """The table lines of a results file written with --write-docs (everything that starts with '|')."""
    return [line for line in path.read_text().splitlines() if line.startswith("|")]
