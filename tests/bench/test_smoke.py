"""Each benchmark script runs on a tiny sample and writes the keys docs/benchmarks.md reads. NOT timed: no
threshold on any duration; the scripts run in child processes, one worker, two seeds of one scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench

STRATEGIES = ["kubernetes-default", "readiness-gate", "hardened-readiness-gate", "ideal-poller", "albgate"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def safety(out):
    result, stdout = run_bench("bench_safety.py", "--seeds", "2", "--scenarios", "seed-app", "--workers", "1",
                               out=out)
    return result, stdout


def test_safety_reports_every_strategy_per_scenario(safety):
    # Given 2 seeds of seed-app / When bench_safety runs / Then every strategy has its totals and its 2 runs
    result, stdout = safety
    assert {"machine", "command", "template_key", "seeds", "albgate_seeds", "summary", "runs",
            "albgate_runs_with_failed_requests"} <= set(result)
    assert set(result["summary"]["seed-app"]) == set(STRATEGIES)
    for strategy, t in result["summary"]["seed-app"].items():
        runs = [r for r in result["runs"] if r["strategy"] == strategy]
        assert sorted(r["seed"] for r in runs) == [1, 2]
        assert t["failed_requests"] == sum(r["failed_requests"] for r in runs)
        assert t["runs_with_failures"] == sum(1 for r in runs if r["failed_requests"])
        assert {"failed_rate", "outcomes", "max_failed_in_a_run", "worst_seed", "failed_by_cause"} <= set(t)
    assert "| seed-app |" in stdout


def test_safety_lists_every_albgate_run_that_dropped_a_request(safety):
    result, _ = safety
    dropped = [r for r in result["runs"] if r["strategy"] == "albgate" and r["failed_requests"]]
    assert len(result["albgate_runs_with_failed_requests"]) == len(dropped)
    assert all(f["reproduce"].startswith(".venv/bin/albgate simulate ")
               for f in result["albgate_runs_with_failed_requests"])


def test_speed_ratios_come_from_the_safety_runs(safety, out):
    # Given the safety result / When bench_speed reads it / Then each ratio has one value per succeeded seed
    result, _ = run_bench("bench_speed.py", "--from", str(out / "safety.json"), out=out)
    s = result["speed"]["seed-app"]
    succeeded = [r for r in safety[0]["runs"] if r["strategy"] == "albgate" and r["outcome"] == "succeeded"]
    assert s["over_lower_bound"]["n"] == len(succeeded)
    assert {"median", "p90", "max"} <= set(s["over_lower_bound"])
    assert {"over_hardened-readiness-gate", "over_readiness-gate", "over_ideal-poller"} <= set(s)
    # And the ideal poller's own ratio, and how many seeds of each exceed the 1.25x speed target
    ideal = [r for r in safety[0]["runs"] if r["strategy"] == "ideal-poller" and r["outcome"] == "succeeded"]
    assert s["ideal_over_lower_bound"]["n"] == len(ideal) == 2
    assert s["seeds_over_target"] == sum(1 for r in succeeded if r["rollout_seconds"] > 1.25 * r["lower_bound_seconds"])


def test_cost_counts_and_replay_and_leaves_the_rollout_unchanged(safety, out):
    # Given the instrumented albgate run on the same seeds / When bench_cost runs a small replay
    result, stdout = run_bench("bench_cost.py", "--seeds", "2", "--scenarios", "seed-app", "--workers", "1",
                               "--trials", "2", "--windows", "0", "--background", "0", "--max-n", "60",
                               "--replay-scenarios", "seed-app", out=out)
    per = result["per_scenario"]["seed-app"]
    assert {"albgate_describe_target_health", "state_transitions", "invocations", "gb_seconds_assumed",
            "usd_total_assumed", "albgate_describe_target_health_per_step"} <= set(per)
    assert {"prices_usd", "prices_date", "assumed_invocation_seconds", "memory_mb_by_function"} <= set(result)
    (conc,) = result["concurrency"]
    assert {"largest_n_without_throttling", "largest_n_within_slowdown", "grid"} <= set(conc)
    # the replay retries Preflight exactly as the synthesized state machine does, read from the template
    assert conc["preflight_retry"] == result["replay"]["preflight_retry"] == _template_preflight_retry()
    (at,) = result["at_n"]
    assert [row["n"] for row in at["rows"]] == [28, 50, 75, 100, 150, 200]
    # every Describe* call albgate made is attributed to the function that made it
    calls = [c for r in result["runs"] for c in r["describe_calls"]]
    assert {c[5] for c in calls if c[1] == "albgate"} == {"Preflight", "CheckTargetHealth", "VerifyDrain"}
    assert all(c[6] is not None for c in calls if c[5] in ("CheckTargetHealth", "VerifyDrain"))
    # Then the hooks changed nothing: the same rollout as bench_safety's albgate run on each seed
    plain = {r["seed"]: r for r in safety[0]["runs"] if r["strategy"] == "albgate"}
    for r in result["runs"]:
        assert r["rollout_seconds"] == pytest.approx(plain[r["seed"]]["rollout_seconds"], abs=1e-3)
        assert r["state_transitions"] == plain[r["seed"]]["state_transitions"]
        assert r["albgate_describe_target_health"] == plain[r["seed"]]["describe_target_health_calls"]
        assert r["invocations"] == sum(r["invocations_by_function"].values())


def _template_preflight_retry() -> dict:
    import _common
    from albgate.template import synthesized_template

    return _common.template_retry_policy(synthesized_template()).as_dict()


def test_latency_varies_only_the_task_time(safety, out):
    # Given the safety runs / When bench_latency runs the same seeds at 0 and 0.3 s per Lambda task
    result, stdout = run_bench("bench_latency.py", "--seeds", "2", "--scenarios", "seed-app", "--workers", "1",
                               "--task-seconds", "0", "0.3", out=out)
    e = result["latency"]["seed-app"]
    assert set(e) == {"ideal-poller", "0", "0.3"}
    assert {"over_lower_bound", "seeds_over_target", "last_drain_lag_seconds", "failed_requests"} <= set(e["0.3"])
    # Then at 0.3 s (the shipped LAMBDA_SECONDS) each run is bench_safety's albgate run on that seed
    plain = {r["seed"]: r for r in safety[0]["runs"] if r["strategy"] == "albgate"}
    at = {r["seed"]: r for r in result["runs"] if r["task_seconds"] == 0.3}
    assert sorted(at) == [1, 2]
    for seed, r in at.items():
        assert r["rollout_seconds"] == pytest.approx(plain[seed]["rollout_seconds"], abs=1e-3)
        assert r["lower_bound_seconds"] == pytest.approx(plain[seed]["lower_bound_seconds"], abs=1e-3)
    # And instant tasks change the time, never the lower bound; the ideal poller sees the last drain end
    zero = {r["seed"]: r for r in result["runs"] if r["task_seconds"] == 0}
    assert all(zero[s]["lower_bound_seconds"] == at[s]["lower_bound_seconds"] for s in at)
    assert any(zero[s]["rollout_seconds"] != at[s]["rollout_seconds"] for s in at)
    assert e["ideal-poller"]["last_drain_lag_seconds"]["max"] == 0
    assert "albgate, 0.3 s per task" in stdout


def test_latency_refuses_a_negative_task_time(out):
    with pytest.raises(AssertionError, match="--task-seconds"):
        run_bench("bench_latency.py", "--seeds", "1", "--task-seconds", "-1", out=out)


def test_startup_measures_the_health_check_import(out):
    # Given the venv only (no pip bundling) / When bench_startup runs once / Then the health check is measured
    result, _ = run_bench("bench_startup.py", "--skip-bundle", "--repeat", "1", "--modules", "check_target_health",
                          out=out)
    labels = {r["label"] for r in result["rows"]}
    assert labels == {"lambdas.handlers.check_target_health", "check_target_health + first invocation's adapters"}
    assert {"import_ms_median", "wall_ms_over_python_median", "kubernetes", "heavy", "ms_by_package"} <= set(
        result["rows"][0])
    assert {"health_check_imports_kubernetes", "health_check_import_ms", "target_ms"} <= set(result["verdict"])
    assert result["asset"] is None
