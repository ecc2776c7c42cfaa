"""Hardening with target-group annotations on the Service (lambdas/domain/manifests.py): the controller prefers the
Service's annotation over the Ingress's, so albgate reads it there and changes it there (docs/facts.md, "Service
annotations override the Ingress's")."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdas.domain import lbc_annotations as lbc
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.manifests import (
    DEREGISTRATION_DELAY,
    HC_INTERVAL,
    HC_TIMEOUT,
    TARGET_TYPE,
    TG_ATTRIBUTES,
    HardeningPolicy,
    annotations_of,
    harden,
)
from lambdas.domain.lbc_annotations import HEALTHY_THRESHOLD, UNHEALTHY_THRESHOLD
from tests.bootstrap.conftest import deployment, ingress, service

POLICY = HardeningPolicy(pre_stop_seconds=30, max_request_seconds=30, health_check_interval_seconds=10)
IP = {TARGET_TYPE: "ip"}


def annotated_service(annotations: dict[str, str]) -> dict[str, Any]:
    svc = service()
    svc["metadata"]["annotations"] = dict(annotations)
    return svc


def run(svc_annotations: dict[str, str], ing_annotations: dict[str, str], policy: HardeningPolicy = POLICY):
    return harden(deployment(), annotated_service(svc_annotations), ingress(annotations={**IP, **ing_annotations}),
                  policy, namespace="shop", container="web")


def changes(result) -> dict[str, Any]:
    return {f"{c.object} {c.field}": c.after for c in result.changes if "annotations" in c.field}


# (Service annotations, Ingress annotations, expected annotation changes)
CASES = [
    pytest.param({HC_INTERVAL: "30"}, {HC_INTERVAL: "10"},
                 {f"Service/web metadata.annotations[{HC_INTERVAL}]": "10"},
                 id="service-interval-overrides-a-good-ingress-one-and-is-lowered-on-the-service"),
    pytest.param({HC_TIMEOUT: "12"}, {HC_TIMEOUT: "2", HC_INTERVAL: "10"},
                 {f"Ingress/web metadata.annotations[{HC_INTERVAL}]": "13"},
                 id="service-timeout-decides-the-interval-written-on-the-ingress"),
    pytest.param({HC_INTERVAL: "8", HC_TIMEOUT: "9"}, {},
                 {f"Service/web metadata.annotations[{HC_INTERVAL}]": "10"},
                 id="service-interval-not-above-its-timeout-raised-on-the-service"),
    pytest.param({TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=10"}, {TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=60"},
                 {f"Service/web metadata.annotations[{TG_ATTRIBUTES}]": f"{DEREGISTRATION_DELAY}=30",
                  f"Ingress/web metadata.annotations[{HC_INTERVAL}]": "10"},
                 id="service-delay-overrides-a-long-ingress-one-and-is-raised-on-the-service"),
    pytest.param({TG_ATTRIBUTES: "stickiness.enabled=true", HC_INTERVAL: "10"},
                 {TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=5"}, {},
                 id="service-attributes-hide-a-short-ingress-delay-default-300-needs-nothing"),
    pytest.param({HC_INTERVAL: "10", HEALTHY_THRESHOLD: "3", UNHEALTHY_THRESHOLD: "2"}, {HC_INTERVAL: "60"}, {},
                 id="good-service-values-win-over-bad-ingress-ones"),
]


@pytest.mark.parametrize(("svc_annotations", "ing_annotations", "expected"), CASES)
def test_service_annotations_are_read_and_changed_where_they_take_effect(svc_annotations, ing_annotations,
                                                                        expected) -> None:
    # Given an Ingress and a Service that both carry target-group annotations
    # When the manifests are hardened
    result = run(svc_annotations, ing_annotations)
    # Then the annotation changes are exactly these, on the object the controller reads
    assert changes(result) == expected


def test_a_service_change_says_the_ingress_value_is_ignored() -> None:
    # Given a Service interval of 30 s hiding the Ingress's 10 s
    # When hardened
    result = run({HC_INTERVAL: "30"}, {HC_INTERVAL: "10"})
    # Then the change log names the Service, the old value, and why the Ingress was not the place
    [change] = [c for c in result.changes if c.field.endswith(f"[{HC_INTERVAL}]")]
    assert (change.object, change.before, change.after) == ("Service/web", "30", "10")
    assert "overrides the Ingress's ('10', ignored by the controller)" in change.reason
    assert annotations_of(result.ingress)[HC_INTERVAL] == "10" and annotations_of(result.service)[HC_INTERVAL] == "10"


def test_after_hardening_the_controller_reads_albgates_values() -> None:
    # Given a Service overriding interval, timeout, thresholds and the deregistration delay with unsafe values
    svc = {HC_INTERVAL: "60", HC_TIMEOUT: "30", HEALTHY_THRESHOLD: "5", UNHEALTHY_THRESHOLD: "5",
           TG_ATTRIBUTES: f"stickiness.enabled=true,{DEREGISTRATION_DELAY}=0"}
    # When hardened
    result = run(svc, {HC_INTERVAL: "10", TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=30"})
    ing_a, svc_a = annotations_of(result.ingress), annotations_of(result.service)
    # Then what the controller will read meets the policy, other attributes are kept, thresholds are untouched
    assert lbc.effective_int(HC_INTERVAL, ing_a, svc_a) == (31, "Service")  # above the Service's 30 s timeout
    assert lbc.deregistration_delay(ing_a, svc_a) == (30, "Service")
    assert svc_a[TG_ATTRIBUTES] == f"stickiness.enabled=true,{DEREGISTRATION_DELAY}=30"
    assert lbc.health_check(ing_a, svc_a).healthy_threshold == 5


def test_hardening_twice_changes_nothing_the_second_time() -> None:
    # Given manifests hardened once with Service overrides
    once = run({HC_INTERVAL: "30", TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=1"}, {})
    # When hardened again
    twice = harden(once.deployment, once.service, once.ingress, POLICY, namespace="shop", container="web")
    # Then nothing changes
    assert twice.changes == []


def test_without_harden_the_service_overrides_are_findings_and_nothing_changes() -> None:
    # Given a Service with a short deregistration delay and harden off
    svc = {TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=5"}
    result = run(svc, {HC_INTERVAL: "10"}, policy=HardeningPolicy(harden=False))
    # Then the finding names the Service and the manifests come back as given
    assert [f.object for f in result.findings if f.field.endswith(f"[{TG_ATTRIBUTES}]")] == ["Service/web"]
    assert annotations_of(result.service) == svc


BAD = [
    pytest.param({HC_INTERVAL: "ten"}, HC_INTERVAL, id="service-interval-not-a-number"),
    pytest.param({UNHEALTHY_THRESHOLD: "two"}, UNHEALTHY_THRESHOLD, id="service-threshold-not-a-number"),
    pytest.param({TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=4000"}, "must be 0-3600", id="service-delay-out-of-range"),
]


@pytest.mark.parametrize(("svc_annotations", "phrase"), BAD)
def test_malformed_service_annotations_are_refused_with_their_path(svc_annotations, phrase) -> None:
    # Given a Service annotation the controller would fail on
    # When hardened / Then the input is refused naming the Service's annotation
    with pytest.raises(InvalidInputError) as err:
        run(svc_annotations, {})
    assert "service.metadata.annotations[" in str(err.value) and phrase in str(err.value)


_seconds = st.none() | st.integers(1, 120).map(str)


@settings(max_examples=200, deadline=None)
@given(svc_interval=_seconds, ing_interval=_seconds, svc_timeout=st.none() | st.integers(2, 60).map(str),
       ing_timeout=st.none() | st.integers(2, 60).map(str), svc_delay=st.none() | st.integers(0, 3600),
       ing_delay=st.none() | st.integers(0, 3600))
def test_wherever_the_values_sit_the_hardened_ones_take_effect(svc_interval, ing_interval, svc_timeout, ing_timeout,
                                                               svc_delay, ing_delay) -> None:
    # Given interval, timeout and delay spread over the Service and the Ingress in any way
    def pick(**values: Any) -> dict[str, str]:
        out = {k: v for k, v in values.items() if v is not None}
        return {{"interval": HC_INTERVAL, "timeout": HC_TIMEOUT, "delay": TG_ATTRIBUTES}[k]:
                (f"{DEREGISTRATION_DELAY}={v}" if k == "delay" else v) for k, v in out.items()}
    svc, ing = pick(interval=svc_interval, timeout=svc_timeout, delay=svc_delay), pick(
        interval=ing_interval, timeout=ing_timeout, delay=ing_delay)
    # When hardened
    result = run(svc, ing)
    ing_a, svc_a = annotations_of(result.ingress), annotations_of(result.service)
    # Then the controller's reading has a long enough delay and an interval above the timeout, no longer than
    # the policy's unless the timeout forces it
    interval, timeout = lbc.effective_int(HC_INTERVAL, ing_a, svc_a)[0], lbc.effective_int(HC_TIMEOUT, ing_a, svc_a)[0]
    assert lbc.deregistration_delay(ing_a, svc_a)[0] >= POLICY.max_request_seconds
    assert timeout < interval <= max(POLICY.health_check_interval_seconds, timeout + 1)
