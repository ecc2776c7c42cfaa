"""ELBv2 adapter failures: AWS errors mapped to the domain's families (Stubber), retries through botocore's loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from botocore.stub import Stubber

from lambdas.adapters.elbv2 import MAX_ATTEMPTS, ElbAdapter, make_elbv2_client, map_aws_error
from lambdas.domain.errors import (
    AccessDeniedError,
    AwsUnavailableError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
)
from lambdas.domain.ports import TargetHealth

REGION = "eu-west-1"
TG_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s-readines-nginxsvc/0123456789abcdef"
# One session for the module: it caches the service model, so each test's fresh client is cheap.
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def test_client_uses_adaptive_retries() -> None:
    # Given the adapter's client / Then botocore is configured for adaptive retries with albgate's attempt budget
    client = make_elbv2_client(REGION, SESSION)
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": MAX_ATTEMPTS}


# --- error mapping, with botocore's Stubber -----------------------------------------------------------------
def stubbed() -> tuple[ElbAdapter, Stubber]:
    client = make_elbv2_client(REGION, SESSION)
    return ElbAdapter(client), Stubber(client)


@pytest.mark.parametrize(
    "code,status,message,error",
    [
        ("Throttling", 400, "Rate exceeded", ThrottledError),
        ("ThrottlingException", 400, "Rate exceeded", ThrottledError),
        ("SomethingNew", 400, "Rate exceeded", ThrottledError),
        ("InternalFailure", 500, "internal error", AwsUnavailableError),
        ("ServiceUnavailable", 503, "try later", AwsUnavailableError),
        ("Unknown", 502, "bad gateway", AwsUnavailableError),
        ("TargetGroupNotFound", 400, "One or more target groups not found", NotFoundError),
        ("AccessDenied", 403, "not authorized to perform elasticloadbalancing:DescribeTargetHealth", AccessDeniedError),
        ("ValidationError", 400, "'arn:bad' is not a valid target group ARN", InvalidInputError),
    ],
    ids=[
        "throttling",
        "throttling-exception",
        "rate-exceeded-message",
        "internal-failure",
        "service-unavailable",
        "other-5xx",
        "not-found",
        "access-denied",
        "validation",
    ],
)
@pytest.mark.parametrize("call", ["describe_target_health", "describe_target_group", "deregister_targets",
                                  "register_targets"])
def test_aws_errors_become_domain_errors(
    call: str, code: str, status: int, message: str, error: type[Exception]
) -> None:
    # Given ELBv2 answering an error (after botocore's own retries)
    adapter, stub = stubbed()
    operation = {"describe_target_group": "describe_target_groups"}.get(call, call)
    stub.add_client_error(operation, service_error_code=code, service_message=message, http_status_code=status)
    args = (TG_ARN, [("10.0.1.10", 8080)]) if call.endswith("register_targets") else (TG_ARN,)
    # When the adapter calls it
    with stub, pytest.raises(error) as caught:
        getattr(adapter, call)(*args)
    # Then the domain error carries the AWS message and the ClientError as its cause
    assert message in str(caught.value) and TG_ARN in str(caught.value)
    assert isinstance(caught.value.__cause__, ClientError)


def test_missing_deregistration_attribute_falls_back_to_the_elb_default() -> None:
    # Given a target group whose attributes do not list the deregistration delay
    adapter, stub = stubbed()
    stub.add_response(
        "describe_target_groups",
        {"TargetGroups": [{"TargetGroupArn": TG_ARN, "TargetType": "ip", "Protocol": "HTTP", "Port": 80}]},
    )
    stub.add_response("describe_target_group_attributes", {"Attributes": []})
    # When it is described
    with stub:
        tg = adapter.describe_target_group(TG_ARN)
    # Then the ELB default (300 s) and the LBC's health check defaults stand in (docs/facts.md, Service annotations
    # override the Ingress's)
    assert tg.deregistration_delay_seconds == 300
    assert (tg.health_check_interval_seconds, tg.healthy_threshold, tg.load_balancer_arns) == (15, 2, ())


def test_target_health_reasons_are_kept() -> None:
    # Given a target still registering
    adapter, stub = stubbed()
    stub.add_response(
        "describe_target_health",
        {
            "TargetHealthDescriptions": [
                {
                    "Target": {"Id": "10.0.1.10", "Port": 80},
                    "TargetHealth": {
                        "State": "initial",
                        "Reason": "Elb.RegistrationInProgress",
                        "Description": "Target registration is in progress",
                    },
                }
            ]
        },
    )
    # When target health is described
    with stub:
        (target,) = adapter.describe_target_health(TG_ARN)
    # Then state, reason and description survive
    assert target == TargetHealth(
        "10.0.1.10", 80, "initial", "Elb.RegistrationInProgress", "Target registration is in progress"
    )


@pytest.mark.parametrize(
    "exception,error",
    [
        (
            EndpointConnectionError(endpoint_url="https://elasticloadbalancing.eu-west-1.amazonaws.com"),
            AwsUnavailableError,
        ),
        (ReadTimeoutError(endpoint_url="https://elasticloadbalancing.eu-west-1.amazonaws.com"), AwsUnavailableError),
        (NoCredentialsError(), AccessDeniedError),
    ],
    ids=["connection-failed", "read-timeout", "no-credentials"],
)
def test_sdk_failures_become_domain_errors(exception: Exception, error: type[Exception]) -> None:
    # Given a failure below the HTTP answer / When it is mapped / Then it is the domain error for it
    assert isinstance(map_aws_error(exception, "DescribeTargetHealth"), error)


# --- the retries themselves, through botocore's real retry loop ----------------------------------------------
class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
THROTTLED = (
    f'<ErrorResponse xmlns="{_NS}"><Error><Type>Sender</Type><Code>Throttling</Code>'
    "<Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
).encode()
HEALTH = (
    f'<DescribeTargetHealthResponse xmlns="{_NS}"><DescribeTargetHealthResult><TargetHealthDescriptions><member>'
    "<Target><Id>10.0.1.10</Id><Port>80</Port></Target><TargetHealth><State>healthy</State></TargetHealth>"
    "</member></TargetHealthDescriptions></DescribeTargetHealthResult>"
    "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeTargetHealthResponse>"
).encode()


@pytest.mark.parametrize(
    "throttles,expected_attempts,outcome",
    [(2, 3, "healthy"), (MAX_ATTEMPTS, MAX_ATTEMPTS, "ThrottledError")],
    ids=["recovers-after-two-throttles", "gives-up-after-the-attempt-budget"],
)
def test_throttling_is_retried_with_backoff_before_it_surfaces(
    monkeypatch: pytest.MonkeyPatch, throttles: int, expected_attempts: int, outcome: str
) -> None:
    # Given an ELBv2 endpoint that answers "Rate exceeded" a number of times, then succeeds; time is virtual:
    # botocore's backoff sleeps and its adaptive rate limiter's clock both read it, so nothing waits for real.
    virtual = [1_767_322_800.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        virtual[0] += seconds

    monkeypatch.setattr("time.sleep", sleep)
    monkeypatch.setattr("time.time", lambda: virtual[0])
    client = make_elbv2_client(REGION, SESSION)
    attempts: list[int] = []

    def http(request: Any, **_: Any) -> AWSResponse:
        attempts.append(1)
        virtual[0] += 5.0  # each answer takes a while: the rate limiter's bucket refills in between
        body, status = (THROTTLED, 400) if len(attempts) <= throttles else (HEALTH, 200)
        return AWSResponse(request.url, status, {}, _Raw(body))

    client.meta.events.register("before-send", http)  # every request of this client: nothing reaches a network
    # When target health is described
    try:
        result = ElbAdapter(client).describe_target_health(TG_ARN)[0].state
    except ThrottledError as e:
        result = type(e).__name__
    # Then botocore retried (sleeping between attempts) and only then did the outcome surface
    assert (len(attempts), result) == (expected_attempts, outcome)
    assert sum(s > 0 for s in sleeps) >= expected_attempts - 1


def test_deregister_sends_ip_and_port_and_treats_invalid_target_as_gone() -> None:
    # Given ELBv2 that accepts the first call and answers InvalidTarget ("does not exist") to the second
    adapter, stub = stubbed()
    expected = {"TargetGroupArn": TG_ARN, "Targets": [{"Id": "10.0.1.10", "Port": 8080}]}
    stub.add_response("deregister_targets", {}, expected)
    stub.add_client_error("deregister_targets", service_error_code="InvalidTarget", http_status_code=400,
                          service_message="The following targets are not registered", expected_params=expected)
    # When albgate deregisters the same target twice / Then both calls succeed and carry IP and port
    with stub:
        adapter.deregister_targets(TG_ARN, [("10.0.1.10", 8080)])
        adapter.deregister_targets(TG_ARN, [("10.0.1.10", 8080)])
    stub.assert_no_pending_responses()


def test_register_sends_ip_and_port_and_an_invalid_target_is_an_error() -> None:
    # Given ELBv2 that accepts the first call and answers InvalidTarget (e.g. an IP outside the group's VPC) to
    # the second
    adapter, stub = stubbed()
    expected = {"TargetGroupArn": TG_ARN, "Targets": [{"Id": "10.0.1.10", "Port": 8080}]}
    stub.add_response("register_targets", {}, expected)
    stub.add_client_error("register_targets", service_error_code="InvalidTarget", http_status_code=400,
                          service_message="The following targets are not in the target group's VPC",
                          expected_params=expected)
    with stub:
        # When albgate registers a target / Then the call carries IP and port
        adapter.register_targets(TG_ARN, [("10.0.1.10", 8080)])
        # And a refused registration is not taken for done: it surfaces, naming the target group
        with pytest.raises(InvalidInputError, match="RegisterTargets") as caught:
            adapter.register_targets(TG_ARN, [("10.0.1.10", 8080)])
    stub.assert_no_pending_responses()
    assert TG_ARN in str(caught.value)
