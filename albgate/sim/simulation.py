"""One simulated world: an EKS cluster with the Load Balancer Controller, an ALB and its clients.

Job: build the scenario's steady state (the old version Ready and healthy behind the ALB, traffic flowing),
then let a strategy drive a rollout through the ports while virtual time advances.
Invariant: the same scenario and seed give the same run, event for event: every random draw comes from a
named stream seeded from (seed, stream name), and nothing reads the wall clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lambdas.domain.budget import BudgetSpec, LocalBudget
from lambdas.domain.descriptions import LocalDescriptions, NoDescriptions
from lambdas.domain.looks import LocalLooks, NoLooks
from lambdas.domain.models import RolloutRequest
from lambdas.domain.ports import (DRAINING, INITIAL, INJECT_LABEL, LBC_GATE_PREFIX, PodTemplate, Ports, Service,
                                  SharedDescriptions, SharedLooks, TargetGroupBinding)

# The label that tells a fleet's copies apart (the Kubernetes recommended label for an app's instance).
COPY_LABEL = "app.kubernetes.io/instance"
# The label a Service selects the copies behind it by, when several share it (fleet.per_service): the Kubernetes
# recommended label for the higher-level application a component is part of.
SHARED_LABEL = "app.kubernetes.io/part-of"
from lambdas.domain.ports import Container as ContainerSpec
from albgate.sim.alb import ALBGATE_ELB_RETRIES, Alb, TargetGroupSim
from albgate.sim.engine import EPOCH, EventLoop, VirtualClock
from albgate.sim.kube import Cluster, DepObj, make_ingress, make_service
from albgate.sim.lbc import LoadBalancerController, lbc_name
from albgate.sim.metrics import AlbMetrics
from albgate.sim.ports import SimAlarms, SimElb, SimKubernetes, SimMetrics
from albgate.sim.scenario import Scenario
from albgate.sim.traffic import Stream, Traffic


@dataclass
class AppCopy:
    """One copy of the scenario's app in the world: the only one, with the scenario's names, or one of a fleet's
    ``fleet.deployments``, its names suffixed. ``start`` is when its rollout starts (virtual epoch seconds)."""

    index: int
    deployment: str
    service: str
    labels: dict[str, str]
    start: float
    traffic: Stream
    groups: list[TargetGroupSim] = field(default_factory=list)

    def request(self, scenario: Scenario) -> RolloutRequest:
        """This copy's rollout as albgate's execution input."""
        return RolloutRequest(cluster=scenario.cluster.name, namespace=scenario.namespace.name,
                              deployment=self.deployment, container=scenario.rollout_container,
                              image=scenario.rollout.image, policy=scenario.rollout.policy)


def copy_suffix(scenario: Scenario, index: int) -> str:
    """What copy ``index``'s names end with: nothing for a single app, -1, -2, ... in a fleet."""
    return "" if scenario.fleet.deployments == 1 else f"-{index + 1}"


def stream_name(base: str, index: int) -> str:
    """The random stream of copy ``index``: copy 0 draws from the stream a single app does, so a one-app world
    is unchanged, and a copy alone in a world (``only=[k]``) draws exactly what it draws in the fleet."""
    return base if index == 0 else f"{base}/{index}"


