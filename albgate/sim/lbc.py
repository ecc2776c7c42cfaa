"""The simulated AWS Load Balancer Controller: the pod mutating webhook and the TargetGroupBinding reconciler.

Job: inject readiness gates at pod creation, register and deregister pod IPs, and set the gates from target
health, with the timing of the controller version the scenario names (``controller.version``). Sources
(docs/facts.md, "Load Balancer Controller: readiness gate", "Load Balancer Controller: registration and
timing" and "Load Balancer Controller: requeue and back-off by version"): docs/deploy/pod_readiness_gate.md
(injection only at CREATE, only with the namespace label and an IP TargetGroupBinding whose Service selects
the pod), pkg/backend/endpoint_resolver.go (which endpoints become targets, which are "potentially ready"),
pkg/targetgroupbinding/resource_manager.go (register/deregister, gate True only when `healthy`, and which
outcome requeues after a fixed duration and which through the workqueue's rate limiter),
pkg/targetgroupbinding/targets_manager.go (the targets cache: ELB is asked only about targets not `healthy`,
and about the whole group every 5 minutes), the reconciler's
watches (Services, Endpoints or EndpointSlices, Nodes; gated pods from v3.4.0), controller-runtime's
reconcileHandler (an error or a plain requeue goes through the rate limiter, RequeueAfter and success
forget the item's failures), client-go's workqueue (a change that reaches an idle binding is a reconcile of its
own; one that comes while the binding is reconciled runs once after it) and its per-item exponential limiter
(5 ms x 2^failures, capped),
failurePolicy Ignore (after v2.11.0) or Fail, the pause after a leader change, EKS Auto Mode (no gate
injection at all, aws/containers-roadmap#2511), and pkg/aws/throttle (from v2.4.4 RegisterTargets/DeregisterTargets
wait for a client-side token, 4 a second with bursts of 20; each call also takes one of the account's own bucket,
``Alb.spend_mutating``).
Invariant: a pod's readiness gates are decided once, when it is created; a gate is set True only from a
DescribeTargetHealth answer that said `healthy`; while the controller is down nothing is registered,
deregistered or set; a binding is reconciled only when a watched object changed, its delayed requeue is due,
or the controller (re)starts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from lambdas.domain.bootstrap import CONTROLLER_VERSION
from lambdas.domain.errors import ThrottledError
from lambdas.domain.ports import (
    DRAINING,
    HEALTHY,
    INITIAL,
    INJECT_LABEL,
    LBC_GATE_PREFIX,
    Service,
    TargetGroupBinding,
    TargetHealth,
)
from lambdas.domain.rollout.checkpoint import endpoints_digest
from lambdas.domain.validators import version_numbers

if TYPE_CHECKING:
    from albgate.sim.alb import TargetGroupSim
    from albgate.sim.kube import PodObj
    from albgate.sim.simulation import Simulation

# client-go ItemExponentialFailureRateLimiter as the TargetGroupBinding reconciler builds it: base 5 ms; the cap
# is --targetgroupbinding-max-exponential-backoff-delay (1000 s), or DefaultControllerRateLimiter's 1000 s before
# the flag existed (docs/facts.md, Load Balancer Controller: requeue and back-off by version).
BACKOFF_BASE_SECONDS = 0.005
DEFAULT_MAX_BACKOFF_SECONDS = 1000.0
# The caller name the controller's Describe* calls are counted under in the simulated ELB API.
CONTROLLER = "controller"
# The requeue while a gate is pending: a constant until v3.2.0, the default of
# --targetgroupbinding-requeue-duration since.
DEFAULT_REQUEUE_SECONDS = 15.0
# The controller's cache of a target group's targets (pkg/targetgroupbinding/targets_manager.go, every modelled
# version): filled by one DescribeTargetHealth of the whole group and kept this long from then; in between, a
# reconcile asks ELB only about the cached targets that are not `healthy` (one call, none when all are), and a
# target it registers or deregisters itself is cached with no health until that call (docs/facts.md, "Load
# Balancer Controller: requeue and back-off by version", "The targets cache").
TARGETS_CACHE_TTL_SECONDS = 300.0
# What the controller writes on the gate of a pod whose endpoint it registers in the same reconcile, before ELB has
# answered for that target (v3.5.0 resource_manager.go, updateTargetHealthPodCondition; docs/facts.md, "Load Balancer
# Controller: the target-health pod condition").
REGISTERING_REASON = "Elb.RegistrationInProgress"
REGISTERING_MESSAGE = "Target registration is in progress"
# The controller albgate installs, and the oldest whose reconciler is modelled (the TargetGroupBinding
# reconciler came with v2.0.0).
INSTALLED_VERSION = CONTROLLER_VERSION
OLDEST_VERSION = (2, 0, 0)
# The client-side limit on RegisterTargets/DeregisterTargets, a default since v2.4.4: a call over it waits for its
# token (docs/facts.md, "Load Balancer Controller: registration and timing", client-side throttles).
MUTATING_CLIENT_RATE = 4.0
MUTATING_CLIENT_BURST = 20

Requeue = Literal["rate_limited", "after"]


@dataclass(frozen=True)
class ControllerRules:
    """What one controller version does when a binding has to be looked at again (docs/facts.md, "Load Balancer
    Controller: requeue and back-off by version"). Versions newer than the newest read get its rules."""

    version: tuple[int, int, int]
    # A pending gate whose target is past `initial` (e.g. `unhealthy`) while every endpoint is registered:
    # through the rate limiter up to v2.9.0, after the fixed duration since v2.9.1.
    pending_past_initial: Requeue
    # A gated pod in the endpoints that is not ContainersReady yet ("potentially ready"): through the rate
    # limiter up to v2.9.0, after the fixed duration from v2.9.1, not a reason to requeue from v3.4.0 (the
    # reconciler then watches gated pods themselves).
    potentially_ready: Requeue | None
    watches_pods: bool  # v3.4.0+: any change of a gated pod enqueues its binding
    skips_unchanged: bool  # v2.9.1+: a reconcile whose endpoints match the last successful one stops early
    requeue_flag: bool  # v3.2.0+: --targetgroupbinding-requeue-duration
    backoff_flag: bool  # v2.2.1+: --targetgroupbinding-max-exponential-backoff-delay
    registers_ungated_not_ready: bool  # v2.4.1+: a not-ready ContainersReady pod is a target without a gate too
    mutating_client_limit: bool  # v2.4.4+: RegisterTargets/DeregisterTargets wait for a client-side token
    default_failure_policy: Literal["Ignore", "Fail"]  # the pod webhook's: Fail up to v2.11.0


@lru_cache(maxsize=None)
def rules_for(version: str) -> ControllerRules:
    """The rules of a controller version such as ``v2.7.1``; ValueError below v2.0.0 or when not a version."""
    v = version_numbers(version)
    if v is None:
        raise ValueError(f"{version!r} is not a controller version; write MAJOR.MINOR.PATCH, e.g. 'v3.5.0'")
    if v < OLDEST_VERSION:
        raise ValueError(f"{version}: only v2.0.0 and later are modelled (the TargetGroupBinding reconciler "
                         "came with v2.0.0)")
    fixed = v >= (2, 9, 1)
    return ControllerRules(
        version=v,
        pending_past_initial="after" if fixed else "rate_limited",
        potentially_ready=None if v >= (3, 4, 0) else ("after" if fixed else "rate_limited"),
        watches_pods=v >= (3, 4, 0),
        skips_unchanged=fixed,
        requeue_flag=v >= (3, 2, 0),
        backoff_flag=v >= (2, 2, 1),
        registers_ungated_not_ready=v >= (2, 4, 1),
        mutating_client_limit=v >= (2, 4, 4),
        default_failure_policy="Ignore" if v > (2, 11, 0) else "Fail",
    )


@dataclass
class _TargetsCache:
    """One target group's entry in the controller's targets cache: when a full DescribeTargetHealth filled it, and
    each cached target's health (None: registered or deregistered by the controller since, not asked yet)."""

    filled_at: float
    targets: dict[str, "TargetHealth | None"]


class WaitLimiter:
    """golang.org/x/time/rate's Limiter as ``Wait`` uses it: ``rate`` tokens a second into a bucket of ``burst``;
    each call reserves one token at once, the bucket going negative for calls that must wait, and waits until its
    token's time. So calls over the rate are served in order, one every 1 / ``rate`` seconds, none refused."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), now

    def reserve(self, now: float) -> float:
        """Reserve one token at ``now``: the seconds to wait for it (0 when the bucket held one)."""
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class _Binding:
    def __init__(self, tgb: TargetGroupBinding, tg: "TargetGroupSim", service: Service) -> None:
        self.tgb, self.tg, self.service = tgb, tg, service
        # watch events on their way to the queue, by arrival time: each arrives by itself (one at the same instant
        # as another is the same entry); an arrival while the binding sits in the queue or is being reconciled
        # joins that entry (the workqueue's dirty set), so it costs no reconcile of its own
        self.arrivals: dict[float, Any] = {}
        self.waiting: Any = None  # the workqueue's delayed entry (AddAfter / AddRateLimited): the earliest one
        self.failures = 0  # the rate limiter's count for this binding; Forget sets it to 0
        self.reconciles = 0
        self.checkpoint: frozenset[str] | None = None  # endpoints of the last reconcile that needed nothing more
        # The annotation elbv2.k8s.aws/checkpoint (v2.9.1+): cleared before a reconcile's first mutating call, the
        # digest of its endpoints and spec once a reconcile completes. "" at the start, as after the controller's
        # deferred reconciler reset it (targetgroupbinding_deferred_reconciler.go), like ``checkpoint``
        self.annotation = ""
        self.seen: tuple[frozenset[Any], frozenset[Any]] | None = None  # what the watches last saw
        self.selected: tuple[Any, list["PodObj"]] = ((), [])  # (cache key, the Service's pods)
        # A reconcile waiting for the client-side token of its RegisterTargets/DeregisterTargets holds the binding
        # (the workqueue never hands one item to two workers); what comes for it meanwhile runs once it is done.
        self.busy = False
        self.dirty = False
        self.requests = 0  # the running reconcile's requests so far (ELB calls, pod condition patches)


def checkpoint_annotation(b: _Binding, pods: Iterable["PodObj"]) -> str:
    """What a completed reconcile writes in elbv2.k8s.aws/checkpoint (calculateTGBReconcileCheckpoint): the digest
    of its endpoints (IP, the group's port, the pod's creation time as the API keeps it), "/", a digest of the
    binding's spec (here of what the simulation's spec holds)."""
    endpoints = endpoints_digest((p.ip, b.tg.port, p.created_at) for p in pods if p.ip)
    spec = hashlib.sha256(f"{b.tgb.target_group_arn}|{b.tgb.service_name}|{b.tgb.service_port}".encode()).digest()
    return f"{endpoints}/{base64.urlsafe_b64encode(spec).decode().rstrip('=')}"


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
        self._seen_bindings = 0
        # (namespace, label key, value) -> bindings whose Service selector has that label (each binding under its
        # rarest selector label), so a changed pod is compared only with the bindings that may select it
        self._by_label: dict[tuple[str, str, str], list[_Binding]] = {}
        self._index_keys: set[str] = set()
        self._unindexed: list[_Binding] = []
        self._forced: set[str] = set()  # namespaces whose bindings are all looked at again (services_changed)
        self._forced_bindings: dict[int, _Binding] = {}  # bindings looked at again (a pod they selected relabelled)
        self.targets_cache: dict[str, _TargetsCache] = {}  # target group ARN -> its cached targets
        self.mutating_limiter = WaitLimiter(MUTATING_CLIENT_RATE, MUTATING_CLIENT_BURST, sim.clock.t)
        self.process = 0  # counts the controller's processes: a reconcile waiting for a token dies with its own
        # The informers: after every event, what the reconciler watches is compared with what it saw.
        sim.loop.observers.append(self._watch)

    @property
    def rules(self) -> ControllerRules:
        return rules_for(self.spec.version)

    @property
    def requeue_seconds(self) -> float:
        return self.spec.requeue_seconds if self.rules.requeue_flag else DEFAULT_REQUEUE_SECONDS

    @property
    def max_backoff_seconds(self) -> float:
        return self.spec.max_backoff_seconds if self.rules.backoff_flag else DEFAULT_MAX_BACKOFF_SECONDS

    # --- installation of what the controller creates for an Ingress ------------------------------------------
    def bind(self, tgb: TargetGroupBinding, tg: "TargetGroupSim", service: Service) -> None:
        self.bindings.append(_Binding(tgb, tg, service))
        self._reindex()

    def _reindex(self) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for b in self.bindings:
            for k, v in (b.service.selector or {}).items():
                counts[(b.service.namespace, k, v)] = counts.get((b.service.namespace, k, v), 0) + 1
        self._by_label, self._index_keys, self._unindexed = {}, set(), []
        for b in self.bindings:
            items = [(b.service.namespace, k, v) for k, v in (b.service.selector or {}).items()]
            if not items:
                self._unindexed.append(b)
                continue
            rarest = min(items, key=lambda item: counts[item])
            self._by_label.setdefault(rarest, []).append(b)
            self._index_keys.add(rarest[1])

    @property
    def writes_checkpoint(self) -> bool:
        """Whether the controller writes the reconcile checkpoint annotation: v2.9.1 and later. EKS Auto Mode's
        managed controller does not document it, so its world has none (albgate then proves drains other ways)."""
        return self.rules.skips_unchanged and not self.auto_mode

    def checkpoint_of(self, namespace: str, name: str) -> str:
        """The annotation elbv2.k8s.aws/checkpoint on a binding ("" when the controller never wrote it)."""
        return next((b.annotation for b in self.bindings
                     if b.tgb.namespace == namespace and b.tgb.name == name), "")

    def bindings_selecting(self, namespace: str, labels: dict[str, str]) -> list[_Binding]:
        """The bindings whose Service selects a pod with ``labels`` in ``namespace``, in binding order."""
        found = [b for b in self._unindexed if b.service.namespace == namespace]
        for k in self._index_keys:
            v = labels.get(k)
            if v is not None:
                found.extend(self._by_label.get((namespace, k, v), ()))
        sel = [b for b in found if all(labels.get(k) == v for k, v in (b.service.selector or {}).items())]
        if len(sel) > 1:
            order = {id(b): i for i, b in enumerate(self.bindings)}
            sel.sort(key=lambda b: order[id(b)])
        return sel

    def start(self) -> None:
        """Schedule the scenario's outages and slow periods (times relative to the rollout start)."""
        for b in self.bindings:
            b.seen = self._observed(b)  # the steady state: nothing to reconcile
        for w in self.sim.scenario.faults.controller_outages:
            self.loop.at(self.sim.rel_to_abs(w.at_seconds), self._go_down)
            if w.duration_seconds is not None:
                self.loop.at(self.sim.rel_to_abs(w.at_seconds + w.duration_seconds), self._come_back)

    def _go_down(self) -> None:
        self.up = False
        self.process += 1
        self.sim.log("controller", "Load Balancer Controller down (webhook unreachable, no reconciles)")

    def _come_back(self) -> None:
        self.sim.log("controller", f"Load Balancer Controller pods back; leader election "
                                   f"{self.spec.leader_election_seconds:g} s")
        self.loop.after(self.spec.leader_election_seconds, self._leading)

    def _leading(self) -> None:
        """A new leader: a new process, so a new workqueue (no delayed entries, no failures counted) and a full
        resync of every binding (the checkpoint lives in the binding's annotations and survives)."""
        self.up = True
        self.targets_cache.clear()  # a new process starts with an empty cache
        self.mutating_limiter = WaitLimiter(MUTATING_CLIENT_RATE, MUTATING_CLIENT_BURST, self.sim.clock.t)
        self.sim.log("controller", "Load Balancer Controller leading again: full resync")
        for b in self.bindings:
            if b.waiting is not None:
                b.waiting.cancel()
            b.waiting, b.failures = None, 0
            b.busy = b.dirty = False
            b.requests = 0
            self._enqueue(b, self.sim.clock.t)

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
        for b in self.bindings_selecting(namespace, labels):
            if b.tgb.namespace == namespace and b.tgb.target_type == "ip" and b.service.selector:
                gates.append(LBC_GATE_PREFIX + b.tgb.name)
        return tuple(gates)

    def admit(self, namespace: str, labels: dict[str, str]) -> tuple[bool, tuple[str, ...]]:
        """(created?, gates). The webhook is only called for namespaces with the label (its namespaceSelector)."""
        if self.auto_mode or self.sim.cluster.namespaces.get(namespace, {}).get(INJECT_LABEL) != "enabled":
            return True, ()
        if not self.up:
            return self.spec.webhook_failure_policy == "Ignore", ()
        return True, self.injected_gates(namespace, labels)

    # --- the watches ------------------------------------------------------------------------------------
    def endpoints_changed(self, namespace: str) -> None:
        """A pod of ``namespace`` changed now (kube calls this): look at the watched objects at once."""
        self._watch()

    def pod_relabelled(self, namespace: str, labels_before: dict[str, str]) -> None:
        """A pod's labels changed: the bindings whose Service selected it before are looked at again at the next
        watch (those that select it now are found from the pod itself, like any changed pod's)."""
        for b in self.bindings_selecting(namespace, labels_before):
            self._forced_bindings[id(b)] = b

    def services_changed(self, namespace: str) -> None:
        """A Service or binding of ``namespace`` was created or replaced: every binding there is looked at again."""
        self._reindex()
        self._forced.add(namespace)
        self._watch()

    def _observed(self, b: _Binding) -> tuple[frozenset[Any], frozenset[Any]]:
        """What the reconciler's watches show of a binding: its Service's endpoints (address, ready,
        terminating: an EndpointSlice changes with nothing else, so not when a pod held by a gate turns
        ContainersReady) and, from v3.4.0, the pods carrying its gate (IP, deletion, and every condition with its
        reason and message, another writer's gate included: the controller's pod cache keeps the pod's whole
        condition list and any difference enqueues the binding). EKS Auto Mode's managed controller is not this
        code and its watches are not published: it is assumed to see every change of every pod of the Service
        (docs/facts.md, Load Balancer Controller: requeue and back-off by version)."""
        pods = self._service_pods(b)
        endpoints = frozenset((p.ip, p.ready and not p.terminating, p.terminating)
                              for p in pods if p.ip and not p.exited)
        if not (self.rules.watches_pods or self.auto_mode):
            return endpoints, frozenset()
        gate = LBC_GATE_PREFIX + b.tgb.name
        watched = frozenset((p.name, p.ip or "", p.containers_ready, p.ready, p.terminating, p.unschedulable,
                             tuple(sorted(p.conditions.items())))
                            for p in pods if self.auto_mode or gate in p.readiness_gates)
        return endpoints, watched

    def _service_pods(self, b: _Binding) -> list["PodObj"]:
        """The pods b's Service selects. The selection changes when a pod is created (a new uid) or leaves the API,
        when the Service is replaced, or when a pod's labels change (only albgate's serving label does here)."""
        if b.selected[0] != b.service:  # a pod the Service selects came or went: _watch resets the key
            b.selected = (b.service, self.sim.cluster.service_pods(b.service))
        return b.selected[1]

    def _watch(self) -> None:
        # Every write to a pod notes it in the cluster's changed_pods (a pod that leaves the API too): when none
        # changed since the last look and no binding came, nothing the watches show changed (most events are health
        # checks). Only the bindings whose Service selects a changed pod are looked at again.
        cluster = self.sim.cluster
        changed = cluster.changed_pods
        if not changed and not self._forced and not self._forced_bindings and len(self.bindings) == self._seen_bindings:
            return
        cluster.changed_pods = set()
        forced, self._forced_bindings = self._forced_bindings, {}
        if len(self.bindings) != self._seen_bindings:
            self._seen_bindings = len(self.bindings)
            self._forced.clear()
            affected = list(self.bindings)
        else:
            hit: dict[int, _Binding] = {id(b): b for b in self.bindings if b.tgb.namespace in self._forced}
            hit.update(forced)
            self._forced.clear()
            for pod in changed:
                for b in self.bindings_selecting(pod.namespace, pod.labels):
                    hit[id(b)] = b
            order = {id(b): i for i, b in enumerate(self.bindings)}
            affected = sorted(hit.values(), key=lambda b: order[id(b)])
        for b in affected:
            b.selected = ((), [])  # membership may have changed: select again
            seen = self._observed(b)
            if seen != b.seen:
                b.seen = seen
                if self.up:
                    self._enqueue(b, self.sim.clock.t + self.latency())

    # --- the workqueue --------------------------------------------------------------------------------
    def _enqueue(self, b: _Binding, at: float) -> None:
        """The binding is added to the queue at ``at`` (a watch event, after the propagation latency)."""
        if at not in b.arrivals:
            b.arrivals[at] = self.loop.at(at, self._arrive, b, at)

    def _arrive(self, b: _Binding, at: float) -> None:
        del b.arrivals[at]
        self._take(b, "event")

    def _add_after(self, b: _Binding, delay: float) -> None:
        """workqueue AddAfter: a delayed entry; an entry already waiting keeps the earlier of the two times."""
        at = self.sim.clock.t + delay
        if b.waiting is not None and b.waiting.alive:
            if b.waiting.time <= at:
                return
            b.waiting.cancel()
        b.waiting = self.loop.at(at, self._take, b, "waiting")

    def _list_targets(self, b: _Binding) -> dict[str, TargetHealth | None]:
        """The binding's target group's targets as the controller's cache gives them (cachedTargetsManager
        .ListTargets): a full DescribeTargetHealth when the group is not cached or its entry is older than
        TARGETS_CACHE_TTL_SECONDS; else one call about the cached targets that are not `healthy` (a healthy one is
        not asked again: the controller can do nothing about it), none when every one is, a target ELB no longer
        lists dropped. Raises ThrottledError (nothing cached changes then)."""
        sim, arn, now = self.sim, b.tg.arn, self.sim.clock.t
        cache = self.targets_cache.get(arn)
        if cache is None or now >= cache.filled_at + TARGETS_CACHE_TTL_SECONDS:
            b.requests += 1
            health = sim.alb.describe_target_health(arn, caller=CONTROLLER)
            cache = self.targets_cache[arn] = _TargetsCache(now, {h.target_id: h for h in health})
            return dict(cache.targets)
        asked = [ip for ip, h in cache.targets.items() if h is None or h.state != HEALTHY]
        if asked:
            # DescribeTargetHealth with Targets: only those, one call; a target not registered any more answers
            # unused / Target.NotRegistered and leaves the cache (refreshUnhealthyTargets)
            b.requests += 1
            answer = {h.target_id: h for h in sim.alb.describe_target_health(arn, caller=CONTROLLER)}
            for ip in asked:
                if ip in answer:
                    cache.targets[ip] = answer[ip]
                else:
                    del cache.targets[ip]
        return dict(cache.targets)

    def _rate_limited(self, b: _Binding) -> float:
        """AddRateLimited: delay = min(5 ms x 2^failures, cap), then one more failure counted."""
        delay = min(BACKOFF_BASE_SECONDS * 2 ** b.failures, self.max_backoff_seconds)
        b.failures += 1
        self._add_after(b, delay)
        return delay

    def _requeue_after(self, b: _Binding, seconds: float) -> None:
        """RequeueAfter: Forget (the failures are reset), then AddAfter."""
        b.failures = 0
        self._add_after(b, seconds)

    def _take(self, b: _Binding, which: str) -> None:
        if which == "waiting":
            b.waiting = None
        if b.busy:
            b.dirty = True  # processed again once the running reconcile is done
        elif self.up:
            self._reconcile(b)
        # down: nothing runs; the new leader's full resync picks the binding up

    # --- the TargetGroupBinding reconciler --------------------------------------------------------------
    def _reconcile(self, b: _Binding) -> None:
        sim, rules = self.sim, self.rules
        gate = LBC_GATE_PREFIX + b.tgb.name
        # endpoint_resolver.go: ready endpoints, plus not-ready ones whose pod is ContainersReady (only gated pods
        # before v2.4.1); a gated pod not ContainersReady yet is "potentially ready". Terminating ones are out.
        desired: dict[str, "PodObj"] = {}
        potentially_ready = False
        for p in self._service_pods(b):
            if not p.ip or p.terminating or p.exited:
                continue
            if p.ready:
                desired[p.ip] = p
            elif gate in p.readiness_gates or rules.registers_ungated_not_ready:
                if p.containers_ready:
                    desired[p.ip] = p
                elif gate in p.readiness_gates:
                    potentially_ready = True
        if rules.skips_unchanged and b.checkpoint == frozenset(desired) and not (
                (potentially_ready and rules.potentially_ready is not None)
                or any(gate in p.readiness_gates and p.conditions.get(gate, ("True",))[0] != "True"
                       for p in desired.values())):
            b.failures = 0  # the same endpoints as the last complete reconcile: nothing to do
            return
        b.reconciles += 1
        try:
            listed = self._list_targets(b)
        except ThrottledError:
            failures = b.failures + 1
            delay = self._rate_limited(b)
            if failures in (1, 5, 10) or delay >= self.max_backoff_seconds:
                sim.log("controller", f"{b.tgb.name}: DescribeTargetHealth throttled, retry in {delay:.3g} s")
            self._done(b)
            return
        # a cached target with no health yet is not draining (TargetInfo.IsDraining)
        current = {ip: h for ip, h in listed.items() if h is None or h.state != DRAINING}
        unmatched = [ip for ip in desired if ip not in current]
        gone = [ip for ip in current if ip not in desired]
        calls = [(api, fn) for api, todo, fn in (
            ("DeregisterTargets", gone, lambda: self._deregister(b, gone)),
            ("RegisterTargets", unmatched, lambda: self._register(b, unmatched, desired))) if todo]
        # updateTGBCheckPoint(ctx, tgb, "", oldCheckPoint) before any change, and while a gated target still needs a
        # look (preflightNeedFurtherProbe) or, before v3.4.0, a pod is potentially ready
        probe = any(gate in p.readiness_gates and (current[ip] is None or current[ip].state != HEALTHY)
                    for ip, p in desired.items() if ip in current)
        if self.writes_checkpoint and (calls or probe or (potentially_ready and rules.potentially_ready is not None)):
            b.annotation = ""
        self._mutate(b, calls, lambda: self._finish(b, desired, current, unmatched, gone, potentially_ready))

    def _deregister(self, b: _Binding, gone: list[str]) -> None:
        cache = self.targets_cache.get(b.tg.arn)
        for ip in gone:
            self.sim.alb.deregister(b.tg, ip)
            if cache is not None and ip in cache.targets:
                cache.targets[ip] = None  # recordSuccessfulDeregisterTargetsOperation

    def _register(self, b: _Binding, unmatched: list[str], desired: dict[str, "PodObj"]) -> None:
        cache = self.targets_cache.get(b.tg.arn)
        for ip in unmatched:
            pod = desired[ip]
            if pod.exited:
                continue  # its reconcile waited for the token while the pod went: ELB would fail its checks
            self.sim.alb.register(b.tg, pod)
            if cache is not None:
                cache.targets[ip] = None  # recordSuccessfulRegisterTargetsOperation

    def _mutate(self, b: _Binding, calls: list[tuple[str, Any]], finish: Any, reserved: bool = False) -> None:
        """The reconcile's RegisterTargets/DeregisterTargets calls in order, then ``finish``. From v2.4.4 each
        first waits for its client-side token (``WaitLimiter``): the reconcile holds the binding meanwhile and
        goes on at the token's time. A call the account's mutating bucket throttles ends the reconcile through
        the rate limiter, as a throttled DescribeTargetHealth does (the SDK's own retries are not modelled
        for either), with the calls before it done."""
        sim = self.sim
        for i, (api, effect) in enumerate(calls):
            if not reserved and self.rules.mutating_client_limit:
                wait = self.mutating_limiter.reserve(sim.clock.t)
                if wait > 0:
                    b.busy = True
                    self.loop.after(wait, self._resume, b, calls[i:], finish, self.process)
                    return
            reserved = False
            b.requests += 1
            try:
                sim.alb.spend_mutating(CONTROLLER, api)
            except ThrottledError:
                failures = b.failures + 1
                delay = self._rate_limited(b)
                if failures in (1, 5, 10) or delay >= self.max_backoff_seconds:
                    sim.log("controller", f"{b.tgb.name}: {api} throttled, retry in {delay:.3g} s")
                self._done(b)
                return
            effect()
        finish()
        self._done(b)

    def _resume(self, b: _Binding, calls: list[tuple[str, Any]], finish: Any, process: int) -> None:
        """A reconcile's token came: go on, unless the controller went down meanwhile (its process is gone; the new
        leader resyncs every binding)."""
        if process != self.process:
            return
        self._mutate(b, calls, finish, reserved=True)

    def _done(self, b: _Binding) -> None:
        """The reconcile's work is done: the binding stays held for the time its requests took (their effects were
        applied as they were made), then a change kept for it meanwhile runs."""
        held, b.requests = b.requests * self.spec.request_seconds, 0
        if held > 0:
            b.busy = True
            self.loop.after(held, self._release, b, self.process)
            return
        self._release(b, self.process)

    def _release(self, b: _Binding, process: int) -> None:
        if process != self.process:
            return  # the controller restarted meanwhile: the new leader's workqueue starts empty
        b.busy = False
        if b.dirty:
            b.dirty = False
            self._enqueue(b, self.sim.clock.t)

    def _finish(self, b: _Binding, desired: dict[str, "PodObj"], current: dict[str, TargetHealth | None],
                unmatched: list[str], gone: list[str], potentially_ready: bool) -> None:
        """The rest of a reconcile once its RegisterTargets/DeregisterTargets calls went through: the gates are
        written and the binding is requeued as the outcome says."""
        sim, rules = self.sim, self.rules
        gate = LBC_GATE_PREFIX + b.tgb.name
        pending = False
        for ip, pod in desired.items():
            if gate not in pod.readiness_gates:
                continue
            h = current.get(ip)
            healthy = h is not None and h.state == HEALTHY
            status = "True" if healthy else "False"
            # written whenever its status, reason or message changes (updateTargetHealthPodConditionForPod): the
            # ELB reason code and description of the target, or for a pod the controller registers in this very
            # reconcile, what the controller writes for every unmatched endpoint
            reason, message = (h.reason, h.description) if h else (REGISTERING_REASON, REGISTERING_MESSAGE)
            if pod.conditions.get(gate) != (status, reason, message):
                self.gate_updates += 1
                b.requests += 1
                sim.cluster.set_pod_condition(pod.namespace, pod.name, gate, status, reason, message)
            pending |= not healthy
        b.checkpoint = None if unmatched or gone else b.checkpoint
        # resource_manager.go: which outcome comes back through which path of the workqueue
        if pending:
            initial = bool(unmatched) or any(current[ip].state == INITIAL for ip in desired if ip in current)
            if initial or rules.pending_past_initial == "after":
                self._requeue_after(b, self.requeue_seconds)
            else:
                self._rate_limited(b)
        elif potentially_ready and rules.potentially_ready == "after":
            self._requeue_after(b, self.requeue_seconds)
        elif potentially_ready and rules.potentially_ready == "rate_limited":
            self._rate_limited(b)
        else:
            b.failures = 0  # success: Forget
            b.checkpoint = frozenset(desired)
            if self.writes_checkpoint:
                b.annotation = checkpoint_annotation(b, desired.values())
