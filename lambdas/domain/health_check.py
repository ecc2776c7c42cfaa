"""The ALB health check albgate's bootstrap writes on an app's Ingress, and the controller's defaults it replaces.

Invariant: a new target needs one passed check to turn healthy and an unhealthy one needs HealthyThresholdCount
passes (FACTS.md), so the interval bounds how fast any gate can see a pod become serving, and a gate may not poll
faster than it. The controller writes interval 15 s, timeout 5 s, thresholds 2/2 (FACTS.md); albgate writes the
ALB's shortest interval (5 s, range 5-300 s) with a timeout below it, so each step waits seconds, not tens of
seconds, for the first check, and a broken version is seen after 2 x 5 s instead of 2 x 15 s. The cost is three
times the health-check requests per target, a few per second for a whole Deployment.
"""

from __future__ import annotations

ANNOTATION_PREFIX = "alb.ingress.kubernetes.io/"
INTERVAL = ANNOTATION_PREFIX + "healthcheck-interval-seconds"
TIMEOUT = ANNOTATION_PREFIX + "healthcheck-timeout-seconds"
HEALTHY_THRESHOLD = ANNOTATION_PREFIX + "healthy-threshold-count"
UNHEALTHY_THRESHOLD = ANNOTATION_PREFIX + "unhealthy-threshold-count"

CONTROLLER_DEFAULTS = {INTERVAL: 15, TIMEOUT: 5, HEALTHY_THRESHOLD: 2, UNHEALTHY_THRESHOLD: 2}
HARDENED = {INTERVAL: 5, TIMEOUT: 4, HEALTHY_THRESHOLD: 2, UNHEALTHY_THRESHOLD: 2}


def hardened_annotations(annotations: dict[str, str]) -> dict[str, str]:
    """The Ingress annotations with the hardened health check, never loosening one already stricter."""
    out = dict(annotations)
    current = {k: int(annotations.get(k, CONTROLLER_DEFAULTS[k])) for k in HARDENED}
    if current[INTERVAL] > HARDENED[INTERVAL]:
        out[INTERVAL] = str(HARDENED[INTERVAL])
        if current[TIMEOUT] >= HARDENED[INTERVAL]:
            out[TIMEOUT] = str(HARDENED[TIMEOUT])
    return out
