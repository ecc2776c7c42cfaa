"""ELBv2 adapter: target health and target group settings, read through boto3 with adaptive retries.

Job: implement ``ElbPort`` (DescribeTargetHealth, DescribeTargetGroups, DescribeTargetGroupAttributes,
RegisterTargets, DeregisterTargets) and translate every AWS failure into the domain's error families
(``map_aws_error``, shared with the EKS client factory).

Invariant: nothing but domain errors leaves this module. Throttling is retried inside botocore first (adaptive mode:
exponential backoff plus a client-side token bucket that slows this client down after a throttle, because every
concurrent rollout and the Load Balancer Controller spend from the same Describe* bucket: docs/facts.md, "ELB API
throttling"); what is still throttled after the last attempt becomes ``ThrottledError`` so the state machine backs
off with its own Retry.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from lambdas.domain.errors import (
    AccessDeniedError,
    AlbgateError,
    AwsUnavailableError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
)
from lambdas.domain.descriptions import MAX_GROUPS_PER_CALL
from lambdas.domain.ports import TargetGroup, TargetGroupSettings, TargetHealth

# Attempts per call, first included. With botocore's backoff (base 1 s, doubling, jittered, capped at 20 s)
# five attempts spend at most ~15 s, well inside a 60 s Lambda, before the state machine takes over.
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 15
# Deregistration delay when the attribute is missing from the answer: the ELB default (300 s: docs/facts.md,
# Deregistration and draining).
DEFAULT_DEREGISTRATION_DELAY_SECONDS = 300
# Health check settings when the answer omits them (Lambda targets): the values the Load Balancer Controller
# writes (docs/facts.md, Service annotations override the Ingress's: interval 15 s, timeout 5 s, healthy 2,
# unhealthy 2).
_DEFAULT_HEALTH = {
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 2,
}

# Error codes AWS SDKs treat as throttling (ELBv2 answers "Throttling" with the message "Rate exceeded").
_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
    }
)
# DeregisterTargets refuses the whole call with InvalidTarget when a target it names "does not exist, is not in the
# same VPC as the target group, or has an unsupported instance type"; a target merely not registered (at all, or
# on the port named) is no error (docs/facts.md, "ELBv2 DeregisterTargets: Id, Port and absent targets").
_INVALID_TARGET_CODES = frozenset({"InvalidTarget"})
_NOT_FOUND_CODES = frozenset({"TargetGroupNotFound", "LoadBalancerNotFound", "ResourceNotFoundException"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {"InternalFailure", "InternalError", "ServiceUnavailable", "ServiceUnavailableException", "HealthUnavailable"}
)


def map_aws_error(error: Exception, action: str) -> AlbgateError:
    """The domain error for an AWS failure; ``action`` says what was being done, for the message.

    Callers ``raise map_aws_error(e, "...") from e`` so the original stays attached as the cause.
    """
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        said = f"{action}: AWS answered {code or status}: {message}".rstrip(": ")
        if code in _THROTTLE_CODES or "rate exceeded" in message.lower():
            return ThrottledError(
                f"{said}. The account's API rate is shared by every rollout and the Load Balancer Controller; "
                "albgate retries with backoff"
            )
        if code in _NOT_FOUND_CODES:
            return NotFoundError(f"{said}. Check the ARN or name and the Region it lives in")
        if code in _ACCESS_CODES or status in (401, 403):
            return AccessDeniedError(
                f"{said}. Grant the function's execution role this action on the resource "
                "(stacks/constructs/handler_specs.py lists what each function may call)"
            )
        if code in _UNAVAILABLE_CODES or status >= 500:
            return AwsUnavailableError(f"{said}. A transient AWS failure; albgate retries")
        if code == "ValidationError":
            return InvalidInputError(f"{said}. Fix the value named in the message")
        return InvalidInputError(f"{said}. The request was refused as malformed; fix the value it names")
    if isinstance(error, NoCredentialsError):
        return AccessDeniedError(f"{action}: no AWS credentials; run with an IAM role or configure credentials")
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return AwsUnavailableError(f"{action}: could not reach the AWS endpoint ({error}); albgate retries")
    if isinstance(error, BotoCoreError):
        return AwsUnavailableError(f"{action}: the AWS SDK failed ({error}); albgate retries")
    return AwsUnavailableError(f"{action}: unexpected failure {type(error).__name__}: {error}")


def client_config() -> Config:
    """botocore settings shared by albgate's AWS clients: adaptive retries and bounded timeouts."""
    return Config(
        # total_max_attempts counts the first attempt; botocore's "max_attempts" would count only the retries.
        retries={"mode": "adaptive", "total_max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
    )


def make_elbv2_client(region: str, session: boto3.Session | None = None) -> Any:
    return (session or boto3.Session(region_name=region)).client("elbv2", region_name=region, config=client_config())


class ElbAdapter:
    """``ElbPort`` over a boto3 ``elbv2`` client (made with :func:`make_elbv2_client`, or a stubbed one)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def for_region(cls, region: str, session: boto3.Session | None = None) -> ElbAdapter:
        return cls(make_elbv2_client(region, session))

    def describe_target_health(self, target_group_arn: str) -> list[TargetHealth]:
        try:
            answer = self._client.describe_target_health(TargetGroupArn=target_group_arn)
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"DescribeTargetHealth of {target_group_arn}") from e
        return [
            TargetHealth(
                target_id=d["Target"]["Id"],
                port=int(d["Target"].get("Port", 0)),
                state=d.get("TargetHealth", {}).get("State", ""),
                reason=d.get("TargetHealth", {}).get("Reason", ""),
                description=d.get("TargetHealth", {}).get("Description", ""),
            )
            for d in answer.get("TargetHealthDescriptions", [])
        ]

    def describe_target_group(self, target_group_arn: str) -> TargetGroup:
        (settings,) = self.describe_target_group_settings([target_group_arn])
        return settings.with_delay(self.describe_deregistration_delay(target_group_arn))

    def describe_target_group_settings(self, target_group_arns: list[str]) -> list[TargetGroupSettings]:
        """One DescribeTargetGroups call naming the groups (at most ``MAX_GROUPS_PER_CALL``: ELB refuses more,
        docs/facts.md; the answer for that many fits one page). A group ELB does not know fails the call
        (NotFoundError), as ELB answers TargetGroupNotFound for all."""
        arns = list(dict.fromkeys(target_group_arns))
        if not 0 < len(arns) <= MAX_GROUPS_PER_CALL:
            raise InvalidInputError(f"DescribeTargetGroups names 1 to {MAX_GROUPS_PER_CALL} target groups, "
                                    f"not {len(arns)}")
        try:
            groups = self._client.describe_target_groups(TargetGroupArns=arns)["TargetGroups"]
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"DescribeTargetGroups of {', '.join(arns)}") from e
        found = {tg["TargetGroupArn"]: tg for tg in groups}
        lost = [arn for arn in arns if arn not in found]
        if lost:
            raise NotFoundError(f"target group {lost[0]} was not returned by DescribeTargetGroups")
        return [_settings(found[arn]) for arn in arns]

    def describe_deregistration_delay(self, target_group_arn: str) -> int:
        try:
            attributes = self._client.describe_target_group_attributes(TargetGroupArn=target_group_arn)["Attributes"]
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"DescribeTargetGroupAttributes of {target_group_arn}") from e
        attrs = {a["Key"]: a.get("Value", "") for a in attributes}
        return int(attrs.get("deregistration_delay.timeout_seconds") or DEFAULT_DEREGISTRATION_DELAY_SECONDS)

    def deregister_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        """Start the drain of each (IP, port) target that is registered; one that is not is no error.

        ELBv2 names a target by Id and Port and answers a target that is not registered, on that port or at all,
        with success (docs/facts.md, "ELBv2 DeregisterTargets: Id, Port and absent targets"), so a wrong port
        changes nothing and cannot be told from a gone target here: the caller names the port
        DescribeTargetHealth showed. InvalidTarget refuses the whole call for one target ELB cannot hold in the
        group, which leaves every other target of the batch serving. So a refused batch is split in halves and
        each sent again, down to single targets: every target ELB accepts is deregistered; one it refuses alone
        is not a target of the group, so nothing of it is left to deregister. The split spends no Describe*
        token (at most 2n - 1 DeregisterTargets calls for n targets, from the mutating calls' own limit) and
        works while the Describe* bucket is empty, which is when albgate deregisters blind; finding the refused
        target with DescribeTargetHealth would cost a token from it and fail just then.
        """
        if targets:
            self._deregister(target_group_arn, list(targets))

    def _deregister(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        action = f"DeregisterTargets {targets} from {target_group_arn}"
        try:
            self._client.deregister_targets(
                TargetGroupArn=target_group_arn, Targets=[{"Id": ip, "Port": port} for ip, port in targets]
            )
            return
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) not in _INVALID_TARGET_CODES:
                raise map_aws_error(e, action) from e
        except BotoCoreError as e:
            raise map_aws_error(e, action) from e
        if len(targets) > 1:
            half = len(targets) // 2
            self._deregister(target_group_arn, targets[:half])
            self._deregister(target_group_arn, targets[half:])

    def register_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        if not targets:
            return
        try:
            self._client.register_targets(
                TargetGroupArn=target_group_arn, Targets=[{"Id": ip, "Port": port} for ip, port in targets]
            )
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, f"RegisterTargets {targets} in {target_group_arn}") from e


def _settings(tg: dict[str, Any]) -> TargetGroupSettings:
    """One target group of a DescribeTargetGroups answer."""
    health = {key: int(tg.get(key, default)) for key, default in _DEFAULT_HEALTH.items()}
    return TargetGroupSettings(
        arn=tg["TargetGroupArn"],
        target_type=tg.get("TargetType", ""),
        protocol=tg.get("Protocol", ""),
        port=int(tg.get("Port", 0)),
        health_check_interval_seconds=health["HealthCheckIntervalSeconds"],
        health_check_timeout_seconds=health["HealthCheckTimeoutSeconds"],
        healthy_threshold=health["HealthyThresholdCount"],
        unhealthy_threshold=health["UnhealthyThresholdCount"],
        load_balancer_arns=tuple(tg.get("LoadBalancerArns", ())),
    )
