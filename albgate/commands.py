"""`albgate start`, `albgate watch` and `albgate preflight`: the release engineer's commands against AWS.

Job:
- ``start`` builds a rollout input from flags or a JSON file, validates it locally with the model the Lambda
  uses (``lambdas.domain.models.parse_request``), finds the ``Rollout`` state machine (the stack output
  ``StateMachineArn`` unless ``--state-machine-arn`` is given), starts an execution and prints its ARN and the
  console link; ``--wait`` then watches it.
- ``watch`` follows an execution from its history (GetExecutionHistory, forward, paginated; only events newer
  than the last id seen are shown), one line per state with the useful part of the rollout state (step, mode,
  gate, drain, time waited), a progress line when nothing changed for a while, and exits with the outcome.
- ``preflight`` prints the preflight report (``lambdas.domain.preflight_report``) through the real adapters,
  or on the simulated cluster with ``--simulate SCENARIO.yaml``.

Invariant: a bad input is refused with exit code 2 before any AWS call; missing credentials, an unset Region,
a missing stack or output, an unknown execution are one or two lines of advice on stderr and exit code 2,
never a traceback. ``watch`` exits 0 when the execution SUCCEEDED, 3 when it ended in ``RolledBack`` (the
previous revision is serving again), 1 for any other FAILED, TIMED_OUT or ABORTED. Every command uses the
ordinary AWS credential chain and Region settings (boto3's), nothing of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from albgate.cli import UsageError, register_command
from lambdas.domain.documents import DocumentError, decode_utf8, parse_json

DEFAULT_STACK = "Albgate"  # app.py's stack name (README, Start a rollout)
STACK_OUTPUT = "StateMachineArn"
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_USAGE, EXIT_ROLLED_BACK = 0, 1, 2, 3
ROLLED_BACK_ERROR = "RolledBack"  # the error of the `Rollout Rolled Back` Fail state (rollout_workflow.py)
ROLLBACK_PREFIX = "Rollback: "  # rollout_workflow.py prefixes the rollback path's states with this
# Step Functions execution names: 1-80 characters, none of whitespace, brackets, wildcards or these.
_NAME_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
_NAME_MAX = 80

NO_CREDENTIALS = (
    "no AWS credentials found; configure them the usual way (`aws configure`, `aws sso login --profile P` "
    "with AWS_PROFILE=P, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and run the command again"
)
NO_REGION = ("no AWS Region is set; pass --region REGION or set AWS_REGION / AWS_DEFAULT_REGION (or `region` in "
             "~/.aws/config)")


# ---------------------------------------------------------------------------------------------------------
# AWS plumbing: the ordinary credential chain, with advice instead of tracebacks
# ---------------------------------------------------------------------------------------------------------
def aws_session(region: str | None) -> tuple[Any, str]:
    """A boto3 session with credentials and a Region, or a UsageError that says what to do."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        session = boto3.Session(region_name=region) if region else boto3.Session()
        # boto3 reads AWS_DEFAULT_REGION and the profile; the AWS CLI v2 and the other SDKs also read AWS_REGION.
        resolved = session.region_name or os.environ.get("AWS_REGION") or None
        credentials = session.get_credentials()
    except ProfileNotFound as exc:
        raise UsageError(f"{exc}; set AWS_PROFILE to a profile in ~/.aws/config or unset it") from None
    except BotoCoreError as exc:
        raise UsageError(f"the AWS configuration cannot be read ({exc}); fix it, then run the command again") from None
    if not resolved:
        raise UsageError(NO_REGION)
    if credentials is None:
        raise UsageError(NO_CREDENTIALS)
    return session, resolved


