"""The simulated AWS Load Balancer Controller: the pod mutating webhook and the TargetGroupBinding reconciler.

Job: inject readiness gates at pod creation, register and deregister pod IPs, and set the gates from target
health, with the controller's timing. Sources (docs/facts.md, "Load Balancer Controller: readiness gate" and
"Load Balancer Controller: registration and timing"): docs/deploy/pod_readiness_gate.md (injection only at
CREATE, only with the namespace label and an IP TargetGroupBinding whose Service selects the pod),
pkg/backend/endpoint_resolver.go (ready, or ContainersReady and not terminating, endpoints are targets),
pkg/targetgroupbinding/resource_manager.go (register/deregister, gate True only when `healthy`), the 15 s
requeue while a gate is pending, exponential back-off on errors up to 16m40s, failurePolicy Ignore (after
v2.11.0) or Fail, the pause after a leader change, and EKS Auto Mode (no gate injection at all,
aws/containers-roadmap#2511).
Invariant: a pod's readiness gates are decided once, when it is created; a gate is set True only from a
DescribeTargetHealth answer that said `healthy`; while the controller is down nothing is registered,
deregistered or set.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from lambdas.domain.errors import ThrottledError
from lambdas.domain.ports import DRAINING, HEALTHY, INJECT_LABEL, LBC_GATE_PREFIX, Service, TargetGroupBinding

if TYPE_CHECKING:
    from albgate.sim.alb import TargetGroupSim
    from albgate.sim.simulation import Simulation

_BACKOFF_START = 0.005  # controller-runtime ItemExponentialFailureRateLimiter base delay


class _Binding:
    def __init__(self, tgb: TargetGroupBinding, tg: "TargetGroupSim", service: Service) -> None:
        self.tgb, self.tg, self.service = tgb, tg, service
        self.event: Any = None
        self.failures = 0
        self.reconciles = 0


def lbc_name(namespace: str, service: str, salt: str) -> str:
    """k8s-<namespace 8>-<service 8>-<hash 10>, the controller's target group / binding naming."""
    h = hashlib.sha256(f"{namespace}/{service}/{salt}".encode()).hexdigest()[:10]
    clean = lambda s: "".join(ch for ch in s if ch.isalnum())[:8]  # noqa: E731
    return f"k8s-{clean(namespace)}-{clean(service)}-{h}"


