"""The simulated Application Load Balancer: target groups, per-target health, draining, routing, and the
Describe* throttling bucket.

Job: answer DescribeTargetHealth as ELBv2 would at every instant, and decide which targets a new request may
reach. Sources (docs/facts.md, "ALB target health", "Deregistration and draining" and "ELB API throttling"):
target states and reason codes; a new target needs one passing check, an unhealthy one HealthyThresholdCount;
fail-open when nothing is healthy; a deregistering target drains until idle or the deregistration delay, and
is reported ``draining`` for the whole delay either way; the Describe* bucket
of 40 tokens refilled at 10/s shared per account and Region; the seconds in which the ALB still sends new
requests to a target whose deregistration began (``deregistration_lag_seconds``, ~10 s per
aws-load-balancer-controller#1719).
Invariant: a target becomes ``healthy`` only in a health check that passed; a ``draining`` target receives
new requests only during the lag, and leaves the group exactly the deregistration delay after it began (ELB
completes an idle target's deregistration sooner but shows it ``draining`` until then);
the Describe* bucket serves calls in the order they arrive, whoever makes them, the scenario's other callers
(``faults.describe_load``) included; a target is named by its Id and Port, as ELBv2 names it (docs/facts.md,
"ELBv2 DeregisterTargets: Id, Port and absent targets"): a call naming an IP on another port than its target's
leaves that target as it is.

``SdkClient`` is the other side of the wire: what a botocore client configured as albgate's
(``ALBGATE_ELB_RETRIES``) does around each call, retrying a throttled one in virtual time before the caller
sees it (docs/facts.md, "botocore retries: standard and adaptive modes").
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lambdas.domain.descriptions import MAX_GROUPS_PER_CALL
from lambdas.domain.errors import AlbgateError, NotFoundError, ThrottledError
from lambdas.domain.ports import DRAINING, HEALTHY, INITIAL, UNHEALTHY, TargetGroup, TargetGroupSettings, TargetHealth

if TYPE_CHECKING:
    from albgate.sim.kube import PodObj
    from albgate.sim.simulation import Simulation

# DescribeTargetHealth reason codes and descriptions (ELBv2 API reference, TargetHealth).
DESCRIPTIONS = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Elb.InitialHealthChecking": "Initial health checks in progress",
    "Target.ResponseCodeMismatch": "Health checks failed with these codes: [500]",
    "Target.Timeout": "Request timed out",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.DeregistrationInProgress": "Target deregistration is in progress",
}


class Target:
    """One registered target: a pod's IP on ``port`` (the group's port unless registered on another one)."""

    __slots__ = ("tg", "ip", "port", "pod", "state", "reason", "passes", "fails", "registered_at", "dereg_at",
                 "routable", "state_at_dereg", "last_end", "hc_event", "drain_event", "checks")

    def __init__(self, tg: "TargetGroupSim", pod: "PodObj", now: float, port: int | None = None) -> None:
        self.tg, self.pod, self.ip = tg, pod, pod.ip or ""
        self.port = tg.port if port is None else port
        self.state, self.reason = INITIAL, "Elb.RegistrationInProgress"
        self.passes = self.fails = 0
        self.registered_at, self.dereg_at = now, None
        self.routable = False  # only meaningful while draining: still in the data plane (the lag)
        self.state_at_dereg = INITIAL
        self.last_end = now  # end of the last request routed to it through this group
        self.hc_event: Any = None
        self.drain_event: Any = None
        self.checks = 0


class TargetGroupSim:
    def __init__(self, arn: str, name: str, port: int, target_type: str, interval: int, timeout: int,
                 healthy_threshold: int, unhealthy_threshold: int, delay: int, lb_arns: tuple[str, ...]) -> None:
        self.arn, self.name, self.port, self.target_type = arn, name, port, target_type
        self.interval, self.timeout = interval, timeout
        self.healthy_threshold, self.unhealthy_threshold = healthy_threshold, unhealthy_threshold
        self.delay, self.lb_arns = delay, lb_arns
        self.registration: tuple[float, float] | None = None  # None: the scenario's alb.registration_seconds
        self.targets: dict[str, Target] = {}
        self._pool: list[Target] | None = None
        self.rr = 0

    def pool(self) -> list[Target]:
        """Targets a new request may reach: healthy ones (plus draining ones still in the lag); if none, fail
        open to the unhealthy ones (docs/facts.md, ALB target health). `initial` targets get no traffic."""
        if self._pool is None:
            healthy, unhealthy = [], []
            for t in self.targets.values():
                s = t.state_at_dereg if t.state == DRAINING and t.routable else t.state
                if t.state == DRAINING and not t.routable:
                    continue
                if s == HEALTHY:
                    healthy.append(t)
                elif s == UNHEALTHY:
                    unhealthy.append(t)
            self._pool = healthy or unhealthy
        return self._pool

    def snapshot(self) -> TargetGroup:
        return self.settings().with_delay(self.delay)

    def settings(self) -> TargetGroupSettings:
        return TargetGroupSettings(
            arn=self.arn, target_type=self.target_type, protocol="HTTP", port=self.port,
            health_check_interval_seconds=self.interval, health_check_timeout_seconds=self.timeout,
            healthy_threshold=self.healthy_threshold, unhealthy_threshold=self.unhealthy_threshold,
            load_balancer_arns=self.lb_arns,
        )


# Under this caller name ``Alb.throttled`` counts the background's own throttled calls.
BACKGROUND = "background"
_SLACK = 1e-6  # epoch-second floats lose ~1e-7 s: do not let that refuse a due token


class TokenBucket:
    """An ELB API token bucket of the account (the Describe* one; RegisterTargets and DeregisterTargets have
    another), spent by every caller in the order the calls arrive.

    What it models (docs/facts.md, "ELB API throttling"): one bucket per account and Region, shared by every
    caller with the account's credentials, holding at most ``capacity`` tokens and refilled continuously at
    ``refill`` tokens per second (a refill past the capacity is lost). A call takes its ``n`` tokens if they
    are in the bucket at the instant it arrives, whoever makes it; otherwise it is throttled and takes
    nothing. So when the callers together ask more than the refill, each still gets tokens, about in
    proportion to how often it asks: one asking f calls/s among others asking r gets about ``refill * f / (f + r)``
    of them (tests/sim/test_fair_bucket.py).

    The background: ``load`` holds (start, end, calls per second) windows in absolute virtual time (the
    scenario's ``faults.describe_load``): every other caller of the account's Describe* APIs (other clusters'
    Load Balancer Controllers, other rollouts, dashboards, scripts). Within a window its calls arrive as a
    Poisson process at the window's rate, the merge of many independent callers. Each takes one token as any
    call does; ``background_calls`` counts those served, ``background_throttled`` those refused. Not evenly
    spaced calls: against a perfectly regular background a token never waits long, so the other callers get
    about half their share, and a periodic one (a 15 s requeue against 12 calls/s) locks onto one phase and
    is served always or never. Arrivals at random instants see the bucket as it is on average, so every
    call, the background's or not, finds a token with the same chance.

    With a background, a call also reaches the bucket a random fraction of one refill period (``1 / refill``)
    after its caller's instant: network and service latency, which real calls have. Without it a caller whose
    calls fall on a grid of that period (the simulated albgate's fall on 0.1 s, one period at 10/s) would
    find the same fraction of a token at every call, the refill being continuous and every call taking whole
    tokens, and be served nearly always or nearly never. A bucket without a background jitters nothing.

    Draws: from ``rng`` (the simulation's ``describe_load`` stream; a fixed one if None) one 64-bit seed per
    window, in ``load`` order, then one for the jitter; window i's calls come at max(start, now) plus
    ``expovariate(rate)`` gaps of its own stream while before its end, and each call's delay is
    ``random() / refill`` from the jitter stream. The same seed gives the same run; another seed other arrivals.

    The background is served lazily and exactly: ``take`` (and ``advance``) first serves every background
    call that arrived since the bucket was last updated, in arrival order, each seeing the tokens refilled up
    to its own instant; no event goes on the loop. That is one step per background call (10 calls/s over an
    hour: 36,000 steps, about 20 ms): random gaps have no closed form that keeps the same draws.
    ``advance`` alone (reading the counts) changes no later outcome.

    What it does not model: AWS publishes the bucket's size and refill, not its algorithm (docs/facts.md,
    "ELB API throttling"): not whether the refill is continuous or added once a second, nor how calls
    arriving together are ordered, nor whether a throttled call costs anything. Here the refill is
    continuous, a background call at the same instant as another call goes first, and a throttled call is
    free. RegisterTargets and DeregisterTargets have a bucket of their own, this class again without a
    background (``Alb.mutating_bucket``)."""

    def __init__(self, capacity: int, refill: float, now: float, load: list[tuple[float, float, float]],
                 rng: random.Random | None = None) -> None:
        self.capacity, self.refill = float(capacity), refill
        self.tokens, self.last = float(capacity), now  # the tokens at ``last``, the bucket's last update
        self.load = load
        self.background_calls = self.background_throttled = 0
        draws = rng if rng is not None else random.Random(BACKGROUND)
        self._windows: list[tuple[float, float, random.Random]] = []  # (end, calls per second, its gaps)
        self._due: list[tuple[float, int]] = []  # heap of (next background arrival, window)
        for i, (start, end, rate) in enumerate(load):
            stream = random.Random(draws.getrandbits(64))
            self._windows.append((end, rate, stream))
            if rate > 0:
                first = max(start, now) + stream.expovariate(rate)
                if first < end:
                    heapq.heappush(self._due, (first, i))
        jitter = random.Random(draws.getrandbits(64))
        self._jitter = jitter.random if self._due else None  # a call's latency, in refill periods

    def advance(self, until: float) -> None:
        """Serve the background calls that arrive up to ``until``, in arrival order."""
        due = self._due
        if not due or due[0][0] > until:
            return
        tokens, last, cap, refill = self.tokens, self.last, self.capacity, self.refill
        served = refused = 0
        while due and due[0][0] <= until:
            t, i = heapq.heappop(due)
            end, rate, stream = self._windows[i]
            gap = stream.expovariate
            other, j = due[0] if due else (math.inf, 0)
            while True:  # this window's arrivals up to ``until`` and up to the next other window's
                if t > last:
                    tokens += refill * (t - last)
                    if tokens > cap:
                        tokens = cap
                    last = t
                if tokens >= 1 - _SLACK:
                    tokens = tokens - 1 if tokens > 1 else 0.0
                    served += 1
                else:
                    refused += 1
                t += gap(rate)
                if t >= end:
                    break
                if t > until or t > other or (t == other and i > j):
                    heapq.heappush(due, (t, i))
                    break
        self.tokens, self.last = tokens, last
        self.background_calls += served
        self.background_throttled += refused

    def take(self, now: float, n: int = 1) -> bool:
        """One call of ``n`` tokens at ``now``: served (True) if they are there, after the background's calls
        that came first."""
        if self._jitter is not None:
            now = max(self.last, now + self._jitter() / self.refill)
        self.advance(now)
        if now > self.last:
            self.tokens = min(self.capacity, self.tokens + self.refill * (now - self.last))
            self.last = now
        if self.tokens >= n - _SLACK:
            self.tokens = max(0.0, self.tokens - n)
            return True
        return False


def _rate_exceeded(api: str) -> ThrottledError:
    """What ELB answers a throttled call, as botocore words it."""
    return ThrottledError(f"An error occurred (Throttling) when calling the {api} operation: Rate exceeded")


class Alb:
    """The ELBv2 API of the account's Application Load Balancers, and what they do with their targets.

    States DescribeTargetHealth never answers here (docs/facts.md, "ELBv2 target states the simulation leaves
    out"), each with what leaving it out risks:

    * ``unused`` / ``Target.NotInUse``: a target group no listener rule forwards to, or a target in an
      Availability Zone the load balancer does not enable. Every simulated group is attached and every pod's zone
      enabled. Risk: a new pod scheduled in a zone the ALB lacks is never routed to, and albgate counts it as not
      registered; the gate waits for it until the step deadline and then fails the step, old pods kept
      (tests/sim/test_alb_strict.py pins that reaction), where a reason naming the zone would be quicker to act on.
    * ``unused`` / ``Target.NotRegistered``: answered only for a target named in the call's ``Targets``; albgate
      asks for the whole group, where an absent target is simply not listed, as here. No risk.
    * ``unused`` / ``Target.InvalidState`` and ``Target.IpUnusable``: a stopped or terminated instance, an IP
      reserved for the load balancer. Neither is a pod IP target. No risk.
    * ``unavailable`` / ``Target.HealthCheckDisabled``: IP targets' health checks cannot be disabled. No risk.
    * ``unavailable`` / ``Elb.InternalError``: ELB cannot say. albgate treats it as not registered in the gate
      (waits) and as still routable in the drain check (waits), and never deregisters such a target itself.
      Risk: none for safety; a long ELB-side outage shows only as a slower step.
    * ``unhealthy.draining``: a Network Load Balancer state (unhealthy target connection termination off). No
      risk for an ALB.

    Also not modelled: DeregisterTargets' ``InvalidTarget`` (a target outside the group's VPC: every Id here is a
    pod IP of the cluster), a second target for the same IP on another port (RegisterTargets leaves such a
    target out, with a log line), and traffic to a target registered on a port the pod does not serve (it fails
    every health check here, so only fail-open would route to it).
    """

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.loop = sim.loop
        self.rng = sim.rng("alb")
        # target group ARN -> the random stream its draws come from (a fleet's copies each have their own, so a
        # copy alone in a world draws what it draws in the fleet); unlisted groups draw from "alb"
        self.streams: dict[str, str] = {}
        self._rngs: dict[str, Any] = {"alb": self.rng}
        spec = sim.scenario.alb
        load = [(sim.rel_to_abs(w.at_seconds),
                 sim.rel_to_abs(w.at_seconds + w.duration_seconds) if w.duration_seconds else float("inf"),
                 w.rate_per_second) for w in sim.scenario.faults.describe_load]
        self.bucket = TokenBucket(spec.describe_bucket_capacity, spec.describe_bucket_refill_per_second,
                                  sim.clock.t, load, sim.rng("describe_load"))
        # RegisterTargets and DeregisterTargets have a bucket of their own (docs/facts.md, "ELB API throttling"),
        # served like the Describe* one; no background load is modelled on it.
        self.mutating_bucket = TokenBucket(spec.mutating_bucket_capacity, spec.mutating_bucket_refill_per_second,
                                           sim.clock.t, [])
        self.mutating_calls: Counter[str] = Counter()  # RegisterTargets + DeregisterTargets asked, by caller
        self.mutating_throttled: Counter[str] = Counter()  # of those, throttled (nothing changed), by caller
        self.lag = spec.deregistration_lag_seconds
        self.tgs: dict[str, TargetGroupSim] = {}
        self.describe_calls: Counter[str] = Counter()  # DescribeTargetHealth by caller
        self.describe_tg_calls: Counter[str] = Counter()
        self.deregister_calls: Counter[str] = Counter()  # DeregisterTargets by caller (not the controller's own)
        self.register_calls: Counter[str] = Counter()  # RegisterTargets by caller (not the controller's own)
        self._throttled: Counter[str] = Counter()  # throttled Describe* calls by caller, the background's aside
        self.asked: list[tuple[float, str, int]] = []  # every Describe* call asked: (time, caller, tokens)
        self.transitions: list[tuple[float, str, str, str, str, str]] = []  # (t, arn, ip, from, to, reason)
        self.on_transition: list[Any] = []

    @property
    def throttled(self) -> Counter[str]:
        """Throttled Describe* calls by caller, the background's (``BACKGROUND``) up to now included."""
        self.bucket.advance(self.sim.clock.t)
        out = Counter(self._throttled)
        if self.bucket.background_throttled:
            out[BACKGROUND] = self.bucket.background_throttled
        return out

    # --- the API ------------------------------------------------------------------------------------------
    def _spend(self, caller: str, api: str, n: int = 1) -> None:
        self.asked.append((self.sim.clock.t, caller, n))
        if not self.bucket.take(self.sim.clock.t, n):
            self._throttled[caller] += 1
            raise _rate_exceeded(api)

    def spend_mutating(self, caller: str, api: str) -> None:
        """One RegisterTargets or DeregisterTargets call of ``caller`` (the controller's reconcile or a client)
        takes a token of the mutating bucket; a throttled one raises ThrottledError and must change nothing."""
        self.mutating_calls[caller] += 1
        if not self.mutating_bucket.take(self.sim.clock.t):
            self.mutating_throttled[caller] += 1
            raise _rate_exceeded(api)

    def target_group(self, arn: str) -> TargetGroupSim:
        tg = self.tgs.get(arn)
        if tg is None:
            raise NotFoundError(f"One or more target groups not found: {arn}")
        return tg

    def describe_target_health(self, arn: str, caller: str) -> list[TargetHealth]:
        self.describe_calls[caller] += 1
        self._spend(caller, "DescribeTargetHealth")
        tg = self.target_group(arn)
        return [TargetHealth(t.ip, t.port, t.state, "" if t.state == HEALTHY else t.reason,
                             DESCRIPTIONS.get(t.reason, "") if t.state != HEALTHY else "")
                for t in tg.targets.values()]

    def deregister_targets(self, arn: str, targets: list[tuple[str, int]], caller: str, *,
                           charged: bool = True) -> None:
        """DeregisterTargets as a client calls it: a token of the mutating bucket (``spend_mutating``; throttled,
        it changes nothing), none of the Describe* one.

        A target is its Id and Port: only a registered (IP, port) starts draining. One that is not registered, on
        that port or at all, is no error and changes nothing, as ELBv2 answers (docs/facts.md, "ELBv2
        DeregisterTargets: Id, Port and absent targets"); an IP named on a port other than its target's leaves
        that target serving. One already draining is left as it is. ``charged`` False: a caller outside the
        account's limits (the oracle, whose knowledge and actions are free)."""
        self.deregister_calls[caller] += 1
        if charged:
            self.spend_mutating(caller, "DeregisterTargets")
        tg = self.target_group(arn)
        for ip, port in targets:
            t = tg.targets.get(ip)
            if t is None or t.port != port:
                where = "not registered" if t is None else f"registered on port {t.port}, not {port}"
                self.sim.log("target", f"{caller} deregisters {ip}:{port} from {tg.name}: {where}, nothing to do")
                continue
            self.sim.log("target", f"{caller} deregisters {ip}:{port} from {tg.name}")
            self.deregister(tg, ip)

    def register_targets(self, arn: str, targets: list[tuple[str, int]], caller: str) -> None:
        """RegisterTargets as a client calls it, registering each (IP, port) as the controller's reconcile does
        (``register``: a target already there stays as it is, a draining one is registered anew). A token of the
        mutating bucket, like ``deregister_targets``. A target is the pod holding the IP (its health checks
        reach that pod, on the target's port: a port the pod does not serve fails them); an IP no live pod holds
        is not modelled and is left out, with a log line, and so is a second port for an IP registered on
        another one."""
        self.register_calls[caller] += 1
        self.spend_mutating(caller, "RegisterTargets")
        tg = self.target_group(arn)
        for ip, port in targets:
            pod = next((p for p in self.sim.cluster.pods.values() if p.ip == ip and not p.exited), None)
            if pod is None:
                self.sim.log("target", f"{caller} registers {ip} in {tg.name}: no pod holds that IP, left out")
                continue
            old = tg.targets.get(ip)
            if old is not None and old.state != DRAINING and old.port != port:
                self.sim.log("target", f"{caller} registers {ip}:{port} in {tg.name}: the IP is registered on port "
                                       f"{old.port}; a second target for one IP is not modelled, left out")
                continue
            self.sim.log("target", f"{caller} registers {ip}:{port} ({pod.name}) in {tg.name}")
            self.register(tg, pod, port)

    def describe_target_group(self, arn: str, caller: str) -> TargetGroup:
        # DescribeTargetGroups + DescribeTargetGroupAttributes: two Describe* calls from the same bucket
        self.describe_tg_calls[caller] += 1
        self._spend(caller, "DescribeTargetGroups", 2)
        return self.target_group(arn).snapshot()

    def describe_target_group_settings(self, arns: list[str], caller: str) -> list[TargetGroupSettings]:
        """DescribeTargetGroups naming ``arns``: one Describe* call. More than ``MAX_GROUPS_PER_CALL`` is refused
        as ELB refuses it (docs/facts.md, "ELBv2 DescribeTargetGroups: 20 groups a call"), before the bucket is
        asked; one group that does not exist fails the whole call (TargetGroupNotFound), after it."""
        if len(arns) > MAX_GROUPS_PER_CALL:
            raise ValueError(f"ValidationError: You cannot describe more than '{MAX_GROUPS_PER_CALL}' target groups "
                             "at a time")
        self.describe_tg_calls[caller] += 1
        self._spend(caller, "DescribeTargetGroups")
        return [self.target_group(arn).settings() for arn in dict.fromkeys(arns)]

    def describe_deregistration_delay(self, arn: str, caller: str) -> int:
        """DescribeTargetGroupAttributes: one Describe* call."""
        self._spend(caller, "DescribeTargetGroupAttributes")
        return self.target_group(arn).delay

    # --- target groups --------------------------------------------------------------------------------
    def create_target_group(self, name: str, port: int, target_type: str, hc: tuple[int, int, int, int],
                            delay: int) -> TargetGroupSim:
        sc = self.sim.scenario.cluster
        h = hashlib.sha256(f"{sc.account_id}/{name}".encode()).hexdigest()
        arn = f"arn:aws:elasticloadbalancing:{sc.region}:{sc.account_id}:targetgroup/{name}/{h[:16]}"
        lb = (f"arn:aws:elasticloadbalancing:{sc.region}:{sc.account_id}:loadbalancer/app/"
              f"k8s-{name.split('-')[1]}-{h[16:26]}/{h[26:42]}",)
        tg = TargetGroupSim(arn, name, port, target_type, *hc, delay, lb)
        self.tgs[arn] = tg
        return tg

    def add_healthy(self, tg: TargetGroupSim, pod: "PodObj") -> None:
        """A target that has been registered and healthy for long (the steady state before a rollout)."""
        t = Target(tg, pod, self.sim.clock.t)
        t.state, t.reason = HEALTHY, ""
        tg.targets[t.ip] = t
        tg._pool = None
        t.hc_event = self.loop.after(self._rng(tg).uniform(0, tg.interval), self._health_check, t)

    def _rng(self, tg: TargetGroupSim) -> Any:
        name = self.streams.get(tg.arn, "alb")
        rng = self._rngs.get(name)
        if rng is None:
            rng = self._rngs[name] = self.sim.rng(name)
        return rng

    def register(self, tg: TargetGroupSim, pod: "PodObj", port: int | None = None) -> None:
        """Register the pod's IP on ``port`` (None: the group's port, as the controller registers it)."""
        now = self.sim.clock.t
        old = tg.targets.get(pod.ip or "")
        if old is not None:
            if old.state != DRAINING:
                return
            self._cancel(old)
        t = Target(tg, pod, now, port)
        tg.targets[t.ip] = t
        tg._pool = None
        self._record(t, "(none)" if old is None else DRAINING)
        lo, hi = tg.registration or self.sim.scenario.alb.registration_seconds
        t.hc_event = self.loop.after(self._rng(tg).uniform(lo, hi), self._registration_done, t)

    def deregister(self, tg: TargetGroupSim, ip: str) -> None:
        t = tg.targets.get(ip)
        if t is None or t.state == DRAINING:
            return
        now = self.sim.clock.t
        self._cancel(t)
        t.state_at_dereg = t.state
        t.state, t.reason, t.dereg_at = DRAINING, "Target.DeregistrationInProgress", now
        t.routable = t.state_at_dereg in (HEALTHY, UNHEALTHY)
        tg._pool = None
        self._record(t, t.state_at_dereg)
        # The data plane keeps sending new requests for the lag (never past the delay); then the target
        # drains until idle or until the deregistration delay ends (docs/facts.md, Deregistration and draining).
        t.drain_event = self.loop.after(min(self.lag, tg.delay), self._lag_over, t)

    def _cancel(self, t: Target) -> None:
        for ev in (t.hc_event, t.drain_event):
            if ev is not None:
                ev.cancel()
        t.hc_event = t.drain_event = None

    def _lag_over(self, t: Target) -> None:
        t.routable = False
        t.tg._pool = None
        assert t.dereg_at is not None
        self.sim.log("target", f"target {t.ip} in {t.tg.name} gets no new requests "
                               f"{self.sim.clock.t - t.dereg_at:.1f} s after its deregistration began")
        # ELB completes the deregistration of a target with nothing in flight at once, but DescribeTargetHealth
        # shows it `draining` until the delay has run out (docs/facts.md, "Deregistration and draining"): the
        # requests it still serves end when they end (``drained``), and it leaves the group at the delay.
        t.drain_event = self.loop.at(t.dereg_at + t.tg.delay, self._drained, t)

    def _drained(self, t: Target) -> None:
        tg = t.tg
        if tg.targets.get(t.ip) is not t:
            return
        assert t.dereg_at is not None
        # the deregistration delay ran out: the ALB closes what is still in flight (docs/facts.md, Deregistration
        # and draining)
        self.sim.traffic.drop_target_inflight(t, "deregistration_delay_expired")
        del tg.targets[t.ip]
        tg._pool = None
        self.transitions.append((self.sim.clock.t, tg.arn, t.ip, DRAINING, "(gone)", ""))
        self.sim.log("target", f"target {t.ip} left {tg.name} after draining "
                               f"{self.sim.clock.t - t.dereg_at:.1f} s")
        for fn in self.on_transition:
            fn(t, DRAINING, "(gone)")

    def _registration_done(self, t: Target) -> None:
        t.reason = "Elb.InitialHealthChecking"
        self.sim.log("target", f"target {t.ip} in {t.tg.name}: initial (Elb.InitialHealthChecking)")
        # Checks start at a random phase of the interval (several ALB nodes check independently in reality).
        t.hc_event = self.loop.after(self._rng(t.tg).uniform(0, t.tg.interval), self._health_check, t)

    def _health_check(self, t: Target) -> None:
        tg = t.tg
        if tg.targets.get(t.ip) is not t or t.state == DRAINING:
            return
        t.checks += 1
        pod = t.pod
        failing = pod.broken or pod.alb_check_fails  # 5xx to everyone, or a 404 on the health-check path only
        # The check goes to the target's port ("traffic-port"): on any other than the app's nothing listens and
        # the connection is refused.
        listening = pod.serving and t.port == self.sim.scenario.app.port
        passed = listening and not failing
        if passed:
            t.fails = 0
            if t.state == INITIAL:
                self._set(t, HEALTHY, "")  # a new target needs one passing check (docs/facts.md, ALB target health)
            elif t.state == UNHEALTHY:
                t.passes += 1
                if t.passes >= tg.healthy_threshold:
                    self._set(t, HEALTHY, "")
        else:
            reason = "Target.ResponseCodeMismatch" if listening and failing else "Target.FailedHealthChecks"
            t.passes = 0
            t.fails += 1
            if t.state == UNHEALTHY:
                t.reason = reason
            elif t.fails >= tg.unhealthy_threshold:
                self._set(t, UNHEALTHY, reason)
        t.hc_event = self.loop.after(tg.interval, self._health_check, t)

    def _set(self, t: Target, state: str, reason: str) -> None:
        before = t.state
        t.state, t.reason = state, reason
        t.passes = t.fails = 0
        t.tg._pool = None
        self._record(t, before)

    def _record(self, t: Target, before: str) -> None:
        self.transitions.append((self.sim.clock.t, t.tg.arn, t.ip, before, t.state, t.reason))
        self.sim.log("target", f"target {t.ip} ({t.pod.name}) in {t.tg.name}: {before} -> {t.state}"
                               + (f" ({t.reason})" if t.reason else ""))
        for fn in self.on_transition:
            fn(t, before, t.state)

    # --- for strategies with perfect knowledge (the oracle) -------------------------------------------------
    def state_of(self, arn: str, ip: str | None) -> str | None:
        t = self.tgs[arn].targets.get(ip or "")
        return t.state if t else None

    def draining_count(self) -> int:
        return sum(t.state == DRAINING for tg in self.tgs.values() for t in tg.targets.values())


# --- the client side: a botocore client's retries --------------------------------------------------------------
# albgate's ELBv2 client settings, as lambdas/adapters/elbv2.py ``client_config`` writes them
# (tests/sim/test_alb_strict.py checks that the two agree).
ALBGATE_ELB_RETRIES: dict[str, str | int] = {"mode": "adaptive", "total_max_attempts": 5}

# botocore's numbers (docs/facts.md, "botocore retries: standard and adaptive modes"): the backoff before retry
# k (1-based) is a uniform draw from [0, min(2**(k-1), 20)] seconds for a throttle; each retry takes 5 from a
# retry quota of 500 that a call's success gives back (1 when it needed no retry); adaptive mode adds a send-token
# bucket whose rate CUBIC sets from the measured send rate.
MAX_BACKOFF_SECONDS = 20.0
RETRY_QUOTA, RETRY_COST, NO_RETRY_INCREMENT = 500, 5, 1
_MIN_SEND_RATE, _MAX_RATE_ADJUST, _CUBIC_BETA, _CUBIC_SCALE = 0.5, 2.0, 0.7, 0.4
_RATE_SMOOTHING, _RATE_BUCKETS_PER_SECOND = 0.8, 2

T = TypeVar("T")


class _SendRateLimiter:
    """Adaptive mode's client-side rate limiter: once a response has been throttled, each request waits for a
    token of a bucket refilled at the rate CUBIC allows (never below 0.5 per second, holding at least one), that
    rate at most twice the rate the client was measured sending at. Before the first throttle nothing waits.

    State, as botocore keeps it: the send-token bucket (``rate`` per second, ``capacity``, ``tokens`` at ``last``;
    it starts empty at 1 per second), the measured send rate (requests counted per half-second and smoothed), and
    CUBIC's rate at the last throttle (``w_max``), its zero point ``k`` and the throttle's time."""

    def __init__(self, now: float) -> None:
        self.enabled = False
        self.rate, self.capacity, self.tokens, self.last = 1.0, 1.0, 0.0, now
        self.measured, self.count, self.bucket = 0.0, 0, float(math.floor(now))
        self.w_max, self.k, self.last_throttle = 0.0, 0.0, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now

    def before_send(self, now: float) -> float:
        """Seconds the request waits for its token (taken now, for the instant it goes)."""
        if not self.enabled:
            return 0.0
        self._refill(now)
        wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
        self.tokens = max(0.0, self.tokens + wait * self.rate - 1)
        self.last = now + wait
        return wait

    def after_response(self, now: float, throttled: bool) -> None:
        """Every response, throttled or not, moves the measured rate and the allowed one."""
        half = math.floor(now * _RATE_BUCKETS_PER_SECOND) / _RATE_BUCKETS_PER_SECOND
        self.count += 1
        if half > self.bucket:
            sent = self.count / (half - self.bucket)
            self.measured = sent * _RATE_SMOOTHING + self.measured * (1 - _RATE_SMOOTHING)
            self.count, self.bucket = 0, half
        if throttled:
            at = self.measured if not self.enabled else min(self.measured, self.rate)
            self.w_max, self.last_throttle = at, now
            self.k = (at * (1 - _CUBIC_BETA) / _CUBIC_SCALE) ** (1 / 3)
            allowed = at * _CUBIC_BETA
            self.enabled = True
        else:
            allowed = _CUBIC_SCALE * (now - self.last_throttle - self.k) ** 3 + self.w_max
        allowed = min(allowed, _MAX_RATE_ADJUST * self.measured)
        self._refill(now)
        self.rate = max(allowed, _MIN_SEND_RATE)
        self.capacity = allowed if allowed >= 1 else 1.0
        self.tokens = min(self.tokens, self.capacity)


class SdkClient:
    """What a botocore client with ``Config(retries=retries)`` does around each call it makes, in virtual time;
    with ``retries`` None, a caller without retries: each call one attempt, its throttle raised at once.

    ``call(send)`` is one API call: ``send`` is one attempt (one request to the simulated ELB, taking a
    Describe* token if it is served). A throttled attempt (``ThrottledError``) is retried while attempts remain
    (``total_max_attempts``, the first included) and the retry quota holds ``RETRY_COST``, after a backoff drawn
    from the client's own stream; only the last one's error reaches the caller. Other domain errors are not
    retried. In ``adaptive`` mode every attempt first waits for the send-token bucket (``_SendRateLimiter``).
    Every wait is ``sleep(seconds)``: the world goes on meanwhile, and the caller sees its answer later.

    ``sleep``: the simulation's own ``advance`` by default; a runner that interleaves several executions on one
    world passes its clock's ``sleep`` instead, since only it may move the world.

    What it does not model: AWS runs one client per warm Lambda container, each function's apart, with its own
    quota and rate limiter; here one client serves every call made through its port. Non-throttling errors
    botocore retries (5xx, connection errors) are not raised by the simulated ELB. Calls take no time of their
    own beyond their waits. Where a caller asks for a whole target group (``Alb.describe_target_group``: the gate
    keeper, the report), DescribeTargetGroups and DescribeTargetGroupAttributes are one simulated call of two
    tokens, retried together, where botocore retries each on its own; Preflight makes them as two calls.
    """

    def __init__(self, sim: "Simulation", retries: dict[str, str | int] | None, stream: str,
                 sleep: Callable[[float], None] | None = None) -> None:
        mode, attempts = (None, 1) if retries is None else (retries.get("mode"), retries.get("total_max_attempts"))
        if not isinstance(attempts, int) or attempts < 1 or mode not in (None, "standard", "adaptive") or (
                retries is not None and mode is None):
            raise ValueError(f"retries {retries}: give mode standard or adaptive and total_max_attempts of 1 or more")
        self.sim, self.max_attempts = sim, attempts
        self.rng = sim.rng(stream)
        self.sleep = sleep or sim.advance
        self.quota = RETRY_QUOTA
        self.limiter = _SendRateLimiter(sim.clock.t) if mode == "adaptive" else None
        self.calls = self.attempts = self.retries = self.surfaced = 0  # surfaced: throttles the caller saw
        self.waited = 0.0  # seconds spent in backoff and waiting for send tokens

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)

    def call(self, send: Callable[[], T]) -> T:
        self.calls += 1
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                self._wait(self.limiter.before_send(self.sim.clock.t))
            self.attempts += 1
            try:
                answer = send()
            except ThrottledError:
                if self.limiter is not None:
                    self.limiter.after_response(self.sim.clock.t, throttled=True)
                if attempt >= self.max_attempts or self.quota < RETRY_COST:
                    self.surfaced += 1
                    raise
                self.quota -= RETRY_COST
                self.retries += 1
                self._wait(self.rng.random() * min(2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS))
                continue
            except AlbgateError:
                if self.limiter is not None:
                    self.limiter.after_response(self.sim.clock.t, throttled=False)
                raise
            if self.limiter is not None:
                self.limiter.after_response(self.sim.clock.t, throttled=False)
            self.quota = min(RETRY_QUOTA, self.quota + (NO_RETRY_INCREMENT if attempt == 1 else RETRY_COST))
            return answer
