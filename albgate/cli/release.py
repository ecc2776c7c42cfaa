"""`albgate release start|watch|approve|simulate`: one image through the configured waves of clusters.

Job: ``start`` checks the release input locally (a configured release's name, an image by digest: the model the
Lambda uses), finds the release state machine (stack output ``ReleaseStateMachineArn``), starts an execution and
prints its ARN and console link; ``watch`` follows a release: one line per wave with each cluster's rollout and its
status, as the release's own state records it (refreshed at every look of the release, 30 s apart), and each
running rollout's step and gate or drain where the person's credentials can read its history, until it ends;
``approve`` answers a wave that waits for a person (``--reject`` refuses it); ``simulate`` runs a release scenario
(scenarios/release/) on simulated clusters, locally.
Invariant: a bad input is refused with exit code 2 before any AWS call; the exit code of ``watch`` and ``simulate``
is the release's outcome (0 succeeded, 1 stopped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from albgate.cli import UsageError
from albgate.cli.common import EXIT_FAILED, EXIT_SUCCEEDED, aws_advice, aws_session, console_link, region_of_arn

HELP = "roll one image through the configured waves of clusters (start, watch, approve, simulate)"
DESCRIPTION = ("A release rolls one image, by digest, through ordered waves of clusters: each cluster's rollout "
               "is gated like `albgate start`'s, a wave starts when the previous one passed and baked, and the "
               "release stops at the first failing wave (docs/releases.md).")
DEFAULT_STACK = "Albgate-Release"  # app.py: the release stack is "<stack_name>-Release"
STACK_OUTPUT = "ReleaseStateMachineArn"
APPROVAL_STATE = "Wait For Wave Approval"
_SYMBOL = {"SUCCEEDED": "ok", "RUNNING": "..", "PENDING": "  ", "FAILED": "XX", "TIMED_OUT": "XX", "ABORTED": "XX"}


# --- what a person reads --------------------------------------------------------------------------------------
def render_release(state: dict[str, Any], progress: dict[str, str] | None = None) -> list[str]:
    """The release's waves and their rollouts, from its state (``$.release``), one line per rollout; ``progress``
    adds what a running rollout is doing (its execution ARN -> a few words), where it could be read."""
    progress = progress or {}
    lines = [f"release {state.get('release')} -> {state.get('image')}"]
    current = state.get("wave", 0)
    for i, wave in enumerate(state.get("waves", [])):
        children = wave.get("children", [])
        if i < current:
            status = "passed"
        elif i == current and any(c.get("status") != "PENDING" for c in children):
            status = "failed" if state.get("failure") else "rolling"
        else:
            status = "waiting"
        if i == current and state.get("approval_needed") and status == "waiting":
            status = "waits for approval"
        extra = f", bake {wave.get('bake_seconds')} s" if wave.get("bake_seconds") else ""
        lines.append(f"  wave {i + 1} {wave.get('name')}: {status} (at most {wave.get('max_concurrency')} at once"
                     f"{extra})")
        for c in children:
            lines.append(_child_line(c, progress))
    rollback = state.get("rollback") or []
    if rollback:
        lines.append("  rollback of completed waves (newest first):")
        lines.extend(_child_line(c, progress) for c in rollback)
    if state.get("cause"):
        lines.append(f"  stopped: {state['cause']}")
    return lines


def _child_line(child: dict[str, Any], progress: dict[str, str] | None = None) -> str:
    t = child.get("target", {})
    status = child.get("status", "PENDING")
    where = f"{t.get('cluster')} ({t.get('account')}, {t.get('region')})"
    arn = child.get("execution_arn")
    doing = f": {progress[arn]}" if progress and arn in progress else ""
    tail = f"  {arn}" if arn else ""
    why = f"  {child.get('error')}" if child.get("error") else ""
    return f"    [{_SYMBOL.get(status, '??')}] {where} {status.lower()}{doing}{why}{tail}"


def rollout_progress(events: list[dict[str, Any]]) -> str | None:
    """What a rollout execution is doing, from its history: its step and the gate's or the drain's verdict, as
    `albgate watch` summarises them; None when its history shows no rollout state yet."""
    from albgate.cli.watch import summarise_state

    for event in reversed(events):
        raw = (event.get("stateExitedEventDetails") or {}).get("output")
        if not raw:
            continue
        try:
            summary = summarise_state(json.loads(raw))
        except ValueError:
            continue
        if "step" not in summary:
            continue
        text = f"step {summary['step']}/{summary['steps']} ({summary['target_pods']} new pods)"
        if summary.get("mode") == "rollback":
            text += " rolling back"
        for key in ("gate", "drain"):
            if key in summary:
                part = summary[key]
                counts = f" {part['healthy']}/{part['needed']} healthy" if key == "gate" and "healthy" in part else ""
                text += f", {key} {part['status']}{counts}"
        return text
    return None


def children_progress(state: dict[str, Any] | None, read: Callable[[str], list[dict[str, Any]] | None]) -> dict[str, str]:
    """Each running rollout's progress, read with ``read`` (its execution ARN -> history, None when it cannot be
    read: another account or Region the person's credentials do not reach)."""
    out: dict[str, str] = {}
    if not state:
        return out
    children = [c for w in state.get("waves", []) for c in w.get("children", [])] + list(state.get("rollback") or [])
    for c in children:
        arn = c.get("execution_arn")
        if c.get("status") == "RUNNING" and arn:
            events = read(arn)
            text = rollout_progress(events) if events is not None else "progress not readable here"
            if text:
                out[arn] = text
    return out


