"""The bootstrap's ports on the simulated world: server-side apply, namespace labels, the controller's install
state, its webhook, a dry-run pod create, and a fake ``helm`` that installs the simulated controller.

Job: let ``lambdas.domain.bootstrap`` and the bootstrap handlers run unchanged against ``albgate.sim``, from an
empty namespace to an app serving through the ALB, the way the API server and the controller would answer:
- ``apply`` translates the manifest into the simulation's objects and answers ``created``, ``configured`` or
  ``unchanged`` by comparing what the object would become with what it is (as a real server-side apply
  leaves the resourceVersion alone when no field changes); a dry run changes nothing;
- an applied Ingress is reconciled by the simulated controller after its reconcile latency: one target group
  and one TargetGroupBinding per Service backend (docs/facts.md, Load Balancer Controller: registration and
  timing: what the controller builds for an ALB Ingress),
  named with the controller's scheme, health check and deregistration delay from the annotations;
- the controller is "installed" when the scenario's world has it (the default) or once ``SimHelm`` ran
  ``upgrade --install``: its pods come up after ``startup_seconds`` and it then leads after the leader
  election; its webhook failure policy and its back-off cap are the ones the Helm values asked for;
- ``dry_run_create_pod`` goes through the simulated webhook (``LoadBalancerController.admit``).

Invariant: this module only wraps ``Simulation``; it never edits the files of ``albgate/sim`` and changes the
world only through what a real API call (or the real controller) would change.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from albgate.sim.kube import DepObj, template_hash
from albgate.sim.lbc import lbc_name
from albgate.sim.ports import SimKubernetes
from albgate.sim.scenario import IngressSpec
from albgate.sim.simulation import Simulation
from lambdas.domain.bootstrap import (
    CONTROLLER_DEPLOYMENT,
    CONTROLLER_NAME_LABEL,
    CONTROLLER_VERSION,
    POD_WEBHOOK,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_SERVICE,
    AppliedObject,
    HelmRelease,
    MutatingWebhook,
    WebhookEntry,
)
from lambdas.domain.errors import InvalidInputError, NotFoundError, WebhookNotReadyError
from lambdas.domain.manifests import ingress_backends, pre_stop_sleep_seconds
from lambdas.domain.validators import go_duration_seconds
from lambdas.domain.ports import (
    INJECT_LABEL,
    Container,
    Deployment,
    Ingress,
    IngressBackend,
    Pod,
    PodCondition,
    PodTemplate,
    Service,
    ServicePort,
    TargetGroupBinding,
)

CONTROLLER_IMAGE = "public.ecr.aws/eks/aws-load-balancer-controller"


@dataclass
class SimController:
    """The controller's installation as the cluster shows it (not how the simulated controller behaves)."""

    installed: bool = True
    version: str = CONTROLLER_VERSION
    replicas: int = 2
    namespace: str = "kube-system"
    startup_seconds: float = 20.0  # helm install -> controller pods Ready (assumption: image pull + start)
    helm_release: HelmRelease | None = None
    generation: int = 1
    observed_generation: int = 1


@dataclass
class SimHelm:
    """``HelmPort`` on the simulation: an install or upgrade (re)starts the simulated controller."""

    kube: "SimBootstrapKubernetes"
    runs: list[list[str]] = field(default_factory=list)

    def release(self, name: str, namespace: str) -> HelmRelease | None:
        c = self.kube.controller
        if not c.installed:
            return None
        return c.helm_release or HelmRelease(name, namespace, "1.7.2", "deployed", {})  # installed by hand

    def upgrade_install(self, args: list[str], values: dict[str, Any]) -> str:
        self.runs.append(list(args))
        version = args[args.index("--version") + 1]
        namespace = args[args.index("--namespace") + 1]
        self.kube.install_controller(version, namespace, values)
        return f"Release \"{args[2]}\" has been upgraded. Happy Helming!"

    def run(self, args: list[str]) -> str:
        """``helm rollback`` (the release deployed again as a new revision) or ``helm uninstall`` (the controller
        gone: no pods, no webhook, nothing reconciles); what helm does to the release record, not to a chart."""
        self.runs.append(list(args))
        c = self.kube.controller
        if args[0] == "rollback" and c.helm_release is not None:
            c.helm_release = replace(c.helm_release, status="deployed", revision=c.helm_release.revision + 1)
            return "Rollback was a success! Happy Helming!"
        if args[0] == "uninstall":
            self.kube.uninstall_controller()
            return f"release \"{args[1]}\" uninstalled"
        raise ValueError(f"the simulated helm runs rollback and uninstall, not {args[0]!r}")


