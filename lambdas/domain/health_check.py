"""The ALB health check albgate's bootstrap writes for an app, and the controller's defaults it replaces.

Invariant: a new target needs one passed check to turn healthy and an unhealthy one needs HealthyThresholdCount
passes (docs/facts.md, ALB target health), so the interval bounds how fast any gate can see a pod become serving,
and a gate may not poll faster than it. The controller writes interval 15 s, timeout 5 s, thresholds 2/2
(docs/facts.md, Service annotations override the Ingress's); albgate writes the ALB's shortest interval (5 s, range
5-300 s) with a timeout below it, so each step waits seconds, not tens of seconds, for the first check, and a broken
version is seen after 2 x 5 s instead of 2 x 15 s. The cost is three times the health-check requests per target, a
few per second for a whole Deployment.

The current values are read as the controller reads them, the backend Service's annotation over the Ingress's
(``lambdas/domain/lbc_annotations.py``), and a new value goes where it takes effect: on the Service when the
Service sets that annotation, else on the Ingress.
"""

from __future__ import annotations

from collections.abc import Mapping

from lambdas.domain import lbc_annotations as lbc

ANNOTATION_PREFIX = lbc.PREFIX
INTERVAL = lbc.HC_INTERVAL
TIMEOUT = lbc.HC_TIMEOUT
HEALTHY_THRESHOLD = lbc.HEALTHY_THRESHOLD
UNHEALTHY_THRESHOLD = lbc.UNHEALTHY_THRESHOLD

CONTROLLER_DEFAULTS = {k: int(lbc.DEFAULTS[k]) for k in (INTERVAL, TIMEOUT, HEALTHY_THRESHOLD, UNHEALTHY_THRESHOLD)}
HARDENED = {INTERVAL: 5, TIMEOUT: 4, HEALTHY_THRESHOLD: 2, UNHEALTHY_THRESHOLD: 2}


def current(ingress: Mapping[str, str], service: Mapping[str, str] | None = None) -> lbc.HealthCheck:
    """The health check the controller configures from these annotations (Service over Ingress, then defaults)."""
    return lbc.health_check(ingress, service)


def hardened_health_check(
    ingress: Mapping[str, str], service: Mapping[str, str] | None = None, interval_seconds: int | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(Ingress annotations, Service annotations) with the hardened health check (interval ``interval_seconds``,
    default ``HARDENED``'s), never loosening one already stricter. Each changed key is written where the controller
    reads it: the Service when it sets the key. The ALB refuses a timeout that is not below the interval: the
    controller's default timeout is then lowered (to ``HARDENED``'s, or one second below the interval), while a
    timeout the app sets is its own (its health endpoint may need it) and the interval stays above it instead."""
    out = {"Ingress": dict(ingress), "Service": dict(service or {})}
    interval = lbc.effective(INTERVAL, ingress, service)
    timeout = lbc.effective(TIMEOUT, ingress, service)
    check = current(ingress, service)
    new_interval = min(check.interval_seconds, HARDENED[INTERVAL] if interval_seconds is None else interval_seconds)
    if timeout.value is not None and check.timeout_seconds >= new_interval:
        new_interval = check.timeout_seconds + 1
    if new_interval != check.interval_seconds:
        out[interval.write_to][INTERVAL] = str(new_interval)
    if check.timeout_seconds >= new_interval:
        out[timeout.write_to][TIMEOUT] = str(min(HARDENED[TIMEOUT], new_interval - 1))
    return out["Ingress"], out["Service"]


def hardened_annotations(annotations: dict[str, str]) -> dict[str, str]:
    """The Ingress annotations with the hardened health check, for an app whose Service sets none of them."""
    return hardened_health_check(annotations)[0]
