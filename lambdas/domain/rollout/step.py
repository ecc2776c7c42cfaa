"""Start Step: write one step of the plan on the Deployment, on condition nobody else changed it.

Invariant: idempotent for a given input state (the write is a declarative patch, the step index moves only in
the returned state); the write is conditional on the resourceVersion of the read that checked the Deployment.
A rollout's step is not written when a CloudWatch alarm the policy names failed since the previous step's gate
passed (``alarms.since_gate``): the gate is then FAILED, the step index stays on the step that baked, and the
state machine goes to the rollback decision as for any failed gate.
"""

from __future__ import annotations

from typing import Any

from lambdas.domain import limits
from lambdas.domain.contract import ALARM_FIRED, ALB_METRICS_REGRESSED
from lambdas.domain.documents import quote
from lambdas.domain.errors import ConflictError, InvalidInputError, UnsafeConfigurationError
from lambdas.domain.gate import DrainResult, GateResult, Verdict
from lambdas.domain.ports import ALBGATE_GATE, Deployment, DeploymentPatch, Ports
from lambdas.domain.rollout import alarms, analysis
from lambdas.domain.rollout.out_of_service import put_back
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.state import RolloutState, StepRecord


# Reads and conditional writes Start Step tries before it leaves a 409 to the state machine's Retry: each 409 means
# something wrote the Deployment between Start Step's read and its write (usually the Deployment controller's
# status update), and the next attempt reads, checks and writes again.
GUARDED_WRITE_ATTEMPTS = 3


# What a refused step's cause starts with (UnsafeConfigurationError; docs/rollout.md, "One rollout per Deployment").
DEPLOYMENT_CHANGED = "Deployment changed under this rollout"


def _since_last_gate(s: RolloutState) -> str:
    """How Start Step names the time its look covers, in a reason."""
    previous = s.steps[-1] if s.steps else None
    return f"since step {previous.step} passed its gate" if previous else "since Preflight"


def start_step(ports: Ports, s: RolloutState) -> RolloutState:
    req = s.request
    i = s.next_step
    if i >= len(s.plan):
        raise InvalidInputError(f"next_step {i} is past the plan {s.plan}; the state was edited by hand?")
    batch = s.plan[i] - (s.plan[i - 1] if i else 0)
    now = ports.clock.now()
    alarmed = alarms.since_gate(ports, s, now)
    regressed = None if alarmed else analysis.during(ports, s, _since_last_gate(s), now)
    if alarmed or regressed:
        s.gate = GateResult(Verdict.FAILED, alarmed or regressed or "",
                            error=ALARM_FIRED if alarmed else ALB_METRICS_REGRESSED)
        s.wait_seconds = 0
        return s
    delay = max(g.deregistration_delay_seconds for g in s.target_groups)
    hold_until = now + req.policy.step_deadline_seconds + delay + limits.DRAIN_MARGIN_SECONDS + req.policy.bake_seconds
    if s.mode == "rollout" and (i + 2) in req.policy.approval_before_steps:
        # The next step waits for a person after this one's bake: hold the gates through that wait too, or the
        # gate keeper would open them on the pods the Deployment controller surges meanwhile, and the
        # Deployment would roll forward without the approval.
        hold_until += limits.APPROVAL_TIMEOUT_SECONDS
    marker = {ROLLOUT_ANNOTATION: f"{s.execution_name}@{int(hold_until)}"}
    if i == 0:
        # pods out of service serve again: on a rollback, those the failed steps took out and Kubernetes left
        # running; on a rollout, any an execution that ended early left so (rollout.out_of_service)
        dep = ports.kube.get_deployment(req.namespace, req.deployment)
        put_back(ports, s, ports.kube.list_pods(req.namespace, dep.selector))
    for attempt in range(1, GUARDED_WRITE_ATTEMPTS + 1):
        # Read, check that nobody else changed the Deployment, and write on condition of that very read's
        # resourceVersion: a write that lands in between (even a status update) makes it 409, and the loop reads
        # and checks again (docs/rollout.md, "One rollout per Deployment").
        dep = ports.kube.get_deployment(req.namespace, req.deployment)
        changed = deployment_changed(s, dep)
        if changed:
            raise UnsafeConfigurationError(changed)
        try:
            _write_step(ports, s, dep, i, batch, marker)
            break
        except ConflictError:
            if attempt == GUARDED_WRITE_ATTEMPTS:
                raise

    s.step = i
    s.next_step = i + 1
    s.more_steps = s.next_step < len(s.plan)
    s.approval_required = s.mode == "rollout" and (s.next_step + 1) in req.policy.approval_before_steps
    s.step_deadline = now + req.policy.step_deadline_seconds
    s.gate = GateResult(Verdict.WAITING, "step started")
    if s.pending_drain_step is None:  # else it still shows the previous step's drain, which this gate follows
        s.drain = DrainResult(Verdict.WAITING, "not started")
    s.wait_seconds = 0
    s.throttles = 0
    s.steps.append(StepRecord(step=i + 1, mode=s.mode, target=s.plan[i], started_at=now))
    return s


