"""DeregisterTargets through the adapter, as ELBv2 answers it (Stubber): a target is its Id and Port, an absent one is
no error, and InvalidTarget refuses a whole batch (docs/facts.md, "ELBv2 DeregisterTargets: Id, Port and absent
targets"), which must not leave the batch's other targets serving."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.adapters.elbv2 import ElbAdapter, make_elbv2_client
from lambdas.domain.errors import ThrottledError

REGION = "eu-west-1"
TG_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/k8s-readines-nginxsvc/0123456789abcdef"
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

GONE, PRESENT, OTHER, REFUSED = ("10.0.1.10", 8080), ("10.0.1.11", 8080), ("10.0.1.12", 8080), ("172.31.9.9", 8080)


def stubbed() -> tuple[ElbAdapter, Stubber]:
    client = make_elbv2_client(REGION, SESSION)
    return ElbAdapter(client), Stubber(client)


def sent(*targets: tuple[str, int]) -> dict:
    return {"TargetGroupArn": TG_ARN, "Targets": [{"Id": ip, "Port": port} for ip, port in targets]}


def refuse(stub: Stubber, *targets: tuple[str, int]) -> None:
    stub.add_client_error("deregister_targets", service_error_code="InvalidTarget", http_status_code=400,
                          service_message="The specified target does not exist or is not in the same VPC",
                          expected_params=sent(*targets))


def test_a_batch_of_gone_and_present_targets_is_one_call():
    # Given ELBv2, which answers a target that is not registered with success
    adapter, stub = stubbed()
    stub.add_response("deregister_targets", {}, sent(GONE, PRESENT))
    # When albgate deregisters a gone target with a present one / Then that one call is all, and no error
    with stub:
        adapter.deregister_targets(TG_ARN, [GONE, PRESENT])
    stub.assert_no_pending_responses()


def test_a_batch_refused_for_one_target_still_deregisters_every_other():
    # Given ELBv2 refusing any call that names REFUSED (InvalidTarget) and accepting the others
    adapter, stub = stubbed()
    refuse(stub, PRESENT, REFUSED, OTHER)
    stub.add_response("deregister_targets", {}, sent(PRESENT))
    refuse(stub, REFUSED, OTHER)
    refuse(stub, REFUSED)
    stub.add_response("deregister_targets", {}, sent(OTHER))
    # When albgate deregisters the three / Then the batch is split until each present target went through on its
    # own (a refused batch deregistered none of them), and the refused one, not a target of the group, is no error
    with stub:
        adapter.deregister_targets(TG_ARN, [PRESENT, REFUSED, OTHER])
    stub.assert_no_pending_responses()


def test_a_wrong_port_is_sent_as_given():
    # Given a target registered on 8080 that albgate names on 9090: ELBv2 answers success and changes nothing
    adapter, stub = stubbed()
    stub.add_response("deregister_targets", {}, sent((PRESENT[0], 9090)))
    # When it is deregistered / Then the adapter asks for exactly that target, and adds no call of its own: a
    # wrong port cannot be told from a gone target without spending a Describe* token, so the caller names the
    # port DescribeTargetHealth showed
    with stub:
        adapter.deregister_targets(TG_ARN, [(PRESENT[0], 9090)])
    stub.assert_no_pending_responses()


def test_a_failure_while_splitting_is_raised_not_swallowed():
    # Given a refused batch, then a throttle on its first half
    adapter, stub = stubbed()
    refuse(stub, PRESENT, REFUSED)
    stub.add_client_error("deregister_targets", service_error_code="Throttling", http_status_code=400,
                          service_message="Rate exceeded", expected_params=sent(PRESENT))
    # When albgate deregisters them / Then the throttle reaches albgate (so it does not count them deregistered)
    with stub, pytest.raises(ThrottledError, match="DeregisterTargets"):
        adapter.deregister_targets(TG_ARN, [PRESENT, REFUSED])
    stub.assert_no_pending_responses()
