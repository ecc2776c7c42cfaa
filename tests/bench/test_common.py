"""The pure functions of bench/_common.py, bench/bench_startup.py and bench/bench_latency.py: statistics, tables,
the -X importtime parser and the last drain's lag; and what a run's header counts as uncommitted (git in a temporary
checkout). Fast: no simulation."""

from __future__ import annotations

import subprocess

import pytest

import _common as c
import bench_latency
import bench_startup

PERCENTILES = [
    # (values, q, expected): nearest rank, always an observed value
    ([3.0], 90, 3.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 90, 9.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 50, 5.0),
    ([10.0, 1.0], 100, 10.0),
    ([], 90, None),
]


@pytest.mark.parametrize("values, q, expected", PERCENTILES, ids=["one", "p90-of-10", "p50-of-10", "max", "empty"])
def test_percentile_is_nearest_rank(values, q, expected):
    assert c.percentile(values, q) == expected


RATES = [(0, 100, "0"), (1, 3, "33.3 %"), (5, 0, "-"), (1, 100000, "0.001 %")]


@pytest.mark.parametrize("failed, requests, text", RATES, ids=["none", "third", "no-requests", "tiny"])
def test_failed_rate_prints_exact_zero_as_zero(failed, requests, text):
    assert c.fmt_rate(failed, requests) == text


def test_markdown_table_aligns_first_column_left_and_numbers_right():
    # Given two columns / When rendered / Then the separator row says left then right
    assert c.markdown_table(["a", "b"], [["x", 1]]).splitlines() == ["| a | b |", "|---|---:|", "| x | 1 |"]


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   encodings.aliases
import time:       900 |       1000 | encodings
import time:      1000 |       1000 | site
import time:       300 |        300 |     lambdas
import time:       200 |        500 |   lambdas.handlers
import time:      4000 |       4000 |     kubernetes.client
import time:      1000 |       5000 |   kubernetes
import time:       500 |       6000 | lambdas.handlers.x
"""


def test_importtime_counts_only_what_the_handler_import_pulled_in():
    # Given -X importtime output with the interpreter's start-up imports first
    r = bench_startup.parse_importtime(IMPORTTIME)
    # Then the start-up lines are left out and the handler's subtree is summed from its self times
    assert r["import_ms"] == pytest.approx(6.0)
    assert r["process_imports_ms"] == pytest.approx(8.0)
    assert r["kubernetes"] is True and r["heavy"] == ["kubernetes"]


def test_importtime_without_a_lambdas_import_is_an_error():
    with pytest.raises(RuntimeError, match="no `lambdas` import"):
        bench_startup.parse_importtime(IMPORTTIME.split("import time:       300")[0])


def test_pair_shows_a_callers_count_beside_the_controllers_and_zero_for_one_absent():
    assert c.pair({"albgate": 3, "controller": 12}, "albgate") == "3 / 12"
    assert c.pair({"controller": 5}, "readiness-gate") == "0 / 5"
    assert c.pair({}, "albgate", other="other") == "0 / 0"


def test_a_run_is_dirty_for_uncommitted_code_not_for_the_results_the_benchmarks_write(tmp_path, monkeypatch):
    # Given a checkout with one committed file, then a changed results file, a new one and a changed source file
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    (results / "safety.md").write_text("a\n")
    (tmp_path / "poll.py").write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    (results / "safety.md").write_text("b\n")
    (results / "new.md").write_text("b\n")
    (tmp_path / "poll.py").write_text("b\n")
    monkeypatch.setattr(c, "ROOT", tmp_path)
    monkeypatch.setattr(c, "DOCS_RESULTS", results)
    # Then only the source file makes the run dirty
    assert c.machine()["git_dirty_files"] == ["M poll.py"]


def _timeline(end: float, *lag_ends: float) -> list[tuple[float, str, str]]:
    events = [(t, "target", f"target 10.0.0.{i} in tg gets no new requests 10.0 s after its deregistration began")
              for i, t in enumerate(lag_ends)]
    return sorted([*events, (5.0, "pod", "pod web-a gone"), (end, "rollout", "rollout ended: succeeded after 80 s")])


def test_the_last_drains_lag_counts_from_the_last_old_target_even_past_the_end():
    # a drain that waited for the lag ends after it; one the checkpoint proved may end before it (negative)
    assert bench_latency.last_drain_lag(_timeline(100.0, 60.0, 98.5)) == 1.5
    assert bench_latency.last_drain_lag(_timeline(100.0, 60.0, 104.0)) == -4.0
    assert bench_latency.last_drain_lag(_timeline(100.0)) is None
    assert bench_latency.last_drain_lag([(3.0, "target", "target x gets no new requests 10.0 s after")]) is None
