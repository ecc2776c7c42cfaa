"""`albgate simulate`: one JSON object with --json, a timeline without, exit 2 with one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from albgate.cli import main
from tests.sim.conftest import SCENARIOS

SEED = str(SCENARIOS / "seed-app.yaml")


def test_json_output_has_the_contract_fields(capsys):
    assert main(["simulate", SEED, "--json", "--seed", "3", "--strategy", "kubernetes-default"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("outcome", "requests", "failed_requests", "failed_by_cause", "rollout_seconds",
                "lower_bound_seconds", "describe_target_health_calls", "state_transitions", "final_image"):
        assert key in out
    assert (out["seed"], out["strategy"], out["final_image"]) == (3, "kubernetes-default", "ikubernetes/myapp:v2")


def test_readable_output_has_a_timeline_and_a_summary(capsys):
    assert main(["simulate", SEED, "--strategy", "readiness-gate"]) == 0
    out, err = capsys.readouterr()
    assert "simulating seed-app with readiness-gate" in err
    assert "rollout starts" in out and "Ready=True" in out and "outcome" in out and "lower bound" in out


BAD = [
    ("missing-file", ["simulate", "nope.yaml"], "cannot read"),
    ("unknown-strategy", ["simulate", SEED, "--strategy", "magic"], "unknown strategy 'magic'"),
]


@pytest.mark.parametrize("case,argv,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_clear_line(case, argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_invalid_scenario_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\napp:\n  replicas: -1\n")
    assert main(["simulate", str(bad)]) == 2
    assert "app.replicas" in capsys.readouterr().err


def test_help_names_every_strategy_the_simulation_registers(capsys, monkeypatch):
    # Given every strategy the product registers, the lazily imported ones included, in a fresh process (tests in
    # this one register strategies of their own)
    from albgate.cli.simulate import STRATEGIES

    code = ("from albgate.cli.common import LAZY_STRATEGIES, resolve_strategy; "
            "[resolve_strategy(n) for n in LAZY_STRATEGIES]; "
            "from albgate.sim.strategies import strategy_names; print(' '.join(strategy_names()))")
    registered = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # Then --help's list is exactly that registry
    assert sorted(STRATEGIES) == sorted(registered.split())
    monkeypatch.setenv("COLUMNS", "400")  # argparse would break a name at its hyphens
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in STRATEGIES)


def test_a_lazy_strategy_whose_module_is_missing_says_how_to_get_it(monkeypatch):
    from albgate.cli import UsageError
    from albgate.cli import common

    monkeypatch.setattr(common, "LAZY_STRATEGIES", {"elsewhere": "albgate.sim.not_installed"})
    with pytest.raises(UsageError, match=r"strategy 'elsewhere' needs the module albgate.sim.not_installed, which "
                                         r"this installation lacks \(reinstall albgate: ./dev demo\); available: "):
        common.resolve_strategy("elsewhere")
