"""Manifest hardening: an app's Deployment, Service and Ingress made safe to roll without dropping requests.

Job: validate the three manifests' shape (every problem named by its field path, before anything touches a
cluster), then return hardened copies and the list of every change made, each with its reason:

- IP targets (``alb.ingress.kubernetes.io/target-type: ip``). An explicit ``instance`` on a gated app is refused:
  with instance targets the ALB sends traffic to nodes, not pods, so neither the controller's readiness gate
  (docs/facts.md, Load Balancer Controller: readiness gate) nor albgate's can tie a pod to its target.
- ``maxUnavailable: 0`` (RollingUpdate): an old pod may only go for a new *available* one (docs/facts.md,
  Kubernetes Deployment controller).
- a preStop drain on every container: the native ``sleep`` action where the cluster has it (beta and on by
  default from 1.30: docs/facts.md, Pod readiness and termination), else ``exec: sleep N``; the ALB keeps
  sending new requests for some seconds after deregistration starts (docs/facts.md, Deregistration and
  draining: ~10 s reported, 25 s enough).
- ``terminationGracePeriodSeconds`` >= preStop + the longest request: preStop runs *inside* the grace period
  (docs/facts.md, Pod readiness and termination).
- a deregistration delay >= the longest request: when it expires, requests in flight are dropped
  (docs/facts.md, Deregistration and draining).
- an explicit health-check interval annotation (above the check timeout), so albgate's poll timing and the
  time to a new target's first passing check are known values.

Target-group annotations are read as the controller reads them, the Service's over the Ingress's
(``lambdas/domain/lbc_annotations.py``), and a changed value is written where it takes effect: on the Service
when the Service sets that annotation (a value on the Ingress would be ignored), else on the Ingress.

Invariant: pure. Inputs are never mutated; the same inputs give the same outputs and the same change list;
hardening a hardened result changes nothing (idempotent, so a re-run of the bootstrap is a no-op). With
``harden=False`` the manifests come back unchanged and the would-be changes are returned as findings.
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdas.domain import lbc_annotations as lbc
from lambdas.domain import safety
from lambdas.domain.health_check import HARDENED, hardened_health_check
from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.ports import IN_SERVICE, SERVING_LABEL
from lambdas.domain.lbc_annotations import (
    DEFAULT_DEREGISTRATION_DELAY_SECONDS,
    DEREGISTRATION_DELAY,
    HC_INTERVAL,
    HC_TIMEOUT,
    HEALTHY_THRESHOLD,
    MAX_DEREGISTRATION_DELAY_SECONDS,
    TARGET_TYPE,
    TG_ATTRIBUTES,
    UNHEALTHY_THRESHOLD,
    parse_attributes,
    render_attributes,
)
from lambdas.domain.validators import DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN, percent
from lambdas.domain.plan import resolve_int_or_percent

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

# Defaults that apply when neither the Service nor the Ingress says anything (lambdas/domain/lbc_annotations.py;
# docs/facts.md, "Service annotations override the Ingress's").
DEFAULT_TARGET_TYPE = str(lbc.DEFAULTS[TARGET_TYPE])
DEFAULT_HC_INTERVAL_SECONDS = int(lbc.DEFAULTS[HC_INTERVAL])
DEFAULT_HC_TIMEOUT_SECONDS = int(lbc.DEFAULTS[HC_TIMEOUT])
# Kubernetes default terminationGracePeriodSeconds (docs/facts.md, Pod readiness and termination)
DEFAULT_GRACE_SECONDS = 30
# Kubernetes core/v1 Service names are DNS-1035 labels: they start with a letter.
# preStop exec commands that are a drain sleep: ["sleep", "30"], or a shell script starting with "sleep 30".
_SLEEP_SCRIPT = re.compile(r"^\s*(?:exec\s+)?(?:\S*/)?sleep\s+(\d+)(?:\.\d+)?([smh]?)\s*(?:$|;|&&|\|\|)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}
_SHELLS = ("sh", "bash", "ash", "dash")

EXPECTED_TYPES = {
    "deployment": ("apps/v1", "Deployment"),
    "service": ("v1", "Service"),
    "ingress": ("networking.k8s.io/v1", "Ingress"),
}


@dataclass(frozen=True)
class HardeningPolicy:
    """What hardening aims for; built from the rollout policy (``from_rollout_policy``)."""

    pre_stop_seconds: int = 30
    max_request_seconds: int = 30
    # The ALB's shortest interval, with the check timeout lowered below it (lambdas/domain/health_check.py: one
    # default for the product and the simulation). A new target needs one passing check, so this shortens every
    # gated step; an existing annotation at or below it is kept.
    health_check_interval_seconds: int = HARDENED[HC_INTERVAL]
    # cluster >= 1.30 (docs/facts.md, Pod readiness and termination: PodLifecycleSleepAction beta, on by default)
    native_sleep: bool = True
    gated: bool = True  # the app is rolled behind readiness gates (instance targets are refused)
    harden: bool = True  # False: change nothing, report the would-be changes as findings

    @classmethod
    def from_rollout_policy(cls, policy: Any, *, native_sleep: bool, **overrides: Any) -> "HardeningPolicy":
        return cls(
            pre_stop_seconds=policy.pre_stop_seconds,
            max_request_seconds=policy.max_request_seconds,
            native_sleep=native_sleep,
            **overrides,
        )


@dataclass(frozen=True)
class Change:
    """One change to one field of one manifest, with the value before and after and why."""

    object: str  # "Deployment/web"
    field: str  # "spec.template.spec.terminationGracePeriodSeconds"
    before: Any
    after: Any
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.object} {self.field}: {self.before!r} -> {self.after!r} ({self.reason})"


@dataclass
class Hardened:
    deployment: dict[str, Any]
    service: dict[str, Any]
    ingress: dict[str, Any]
    changes: list[Change] = field(default_factory=list)  # applied (harden=True)
    findings: list[Change] = field(default_factory=list)  # not applied because harden=False

    def manifests(self) -> list[dict[str, Any]]:
        """In apply order: Service and Ingress first, so the binding exists before new pods are created."""
        return [self.service, self.ingress, self.deployment]

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "service": self.service,
            "ingress": self.ingress,
            "changes": [c.as_dict() for c in self.changes],
            "findings": [c.as_dict() for c in self.findings],
        }


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------
def pre_stop_sleep_seconds(container: dict[str, Any]) -> int | None:
    """Seconds a container's preStop sleeps (the native ``sleep`` action or an exec ``sleep N``), else None.

    The same reading as the Kubernetes adapter's (``lambdas/adapters/kubernetes.py``), kept here because the
    domain may not import adapters.
    """
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if pre_stop.get("sleep") is not None:
        return int((pre_stop["sleep"] or {}).get("seconds", 0))
    command = [str(c) for c in ((pre_stop.get("exec") or {}).get("command") or [])]
    if len(command) == 2 and command[0].rsplit("/", 1)[-1] == "sleep":
        script = f"sleep {command[1]}"
    elif len(command) >= 3 and command[0].rsplit("/", 1)[-1] in _SHELLS and command[1] == "-c":
        script = command[2]
    else:
        return None
    m = _SLEEP_SCRIPT.match(script)
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else None


def ingress_backends(ingress: dict[str, Any]) -> list[tuple[str, int | str]]:
    """(service name, port number or name) of every Service backend of an Ingress, in order, unique."""
    spec = ingress.get("spec") or {}
    found: list[tuple[str, int | str]] = []

    def add(backend: Any) -> None:
        service = (backend or {}).get("service") if isinstance(backend, dict) else None
        if isinstance(service, dict) and service.get("name"):
            port = service.get("port") or {}
            found.append((service["name"], port.get("number", port.get("name", ""))))

    add(spec.get("defaultBackend"))
    for rule in spec.get("rules") or []:
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            add((path or {}).get("backend"))
    return list(dict.fromkeys(found))


def target_type(ingress: dict[str, Any], service: dict[str, Any] | None = None) -> tuple[str, str]:
    """(target type, where it was read): a Service annotation wins over the Ingress's (the controller merges
    them with the Service's taking precedence); absent, the controller's default ``instance``."""
    found = lbc.effective(TARGET_TYPE, annotations_of(ingress), annotations_of(service))
    return (found.value if found.value is not None else DEFAULT_TARGET_TYPE), found.source


def annotations_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    """A manifest's metadata.annotations ({} when it has none)."""
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------
def validate(
    deployment: Any, service: Any, ingress: Any, *, namespace: str, container: str | None = None
) -> list[str]:
    """Every shape problem of the three manifests, one line each, ``<manifest>.<field path>: <problem; fix>``.

    Only what albgate relies on or changes is checked here; the API server checks the rest against its own
    schemas when the apply step dry-runs the manifests first (``fieldValidation=Strict``).
    """
    problems: list[str] = []
    docs = {"deployment": deployment, "service": service, "ingress": ingress}
    for key, doc in docs.items():
        if not isinstance(doc, dict):
            problems.append(f"{key}: expected a {EXPECTED_TYPES[key][1]} manifest (a mapping), got {type(doc).__name__}")
            continue
        api_version, kind = EXPECTED_TYPES[key]
        if doc.get("apiVersion") != api_version or doc.get("kind") != kind:
            problems.append(
                f"{key}: apiVersion/kind is {doc.get('apiVersion')!r}/{doc.get('kind')!r}; write "
                f"apiVersion: {api_version} and kind: {kind}"
            )
        meta = doc.get("metadata")
        if not isinstance(meta, dict):
            problems.append(f"{key}.metadata: required; give at least metadata.name")
            continue
        name = meta.get("name")
        rule = DNS1035_LABEL if key == "service" else DNS1123_SUBDOMAIN
        if not isinstance(name, str) or not rule.match(name):
            what = "a DNS-1035 label (lower-case letters, digits, '-', starting with a letter, at most 63)"
            problems.append(
                f"{key}.metadata.name: {name!r} is not a valid {kind} name; use "
                + (what if key == "service" else "lower-case letters, digits, '-' and '.'")
            )
        ns = meta.get("namespace")
        if ns is not None and ns != namespace:
            problems.append(
                f"{key}.metadata.namespace: {ns!r} differs from the application's namespace {namespace!r}; "
                "remove it or make them equal"
            )
        for part in ("labels", "annotations"):
            value = meta.get(part)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                problems.append(f"{key}.metadata.{part}: must map names to strings (quote numbers: \"10\")")
    if problems:
        return problems  # the field checks below assume the documents are mappings with metadata

    problems += _validate_deployment(deployment, container)
    problems += _validate_service(service, deployment)
    problems += _validate_ingress(ingress, service)
    return problems


