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
A request a pod serves may still be answered badly: with the pod's error rate (``traffic.error_rate``, or its
image's in ``faults.degraded_images``), times the minute's noise factor (``traffic.error_rate_noise``), it is
answered 5xx. That is no failure (the request was answered) but is counted apart, by whether the pod runs the
rollout's image; a degraded image's pods also take ``latency_factor`` times the drawn duration. Every request is
also counted in its target group's CloudWatch period (``albgate.sim.metrics``).
The arrival times and durations come from their own seeded stream, so every strategy sees the same clients; the
5xx draws come from another one, and a minute's noise factor from a seed of its own.
Each app in the world (a fleet has many) has its own clients and counters; the world's totals add them up.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from albgate.sim.metrics import ANSWERED, REQUESTS, TARGET_5XX, TIME_MAX, TIME_SUM, GroupMetrics, period_start
from lambdas.domain.ports import METRIC_PERIOD_SECONDS

if TYPE_CHECKING:
    from albgate.sim.alb import Target, TargetGroupSim
    from albgate.sim.kube import PodObj
    from albgate.sim.simulation import Simulation

_PRUNE_AT = 64


def noise_factor(key: str, start: float, cv: float) -> float:
    """The factor on every error rate in the period starting at ``start``: a gamma draw with mean 1 and coefficient
    of variation ``cv`` (shape 1/cv^2, scale cv^2), from a generator seeded by ``key`` and the period alone, so it
    is the same whatever was drawn before; 1 when ``cv`` is 0."""
    if cv == 0:
        return 1.0
    shape = 1.0 / (cv * cv)
    return random.Random(f"{key}:{start:.0f}").gammavariate(shape, 1.0 / shape)


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


class Stream:
    """One app's clients: Poisson arrivals at the scenario's rate, spread evenly over the app's target groups.

    ``answers`` draws which served requests are answered 5xx; ``noise_key`` seeds each minute's noise factor;
    ``new_image`` is the rollout's image (a 5xx from its pods counts in ``answered_badly_new``). ``faulty`` says
    whether any pod may answer badly or slowly at all: when not, the loop does nothing for it per request."""

    def __init__(self, name: str, spec: Any, rng: Any, now: float, *, answers: Any = None, noise_key: str = "",
                 new_image: str = "", faulty: bool = False) -> None:
        self.name = name
        self.rng = rng
        self.rate = spec.rate_per_second
        self.mean = spec.mean_duration_seconds
        self.max = spec.max_duration_seconds
        self.sample_duration = _duration_sampler(spec, rng)  # None: exponential, inlined in flush()
        self.tgs: list["TargetGroupSim"] = []
        self.recorders: list[GroupMetrics] = []  # the CloudWatch periods of tgs[i]
        self.next_arrival = now + (rng.expovariate(self.rate) if self.rate > 0 else float("inf"))
        self.requests = 0
        self.failed: Counter[str] = Counter()
        self.failures: list[tuple[float, str]] = []  # (absolute time, cause)
        self.n = 0
        self.answers = answers if answers is not None else random.Random(f"{name}:answers")
        self.noise_key, self.noise_cv = noise_key, spec.error_rate_noise
        self.new_image = new_image
        self.faulty = faulty or spec.error_rate > 0 or spec.error_rate_noise > 0
        self.answered_badly_new = 0  # answered 5xx by a pod of the rollout's image
        self.answered_badly_new_at: list[float] = []  # when each of those arrived (bench/bench_analysis.py)
        self.answered_badly_old = 0  # answered 5xx by a pod of any other image
        self._period_end = -math.inf  # the current CloudWatch period: its end, each group's row, its noise factor
        self._rows: list[list[float]] = []
        self._noise = 1.0

    @property
    def answered_badly(self) -> int:
        return self.answered_badly_new + self.answered_badly_old

    def add_group(self, tg: "TargetGroupSim", recorder: GroupMetrics) -> None:
        """Requests go (in turn with the other groups) to ``tg``, and are counted in ``recorder``."""
        self.tgs.append(tg)
        self.recorders.append(recorder)
        self._period_end = -math.inf  # the next request takes every group's row afresh

    def flush(self, until: float) -> None:
        """Deliver every request that arrives before ``until``."""
        if self.next_arrival >= until or not self.tgs:
            return
        rng, tgs, ntg = self.rng, self.tgs, len(self.tgs)
        expo, rate, inv_mean, cap = rng.expovariate, self.rate, 1.0 / self.mean, self.max
        sample = self.sample_duration
        faulty, answer, new_image = self.faulty, self.answers.random, self.new_image
        period_end, rows, noise = self._period_end, self._rows, self._noise
        t = self.next_arrival
        while t < until:
            duration = expo(inv_mean) if sample is None else sample()
            if duration > cap:
                duration = cap
            self.requests += 1
            if t >= period_end:
                start = period_start(t)
                period_end = start + METRIC_PERIOD_SECONDS
                rows = [r.row(start) for r in self.recorders]
                noise = noise_factor(self.noise_key, start, self.noise_cv)
            i = self.n % ntg if ntg > 1 else 0
            tg, row = tgs[i], rows[i]
            self.n += 1
            row[REQUESTS] += 1
            pool = tg.pool()
            if not pool:
                self.fail(t, "no_routable_target")
            else:
                target = pool[tg.rr % len(pool)]
                tg.rr += 1
                pod = target.pod
                if pod.exited or pod.sigtermed:
                    self.fail(t, "connection_refused_terminated")
                elif not pod.listening:
                    self.fail(t, "pod_not_serving")
                elif pod.broken:
                    self.fail(t, "app_error")
                    row[TARGET_5XX] += 1
                    row[TIME_SUM] += duration
                    row[ANSWERED] += 1
                    if duration > row[TIME_MAX]:
                        row[TIME_MAX] = duration
                else:
                    if faulty:
                        duration *= pod.latency_factor
                        p = pod.error_rate * noise
                        if p > 0 and answer() < p:
                            row[TARGET_5XX] += 1
                            if pod.version == new_image:
                                self.answered_badly_new += 1
                                self.answered_badly_new_at.append(t)
                            else:
                                self.answered_badly_old += 1
                    end = t + duration
                    inflight = pod.inflight
                    inflight.append((end, target))
                    if end > target.last_end:
                        target.last_end = end
                    if len(inflight) > _PRUNE_AT:
                        pod.inflight = [r for r in inflight if r[0] > t]
                    row[TIME_SUM] += duration
                    row[ANSWERED] += 1
                    if duration > row[TIME_MAX]:
                        row[TIME_MAX] = duration
            t += expo(rate)
        self.next_arrival = t
        self._period_end, self._rows, self._noise = period_end, rows, noise

    def fail(self, t: float, cause: str) -> None:
        self.failed[cause] += 1
        self.failures.append((t, cause))

    @property
    def failed_requests(self) -> int:
        return sum(self.failed.values())


