"""The simulated cluster and load balancer seen through albgate's ports (``lambdas.domain.ports``).

Job: let the real use cases and handlers run unchanged against the simulation: the same methods, the same
frozen snapshots, the same domain errors. Calls take zero virtual time (except an ELB call the client retries
after a throttle: its back-off passes on the world's clock, ``SimElb``; and a watch, which lasts until a change or
its seconds, ``SimKubernetes.wait_for_pods``), are counted per method (Kubernetes)
and per caller (DescribeTargetHealth, RegisterTargets, DeregisterTargets), and can fail as the scenario's faults
say (Kubernetes 409 / 5xx as ``ConflictError`` / ``KubernetesUnavailableError``; the shared Describe* bucket as
``ThrottledError``).
Invariant: nothing here changes the world except through what the real API would allow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from lambdas.domain.errors import ConflictError, KubernetesUnavailableError, NotFoundError
from lambdas.domain.ports import (
    Deployment,
    DeploymentPatch,
    Ingress,
    Namespace,
    Pod,
    ReplicaSet,
    Service,
    TargetGroup,
    TargetGroupSettings,
    TargetGroupBinding,
    TargetHealth,
)

if TYPE_CHECKING:
    from albgate.sim.simulation import Simulation
    from lambdas.domain.ports import AlarmPage, MetricMinute, StateChanges

KUBE_METHODS = (
    "get_namespace", "get_deployment", "patch_deployment", "rollback_deployment", "list_replica_sets",
    "list_pods", "set_pod_condition", "set_pod_serving", "list_services", "list_ingresses", "list_target_group_bindings",
    "wait_for_pods", "wait_for_bindings",
)
# How often a watch (``wait_for_pods``, ``wait_for_bindings``) compares the objects with what they were: an event
# here reaches the watcher up to this late. A real watch sends it as the API server commits the change (docs/facts.md,
# "Kubernetes watches"), so the model is if anything slower than the world.
WATCH_STEP_SECONDS = 0.25


class SimKubernetes:
    """Implements ``KubernetesPort`` on the simulated cluster, as ``lambdas.adapters.kubernetes`` does on a real one.

    Conditional writes are judged as the API server judges them (``Cluster._precondition``): the Deployment
    controller's status writes move the resourceVersion, and its sync queued for the instant of the write lands
    first, so a write computed from an earlier read answers 409 ``ConflictError`` by itself, without any fault
    injected. ``rollback_deployment`` finds a revision the controller renumbered since (an undo already made it
    current) by the ReplicaSet's revision history, as the adapter does.
    """

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._rng = sim.rng("kube-api")
        # How a watch lets virtual time pass: the simulation's own ``advance``; a runner that interleaves several
        # executions on one world sets its clock's ``sleep`` (``Simulation.handlers_sleep_on``), so the others go on.
        self.sleep: Callable[[float], None] = sim.advance

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        rel = self.sim.clock.t - self.sim.rollout_start
        for w in self.sim.scenario.faults.kube_api_errors:
            if w.contains(rel) and (w.methods is None or method in w.methods) and self._rng.random() < w.probability:
                self.errors[method] += 1
                if w.error == "conflict":
                    raise ConflictError(f"{method}: 409 Conflict (injected by the scenario)")
                raise KubernetesUnavailableError(f"{method}: 503 Service Unavailable (injected by the scenario)")

    def get_namespace(self, name: str) -> Namespace:
        self._call("get_namespace")
        return self.sim.cluster.namespace(name)

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        self._call("get_deployment")
        return self.sim.cluster.deployment(namespace, name).snapshot()

    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> Deployment:
        self._call("patch_deployment")
        return self.sim.cluster.patch_deployment(namespace, name, patch).snapshot()

    def rollback_deployment(
        self, namespace: str, name: str, to_revision: int, *, expected_resource_version: str | None = None
    ) -> Deployment:
        self._call("rollback_deployment")
        return self.sim.cluster.rollback_deployment(
            namespace, name, to_revision, expected_resource_version=expected_resource_version, follow_history=True
        ).snapshot()

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]:
        self._call("list_replica_sets")
        d = self.sim.cluster.deployment(namespace, deployment)
        return [rs.snapshot(self.sim.clock.t) for rs in sorted(d.rss, key=lambda r: r.revision)]

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        self._call("list_pods")
        return [p.snapshot() for p in self.sim.cluster.pods_selected(namespace, selector)]

    def set_pod_condition(self, namespace: str, pod: str, type_: str, status: str, reason: str, message: str, *,
                          same_status: bool = False) -> None:
        # the simulated pod keeps no condition times: same_status changes nothing here
        self._call("set_pod_condition")
        self.sim.cluster.set_pod_condition(namespace, pod, type_, status, reason, message)

    def set_pod_serving(self, namespace: str, pod: str, serving: bool) -> None:
        self._call("set_pod_serving")
        self.sim.cluster.set_pod_serving(namespace, pod, serving)

    def list_services(self, namespace: str) -> list[Service]:
        self._call("list_services")
        self._namespace_exists(namespace)
        return [s for (ns, _), s in sorted(self.sim.cluster.services.items()) if ns == namespace]

    def list_ingresses(self, namespace: str) -> list[Ingress]:
        self._call("list_ingresses")
        self._namespace_exists(namespace)
        return [i for (ns, _), i in sorted(self.sim.cluster.ingresses.items()) if ns == namespace]

    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]:
        self._call("list_target_group_bindings")
        self._namespace_exists(namespace)
        lbc = self.sim.lbc
        return [replace(b, checkpoint=lbc.checkpoint_of(ns, b.name))
                for (ns, _), b in sorted(self.sim.cluster.tgbs.items()) if ns == namespace]

    def wait_for_pods(self, namespace: str, selector: dict[str, str], seconds: int) -> bool:
        """A watch of the selected pods: any pod added, removed or written (each write moves its resourceVersion)."""
        self._call("wait_for_pods")
        cluster = self.sim.cluster
        return self._watch(lambda: sorted((p.name, p.rv) for p in cluster.pods_selected(namespace, selector)), seconds)

    def wait_for_bindings(self, namespace: str, seconds: int) -> bool:
        """A watch of the namespace's TargetGroupBindings: in this model only the controller's checkpoint
        annotation changes on them."""
        self._call("wait_for_bindings")
        self._namespace_exists(namespace)
        lbc = self.sim.lbc
        return self._watch(lambda: sorted((b.tgb.name, b.annotation) for b in lbc.bindings
                                          if b.tgb.namespace == namespace), seconds)

    def _watch(self, seen: Callable[[], object], seconds: int) -> bool:
        if seconds < 1:
            raise ValueError(f"a watch lasts at least 1 s, not {seconds}")
        before, end = seen(), self.sim.clock.t + seconds
        while self.sim.clock.t < end - 1e-9:
            self.sleep(min(WATCH_STEP_SECONDS, end - self.sim.clock.t))
            if seen() != before:
                return True
        return False

    def _namespace_exists(self, namespace: str) -> None:
        if namespace not in self.sim.cluster.namespaces:
            raise NotFoundError(f"namespace {namespace!r} not found")


class SimElb:
    """Implements ``ElbPort`` on the simulated load balancer, spending from the shared Describe* bucket.

    Every call goes through ``client`` (``albgate.sim.alb.SdkClient``), the SDK client the caller would use.
    ``retries`` None (the default): one request per call, a throttle raised at once and no virtual time spent,
    for callers that retry in their own code (the Load Balancer Controller's model, Argo Rollouts'). Otherwise a
    botocore ``Config(retries=...)`` (``albgate.sim.alb.ALBGATE_ELB_RETRIES`` is the adapter's): a throttled
    request is retried as that client retries it, so a call may return later, the world having gone on while it
    backed off (``client.sleep``: the simulation's ``advance``; a runner interleaving executions sets its own,
    ``Simulation.handlers_sleep_on``).
    """

    def __init__(self, sim: "Simulation", caller: str, retries: dict[str, str | int] | None = None) -> None:
        from albgate.sim.alb import SdkClient  # the client model sits with the ELB it calls

        self.sim, self.caller = sim, caller
        self.client = SdkClient(sim, retries, f"elb-client:{caller}")

    def describe_target_health(self, target_group_arn: str) -> list[TargetHealth]:
        return self.client.call(lambda: self.sim.alb.describe_target_health(target_group_arn, self.caller))

    def describe_target_group(self, target_group_arn: str) -> TargetGroup:
        return self.client.call(lambda: self.sim.alb.describe_target_group(target_group_arn, self.caller))

    def describe_target_group_settings(self, target_group_arns: list[str]) -> list[TargetGroupSettings]:
        return self.client.call(lambda: self.sim.alb.describe_target_group_settings(target_group_arns, self.caller))

    def describe_deregistration_delay(self, target_group_arn: str) -> int:
        return self.client.call(lambda: self.sim.alb.describe_deregistration_delay(target_group_arn, self.caller))

    def deregister_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        self.client.call(lambda: self.sim.alb.deregister_targets(target_group_arn, targets, self.caller))

    def register_targets(self, target_group_arn: str, targets: list[tuple[str, int]]) -> None:
        self.client.call(lambda: self.sim.alb.register_targets(target_group_arn, targets, self.caller))


class SimAlarms:
    """Implements ``AlarmPort`` on the simulated CloudWatch (``albgate.sim.alarms``): the alarms of the scenario's
    ``faults.alarms``, as they are on the world's clock; counted in the world's ``SimCloudWatch.calls``."""

    def __init__(self, sim: "Simulation") -> None:
        from albgate.sim.alarms import cloudwatch_of  # the account's alarms sit with the simulated CloudWatch

        self.cloudwatch = cloudwatch_of(sim)

    def describe_alarms(
        self, *, names: tuple[str, ...] = (), prefix: str | None = None, state: str | None = None
    ) -> AlarmPage:
        return self.cloudwatch.describe_alarms(names=names, prefix=prefix, state=state)

    def state_changes(self, name: str, start: float, end: float) -> StateChanges:
        return self.cloudwatch.state_changes(name, start, end)


class SimMetrics:
    """Implements ``MetricsPort`` on the simulated ALB's CloudWatch metrics (``albgate.sim.metrics``): one call is
    one GetMetricData request, counted in the world's ``AlbMetrics.calls``, and shows the periods published by the
    world's clock. A load balancer ARN that is not one of the group's (DescribeTargetGroups LoadBalancerArns)
    raises ValueError: CloudWatch would answer nothing for that pair of dimensions, which hides the mistake."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim

    def target_group_minutes(
        self, target_group_arn: str, load_balancer_arn: str, start: float, end: float
    ) -> list[MetricMinute]:
        return self.sim.metrics.minutes(target_group_arn, load_balancer_arn, start, end, self.sim.clock.t)
