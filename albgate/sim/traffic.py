"""Client traffic through the ALB: Poisson arrivals with a duration each, routed as the load balancer would.

Job: count every request and the failed ones by cause. Requests are delivered lazily: before each simulation
event, every request that arrived since the last one is routed against the state as it was (nothing changes
between two events), which keeps a rollout with thousands of requests cheap.
Invariant: a request fails at most once, with exactly one cause:
- ``no_routable_target``: the target group had nothing to route to (ALB 503);
- ``pod_not_serving``: it reached a pod whose app was not accepting connections yet;
- ``connection_refused_terminated``: it reached a pod that had received SIGTERM or was gone;
- ``app_error``: it reached a broken version that answered 5xx;
- ``killed_in_flight``: its pod exited (SIGKILL, or an app that exits on SIGTERM) before it finished;
- ``deregistration_delay_expired``: the target's deregistration delay ended while it was still running.
The arrival times and durations come from their own seeded stream, so every strategy sees the same clients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from albgate.sim.alb import Target, TargetGroupSim
    from albgate.sim.kube import PodObj
    from albgate.sim.simulation import Simulation

_PRUNE_AT = 64


def _duration_sampler(spec: Any, rng: Any) -> Callable[[], float] | None:
    """How one request's duration is drawn (before the cap): None for the exponential (the hot loop calls
    ``expovariate`` itself); a fixed duration draws nothing; a Pareto with shape a > 1 and mean m has scale
    m (a - 1) / a and is drawn by inversion (x_m / U^(1/a))."""
    if spec.duration_distribution == "fixed":
        mean = spec.mean_duration_seconds
        return lambda: mean
    if spec.duration_distribution == "pareto":
        a = spec.pareto_shape
        scale, power = spec.mean_duration_seconds * (a - 1) / a, -1.0 / a
        draw = rng.random
        return lambda: scale * (1.0 - draw()) ** power
    return None


class Traffic:
    def __init__(self, sim: "Simulation") -> None:
        spec = sim.scenario.traffic
        self.sim = sim
        self.rng = sim.rng("traffic")
        self.rate = spec.rate_per_second
        self.mean = spec.mean_duration_seconds
        self.max = spec.max_duration_seconds
        self.sample_duration = _duration_sampler(spec, self.rng)  # None: exponential, inlined in flush()
        self.tgs: list["TargetGroupSim"] = []
        self.next_arrival = sim.clock.t + (self.rng.expovariate(self.rate) if self.rate > 0 else float("inf"))
        self.requests = 0
        self.failed: Counter[str] = Counter()
        self.failures: list[tuple[float, str]] = []  # (absolute time, cause)
        self.n = 0

    def flush(self, until: float) -> None:
        """Deliver every request that arrives before ``until``."""
        if self.next_arrival >= until or not self.tgs:
            return
        rng, tgs, ntg = self.rng, self.tgs, len(self.tgs)
        expo, rate, inv_mean, cap = rng.expovariate, self.rate, 1.0 / self.mean, self.max
        sample = self.sample_duration
        t = self.next_arrival
        while t < until:
            duration = expo(inv_mean) if sample is None else sample()
            if duration > cap:
                duration = cap
            self.requests += 1
            tg = tgs[self.n % ntg] if ntg > 1 else tgs[0]
            self.n += 1
            pool = tg.pool()
            if not pool:
                self._fail(t, "no_routable_target")
            else:
                target = pool[tg.rr % len(pool)]
                tg.rr += 1
                pod = target.pod
                if pod.exited or pod.sigtermed:
                    self._fail(t, "connection_refused_terminated")
                elif not pod.listening:
                    self._fail(t, "pod_not_serving")
                elif pod.broken:
                    self._fail(t, "app_error")
                else:
                    end = t + duration
                    inflight = pod.inflight
                    inflight.append((end, target))
                    if end > target.last_end:
                        target.last_end = end
                    if len(inflight) > _PRUNE_AT:
                        pod.inflight = [r for r in inflight if r[0] > t]
            t += expo(rate)
        self.next_arrival = t

    def _fail(self, t: float, cause: str) -> None:
        self.failed[cause] += 1
        self.failures.append((t, cause))

    def kill_inflight(self, pod: "PodObj", cause: str) -> None:
        now = self.sim.clock.t
        for end, _ in pod.inflight:
            if end > now:
                self._fail(now, cause)
        pod.inflight = []

    def drop_target_inflight(self, target: "Target", cause: str) -> None:
        now = self.sim.clock.t
        keep = []
        for rec in target.pod.inflight:
            if rec[0] > now and rec[1] is target:
                self._fail(now, cause)
            elif rec[0] > now:
                keep.append(rec)
        target.pod.inflight = keep

    @property
    def failed_requests(self) -> int:
        return sum(self.failed.values())