def deployment_changed(s: RolloutState, dep: Deployment) -> str | None:
    """What changed in ``dep`` that this execution did not write since it last knew it (None: nothing); Start
    Step then raises UnsafeConfigurationError with it, a permanent error: before step 1 nothing was changed and the
    execution ends in `Rollout Failed`; later, the failed step goes to the rollback decision like any other, and
    the rollback's own Start Step refuses in turn when the hold is no longer this execution's (`Rollback Failed`).

    Only fields no status write touches are compared, so the Deployment controller's status updates (which move
    metadata.resourceVersion many times a step) and a scale (spec.replicas, which an autoscaler may change at any
    time) never fail a step: before the first step, the Deployment as Preflight read it (the container's image,
    the revision a rollback returns to, maxSurge/maxUnavailable, not paused); from then on, albgate's hold
    annotation naming this execution and the image it wrote. A Start Step retried after its write landed finds
    that write, which counts as this execution's own."""
    req = s.request
    container = dep.template.container(req.container)
    image = container.image if container is not None else None
    hold = dep.annotations.get(ROLLOUT_ANNOTATION, "")
    ours = hold.startswith(f"{s.execution_name}@")
    found: list[str] = []
    if dep.paused:
        found.append("it was paused (spec.paused)")
    if container is None:
        found.append(f"its container {req.container} is gone")
    first_step = s.mode == "rollout" and s.next_step == 0
    if first_step and not (ours and image == s.target_image):
        if image is not None and image != s.previous_image:
            found.append(f"container {req.container} runs {quote(image)}, not {quote(s.previous_image)} as "
                         "Preflight read")
        if dep.revision != s.previous_revision:
            found.append(f"its revision is {dep.revision}, not {s.previous_revision} as Preflight read")
        for field_name, was in (("max_surge", s.original_max_surge), ("max_unavailable", s.original_max_unavailable)):
            now = getattr(dep, field_name)
            if now != was:
                found.append(f"{field_name} is {now!r}, not {was!r} as Preflight read")
    elif s.mode == "rollout" and not first_step:
        if not ours:
            found.append(f"albgate's hold ({ROLLOUT_ANNOTATION}) is {quote(hold) if hold else 'gone'}, not this "
                         "execution's")
        if image is not None and image != s.target_image:
            found.append(f"container {req.container} runs {quote(image)}, not {quote(s.target_image)} as this "
                         "rollout wrote")
    elif s.mode == "rollback" and not ours and image != s.target_image:
        # Before the undo the hold is this execution's; after it (a retried Start Step) the previous image runs.
        found.append(f"albgate's hold ({ROLLOUT_ANNOTATION}) is {quote(hold) if hold else 'gone'}, not this "
                     f"execution's, and container {req.container} runs {quote(image or '')}")
    if not found:
        return None
    where = f"step {s.next_step + 1}" + (" of the rollback" if s.mode == "rollback" else "")
    return (f"{DEPLOYMENT_CHANGED} before {where} ({req.namespace}/{req.deployment}): " + "; ".join(found)
            + ". Someone else (a person, another tool, another rollout) wrote it, and albgate did not write over it")


def _write_step(ports: Ports, s: RolloutState, dep: Deployment, i: int, batch: int, marker: dict[str, str]) -> None:
    """Start Step's write, conditional on ``dep.resource_version`` (a 409 raises ConflictError)."""
    req = s.request
    version = dep.resource_version or None
    container = dep.template.container(req.container)
    if (i == 0 and s.mode == "rollback" and req.kind == "rollout" and container is not None
            and container.image == s.target_image):
        # The undo already happened (an earlier attempt of this step undid, then its hold patch met a 409 from a
        # status write in between): the template is the previous revision's, which the controller has renumbered,
        # so undoing again would fail and writing the image would build a new ReplicaSet. Only the hold is left.
        patch = DeploymentPatch(max_surge=batch, max_unavailable=0, annotations=marker,
                                expected_resource_version=version)
    elif i == 0 and s.mode == "rollback" and (req.kind == "restart" or _undo_is_safe(ports, s)):
        # Roll back as `kubectl rollout undo` does: the previous revision's exact template, so the Deployment
        # controller scales the previous ReplicaSet (still serving) back up instead of building a new one.
        undone = ports.kube.rollback_deployment(req.namespace, req.deployment, s.previous_revision,
                                                expected_resource_version=version)
        version = undone.resource_version or version
        patch = DeploymentPatch(max_surge=batch, max_unavailable=0, annotations=marker,
                                expected_resource_version=version)
    elif i == 0:
        # The first step writes the target image behind albgate's gate (with the hardening, on a rollout). A
        # rollback comes here when undo is not safe: the previous revision has no albgate gate and no pod left
        # serving, so its returning pods would turn Ready, and let Kubernetes remove the failed version's serving
        # pods, before the load balancer had checked them; its image then comes back gated like any step.
        fields: dict[str, Any] = dict(s.hardening) if s.mode == "rollout" else {}
        fields.pop("max_unavailable", None)
        patch = DeploymentPatch(
            images={req.container: s.target_image},
            add_readiness_gates=(ALBGATE_GATE,),
            max_surge=batch,
            max_unavailable=0,
            annotations=marker,
            expected_resource_version=version,
            **fields,
        )
        if s.mode == "rollout":
            s.template_changed = True
    else:
        patch = DeploymentPatch(max_surge=batch, annotations=marker, expected_resource_version=version)
    ports.kube.patch_deployment(req.namespace, req.deployment, patch)


def _undo_is_safe(ports: Ports, s: RolloutState) -> bool:
    """Whether `kubectl rollout undo` to the previous revision drops nothing.

    Undo scales the previous ReplicaSet back up and Kubernetes removes the failed version's pods as soon as
    the returning pods are Ready. That is gated when the previous template carries albgate's gate (an earlier
    albgate rollout made it). Without the gate it is still safe while the previous ReplicaSet has pods
    serving: they keep a healthy pool in every target group while the failed version's targets drain (albgate
    deregisters them itself if the controller does not), at the cost of capacity until the returning pods are
    registered. With no previous pod left serving, it is not: see ``start_step``.
    """
    for rs in ports.kube.list_replica_sets(s.request.namespace, s.request.deployment):
        if rs.revision == s.previous_revision:
            return ALBGATE_GATE in rs.template.readiness_gates or rs.ready_replicas > 0
    return False
