"""What several ``albgate`` sub-commands share: the lazily imported strategies, the exit codes, the AWS setup.

Job: ``resolve_strategy`` makes sure a simulation strategy is registered (``simulate`` and ``demo``),
importing the module of a lazy one; ``aws_session`` and ``aws_advice`` give ``start``, ``watch`` and
``preflight`` a boto3 session from the ordinary credential chain and Region settings, and turn setup errors
(credentials, Region, permissions, expired tokens) into advice.
Invariant: every failure the user can fix is a ``UsageError`` (exit code 2, one line), never a traceback;
nothing here reads credentials or settings of its own, only boto3's.
"""

from __future__ import annotations

import importlib
import os
from datetime import datetime
from typing import Any

from albgate.cli import UsageError


# ---------------------------------------------------------------------------------------------------------
# simulation strategies
# ---------------------------------------------------------------------------------------------------------
# Strategies that live in modules imported only when asked for (so `albgate simulate` stays light).
LAZY_STRATEGIES = {"albgate": "albgate.sim.albgate_strategy"}


def resolve_strategy(name: str) -> str:
    """Make sure the strategy is registered, importing its module when it is a lazy one."""
    from albgate.sim.strategies import strategy_names

    if name in strategy_names():
        return name
    module = LAZY_STRATEGIES.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise UsageError(
                f"strategy {name!r} needs the module {module}, which this installation lacks (reinstall albgate: "
                f"./dev demo); available: {', '.join(strategy_names())}"
            ) from None
        if name in strategy_names():
            return name
        raise UsageError(f"{module} was imported but did not register the strategy {name!r}")
    known = sorted(set(strategy_names()) | set(LAZY_STRATEGIES))
    raise UsageError(f"unknown strategy {name!r}; choose one of: {', '.join(known)}")


# ---------------------------------------------------------------------------------------------------------
# AWS plumbing: the ordinary credential chain, with advice instead of tracebacks
# ---------------------------------------------------------------------------------------------------------
# The exit codes of `start`, `watch` and `preflight` (docs/cli.md).
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_USAGE, EXIT_ROLLED_BACK = 0, 1, 2, 3

NO_CREDENTIALS = (
    "no AWS credentials found; configure them the usual way (`aws configure`, `aws sso login --profile P` "
    "with AWS_PROFILE=P, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and run the command again"
)
NO_REGION = ("no AWS Region is set; pass --region REGION or set AWS_REGION / AWS_DEFAULT_REGION (or `region` in "
             "~/.aws/config)")


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


def iso(value: Any) -> str | None:
    """A timestamp boto3 returned, for JSON output."""
    return value.isoformat() if isinstance(value, datetime) else (None if value is None else str(value))
