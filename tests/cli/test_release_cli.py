"""`albgate release`: a bad input refused before any AWS call, the waves and rollouts a person reads, the approval
a wave waits for found in the history, and `watch` following a release to its outcome.

The history events are AWS's shapes (GetExecutionHistory: ``stateExitedEventDetails.output``,
``taskScheduledEventDetails.parameters``); the release states are the domain's own (``plan_release`` and
``advance_release`` with a fake child executions port), so the screen is tested on what the release writes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from albgate.cli import main
from albgate.cli.release import latest_release_state, pending_approval_token, render_release, rollout_progress, watch
from lambdas.domain.ports import ChildExecution
from lambdas.domain.release import ReleaseSpec, ReleaseTarget, WaveSpec, advance_release, plan_release

DIGEST = "sha256:" + "a" * 64
IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/web@{DIGEST}"


def target(cluster: str, account: str = "111111111111", region: str = "us-east-1") -> ReleaseTarget:
    return ReleaseTarget(cluster=cluster, namespace="web", deployment="web", container="app", account=account,
                         region=region, state_machine_arn=f"arn:aws:states:{region}:{account}:stateMachine:R")


SPEC = ReleaseSpec(name="web", waves=[
    WaveSpec(name="staging", targets=[target("staging")], max_concurrency=1, bake_seconds=300),
    WaveSpec(name="production", targets=[target("prod-a"), target("prod-b", "222222222222", "eu-west-1")],
             max_concurrency=2, bake_seconds=0, approval=True),
])


class Children:
    """ChildExecutions whose answers the test sets per execution name."""

    def __init__(self) -> None:
        self.answers: dict[str, ChildExecution] = {}

    def start(self, state_machine_arn: str, role_arn: str | None, name: str, input: dict) -> str:
        return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"

    def describe(self, arn: str, role_arn: str | None) -> ChildExecution:
        return self.answers.get(arn.rsplit(":", 1)[1], ChildExecution("RUNNING"))


def exited(name: str, state: dict[str, Any], event_id: int) -> dict[str, Any]:
    return {"id": event_id, "type": "TaskStateExited",
            "stateExitedEventDetails": {"name": name, "output": json.dumps({"release": state})}}


def test_start_refuses_a_tag_and_a_bad_name_before_any_aws_call(capsys, monkeypatch):
    # Given no AWS at all (a call would fail differently)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    # When a tag or a bad release name is given / Then exit 2 with the field and the fix
    assert main(["release", "start", "web", "--image", "web:v2"]) == 2
    assert "has no digest" in capsys.readouterr().err
    assert main(["release", "start", "Web_App", "--image", IMAGE]) == 2
    assert "release name 'Web_App'" in capsys.readouterr().err


def test_the_screen_shows_each_wave_and_each_rollout_as_the_release_recorded_them():
    # Given a release whose first wave passed and whose second wave has one rollout failed
    children = Children()
    state = advance_release(children, plan_release(SPEC, IMAGE, "web-1"))
    children.answers[state.waves[0].children[0].name] = ChildExecution("SUCCEEDED", {"previous_image": "web@v1"})
    state = advance_release(children, state)
    state = advance_release(children, state)
    children.answers[state.waves[1].children[1].name] = ChildExecution("FAILED", error="RolledBack", cause="gate")
    children.answers[state.waves[1].children[0].name] = ChildExecution("SUCCEEDED", {"previous_image": "web@v1"})
    state = advance_release(children, state)
    # When rendered
    lines = render_release(state.dump())
    text = "\n".join(lines)
    # Then every wave has its status, every rollout its cluster, account, Region, status and ARN
    assert lines[0] == f"release web -> {IMAGE}"
    assert "wave 1 staging: passed (at most 1 at once, bake 300 s)" in text
    assert "wave 2 production: failed (at most 2 at once)" in text
    assert "[ok] staging (111111111111, us-east-1) succeeded" in text
    assert "[XX] prod-b (222222222222, eu-west-1) failed  RolledBack" in text
    assert "stopped: wave 'production'" in text


def test_the_latest_release_state_is_read_from_the_history():
    first = plan_release(SPEC, IMAGE, "web-1").dump()
    later = {**first, "wave": 1}
    events = [{"id": 1, "type": "ExecutionStarted"}, exited("Plan Release", first, 2),
              {"id": 3, "type": "WaitStateEntered"}, exited("Check Wave Rollouts", later, 4),
              {"id": 5, "type": "TaskStateExited", "stateExitedEventDetails": {"name": "x", "output": "not json"}}]
    assert latest_release_state(events)["wave"] == 1
    assert latest_release_state([{"id": 1, "type": "ExecutionStarted"}]) is None


def approval_scheduled(token: str, event_id: int) -> dict[str, Any]:
    detail = {"release": "web", "task_token": token}
    return {"id": event_id, "type": "TaskScheduled", "taskScheduledEventDetails": {
        "resource": "putEvents.waitForTaskToken",
        "parameters": json.dumps({"Entries": [{"Detail": detail, "DetailType": "Release Wave Awaits Approval"}]})}}


def test_the_pending_approval_is_the_one_not_yet_answered():
    # Given a first approval answered (its state exited) and a second one scheduled
    events = [approval_scheduled("t1", 1),
              {"id": 2, "type": "TaskStateExited", "stateExitedEventDetails": {"name": "Wait For Wave Approval"}},
              approval_scheduled("t2", 3)]
    # Then the second one's token is the pending one; none once it was answered too
    assert pending_approval_token(events) == "t2"
    events.append({"id": 4, "type": "TaskStateExited", "stateExitedEventDetails": {"name": "Wait For Wave Approval"}})
    assert pending_approval_token(events) is None
    assert pending_approval_token([]) is None


class FakeSfn:
    """DescribeExecution and GetExecutionHistory of one execution whose history grows at each describe."""

    def __init__(self, frames: list[tuple[str, list[dict[str, Any]]]]) -> None:
        self.frames, self.i = frames, -1

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.i = min(self.i + 1, len(self.frames) - 1)
        status = self.frames[self.i][0]
        return {"status": status, "error": "ReleaseStopped" if status == "FAILED" else None, "cause": "c"}

    def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
        return {"events": self.frames[self.i][1]}


@pytest.mark.parametrize(("end", "code"), [("SUCCEEDED", 0), ("FAILED", 1)])
def test_watch_prints_each_change_once_and_exits_with_the_outcome(end, code):
    # Given a release seen three times: planned, the same again, then ended
    planned = plan_release(SPEC, IMAGE, "web-1").dump()
    frames = [("RUNNING", [exited("Plan Release", planned, 1)]),
              ("RUNNING", [exited("Plan Release", planned, 1)]),
              (end, [exited("Plan Release", planned, 1), exited("Check Wave Rollouts", {**planned, "wave": 2}, 2)])]
    out = io.StringIO()
    # When watched
    result = watch(FakeSfn(frames), "arn:aws:states:us-east-1:1:execution:m:n", out=out, poll_seconds=0,
                   sleep=lambda s: None)
    # Then the planned screen is printed once, the final one once, and the outcome's exit code is returned
    text = out.getvalue()
    assert result == code
    assert text.count("wave 1 staging: waiting") == 1
    assert text.count("wave 1 staging: passed") == 1
    assert text.strip().splitlines()[-1].startswith("release succeeded" if code == 0 else "release ended FAILED")


def test_approve_and_watch_refuse_what_is_not_an_execution_arn(capsys):
    assert main(["release", "approve", "web-1"]) == 2
    assert "is not an execution ARN" in capsys.readouterr().err
    assert main(["release", "watch", "arn:aws:states:us-east-1:1:stateMachine:m"]) == 2


@pytest.mark.parametrize(("scenario", "code", "says"), [
    ("three-waves-five-clusters.yaml", 0, "succeeded after"),
    ("broken-second-wave.yaml", 1, "stopped after"),
])
def test_simulate_runs_a_release_scenario_and_exits_with_its_outcome(scenario, code, says, capsys):
    # Given a shipped release scenario, When simulated from the command line
    result = main(["release", "simulate", f"scenarios/release/{scenario}"])
    # Then the exit code is the release's outcome and the report says it, with 0 failed requests
    out = capsys.readouterr().out
    assert result == code, out
    assert says in out and "failed 0" in out


def test_simulate_refuses_a_bad_scenario_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclusters: []\nrelease: {name: x, image: 'a:b', waves: []}\n")
    assert main(["release", "simulate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml" in err[0]


def rollout_exited(name: str, step: int, gate: dict[str, Any], event_id: int, mode: str = "rollout") -> dict[str, Any]:
    state = {"plan": [1, 2, 3], "step": step, "mode": mode, "gate": gate}
    return {"id": event_id, "type": "TaskStateExited",
            "stateExitedEventDetails": {"name": name, "output": json.dumps(state)}}


def test_a_running_rollouts_progress_is_its_step_and_its_gate():
    events = [rollout_exited("Check Target Health", 1, {"status": "WAITING", "healthy": 1, "needed": 2}, 7)]
    assert rollout_progress(events) == "step 2/3 (2 new pods), gate WAITING 1/2 healthy"
    rollback = [rollout_exited("Rollback: Check Target Health", 0, {"status": "PASSED"}, 9, mode="rollback")]
    assert rollout_progress(rollback) == "step 1/3 (1 new pods) rolling back, gate PASSED"
    assert rollout_progress([{"id": 1, "type": "ExecutionStarted"}]) is None


def test_watch_shows_each_running_rollouts_progress_where_it_can_be_read():
    # Given a release whose production wave runs two rollouts: one readable, one in an account the person's
    # credentials do not reach
    children = Children()
    state = advance_release(children, plan_release(SPEC, IMAGE, "web-1"))
    children.answers[state.waves[0].children[0].name] = ChildExecution("SUCCEEDED", {"previous_image": "v1"})
    state = advance_release(children, advance_release(children, state))
    frames = [("RUNNING", [exited("Check Wave Rollouts", state.dump(), 1)])]
    a, b = (c.execution_arn for c in state.waves[1].children)
    histories = {a: [rollout_exited("Check Target Health", 0, {"status": "WAITING", "healthy": 0, "needed": 1}, 5)]}
    out = io.StringIO()

    class Ends(FakeSfn):
        def describe_execution(self, executionArn: str) -> dict[str, Any]:
            return {"status": "SUCCEEDED"} if self.i >= 0 else super().describe_execution(executionArn)

    # When watched with a reader that reaches only the first
    watch(Ends(frames), "arn:aws:states:us-east-1:1:execution:m:n", out=out, poll_seconds=0, sleep=lambda s: None,
          read_child=histories.get)
    text = out.getvalue()
    # Then the first shows its step and gate, the second says its progress cannot be read here
    assert "prod-a (111111111111, us-east-1) running: step 1/3 (1 new pods), gate WAITING 0/1 healthy" in text
    assert "prod-b (222222222222, eu-west-1) running: progress not readable here" in text
