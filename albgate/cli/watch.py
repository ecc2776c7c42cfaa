"""`albgate watch`: follow a rollout execution from its history and exit with its outcome.

Job: read the execution's history (GetExecutionHistory, forward, paginated; only events newer than the last
id seen are shown) and print one line per state with the useful part of the rollout state (step, mode, gate,
drain, time waited), a progress line when nothing changed for a while, and the outcome; ``--json`` prints
one object per event and a summary. ``albgate start --wait`` follows its execution with the same ``Watcher``.
Invariant: exit 0 when the execution SUCCEEDED, 3 when it ended in ``RolledBack`` (the previous revision is
serving again), 1 for any other FAILED, TIMED_OUT or ABORTED; an unknown execution, missing credentials or
an unset Region are advice and exit code 2, never a traceback. Throttling and connection blips only slow the
reading down.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

from albgate.cli import UsageError
from albgate.cli.common import (
    EXIT_FAILED,
    EXIT_ROLLED_BACK,
    EXIT_SUCCEEDED,
    aws_advice,
    aws_session,
    console_link,
    iso,
    region_of_arn,
)
from lambdas.domain.contract import ROLLBACK_PREFIX, ROLLED_BACK_ERROR


HELP = "follow a rollout execution step by step and exit with its outcome"
DESCRIPTION = ("Follow an execution from its history: a line per state with the step, mode, gate and drain status "
               "and the time waited. Exit 0 SUCCEEDED, 3 rolled back (error RolledBack), 1 any other failure, "
               "time-out or abort, 2 when it cannot watch (credentials, Region, unknown execution).")


def add_watch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line (per event, then a summary)")
    p.add_argument("--poll-seconds", type=float, default=5.0, metavar="N",
                   help="seconds between history reads (default %(default)s)")
    p.add_argument("--quiet-seconds", type=float, default=60.0, metavar="N",
                   help="print a progress line when nothing changed for this long (default %(default)s)")


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _base_state(name: str) -> tuple[str, str | None]:
    """`Rollback: Check Target Health` -> ("Check Target Health", "rollback")."""
    if name.startswith(ROLLBACK_PREFIX):
        return name[len(ROLLBACK_PREFIX):], "rollback"
    return name, None


def summarise_state(state: Any) -> dict[str, Any]:
    """The useful part of a rollout state (lambdas/domain/state.py) for one line; {} when it is not one."""
    if not isinstance(state, dict):
        return {}
    out: dict[str, Any] = {}
    plan = state.get("plan")
    step = state.get("step")
    if isinstance(plan, list) and plan:
        out["plan"] = plan
        if isinstance(step, int) and step >= 0:
            out["step"] = step + 1
            out["steps"] = len(plan)
            out["target_pods"] = plan[min(step, len(plan) - 1)]
    if state.get("mode"):
        out["mode"] = state["mode"]
    for key in ("gate", "drain"):
        value = state.get(key)
        if isinstance(value, dict) and value.get("status"):
            keep = ("status", "reason", "healthy", "needed", "initial", "unhealthy", "groups") if key == "gate" else (
                "status", "reason", "old_live", "expected_old", "draining")
            out[key] = {k: value[k] for k in keep if k in value}
    for key in ("wait_seconds", "bake_seconds", "outcome", "failure_summary", "analysis"):
        if state.get(key) not in (None, "", 0):
            out[key] = state[key]
    return out


def _fmt_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"+{h}:{m:02d}:{s:02d}" if h else f"+{m}:{s:02d}"


def _gate_text(gate: dict[str, Any]) -> str:
    counts = f" {gate['healthy']}/{gate['needed']} healthy" if "healthy" in gate and "needed" in gate else ""
    groups = ""
    if isinstance(gate.get("groups"), list) and gate["groups"]:
        # Per target group: the step's new targets by state, e.g. "k8s-shop-web-1a2b: 1 healthy, 1 initial".
        per = []
        for g in gate["groups"]:
            if not isinstance(g, dict):
                continue
            states = ", ".join(f"{g[k]} {k}" for k in ("healthy", "initial", "unhealthy", "draining", "unregistered")
                               if g.get(k))
            per.append(f"{g.get('target_group', '?')}: {states or 'no new target yet'}")
        groups = f" [{'; '.join(per)}]" if per else ""
    reason = f" ({gate['reason']})" if gate.get("reason") else ""
    return f"gate {gate['status']}{counts}{groups}{reason}"


def _drain_text(drain: dict[str, Any]) -> str:
    reason = f" ({drain['reason']})" if drain.get("reason") else ""
    return f"drain {drain['status']}{reason}"


# What each kind of state is worth showing about, by its name without the rollback prefix.
_SHOW_GATE = {"Check Target Health", "Record Gate Failure"}
_SHOW_DRAIN = {"Verify Drain", "Record Drain Failure"}
_SHOW_ANALYSIS = {"Start Step", "Check Target Health", "Verify Drain"}
_WAITS = {"Wait For Health Check": "wait_seconds", "Wait For Drain": "wait_seconds", "Bake Step": "bake_seconds"}
_QUIET_TYPES = {"ChoiceStateEntered", "ChoiceStateExited"}  # decisions: the next state says where it went
# States shown once, when they exit, with what they decided (the Lambda tasks and the failure records);
# every other state (waits, approvals, the end states) is shown when it is entered.
_SHOWN_ON_EXIT = {"Preflight", "Start Step", "Check Target Health", "Release Old Pods", "Verify Drain",
                  "Roll Back", "Finish Rollout", "Record Rollback", "Record Gate Failure", "Record Drain Failure"}


class Watcher:
    """Follows one execution's history and prints it; ``run`` returns the exit code of its outcome."""

    def __init__(self, sfn: Any, execution_arn: str, region: str, *, json_lines: bool, poll_seconds: float,
                 quiet_seconds: float, out: IO[str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 announce: bool = True) -> None:
        self.sfn, self.arn, self.region = sfn, execution_arn, region
        self.json_lines, self.poll_seconds, self.quiet_seconds = json_lines, max(0.0, poll_seconds), quiet_seconds
        self.out = out or sys.stdout
        self.sleep, self.clock = sleep, clock
        self.announce = announce  # False after `start`, which already printed the ARN and the link
        self.last_id = 0
        self.started_at: datetime | None = None
        self.step_started_at: datetime | None = None
        self.current_state: str | None = None
        self.current_since: datetime | None = None
        self.current_phase = "entered"
        self.last_summary: dict[str, Any] = {}
        self.events_seen = 0

    # --- output ---------------------------------------------------------------------------------------
    def emit(self, obj: dict[str, Any] | None = None, text: str | None = None) -> None:
        if self.json_lines and obj is not None:
            print(json.dumps(obj, sort_keys=True, default=str), file=self.out, flush=True)
        elif not self.json_lines and text is not None:
            print(text, file=self.out, flush=True)

    def elapsed(self, ts: Any) -> float:
        if isinstance(ts, datetime) and isinstance(self.started_at, datetime):
            return (ts - self.started_at).total_seconds()
        return 0.0

    # --- reading --------------------------------------------------------------------------------------
    def new_events(self) -> Iterator[dict[str, Any]]:
        """Every event with an id above the last one seen, oldest first, across all pages."""
        token = None
        while True:
            kwargs: dict[str, Any] = {"executionArn": self.arn, "maxResults": 1000, "reverseOrder": False}
            if token:
                kwargs["nextToken"] = token
            page = self.sfn.get_execution_history(**kwargs)
            for event in page.get("events", []):
                if event["id"] > self.last_id:
                    self.last_id = event["id"]
                    yield event
            token = page.get("nextToken")
            if not token:
                return

    def describe(self) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.sfn.describe_execution(executionArn=self.arn)
        except ClientError as exc:
            advice = aws_advice(exc, "DescribeExecution")
            if advice:
                raise advice from None
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ExecutionDoesNotExist":
                raise UsageError(f"no execution {self.arn} in {self.region}; check the ARN (and --region)") from None
            if code == "InvalidArn":
                raise UsageError(f"{self.arn!r} is not an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:"
                                 "MACHINE:NAME)") from None
            raise UsageError(f"DescribeExecution failed: {exc}") from None
        except BotoCoreError as exc:
            raise (aws_advice(exc, "DescribeExecution") or UsageError(f"DescribeExecution failed: {exc}")) from None

    # --- one event ------------------------------------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Print the event; return the final summary when it ended the execution."""
        self.events_seen += 1
        etype: str = event["type"]
        ts = event.get("timestamp")
        if etype == "ExecutionStarted":
            self.started_at = ts
        record: dict[str, Any] = {"type": etype, "id": event["id"], "timestamp": iso(ts),
                                  "elapsed_seconds": round(self.elapsed(ts), 3)}
        when = _fmt_elapsed(self.elapsed(ts))
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered:
            name = entered.get("name", "?")
            base, _ = _base_state(name)
            record["state"] = name
            summary = summarise_state(_loads(entered.get("input")))
            if summary:
                record["summary"] = summary
            self.current_state, self.current_since, self.current_phase = name, ts, "entered"
            if base == "Start Step":
                self.step_started_at = ts
            if etype not in _QUIET_TYPES and base not in _SHOWN_ON_EXIT:
                self.emit(record, self._state_line(when, name, base, summary, entering=True, ts=ts))
            else:
                self.emit(record)
            return None
        if exited:
            name = exited.get("name", "?")
            base, _ = _base_state(name)
            record["state"] = name
            self.current_state, self.current_since, self.current_phase = name, ts, "exited"
            summary = summarise_state(_loads(exited.get("output")))
            if summary:
                record["summary"] = summary
                self.last_summary = summary
            text = None
            if base in _SHOWN_ON_EXIT:
                text = self._state_line(when, name, base, summary, entering=False, ts=ts)
            self.emit(record, text)
            return None
        for key in ("taskFailedEventDetails", "lambdaFunctionFailedEventDetails", "executionFailedEventDetails",
                    "executionTimedOutEventDetails", "executionAbortedEventDetails",
                    "lambdaFunctionTimedOutEventDetails", "taskTimedOutEventDetails"):
            details = event.get(key)
            if details is not None:
                record["error"] = details.get("error", "")
                record["cause"] = details.get("cause", "")
        if etype in {"TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "LambdaFunctionTimedOut"}:
            where = f" in {self.current_state}" if self.current_state else ""
            self.emit(record, f"{when}  {etype}{where}: {record.get('error', '')}: {record.get('cause', '')}".rstrip(": "))
            return None
        if etype == "ExecutionSucceeded":
            output = _loads(event.get("executionSucceededEventDetails", {}).get("output"))
            return self.final("SUCCEEDED", ts, record, output=output)
        if etype in {"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}:
            status = {"ExecutionFailed": "FAILED", "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}[etype]
            return self.final(status, ts, record, error=record.get("error", ""), cause=record.get("cause", ""))
        self.emit(record)
        return None

    def _state_line(self, when: str, name: str, base: str, summary: dict[str, Any], *, entering: bool,
                    ts: Any) -> str:
        parts = [f"{when}  {name:<34}"]
        if "step" in summary:
            parts.append(f"step {summary['step']}/{summary['steps']} ({summary['target_pods']} new pods)")
        elif "plan" in summary and base == "Preflight":
            parts.append(f"plan {summary['plan']}")
        if summary.get("mode"):
            parts.append(summary["mode"])
        if entering and base in _WAITS:
            seconds = summary.get(_WAITS[base])
            if seconds:
                parts.append(f"waiting {seconds} s")
        if base == "Wait For Approval" and entering:
            parts.append("waiting for a person (SendTaskSuccess / SendTaskFailure with the task token)")
        if not entering and base in _SHOW_GATE and "gate" in summary:
            parts.append(_gate_text(summary["gate"]))
        if not entering and base in _SHOW_DRAIN and "drain" in summary:
            parts.append(_drain_text(summary["drain"]))
        if not entering and base in _SHOW_ANALYSIS and summary.get("analysis"):
            # policy.analysis: what the last reading of the ALB metrics concluded (lambdas/domain/rollout/analysis.py)
            parts.append(f"analysis: {summary['analysis']}")
        if (not entering and base in _SHOW_GATE | _SHOW_DRAIN and isinstance(ts, datetime)
                and isinstance(self.step_started_at, datetime)):
            parts.append(f"waited {int((ts - self.step_started_at).total_seconds())} s in this step")
        return "  ".join(p for p in parts if p)

    def final(self, status: str, ts: Any, record: dict[str, Any], *, output: Any = None, error: str = "",
              cause: str = "") -> dict[str, Any]:
        self.emit(record)
        if status == "SUCCEEDED":
            code = EXIT_SUCCEEDED
        elif status == "FAILED" and error == ROLLED_BACK_ERROR:
            code = EXIT_ROLLED_BACK
        else:
            code = EXIT_FAILED
        summary = {"type": "Summary", "executionArn": self.arn, "status": status, "exit_code": code,
                   "elapsed_seconds": round(self.elapsed(ts), 3), "console": console_link(self.region, self.arn)}
        if error or status != "SUCCEEDED":
            summary["error"], summary["cause"] = error, cause
        state = summarise_state(output) or self.last_summary
        if state:
            summary["state"] = state
        if self.json_lines:
            self.emit(summary)
            return summary
        took = _fmt_elapsed(self.elapsed(ts)).lstrip("+")
        if code == EXIT_SUCCEEDED:
            self.emit(text=f"SUCCEEDED after {took}: the new image is serving on every step's pods")
        elif code == EXIT_ROLLED_BACK:
            self.emit(text=f"ROLLED BACK after {took}: the rollout failed and the previous revision is serving "
                           f"again, reached through the same gates")
            self.emit(text=f"  cause: {cause}")
        else:
            self.emit(text=f"{status} after {took}: {error or 'no error given'}")
            if cause:
                self.emit(text=f"  cause: {cause}")
        self.emit(text=f"console: {console_link(self.region, self.arn)}")
        return summary

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        described = self.describe()
        self.started_at = described.get("startDate")
        if self.announce and not self.json_lines:
            self.emit(text=f"watching {self.arn}")
            self.emit(text=f"console: {console_link(self.region, self.arn)}")
        last_change = self.clock()
        backoff = self.poll_seconds
        while True:
            try:
                changed = False
                for event in self.new_events():
                    changed = True
                    result = self.handle(event)
                    if result is not None:
                        return int(result["exit_code"])
                backoff = self.poll_seconds
            except ClientError as exc:
                advice = aws_advice(exc, "GetExecutionHistory")
                if advice:
                    raise advice from None
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in {"ThrottlingException", "Throttling", "TooManyRequestsException",
                                "ServiceUnavailable", "InternalFailure"}:
                    raise UsageError(f"GetExecutionHistory failed: {exc}") from None
                backoff = min(max(backoff * 2, 1.0), 60.0)  # throttled: read less often, keep watching
                changed = False
            except BotoCoreError as exc:
                advice = aws_advice(exc, "GetExecutionHistory")
                if advice:
                    raise advice from None
                backoff = min(max(backoff * 2, 1.0), 60.0)  # a connection blip: keep watching
                changed = False
            now = self.clock()
            if changed:
                last_change = now
            elif now - last_change >= self.quiet_seconds:
                self.progress(now - last_change)
                last_change = now
            if not changed:
                status = self.describe().get("status", "RUNNING")
                if status != "RUNNING":
                    # the end event may arrive after the status changes: read once more, then decide
                    for event in self.new_events():
                        result = self.handle(event)
                        if result is not None:
                            return int(result["exit_code"])
                    d = self.describe()
                    summary = self.final(status, d.get("stopDate"), {"type": f"Execution{status.title()}",
                                         "id": self.last_id}, error=d.get("error", ""), cause=d.get("cause", ""))
                    return int(summary["exit_code"])
            self.sleep(backoff)

    def progress(self, quiet_for: float) -> None:
        where = f"{self.current_state} {self.current_phase}" if self.current_state else "started"
        ago = ""
        if isinstance(self.current_since, datetime):
            now = datetime.now(self.current_since.tzinfo)
            ago = f" {int((now - self.current_since).total_seconds())} s ago"
        self.emit({"type": "Progress", "state": self.current_state, "phase": self.current_phase,
                   "quiet_seconds": round(quiet_for, 1)},
                  f"... still running (last: {where}{ago}); nothing new for {int(quiet_for)} s")


def run(args: argparse.Namespace) -> int:
    arn = args.execution_arn
    if not arn.startswith("arn:") or ":execution:" not in arn:
        raise UsageError(f"{arn!r} is not an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME); "
                         "`albgate start` prints it")
    session, region = aws_session(args.region or region_of_arn(arn))
    sfn = session.client("stepfunctions", region_name=region)
    return Watcher(sfn, arn, region, json_lines=args.json, poll_seconds=args.poll_seconds,
                   quiet_seconds=args.quiet_seconds).run()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("execution_arn", metavar="EXECUTION_ARN", help="what `albgate start` printed")
    p.add_argument("--region", metavar="R", help="AWS Region (default: the ARN's)")
    add_watch_flags(p)
