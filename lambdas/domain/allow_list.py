"""What this albgate stack may touch (the configured clusters and applications), and the refusal of the rest.

Job: the model of the allow-list every function that reaches a cluster reads at cold start (the CDK config's
clusters and applications, shipped in a layer by stacks/constructs/allow_list.py), and the one question each
handler asks before its first call to a cluster: does the event it was given name only configured ones?
``AllowList.refuse`` raises ``InvalidInputError`` (permanent: Preflight's ends the rollout in `Rollout Refused`,
Bootstrap Validate's in `Bootstrap Refused`) with a message that names what was asked, what is configured
and the fix.

What an event names (``targets_of``) is read from every place a handler reads a cluster, namespace or Deployment
from: the rollout's ``request`` (the execution input, then every state), the bootstrap's ``request`` (in its state,
or under ``state`` for Apply Workloads), a Preflight Report request, the Gate Keeper's ``applications``. A
bootstrap application's Service and Ingress manifests must carry the configured names too: the bootstrap may
create those objects, and RBAC cannot hold a create to names.

Invariant: pure: no file, environment or network here; a refusal happens before any call to a cluster and names
at most ``MAX_LISTED`` configured entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas.domain.documents import quote
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import validation_message

MAX_LISTED = 5  # configured entries a refusal lists before "and N more"
# Where the allow-list is at run time: a layer of each function holds it (stacks/constructs/allow_list.py) and
# Lambda unpacks layers under /opt. Not in the environment: Lambda keeps at most 4 KB of environment per function
# (docs/facts.md, "AWS limits albgate checks"), and 60 applications' names do not fit.
ALLOW_LIST_PATH = "/opt/albgate/allow-list.json"
ALLOW_LIST_ENV = "ALBGATE_ALLOW_LIST"  # the environment variable that names the file (tests point it elsewhere)
FIX = "add it under applications in the CDK config (docs/foundation.md, Config reference) and deploy"


class AllowedApplication(BaseModel):
    """One configured application: what the functions may touch for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)
    service: str = Field(min_length=1)
    ingress: str = Field(min_length=1)


class AllowList(BaseModel):
    """The configured clusters and applications, as the functions read them (``ALBGATE_ALLOW_LIST``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: list[str] = Field(min_length=1)
    applications: list[AllowedApplication] = Field(min_length=1)

    def application(self, cluster: str, namespace: str, deployment: str) -> AllowedApplication | None:
        return next((a for a in self.applications
                     if (a.cluster, a.namespace, a.deployment) == (cluster, namespace, deployment)), None)

    def namespaces(self, cluster: str) -> list[str]:
        return sorted({a.namespace for a in self.applications if a.cluster == cluster})

    def refuse_cluster(self, cluster: str) -> None:
        """InvalidInputError unless ``cluster`` is configured."""
        if cluster not in self.clusters:
            raise InvalidInputError(
                f"cluster: {quote(cluster)} is not a cluster this albgate stack manages (it manages "
                f"{_listed(self.clusters)}); add it to clusters in the CDK config and deploy"
            )

    def refuse(self, targets: list[Target]) -> None:
        """InvalidInputError for the first target that is not configured; nothing when every one is."""
        for t in targets:
            self.refuse_cluster(t.cluster)
            if t.deployment is not None:
                app = self.application(t.cluster, t.namespace or "", t.deployment)
                if app is None:
                    here = [f"{a.namespace}/{a.deployment}" for a in self.applications if a.cluster == t.cluster]
                    raise InvalidInputError(
                        f"{t.where}: Deployment {quote(f'{t.namespace}/{t.deployment}')} of cluster {t.cluster!r} "
                        f"is not an application this albgate stack manages (it manages {_listed(here)}); {FIX}"
                    )
                for kind, name in t.objects:
                    wanted = app.service if kind == "Service" else app.ingress
                    if name != wanted:
                        raise InvalidInputError(
                            f"{t.where}: the {kind} manifest of {app.namespace}/{app.deployment} is named "
                            f"{quote(name)}, but the configured {kind.lower()} is {wanted!r}; name it so, or "
                            "change the CDK config and deploy"
                        )
            elif t.namespace is not None and t.namespace not in self.namespaces(t.cluster):
                raise InvalidInputError(
                    f"{t.where}: namespace {quote(t.namespace)} of cluster {t.cluster!r} has no application this "
                    f"albgate stack manages (its namespaces: {_listed(self.namespaces(t.cluster))}); {FIX}"
                )


@dataclass(frozen=True)
class Target:
    """Something an event asks a function to touch: a cluster, a namespace in it, or a Deployment there."""

    where: str  # the event's field, for the message
    cluster: str
    namespace: str | None = None
    deployment: str | None = None
    objects: tuple[tuple[str, str], ...] = ()  # (kind, name) of the bootstrap manifests besides the Deployment


def parse_allow_list(text: str) -> AllowList:
    """The allow-list from its JSON; ValueError naming every bad field."""
    try:
        return AllowList.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from exc


def targets_of(event: Any) -> list[Target]:
    """Every cluster, namespace and Deployment the event names where a handler reads one (module docstring)."""
    found: list[Target] = []
    if not isinstance(event, dict):
        return found
    state = event.get("state")
    requests = [("request", event.get("request"))]
    if isinstance(state, dict):
        requests.append(("state.request", state.get("request")))
    if "request" not in event and "state" not in event:
        requests.append(("input", event))  # a Preflight Report request, or the Gate Keeper's schedule input
    for where, request in requests:
        if isinstance(request, dict):
            found.extend(_targets(where, request))
    return found


def _targets(where: str, request: dict[str, Any]) -> Iterator[Target]:
    # A value that is missing or not a string names nothing a handler could act on: its own validation refuses it.
    cluster = request.get("cluster")
    if isinstance(cluster, str):
        yield Target(f"{where}.cluster", cluster)
        namespace, deployment = request.get("namespace"), request.get("deployment")
        if isinstance(namespace, str) and isinstance(deployment, str):
            yield Target(where, cluster, namespace, deployment)
        namespaces = request.get("namespaces")
        for i, ns in enumerate(namespaces if isinstance(namespaces, list) else []):
            if isinstance(ns, str):
                yield Target(f"{where}.namespaces.{i}", cluster, ns)
    apps = request.get("applications")
    for i, app in enumerate(apps if isinstance(apps, list) else []):
        if not isinstance(app, dict):
            continue
        place, app_cluster = f"{where}.applications.{i}", app.get("cluster", cluster)
        namespace, deployment = app.get("namespace"), app.get("deployment")
        if not (isinstance(app_cluster, str) and isinstance(namespace, str) and isinstance(deployment, str)):
            continue
        objects = []
        manifests = app.get("manifests")
        for key, kind in (("service", "Service"), ("ingress", "Ingress")):
            manifest = manifests.get(key) if isinstance(manifests, dict) else None
            name = (manifest.get("metadata") or {}).get("name") if isinstance(manifest, dict) else None
            if isinstance(name, str):
                objects.append((kind, name))
        yield Target(place, app_cluster, namespace, deployment, tuple(objects))


def _listed(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")
