"""`albgate watch` (and `start --wait`): an execution followed from its history in moto, one line per state with
the step, mode, gate and drain, and the exit code of the outcome; the history read page by page, each event
once, with a progress line when nothing changes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from albgate.cli import main
from albgate.cli.watch import Watcher, summarise_state
from tests.cli.conftest import REGION, SEED_FLAGS, create_state_machine, rollout_state

ENDS = [
    pytest.param("succeed", 0, "SUCCEEDED", id="succeeded"),
    pytest.param("rolled-back", 3, "ROLLED BACK", id="rolled-back"),
    pytest.param("failed", 1, "FAILED", id="failed"),
]


def start(arn: str, name: str = "run") -> str:
    return boto3.client("stepfunctions").start_execution(stateMachineArn=arn, name=name, input="{}")["executionArn"]


@pytest.mark.parametrize(("end", "code", "verdict"), ENDS)
def test_watch_follows_the_execution_and_exits_with_its_outcome(end: str, code: int, verdict: str, moto_aws: None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Given an execution of a one-step rollout that ends as `end`
    execution = start(create_state_machine(end))
    # When it is watched
    result = main(["watch", execution, "--poll-seconds", "0.05"])
    # Then the exit code is the outcome's, and the lines tell the step, the gate, the drain and the end
    out = capsys.readouterr().out
    assert result == code, out
    assert "Check Target Health" in out and "step 1/3 (1 new pods)  rollout  gate WAITING 0/1 healthy" in out
    assert "Wait For Health Check" in out
    assert "drain PASSED" in out
    assert "Targets Healthy?" not in out  # decisions are not lines of their own
    assert verdict in out
    assert f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/" in out
    if end == "rolled-back":
        assert "previous revision is serving again" in out and "step 2 gate FAILED" in out
    if end == "failed":
        assert "DrainNotVerified" in out and "old targets still routable" in out


@pytest.mark.parametrize(("end", "code", "status", "error"), [
    pytest.param("succeed", 0, "SUCCEEDED", None, id="succeeded"),
    pytest.param("rolled-back", 3, "FAILED", "RolledBack", id="rolled-back"),
])
def test_json_is_one_object_per_event_then_a_summary(end: str, code: int, status: str, error: str | None,
                                                      moto_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a finished-or-running execution
    execution = start(create_state_machine(end))
    # When watched with --json
    assert main(["watch", execution, "--json", "--poll-seconds", "0.05"]) == code
    # Then every line is a JSON object: one per history event (ids increasing, none twice), then the summary
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    events, summary = lines[:-1], lines[-1]
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)) and ids[0] == 1
    assert events[0]["type"] == "ExecutionStarted"
    gate = next(e for e in events if e.get("state") == "Check Target Health" and e["type"].endswith("Exited"))
    assert gate["summary"]["gate"]["status"] == "WAITING" and gate["summary"]["step"] == 1
    assert summary["type"] == "Summary" and summary["status"] == status and summary["exit_code"] == code
    assert summary.get("error") == error


def test_start_wait_watches_until_the_end(moto_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a state machine that rolls back
    arn = create_state_machine("rolled-back")
    # When a rollout is started with --wait
    code = main(["start", *SEED_FLAGS, "--state-machine-arn", arn, "--wait", "--poll-seconds", "0.05"])
    # Then it prints the execution, follows it and exits 3
    out = capsys.readouterr().out
    assert code == 3
    assert out.startswith("started arn:aws:states:") and "ROLLED BACK" in out


@pytest.mark.parametrize(("arn", "advice"), [
    pytest.param(f"arn:aws:states:{REGION}:123456789012:execution:Rollout:never", "no execution", id="unknown"),
    pytest.param("nginx-app-1700000000", "is not an execution ARN", id="a-name-not-an-arn"),
])
def test_unknown_execution_is_advice(arn: str, advice: str, moto_aws: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", arn]) == 2
    err = capsys.readouterr().err
    assert advice in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------
# The loop itself, on a scripted history: pages, each event once, progress when quiet
# ---------------------------------------------------------------------------------------------------------
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
ARN = f"arn:aws:states:{REGION}:123456789012:execution:Rollout:x"


def ev(i: int, etype: str, seconds: float, **details: Any) -> dict[str, Any]:
    return {"id": i, "type": etype, "timestamp": T0 + timedelta(seconds=seconds), **details}


def exited(i: int, name: str, seconds: float, state: dict) -> dict[str, Any]:
    return ev(i, "TaskStateExited", seconds, stateExitedEventDetails={"name": name, "output": json.dumps(state)})


class ScriptedSfn:
    """A Step Functions client whose history grows by one batch per read of the last page."""

    def __init__(self, batches: list[list[dict[str, Any]]], page_size: int = 2) -> None:
        self.batches, self.page_size = batches, page_size
        self.events: list[dict[str, Any]] = []
        self.reads = 0

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        done = not self.batches and any(e["type"].startswith("Execution") and e["type"] != "ExecutionStarted"
                                        for e in self.events)
        return {"startDate": T0, "status": "SUCCEEDED" if done else "RUNNING"}

    def get_execution_history(self, executionArn: str, maxResults: int, reverseOrder: bool,
                              nextToken: str | None = None) -> dict[str, Any]:
        assert reverseOrder is False
        start = int(nextToken or 0)
        if start == 0 and self.batches:
            self.events += self.batches.pop(0)
        self.reads += 1
        page = {"events": self.events[start:start + self.page_size]}
        if start + self.page_size < len(self.events):
            page["nextToken"] = str(start + self.page_size)
        return page


def test_each_event_once_across_pages_and_progress_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a history that grows over several reads, three events a time, two events a page, with quiet reads
    batches = [
        [ev(1, "ExecutionStarted", 0), ev(2, "TaskStateEntered", 1, stateEnteredEventDetails={"name": "Start Step"}),
         exited(3, "Start Step", 2, rollout_state(0))],
        [],
        [],
        [exited(4, "Check Target Health", 40, rollout_state(0, gate="PASSED", healthy=1)),
         exited(5, "Rollback: Verify Drain", 70, rollout_state(0, drain="FAILED", mode="rollback")),
         ev(6, "ExecutionSucceeded", 71, executionSucceededEventDetails={"output": json.dumps(rollout_state(2))})],
    ]
    sfn = ScriptedSfn(batches)
    ticks = iter(range(0, 10_000, 30))  # every loop is 30 s of wall time
    sleeps: list[float] = []
    # When it is watched with a 45 s quiet threshold
    code = Watcher(sfn, ARN, REGION, json_lines=False, poll_seconds=5, quiet_seconds=45,
                   sleep=sleeps.append, clock=lambda: next(ticks)).run()
    out = capsys.readouterr().out
    # Then every event shows once, the gate and rollback drain lines carry the step and time waited,
    # a progress line appeared during the quiet reads, and the watcher slept poll_seconds between reads
    assert code == 0
    assert sum(line.startswith("+0:02  Start Step") for line in out.splitlines()) == 1, out
    assert "+0:40  Check Target Health" in out and "gate PASSED 1/1 healthy" in out and "waited 39 s in this step" in out
    assert "Rollback: Verify Drain" in out and "rollback  drain FAILED" in out
    assert "... still running (last: Start Step exited" in out and "nothing new for 60 s" in out
    assert set(sleeps) == {5}
    assert "SUCCEEDED after 1:11" in out


SUMMARIES = [
    pytest.param(rollout_state(1), {"step": 2, "steps": 3, "target_pods": 2, "mode": "rollout"}, id="mid-rollout"),
    pytest.param(rollout_state(-1), {"plan": [1, 2, 3], "mode": "rollout"}, id="before-step-1"),
    pytest.param({"request": {}}, {}, id="not-a-rollout-state"),
    pytest.param("just text", {}, id="not-an-object"),
]


@pytest.mark.parametrize(("state", "expected"), SUMMARIES)
def test_summary_keeps_the_useful_part(state: Any, expected: dict) -> None:
    summary = summarise_state(state)
    assert {k: summary[k] for k in expected} == expected
    assert set(expected) <= set(summary)
    if not expected:
        assert summary == {}


def test_the_gate_line_shows_each_target_group() -> None:
    # Given a Check Target Health output with two target groups, the second still checking its new target
    state = rollout_state(0, healthy=0, gate="WAITING")
    state["gate"]["groups"] = [
        {"target_group": "k8s-shop-web-1a2b", "service": "web", "healthy": 1, "initial": 0, "unhealthy": 0,
         "draining": 0, "unregistered": 0},
        {"target_group": "k8s-shop-api-3c4d", "service": "api", "healthy": 0, "initial": 1, "unhealthy": 0,
         "draining": 0, "unregistered": 0},
    ]
    # When the watcher summarises it / Then the line names each group with its new targets' states
    from albgate.cli.watch import _gate_text
    line = _gate_text(summarise_state(state)["gate"])
    assert "[k8s-shop-web-1a2b: 1 healthy; k8s-shop-api-3c4d: 1 initial]" in line


def test_the_lines_of_the_looks_show_what_the_analysis_of_the_alb_metrics_concluded() -> None:
    # Given a Verify Drain output whose look read the ALB metrics (policy.analysis)
    state = rollout_state(0)
    state["drain"] = {"status": "DRAINING", "reason": "1 old target(s) out of the pool, draining"}
    state["analysis"] = "k8s-shop-web-1a2b: no regression over 3 period(s): 5xx 21 of 1800 requests"
    # When the watcher writes its line / Then the line carries the conclusion after the drain
    w = Watcher(ScriptedSfn([]), ARN, REGION, json_lines=False, poll_seconds=5, quiet_seconds=45)
    line = w._state_line("+5:10", "Verify Drain", "Verify Drain", summarise_state(state), entering=False, ts=None)
    assert line.endswith("drain DRAINING (1 old target(s) out of the pool, draining)  analysis: k8s-shop-web-1a2b: "
                         "no regression over 3 period(s): 5xx 21 of 1800 requests")
    # and a state line that is not a look does not repeat it
    assert "analysis" not in w._state_line("+5:10", "Release Old Pods", "Release Old Pods", summarise_state(state),
                                           entering=False, ts=None)
