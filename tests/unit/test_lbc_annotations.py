"""Target-group annotations read as the Load Balancer Controller reads them: the Service's over the Ingress's
(lambdas/domain/lbc_annotations.py, health_check.py; docs/facts.md, "Service annotations override the Ingress's")."""

from __future__ import annotations

import pytest

from lambdas.domain import health_check, lbc_annotations as lbc
from lambdas.domain.lbc_annotations import (
    DEREGISTRATION_DELAY,
    HC_INTERVAL,
    HC_TIMEOUT,
    HEALTHY_THRESHOLD,
    TG_ATTRIBUTES,
    UNHEALTHY_THRESHOLD,
)

# (key, Ingress annotations, Service annotations, expected value, expected source)
READINGS = [
    pytest.param(HC_INTERVAL, {HC_INTERVAL: "10"}, {HC_INTERVAL: "30"}, 30, "Service", id="interval-service-wins"),
    pytest.param(HC_INTERVAL, {HC_INTERVAL: "10"}, {}, 10, "Ingress", id="interval-ingress-alone"),
    pytest.param(HC_INTERVAL, {}, {HC_INTERVAL: "20"}, 20, "Service", id="interval-service-alone"),
    pytest.param(HC_INTERVAL, {}, {}, 15, "default", id="interval-default-15"),
    pytest.param(HC_TIMEOUT, {HC_TIMEOUT: "4"}, {HC_TIMEOUT: "9"}, 9, "Service", id="timeout-service-wins"),
    pytest.param(HC_TIMEOUT, {}, None, 5, "default", id="timeout-default-5-no-service"),
    pytest.param(HEALTHY_THRESHOLD, {HEALTHY_THRESHOLD: "2"}, {HEALTHY_THRESHOLD: "5"}, 5, "Service",
                 id="healthy-threshold-service-wins"),
    pytest.param(UNHEALTHY_THRESHOLD, {UNHEALTHY_THRESHOLD: "2"}, {UNHEALTHY_THRESHOLD: "10"}, 10, "Service",
                 id="unhealthy-threshold-service-wins"),
    pytest.param(UNHEALTHY_THRESHOLD, {UNHEALTHY_THRESHOLD: "3"}, {HEALTHY_THRESHOLD: "5"}, 3, "Ingress",
                 id="precedence-is-per-key"),
]


@pytest.mark.parametrize(("key", "ingress", "service", "value", "source"), READINGS)
def test_a_setting_is_read_where_the_controller_reads_it(key, ingress, service, value, source) -> None:
    # Given the annotations of an Ingress and of its backend Service
    # When the setting is read
    got = lbc.effective_int(key, ingress, service)
    # Then the Service's value wins, else the Ingress's, else the controller's default
    assert got == (value, source)


def test_the_health_check_reader_uses_the_service_for_every_field() -> None:
    # Given an Ingress with albgate's values and a Service overriding all four
    ingress = {HC_INTERVAL: "5", HC_TIMEOUT: "4", HEALTHY_THRESHOLD: "2", UNHEALTHY_THRESHOLD: "2"}
    service = {HC_INTERVAL: "30", HC_TIMEOUT: "10", HEALTHY_THRESHOLD: "5", UNHEALTHY_THRESHOLD: "7"}
    # When the health check is read
    check = health_check.current(ingress, service)
    # Then every value is the Service's
    assert (check.interval_seconds, check.timeout_seconds, check.healthy_threshold, check.unhealthy_threshold) == (
        30, 10, 5, 7)
    assert set(check.sources.values()) == {"Service"}