class SimBootstrapKubernetes(SimKubernetes):
    """``BootstrapKubernetesPort`` on the simulated cluster."""

    def __init__(
        self,
        sim: Simulation,
        *,
        server_version: tuple[int, int] = (1, 31),
        controller: SimController | None = None,
        route_new_target_groups: bool = False,
    ) -> None:
        super().__init__(sim)
        self.version = server_version
        self.controller = controller or SimController()
        self.route_new_target_groups = route_new_target_groups
        self.service_accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.applied: list[AppliedObject] = []
        self._ingress_events: dict[tuple[str, str], Any] = {}
        if self.controller.namespace not in sim.cluster.namespaces:
            sim.cluster.add_namespace(self.controller.namespace, {"kubernetes.io/metadata.name": self.controller.namespace})
        if not self.controller.installed:
            # No controller: nothing reconciles and no webhook is configured (so pods are admitted, ungated).
            sim.lbc.up = False
            sim.lbc.spec = sim.lbc.spec.model_copy(update={"webhook_failure_policy": "Ignore"})

    # --- the controller's installation ----------------------------------------------------------------
    def install_controller(self, chart_version: str, namespace: str, values: dict[str, Any]) -> None:
        c = self.controller
        policy = (values.get("podMutatorWebhookConfig") or {}).get("failurePolicy", "Ignore")
        was_up = c.installed and self.sim.lbc.up
        c.installed, c.version, c.namespace = True, CONTROLLER_VERSION, namespace
        revision = c.helm_release.revision + 1 if c.helm_release else 1
        c.helm_release = HelmRelease("aws-load-balancer-controller", namespace, chart_version, "deployed",
                                     copy.deepcopy(values), revision=revision)
        c.generation += 1
        update: dict[str, Any] = {"webhook_failure_policy": policy}
        backoff = values.get("targetgroupbindingMaxExponentialBackoffDelay")
        if backoff:  # the flag's default (16m40s) otherwise, as the chart leaves it out
            update["max_backoff_seconds"] = go_duration_seconds(backoff)
        self.sim.lbc.spec = self.sim.lbc.spec.model_copy(update=update)
        self.sim.log("controller", f"helm upgrade --install: chart {chart_version}, webhook failurePolicy {policy}"
                     + (f", back-off cap {backoff}" if backoff else ""))
        self.sim.loop.after(c.startup_seconds, self._controller_pods_ready, was_up)

    def uninstall_controller(self) -> None:
        """``helm uninstall``: the controller's Deployment and webhook are gone, as on a cluster never bootstrapped."""
        self.controller.installed, self.controller.helm_release = False, None
        self.sim.lbc.up = False
        self.sim.lbc.spec = self.sim.lbc.spec.model_copy(update={"webhook_failure_policy": "Ignore"})
        self.sim.log("controller", "helm uninstall: the controller is removed")

    def _controller_pods_ready(self, was_up: bool) -> None:
        self.controller.observed_generation = self.controller.generation
        if not was_up:
            self.sim.lbc._come_back()  # pods Ready -> leader election -> full resync (the simulated controller)
            self.sim.loop.after(self.sim.lbc.spec.leader_election_seconds, self._reconcile_all_ingresses)

    def _controller_deployment(self) -> Deployment:
        c = self.controller
        up = self.sim.lbc.up and c.observed_generation >= c.generation
        selector = {CONTROLLER_NAME_LABEL[0]: CONTROLLER_NAME_LABEL[1]}
        return Deployment(
            namespace=c.namespace, name=CONTROLLER_DEPLOYMENT, uid="controller-uid", replicas=c.replicas,
            selector=selector,
            template=PodTemplate(containers=(Container("aws-load-balancer-controller", f"{CONTROLLER_IMAGE}:{c.version}"),),
                                 labels=selector),
            max_surge="25%", max_unavailable="25%", generation=c.generation,
            observed_generation=c.observed_generation, updated_replicas=c.replicas if up else 0,
            ready_replicas=c.replicas if up else 0, available_replicas=c.replicas if up else 0,
        )

    # --- reads the bootstrap adds ---------------------------------------------------------------------
    def server_version(self) -> tuple[int, int]:
        self._call("server_version")
        return self.version

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        if (namespace, name) == (self.controller.namespace, CONTROLLER_DEPLOYMENT):
            self._call("get_deployment")
            if not self.controller.installed:
                raise NotFoundError(f'deployments.apps "{name}" not found')
            return self._controller_deployment()
        return super().get_deployment(namespace, name)

    def list_deployments(self, namespace: str) -> list[Deployment]:
        self._call("list_deployments")
        self._namespace_exists(namespace)
        found = [d.snapshot() for (ns, _), d in sorted(self.sim.cluster.deployments.items()) if ns == namespace]
        if namespace == self.controller.namespace and self.controller.installed:
            found.append(self._controller_deployment())
        return found

    def get_mutating_webhook(self, name: str) -> MutatingWebhook:
        self._call("get_mutating_webhook")
        if name != WEBHOOK_CONFIGURATION or not self.controller.installed:
            raise NotFoundError(f'mutatingwebhookconfigurations.admissionregistration.k8s.io "{name}" not found')
        entry = WebhookEntry(
            POD_WEBHOOK,
            self.sim.lbc.spec.webhook_failure_policy,
            {"matchExpressions": [{"key": INJECT_LABEL, "operator": "In", "values": ["enabled"]}]},
            {"matchExpressions": [{"key": CONTROLLER_NAME_LABEL[0], "operator": "NotIn",
                                   "values": [CONTROLLER_NAME_LABEL[1]]}]},
        )
        return MutatingWebhook(name, (entry,))

    def ready_endpoints(self, namespace: str, service: str) -> int:
        self._call("ready_endpoints")
        if (namespace, service) == (self.controller.namespace, WEBHOOK_SERVICE):
            dep = self._controller_deployment() if self.controller.installed else None
            return dep.available_replicas if dep else 0
        svc = self.sim.cluster.services.get((namespace, service))
        if svc is None:
            raise NotFoundError(f'services "{service}" not found')
        return sum(1 for p in self.sim.cluster.service_pods(svc) if p.ready and not p.terminating)

    def dry_run_create_pod(self, namespace: str, manifest: dict[str, Any]) -> Pod:
        self._call("dry_run_create_pod")
        self._namespace_exists(namespace)
        meta, spec = manifest.get("metadata") or {}, manifest.get("spec") or {}
        labels = dict(meta.get("labels") or {})
        gates = tuple(g["conditionType"] for g in spec.get("readinessGates") or [])
        if self.controller.installed:
            ok, injected = self.sim.lbc.admit(namespace, labels)
            if not ok:
                raise WebhookNotReadyError(
                    f'Internal error occurred: failed calling webhook "{POD_WEBHOOK}": no endpoints available for '
                    f'service "{WEBHOOK_SERVICE}"'
                )
            gates = gates + tuple(g for g in injected if g not in gates)
        return Pod(namespace=namespace, name=(meta.get("name") or meta.get("generateName", "pod-") + "dryrn"),
                   uid="", ip=None, labels=labels, phase="Pending", readiness_gates=gates,
                   conditions=(PodCondition("PodScheduled", "False"),), terminating=False, restart_count=0,
                   created_at=self.sim.clock.t)

    # --- server-side apply ------------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False) -> AppliedObject:
        self._call("apply")
        kind = manifest.get("kind")
        meta = manifest.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace", "")
        if not name:
            raise InvalidInputError(f"{kind}: metadata.name: Required value")
        handler = {
            "Namespace": self._apply_namespace,
            "ServiceAccount": self._apply_service_account,
            "Service": self._apply_service,
            "Ingress": self._apply_ingress,
            "Deployment": self._apply_deployment,
        }.get(str(kind))
        if handler is None:
            raise InvalidInputError(f"the simulated API server does not know kind {kind!r}")
        if kind != "Namespace":
            self._namespace_exists(namespace)
        action = handler(manifest, namespace, name, dry_run)
        result = AppliedObject(str(kind), namespace if kind != "Namespace" else "", name,
                               "validated" if dry_run else action)
        if not dry_run:
            self.applied.append(result)
            if action != "unchanged":
                self.sim.log("apply", f"server-side apply {result.ref}: {action}")
        return result

    def _apply_namespace(self, m: dict[str, Any], _: str, name: str, dry_run: bool) -> str:
        labels = dict((m.get("metadata") or {}).get("labels") or {})
        current = self.sim.cluster.namespaces.get(name)
        if current is None:
            if not dry_run:
                self.sim.cluster.add_namespace(name, {"kubernetes.io/metadata.name": name, **labels})
                self.sim.log("namespace", f"namespace {name} created with {labels}")
            return "created"
        if all(current.get(k) == v for k, v in labels.items()):
            return "unchanged"
        if not dry_run:
            for k, v in labels.items():
                self.sim.cluster.label_namespace(name, k, v)
        return "configured"

    def _apply_service_account(self, m: dict[str, Any], ns: str, name: str, dry_run: bool) -> str:
        key = (ns, name)
        before = self.service_accounts.get(key)
        if before == m:
            return "unchanged"
        if not dry_run:
            self.service_accounts[key] = copy.deepcopy(m)
        return "created" if before is None else "configured"

    def _apply_service(self, m: dict[str, Any], ns: str, name: str, dry_run: bool) -> str:
        spec = m.get("spec") or {}
        svc = Service(ns, name, dict(spec.get("selector") or {}), tuple(
            ServicePort(int(p["port"]), p.get("targetPort", p["port"]), p.get("name", "")) for p in spec.get("ports") or []
        ))
        before = self.sim.cluster.services.get((ns, name))
        if before == svc:
            return "unchanged"
        if not dry_run:
            self.sim.cluster.add_service(svc)
            for b in self.sim.lbc.bindings:  # the controller watches Services: its bindings follow the selector
                if (b.tgb.namespace, b.tgb.service_name) == (ns, name):
                    b.service = svc
            self.sim.lbc.services_changed(ns)
            self._reconcile_ingresses_in(ns)
        return "created" if before is None else "configured"

    def _apply_ingress(self, m: dict[str, Any], ns: str, name: str, dry_run: bool) -> str:
        meta, spec = m.get("metadata") or {}, m.get("spec") or {}
        annotations = dict(meta.get("annotations") or {})
        ing = Ingress(ns, name, spec.get("ingressClassName") or annotations.get("kubernetes.io/ingress.class"),
                      annotations, tuple(IngressBackend(s, p) for s, p in ingress_backends(m)))
        before = self.sim.cluster.ingresses.get((ns, name))
        if before == ing:
            return "unchanged"
        if not dry_run:
            self.sim.cluster.add_ingress(ing)
            self._schedule_ingress(ns, name)
        return "created" if before is None else "configured"

    def _apply_deployment(self, m: dict[str, Any], ns: str, name: str, dry_run: bool) -> str:
        spec = m.get("spec") or {}
        tmeta = (spec.get("template") or {}).get("metadata") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        template = PodTemplate(
            containers=tuple(Container(c["name"], c["image"], pre_stop_sleep_seconds(c), "readinessProbe" in c)
                             for c in pod.get("containers") or []),
            readiness_gates=tuple(g["conditionType"] for g in pod.get("readinessGates") or []),
            termination_grace_period_seconds=int(pod.get("terminationGracePeriodSeconds", 30)),
            labels=dict(tmeta.get("labels") or {}),
            annotations=dict(tmeta.get("annotations") or {}),
        )
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            surge, unavailable = 0, "100%"
        else:
            rolling = strategy.get("rollingUpdate") or {}
            surge, unavailable = rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")
        replicas = int(spec.get("replicas", 1))
        selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
        min_ready = int(spec.get("minReadySeconds", 0))
        cluster = self.sim.cluster
        d = cluster.deployments.get((ns, name))
        if d is None:
            if not dry_run:
                cluster.create_deployment(
                    DepObj(ns, name, cluster.uid(), replicas, selector, template, surge, unavailable, min_ready,
                           int(spec.get("progressDeadlineSeconds", 600)), int(spec.get("revisionHistoryLimit", 10))),
                    steady=False,
                )
            return "created"
        wanted = (replicas, selector, template_hash(template), surge, unavailable, min_ready)
        if (d.replicas, d.selector, template_hash(d.template), d.max_surge, d.max_unavailable,
                d.min_ready_seconds) == wanted:
            return "unchanged"
        if selector != d.selector:
            raise InvalidInputError(f"Deployment.apps {name!r} is invalid: spec.selector: field is immutable")
        if not dry_run:
            d.replicas, d.template, d.max_surge, d.max_unavailable = replicas, template, surge, unavailable
            d.min_ready_seconds = min_ready
            d.generation += 1
            d.rv = cluster.next_rv()
            self.sim.log("deployment", f"Deployment {name} applied (template {template_hash(template)})")
            cluster.request_sync(d)
        return "configured"

    # --- the simulated controller's Ingress reconcile -----------------------------------------------------
    def _schedule_ingress(self, ns: str, name: str) -> None:
        event = self._ingress_events.get((ns, name))
        if event is not None and event.alive:
            return
        self._ingress_events[(ns, name)] = self.sim.loop.after(self.sim.lbc.latency(), self._reconcile_ingress, ns, name)

    def _reconcile_ingresses_in(self, ns: str) -> None:
        for (ins, iname) in list(self.sim.cluster.ingresses):
            if ins == ns:
                self._schedule_ingress(ins, iname)

    def _reconcile_all_ingresses(self) -> None:
        for (ns, name) in list(self.sim.cluster.ingresses):
            self._schedule_ingress(ns, name)

    def _reconcile_ingress(self, ns: str, name: str) -> None:
        if not (self.controller.installed and self.sim.lbc.up):
            return  # picked up again when the controller comes up
        ing = self.sim.cluster.ingresses.get((ns, name))
        if ing is None:
            return
        spec = IngressSpec(name=name, ingress_class=ing.ingress_class or "alb", annotations=ing.annotations)
        interval, timeout, healthy, unhealthy = spec.health_check()
        for backend in ing.backends:
            svc = self.sim.cluster.services.get((ns, backend.service_name))
            if svc is None:
                continue
            existing = next((b for b in self.sim.lbc.bindings
                             if (b.tgb.namespace, b.tgb.service_name) == (ns, svc.name)), None)
            if existing is not None:
                tg = existing.tg  # the controller keeps the group and modifies its settings
                tg.interval, tg.timeout = interval, timeout
                tg.healthy_threshold, tg.unhealthy_threshold = healthy, unhealthy
                tg.delay = spec.deregistration_delay()
                continue
            port = backend.service_port if isinstance(backend.service_port, int) else svc.ports[0].port
            target_port = next((p.target_port for p in svc.ports if p.port == port), port)
            tg_name = lbc_name(ns, svc.name, f"{self.sim.scenario.cluster.name}/{name}")
            tg = self.sim.alb.create_target_group(
                tg_name, int(target_port) if isinstance(target_port, int) else 80, spec.target_type(),
                (interval, timeout, healthy, unhealthy), spec.deregistration_delay(),
            )
            tgb = TargetGroupBinding(ns, tg_name, tg.arn, spec.target_type(), svc.name, port)
            self.sim.cluster.add_tgb(tgb)
            self.sim.lbc.bind(tgb, tg, svc)
            if self.route_new_target_groups:
                self.sim.traffic.tgs.append(tg)
            self.sim.log("controller", f"Ingress {ns}/{name}: target group {tg_name} ({spec.target_type()}) and "
                                       f"TargetGroupBinding created")
            self.sim.lbc.services_changed(ns)


def bootstrap_ports(
    sim: Simulation, *, server_version: tuple[int, int] = (1, 31), controller: SimController | None = None
) -> tuple[SimBootstrapKubernetes, SimHelm]:
    """The bootstrap's Kubernetes port and helm on ``sim``."""
    kube = SimBootstrapKubernetes(sim, server_version=server_version, controller=controller)
    return kube, SimHelm(kube)
