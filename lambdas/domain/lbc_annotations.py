"""Which annotation the AWS Load Balancer Controller uses for a target group: the Service's, else the Ingress's.

Job: the controller builds each target group of an Ingress backend from the Ingress's and the backend Service's
``alb.ingress.kubernetes.io/*`` annotations merged key by key, the Service's value winning (docs/facts.md,
"Service annotations override the Ingress's"). ``effective`` answers, for one key, the value the controller uses
and where it comes from; every albgate reader of target-group settings (hardening, the health check, the
preflight report, the rollout's fixes) asks it, so none reads the Ingress alone while a Service annotation
silently overrides it.

Invariant: pure. Precedence is per key and replaces the whole value: a Service's ``target-group-attributes``
hides every attribute the Ingress's lists, it is not merged attribute by attribute. A key neither object sets
takes the controller's default (``DEFAULTS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

PREFIX = "alb.ingress.kubernetes.io/"
TARGET_TYPE = PREFIX + "target-type"
TG_ATTRIBUTES = PREFIX + "target-group-attributes"
HC_INTERVAL = PREFIX + "healthcheck-interval-seconds"
HC_TIMEOUT = PREFIX + "healthcheck-timeout-seconds"
HEALTHY_THRESHOLD = PREFIX + "healthy-threshold-count"
UNHEALTHY_THRESHOLD = PREFIX + "unhealthy-threshold-count"
DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"  # a target group attribute, inside TG_ATTRIBUTES

# The controller's defaults when neither object sets the key (docs/facts.md, "Service annotations override the
# Ingress's"): target type instance, health check every 15 s with a 5 s timeout, thresholds 2 and 2; the
# deregistration delay is the target group's own default, 300 s (range 0-3600).
DEFAULTS: dict[str, str | int] = {
    TARGET_TYPE: "instance",
    HC_INTERVAL: 15,
    HC_TIMEOUT: 5,
    HEALTHY_THRESHOLD: 2,
    UNHEALTHY_THRESHOLD: 2,
}
DEFAULT_DEREGISTRATION_DELAY_SECONDS = 300
MAX_DEREGISTRATION_DELAY_SECONDS = 3600

Source = Literal["Service", "Ingress", "default"]


@dataclass(frozen=True)
class Effective:
    """The value the controller uses for ``key`` (None: the default) and the object it reads it from."""

    key: str
    value: str | None
    source: Source

    @property
    def write_to(self) -> Literal["Service", "Ingress"]:
        """Where a new value takes effect: the Service when it sets the key (the Ingress's would be ignored),
        else the Ingress (no Service annotation then hides it)."""
        return "Service" if self.source == "Service" else "Ingress"


def effective(
    key: str, ingress_annotations: Mapping[str, str] | None, service_annotations: Mapping[str, str] | None = None
) -> Effective:
    """The controller's reading of one annotation key for a backend: the Service's value, else the Ingress's."""
    for annotations, source in ((service_annotations, "Service"), (ingress_annotations, "Ingress")):
        if annotations and key in annotations:
            return Effective(key, str(annotations[key]), source)  # type: ignore[arg-type]
    return Effective(key, None, "default")


def effective_int(
    key: str, ingress_annotations: Mapping[str, str] | None, service_annotations: Mapping[str, str] | None = None
) -> tuple[int, Source]:
    """An integer setting (interval, timeout, thresholds) as the controller uses it, and where it comes from.
    Raises ValueError when the value the controller would read is not a whole number."""
    found = effective(key, ingress_annotations, service_annotations)
    return (int(DEFAULTS[key]) if found.value is None else int(found.value)), found.source


def parse_attributes(text: str) -> dict[str, str]:
    """``a=b,c=d`` (the target-group-attributes annotation) as an ordered dict."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, sep, value = part.partition("=")
        out[key.strip()] = value.strip() if sep else ""
    return out


def render_attributes(attributes: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in attributes.items())


def deregistration_delay(
    ingress_annotations: Mapping[str, str] | None, service_annotations: Mapping[str, str] | None = None
) -> tuple[int, Source]:
    """The deregistration delay the controller sets, in seconds, and the object whose annotation sets it.

    The attribute comes from whichever object's ``target-group-attributes`` the controller uses; when that value
    does not list the attribute, the target group keeps its default (source ``default``)."""
    found = effective(TG_ATTRIBUTES, ingress_annotations, service_annotations)
    value = parse_attributes(found.value or "").get(DEREGISTRATION_DELAY)
    if value is None:
        return DEFAULT_DEREGISTRATION_DELAY_SECONDS, "default"
    return int(value), found.source


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check as the controller configures it from the annotations."""

    interval_seconds: int
    timeout_seconds: int
    healthy_threshold: int
    unhealthy_threshold: int
    sources: Mapping[str, Source]  # annotation key -> where its value came from


def health_check(
    ingress_annotations: Mapping[str, str] | None, service_annotations: Mapping[str, str] | None = None
) -> HealthCheck:
    """Interval, timeout and thresholds with the controller's precedence and defaults."""
    values = {k: effective_int(k, ingress_annotations, service_annotations)
              for k in (HC_INTERVAL, HC_TIMEOUT, HEALTHY_THRESHOLD, UNHEALTHY_THRESHOLD)}
    return HealthCheck(
        interval_seconds=values[HC_INTERVAL][0],
        timeout_seconds=values[HC_TIMEOUT][0],
        healthy_threshold=values[HEALTHY_THRESHOLD][0],
        unhealthy_threshold=values[UNHEALTHY_THRESHOLD][0],
        sources={k: v[1] for k, v in values.items()},
    )


def fix(key: str, value: str) -> str:
    """How to set ``key`` so it takes effect, for a person reading a finding: on the Service when the Service
    already sets it (the controller prefers the Service's value), else on the Ingress."""
    return (
        f"set the annotation {key}: {value} on the backend Service if it already has that annotation (the "
        "controller uses the Service's value over the Ingress's), else on the Ingress"
    )
