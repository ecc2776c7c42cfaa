"""Is this Deployment safe to roll? The rules, written once, for every place that asks.

Job: name what in a Deployment's own spec drops requests while it rolls or scales down, and the change that fixes
each (as ``DeploymentPatch`` fields). Preflight refuses on the findings or applies their fixes on the first step
(``policy.harden``), the preflight report lists them as risks, and manifest hardening (lambdas/domain/manifests.py)
uses the same numbers (``required_grace_seconds``, ``pre_stop_is_short``, ``unavailable_pods``).

Invariant: the rules, with the policy's ``pre_stop_seconds`` (P) and ``max_request_seconds`` (R):
- maxUnavailable resolves to 0 pods (rounded down, as Kubernetes resolves it): else old pods may go before any
  replacement is available;
- every container's preStop sleeps at least P s: the ALB goes on sending new requests for some seconds after
  deregistration starts, so a container that stops at once refuses them (an app's own non-sleep preStop is
  taken to drain and is counted as P s);
- terminationGracePeriodSeconds covers the longest preStop (after the fixes above) plus R: the requests taken
  just before the preStop ends need up to R s more.
A target group's deregistration delay must be at least R (``deregistration_delay_problem``): it is the target
group's attribute, fixed on the Ingress or Service, never by patching the Deployment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lambdas.domain.models import RolloutPolicy
from lambdas.domain.plan import resolve_int_or_percent
from lambdas.domain.ports import Deployment

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One unsafe setting: what it is, where, why it drops requests, how to fix it by hand, and the patch."""

    code: str  # max-unavailable | missing-prestop | short-prestop | grace-too-short
    container: str | None  # the container it is about, None for the Deployment
    message: str
    fix: str
    patch: dict[str, Any] = field(default_factory=dict)  # DeploymentPatch fields that fix it
    severity: Severity = "error"


def unavailable_pods(max_unavailable: int | str | None, replicas: int) -> int:
    """maxUnavailable in pods; unset is Kubernetes' 25 % (docs/facts.md, Kubernetes Deployment controller)."""
    return resolve_int_or_percent("25%" if max_unavailable is None else max_unavailable, replicas, round_up=False)


def pre_stop_is_short(seconds: int | None, policy_pre_stop_seconds: int) -> bool:
    """No preStop sleep, or one shorter than the policy's."""
    return seconds is None or seconds < policy_pre_stop_seconds


def required_grace_seconds(longest_pre_stop: int, max_request_seconds: int) -> int:
    """The grace period the preStop and the longest request need together."""
    return longest_pre_stop + max_request_seconds


def deployment_findings(dep: Deployment, policy: RolloutPolicy) -> list[Finding]:
    """Every finding in ``dep``'s spec under ``policy`` (empty: safe to roll), each with its fix."""
    found: list[Finding] = []
    unavailable = unavailable_pods(dep.max_unavailable, dep.replicas)
    if unavailable > 0:
        found.append(Finding(
            "max-unavailable", None,
            f"maxUnavailable is {dep.max_unavailable} ({unavailable} pod(s)): old pods could go before any "
            "replacement is healthy",
            "set spec.strategy.rollingUpdate.maxUnavailable: 0", {"max_unavailable": 0}))
    want = policy.pre_stop_seconds
    fixed_pre_stops: dict[str, int] = {}
    longest = 0
    for c in dep.template.containers:
        seconds = c.pre_stop_sleep_seconds
        if pre_stop_is_short(seconds, want):
            code = "missing-prestop" if not seconds else "short-prestop"
            what = "has no preStop" if not seconds else f"sleeps {seconds} s in its preStop"
            found.append(Finding(
                code, c.name,
                f"container {c.name} {what}: the ALB keeps sending new requests for some seconds after "
                f"deregistration starts; it needs a preStop sleep of {want} s",
                f"add lifecycle.preStop sleep of {want} s to container {c.name}",
                {"pre_stop_sleep_seconds": {c.name: want}}))
            fixed_pre_stops[c.name] = want
            seconds = want
        longest = max(longest, seconds or 0)
    needed = required_grace_seconds(longest, policy.max_request_seconds)
    grace = dep.template.termination_grace_period_seconds
    if grace < needed:
        found.append(Finding(
            "grace-too-short", None,
            f"terminationGracePeriodSeconds is {grace}: it must cover the preStop ({longest} s) plus the longest "
            f"request ({policy.max_request_seconds} s), {needed} s",
            f"set spec.template.spec.terminationGracePeriodSeconds: {needed}",
            {"termination_grace_period_seconds": needed}))
    return found


def hardening_patch(findings: list[Finding]) -> dict[str, Any]:
    """The DeploymentPatch fields that fix every finding (preStops of several containers merged)."""
    patch: dict[str, Any] = {}
    for f in findings:
        for key, value in f.patch.items():
            patch[key] = {**patch.get(key, {}), **value} if isinstance(value, dict) else value
    return patch


def deregistration_delay_problem(delay_seconds: int, policy: RolloutPolicy) -> str | None:
    """Why a target group's deregistration delay drops requests (None: it does not)."""
    if delay_seconds >= policy.max_request_seconds:
        return None
    return (f"a deregistration delay of {delay_seconds} s is shorter than the longest request "
            f"({policy.max_request_seconds} s): requests in flight are cut when it ends")
