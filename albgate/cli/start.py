"""`albgate start`: validate a rollout input and start an execution of the ``Rollout`` state machine.

Job: build the execution input from flags or a JSON file, validate it locally with the model the Lambda uses
(``lambdas.domain.models.parse_request``), find the ``Rollout`` state machine (the stack output
``StateMachineArn`` unless ``--state-machine-arn`` is given), start an execution and print its ARN and the
console link; ``--wait`` then follows it with ``albgate watch``'s ``Watcher`` and exits with its outcome.
Invariant: a bad input is refused with exit code 2 before any AWS call; missing credentials, an unset Region,
a missing stack or output are one or two lines of advice on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from albgate.cli import UsageError
from albgate.cli.common import EXIT_SUCCEEDED, aws_advice, aws_session, console_link, iso, region_of_arn
from albgate.cli.watch import Watcher, add_watch_flags
from lambdas.domain.documents import DocumentError, decode_utf8, parse_json

DEFAULT_STACK = "Albgate"  # app.py's stack name (README, Start a rollout)
STACK_OUTPUT = "StateMachineArn"
# Step Functions execution names: 1-80 characters, none of whitespace, brackets, wildcards or these.
_NAME_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
_NAME_MAX = 80

HELP = "validate a rollout input and start a gated rollout execution"
DESCRIPTION = ("Validate the input with the model the Lambda uses (an error names the field, nothing is called), "
               "find the Rollout state machine from the stack output StateMachineArn, start an execution, print "
               "its ARN and console link; --wait then follows it like `albgate watch`.")

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


def find_state_machine(session: Any, region: str, stack_name: str, output: str = STACK_OUTPUT) -> str:
    """The stack's ``output`` (`StateMachineArn`, or the release stack's), or advice when the stack or the output
    is missing."""
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
    if output not in outputs:
        status = stacks[0].get("StackStatus", "?") if stacks else "?"
        raise UsageError(
            f"stack {stack_name!r} in {region} ({status}) has no {output} output; is it albgate's stack? "
            "Pass --stack-name NAME or --state-machine-arn ARN"
        )
    return outputs[output]


def run(args: argparse.Namespace) -> int:
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
                          "startDate": iso(started.get("startDate"))}, sort_keys=True), flush=True)
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
                   help="old targets must be out of every target group's pool by then (default: deregistration delay + 120)")
    g.add_argument("--approval-before-steps", type=_int_list, metavar="2,3",
                   help="1-based steps that wait for a person's approval")
    g.add_argument("--harden", action="store_const", const=True, default=None,
                   help="let albgate fix maxUnavailable, preStop and the grace period instead of stopping")
    g.add_argument("--no-rollback", dest="rollback_on_failure", action="store_const", const=False, default=None,
                   help="stop on a failed step instead of rolling back")
    g.add_argument("--pre-stop-seconds", type=int, metavar="N", help="preStop sleep written when hardening")
    g.add_argument("--max-request-seconds", type=int, metavar="N", help="the longest request the app serves")


def add_arguments(p: argparse.ArgumentParser) -> None:
    _add_request_flags(p)
    where = p.add_argument_group("where")
    where.add_argument("--state-machine-arn", metavar="ARN", help="skip the stack lookup")
    where.add_argument("--stack-name", default=DEFAULT_STACK, metavar="NAME",
                       help="stack whose StateMachineArn output to use (default %(default)s)")
    where.add_argument("--region", metavar="R", help="AWS Region (default: AWS_REGION / the profile's)")
    p.add_argument("--name", metavar="NAME", help="execution name (default <deployment>-<unix time>)")
    p.add_argument("--wait", action="store_true", help="follow the execution until it ends, exit with its outcome")
    add_watch_flags(p)