class LoadBalancerController:
    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.loop = sim.loop
        self.spec = sim.scenario.controller
        self.auto_mode = sim.scenario.cluster.auto_mode
        self.up = True
        self.bindings: list[_Binding] = []
        self.gate_updates = 0

    # --- installation of what the controller creates for an Ingress ------------------------------------------
    def bind(self, tgb: TargetGroupBinding, tg: "TargetGroupSim", service: Service) -> None:
        self.bindings.append(_Binding(tgb, tg, service))

    def start(self) -> None:
        """Schedule the scenario's outages and slow periods (times relative to the rollout start)."""
        for w in self.sim.scenario.faults.controller_outages:
            self.loop.at(self.sim.rel_to_abs(w.at_seconds), self._go_down)
            if w.duration_seconds is not None:
                self.loop.at(self.sim.rel_to_abs(w.at_seconds + w.duration_seconds), self._come_back)

    def _go_down(self) -> None:
        self.up = False
        self.sim.log("controller", "Load Balancer Controller down (webhook unreachable, no reconciles)")

    def _come_back(self) -> None:
        self.sim.log("controller", f"Load Balancer Controller pods back; leader election "
                                   f"{self.spec.leader_election_seconds:g} s")
        self.loop.after(self.spec.leader_election_seconds, self._leading)

    def _leading(self) -> None:
        self.up = True
        self.sim.log("controller", "Load Balancer Controller leading again: full resync")
        for b in self.bindings:
            self._schedule(b, self.sim.clock.t)

    def latency(self) -> float:
        rel = self.sim.clock.t - self.sim.rollout_start
        for w in self.sim.scenario.faults.controller_slowdowns:
            if w.contains(rel):
                return w.reconcile_latency_seconds
        return self.spec.reconcile_latency_seconds

    # --- the webhook (mutating pods on CREATE) --------------------------------------------------------
    def injected_gates(self, namespace: str, labels: dict[str, str]) -> tuple[str, ...]:
        """Gates the webhook adds to a pod with these labels created now (when it is reachable)."""
        if self.auto_mode or self.sim.cluster.namespaces.get(namespace, {}).get(INJECT_LABEL) != "enabled":
            return ()
        gates = []
        for b in self.bindings:
            sel = b.service.selector
            if (b.tgb.namespace == namespace and b.tgb.target_type == "ip" and sel
                    and all(labels.get(k) == v for k, v in sel.items())):
                gates.append(LBC_GATE_PREFIX + b.tgb.name)
        return tuple(gates)

    def admit(self, namespace: str, labels: dict[str, str]) -> tuple[bool, tuple[str, ...]]:
        """(created?, gates). The webhook is only called for namespaces with the label (its namespaceSelector)."""
        if self.auto_mode or self.sim.cluster.namespaces.get(namespace, {}).get(INJECT_LABEL) != "enabled":
            return True, ()
        if not self.up:
            return self.spec.webhook_failure_policy == "Ignore", ()
        return True, self.injected_gates(namespace, labels)

    # --- the TargetGroupBinding reconciler --------------------------------------------------------------
    def endpoints_changed(self, namespace: str) -> None:
        at = self.sim.clock.t + self.latency()
        for b in self.bindings:
            if b.tgb.namespace == namespace:
                self._schedule(b, at)

    def _schedule(self, b: _Binding, at: float) -> None:
        if b.event is not None and b.event.alive:
            if b.event.time <= at:
                return
            b.event.cancel()
        b.event = self.loop.at(at, self._reconcile, b)

    def _reconcile(self, b: _Binding) -> None:
        b.event = None
        if not self.up:
            return  # the full resync on recovery picks this up
        sim, now = self.sim, self.sim.clock.t
        b.reconciles += 1
        try:
            health = sim.alb.describe_target_health(b.tg.arn, caller="controller")
        except ThrottledError:
            b.failures += 1
            delay = min(_BACKOFF_START * 2 ** b.failures, self.spec.max_backoff_seconds)
            if b.failures in (1, 5, 10) or delay >= self.spec.max_backoff_seconds:
                sim.log("controller", f"{b.tgb.name}: DescribeTargetHealth throttled, retry in {delay:.3g} s")
            self._schedule(b, now + delay)
            return
        b.failures = 0
        desired = {p.ip: p for p in sim.cluster.service_pods(b.service)
                   if p.ip and not p.terminating and not p.exited and (p.ready or p.containers_ready)}
        current = {h.target_id: h for h in health if h.state != DRAINING}
        for ip, pod in desired.items():
            if ip not in current:
                sim.alb.register(b.tg, pod)
        for ip in current:
            if ip not in desired:
                sim.alb.deregister(b.tg, ip)
        gate = LBC_GATE_PREFIX + b.tgb.name
        pending = False
        for ip, pod in desired.items():
            if gate not in pod.readiness_gates:
                continue
            h = current.get(ip)
            healthy = h is not None and h.state == HEALTHY
            status = "True" if healthy else "False"
            if pod.conditions.get(gate, ("",))[0] != status:
                self.gate_updates += 1
                reason = "" if healthy else (h.reason if h else "Elb.RegistrationInProgress")
                sim.cluster.set_pod_condition(pod.namespace, pod.name, gate, status, reason,
                                              f"Target health state: {h.state if h else 'initial'}")
            pending |= not healthy
        if pending:
            self._schedule(b, now + self.spec.requeue_seconds)