def aws_advice(exc: Exception, what: str) -> UsageError | None:
    """Errors of setup (credentials, permissions, expired tokens) as advice; None for anything else."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return UsageError(NO_CREDENTIALS)
    if isinstance(exc, NoRegionError):
        return UsageError(NO_REGION)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}:
            return UsageError(f"{what}: the AWS credentials have expired ({code}); refresh them "
                              "(e.g. `aws sso login`) and run the command again")
        if code in {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                    "SignatureDoesNotMatch"}:
            return UsageError(f"{what}: AWS does not accept these credentials ({code}); check AWS_PROFILE "
                              "and the keys in use (`aws sts get-caller-identity`)")
        if code in {"AccessDenied", "AccessDeniedException"}:
            return UsageError(f"{what}: access denied ({message}); use a role allowed to do it")
    return None


def region_of_arn(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[0] == "arn" and parts[3] else None


def console_link(region: str, execution_arn: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/states/home?region={region}"
            f"#/v2/executions/details/{execution_arn}")


# ---------------------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------------------
REQUEST_FLAGS = ("cluster", "namespace", "deployment", "container", "image", "kind")
POLICY_FLAGS = ("steps", "batch_size", "bake_seconds", "step_deadline_seconds", "drain_deadline_seconds",
                "approval_before_steps", "harden", "rollback_on_failure", "pre_stop_seconds", "max_request_seconds")


def parse_steps(text: str) -> list[int | str]:
    """`1,25%,100%` -> [1, "25%", "100%"]; anything else is left for the model to name."""
    steps: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        steps.append(int(part) if part.isdigit() else part)
    return steps


def _int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of step numbers") from None


def build_input(args: argparse.Namespace) -> dict[str, Any]:
    """The execution input: the JSON file (if any), then every flag given on top of it."""
    data: dict[str, Any] = {}
    if args.file is not None:
        try:
            raw = Path(args.file).read_bytes()
        except OSError as exc:
            raise UsageError(f"{args.file}: cannot read the input ({exc.strerror or exc})") from None
        try:
            data = parse_json(decode_utf8(raw, args.file), args.file)
        except DocumentError as exc:
            raise UsageError(str(exc)) from None
        if not isinstance(data, dict):
            raise UsageError(f"{args.file}: the input must be a JSON object like docs/examples/ shows")
    for key in REQUEST_FLAGS:
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    policy_flags = {k: getattr(args, k) for k in POLICY_FLAGS if getattr(args, k) is not None}
    if policy_flags:
        policy = data.get("policy", {})
        if not isinstance(policy, dict):
            policy = {}  # the model names the field when it is not an object; flags replace it here
        data["policy"] = {**policy, **policy_flags}
    return data


def validate_input(data: dict[str, Any]) -> Any:
    """The Lambda's own validation; an error names the field (exit 2)."""
    from lambdas.domain.errors import InvalidInputError
    from lambdas.domain.models import parse_request

    try:
        return parse_request(data)
    except InvalidInputError as exc:
        raise UsageError(f"{exc} (docs/rollout.md lists every field)") from None


def execution_name(deployment: str, now: float | None = None) -> str:
    """`<deployment>-<unix time>`, cut to the 80 characters Step Functions allows."""
    suffix = f"-{int(time.time() if now is None else now)}"
    return deployment[: _NAME_MAX - len(suffix)] + suffix


def check_execution_name(name: str) -> str:
    if not 1 <= len(name) <= _NAME_MAX or _NAME_FORBIDDEN.search(name):
        raise UsageError(f"--name {name!r}: an execution name has 1-80 characters, no spaces, brackets, "
                         "wildcards or any of \" # % \\ ^ | ~ ` $ & , ; : /")
    return name


def find_state_machine(session: Any, region: str, stack_name: str) -> str:
    """The stack's `StateMachineArn` output, or advice when the stack or the output is missing."""
    from botocore.exceptions import BotoCoreError, ClientError

    cfn = session.client("cloudformation", region_name=region)
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        advice = aws_advice(exc, f"DescribeStacks {stack_name}")
        if advice:
            raise advice from None
        if "does not exist" in str(exc):
            raise UsageError(
                f"no stack {stack_name!r} in {region}; deploy albgate there first (`cdk deploy`, README "
                f"\"Deploy\"), or pass --stack-name NAME / --state-machine-arn ARN / --region REGION"
            ) from None
        raise UsageError(f"DescribeStacks {stack_name} failed: {exc}") from None
    except BotoCoreError as exc:
        raise (aws_advice(exc, "DescribeStacks") or UsageError(f"DescribeStacks {stack_name} failed: {exc}")) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs") or [])} if stacks else {}
    if STACK_OUTPUT not in outputs:
        status = stacks[0].get("StackStatus", "?") if stacks else "?"
        raise UsageError(
            f"stack {stack_name!r} in {region} ({status}) has no {STACK_OUTPUT} output; is it albgate's stack? "
            "Pass --stack-name NAME or --state-machine-arn ARN"
        )
    return outputs[STACK_OUTPUT]


