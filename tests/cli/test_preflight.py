"""`albgate preflight`: the report on the simulated cluster of a scenario (each risk with its fix, exit 1 on an
error-level risk, 0 when clean), as JSON for scripts, and advice when it cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED_APP = str(ROOT / "scenarios" / "seed-app.yaml")
# The example app with no risk left: hardened, namespace labelled before its pods, webhook failurePolicy Fail.
CLEAN = """\
name: clean
traffic: {rate_per_second: 0}
app: {pre_stop_sleep_seconds: 30, termination_grace_period_seconds: 60, max_unavailable: 0}
namespace: {inject_label: before_pods}
controller: {webhook_failure_policy: Fail}
"""
APP = ["--namespace", "readiness", "--deployment", "nginx-app"]


def test_seed_app_risks_each_with_a_fix(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the example app as it is (namespace unlabelled, no preStop)
    # When the report runs on its simulated cluster
    code = main(["preflight", "--simulate", SEED_APP, *APP])
    # Then it exits 1 and prints each risk followed by its fix
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("albgate preflight report for cluster my-cluster")
    lines = out.splitlines()
    risks = [i for i, line in enumerate(lines) if line.startswith(("[ERROR]", "[WARNING]"))]
    assert len(risks) >= 3
    assert all(lines[i + 1].startswith("    fix: ") for i in risks)
    assert "pod-readiness-gate-inject" in out and "preStop" in out


@pytest.mark.parametrize(("flags", "code", "codes"), [
    pytest.param([], 0, set(), id="clean"),
    pytest.param(["--strict"], 0, set(), id="clean-strict"),
], )
def test_clean_cluster_exits_0(flags: list[str], code: int, codes: set[str], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    # Given a scenario with no risk
    scenario = tmp_path / "clean.yaml"
    scenario.write_text(CLEAN)
    # When the report runs as JSON
    result = main(["preflight", "--simulate", str(scenario), *APP, "--json", *flags])
    # Then it says ok, with no risk, and exits 0
    report = json.loads(capsys.readouterr().out)
    assert result == code == report["exit_code"]
    assert report["ok"] is True and {r["code"] for r in report["risks"]} == codes


def test_json_lists_codes_and_fixes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--simulate", SEED_APP, *APP, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {"namespace-unlabelled", "missing-prestop", "pods-without-gates"} <= {r["code"] for r in report["risks"]}
    assert all(r["fix"] for r in report["risks"]) and report["ok"] is False and report["exit_code"] == 1


def test_a_whole_namespace_is_checked_without_deployment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--simulate", SEED_APP, "--namespace", "readiness"]) == 1
    assert "Deployment readiness/nginx-app" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "advice"), [
    pytest.param(["preflight", "--simulate", "nope.yaml", *APP], "cannot read the scenario", id="scenario-missing"),
    pytest.param(["preflight", *APP], "--cluster is required", id="no-cluster"),
    pytest.param(["preflight", "--cluster", "my-cluster", *APP], "no AWS Region is set", id="no-region"),
])
def test_cannot_run_is_advice(argv: list[str], advice: str, no_aws: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    # Given no AWS configuration at all
    # When the report cannot run
    code = main(argv)
    # Then it exits 2 with what to do
    err = capsys.readouterr().err
    assert code == 2
    assert advice in err and "Traceback" not in err


def test_no_credentials_is_advice(no_aws: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert main(["preflight", "--cluster", "my-cluster", *APP]) == 2
    assert "no AWS credentials found" in capsys.readouterr().err


def test_real_adapters_unknown_cluster_is_advice(moto_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an account (moto) with no EKS cluster named ghost
    # When the report runs through the real adapters
    code = main(["preflight", "--cluster", "ghost", *APP])
    # Then it exits 2 saying the cluster was not found, no traceback
    err = capsys.readouterr().err
    assert code == 2
    assert "ghost" in err and "NotFoundError" in err and "Traceback" not in err