def latest_release_state(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last ``$.release`` the execution's history shows (a state's output, or Plan Release's)."""
    for event in reversed(events):
        for key in ("stateExitedEventDetails", "taskSucceededEventDetails", "lambdaFunctionSucceededEventDetails"):
            raw = (event.get(key) or {}).get("output")
            if not raw:
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("release"), dict):
                return data["release"]
    return None


def pending_approval_token(events: list[dict[str, Any]]) -> str | None:
    """The task token of the wave approval the execution waits for now, read from the scheduled PutEvents."""
    token = None
    for event in events:
        if event.get("type") == "TaskScheduled":
            params = (event.get("taskScheduledEventDetails") or {}).get("parameters") or ""
            try:
                entries = json.loads(params).get("Entries", [])
            except (ValueError, AttributeError):
                continue
            for entry in entries:
                detail = entry.get("Detail")
                detail = json.loads(detail) if isinstance(detail, str) else detail
                if isinstance(detail, dict) and detail.get("task_token"):
                    token = detail["task_token"]
        elif event.get("type") == "TaskStateExited" and \
                (event.get("stateExitedEventDetails") or {}).get("name") == APPROVAL_STATE:
            token = None
    return token


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = sfn.get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            return events


def watch(sfn: Any, arn: str, *, out: IO[str], poll_seconds: float, json_lines: bool = False,
          sleep: Callable[[float], None] = time.sleep,
          read_child: Callable[[str], list[dict[str, Any]] | None] | None = None) -> int:
    """Print the release's waves whenever they change, until it ends; the exit code of its outcome. With
    ``read_child``, each running rollout's step and verdict too."""
    shown: list[str] | None = None
    while True:
        status = sfn.describe_execution(executionArn=arn)
        state = latest_release_state(history(sfn, arn))
        progress = children_progress(state, read_child) if read_child is not None else {}
        lines = render_release(state, progress) if state else ["release: planning"]
        if lines != shown:
            if json_lines:
                print(json.dumps({"type": "Release", "status": status["status"], "release": state,
                                  "progress": progress}, sort_keys=True), file=out, flush=True)
            else:
                print("\n".join(lines), file=out, flush=True)
            shown = lines
        if status["status"] != "RUNNING":
            ok = status["status"] == "SUCCEEDED"
            end = "succeeded" if ok else f"ended {status['status']} ({status.get('error') or ''}: {status.get('cause') or ''})"
            if json_lines:
                print(json.dumps({"type": "End", "status": status["status"], "error": status.get("error")}),
                      file=out, flush=True)
            else:
                print(f"release {end}", file=out, flush=True)
            return EXIT_SUCCEEDED if ok else EXIT_FAILED
        sleep(poll_seconds)


def child_reader(session: Any) -> Callable[[str], list[dict[str, Any]] | None]:
    """Read a child's history with the person's own credentials, in the child's Region; None when they do not
    reach it (another account: the release's role is the release's, not the person's)."""
    clients: dict[str, Any] = {}

    def read(arn: str) -> list[dict[str, Any]] | None:
        region = region_of_arn(arn)
        if region is None:
            return None
        try:
            client = clients.setdefault(region, session.client("stepfunctions", region_name=region))
            return history(client, arn)
        except Exception:  # noqa: BLE001 - no access, or no such execution here: progress is a nicety
            return None

    return read


# --- sub-commands ---------------------------------------------------------------------------------------------
def release_input(name: str, image: str) -> dict[str, str]:
    """The release execution's input, checked as Plan Release checks it (exit 2 before any AWS call)."""
    from lambdas.domain.errors import InvalidInputError
    from lambdas.domain.release import release_image
    from lambdas.domain.validators import KUBERNETES_NAME

    try:
        KUBERNETES_NAME.check(name)
    except ValueError as exc:
        raise UsageError(f"release name {name!r}: {exc}") from None
    try:
        return {"release": name, "image": release_image(image)}
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


def _client(args: argparse.Namespace, arn: str | None) -> tuple[Any, str]:
    session, region = aws_session(args.region or (region_of_arn(arn) if arn else None))
    return session.client("stepfunctions", region_name=region), region