def _validate_deployment(dep: dict[str, Any], container: str | None) -> list[str]:
    p: list[str] = []
    spec = dep.get("spec")
    if not isinstance(spec, dict):
        return ["deployment.spec: required (selector, template)"]
    replicas = spec.get("replicas")
    if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0):
        p.append(f"deployment.spec.replicas: {replicas!r} is not a whole number >= 0")
    selector = spec.get("selector")
    match_labels = (selector or {}).get("matchLabels") if isinstance(selector, dict) else None
    if not isinstance(match_labels, dict) or not match_labels:
        p.append(
            "deployment.spec.selector.matchLabels: required (a Deployment's selector must name the pod labels); "
            "albgate does not support selectors made of matchExpressions alone"
        )
        match_labels = {}
    expressions = selector.get("matchExpressions") if isinstance(selector, dict) else None
    named = [e.get("key") for e in (expressions if isinstance(expressions, list) else []) if isinstance(e, dict)]
    if SERVING_LABEL in match_labels or SERVING_LABEL in named:
        p.append(
            f"deployment.spec.selector: names {SERVING_LABEL}, the label albgate changes on a pod to take it out of "
            "its Service's endpoints: a pod whose label changed would leave its ReplicaSet. Remove it from the "
            "selector (the Service selects it)"
        )
    template = spec.get("template")
    if not isinstance(template, dict):
        return p + ["deployment.spec.template: required (metadata.labels and spec.containers)"]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if match_labels and not _selects(match_labels, labels):
        p.append(
            f"deployment.spec.template.metadata.labels: {labels} do not match spec.selector.matchLabels "
            f"{match_labels}; the API server refuses such a Deployment"
        )
    strategy = spec.get("strategy") or {}
    if not isinstance(strategy, dict):
        p.append("deployment.spec.strategy: must be a mapping (type, rollingUpdate)")
        strategy = {}
    stype = strategy.get("type", "RollingUpdate")
    if stype not in ("RollingUpdate", "Recreate"):
        p.append(f"deployment.spec.strategy.type: {stype!r}; use RollingUpdate or Recreate")
    for key in ("maxSurge", "maxUnavailable"):
        value = (strategy.get("rollingUpdate") or {}).get(key)
        if value is not None and not (
            (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
            or (isinstance(value, str) and percent(value) is not None)
        ):
            p.append(f"deployment.spec.strategy.rollingUpdate.{key}: {value!r} is not a pod count or a percentage like '25%'")
    pod = template.get("spec")
    if not isinstance(pod, dict):
        return p + ["deployment.spec.template.spec: required (containers)"]
    grace = pod.get("terminationGracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 0):
        p.append(f"deployment.spec.template.spec.terminationGracePeriodSeconds: {grace!r} is not a whole number >= 0")
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        return p + ["deployment.spec.template.spec.containers: required, at least one container"]
    names: list[str] = []
    for i, c in enumerate(containers):
        where = f"deployment.spec.template.spec.containers[{i}]"
        if not isinstance(c, dict):
            p.append(f"{where}: must be a mapping with name and image")
            continue
        name = c.get("name")
        if not isinstance(name, str) or not DNS1123_LABEL.match(name):
            p.append(f"{where}.name: {name!r} is not a container name (lower-case letters, digits, '-')")
        elif name in names:
            p.append(f"{where}.name: {name!r} is used twice; container names must be unique")
        else:
            names.append(name)
        if not isinstance(c.get("image"), str) or not c.get("image"):
            p.append(f"{where}.image: required; name the image, preferably by digest")
        lifecycle = c.get("lifecycle")
        if lifecycle is not None and not isinstance(lifecycle, dict):
            p.append(f"{where}.lifecycle: must be a mapping (preStop, postStart)")
    if container is not None and names and container not in names:
        p.append(
            f"deployment.spec.template.spec.containers: no container named {container!r} (the application's "
            f"container); the template has {names}"
        )
    return p


def _validate_service(svc: dict[str, Any], dep: dict[str, Any]) -> list[str]:
    p: list[str] = []
    spec = svc.get("spec")
    if not isinstance(spec, dict):
        return ["service.spec: required (selector, ports)"]
    if spec.get("type") == "ExternalName":
        p.append("service.spec.type: ExternalName has no pods behind it; an ALB can only target pods of a selector")
    selector = spec.get("selector")
    labels = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not selector:
        p.append("service.spec.selector: required; it must select the Deployment's pods (their template labels)")
    elif labels and not _selects(selector, labels):
        p.append(
            f"service.spec.selector: {selector} does not select the Deployment's pod labels {labels}; the ALB "
            "would have no targets"
        )
    p += _validate_target_group_annotations("service", annotations_of(svc))
    ports = spec.get("ports")
    if not isinstance(ports, list) or not ports:
        return p + ["service.spec.ports: required, at least one port"]
    for i, port in enumerate(ports):
        number = (port or {}).get("port") if isinstance(port, dict) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            p.append(f"service.spec.ports[{i}].port: {number!r} is not a port number 1-65535")
    return p


def _validate_ingress(ing: dict[str, Any], svc: dict[str, Any]) -> list[str]:
    p: list[str] = []
    if not isinstance(ing.get("spec"), dict):
        return ["ingress.spec: required (rules or defaultBackend pointing at the Service)"]
    svc_name = _name(svc)
    backends = ingress_backends(ing)
    mine = [port for name, port in backends if name == svc_name]
    if not mine:
        p.append(
            f"ingress.spec: no backend names Service {svc_name!r} (backends: {[b for b, _ in backends] or 'none'}); "
            "route at least one path (or the defaultBackend) to it"
        )
    ports = [x for x in ((svc.get("spec") or {}).get("ports") or []) if isinstance(x, dict)]
    for port in mine:
        if not any(port in (x.get("port"), x.get("name")) for x in ports):
            p.append(
                f"ingress.spec: the backend port {port!r} of Service {svc_name!r} is not one of its ports "
                f"{[x.get('name') or x.get('port') for x in ports]}"
            )
    return p + _validate_target_group_annotations("ingress", annotations_of(ing))


def _validate_target_group_annotations(key: str, annotations: dict[str, Any]) -> list[str]:
    """The target-group annotations albgate reads, on either object: the controller reads both (the Service's
    first), so a malformed one on the Service breaks the target group as surely as on the Ingress."""
    p: list[str] = []
    for name in (HC_INTERVAL, HC_TIMEOUT, HEALTHY_THRESHOLD, UNHEALTHY_THRESHOLD):
        if name in annotations and not str(annotations[name]).isdigit():
            what = "seconds" if name in (HC_INTERVAL, HC_TIMEOUT) else "checks"
            p.append(f"{key}.metadata.annotations[{name}]: {annotations[name]!r} is not a whole number of {what}")
    if TG_ATTRIBUTES in annotations:
        delay = parse_attributes(annotations[TG_ATTRIBUTES]).get(DEREGISTRATION_DELAY)
        if delay is not None and (not delay.isdigit() or int(delay) > MAX_DEREGISTRATION_DELAY_SECONDS):
            p.append(
                f"{key}.metadata.annotations[{TG_ATTRIBUTES}]: {DEREGISTRATION_DELAY}={delay!r} must be "
                f"0-{MAX_DEREGISTRATION_DELAY_SECONDS} (the range ELB accepts)"
            )
    return p


# ---------------------------------------------------------------------------------------------------------
# Hardening
# ---------------------------------------------------------------------------------------------------------
def pre_stop_handler(seconds: int, native_sleep: bool) -> dict[str, Any]:
    """A preStop that only sleeps: the native sleep action (>= 1.30) or ``exec: sleep N`` (needs a sleep binary)."""
    if native_sleep:
        return {"sleep": {"seconds": seconds}}
    return {"exec": {"command": ["sleep", str(seconds)]}}


def harden(
    deployment: dict[str, Any],
    service: dict[str, Any],
    ingress: dict[str, Any],
    policy: HardeningPolicy,
    *,
    namespace: str,
    container: str | None = None,
) -> Hardened:
    """Validate, then return hardened copies and every change (or, with ``policy.harden`` False, the findings).

    Raises InvalidInputError listing every shape problem, and UnsafeConfigurationError when a gated app asks
    for instance targets (hardening never overrides an explicit choice the rollout cannot work with).
    """
    problems = validate(deployment, service, ingress, namespace=namespace, container=container)
    if problems:
        raise InvalidInputError("manifests are invalid: " + "; ".join(problems))
    dep, svc, ing = (copy.deepcopy(x) for x in (deployment, service, ingress))
    changes: list[Change] = []
    dep_id, ing_id = f"Deployment/{_name(dep)}", f"Ingress/{_name(ing)}"

    def record(obj: str, path: str, before: Any, after: Any, reason: str) -> None:
        changes.append(Change(obj, path, before, after, reason))

    # --- namespace: every object goes to the application's namespace --------------------------------------
    for obj in (dep, svc, ing):
        if obj["metadata"].get("namespace") is None:
            obj["metadata"]["namespace"] = namespace  # not a hardening change: where the manifest is applied

    # --- IP targets -----------------------------------------------------------------------------------------
    ttype, where = target_type(ing, svc)
    if policy.gated and ttype != "ip":
        if where != "default":
            raise UnsafeConfigurationError(
                f"{where} {'Service/' + _name(svc) if where == 'Service' else ing_id} asks for "
                f"{TARGET_TYPE}: {ttype}. A gated app needs IP targets: with instance targets the ALB sends "
                "traffic to node ports, so no target is one pod and no readiness gate (the controller's or "
                "albgate's) can hold an old pod until its replacement is healthy (docs/deploy/"
                f"pod_readiness_gate.md). Set {TARGET_TYPE}: ip, or mark the app as not gated"
            )
        ing["metadata"].setdefault("annotations", {})[TARGET_TYPE] = "ip"
        record(ing_id, f"metadata.annotations[{TARGET_TYPE}]", None, "ip",
               "the controller's default is instance; only IP targets map one pod to one target, which the "
               "readiness gates need")

    # --- strategy: never remove an old pod before a new one is available ----------------------------------
    spec = dep["spec"]
    replicas = spec.get("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if strategy.get("type", "RollingUpdate") == "Recreate":
        strategy["type"] = "RollingUpdate"
        record(dep_id, "spec.strategy.type", "Recreate", "RollingUpdate",
               "Recreate stops every old pod before any new one starts")
    rolling = strategy.setdefault("rollingUpdate", {})
    before_unavailable = rolling.get("maxUnavailable")
    if safety.unavailable_pods(before_unavailable, replicas) != 0 or before_unavailable is None:
        rolling["maxUnavailable"] = 0
        record(dep_id, "spec.strategy.rollingUpdate.maxUnavailable", before_unavailable if before_unavailable is not None else "25%", 0,
               "with maxUnavailable 0 the Deployment controller removes an old pod only for a new available one")
    surge = rolling.get("maxSurge")
    if surge is not None and resolve_int_or_percent(surge, max(replicas, 1), round_up=True) == 0:
        rolling["maxSurge"] = 1
        record(dep_id, "spec.strategy.rollingUpdate.maxSurge", surge, 1,
               "maxSurge 0 with maxUnavailable 0 is refused by the API server; one extra pod at a time")
    if strategy.get("type") is None:
        strategy["type"] = "RollingUpdate"

    # --- serving label: an old pod can leave its Service's endpoints and stay in its ReplicaSet ------------------
    if policy.gated:
        svc_id = f"Service/{_name(svc)}"
        labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
        if labels.get(SERVING_LABEL) != IN_SERVICE:
            before = labels.get(SERVING_LABEL)
            labels[SERVING_LABEL] = IN_SERVICE
            record(dep_id, f"spec.template.metadata.labels[{SERVING_LABEL}]", before, IN_SERVICE,
                   "the Service selects the pods by it too, and the Deployment's selector does not: albgate sets it "
                   "to \"false\" on the old pods a step removes, so they leave the load balancer before Kubernetes "
                   "deletes them (docs/rollout.md, \"Out of service before release\")")
        selector = svc["spec"].setdefault("selector", {})
        if selector.get(SERVING_LABEL) != IN_SERVICE:
            before = selector.get(SERVING_LABEL)
            selector[SERVING_LABEL] = IN_SERVICE
            record(svc_id, f"spec.selector[{SERVING_LABEL}]", before, IN_SERVICE,
                   "a pod whose serving label albgate set to \"false\" leaves the endpoints, and the Load Balancer "
                   "Controller deregisters its target while the pod runs on")

    # --- preStop drain on every container ---------------------------------------------------------------------
    pod = spec["template"]["spec"]
    longest_pre_stop = 0
    for i, c in enumerate(pod["containers"]):
        current = pre_stop_sleep_seconds(c)
        has_other = bool(((c.get("lifecycle") or {}).get("preStop"))) and current is None
        path = f"spec.template.spec.containers[{i}]({c['name']}).lifecycle.preStop"
        if has_other:
            # An httpGet/exec preStop that is not a sleep is the app's own drain: keep it, count the policy's
            # seconds for the grace period, and say so.
            longest_pre_stop = max(longest_pre_stop, policy.pre_stop_seconds)
            continue
        if safety.pre_stop_is_short(current, policy.pre_stop_seconds):
            handler = pre_stop_handler(policy.pre_stop_seconds, policy.native_sleep)
            c.setdefault("lifecycle", {})["preStop"] = handler
            how = "the native sleep action" if policy.native_sleep else "exec sleep (the image needs a sleep binary)"
            record(dep_id, path, f"sleep {current}" if current is not None else None, handler,
                   f"keep serving {policy.pre_stop_seconds} s after deregistration starts, while the ALB still sends "
                   f"new requests ({how})")
            current = policy.pre_stop_seconds
        longest_pre_stop = max(longest_pre_stop, current)

    # --- grace period covers preStop + the longest request ------------------------------------------------
    needed = safety.required_grace_seconds(longest_pre_stop, policy.max_request_seconds)
    grace = pod.get("terminationGracePeriodSeconds")
    if (grace if grace is not None else DEFAULT_GRACE_SECONDS) < needed:
        pod["terminationGracePeriodSeconds"] = needed
        record(dep_id, "spec.template.spec.terminationGracePeriodSeconds",
               grace if grace is not None else DEFAULT_GRACE_SECONDS, needed,
               f"preStop ({longest_pre_stop} s) runs inside the grace period; the requests taken just before it "
               f"ends need up to {policy.max_request_seconds} s more")

    # --- target-group settings: read as the controller reads them, written where they take effect ------------
    # The Service's annotation wins over the Ingress's, key by key (lambdas/domain/lbc_annotations.py; docs/facts.md,
    # "Service annotations override the Ingress's"): raising a value on the Ingress while the Service sets the same
    # key would change nothing, so a value the Service sets is changed on the Service.
    ing_annotations = ing["metadata"].setdefault("annotations", {})
    objects = {"Service": (svc, f"Service/{_name(svc)}"), "Ingress": (ing, ing_id)}

    def write(found: lbc.Effective, value: str, reason: str) -> None:
        obj, obj_id = objects[found.write_to]
        annotations = obj["metadata"].setdefault("annotations", {})
        before = annotations.get(found.key)
        annotations[found.key] = value
        if found.source == "Service":
            hidden = ing_annotations.get(found.key)
            reason += (f"; changed on the Service because its annotation overrides the Ingress's"
                       + (f" ({hidden!r}, ignored by the controller)" if hidden is not None else ""))
        record(obj_id, f"metadata.annotations[{found.key}]", before, value, reason)

    # --- deregistration delay fits the longest request ------------------------------------------------------
    found = lbc.effective(TG_ATTRIBUTES, ing_annotations, annotations_of(svc))
    attributes = parse_attributes(found.value or "")
    delay = int(attributes.get(DEREGISTRATION_DELAY, DEFAULT_DEREGISTRATION_DELAY_SECONDS))
    if delay < policy.max_request_seconds:
        attributes[DEREGISTRATION_DELAY] = str(min(policy.max_request_seconds, MAX_DEREGISTRATION_DELAY_SECONDS))
        write(found, render_attributes(attributes),
              f"a deregistration delay of {delay} s drops requests still running when it ends; the longest "
              f"takes {policy.max_request_seconds} s")

    # --- health-check interval (and the timeout the ALB needs below it) ---------------------------------------
    service_annotations = annotations_of(svc)
    hardened = dict(zip(("Ingress", "Service"), hardened_health_check(
        ing_annotations, service_annotations, policy.health_check_interval_seconds)))
    reasons = {
        HC_INTERVAL: "a new target needs one passing check to turn healthy; checking every {} s shortens every "
                     "gated step",
        HC_TIMEOUT: "lowered to {} s: the ALB requires the check timeout to be shorter than the interval",
    }
    for key in (HC_INTERVAL, HC_TIMEOUT):
        found = lbc.effective(key, ing_annotations, service_annotations)
        value = hardened[found.write_to].get(key)
        current = (service_annotations if found.write_to == "Service" else ing_annotations).get(key)
        if value is not None and value != current:
            write(found, value, reasons[key].format(value))

    if not policy.harden:
        return Hardened(
            deployment=_with_namespace(deployment, namespace),
            service=_with_namespace(service, namespace),
            ingress=_with_namespace(ingress, namespace),
            changes=[],
            findings=changes,
        )
    return Hardened(deployment=dep, service=svc, ingress=ing, changes=changes)


def _with_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {}).setdefault("namespace", namespace)
    return out