class Traffic:
    """Every app's clients in the world. The first stream is the scenario's app (``tgs`` is its list of target
    groups); a fleet adds one stream per copy. Before each event only the streams with an arrival due are
    delivered (a heap on their next arrival), so many quiet apps cost nothing between their requests."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.streams: list[Stream] = []
        self._by_tg: dict[str, Stream] = {}
        self._heap: list[tuple[float, int]] = []

    def add_stream(self, name: str, rng: Any, answers: Any = None, noise_key: str = "") -> Stream:
        """A new app's clients, drawing arrivals and durations from ``rng`` (its own seeded stream), which requests
        are answered 5xx from ``answers`` (another one), each minute's noise factor from ``noise_key``."""
        sc = self.sim.scenario
        stream = Stream(name, sc.traffic, rng, self.sim.clock.t, answers=answers, noise_key=noise_key,
                        new_image=sc.rollout.image, faulty=bool(sc.faults.degraded_images))
        self.streams.append(stream)
        return stream

    def route(self, stream: Stream, tg: "TargetGroupSim") -> None:
        """``stream``'s requests go (in turn with its other groups) to ``tg``."""
        if not stream.tgs:
            heapq.heappush(self._heap, (stream.next_arrival, self.streams.index(stream)))
        stream.add_group(tg, self.sim.metrics.group(tg))
        self._by_tg[tg.arn] = stream

    @property
    def tgs(self) -> list["TargetGroupSim"]:
        return self.streams[0].tgs

    def flush(self, until: float) -> None:
        """Deliver every request that arrives before ``until``, in every stream."""
        if len(self.streams) == 1:
            self.streams[0].flush(until)
            return
        heap, streams = self._heap, self.streams
        while heap and heap[0][0] < until:
            _, i = heapq.heappop(heap)
            stream = streams[i]
            stream.flush(until)
            heapq.heappush(heap, (stream.next_arrival, i))

    def _stream_of(self, target: "Target") -> Stream:
        return self._by_tg.get(target.tg.arn) or self.streams[0]

    def kill_inflight(self, pod: "PodObj", cause: str) -> None:
        now = self.sim.clock.t
        for end, target in pod.inflight:
            if end > now:
                self._stream_of(target).fail(now, cause)
        pod.inflight = []

    def drop_target_inflight(self, target: "Target", cause: str) -> None:
        now = self.sim.clock.t
        keep = []
        stream = self._stream_of(target)
        for rec in target.pod.inflight:
            if rec[0] > now and rec[1] is target:
                stream.fail(now, cause)
            elif rec[0] > now:
                keep.append(rec)
        target.pod.inflight = keep

    # --- the world's totals --------------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.streams)

    @property
    def failed(self) -> Counter[str]:
        if len(self.streams) == 1:
            return self.streams[0].failed
        total: Counter[str] = Counter()
        for s in self.streams:
            total.update(s.failed)
        return total

    @property
    def failures(self) -> list[tuple[float, str]]:
        if len(self.streams) == 1:
            return self.streams[0].failures
        return sorted(f for s in self.streams for f in s.failures)

    @property
    def failed_requests(self) -> int:
        return sum(s.failed_requests for s in self.streams)

    @property
    def answered_badly(self) -> int:
        """Requests a pod answered 5xx by its error rate (not failures: they were answered), every version."""
        return sum(s.answered_badly for s in self.streams)

    @property
    def answered_badly_by_new_version(self) -> int:
        """Of ``answered_badly``, those answered by pods of the rollout's image."""
        return sum(s.answered_badly_new for s in self.streams)