def _start(args: argparse.Namespace) -> int:
    data = release_input(args.name, args.image)
    from albgate.cli.start import check_execution_name, find_state_machine

    digest = data["image"].rsplit("@", 1)[1].split(":", 1)[1][:12]
    name = check_execution_name(args.execution_name or f"{args.name[:50]}-{digest}-{int(time.time())}")
    session, region = aws_session(args.region or (region_of_arn(args.state_machine_arn) if args.state_machine_arn else None))
    arn = args.state_machine_arn or find_state_machine(session, region, args.stack_name, output=STACK_OUTPUT)
    sfn = session.client("stepfunctions", region_name=region)
    try:
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(data))
    except Exception as exc:  # noqa: BLE001 - every AWS failure becomes advice or one line
        raise (aws_advice(exc, "StartExecution") or UsageError(f"StartExecution failed: {exc}")) from None
    execution_arn = started["executionArn"]
    print(f"started {execution_arn}")
    print(f"console: {console_link(region, execution_arn)}", flush=True)
    if not args.wait:
        return EXIT_SUCCEEDED
    return watch(sfn, execution_arn, out=sys.stdout, poll_seconds=args.poll_seconds, json_lines=args.json,
                 read_child=child_reader(session))


def _execution_arn(text: str) -> str:
    if not text.startswith("arn:") or ":execution:" not in text:
        raise UsageError(f"{text!r} is not an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME); "
                         "`albgate release start` prints it")
    return text


def _watch(args: argparse.Namespace) -> int:
    arn = _execution_arn(args.execution_arn)
    session, region = aws_session(args.region or region_of_arn(arn))
    sfn = session.client("stepfunctions", region_name=region)
    return watch(sfn, arn, out=sys.stdout, poll_seconds=args.poll_seconds, json_lines=args.json,
                 read_child=child_reader(session))


def _approve(args: argparse.Namespace) -> int:
    arn = _execution_arn(args.execution_arn)
    sfn, _ = _client(args, arn)
    token = pending_approval_token(history(sfn, arn))
    if token is None:
        raise UsageError(f"{arn} waits for no approval now (`albgate release watch` shows what it does)")
    if args.reject:
        sfn.send_task_failure(taskToken=token, error="ReleaseWaveRejected", cause=args.reason or "rejected by a person")
        print("rejected: the release stops before the wave")
    else:
        sfn.send_task_success(taskToken=token, output="{}")
        print("approved: the wave starts")
    return EXIT_SUCCEEDED


def _simulate(args: argparse.Namespace) -> int:
    from albgate.sim.release import load_release_scenario, run_release

    try:
        scenario = load_release_scenario(args.scenario)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(f"simulating release {scenario.name}: {len(scenario.clusters)} clusters, "
          f"{len(scenario.release.waves)} waves ...", file=sys.stderr, flush=True)
    result = run_release(scenario, seed=args.seed)
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        print(result.render())
    return EXIT_SUCCEEDED if result.outcome == "succeeded" else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    return {"start": _start, "watch": _watch, "approve": _approve, "simulate": _simulate}[args.action](args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("start", help="start a release of an image (by digest)")
    s.add_argument("name", metavar="RELEASE", help="a release of the config's `releases`")
    s.add_argument("--image", required=True, metavar="REPO@sha256:...", help="the image, by digest")
    s.add_argument("--execution-name", metavar="NAME", help="default <release>-<digest>-<unix time>")
    s.add_argument("--state-machine-arn", metavar="ARN", help="skip the stack lookup")
    s.add_argument("--stack-name", default=DEFAULT_STACK, metavar="NAME",
                   help="the release stack, whose ReleaseStateMachineArn output to use (default %(default)s)")
    s.add_argument("--wait", action="store_true", help="follow the release until it ends (like `watch`)")
    for q in (s, w := sub.add_parser("watch", help="follow a release's waves and rollouts until it ends")):
        q.add_argument("--region", metavar="R", help="AWS Region (default: the ARN's / the profile's)")
        q.add_argument("--json", action="store_true", help="one JSON object per change")
        q.add_argument("--poll-seconds", type=float, default=15.0, metavar="N",
                       help="seconds between reads (default %(default)s)")
    w.add_argument("execution_arn", metavar="EXECUTION_ARN", help="what `albgate release start` printed")
    a = sub.add_parser("approve", help="approve (or --reject) the wave a release waits for")
    a.add_argument("execution_arn", metavar="EXECUTION_ARN")
    a.add_argument("--reject", action="store_true", help="refuse the wave: the release stops before it")
    a.add_argument("--reason", metavar="TEXT", help="why, with --reject (the execution's cause)")
    a.add_argument("--region", metavar="R", help="AWS Region (default: the ARN's)")
    m = sub.add_parser("simulate", help="run a release scenario on simulated clusters (scenarios/release/)")
    m.add_argument("scenario", metavar="SCENARIO.yaml")
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--json", action="store_true", help="the result as one JSON object")

