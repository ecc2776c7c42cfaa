"""Analysis of the ALB's own metrics (``policy.analysis``): does the new version answer worse than the old did?

Job: from a target group's published 60 s periods (``MetricMinute``: RequestCount, HTTPCode_Target_5XX_Count,
TargetResponseTime), a ``Baseline`` of the periods before the rollout started, and the share of the group's
targets that run the new version during a step, decide whether the new pods answer 5xx more often, or answer
slower, than the baseline by more than the policy allows. CloudWatch has the group's totals only (the ALB publishes
no per-target metrics), so the test works on the mix: with a share ``s`` of new targets, a window whose requests
are answered with error rate ``r`` tells the new pods' rate as ``(r - (1 - s) * p0) / s``, where ``p0`` is the
baseline's. A step regresses when both hold, for errors or for latency:
- the excess over what the baseline predicts is significant: z = (observed - expected) / sd >= ``SIGNIFICANCE_Z``,
  with the sd widened by the baseline's own minute-to-minute dispersion (a noisy baseline is no regression);
- the new pods' estimated rate (or mean response time) is at least ``max_error_ratio`` (``max_latency_ratio``)
  times the baseline's.
Invariant: pure (no I/O, no clock); a window without a published period is WAITING, never OK or a regression.
What is not modelled: traffic that is not spread evenly over the targets (sticky sessions, slow start), and a
baseline that drifts during the rollout (time of day): both are why the thresholds are ratios with a margin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

from lambdas.domain.errors import InvalidInputError, RetryableError, ThrottledError
from lambdas.domain.models import AnalysisPolicy, RolloutPolicy, RolloutRequest
from lambdas.domain.ports import METRIC_PERIOD_SECONDS, MetricMinute, MetricsPort, Ports
from lambdas.domain.state import ANALYSIS_MAX_CHARS, AnalysisBaseline, RolloutState, TargetGroupInfo, cap_text

# CloudWatch makes a 1-minute datapoint available about 2 minutes after its period (docs/facts.md, "ALB metrics
# albgate analyses"): a step's first period is seen about this long after its pods took traffic, and a bake shorter
# than it ends before the step's own metrics can fail it (Preflight says so).
FIRST_PERIOD_SEEN_SECONDS = 2 * METRIC_PERIOD_SECONDS + 120
# z of the one-sided test: 4.0 is a false alarm about once in 30,000 looks of a steady baseline (normal tail), so
# a rollout's tens of looks stay far from a false rollback while a real 5x regression crosses it within minutes at
# tens of requests per second.
SIGNIFICANCE_Z = 4.0
# Periods a baseline needs for its dispersion to mean anything; with fewer it is taken as Poisson (dispersion 1).
MIN_DISPERSION_PERIODS = 3
# The dispersion is estimated from a few periods, so it can come out low by chance (from 10 periods, a third of the
# true value one time in twenty): the test uses its upper confidence bound, the estimate over the chi-square
# quantile of this lower tail (a normal z; Wilson-Hilferty's approximation of the quantile).
DISPERSION_TAIL_Z = -1.645


class Outcome(str, Enum):
    OK = "ok"
    REGRESSION = "regression"
    WAITING = "waiting"


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float
    max_latency_ratio: float
    min_error_rate: float  # the floor of the baseline's rate: 0 errors before would make any 5xx infinitely worse


@dataclass(frozen=True)
class Baseline:
    """What the target group answered before the rollout: ``periods`` published periods, ``requests`` requests."""

    periods: int
    requests: float
    error_rate: float  # 5xx / requests, at least the floor
    dispersion: float  # variance of the periods' 5xx counts over their Poisson variance (upper bound), at least 1
    latency: float | None  # request-weighted mean TargetResponseTime, seconds
    latency_sd: float | None  # one request's standard deviation, as the periods' means show it


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    reason: str
    periods: int = 0
    requests: float = 0.0
    new_error_rate: float | None = None
    new_latency: float | None = None


def chi2_quantile(df: int, z: float) -> float:
    """The chi-square quantile with ``df`` degrees of freedom at the normal quantile ``z`` (Wilson-Hilferty)."""
    a = 2.0 / (9.0 * df)
    return df * max(1.0 - a + z * math.sqrt(a), 0.0) ** 3


def _weighted_latency(minutes: list[MetricMinute]) -> tuple[float, float] | None:
    """(request-weighted mean response time, the requests it covers), or None without a datapoint."""
    timed = [(m.response_time, m.requests) for m in minutes if m.response_time is not None and m.requests > 0]
    n = sum(w for _, w in timed)
    if n <= 0:
        return None
    return sum(v * w for v, w in timed) / n, n


def baseline_of(minutes: list[MetricMinute], floor: float) -> Baseline:
    """The baseline of the periods before the rollout (any order)."""
    n = sum(m.requests for m in minutes)
    errors = sum(m.target_5xx for m in minutes)
    rate = max(errors / n if n > 0 else 0.0, floor)
    busy = [m for m in minutes if m.requests > 0]
    dispersion = 1.0
    if len(busy) >= MIN_DISPERSION_PERIODS:
        chi2 = sum((m.target_5xx - m.requests * rate) ** 2 / (m.requests * rate) for m in busy)
        dispersion = max(1.0, chi2 / chi2_quantile(len(busy) - 1, DISPERSION_TAIL_Z))
    latency, sd = None, None
    mean = _weighted_latency(minutes)
    if mean is not None:
        latency = mean[0]
        timed = [m for m in busy if m.response_time is not None]
        if len(timed) >= 2:
            # a period's mean over n requests varies as sd^2 / n: each period's squared deviation times its n
            # estimates sd^2 (drift between periods counts in, which is what a fair test must allow for)
            var = sum(m.requests * (m.response_time - latency) ** 2 for m in timed) / (len(timed) - 1)  # type: ignore[operator]
            sd = math.sqrt(var)
    return Baseline(len(busy), n, rate, dispersion, latency, sd)


def _errors(base: Baseline, n: float, observed: float, exposure: float, t: Thresholds) -> tuple[bool, float, str]:
    expected = n * base.error_rate
    z = (observed - expected) / math.sqrt(expected * base.dispersion)
    new_rate = max(0.0, base.error_rate + (observed - expected) / exposure)
    ratio = new_rate / base.error_rate
    text = (f"5xx {observed:g} of {n:g} requests against {expected:.1f} expected (z {z:.1f}); the new pods' rate "
            f"{new_rate:.2%} is {ratio:.1f}x the baseline's {base.error_rate:.2%}")
    return z >= SIGNIFICANCE_Z and ratio >= t.max_error_ratio, new_rate, text


def _latency(base: Baseline, window: list[tuple[MetricMinute, float]], t: Thresholds) -> tuple[bool, float | None, str]:
    timed = [(m, share) for m, share in window if m.response_time is not None and m.requests > 0]
    if not timed or base.latency is None or base.latency_sd is None or base.latency <= 0:
        return False, None, ""
    n = sum(m.requests for m, _ in timed)
    total = sum(m.requests * m.response_time for m, _ in timed)  # type: ignore[operator]
    exposure = sum(m.requests * share for m, share in timed)
    observed = total / n
    new_latency = max(0.0, base.latency + (total - n * base.latency) / exposure)
    sd = base.latency_sd / math.sqrt(n)
    z = (observed - base.latency) / sd if sd > 0 else (math.inf if observed > base.latency else 0.0)
    ratio = new_latency / base.latency
    text = (f"response time {observed * 1000:.0f} ms against {base.latency * 1000:.0f} ms before (z {z:.1f}); the "
            f"new pods' {new_latency * 1000:.0f} ms is {ratio:.1f}x")
    return z >= SIGNIFICANCE_Z and ratio >= t.max_latency_ratio, new_latency, text


def judge(base: Baseline, window: list[tuple[MetricMinute, float]], t: Thresholds) -> Judgement:
    """The periods since the first step's pods took traffic, each with the share (0 < share <= 1) of the group's
    targets the new version held through it. Pooled, each period weighs by its requests times its share (its
    "exposure"): the new pods' rate is the baseline's plus the excess over the exposure."""
    for m, share in window:
        if not 0 < share <= 1:
            raise ValueError(f"share {share} of the period at {m.start:g} is not in (0, 1]")
    n = sum(m.requests for m, _ in window)
    if not window or n <= 0:
        return Judgement(Outcome.WAITING, "no published period with requests yet")
    observed = sum(m.target_5xx for m, _ in window)
    exposure = sum(m.requests * share for m, share in window)
    bad_errors, new_rate, error_text = _errors(base, n, observed, exposure, t)
    bad_latency, new_latency, latency_text = _latency(base, window, t)
    said = "; ".join(x for x in (error_text, latency_text) if x)
    periods = len(window)
    if bad_errors or bad_latency:
        what = " and ".join(w for w, bad in (("more 5xx", bad_errors), ("slower answers", bad_latency)) if bad)
        limits = (f"limits: {t.max_error_ratio:g}x the baseline's 5xx rate, {t.max_latency_ratio:g}x its response "
                  "time (policy.analysis)")
        return Judgement(Outcome.REGRESSION, f"the new version gives {what} over {periods} period(s): {said}; {limits}",
                         periods, n, new_rate, new_latency)
    return Judgement(Outcome.OK, f"no regression over {periods} period(s): {said}", periods, n, new_rate, new_latency)


# ---------------------------------------------------------------------------------------------------------
# The rollout's use of it: Preflight's baseline, and the looks of every gate, drain and Start Step
# ---------------------------------------------------------------------------------------------------------
def thresholds(a: AnalysisPolicy) -> Thresholds:
    return Thresholds(a.max_error_ratio, a.max_latency_ratio, a.min_error_rate)


def _port(ports: Ports) -> MetricsPort:
    if ports.metrics is None:
        raise InvalidInputError("policy.analysis: this deployment has no CloudWatch metrics to read; remove "
                                "policy.analysis")
    return ports.metrics


def _name(arn: str) -> str:
    """targetgroup/<name>/<id> -> <name>, for reasons."""
    return arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]


def check_at_start(ports: Ports, policy: RolloutPolicy, groups: list[TargetGroupInfo],
                   now: float) -> tuple[dict[str, AnalysisBaseline], list[str]]:
    """Preflight: each group's baseline from the ``baseline_minutes`` before ``now`` (one GetMetricData each), and
    the notes worth knowing (a thin baseline, a bake too short for a step's own metrics)."""
    a = policy.analysis
    if a is None:
        return {}, []
    port = _port(ports)
    baselines: dict[str, AnalysisBaseline] = {}
    notes: list[str] = []
    for g in groups:
        minutes = port.target_group_minutes(g.arn, g.load_balancer_arn, now - a.baseline_minutes * 60.0, now)
        base = baseline_of(minutes, a.min_error_rate)
        baselines[g.arn] = AnalysisBaseline(**asdict(base))
        if base.periods < MIN_DISPERSION_PERIODS:
            notes.append(
                f"analysis: target group {_name(g.arn)} published {base.periods} minute(s) with requests in the last "
                f"{a.baseline_minutes}; its baseline is thin (5xx rate taken as {base.error_rate:.2%}, its noise as "
                "none), so only a large regression can be told from it")
    if policy.bake_seconds < FIRST_PERIOD_SEEN_SECONDS:
        notes.append(
            f"analysis: bake_seconds {policy.bake_seconds} is shorter than the {FIRST_PERIOD_SEEN_SECONDS} s a step's "
            "first full minute of ALB metrics takes to reach CloudWatch; a step's regression may be seen only "
            "during a later step (raise policy.bake_seconds to judge each step before the next)")
    return baselines, notes


def step_share(plan: list[int], i: int, replicas: int) -> float:
    """The share of the serving targets that run the new version while step ``i`` (0-based) bakes. albgate lets the
    Deployment surge one batch (the step's own), and the Load Balancer Controller registers a ContainersReady pod
    before any of its gates opens, so the next batch's pods take traffic before their step: (pods so far + the
    batch) of (replicas + the batch). An overestimate when the surge is late only makes the new pods' estimated
    rate smaller: never a false regression from it."""
    batch = plan[i] - (plan[i - 1] if i else 0)
    if plan[i] >= replicas:
        return 1.0
    return min(1.0, (plan[i] + batch) / (replicas + batch))


def windows(s: RolloutState) -> list[tuple[float, float, float]]:
    """(start, end, share) of each rollout step since its pods took traffic: from its gate passing to the next
    step's, with ``step_share``."""
    passed = [r for r in s.steps if r.mode == "rollout" and r.gate_passed_at is not None]
    out = []
    for i, r in enumerate(passed):
        end = passed[i + 1].gate_passed_at if i + 1 < len(passed) else math.inf
        out.append((r.gate_passed_at, end, step_share(s.plan, r.step - 1, s.replicas)))  # type: ignore[arg-type]
    return out


def in_windows(minutes: list[MetricMinute], ws: list[tuple[float, float, float]]) -> list[tuple[MetricMinute, float]]:
    """The periods wholly inside one step's window, each with that step's share."""
    out = []
    for m in minutes:
        for start, end, share in ws:
            if m.start >= start and m.start + METRIC_PERIOD_SECONDS <= end:
                out.append((m, share))
                break
    return out


def during(ports: Ports, s: RolloutState, when: str, now: float) -> str | None:
    """Why the ALB's metrics fail the rollout (``when``: "during step 2's gate"), or None. Reads each group's
    periods since the first step's pods took traffic (one GetMetricData each), at most once per period; a
    rollback, a policy without analysis, or a rollout before its first gate passed reads nothing."""
    a = s.request.policy.analysis
    if a is None or s.mode != "rollout" or not s.baselines:
        return None
    if s.analysis_at is not None and now - s.analysis_at < METRIC_PERIOD_SECONDS:
        return None
    ws = windows(s)
    if not ws:
        return None
    port = _port(ports)
    s.analysis_at = now
    said = []
    for g in s.target_groups:
        base = s.baselines.get(g.arn)
        if base is None:
            continue
        try:
            minutes = port.target_group_minutes(g.arn, g.load_balancer_arn, ws[0][0], now)
        except ThrottledError:
            said.append(f"{_name(g.arn)}: metrics throttled, read again in a minute")
            continue
        finally:
            s.get_metric_data_calls += 1
        j = judge(Baseline(**base.model_dump()), in_windows(minutes, ws), thresholds(a))
        if j.outcome is Outcome.REGRESSION:
            s.analysis = cap_text(f"{_name(g.arn)}: {j.reason}", ANALYSIS_MAX_CHARS)
            return f"ALB metrics of target group {_name(g.arn)} {when}: {j.reason}"
        said.append(f"{_name(g.arn)}: {j.reason}")
    s.analysis = cap_text("; ".join(said), ANALYSIS_MAX_CHARS)
    return None


# ---------------------------------------------------------------------------------------------------------
# Long requests: Preflight sizes the drain by what the ALB saw, not only by what the policy declares
# ---------------------------------------------------------------------------------------------------------
# The longest request the policy can declare (RolloutPolicy.max_request_seconds' upper bound).
MAX_REQUEST_SECONDS = 3600


def longest_request(minutes: list[MetricMinute]) -> float | None:
    """The longest TargetResponseTime (Maximum) of the periods, seconds; None without a datapoint."""
    seen = [m.response_time_max for m in minutes if m.response_time_max is not None]
    return max(seen) if seen else None


def sized_for_long_requests(ports: Ports, request: RolloutRequest, groups: list[TargetGroupInfo],
                            now: float) -> tuple[RolloutRequest, list[str], int]:
    """The request with ``max_request_seconds`` raised to the longest TargetResponseTime the target groups showed in
    the ``long_requests_window_minutes`` before ``now`` (one GetMetricData call each), and the note that says so;
    unchanged when the window is 0, no metrics can be read, or nothing was longer than declared. Third: the
    GetMetricData calls made."""
    policy = request.policy
    window = policy.long_requests_window_minutes
    if window == 0 or ports.metrics is None:
        return request, [], 0
    longest: tuple[float, str] | None = None
    calls = 0
    for g in groups:
        calls += 1
        try:
            seen = longest_request(ports.metrics.target_group_minutes(g.arn, g.load_balancer_arn,
                                                                      now - window * 60.0, now))
        except RetryableError as e:  # throttled, or CloudWatch out of reach: the declared length still holds
            what = "throttled" if isinstance(e, ThrottledError) else "could not answer"
            return request, [f"long requests: CloudWatch {what} the read of {_name(g.arn)}'s TargetResponseTime; "
                             f"the drain is sized by policy.max_request_seconds ({policy.max_request_seconds} s) alone"], calls
        if seen is not None and (longest is None or seen > longest[0]):
            longest = (seen, g.arn)
    if longest is None or longest[0] <= policy.max_request_seconds:
        return request, [], calls
    seconds = min(math.ceil(longest[0]), MAX_REQUEST_SECONDS)
    capped = f" (capped at {MAX_REQUEST_SECONDS} s)" if seconds < longest[0] else ""
    note = (f"long requests: target group {_name(longest[1])} answered a request in {longest[0]:.0f} s in the last "
            f"{window} minutes (TargetResponseTime Maximum), longer than policy.max_request_seconds "
            f"({policy.max_request_seconds} s): the grace period and the deregistration delay are checked for "
            f"{seconds} s{capped}")
    sized = request.model_copy(update={"policy": policy.model_copy(update={"max_request_seconds": seconds})})
    return sized, [note], calls