# (Ingress annotations, Service annotations, expected delay, expected source)
DELAYS = [
    pytest.param({TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=30"}, {TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=5"}, 5,
                 "Service", id="service-delay-wins"),
    pytest.param({TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=30"}, {}, 30, "Ingress", id="ingress-delay-alone"),
    pytest.param({TG_ATTRIBUTES: f"{DEREGISTRATION_DELAY}=30"}, {TG_ATTRIBUTES: "stickiness.enabled=true"}, 300,
                 "default", id="service-attributes-hide-the-ingress-delay"),
    pytest.param({}, {}, 300, "default", id="default-300"),
]


@pytest.mark.parametrize(("ingress", "service", "delay", "source"), DELAYS)
def test_the_deregistration_delay_comes_from_one_attributes_annotation(ingress, service, delay, source) -> None:
    # Given target-group-attributes on the Ingress, the Service, both or neither
    # When the deregistration delay is read
    got = lbc.deregistration_delay(ingress, service)
    # Then it is the attribute of the annotation the controller uses, whole (never merged with the other one)
    assert got == (delay, source)


def test_a_malformed_value_the_controller_would_use_is_an_error() -> None:
    # Given a Service whose interval is not a number (the Ingress's is fine)
    # When it is read / Then it raises, rather than falling back to the Ingress's value
    with pytest.raises(ValueError):
        lbc.effective_int(HC_INTERVAL, {HC_INTERVAL: "10"}, {HC_INTERVAL: "ten"})


# (Ingress annotations, Service annotations, expected Ingress after, expected Service after)
HARDENING = [
    pytest.param({}, {}, {HC_INTERVAL: "5", HC_TIMEOUT: "4"}, {}, id="nothing-set-ingress-gets-the-check"),
    pytest.param({HC_INTERVAL: "5"}, {HC_INTERVAL: "30"}, {HC_INTERVAL: "5", HC_TIMEOUT: "4"}, {HC_INTERVAL: "5"},
                 id="service-interval-lowered-on-the-service-default-timeout-on-ingress"),
    # A timeout the app sets is its health endpoint's own: the interval stays above it rather than cut it
    pytest.param({}, {HC_INTERVAL: "30", HC_TIMEOUT: "10"}, {}, {HC_INTERVAL: "11", HC_TIMEOUT: "10"},
                 id="service-timeout-kept-interval-lowered-to-just-above-it"),
    pytest.param({HC_TIMEOUT: "3"}, {HC_INTERVAL: "20", HC_TIMEOUT: "8"}, {HC_TIMEOUT: "3"},
                 {HC_INTERVAL: "9", HC_TIMEOUT: "8"}, id="ingress-timeout-ignored-service-timeout-kept"),
    pytest.param({HC_TIMEOUT: "4"}, {}, {HC_INTERVAL: "5", HC_TIMEOUT: "4"}, {}, id="a-timeout-below-5-s-allows-5-s"),
    pytest.param({HC_INTERVAL: "30", HC_TIMEOUT: "3"}, {HC_INTERVAL: "5"}, {HC_INTERVAL: "30", HC_TIMEOUT: "3"},
                 {HC_INTERVAL: "5"}, id="stricter-service-interval-kept-ignored-ingress-interval-left-alone"),
    pytest.param({HC_INTERVAL: "30", HC_TIMEOUT: "10"}, {HC_INTERVAL: "5"}, {HC_INTERVAL: "30", HC_TIMEOUT: "10"},
                 {HC_INTERVAL: "11"}, id="ingress-timeout-kept-service-interval-raised-above-it"),
]


@pytest.mark.parametrize(("ingress", "service", "ingress_after", "service_after"), HARDENING)
def test_the_hardened_health_check_is_written_where_it_takes_effect(ingress, service, ingress_after,
                                                                   service_after) -> None:
    # Given the health-check annotations of an Ingress and its Service
    # When albgate hardens the health check
    new_ingress, new_service = health_check.hardened_health_check(ingress, service)
    # Then each value lands where the controller reads it, and the controller then reads the hardened check
    assert (new_ingress, new_service) == (ingress_after, service_after)
    check, before = health_check.current(new_ingress, new_service), health_check.current(ingress, service)
    # the shortest interval the timeout allows, never longer than the app had unless its timeout needs it
    assert check.interval_seconds == max(min(before.interval_seconds, health_check.HARDENED[HC_INTERVAL]),
                                         check.timeout_seconds + 1)
    assert check.timeout_seconds < check.interval_seconds


def test_the_ingress_only_hardening_is_unchanged_for_apps_without_service_annotations() -> None:
    # Given the controller's defaults / When hardened for an Ingress alone / Then the 5 s check is written on it
    assert health_check.hardened_annotations({}) == {HC_INTERVAL: "5", HC_TIMEOUT: "4"}
    assert health_check.hardened_annotations({HC_TIMEOUT: "3"}) == {HC_INTERVAL: "5", HC_TIMEOUT: "3"}


def test_a_fix_names_the_service_first() -> None:
    # Given a setting to change / When the fix is written / Then it says the Service's annotation wins
    text = lbc.fix(TG_ATTRIBUTES, f"{DEREGISTRATION_DELAY}=30")
    assert text.index("Service") < text.index("Ingress") and f"{TG_ATTRIBUTES}: {DEREGISTRATION_DELAY}=30" in text
