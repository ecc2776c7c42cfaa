"""Scenario files: every problem is one line naming the file and the field, and no scenario can run forever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from albgate.sim.scenario import MAX_REQUESTS, MAX_SECONDS, ScenarioError, load_scenario

SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def seed_with(**changes) -> str:
    data = yaml.safe_load(SEED_APP.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return yaml.safe_dump(data)


BAD_FILES = [
    # id, file content, what the one line must say
    pytest.param("name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (line 1", id="latin-1"),
    pytest.param("name: a\nseed: 1\nname: b\n", "key 'name' is given twice in one mapping (first at line 1)",
                 id="duplicate-top-level-key"),
    pytest.param("name: a\ntraffic:\n  rate_per_second: 5\n  rate_per_second: 50\n",
                 "key 'rate_per_second' is given twice", id="duplicate-nested-key"),
    pytest.param("name: [unclosed", "not valid YAML", id="bad-yaml"),
    pytest.param("- a list", "a scenario is a YAML mapping", id="not-a-mapping"),
    pytest.param("name: a\ntrafic: {}\n", "trafic", id="unknown-field"),
    pytest.param("name: a\nhorizon_seconds: soon\n", "horizon_seconds", id="wrong-type"),
]


@pytest.mark.parametrize("content,says", BAD_FILES)
def test_a_bad_scenario_file_is_one_clear_line(tmp_path, content, says):
    path = write(tmp_path, "bad.yaml", content)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and says in message


def test_a_directory_is_not_a_scenario(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read the scenario"):
        load_scenario(tmp_path)


OUT_OF_RANGE = [
    pytest.param({"horizon_seconds": MAX_SECONDS + 1}, "horizon_seconds", id="horizon-past-48h"),
    pytest.param({"traffic__rate_per_second": 1e9}, "rate_per_second", id="absurd-rate"),
    pytest.param({"app__readiness_probe": {"period_seconds": 0.000001}}, "period_seconds", id="probe-every-microsecond"),
    pytest.param({"controller__requeue_seconds": 1e-9}, "requeue_seconds", id="requeue-every-nanosecond"),
    pytest.param({"faults__describe_load": [{"at_seconds": 0, "rate_per_second": 1e7}]}, "rate_per_second",
                 id="describe-load-flood"),
    pytest.param({"traffic__rate_per_second": 2000, "horizon_seconds": MAX_SECONDS}, f"{MAX_REQUESTS:,}",
                 id="too-many-requests-in-all"),
]


@pytest.mark.parametrize("changes,field", OUT_OF_RANGE)
def test_a_scenario_that_would_not_finish_is_refused_naming_the_field(tmp_path, changes, field):
    path = write(tmp_path, "big.yaml", seed_with(**changes))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert field in str(caught.value)


def test_the_shipped_scenarios_are_within_the_bounds():
    for path in sorted(SEED_APP.parent.glob("*.yaml")):
        load_scenario(path)


def test_the_command_prints_one_line_and_no_traceback(tmp_path):
    # Given a scenario file saved in Latin-1 / When `albgate simulate` reads it
    path = write(tmp_path, "latin.yaml", "name: caf\xe9\n".encode("latin-1"))
    done = subprocess.run([sys.executable, "-m", "albgate.cli", "simulate", str(path)], capture_output=True,
                          text=True, check=False)
    # Then it exits 2 with one line on stderr
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "not UTF-8 text" in done.stderr