class Simulation:
    """A scenario's world. ``kube``/``elb``/``clock`` are albgate's ports; ``advance``/``run_until`` move time.

    ``only`` builds just those copies of a fleet (each exactly as in the whole fleet: names, start time and
    random draws), which is how a rollout's time alone is compared with its time among the others."""

    def __init__(self, scenario: Scenario, seed: int | None = None, *, only: Sequence[int] | None = None,
                 budget: BudgetSpec | None = None, share_looks: bool = True) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        n = scenario.fleet.deployments
        self.only = sorted(set(range(n) if only is None else only))
        if not self.only or any(not 0 <= k < n for k in self.only):
            raise ValueError(f"only={list(only or [])}: give copies between 0 and {n - 1}")
        self.copies: list[AppCopy] = []
        self._copy_of: dict[str, int] = {}  # Deployment name -> its copy's index
        self._services: dict[str, tuple[Service, Stream, list[TargetGroupSim]]] = {}  # Service name -> what serves it
        self.clock = VirtualClock(EPOCH)
        self.loop = EventLoop(self.clock)
        self.rollout_start = EPOCH + scenario.rollout.start_at_seconds
        self.timeline: list[tuple[float, str, str]] = []  # (seconds since t=0, kind, text)
        self.alb = Alb(self)
        self.lbc = LoadBalancerController(self)
        self.cluster = Cluster(self)
        self.metrics = AlbMetrics(scenario.metrics.publication_delay_seconds)  # the ALB's CloudWatch metrics
        self.traffic = Traffic(self)
        self.loop.before_event = self.traffic.flush
        self.kube = SimKubernetes(self)
        # albgate's ELB client retries a throttled call as the adapter's botocore client does (adaptive mode).
        self.elb = SimElb(self, caller="albgate", retries=ALBGATE_ELB_RETRIES)
        # albgate's share of the account's Describe* bucket, with the stack's default rate and burst. One
        # rollout never waits for it; bench/replay.replay puts many rollouts behind one (docs/benchmarks.md).
        self.budget = LocalBudget(self.clock, budget)
        # DescribeTargetHealth answers shared between albgate's executions, as the budget table shares them
        # (``share_looks`` False: each execution calls for its own, as without the table)
        self.looks: SharedLooks = LocalLooks(self.clock) if share_looks else NoLooks()
        # Target groups described for many Preflights, on the same table (lambdas/domain/descriptions.py)
        self.descriptions: SharedDescriptions = LocalDescriptions() if share_looks else NoDescriptions()
        self._build()

    # --- plumbing -------------------------------------------------------------------------------------
    def rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.seed}:{stream}")

    def stream_for(self, deployment: str, base: str) -> str:
        """The name of random stream ``base`` for the copy that owns ``deployment`` (``base`` itself for the
        first copy, or for a Deployment that is no copy)."""
        return stream_name(base, self._copy_of.get(deployment, 0))

    def rel_to_abs(self, seconds_after_rollout_start: float) -> float:
        return self.rollout_start + seconds_after_rollout_start

    def log(self, kind: str, text: str) -> None:
        self.timeline.append((self.clock.t - EPOCH, kind, text))

    def elb_for(self, caller: str) -> SimElb:
        """An ElbPort whose DescribeTargetHealth calls are counted under ``caller`` (same shared bucket)."""
        return SimElb(self, caller)

    @property
    def ports(self) -> Ports:
        return Ports(kube=self.kube, elb=self.elb, clock=self.clock, budget=self.budget, looks=self.looks,
                     descriptions=self.descriptions, alarms=SimAlarms(self), metrics=SimMetrics(self))

    def add_observer(self, fn: Callable[[], None]) -> None:
        """fn() runs after every event, in zero virtual time (how the oracle reacts 'instantly')."""
        self.loop.observers.append(fn)

    def remove_observer(self, fn: Callable[[], None]) -> None:
        self.loop.observers.remove(fn)

    # --- time ------------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.run_until(self.clock.t + seconds)

    def handlers_sleep_on(self, sleep: Callable[[float], None] | None) -> None:
        """What passes virtual time inside a handler (a throttled ELB call's back-off, a watch of the cluster):
        ``sleep`` (a runner interleaving several executions passes its clock's, so the others go on meanwhile), or
        with None this world's own ``advance`` again."""
        self.elb.client.sleep = self.kube.sleep = sleep or self.advance

    def run_until(self, t: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to virtual epoch time ``t``; with ``stop``, return True as soon as it holds."""
        return self.loop.run_until(t, stop)

    @property
    def elapsed(self) -> float:
        return self.clock.t - EPOCH

    # --- counters ---------------------------------------------------------------------------------------
    @property
    def describe_target_health_calls(self) -> dict[str, int]:
        return dict(self.alb.describe_calls)

    @property
    def kube_api_calls(self) -> dict[str, int]:
        return dict(self.kube.calls)

    @property
    def get_metric_data_calls(self) -> int:
        return self.metrics.calls["GetMetricData"]

    # --- the world ------------------------------------------------------------------------------------
    def _build(self) -> None:
        sc = self.scenario
        ns = sc.namespace.name
        labels = {"kubernetes.io/metadata.name": ns}
        if sc.namespace.inject_label == "before_pods":
            labels[INJECT_LABEL] = "enabled"
        self.cluster.add_namespace(ns, labels)
        starts = self._copy_starts()
        for k in self.only:
            self.copies.append(self._build_copy(k, starts[k]))
        if sc.namespace.inject_label == "after_pods":
            self.cluster.label_namespace(ns, INJECT_LABEL, "enabled")
        if sc.namespace.labelled_at_seconds is not None:
            at = max(self.clock.t, self.rel_to_abs(sc.namespace.labelled_at_seconds))
            self.loop.at(at, self._label_namespace)
        self.lbc.start()
        groups = [g.name for c in self.copies for g in c.groups]
        shown = ", ".join(groups[:4]) + (f" and {len(groups) - 4} more" if len(groups) > 4 else "")
        per_app = sc.app.replicas if len(self.copies) == 1 else f"{len(self.copies)} x {sc.app.replicas}"
        self.log("setup", f"{per_app} pods of {sc.app.image} Ready and healthy in {shown}; "
                          f"{sc.traffic.rate_per_second:g} requests/s" + (" per app" if len(self.copies) > 1 else ""))

    def _copy_starts(self) -> list[float]:
        """Every copy's rollout start, drawn for the whole fleet whichever copies are built."""
        fleet = self.scenario.fleet
        if fleet.start_within_seconds == 0:
            return [self.rollout_start] * fleet.deployments
        rng = self.rng("fleet-starts")
        return [self.rollout_start + rng.uniform(0, fleet.start_within_seconds) for _ in range(fleet.deployments)]

    def _build_copy(self, k: int, start: float) -> AppCopy:
        sc = self.scenario
        ns, app, suffix = sc.namespace.name, sc.app, copy_suffix(sc, k)
        # The copies behind one Service (fleet.per_service) are told apart by their instance label and selected
        # together by part-of; the first copy of each such group names the Service and draws its random streams,
        # so a copy built alone (``only``) meets the same Service, groups and clients it meets in the fleet.
        first = k - k % sc.fleet.per_service
        shared = sc.fleet.per_service > 1
        svc_name = sc.service.name + copy_suffix(sc, first)
        app_labels = dict(app.labels) if not suffix else {**app.labels, COPY_LABEL: f"{app.deployment}{suffix}"}
        if shared:
            app_labels[SHARED_LABEL] = svc_name
        self._copy_of[app.deployment + suffix] = k
        built = self._services.get(svc_name)
        if built is None:
            built = self._build_service(first, svc_name, app_labels)
        svc, clients, groups = built
        copy = AppCopy(k, app.deployment + suffix, svc.name, app_labels, start, clients, list(groups))
        template = PodTemplate(
            containers=(ContainerSpec(app.container, app.image, app.pre_stop_sleep_seconds,
                                      app.readiness_probe is not None),),
            termination_grace_period_seconds=app.termination_grace_period_seconds,
            labels={**app_labels, **app.pod_labels},
        )
        d = DepObj(ns, copy.deployment, self.cluster.uid(), app.replicas, dict(app_labels), template, app.max_surge,
                   app.max_unavailable, app.min_ready_seconds, app.progress_deadline_seconds,
                   app.revision_history_limit)
        self.cluster.create_deployment(d, steady=True)
        for tg in copy.groups:
            for pod in self.cluster.service_pods(svc):
                if pod.ip not in tg.targets:  # the other copies behind the Service are registered already
                    self.alb.add_healthy(tg, pod)
        return copy

    def _build_service(self, first: int, name: str,
                       labels: dict[str, str]) -> tuple[Service, Stream, list[TargetGroupSim]]:
        """The Service ``name`` of the copies from ``first`` on, with its Ingresses, target groups and clients."""
        sc = self.scenario
        ns, app = sc.namespace.name, sc.app
        selector = dict(sc.service.selector or app.labels)
        if sc.fleet.per_service > 1:
            selector[SHARED_LABEL] = name
        elif COPY_LABEL in labels:
            selector[COPY_LABEL] = labels[COPY_LABEL]
        svc = make_service(ns, name, selector, sc.service.port, app.port)
        self.cluster.add_service(svc)
        suffix = copy_suffix(sc, first)
        clients = self.traffic.add_stream(app.deployment + suffix,
                                          self.rng(stream_name("traffic", first)),
                                          answers=self.rng(stream_name("answers", first)),
                                          noise_key=f"{self.seed}:{stream_name('error-noise', first)}")
        groups: list[TargetGroupSim] = []
        for ingress in (sc.ingress, *sc.extra_ingresses):
            self.cluster.add_ingress(make_ingress(ns, ingress.name + suffix, ingress.ingress_class, ingress.annotations,
                                                  svc.name, sc.service.port))
            # What the controller builds for an ALB Ingress: one target group and one TargetGroupBinding per
            # Service backend (docs/facts.md, Load Balancer Controller: registration and timing). Names follow
            # its k8s-<ns>-<svc>-<hash> scheme.
            tg_name = lbc_name(ns, svc.name, f"{sc.cluster.name}/{ingress.name}{suffix}")
            tg = self.alb.create_target_group(tg_name, app.port, ingress.target_type(), ingress.health_check(),
                                              ingress.deregistration_delay())
            tg.registration = ingress.registration_seconds
            self.alb.streams[tg.arn] = stream_name("alb", first)
            tgb = TargetGroupBinding(ns, tg_name, tg.arn, ingress.target_type(), svc.name, sc.service.port)
            self.cluster.add_tgb(tgb)
            self.lbc.bind(tgb, tg, svc)
            self.traffic.route(clients, tg)
            groups.append(tg)
        self._services[name] = (svc, clients, groups)
        return svc, clients, groups

    def _label_namespace(self) -> None:
        ns = self.scenario.namespace.name
        self.cluster.label_namespace(ns, INJECT_LABEL, "enabled")
        self.log("namespace", f"namespace {ns} labelled {INJECT_LABEL}=enabled: pods created from now get the gate")

    # --- helpers for strategies -------------------------------------------------------------------------
    def deployment(self, copy: int = 0) -> DepObj:
        """The Deployment of the world's ``copy``-th app (the only one, unless the scenario is a fleet)."""
        return self.cluster.deployment(self.scenario.namespace.name, self.copies[copy].deployment)

    def rollout_request(self, copy: int = 0) -> RolloutRequest:
        """The scenario's rollout as albgate's execution input."""
        return self.copies[copy].request(self.scenario)

    def current_image(self, copy: int = 0) -> str:
        c = self.deployment(copy).template.container(self.scenario.rollout_container)
        return c.image if c else ""

    def quiescent(self) -> bool:
        """The rollout's effects on traffic are over: no pod terminating, no target `initial` or still draining
        requests (one ELB only shows `draining` until its delay runs out carries no traffic), no target left
        behind by a gone pod, and every ContainersReady pod registered in its Service's groups."""
        if any(p.terminating and not p.exited for p in self.cluster.pods.values()):
            return False
        now = self.clock.t
        for tg in self.alb.tgs.values():
            for t in tg.targets.values():
                if t.state == DRAINING:
                    if t.routable or t.last_end > now:
                        return False
                    continue
                if t.state == INITIAL or t.pod.exited or t.pod.terminating:
                    return False
        for b in self.lbc.bindings:
            targets = b.tg.targets
            if any(p.ip not in targets for p in self.cluster.service_pods(b.service) if p.containers_ready and p.ip):
                return False
        return True

    def lbc_gate_names(self) -> list[str]:
        return [LBC_GATE_PREFIX + b.tgb.name for b in self.lbc.bindings]
