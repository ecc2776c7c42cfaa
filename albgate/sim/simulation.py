"""One simulated world: an EKS cluster with the Load Balancer Controller, an ALB and its clients.

Job: build the scenario's steady state (the old version Ready and healthy behind the ALB, traffic flowing),
then let a strategy drive a rollout through the ports while virtual time advances.
Invariant: the same scenario and seed give the same run, event for event: every random draw comes from a
named stream seeded from (seed, stream name), and nothing reads the wall clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lambdas.domain.budget import LocalBudget
from lambdas.domain.models import RolloutRequest
from lambdas.domain.ports import DRAINING, INITIAL, INJECT_LABEL, LBC_GATE_PREFIX, PodTemplate, Ports, TargetGroupBinding
from lambdas.domain.ports import Container as ContainerSpec
from albgate.sim.alb import Alb
from albgate.sim.engine import EPOCH, EventLoop, VirtualClock
from albgate.sim.kube import Cluster, DepObj, make_ingress, make_service
from albgate.sim.lbc import LoadBalancerController, lbc_name
from albgate.sim.ports import SimElb, SimKubernetes
from albgate.sim.scenario import Scenario
from albgate.sim.traffic import Traffic


class Simulation:
    """A scenario's world. ``kube``/``elb``/``clock`` are albgate's ports; ``advance``/``run_until`` move time."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.clock = VirtualClock(EPOCH)
        self.loop = EventLoop(self.clock)
        self.rollout_start = EPOCH + scenario.rollout.start_at_seconds
        self.timeline: list[tuple[float, str, str]] = []  # (seconds since t=0, kind, text)
        self.alb = Alb(self)
        self.lbc = LoadBalancerController(self)
        self.cluster = Cluster(self)
        self.traffic = Traffic(self)
        self.loop.before_event = self.traffic.flush
        self.kube = SimKubernetes(self)
        self.elb = SimElb(self, caller="albgate")
        # albgate's share of the account's Describe* bucket, with the stack's default rate and burst. One
        # rollout never waits for it; bench/replay.replay puts many rollouts behind one (docs/benchmarks.md).
        self.budget = LocalBudget(self.clock)
        self._build()

    # --- plumbing -------------------------------------------------------------------------------------
    def rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.seed}:{stream}")

    def rel_to_abs(self, seconds_after_rollout_start: float) -> float:
        return self.rollout_start + seconds_after_rollout_start

    def log(self, kind: str, text: str) -> None:
        self.timeline.append((self.clock.t - EPOCH, kind, text))

    def elb_for(self, caller: str) -> SimElb:
        """An ElbPort whose DescribeTargetHealth calls are counted under ``caller`` (same shared bucket)."""
        return SimElb(self, caller)

    @property
    def ports(self) -> Ports:
        return Ports(kube=self.kube, elb=self.elb, clock=self.clock, budget=self.budget)

    def add_observer(self, fn: Callable[[], None]) -> None:
        """fn() runs after every event, in zero virtual time (how the oracle reacts 'instantly')."""
        self.loop.observers.append(fn)

    def remove_observer(self, fn: Callable[[], None]) -> None:
        self.loop.observers.remove(fn)

    # --- time ------------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.run_until(self.clock.t + seconds)

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

    # --- the world ------------------------------------------------------------------------------------
    def _build(self) -> None:
        sc = self.scenario
        ns, app = sc.namespace.name, sc.app
        labels = {"kubernetes.io/metadata.name": ns}
        if sc.namespace.inject_label == "before_pods":
            labels[INJECT_LABEL] = "enabled"
        self.cluster.add_namespace(ns, labels)
        selector = dict(sc.service.selector or app.labels)
        svc = make_service(ns, sc.service.name, selector, sc.service.port, app.port)
        self.cluster.add_service(svc)
        groups = []
        for ingress in (sc.ingress, *sc.extra_ingresses):
            self.cluster.add_ingress(make_ingress(ns, ingress.name, ingress.ingress_class, ingress.annotations,
                                                  svc.name, sc.service.port))
            # What the controller builds for an ALB Ingress: one target group and one TargetGroupBinding per
            # Service backend (docs/facts.md, Load Balancer Controller: registration and timing). Names follow
            # its k8s-<ns>-<svc>-<hash> scheme.
            name = lbc_name(ns, svc.name, f"{sc.cluster.name}/{ingress.name}")
            tg = self.alb.create_target_group(name, app.port, ingress.target_type(), ingress.health_check(),
                                              ingress.deregistration_delay())
            tg.registration = ingress.registration_seconds
            tgb = TargetGroupBinding(ns, name, tg.arn, ingress.target_type(), svc.name, sc.service.port)
            self.cluster.add_tgb(tgb)
            self.lbc.bind(tgb, tg, svc)
            self.traffic.tgs.append(tg)
            groups.append(tg)
        template = PodTemplate(
            containers=(ContainerSpec(app.container, app.image, app.pre_stop_sleep_seconds,
                                      app.readiness_probe is not None),),
            termination_grace_period_seconds=app.termination_grace_period_seconds,
            labels=dict(app.labels),
        )
        d = DepObj(ns, app.deployment, self.cluster.uid(), app.replicas, dict(app.labels), template, app.max_surge,
                   app.max_unavailable, app.min_ready_seconds, app.progress_deadline_seconds,
                   app.revision_history_limit)
        self.cluster.create_deployment(d, steady=True)
        for tg in groups:
            for pod in self.cluster.service_pods(svc):
                self.alb.add_healthy(tg, pod)
        if sc.namespace.inject_label == "after_pods":
            self.cluster.label_namespace(ns, INJECT_LABEL, "enabled")
        if sc.namespace.labelled_at_seconds is not None:
            at = max(self.clock.t, self.rel_to_abs(sc.namespace.labelled_at_seconds))
            self.loop.at(at, self._label_namespace)
        self.lbc.start()
        self.log("setup", f"{app.replicas} pods of {app.image} Ready and healthy in {', '.join(g.name for g in groups)}; "
                          f"{sc.traffic.rate_per_second:g} requests/s")

    def _label_namespace(self) -> None:
        ns = self.scenario.namespace.name
        self.cluster.label_namespace(ns, INJECT_LABEL, "enabled")
        self.log("namespace", f"namespace {ns} labelled {INJECT_LABEL}=enabled: pods created from now get the gate")

    # --- helpers for strategies -------------------------------------------------------------------------
    def deployment(self) -> DepObj:
        return self.cluster.deployment(self.scenario.namespace.name, self.scenario.app.deployment)

    def rollout_request(self) -> RolloutRequest:
        """The scenario's rollout as albgate's execution input."""
        sc = self.scenario
        return RolloutRequest(cluster=sc.cluster.name, namespace=sc.namespace.name, deployment=sc.app.deployment,
                              container=sc.rollout_container, image=sc.rollout.image, policy=sc.rollout.policy)

    def current_image(self) -> str:
        c = self.deployment().template.container(self.scenario.rollout_container)
        return c.image if c else ""

    def quiescent(self) -> bool:
        """The rollout's effects on traffic are over: no pod terminating, no target draining or `initial`,
        no target left behind by a gone pod, and every ContainersReady pod registered in every group."""
        if any(p.terminating and not p.exited for p in self.cluster.pods.values()):
            return False
        live = [p for b in self.lbc.bindings for p in self.cluster.service_pods(b.service)
                if p.containers_ready and p.ip]
        for tg in self.alb.tgs.values():
            for t in tg.targets.values():
                if t.state in (DRAINING, INITIAL) or t.pod.exited or t.pod.terminating:
                    return False
            if any(p.ip not in tg.targets for p in live):
                return False
        return True

    def lbc_gate_names(self) -> list[str]:
        return [LBC_GATE_PREFIX + b.tgb.name for b in self.lbc.bindings]
