"""`albgate demo`, driven as a user drives it: a subprocess, its table or JSON on stdout, progress on stderr,
pictures on disk, exit code 2 and one clear line for bad input.

The two full runs (table and --json) are shared by the tests of this module; the albgate strategy's CDK synth
is cached under .albgate-cache/, so only the first run after a change to stacks/ pays for it.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED_APP = ROOT / "scenarios" / "seed-app.yaml"
STRATEGIES = ("kubernetes-default", "readiness-gate", "albgate")
PICTURES = ("demo-timelines.png", "state-machine.png", *(f"timeline-{s}.png" for s in STRATEGIES))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def albgate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `albgate` console script (the one next to this interpreter, i.e. .venv/bin/albgate)."""
    script = Path(sys.executable).parent / "albgate"
    fallback = [sys.executable, "-c", "import sys; from albgate.cli import main; sys.exit(main())"]
    cmd = [str(script)] if script.exists() else fallback
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    return subprocess.run(cmd + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-json")
    proc = albgate("demo", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(proc.stdout), out


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-table")
    proc = albgate("demo", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc, out


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Rows of the side-by-side table, by strategy, cells split on runs of two or more spaces."""
    rows = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in STRATEGIES:
            rows[cells[0]] = cells
    return rows


def test_the_table_lists_the_three_strategies_side_by_side(table_run):
    # Given the example app, When `albgate demo` runs without --json
    proc, _ = table_run
    header = next(line for line in proc.stdout.splitlines() if line.startswith("strategy"))
    # Then one header names the columns and one row per strategy follows, in the documented order
    for column in ("outcome", "requests", "failed", "rollout s", "lower bound s", "DescribeTargetHealth",
                   "state transitions"):
        assert column in header
    rows = table_rows(proc.stdout)
    assert list(rows) == list(STRATEGIES)
    # And albgate's row says it dropped nothing and reports its lower bound; the others have none
    assert rows["albgate"][3] == "0"
    assert re.fullmatch(r"\d+\.\d", rows["albgate"][5])
    assert rows["kubernetes-default"][5] == "-" and rows["readiness-gate"][5] == "-"


def test_the_table_run_names_every_picture_it_wrote(table_run):
    proc, out = table_run
    for name in PICTURES:
        assert str(out / name) in proc.stdout


def test_progress_is_one_clean_line_per_rollout_when_stderr_is_not_a_terminal(table_run):
    # Given stderr captured (not a TTY), Then each rollout reports once, without carriage returns or escapes
    proc, _ = table_run
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    for i, name in enumerate(STRATEGIES, 1):
        lines = [line for line in proc.stderr.splitlines() if line.startswith(f"[{i}/3] {name}")]
        assert len(lines) == 1 and "simulated" in lines[0], proc.stderr


def test_json_holds_the_three_results_and_albgate_drops_nothing(json_run):
    # Given the example app, When `albgate demo --json` runs
    _, doc, _ = json_run
    results = doc["results"]
    # Then one object holds the three results, same scenario and seed
    assert set(results) == set(STRATEGIES)
    assert {r["seed"] for r in results.values()} == {doc["seed"]} and doc["scenario"] == "seed-app"
    # And the example app's problem shows (kubernetes-default drops requests) while albgate drops none
    assert results["kubernetes-default"]["failed_requests"] > 0
    assert results["albgate"]["failed_requests"] == 0
    assert results["albgate"]["outcome"] == "succeeded"
    assert results["albgate"]["state_transitions"] > 0
    # (its gate read the controller's conditions, its last drain the controller's checkpoint: no DescribeTargetHealth)
    assert results["albgate"]["describe_target_health_calls"] == 0
    for r in results.values():
        assert r["failed_requests"] == sum(r["failed_by_cause"].values())


def test_json_numbers_are_what_albgate_simulate_measures(json_run):
    # Given the demo's results, When the same scenario and seed run through `simulate()` without the recorder
    from albgate.cli.common import resolve_strategy
    from albgate.sim import load_scenario, simulate

    _, doc, _ = json_run
    scenario = load_scenario(SEED_APP)
    for name in STRATEGIES:
        plain = simulate(scenario, resolve_strategy(name), doc["seed"]).to_json()
        # Then watching the world changed nothing
        for key in ("outcome", "requests", "failed_requests", "failed_by_cause", "rollout_seconds",
                    "describe_target_health_calls", "state_transitions", "events"):
            assert doc["results"][name][key] == plain[key], (name, key)


@pytest.mark.parametrize("name", PICTURES)
def test_every_picture_is_a_real_png(json_run, name):
    # Given the --json run's output directory, Then each picture is a PNG of real size, not an empty canvas
    _, doc, out = json_run
    data = (out / name).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width >= 800 and height >= 600
    assert str(out / name) in doc["pictures"].values()


BAD = [
    ("missing-scenario", ["--scenario", "no/such/scenario.yaml"], "cannot read the scenario"),
    ("invalid-field", ["--scenario", "{bad}"], "app.replicas"),
    ("out-is-a-file", ["--out", "{file}/pictures"], "--out"),
]


@pytest.mark.parametrize("case,args,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line_naming_the_problem(tmp_path, case, args, message):
    # Given a bad scenario or an --out that cannot be a directory
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\napp:\n  replicas: -1\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    argv = [a.format(bad=bad, file=a_file) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    # When `albgate demo` runs
    proc = albgate("demo", *argv)
    # Then it exits 2 with one line that names the problem, no traceback, and nothing on stdout
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