def _start(args: argparse.Namespace) -> int:
    data = build_input(args)
    request = validate_input(data)  # before any AWS call
    name = check_execution_name(args.name) if args.name else execution_name(request.deployment)
    region_arg = args.region or (region_of_arn(args.state_machine_arn) if args.state_machine_arn else None)
    session, region = aws_session(region_arg)
    arn = args.state_machine_arn or find_state_machine(session, region, args.stack_name)

    from botocore.exceptions import BotoCoreError, ClientError

    sfn = session.client("stepfunctions", region_name=region)
    try:
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(data))
    except ClientError as exc:
        advice = aws_advice(exc, "StartExecution")
        if advice:
            raise advice from None
        code = exc.response.get("Error", {}).get("Code", "")
        hints = {
            "StateMachineDoesNotExist": f"no state machine {arn} in {region}; check --state-machine-arn / --region",
            "ExecutionAlreadyExists": f"an execution named {name!r} already exists; pass another --name",
            "InvalidArn": f"{arn!r} is not a state machine ARN",
            "InvalidName": f"{name!r} is not a valid execution name; pass another --name",
        }
        raise UsageError(hints.get(code, f"StartExecution failed: {exc}")) from None
    except BotoCoreError as exc:
        raise (aws_advice(exc, "StartExecution") or UsageError(f"StartExecution failed: {exc}")) from None
    execution_arn = started["executionArn"]
    link = console_link(region, execution_arn)
    if args.json:
        print(json.dumps({"type": "Started", "executionArn": execution_arn, "name": name, "stateMachineArn": arn,
                          "region": region, "console": link,
                          "startDate": _iso(started.get("startDate"))}, sort_keys=True), flush=True)
    else:
        print(f"started {execution_arn}")
        print(f"console: {link}", flush=True)
    if not args.wait:
        return EXIT_SUCCEEDED
    return Watcher(sfn, execution_arn, region, json_lines=args.json, poll_seconds=args.poll_seconds,
                   quiet_seconds=args.quiet_seconds, announce=False).run()


