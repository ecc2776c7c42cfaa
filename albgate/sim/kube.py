"""The simulated Kubernetes control plane and kubelet: namespaces, Services, Ingresses, TargetGroupBindings,
Deployments, ReplicaSets and Pods.

Job: reproduce the rules that decide when pods appear, become Ready and go away during a rolling update.
Sources (docs/facts.md, "Kubernetes Deployment controller" and "Pod readiness and termination"):
kubernetes/kubernetes pkg/controller/deployment (rolling.go reconcileNewReplicaSet / reconcileOldReplicaSets /
cleanupUnhealthyReplicas / scaleDownOldReplicaSetsForRollingUpdate, util/deployment_util.go ResolveFenceposts,
NewRSNewReplicas, DeploymentProgressing, DeploymentTimedOut), pkg/controller/replicaset (getPodsToDelete ranking),
pkg/kubelet/status/generate.go (Ready = ContainersReady and every readiness gate True), kubectl
polymorphichelpers/rollback.go (undo), and the pod termination sequence (preStop inside the grace period,
SIGTERM, SIGKILL, one-off 2 s extension).
Writes are as strict as the API server's (docs/facts.md, "Kubelet and controllers: Ready after a gate, status
writes"): every status write (the kubelet's pod status, the Deployment controller's status, observedGeneration
and revision annotation) moves the object's resourceVersion; a write that changes nothing moves neither it nor
the generation; a conditional write loses to the Deployment controller's sync queued at that instant (its
reaction to a write takes milliseconds, less than albgate's next request). The kubelet turns a pod Ready on its
pod sync after a readiness gate changes, a seeded draw within the documented bound, not at once.
Known gaps against a real cluster, with their risk:
- The controller always wins the race with a conditional write at the instant it has a sync queued; on a cluster
  it sometimes loses. Risk: the simulation meets more 409s than a cluster, never fewer from this cause; timings of
  retried steps are pessimistic. Writers other than the Deployment controller (an autoscaler, kubectl, GitOps)
  get in between only through the scenario's injected faults.
- An undo copies the template only; kubectl also replaces the Deployment's annotations with the ReplicaSet's copy
  (``lambdas.adapters.kubernetes.undo_patch``), ReplicaSets carry no annotations here. Risk: after an undo a real
  Deployment shows an older ``albgate.io/rollout`` hold until albgate writes it again; here it keeps albgate's.
- Pods' resourceVersions move but no port method shows or checks them (albgate's pod status patches carry no
  precondition); the Load Balancer Controller's own pod status conflicts and retries are not modelled.
- The kubelet: a ContainersReady change regenerates Ready at once from the gate conditions as they are now (the
  kubelet uses the copy of its last sync); a busy pod worker, the Evented PLEG and the status write's latency are
  not modelled. Risk: Ready may lead a real cluster's by up to the draw when a gate and ContainersReady change
  within the same 2 s.
Invariant: a Deployment controller sync never scales old ReplicaSets down while the available pods are at
or below replicas - maxUnavailable, and never lets the sum of spec.replicas exceed replicas + maxSurge.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lambdas.domain.errors import ConflictError, InvalidInputError, NotFoundError
from lambdas.domain.validators import percent
from lambdas.domain.ports import (
    IN_SERVICE,
    OUT_OF_SERVICE,
    OUT_OF_SERVICE_DELETION_COST,
    REVISION_ANNOTATION,
    SERVING_LABEL,
    Container,
    Deployment,
    DeploymentCondition,
    DeploymentPatch,
    Ingress,
    IngressBackend,
    Namespace,
    Pod,
    PodCondition,
    PodTemplate,
    ReplicaSet,
    Service,
    ServicePort,
    TargetGroupBinding,
)

if TYPE_CHECKING:
    from albgate.sim.scenario import Scenario
    from albgate.sim.simulation import Simulation

POD_TEMPLATE_HASH = "pod-template-hash"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString
# CrashLoopBackOff: 10 s doubling to 5 min (kubelet, pkg/kubelet/kuberuntime backOff).
_CRASH_BACKOFF_START, _CRASH_BACKOFF_MAX = 10.0, 300.0
# Workqueue default item backoff: 5 ms doubling to 1000 s (client-go DefaultControllerRateLimiter).
_QUEUE_BACKOFF_START, _QUEUE_BACKOFF_MAX = 0.005, 1000.0
# What the API server answers a pod create while the controller's pod webhook (failurePolicy Fail) is unreachable,
# as users report it (docs/facts.md, "Kubernetes Deployment controller", ReplicaFailure): the ReplicaSet's
# ReplicaFailure message.
WEBHOOK_CREATE_ERROR = ('Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": Post '
                        '"https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-v1-pod?timeout=10s": '
                        'no endpoints available for service "aws-load-balancer-webhook-service"')
# After a readiness gate condition changes, the kubelet's pod worker syncs the pod once its runtime cache is newer
# than its last sync: "max 2s" (docs/facts.md, "Kubelet and controllers: Ready after a gate, status writes").
KUBELET_READY_SYNC_MAX_SECONDS = 2.0


def resolve_fenceposts(max_surge: int | str, max_unavailable: int | str, replicas: int) -> tuple[int, int]:
    """maxSurge rounds up, maxUnavailable rounds down, both 0 -> maxUnavailable 1 (docs/facts.md, Kubernetes
    Deployment controller: ResolveFenceposts)."""

    def resolve(v: int | str, up: bool) -> int:
        if isinstance(v, int):
            return v
        exact = replicas * int(v.rstrip("%")) / 100
        return math.ceil(exact) if up else math.floor(exact)

    surge, unavailable = resolve(max_surge, True), resolve(max_unavailable, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def template_hash(t: PodTemplate) -> str:
    canon = repr((t.containers, t.readiness_gates, t.termination_grace_period_seconds, sorted(t.labels.items()),
                  sorted(t.annotations.items())))
    digest = hashlib.sha256(canon.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:10])


# ---------------------------------------------------------------------------------------------------------
# Objects (mutable, internal; the ports hand out frozen snapshots from lambdas.domain.ports)
# ---------------------------------------------------------------------------------------------------------
class PodObj:
    __slots__ = (
        "namespace", "name", "uid", "labels", "template", "rs", "ip", "created_at", "readiness_gates",
        "conditions", "condition_times", "containers_ready_at", "phase", "containers_ready", "ready", "ready_since",
        "listening", "broken", "crashes",
        "terminating", "deletion_at", "sigtermed", "exited", "inflight", "restart_count", "waiting_reason",
        "probe_ok", "probe_fail", "timers", "kill_at", "rv", "version", "sigterm_at", "exited_at", "unschedulable",
        "alb_check_fails", "ready_sync", "error_rate", "latency_factor", "deletion_cost",
    )

    def __init__(self, namespace: str, name: str, uid: str, labels: dict[str, str], template: PodTemplate,
                 rs: "RSObj | None", created_at: float, gates: tuple[str, ...]) -> None:
        self.namespace, self.name, self.uid, self.labels = namespace, name, uid, labels
        self.template, self.rs, self.created_at = template, rs, created_at
        self.ip: str | None = None
        self.readiness_gates = gates
        self.conditions: dict[str, tuple[str, str, str]] = {}
        self.containers_ready_at: float | None = None  # ContainersReady's lastTransitionTime
        # readiness gate -> its lastTransitionTime (when the status last changed, or the condition appeared)
        self.condition_times: dict[str, float] = {}
        self.phase = "Pending"
        self.containers_ready = self.ready = False
        self.ready_since: float | None = None
        self.listening = self.broken = self.crashes = self.alb_check_fails = False
        self.terminating = self.sigtermed = self.exited = False
        self.deletion_at: float | None = None
        self.inflight: list[tuple[float, Any]] = []  # (end time, ALB target) of requests being served
        self.restart_count = 0
        self.waiting_reason = "ContainerCreating"
        self.probe_ok = self.probe_fail = 0
        self.timers: list[Any] = []
        self.kill_at: float | None = None
        self.sigterm_at: float | None = None
        self.exited_at: float | None = None
        self.rv = 0
        self.version = ""
        self.unschedulable = False  # the scheduler found no node for it (faults.pods_pending)
        self.ready_sync: Any = None  # the kubelet's pending pod sync after a gate changed (Ready recomputed)
        self.error_rate = 0.0  # the share of the requests it answers that it answers 5xx (traffic.error_rate)
        self.latency_factor = 1.0  # its requests take this many times their drawn duration
        self.deletion_cost = 0  # the annotation controller.kubernetes.io/pod-deletion-cost (absent: 0)

    @property
    def serving(self) -> bool:
        """Accepts new connections: app listening, no SIGTERM yet, process alive."""
        return self.listening and not self.sigtermed and not self.exited

    def available(self, now: float, min_ready: int) -> bool:
        return self.ready and not self.terminating and self.ready_since is not None and now >= self.ready_since + min_ready

    def snapshot(self) -> Pod:
        if self.unschedulable:
            conds = [PodCondition("PodScheduled", "False", "Unschedulable")]  # core/v1 PodReasonUnschedulable
        else:
            conds = [PodCondition("PodScheduled", "True" if self.ip else "False")]
        ready_at = None if self.containers_ready_at is None else float(math.floor(self.containers_ready_at))
        conds.append(PodCondition("ContainersReady", "True" if self.containers_ready else "False",
                                  "" if self.containers_ready else "ContainersNotReady", "", ready_at))
        if self.ready:
            conds.append(PodCondition("Ready", "True"))
        else:
            reason = "ReadinessGatesNotReady" if self.containers_ready else "ContainersNotReady"
            conds.append(PodCondition("Ready", "False", reason))
        for t, (status, reason, message) in self.conditions.items():
            # the API keeps whole seconds (metav1.Time is serialized as RFC 3339 without fractions)
            when = self.condition_times.get(t)
            conds.append(PodCondition(t, status, reason, message, None if when is None else float(math.floor(when))))
        return Pod(
            namespace=self.namespace, name=self.name, uid=self.uid, ip=self.ip, labels=dict(self.labels),
            phase=self.phase, readiness_gates=self.readiness_gates, conditions=tuple(conds),
            terminating=self.terminating, restart_count=self.restart_count, created_at=self.created_at,
            owner_replica_set=self.rs.name if self.rs else None,
            # an unscheduled pod has no containerStatuses yet (no kubelet owns it), so no waiting reason
            waiting_reason=(self.waiting_reason if (self.phase == "Pending" and not self.unschedulable)
                            or self.crashes else ""),
        )


class RSObj:
    def __init__(self, dep: "DepObj", template: PodTemplate, revision: int, created_at: float, phash: str) -> None:
        self.dep, self.template, self.revision, self.created_at = dep, template, revision, created_at
        self.pod_template_hash = phash
        self.name = f"{dep.name}-{phash}"
        self.revision_history: list[int] = []  # deployment.kubernetes.io/revision-history: numbers it had before
        self.spec = 0
        self.pods: list[PodObj] = []
        self.create_failures = 0
        # ReplicaFailure=True (reason, message) while creating its pods fails (replicaset calculateStatus)
        self.failure: tuple[str, str] | None = None
        self.sync_event: Any = None
        self.retry_event: Any = None

    def active(self) -> list[PodObj]:
        return [p for p in self.pods if not p.terminating and not p.exited]

    def counts(self, now: float, min_ready: int) -> tuple[int, int, int]:
        act = self.active()
        return (len(act), sum(p.ready for p in act), sum(p.available(now, min_ready) for p in act))

    def snapshot(self, now: float) -> ReplicaSet:
        n, ready, avail = self.counts(now, self.dep.min_ready_seconds)
        return ReplicaSet(
            namespace=self.dep.namespace, name=self.name, revision=self.revision,
            pod_template_hash=self.pod_template_hash, replicas=self.spec, ready_replicas=ready,
            available_replicas=avail, template=self.template, created_at=self.created_at,
        )


class DepObj:
    def __init__(self, namespace: str, name: str, uid: str, replicas: int, selector: dict[str, str],
                 template: PodTemplate, max_surge: int | str, max_unavailable: int | str, min_ready_seconds: int,
                 progress_deadline_seconds: int, revision_history_limit: int) -> None:
        self.namespace, self.name, self.uid = namespace, name, uid
        self.replicas, self.selector, self.template = replicas, selector, template
        self.max_surge, self.max_unavailable = max_surge, max_unavailable
        self.min_ready_seconds, self.progress_deadline_seconds = min_ready_seconds, progress_deadline_seconds
        self.revision_history_limit = revision_history_limit
        self.paused = False
        self.generation = self.observed_generation = 1
        self.annotations: dict[str, str] = {}
        self.rss: list[RSObj] = []
        self.status = (0, 0, 0, 0, 0)  # replicas, updated, ready, available, old replicas
        self.conditions: dict[str, tuple[str, str, str, float]] = {}  # type -> (status, reason, msg, lastUpdate)
        self.rv = 0
        self.sync_event: Any = None
        self.deadline_event: Any = None

    @property
    def revision(self) -> int:
        return int(self.annotations.get(REVISION_ANNOTATION, "0"))

    def snapshot(self) -> Deployment:
        replicas, updated, ready, available, _ = self.status
        return Deployment(
            namespace=self.namespace, name=self.name, uid=self.uid, replicas=self.replicas,
            selector=dict(self.selector), template=self.template, max_surge=self.max_surge,
            max_unavailable=self.max_unavailable, min_ready_seconds=self.min_ready_seconds,
            progress_deadline_seconds=self.progress_deadline_seconds, paused=self.paused, revision=self.revision,
            generation=self.generation, observed_generation=self.observed_generation, updated_replicas=updated,
            ready_replicas=ready, available_replicas=available,
            conditions=tuple(DeploymentCondition(t, s, r, m, at) for t, (s, r, m, at) in sorted(self.conditions.items())),
            annotations=dict(self.annotations), resource_version=str(self.rv),
        )


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------------------------
class Cluster:
    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.loop = sim.loop
        self.rng = sim.rng("pods")
        self.kubelet_rng = sim.rng("kubelet")  # its own stream: the kubelet's delays leave the pods' draws alone
        # A fleet's copies each draw from their own streams (Simulation.stream_for), so a copy alone in a world
        # gets the pod names and start times it gets in the fleet; the first copy's are these two.
        self._rngs: dict[str, Any] = {"pods": self.rng, "kubelet": self.kubelet_rng}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.ingresses: dict[tuple[str, str], Ingress] = {}
        self.tgbs: dict[tuple[str, str], TargetGroupBinding] = {}
        self.deployments: dict[tuple[str, str], DepObj] = {}
        self.pods: dict[tuple[str, str], PodObj] = {}  # present in the API (until the containers stopped)
        # (namespace, label key, label value) -> the pods in the API with that label, in creation order: a
        # selector's pods are found from its rarest label instead of by reading every pod (a fleet has thousands)
        self._by_label: dict[tuple[str, str, str], dict[tuple[str, str], PodObj]] = {}
        # pods that changed (status, conditions, IP, deletion, creation, exit) since the controller last looked
        self.changed_pods: set[PodObj] = set()
        self.all_pods: list[PodObj] = []  # every pod ever created, for tests and the report
        self.conflicts = 0  # conditional writes refused with 409 (a status write got in between)
        self._rv = 0
        self._ip = 0
        self._uid = 0

    # --- identifiers ---------------------------------------------------------------------------------
    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _pod_changed(self, pod: PodObj) -> int:
        """A write to ``pod``: its new resourceVersion, and the pod noted for the controller's watches."""
        self.changed_pods.add(pod)
        return self.next_rv()

    def _rng(self, deployment: str, base: str) -> Any:
        """The random stream ``base`` of the fleet copy that owns ``deployment``."""
        name = self.sim.stream_for(deployment, base)
        rng = self._rngs.get(name)
        if rng is None:
            rng = self._rngs[name] = self.sim.rng(name)
        return rng

    def uid(self) -> str:
        self._uid += 1
        return f"00000000-0000-4000-8000-{self._uid:012d}"

    def _next_ip(self) -> str:
        self._ip += 1  # never reused within a run, so a target id names one pod
        return f"10.0.{(self._ip >> 8) & 255}.{self._ip & 255}" if self._ip < 65536 else f"10.1.0.{self._ip % 250}"

    @property
    def now(self) -> float:
        return self.loop.clock.t

    # --- plain objects ---------------------------------------------------------------------------------
    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.namespaces[name] = dict(labels or {})

    def label_namespace(self, name: str, key: str, value: str) -> None:
        self.namespaces[name][key] = value
        self.sim.log("namespace", f"namespace {name} labelled {key}={value}")

    def add_service(self, svc: Service) -> None:
        self.services[(svc.namespace, svc.name)] = svc

    def add_ingress(self, ing: Ingress) -> None:
        self.ingresses[(ing.namespace, ing.name)] = ing

    def add_tgb(self, tgb: TargetGroupBinding) -> None:
        self.tgbs[(tgb.namespace, tgb.name)] = tgb

    def namespace(self, name: str) -> Namespace:
        if name not in self.namespaces:
            raise NotFoundError(f"namespace {name!r} not found")
        return Namespace(name, dict(self.namespaces[name]))

    def deployment(self, namespace: str, name: str) -> DepObj:
        d = self.deployments.get((namespace, name))
        if d is None:
            raise NotFoundError(f"Deployment {namespace}/{name} not found")
        return d

    def pods_selected(self, namespace: str, selector: dict[str, str]) -> list[PodObj]:
        """The pods in the API that ``selector`` selects in ``namespace``, in creation order."""
        if not selector:
            return [p for (ns, _), p in self.pods.items() if ns == namespace]
        rarest = min((self._by_label.get((namespace, k, v), {}) for k, v in selector.items()), key=len)
        return [p for p in rarest.values() if _selects(selector, p.labels)]

    def _index(self, pod: PodObj) -> None:
        for k, v in pod.labels.items():
            self._by_label.setdefault((pod.namespace, k, v), {})[(pod.namespace, pod.name)] = pod

    def _unindex(self, pod: PodObj) -> None:
        for k, v in pod.labels.items():
            self._by_label.get((pod.namespace, k, v), {}).pop((pod.namespace, pod.name), None)

    def service_pods(self, svc: Service) -> list[PodObj]:
        return self.pods_selected(svc.namespace, svc.selector)

    # --- Deployments -----------------------------------------------------------------------------------
    def create_deployment(self, d: DepObj, *, steady: bool) -> None:
        """Add a Deployment; with steady=True its first ReplicaSet and pods exist already, Ready for long."""
        self.deployments[(d.namespace, d.name)] = d
        d.rv = self.next_rv()
        if steady:
            rs = self._new_rs(d, 1)
            rs.spec = d.replicas
            for _ in range(d.replicas):
                pod = self._make_pod(rs, born_ready=True)
                assert pod is not None
            d.annotations[REVISION_ANNOTATION] = "1"
            self._sync_status(d, rs, [], created=False)
        else:
            self.request_sync(d)

    def _new_rs(self, d: DepObj, revision: int) -> RSObj:
        phash = template_hash(d.template)
        rs = RSObj(d, d.template, revision, self.now, phash)
        d.rss.append(rs)
        self.sim.log("replicaset", f"ReplicaSet {rs.name} created (revision {revision})")
        return rs

    def request_sync(self, d: DepObj) -> None:
        if d.sync_event is None or not d.sync_event.alive:
            d.sync_event = self.loop.after(0, self._sync_deployment, d)

    def _find_new_rs(self, d: DepObj) -> RSObj | None:
        matches = [rs for rs in d.rss if rs.template == d.template]
        return min(matches, key=lambda rs: rs.created_at) if matches else None

    def _sync_deployment(self, d: DepObj) -> None:
        """One Deployment controller sync (sync.go / rolling.go). Its writes (the revision annotation, then the
        status with observedGeneration) each move the Deployment's resourceVersion when they change something."""
        d.sync_event = None
        new = self._find_new_rs(d)
        old = [rs for rs in d.rss if rs is not new]
        created = False
        seen = d.observed_generation != d.generation  # the status write will carry the new observedGeneration
        if d.paused:
            # Paused: no new ReplicaSet from a template change; only scaling (not modelled: replicas are fixed).
            d.observed_generation = d.generation
            self._sync_status(d, new, old, created=False, wrote=seen)
            return
        max_old_rev = max((rs.revision for rs in old), default=0)
        if new is None:
            new = self._new_rs(d, max_old_rev + 1)
            created = True
        elif new.revision <= max_old_rev:
            # An old template came back (undo): its ReplicaSet becomes the newest revision (sync.go
            # getNewReplicaSet), which is why undo to revision N makes a revision max+1.
            self.sim.log("replicaset", f"ReplicaSet {new.name} revision {new.revision} -> {max_old_rev + 1}")
            new.revision_history.append(new.revision)  # SetNewReplicaSetAnnotations keeps the old numbers
            new.revision = max_old_rev + 1
        if d.annotations.get(REVISION_ANNOTATION) != str(new.revision):
            d.annotations[REVISION_ANNOTATION] = str(new.revision)
            seen = True  # the controller updates the Deployment's revision annotation: a write of its own
        surge, unavailable = resolve_fenceposts(d.max_surge, d.max_unavailable, d.replicas)
        if not self._reconcile_new(d, new, old, surge):
            self._reconcile_old(d, new, old, unavailable)
        d.observed_generation = d.generation
        self._sync_status(d, new, old, created=created, wrote=seen)

    def _scale(self, rs: RSObj, n: int) -> None:
        if rs.spec != n:
            self.sim.log("scale", f"ReplicaSet {rs.name} scaled {rs.spec} -> {n}")
            rs.spec = n
            self._request_rs_sync(rs)

    def _reconcile_new(self, d: DepObj, new: RSObj, old: list[RSObj], surge: int) -> bool:
        """rolling.go reconcileNewReplicaSet + deployment_util.go NewRSNewReplicas (counts spec.replicas)."""
        if new.spec == d.replicas:
            return False
        if new.spec > d.replicas:
            self._scale(new, d.replicas)
            return True
        current = sum(rs.spec for rs in d.rss)
        max_total = d.replicas + surge
        if current >= max_total:
            return False
        target = new.spec + min(max_total - current, d.replicas - new.spec)
        self._scale(new, target)
        return True

    def _reconcile_old(self, d: DepObj, new: RSObj, old: list[RSObj], unavailable: int) -> bool:
        """rolling.go reconcileOldReplicaSets: unhealthy old replicas first, then available ones, oldest first."""
        if sum(rs.spec for rs in old) == 0:
            return False
        now, mr = self.now, d.min_ready_seconds
        all_pods = sum(rs.spec for rs in d.rss)
        min_available = d.replicas - unavailable
        new_unavailable = new.spec - new.counts(now, mr)[2]
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        total = 0
        for rs in sorted(old, key=lambda r: r.created_at):  # cleanupUnhealthyReplicas
            if total >= max_scaled_down:
                break
            avail = rs.counts(now, mr)[2]
            if rs.spec == 0 or rs.spec == avail:
                continue
            n = min(max_scaled_down - total, rs.spec - avail)
            self._scale(rs, rs.spec - n)
            total += n
        # scaleDownOldReplicaSetsForRollingUpdate
        available = sum(rs.counts(now, mr)[2] for rs in d.rss)
        if available > min_available:
            budget, done = available - min_available, 0
            for rs in sorted(old, key=lambda r: r.created_at):
                if done >= budget:
                    break
                if rs.spec == 0:
                    continue
                n = min(rs.spec, budget - done)
                self._scale(rs, rs.spec - n)
                done += n
            total += done
        if total == 0 and all(rs.spec == 0 for rs in old):
            self._cleanup(d)
        return total > 0

    def _cleanup(self, d: DepObj) -> None:
        """Old ReplicaSets with no pods beyond revisionHistoryLimit are deleted, oldest first."""
        new = self._find_new_rs(d)
        idle = sorted((rs for rs in d.rss if rs is not new and rs.spec == 0 and not rs.pods), key=lambda r: r.revision)
        for rs in idle[: max(0, len(idle) - d.revision_history_limit)]:
            d.rss.remove(rs)

    def _sync_status(self, d: DepObj, new: RSObj | None, old: list[RSObj], *, created: bool,
                     wrote: bool = False) -> None:
        """The status write of a sync; ``wrote``: the sync changed the Deployment already (observedGeneration,
        revision annotation), so its resourceVersion moves even if the counts and conditions did not."""
        now, mr = self.now, d.min_ready_seconds
        counts = [rs.counts(now, mr) for rs in d.rss]
        replicas = sum(c[0] for c in counts)
        ready = sum(c[1] for c in counts)
        available = sum(c[2] for c in counts)
        updated = new.counts(now, mr)[0] if new else 0
        old_replicas = replicas - updated
        prev = d.status
        status = (replicas, updated, ready, available, old_replicas)
        changed = wrote or status != prev
        d.status = status
        _, unavailable = resolve_fenceposts(d.max_surge, d.max_unavailable, d.replicas)
        if available >= d.replicas - unavailable:
            changed |= self._set_cond(d, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            changed |= self._set_cond(d, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        cond = d.conditions.get("Progressing")
        if d.paused:
            changed |= self._set_cond(d, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        else:
            # progress.go syncRolloutStatus: the new ReplicaSet's ReplicaFailure condition (else an old one's) is
            # copied onto the Deployment, and removed once no ReplicaSet has one
            failed = [rs.failure for rs in ([new] if new else []) + old if rs.failure is not None]
            if failed:
                changed |= self._set_cond(d, "ReplicaFailure", "True", failed[0][0], failed[0][1])
            elif d.conditions.pop("ReplicaFailure", None) is not None:
                changed = True
            complete = updated == d.replicas and replicas == d.replicas and available == d.replicas and new is not None
            progressed = (updated > prev[1] or old_replicas < prev[4] or ready > prev[2] or available > prev[3])
            if complete:
                changed |= self._set_cond(d, "Progressing", "True", "NewReplicaSetAvailable",
                                          f'ReplicaSet "{new.name}" has successfully progressed.', keep_time=True)
            elif created:
                changed |= self._set_cond(d, "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{new.name}"')
            elif progressed and cond is not None:
                # progress.go: any progress replaces the condition (ProgressDeadlineExceeded included) and moves
                # its lastUpdateTime, from which the deadline counts.
                changed |= self._set_cond(d, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{new.name}" is progressing.', force=True)
            elif cond is not None and cond[1] == "NewReplicaSetAvailable":
                # a completed rollout that lost pods (not a new rollout) does not restart the deadline clock
                pass
            elif cond is not None and cond[1] not in ("ProgressDeadlineExceeded",):
                if now >= cond[3] + d.progress_deadline_seconds:
                    changed |= self._set_cond(d, "Progressing", "False", "ProgressDeadlineExceeded",
                                              f'ReplicaSet "{new.name if new else ""}" has timed out progressing.')
            cond = d.conditions.get("Progressing")
            if cond and cond[1] not in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
                due = cond[3] + d.progress_deadline_seconds
                if d.deadline_event is None or not d.deadline_event.alive or d.deadline_event.time != due:
                    if d.deadline_event is not None:
                        d.deadline_event.cancel()
                    d.deadline_event = self.loop.at(due, self.request_sync, d)
        if changed:
            d.rv = self.next_rv()

    def _set_cond(self, d: DepObj, type_: str, status: str, reason: str, msg: str, *, force: bool = False,
                  keep_time: bool = False) -> bool:
        cur = d.conditions.get(type_)
        if cur is not None and cur[0] == status and cur[1] == reason and not force:
            return False
        when = cur[3] if (keep_time and cur is not None and cur[0] == status) else self.now
        d.conditions[type_] = (status, reason, msg, when)
        if type_ == "Progressing" and (cur is None or cur[1] != reason):
            self.sim.log("deployment", f"Deployment {d.name}: Progressing={status} {reason}")
        return cur is None or cur[:2] != (status, reason) or force

    def deployment_complete(self, d: DepObj) -> bool:
        """What `kubectl rollout status` waits for: the controller saw the latest spec, every replica is
        updated and available, and no old replica is left (terminating pods do not count)."""
        replicas, updated, _, available, _ = d.status
        return (d.sync_event is None and d.observed_generation >= d.generation and updated == d.replicas
                and replicas == updated and available == updated)

    def deadline_exceeded(self, d: DepObj) -> bool:
        cond = d.conditions.get("Progressing")
        return cond is not None and cond[1] == "ProgressDeadlineExceeded"

    # --- spec changes (what the API server accepts) ---------------------------------------------------------
    def _precondition(self, d: DepObj, expected_resource_version: str | None) -> None:
        """A write carrying metadata.resourceVersion applies only to that version of the object, as the API server
        does (409 Conflict otherwise). Every status update moves the version too (``_sync_status``), as on a real
        cluster, so a version read long before the write fails it: albgate's Start Step reads just before.

        The Deployment controller reacts to a change within milliseconds, while the caller's next request is as
        far away: a sync queued for this very instant (after a write of the caller's own, or a pod turning Ready)
        runs before the conditional write is judged, and its status write makes a version read before it stale."""
        if expected_resource_version is None:
            return
        ev = d.sync_event
        if ev is not None and ev.alive and ev.time <= self.now:
            ev.cancel()
            self._sync_deployment(d)
        if expected_resource_version != str(d.rv):
            self.conflicts += 1
            self.sim.log("deployment", f"Deployment {d.name}: conditional write refused, 409 Conflict "
                                       f"(resourceVersion {expected_resource_version}, now {d.rv})")
            raise ConflictError(
                f"Operation cannot be fulfilled on deployments.apps {d.name!r}: the object has been modified; "
                f"please apply your changes to the latest version and try again "
                f"(resourceVersion {expected_resource_version} != {d.rv})"
            )

    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> DepObj:
        d = self.deployment(namespace, name)
        self._precondition(d, patch.expected_resource_version)
        t = d.template
        containers = list(t.containers)
        if patch.images:
            for cname, image in patch.images.items():
                i = next((i for i, c in enumerate(containers) if c.name == cname), None)
                if i is None:
                    raise NotFoundError(f"container {cname!r} is not in the pod template of {namespace}/{name}")
                containers[i] = replace(containers[i], image=image)
        if patch.pre_stop_sleep_seconds:
            for cname, secs in patch.pre_stop_sleep_seconds.items():
                i = next((i for i, c in enumerate(containers) if c.name == cname), None)
                if i is None:
                    raise NotFoundError(f"container {cname!r} is not in the pod template of {namespace}/{name}")
                containers[i] = replace(containers[i], pre_stop_sleep_seconds=secs)
        gates = t.readiness_gates + tuple(g for g in patch.add_readiness_gates if g not in t.readiness_gates)
        new_t = replace(
            t, containers=tuple(containers), readiness_gates=gates,
            termination_grace_period_seconds=(patch.termination_grace_period_seconds
                                              if patch.termination_grace_period_seconds is not None
                                              else t.termination_grace_period_seconds),
            annotations={**t.annotations, **(patch.template_annotations or {})},
        )
        for field_name in ("max_surge", "max_unavailable"):
            v = getattr(patch, field_name)
            if v is not None and (isinstance(v, bool) or (isinstance(v, int) and v < 0)
                                  or (isinstance(v, str) and percent(v) is None)):
                raise InvalidInputError(f"{field_name}: {v!r} is not a pod count or a percentage")
        surge = patch.max_surge if patch.max_surge is not None else d.max_surge
        unav = patch.max_unavailable if patch.max_unavailable is not None else d.max_unavailable
        if surge in (0, "0%") and unav in (0, "0%"):
            raise InvalidInputError("maxUnavailable may not be 0 when maxSurge is 0 (Deployment validation)")
        spec_before = (d.template, d.max_surge, d.max_unavailable, d.min_ready_seconds, d.paused)
        annotations_before = dict(d.annotations)
        d.template = new_t
        d.max_surge, d.max_unavailable = surge, unav
        if patch.min_ready_seconds is not None:
            d.min_ready_seconds = patch.min_ready_seconds
        if patch.annotations:
            d.annotations.update(patch.annotations)
        if patch.paused is not None and patch.paused != d.paused:
            d.paused = patch.paused
            if not d.paused:
                self._set_cond(d, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        spec_changed = (d.template, d.max_surge, d.max_unavailable, d.min_ready_seconds, d.paused) != spec_before
        if not spec_changed and d.annotations == annotations_before:
            return d  # the API server stores nothing: same resourceVersion, same generation, no watch event
        if spec_changed:
            d.generation += 1  # metadata.generation counts spec changes only
        d.rv = self.next_rv()
        if new_t != t:
            self.sim.log("deployment", f"Deployment {name} template changed ({_describe_template(new_t)})")
        self.request_sync(d)
        return d

    def rollback_deployment(self, namespace: str, name: str, to_revision: int, *,
                            expected_resource_version: str | None = None, follow_history: bool = False) -> DepObj:
        """kubectl rollout undo: copy the template of the ReplicaSet with that revision back (rollback.go).

        ``follow_history``: as albgate's adapter does, a revision the controller renumbered since (an undo to it
        already happened) names the ReplicaSet whose revision history holds it; kubectl finds no such revision."""
        d = self.deployment(namespace, name)
        if d.paused:
            raise InvalidInputError(f"you cannot rollback a paused deployment; resume it first with "
                                    f"'kubectl rollout resume deployment/{name}' and try again")
        if to_revision == 0:
            # 0 = the previous revision: the highest revision below the current one
            candidates = sorted((rs for rs in d.rss if rs.revision < d.revision), key=lambda r: r.revision)
            if not candidates:
                raise NotFoundError(f"no rollout history found for deployment {name!r}")
            target = candidates[-1]
        else:
            target = next((rs for rs in d.rss if rs.revision == to_revision), None)
            if target is None and follow_history:
                target = next((rs for rs in d.rss if to_revision in rs.revision_history), None)
            if target is None:
                raise NotFoundError(f"unable to find specified revision {to_revision} in history of {name!r}")
        if target.template == d.template:
            self.sim.log("deployment", f"Deployment {name}: rollback skipped, template already matches revision "
                                       f"{target.revision}")
            return d
        self._precondition(d, expected_resource_version)  # only a write is conditional (kubectl sends none here)
        d.template = target.template
        d.generation += 1
        d.rv = self.next_rv()
        self.sim.log("deployment", f"Deployment {name} rolled back to the template of revision {target.revision} "
                                   f"({_describe_template(target.template)})")
        self.request_sync(d)
        return d

    # --- ReplicaSet controller -------------------------------------------------------------------------
    def _request_rs_sync(self, rs: RSObj) -> None:
        if rs.sync_event is None or not rs.sync_event.alive:
            rs.sync_event = self.loop.after(0, self._sync_rs, rs)

    def _sync_rs(self, rs: RSObj) -> None:
        rs.sync_event = None
        active = rs.active()
        diff = len(active) - rs.spec
        if diff < 0:
            if rs.retry_event is not None and rs.retry_event.alive:
                return  # backing off after a failed create
            for _ in range(-diff):
                if self._make_pod(rs) is None:
                    rs.create_failures += 1
                    delay = min(_QUEUE_BACKOFF_START * 2 ** rs.create_failures, _QUEUE_BACKOFF_MAX)
                    rs.retry_event = self.loop.after(delay, self._retry_rs, rs)
                    if rs.failure is None:  # set once, kept until a sync creates what it must
                        rs.failure = ("FailedCreate", WEBHOOK_CREATE_ERROR)
                        self.request_sync(rs.dep)
                    return
            rs.create_failures = 0
        if rs.failure is not None:
            rs.failure = None
            self.request_sync(rs.dep)
        if diff > 0:
            now = self.now

            def rank(p: PodObj) -> tuple:  # controller.ActivePodsWithRanks: who goes first (no nodes modelled,
                # so no rank by pods of the ReplicaSet on the same node)
                return (p.ip is not None, {"Pending": 0, "Running": 2}.get(p.phase, 1), p.ready, p.deletion_cost,
                        -(p.ready_since or now) if p.ready else 0, -p.restart_count, -p.created_at)

            for p in sorted(active, key=rank)[:diff]:
                self.delete_pod(p)

    def _retry_rs(self, rs: RSObj) -> None:
        rs.retry_event = None
        self._sync_rs(rs)

    # --- Pods: creation, kubelet, termination --------------------------------------------------------
    def _make_pod(self, rs: RSObj, *, born_ready: bool = False) -> PodObj | None:
        d = rs.dep
        labels = {**rs.template.labels, POD_TEMPLATE_HASH: rs.pod_template_hash}
        gates = rs.template.readiness_gates
        if not born_ready:
            ok, injected = self.sim.lbc.admit(d.namespace, labels)
            if not ok:
                self.sim.log("pod", f"ReplicaSet {rs.name}: FailedCreate (webhook "
                                    f"mpod.elbv2.k8s.aws unreachable, failurePolicy Fail)")
                return None
            gates = gates + tuple(g for g in injected if g not in gates)
        else:
            gates = gates + tuple(g for g in self.sim.lbc.injected_gates(d.namespace, labels) if g not in gates)
        suffix = "".join(self._rng(d.name, "pods").choice(_ALPHABET) for _ in range(5))
        created = self.now - (3600 if born_ready else 0)
        pod = PodObj(d.namespace, f"{rs.name}-{suffix}", self.uid(), labels, rs.template, rs, created, gates)
        c = rs.template.containers[0]
        pod.version = c.image
        faults = self.sim.scenario.faults
        failing = c.image in faults.broken_images
        pod.alb_check_fails = failing and faults.broken_mode == "health_path_404"  # only the ALB's check fails
        pod.broken = failing and not pod.alb_check_fails  # answers everyone, users included, with errors
        pod.crashes = failing and faults.broken_mode == "crash"
        pod.error_rate, pod.latency_factor = answers_of(self.sim.scenario, c.image)
        pod.rv = self._pod_changed(pod)
        rs.pods.append(pod)
        self.pods[(pod.namespace, pod.name)] = pod
        self._index(pod)
        self.all_pods.append(pod)
        if born_ready:
            pod.ip = self._next_ip()
            pod.phase, pod.waiting_reason = "Running", ""
            pod.listening = pod.containers_ready = True
            pod.containers_ready_at = created
            for g in gates:
                pod.conditions[g] = ("True", "", "")
                pod.condition_times[g] = created
            pod.ready, pod.ready_since = True, created
            return pod
        self.sim.log("pod", f"pod {pod.name} created" + (f" with gates {', '.join(gates)}" if gates else " (no readiness gates)"))
        self.request_sync(d)  # the ReplicaSet's status changed: the Deployment controller syncs
        st = self.sim.scenario.app.startup
        pod.timers.append(self.loop.after(st.schedule_seconds, self._scheduled, pod))
        return pod

    def _pending_until(self, pod: PodObj) -> float | None:
        """When a ``faults.pods_pending`` window holding this pod's image ends (inf: never), or None when the
        scheduler can place the pod now. Windows are compared in absolute time, so the event scheduled at a
        window's end sees it closed."""
        sc = self.sim.scenario
        end: float | None = None
        for w in sc.faults.pods_pending:
            images = (sc.rollout.image,) if w.images == "new" else w.images
            start = self.sim.rel_to_abs(w.at_seconds)
            stop = math.inf if w.duration_seconds is None else self.sim.rel_to_abs(w.at_seconds + w.duration_seconds)
            if pod.version in images and start <= self.now < stop:
                end = stop if end is None else max(end, stop)
        return end

    def _scheduled(self, pod: PodObj) -> None:
        """The scheduler binds the pod to a node (its IP comes with the sandbox). While a ``pods_pending``
        window holds its image no node has room: the pod stays phase Pending with PodScheduled=False reason
        Unschedulable and no IP (core/v1 PodPhase Pending, PodReasonUnschedulable), and is bound as soon as
        the window ends (room appeared; the scheduler's retry back-off and queueing are not modelled)."""
        if pod.terminating:
            return
        until = self._pending_until(pod)
        if until is not None:
            if not pod.unschedulable:
                pod.unschedulable, pod.rv = True, self._pod_changed(pod)
                self.sim.log("pod", f"pod {pod.name} Pending: PodScheduled=False Unschedulable (no node has room)")
            if until != math.inf:
                pod.timers.append(self.loop.at(until, self._scheduled, pod))
            return
        if pod.unschedulable:
            pod.unschedulable = False
            self.sim.log("pod", f"pod {pod.name} scheduled after being Unschedulable")
        pod.ip = self._next_ip()
        pod.rv = self._pod_changed(pod)
        lo, hi = self.sim.scenario.app.startup.container_start_seconds
        pod.timers.append(self.loop.after(self._rng(pod.rs.dep.name, "pods").uniform(lo, hi),
                                          self._container_started, pod))

    def _container_started(self, pod: PodObj) -> None:
        if pod.terminating:
            return
        app = self.sim.scenario.app
        pod.phase, pod.waiting_reason = "Running", ""
        pod.rv = self._pod_changed(pod)  # the kubelet's status write: phase Running, container running
        pod.probe_ok = pod.probe_fail = 0
        if app.readiness_probe is None:
            self._set_containers_ready(pod, True)  # no probe: ready once the container runs
        else:
            p = app.readiness_probe
            pod.timers.append(self.loop.after(p.initial_delay_seconds, self._probe, pod))
        pod.timers.append(self.loop.after(app.startup.app_start_seconds, self._app_listening, pod))

    def _app_listening(self, pod: PodObj) -> None:
        if pod.exited or pod.sigtermed:
            return
        if pod.crashes:
            # The broken version exits right after starting: CrashLoopBackOff (kubelet back-off doubles).
            pod.restart_count += 1
            pod.phase, pod.waiting_reason = "Running", "CrashLoopBackOff"
            pod.rv = self._pod_changed(pod)
            self._set_containers_ready(pod, False)
            delay = min(_CRASH_BACKOFF_START * 2 ** (pod.restart_count - 1), _CRASH_BACKOFF_MAX)
            pod.timers.append(self.loop.after(delay, self._container_started, pod))
            return
        pod.listening = True

    def _probe(self, pod: PodObj) -> None:
        if pod.terminating or pod.exited:
            return
        p = self.sim.scenario.app.readiness_probe
        assert p is not None
        if pod.serving and not pod.broken:
            pod.probe_ok, pod.probe_fail = pod.probe_ok + 1, 0
            if pod.probe_ok >= p.success_threshold:
                self._set_containers_ready(pod, True)
        else:
            pod.probe_ok, pod.probe_fail = 0, pod.probe_fail + 1
            if pod.probe_fail >= p.failure_threshold:
                self._set_containers_ready(pod, False)
        pod.timers.append(self.loop.after(p.period_seconds, self._probe, pod))

    def _set_containers_ready(self, pod: PodObj, value: bool) -> None:
        if pod.containers_ready == value:
            return
        pod.containers_ready = value
        pod.containers_ready_at = self.sim.clock.t
        pod.rv = self._pod_changed(pod)
        self.sim.log("pod", f"pod {pod.name} ContainersReady={value}")
        self._update_ready(pod)
        self.sim.lbc.endpoints_changed(pod.namespace)

    def set_pod_serving(self, namespace: str, name: str, serving: bool) -> None:
        """The merge patch of ``set_pod_serving``: the serving label, and the deletion cost set or removed. A Service
        that selected the pod by the label stops selecting it (or selects it again): its endpoints change, and the
        controller's watch sees it as an EndpointSlice event."""
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise NotFoundError(f"pod {namespace}/{name} not found")
        labels = {**pod.labels, SERVING_LABEL: IN_SERVICE if serving else OUT_OF_SERVICE}
        cost = 0 if serving else OUT_OF_SERVICE_DELETION_COST
        if labels == pod.labels and cost == pod.deletion_cost:
            return  # a patch that changes nothing leaves the object as it was
        before = dict(pod.labels)
        self._unindex(pod)
        pod.labels, pod.deletion_cost = labels, cost
        self._index(pod)
        pod.rv = self._pod_changed(pod)
        self.sim.log("serving", f"pod {pod.name} {SERVING_LABEL}={labels[SERVING_LABEL]}")
        self.sim.lbc.pod_relabelled(namespace, before)
        self.sim.lbc.endpoints_changed(namespace)

    def set_pod_condition(self, namespace: str, name: str, type_: str, status: str, reason: str, message: str) -> None:
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise NotFoundError(f"pod {namespace}/{name} not found")
        if status not in ("True", "False", "Unknown"):
            raise InvalidInputError(f"status: {status!r} is not True, False or Unknown")
        if type_ in ("Ready", "ContainersReady", "PodScheduled", "Initialized"):
            raise InvalidInputError(f"condition {type_} is owned by the kubelet; patch a readiness gate condition")
        cur = pod.conditions.get(type_)
        if cur == (status, reason, message):
            return  # a patch that changes nothing leaves the object (and its resourceVersion) as it was
        pod.conditions[type_] = (status, reason, message)
        if cur is None or cur[0] != status:
            pod.condition_times[type_] = self.sim.clock.t
        pod.rv = self._pod_changed(pod)
        if cur is not None and cur[0] == status:
            # the same status with another reason or message: a new resourceVersion and a watch event (the
            # controllers' watches see it), nothing for the kubelet, whose Ready reads only the statuses
            self.sim.log("gate", f"pod {pod.name} {type_}={status}, message: {message}")
            return
        self.sim.log("gate", f"pod {pod.name} {type_}={status}" + (f" ({reason})" if reason else ""))
        if type_ in pod.readiness_gates:
            self._kubelet_sync_later(pod)

    def _kubelet_sync_later(self, pod: PodObj) -> None:
        """A pod status write by someone else reaches the kubelet, which syncs the pod (HandlePodReconcile) once
        its runtime cache is newer than its last sync: Ready follows a gate after a seeded draw between 0 and 2 s
        (docs/facts.md, "Kubelet and controllers: Ready after a gate, status writes"). A sync already pending reads
        the conditions as they are when it runs, so a second change before it does not delay it."""
        if pod.ready_sync is not None and pod.ready_sync.alive:
            return
        delay = self._rng(pod.rs.dep.name, "kubelet").uniform(0.0, KUBELET_READY_SYNC_MAX_SECONDS)
        pod.ready_sync = self.loop.after(delay, self._kubelet_sync, pod)
        pod.timers.append(pod.ready_sync)

    def _kubelet_sync(self, pod: PodObj) -> None:
        pod.ready_sync = None
        if not pod.exited:
            self._update_ready(pod)

    def _update_ready(self, pod: PodObj) -> None:
        """kubelet status/generate.go: Ready = ContainersReady and every readiness gate condition True; when it
        changes the kubelet writes the pod's status (a new resourceVersion)."""
        ready = pod.containers_ready and all(pod.conditions.get(g, ("False",))[0] == "True" for g in pod.readiness_gates)
        if ready == pod.ready:
            return
        pod.ready = ready
        pod.rv = self._pod_changed(pod)
        pod.ready_since = self.now if ready else None
        self.sim.log("pod", f"pod {pod.name} Ready={ready}")
        if pod.rs is not None:
            d = pod.rs.dep
            self.request_sync(d)
            if ready and d.min_ready_seconds:
                self.loop.after(d.min_ready_seconds, self.request_sync, d)
        self.sim.lbc.endpoints_changed(pod.namespace)

    def delete_pod(self, pod: PodObj) -> None:
        """Graceful deletion: endpoint not ready at once; preStop inside the grace period; SIGTERM; SIGKILL."""
        if pod.terminating:
            return
        pod.terminating, pod.deletion_at = True, self.now
        pod.rv = self._pod_changed(pod)
        for t in pod.timers:
            t.cancel()
        pod.timers.clear()
        c = pod.template.containers[0]
        grace = pod.template.termination_grace_period_seconds
        self.sim.log("pod", f"pod {pod.name} terminating (preStop {c.pre_stop_sleep_seconds or 0} s, grace {grace} s)")
        if pod.rs is not None:
            self.request_sync(pod.rs.dep)
            self._request_rs_sync(pod.rs)
        self.sim.lbc.endpoints_changed(pod.namespace)
        if pod.phase != "Running":
            self.loop.after(0, self._exit, pod, "not started")
            return
        pre_stop = c.pre_stop_sleep_seconds or 0
        if pre_stop >= grace and pre_stop > 0:
            # preStop still running at the end of the grace period: SIGTERM then, one-off 2 s more, SIGKILL
            self.loop.after(grace, self._sigterm, pod)
            pod.kill_at = self.now + grace + 2
        else:
            self.loop.after(pre_stop, self._sigterm, pod)
            pod.kill_at = self.now + grace
        self.loop.at(pod.kill_at, self._kill, pod)

    def _sigterm(self, pod: PodObj) -> None:
        if pod.exited:
            return
        pod.sigtermed, pod.sigterm_at = True, self.now
        if self.sim.scenario.app.sigterm == "immediate":
            self._exit(pod, "SIGTERM")
            return
        # graceful: no new connections; exit once the requests in flight are done (or SIGKILL first)
        last = max((end for end, _ in pod.inflight), default=self.now)
        if last < (pod.kill_at or math.inf):
            self.loop.at(last, self._exit, pod, "SIGTERM, requests finished")

    def _kill(self, pod: PodObj) -> None:
        if not pod.exited:
            self._exit(pod, "SIGKILL at the end of the grace period")

    def _exit(self, pod: PodObj, why: str) -> None:
        if pod.exited:
            return
        pod.exited, pod.listening, pod.exited_at = True, False, self.now
        pod.phase = "Succeeded"
        self.sim.traffic.kill_inflight(pod, "killed_in_flight")
        self.pods.pop((pod.namespace, pod.name), None)
        self._unindex(pod)
        self.changed_pods.add(pod)
        if pod.rs is not None and pod in pod.rs.pods:
            pod.rs.pods.remove(pod)
            self.request_sync(pod.rs.dep)
        self.sim.log("pod", f"pod {pod.name} gone ({why})")
        self.sim.lbc.endpoints_changed(pod.namespace)


def answers_of(scenario: "Scenario", image: str) -> tuple[float, float]:
    """(error rate, latency factor) of a pod of ``image``: its ``faults.degraded_images`` entry, else the app's
    ``traffic.error_rate`` at normal speed."""
    degraded = scenario.faults.degraded(image)
    if degraded is None:
        return scenario.traffic.error_rate, 1.0
    rate = scenario.traffic.error_rate if degraded.error_rate is None else degraded.error_rate
    return rate, degraded.latency_factor


def _describe_template(t: PodTemplate) -> str:
    c: Container = t.containers[0]
    parts = [f"image {c.image}"]
    if t.readiness_gates:
        parts.append("gates " + ", ".join(t.readiness_gates))
    if c.pre_stop_sleep_seconds:
        parts.append(f"preStop {c.pre_stop_sleep_seconds} s")
    parts.append(f"grace {t.termination_grace_period_seconds} s")
    return "; ".join(parts)


def make_service(namespace: str, name: str, selector: dict[str, str], port: int, target_port: int) -> Service:
    return Service(namespace, name, dict(selector), (ServicePort(port, target_port),))


def make_ingress(namespace: str, name: str, ingress_class: str, annotations: dict[str, str], service: str,
                 port: int) -> Ingress:
    return Ingress(namespace, name, ingress_class, dict(annotations), (IngressBackend(service, port),))