def _add_request_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rollout input (flags override the --file's fields; docs/rollout.md)")
    g.add_argument("--file", "-f", metavar="INPUT.json", help="the execution input as JSON (docs/examples/)")
    g.add_argument("--cluster", metavar="C", help="EKS cluster name")
    g.add_argument("--namespace", metavar="N", help="namespace of the Deployment")
    g.add_argument("--deployment", metavar="D", help="Deployment to roll")
    g.add_argument("--container", metavar="X", help="container whose image changes")
    g.add_argument("--image", metavar="I", help="new image (a digest is preferred; an ECR tag is pinned)")
    g.add_argument("--kind", choices=["rollout", "restart"], help="restart: same image, every pod re-created")
    g.add_argument("--steps", type=parse_steps, metavar="1,25%%,100%%",
                   help="cumulative new pods after each step (default 1,25%%,50%%,100%%)")
    g.add_argument("--batch-size", type=int, metavar="N", help="instead of --steps: N new pods per step")
    g.add_argument("--bake-seconds", type=int, metavar="N", help="wait after each passed step (default 0)")
    g.add_argument("--step-deadline-seconds", type=int, metavar="N", help="a step's gate deadline (default 900)")
    g.add_argument("--drain-deadline-seconds", type=int, metavar="N",
                   help="old targets must have left by then (default: deregistration delay + 120)")
    g.add_argument("--approval-before-steps", type=_int_list, metavar="2,3",
                   help="1-based steps that wait for a person's approval")
    g.add_argument("--harden", action="store_const", const=True, default=None,
                   help="let albgate fix maxUnavailable, preStop and the grace period instead of stopping")
    g.add_argument("--no-rollback", dest="rollback_on_failure", action="store_const", const=False, default=None,
                   help="stop on a failed step instead of rolling back")
    g.add_argument("--pre-stop-seconds", type=int, metavar="N", help="preStop sleep written when hardening")
    g.add_argument("--max-request-seconds", type=int, metavar="N", help="the longest request the app serves")


def _add_watch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line (per event, then a summary)")
    p.add_argument("--poll-seconds", type=float, default=5.0, metavar="N",
                   help="seconds between history reads (default %(default)s)")
    p.add_argument("--quiet-seconds", type=float, default=60.0, metavar="N",
                   help="print a progress line when nothing changed for this long (default %(default)s)")


def _configure_start(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = sub.add_parser(
        "start",
        help="validate a rollout input and start a gated rollout execution",
        description="Validate the input with the model the Lambda uses (an error names the field, nothing is "
        "called), find the Rollout state machine from the stack output StateMachineArn, start an execution, "
        "print its ARN and console link; --wait then follows it like `albgate watch`.",
    )
    _add_request_flags(p)
    where = p.add_argument_group("where")
    where.add_argument("--state-machine-arn", metavar="ARN", help="skip the stack lookup")
    where.add_argument("--stack-name", default=DEFAULT_STACK, metavar="NAME",
                       help="stack whose StateMachineArn output to use (default %(default)s)")
    where.add_argument("--region", metavar="R", help="AWS Region (default: AWS_REGION / the profile's)")
    p.add_argument("--name", metavar="NAME", help="execution name (default <deployment>-<unix time>)")
    p.add_argument("--wait", action="store_true", help="follow the execution until it ends, exit with its outcome")
    _add_watch_flags(p)
    p.set_defaults(handler=_start)
    return p


# ---------------------------------------------------------------------------------------------------------
# watch
# ---------------------------------------------------------------------------------------------------------
def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (None if value is None else str(value))


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
    for key in ("wait_seconds", "bake_seconds", "outcome", "failure_summary"):
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
        record: dict[str, Any] = {"type": etype, "id": event["id"], "timestamp": _iso(ts),
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


def _watch(args: argparse.Namespace) -> int:
    arn = args.execution_arn
    if not arn.startswith("arn:") or ":execution:" not in arn:
        raise UsageError(f"{arn!r} is not an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME); "
                         "`albgate start` prints it")
    session, region = aws_session(args.region or region_of_arn(arn))
    sfn = session.client("stepfunctions", region_name=region)
    return Watcher(sfn, arn, region, json_lines=args.json, poll_seconds=args.poll_seconds,
                   quiet_seconds=args.quiet_seconds).run()


def _configure_watch(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = sub.add_parser(
        "watch",
        help="follow a rollout execution step by step and exit with its outcome",
        description="Follow an execution from its history: a line per state with the step, mode, gate and "
        "drain status and the time waited. Exit 0 SUCCEEDED, 3 rolled back (error RolledBack), 1 any other "
        "failure, time-out or abort, 2 when it cannot watch (credentials, Region, unknown execution).",
    )
    p.add_argument("execution_arn", metavar="EXECUTION_ARN", help="what `albgate start` printed")
    p.add_argument("--region", metavar="R", help="AWS Region (default: the ARN's)")
    _add_watch_flags(p)
    p.set_defaults(handler=_watch)
    return p


# ---------------------------------------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------------------------------------
def report_request(args: argparse.Namespace, cluster: str, expect_controller: bool) -> Any:
    from lambdas.domain.errors import InvalidInputError
    from lambdas.domain.preflight_report import parse_report_request

    data: dict[str, Any] = {"cluster": cluster, "expect_controller": expect_controller}
    if args.deployment:
        app: dict[str, Any] = {"namespace": args.namespace, "deployment": args.deployment}
        if args.container:
            app["container"] = args.container
        data["applications"] = [app]
    else:
        data["namespaces"] = [args.namespace]
    try:
        return parse_report_request(data)
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


def _simulated_ports(path: str) -> tuple[Any, Any, Any]:
    """The scenario's world at its steady state (just before its rollout would start), bootstrap ports on it."""
    from albgate.sim import ScenarioError, Simulation, load_scenario
    from albgate.sim.bootstrap_ports import bootstrap_ports

    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    sim = Simulation(scenario)
    sim.run_until(sim.rollout_start)
    kube, _ = bootstrap_ports(sim)
    return scenario, kube, sim.elb


def _preflight(args: argparse.Namespace) -> int:
    from lambdas.domain.errors import AlbgateError
    from lambdas.domain.preflight_report import preflight_report

    if args.simulate:
        scenario, kube, elb = _simulated_ports(args.simulate)
        cluster = args.cluster or scenario.cluster.name
        expect = not (args.no_controller or scenario.cluster.auto_mode)
        request = report_request(args, cluster, expect)
        where = f"the simulated cluster of {args.simulate}"
    else:
        if not args.cluster:
            raise UsageError("--cluster is required (or --simulate SCENARIO.yaml for the simulated cluster)")
        request = report_request(args, args.cluster, not args.no_controller)  # bad input: before any AWS call
        session, region = aws_session(args.region)
        from lambdas.adapters.elbv2 import ElbAdapter
        from lambdas.adapters.kubernetes_bootstrap import real_bootstrap_kube

        kube = elb = None
        where = f"cluster {args.cluster} in {region}"
    try:
        if kube is None:
            kube = real_bootstrap_kube(args.cluster, region)
            elb = ElbAdapter.for_region(region, session)
        report = preflight_report(kube, elb, request)
    except AlbgateError as exc:
        cause = exc.__cause__
        advice = aws_advice(cause, "preflight") if isinstance(cause, Exception) else None
        if advice:
            raise advice from None
        raise UsageError(f"the preflight report could not run on {where}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        advice = aws_advice(exc, "preflight")
        if advice:
            raise advice from None
        if isinstance(exc, (ClientError, BotoCoreError)):  # e.g. DescribeCluster: no such cluster
            raise UsageError(f"the preflight report could not run on {where}: {exc}") from None
        raise
    errors = sum(r.severity == "error" for r in report.risks)
    warnings = len(report.risks) - errors
    code = 1 if errors or (args.strict and warnings) else 0
    if args.json:
        print(json.dumps({**report.as_dict(), "exit_code": code}, sort_keys=True))
    else:
        print(report.render())
    return code


def _configure_preflight(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = sub.add_parser(
        "preflight",
        help="list every zero-downtime risk of a namespace or Deployment, each with its fix",
        description="Read the cluster and its target groups (nothing is changed) and print every risk with its "
        "fix (docs/bootstrap.md, Preflight report). Exit 1 when an error-level risk is found (--strict: any "
        "risk), 0 otherwise, 2 when the report cannot run.",
    )
    p.add_argument("--cluster", metavar="C", help="EKS cluster name (with --simulate: the scenario's)")
    p.add_argument("--namespace", required=True, metavar="N", help="namespace to check")
    p.add_argument("--deployment", metavar="D", help="check only this Deployment (default: all of the namespace)")
    p.add_argument("--container", metavar="X", help="the container albgate would roll")
    p.add_argument("--region", metavar="R", help="AWS Region (default: AWS_REGION / the profile's)")
    p.add_argument("--no-controller", action="store_true",
                   help="the cluster has no Load Balancer Controller to check (EKS Auto Mode)")
    p.add_argument("--simulate", metavar="SCENARIO.yaml", help="check the simulated cluster of a scenario instead")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=_preflight)
    return p


register_command("start", _configure_start)
register_command("watch", _configure_watch)
register_command("preflight", _configure_preflight)
