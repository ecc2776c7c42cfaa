"""The gated rollout's use cases: one function per state machine task, each (ports, state) -> new state.

Invariant: a use case is idempotent for a given input state. Step Functions hands a retried or duplicated
task the same input, every change it makes to the cluster is a declarative patch (the same patch twice is one
change), and the step index only moves in the returned state, so a retry can neither double-step nor undo
progress. Nothing here imports boto3 or kubernetes: the ports do the I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lambdas.domain import lbc_annotations as lbc
from lambdas.domain import limits
from lambdas.domain.documents import quote
from lambdas.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
    UnsafeConfigurationError,
)
from lambdas.domain.gate import (
    DrainResult,
    Verdict,
    all_registering,
    evaluate_drain,
    evaluate_gate,
    pods_needing_targets,
    targets_to_deregister,
)
from lambdas.domain.models import RolloutPolicy, RolloutRequest, parse_image, parse_request
from lambdas.domain.plan import step_problems, step_targets
from lambdas.domain.poll import (
    POD_START_POLL_SECONDS,
    drain_poll_seconds,
    pod_poll_seconds,
    registration_poll_seconds,
    target_poll_seconds,
)
from lambdas.domain.ports import (
    ALBGATE_GATE,
    DRAINING,
    UNUSED,
    Deployment,
    DeploymentCondition,
    DeploymentPatch,
    Pod,
    Ports,
    ReplicaSet,
    TargetGroupBinding,
    TargetHealth,
)
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo, largest_state_bytes

POD_TEMPLATE_HASH = "pod-template-hash"
# Marks a Deployment as being rolled by albgate until a deadline, so the gate keeper leaves its gates alone:
# "<execution name>@<epoch seconds>". Cleared (empty) when the execution finishes; an execution that died
# leaves a deadline that expires by itself.
ROLLOUT_ANNOTATION = "albgate.io/rollout"
# Old targets may take the deregistration delay to leave; give the controller's reconcile and one more
# check on top (docs/facts.md, Load Balancer Controller: registration and timing: requeue 15 s; leader change pauses
# reconciles up to 2 min).
DRAIN_MARGIN_SECONDS = 120


def resolve_int_or_percent(value: int | str, replicas: int, *, round_up: bool) -> int:
    """maxSurge rounds up, maxUnavailable rounds down (docs/facts.md, Kubernetes Deployment controller: ResolveFenceposts)."""
    if isinstance(value, int):
        return value
    pct = int(str(value).rstrip("%"))
    exact = replicas * pct / 100
    return math.ceil(exact) if round_up else math.floor(exact)


# ---------------------------------------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------------------------------------
# Preflight's answer when its Describe* calls wait for their turn in albgate's share of the account's bucket
# (the state machine's `Describe Turn Booked?` sends it to `Wait For Describe Turn`, then back to Preflight).
PREFLIGHT_WAITING = "WAITING_FOR_DESCRIBE_TURN"
# Booked turns in a row after which Preflight gives up (ThrottledError, then the Retry and the Catch): a booked
# turn always comes, so more than this means the bookings keep going stale.
MAX_PREFLIGHT_TURNS = 10


def preflight(ports: Ports, raw_input: Any, execution_name: str, turn: dict | None = None) -> dict:
    """Validate, find the target groups, assess safety. Reads only: a refused rollout changed nothing.

    ``turn`` is the state the execution was in when Preflight started: the execution input the first time,
    Preflight's own answer ``PREFLIGHT_WAITING`` (its Describe* calls booked for later) when it comes back from
    `Wait For Describe Turn`. Returns the rollout's first state, or such a waiting answer."""
    request = parse_request(raw_input)
    kube, ns = ports.kube, request.namespace
    kube.get_namespace(ns)  # NotFoundError names a missing namespace before anything else
    dep = kube.get_deployment(ns, request.deployment)
    container = dep.template.container(request.container)
    if container is None:
        names = ", ".join(c.name for c in dep.template.containers)
        raise NotFoundError(
            f"container: Deployment {ns}/{dep.name} has no container {request.container!r}; it has: {names}"
        )
    check_request_against(request, dep, running_image=container.image)
    if dep.paused:
        raise UnsafeConfigurationError(
            f"Deployment {ns}/{dep.name} is paused; resume it (kubectl rollout resume) or finish what paused it"
        )
    busy = [rs.name for rs in kube.list_replica_sets(ns, dep.name) if rs.replicas > 0]
    if len(busy) > 1:
        raise UnsafeConfigurationError(
            f"Deployment {ns}/{dep.name} is already rolling (ReplicaSets {', '.join(sorted(busy))} have pods); "
            "wait for that rollout to finish or undo it, then start again"
        )
    if container.image == request.image and request.kind == "rollout":
        raise InvalidInputError(
            f"image: container {request.container} of {ns}/{dep.name} already runs {request.image}; "
            "use kind='restart' to re-create its pods through the gates"
        )

    bindings = target_group_bindings(ports, dep)
    # DescribeTargetGroups + DescribeTargetGroupAttributes per group, in albgate's share of the bucket
    waited = turn if turn and turn.get("preflight") == PREFLIGHT_WAITING else {}
    slot, turns = waited.get("describe_slot_at"), int(waited.get("turns", 0))
    wait, slot = _booked_wait(ports, slot, 2 * len(bindings), ports.clock.now())
    if wait:
        if turns >= MAX_PREFLIGHT_TURNS:
            raise ThrottledError(f"albgate's share of the account's Describe* calls: no turn after {turns} bookings")
        return {
            "preflight": PREFLIGHT_WAITING,
            "describe_slot_at": slot,
            "wait_seconds": wait,
            "turns": turns + 1,
            "reason": f"albgate's share of the account's Describe* calls is spent (other albgate rollouts are "
            f"polling); Preflight's look at the target groups is booked in {wait} s",
        }
    groups = describe_target_groups(ports, dep.namespace, bindings)
    hardening, findings = assess(request, dep, groups)
    if findings and not request.policy.harden:
        raise UnsafeConfigurationError(
            f"{ns}/{dep.name} cannot roll without dropping requests: "
            + "; ".join(findings)
            + ". Fix these, or start again with policy.harden=true to let albgate apply them on the first step."
        )

    now = ports.clock.now()
    plan = step_targets(dep.replicas, request.policy)
    check_limits(request, plan, groups, previous_image=container.image, hardening=hardening, findings=findings)
    target_image, notes = pin_image(ports, request.image) if request.kind == "rollout" else (container.image, [])
    if request.kind == "rollout" and target_image == container.image and target_image != request.image:
        raise InvalidInputError(
            f"image: {request.image} is {target_image}, which container {request.container} of {ns}/{dep.name} "
            "already runs; use kind='restart' to re-create its pods through the gates"
        )
    state = RolloutState(
        request=request,
        execution_name=execution_name,
        started_at=now,
        replicas=dep.replicas,
        plan=plan,
        target_image=target_image,
        previous_image=container.image,
        previous_revision=dep.revision,
        original_max_surge=dep.max_surge,
        original_max_unavailable=dep.max_unavailable,
        hardening=hardening,
        findings=findings,
        notes=notes,
        requested_image=request.image or "",
        target_groups=groups,
        approval_required=1 in request.policy.approval_before_steps,
        more_steps=True,
        rollback_allowed=request.policy.rollback_on_failure,
    )
    if request.kind == "restart":
        # A restart keeps the image: a new template annotation makes a new ReplicaSet (as kubectl does).
        state.hardening = {**hardening, "template_annotations": {"albgate.io/restarted-by": execution_name}}
    return state.dump()


def check_request_against(request: RolloutRequest, dep: Deployment, *, running_image: str) -> None:
    """Refuse (InvalidInputError, so `Rollout Refused`) what the input asks of this Deployment that it cannot
    be: no replica to gate, a policy whose plan does not grow on its replica count or names a step it lacks
    (``lambdas.domain.plan.step_problems``: the model checks the shape, this the numbers), a restart naming
    an image other than the one the container runs. Reads nothing."""
    where = f"{dep.namespace}/{dep.name}"
    if dep.replicas < 1:  # scaled to zero: no pod serves, no target to check (docs/facts.md, Strict inputs)
        raise InvalidInputError(
            f"deployment: {where} has 0 replicas (spec.replicas), so no pod serves and there is nothing to gate; "
            f"scale it up first (kubectl scale -n {dep.namespace} deployment/{dep.name} --replicas=N) and start "
            "again, or change its image without albgate while nothing serves"
        )
    problems = step_problems(dep.replicas, request.policy)
    if problems:
        raise InvalidInputError("; ".join(f"policy.{field}: {message}" for field, message in problems))


def worst_case(policy: RolloutPolicy, steps: int, drain_deadline: int) -> limits.WorstCase:
    """The most a rollout of ``steps`` steps under ``policy`` can cost (``lambdas.domain.limits.worst_case``),
    Preflight's own booked turns included."""
    return limits.worst_case(policy, steps, drain_deadline, preflight_turns=MAX_PREFLIGHT_TURNS)


def limit_problems(policy: RolloutPolicy, steps: int, drain_deadline: int) -> list[str]:
    """Why a rollout of ``steps`` steps under ``policy`` cannot run within the execution's history and timeout
    (empty when it can), each naming the limit and the fix; also what the CDK config checks its default policy
    with."""
    worst = worst_case(policy, steps, drain_deadline)
    most = limits.most_steps_within_history(policy, drain_deadline, preflight_turns=MAX_PREFLIGHT_TURNS)
    return [p for p in (limits.history_problem(worst, most), limits.duration_problem(worst)) if p]


def check_limits(
    request: RolloutRequest,
    plan: list[int],
    groups: list[TargetGroupInfo],
    *,
    previous_image: str,
    hardening: dict[str, Any],
    findings: list[str],
) -> None:
    """Refuse (InvalidInputError, so `Rollout Refused`) a rollout whose worst case does not fit the execution:
    more history events than Step Functions keeps, longer than the state machine's timeout, or a state larger
    than a state may be (docs/rollout.md, Limits). Reads nothing: Preflight calls it before any change. A
    Deployment scaled to zero has no plan, hence no step to bound."""
    if not plan:
        return
    policy = request.policy
    delay = max(g.deregistration_delay_seconds for g in groups)
    drain = limits.drain_deadline_seconds(policy, delay)
    problems = [f"policy: {p}" for p in limit_problems(policy, len(plan), drain)]
    if request.image is None:  # a restart naming no image: sized as if it named the running one (larger)
        request = request.model_copy(update={"image": previous_image})
    size = largest_state_bytes(request, replicas=plan[-1], plan=plan, target_groups=groups,
                               previous_image=previous_image, hardening=hardening, findings=findings)
    if size > limits.STATE_PAYLOAD_BUDGET_BYTES:
        problems.append(
            f"Deployment: a rollout of {plan[-1]} replicas behind {len(groups)} target group(s) could carry a state "
            f"of {size / 1024:.0f} KiB (the old pods' IPs, the pods each gate releases, the targets albgate may "
            f"deregister itself, in {len(plan)} steps), over the {limits.STATE_PAYLOAD_BUDGET_BYTES // 1024} KiB "
            f"albgate allows below Step Functions' {limits.STATE_PAYLOAD_MAX_BYTES // 1024} KiB per state "
            "(States.DataLimitExceeded, which no Catch takes); roll it in parts: fewer replicas per Deployment "
            "or fewer target groups (Services) per Deployment (docs/rollout.md, Limits)"
        )
    if problems:
        raise InvalidInputError("; ".join(problems))


def pin_image(ports: Ports, image: str) -> tuple[str, list[str]]:
    """The image to write: a digest as given, a tag pinned to the registry's digest now, else the tag as given.

    Pinning makes every pod of the rollout run the same bytes even if the tag moves mid-rollout, and makes the
    rollback target exact."""
    _, tag, digest = parse_image(image)
    if digest:
        return image, []
    resolved = ports.images.resolve_digest(image) if ports.images else None
    if resolved:
        return resolved, [f"image: tag {tag!r} pinned to {resolved.rsplit('@', 1)[1]}"]
    return image, [
        f"image: tag {tag!r} is not pinned to a digest (albgate reads digests from ECR only); pods created "
        "during the rollout could pull different bytes if the tag moves"
    ]


def target_group_bindings(ports: Ports, dep: Deployment) -> list[TargetGroupBinding]:
    """The TargetGroupBindings of the Services that select the Deployment's pods (Kubernetes reads only): one
    per target group that serves them."""
    kube, ns = ports.kube, dep.namespace
    pod_labels = dep.template.labels or dep.selector
    services = [
        s
        for s in kube.list_services(ns)
        if s.selector and all(pod_labels.get(k) == v for k, v in s.selector.items())
    ]
    if not services:
        raise NotFoundError(
            f"no Service in {ns} selects the pods of Deployment {dep.name} (labels {pod_labels}); "
            "albgate gates on the ALB targets behind a Service"
        )
    names = {s.name for s in services}
    bindings = [b for b in kube.list_target_group_bindings(ns) if b.service_name in names]
    if not bindings:
        raise NotFoundError(
            f"no TargetGroupBinding in {ns} for Service(s) {', '.join(sorted(names))}: the Load Balancer "
            "Controller creates one per backend of an Ingress with ingressClassName alb; is the controller "
            "running and the Ingress applied?"
        )
    return bindings


def describe_target_groups(ports: Ports, ns: str, bindings: list[TargetGroupBinding]) -> list[TargetGroupInfo]:
    """Each binding's target group as ELB describes it (2 Describe* calls each); unsafe target types refused."""
    groups: list[TargetGroupInfo] = []
    for b in sorted(bindings, key=lambda b: b.name):
        tg = ports.elb.describe_target_group(b.target_group_arn)
        if b.target_type != "ip" or tg.target_type != "ip":
            raise UnsafeConfigurationError(
                f"TargetGroupBinding {ns}/{b.name} uses target type {tg.target_type}: only IP targets map one "
                "pod to one target, so only they can be gated; set the Ingress annotation "
                "alb.ingress.kubernetes.io/target-type: ip"
            )
        if not tg.load_balancer_arns:
            raise UnsafeConfigurationError(
                f"target group {tg.arn} is not attached to a load balancer listener, so no target in it can "
                "ever become healthy (aws-load-balancer-controller#3753); check the Ingress rules"
            )
        groups.append(
            TargetGroupInfo(
                arn=tg.arn,
                service=b.service_name,
                health_check_interval_seconds=tg.health_check_interval_seconds,
                healthy_threshold=tg.healthy_threshold,
                deregistration_delay_seconds=tg.deregistration_delay_seconds,
            )
        )
    return groups


def assess(
    request: RolloutRequest, dep: Deployment, groups: list[TargetGroupInfo]
) -> tuple[dict[str, Any], list[str]]:
    """What would drop requests, and the DeploymentPatch fields that fix it (applied only with harden)."""
    policy = request.policy
    hardening: dict[str, Any] = {}
    findings: list[str] = []
    unavailable = resolve_int_or_percent(dep.max_unavailable, dep.replicas, round_up=False)
    if unavailable > 0:
        findings.append(
            f"maxUnavailable is {dep.max_unavailable} ({unavailable} pod(s)): old pods could go before any "
            "replacement is healthy; set it to 0"
        )
        hardening["max_unavailable"] = 0
    container = dep.template.container(request.container)
    assert container is not None
    pre_stop = container.pre_stop_sleep_seconds or 0
    if pre_stop < policy.pre_stop_seconds:
        findings.append(
            f"container {container.name} has {'no preStop' if not pre_stop else f'a {pre_stop} s preStop'}: the "
            f"ALB keeps sending new requests for some seconds after deregistration starts; add a preStop sleep "
            f"of {policy.pre_stop_seconds} s"
        )
        hardening["pre_stop_sleep_seconds"] = {container.name: policy.pre_stop_seconds}
        pre_stop = policy.pre_stop_seconds
    needed_grace = pre_stop + policy.max_request_seconds
    if dep.template.termination_grace_period_seconds < needed_grace:
        findings.append(
            f"terminationGracePeriodSeconds is {dep.template.termination_grace_period_seconds}: it must cover "
            f"the preStop ({pre_stop} s) plus the longest request ({policy.max_request_seconds} s); set it to "
            f"{needed_grace}"
        )
        hardening["termination_grace_period_seconds"] = needed_grace
    # The delay is the target group's own attribute (DescribeTargetGroupAttributes), i.e. the value the controller
    # applied after preferring the Service's annotation over the Ingress's; only the fix must name both places.
    for g in groups:
        if g.deregistration_delay_seconds < policy.max_request_seconds:
            raise UnsafeConfigurationError(
                f"target group {g.arn} has a deregistration delay of {g.deregistration_delay_seconds} s, shorter "
                f"than the longest request ({policy.max_request_seconds} s): requests in flight are cut when it "
                "ends; raise it: "
                + lbc.fix(lbc.TG_ATTRIBUTES, f"{lbc.DEREGISTRATION_DELAY}={policy.max_request_seconds}")
            )
    return hardening, findings


# ---------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------
def start_step(ports: Ports, raw_state: dict) -> dict:
    s = RolloutState.model_validate(raw_state)
    req = s.request
    i = s.next_step
    if i >= len(s.plan):
        raise InvalidInputError(f"next_step {i} is past the plan {s.plan}; the state was edited by hand?")
    batch = s.plan[i] - (s.plan[i - 1] if i else 0)
    now = ports.clock.now()
    delay = max(g.deregistration_delay_seconds for g in s.target_groups)
    hold_until = now + req.policy.step_deadline_seconds + delay + DRAIN_MARGIN_SECONDS + req.policy.bake_seconds
    if s.mode == "rollout" and (i + 2) in req.policy.approval_before_steps:
        # The next step waits for a person after this one's bake: hold the gates through that wait too, or the
        # gate keeper would open them on the pods the Deployment controller surges meanwhile, and the
        # Deployment would roll forward without the approval.
        hold_until += limits.APPROVAL_TIMEOUT_SECONDS
    marker = {ROLLOUT_ANNOTATION: f"{s.execution_name}@{int(hold_until)}"}
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
    s.gate = {"status": Verdict.WAITING.value, "reason": "step started"}
    if s.pending_drain_step is None:  # else it still shows the previous step's drain, which this gate follows
        s.drain = {"status": Verdict.WAITING.value, "reason": "not started"}
    s.wait_seconds = 0
    s.throttles = 0
    s.steps.append(StepRecord(step=i + 1, mode=s.mode, target=s.plan[i], started_at=now))
    return s.dump()


# Reads and conditional writes Start Step tries before it leaves a 409 to the state machine's Retry: each 409 means
# something wrote the Deployment between Start Step's read and its write (usually the Deployment controller's
# status update), and the next attempt reads, checks and writes again.
GUARDED_WRITE_ATTEMPTS = 3
# What a refused step's cause starts with (UnsafeConfigurationError; docs/rollout.md, "One rollout per Deployment").
DEPLOYMENT_CHANGED = "Deployment changed under this rollout"


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
    if i == 0 and s.mode == "rollback" and (req.kind == "restart" or _undo_is_safe(ports, s)):
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


def _target_replica_set(
    rs_list: list[ReplicaSet], container: str, image: str, *, gated: bool, restart_marker: str | None
) -> ReplicaSet | None:
    """The newest ReplicaSet whose template runs ``image`` (behind albgate's gate when ``gated``)."""
    matching = []
    for rs in rs_list:
        c = rs.template.container(container)
        if c is None or c.image != image:
            continue
        if gated and ALBGATE_GATE not in rs.template.readiness_gates:
            continue
        if restart_marker and rs.template.annotations.get("albgate.io/restarted-by") != restart_marker:
            continue
        matching.append(rs)
    return max(matching, key=lambda rs: rs.revision, default=None)


def is_released(pod: Pod) -> bool:
    """A pod counts as serving the step once albgate opened its gate, or, without the gate, once it is Ready."""
    if ALBGATE_GATE in pod.readiness_gates:
        return pod.condition(ALBGATE_GATE) == "True"
    return pod.ready


def _split_pods(
    ports: Ports, s: RolloutState, dep: Deployment | None = None
) -> tuple[ReplicaSet | None, list[Pod], list[Pod]]:
    """(target ReplicaSet, its pods, every other pod of the Deployment); ``dep`` if the caller has read it."""
    req = s.request
    kube = ports.kube
    dep = dep or kube.get_deployment(req.namespace, req.deployment)
    marker = s.execution_name if req.kind == "restart" and s.mode == "rollout" else None
    target = _target_replica_set(
        kube.list_replica_sets(req.namespace, req.deployment),
        req.container,
        s.target_image,
        gated=s.mode == "rollout",
        restart_marker=marker,
    )
    pods = kube.list_pods(req.namespace, dep.selector)
    if target is None:
        return None, [], pods
    mine = [p for p in pods if p.labels.get(POD_TEMPLATE_HASH) == target.pod_template_hash]
    others = [p for p in pods if p.labels.get(POD_TEMPLATE_HASH) != target.pod_template_hash]
    return target, mine, others


# A look booked for a time that has long passed (the look went another way meanwhile) is booked again.
STALE_SLOT_SECONDS = 10


def _booked_wait(ports: Ports, slot: float | None, tokens: int, now: float) -> tuple[int, float | None]:
    """(0, None) when ``tokens`` Describe* calls may go now; else (whole seconds to wait, the booked slot).

    ``slot`` is a turn booked earlier in albgate's share of the account's bucket (lambdas/domain/budget.py):
    back for it (a Wait state waits whole seconds, so up to half a second early counts), the calls go without
    asking again; before it, the rest of the wait; long past it, it is booked again. A wait is never shorter
    than the shortest look wait (``POD_START_POLL_SECONDS``): the worst-case history count
    (``limits.max_looks``) assumes no loop turns faster, and a slot waited for a little late is still valid."""
    if slot is not None and now <= slot + STALE_SLOT_SECONDS:
        if now + 0.5 >= slot:
            return 0, None
        return max(POD_START_POLL_SECONDS, math.ceil(slot - now)), slot
    wait = ports.budget.acquire(tokens, reserve=True)
    if wait <= 0:
        return 0, None
    return max(POD_START_POLL_SECONDS, math.ceil(wait)), now + wait


def _budget_wait(ports: Ports, s: RolloutState, now: float) -> int:
    """0 when this look's DescribeTargetHealth calls may go now; otherwise the whole seconds to wait for the
    turn booked for them in albgate's share of the account's bucket (kept in ``s.describe_slot_at``)."""
    wait, s.describe_slot_at = _booked_wait(ports, s.describe_slot_at, len(s.target_groups), now)
    return wait


def _describe_all(ports: Ports, s: RolloutState) -> dict[str, list[TargetHealth]]:
    health: dict[str, list[TargetHealth]] = {}
    for g in s.target_groups:
        s.describe_target_health_calls += 1
        health[g.arn] = ports.elb.describe_target_health(g.arn)
        if health[g.arn] and g.target_port is None:
            g.target_port = health[g.arn][0].port  # kept for a deregistration while Describe* is throttled
    return health


def _poll_key(s: RolloutState, what: str) -> str:
    polls = s.steps[-1].polls if s.steps else 0
    return f"{s.execution_name}/{s.mode}/{s.step}/{what}/{polls}"


def _interval(s: RolloutState) -> int:
    return min(g.health_check_interval_seconds for g in s.target_groups)


def check_target_health(ports: Ports, raw_state: dict) -> dict:
    s = RolloutState.model_validate(raw_state)
    now = ports.clock.now()
    record = s.steps[-1]
    record.polls += 1
    dep = ports.kube.get_deployment(s.request.namespace, s.request.deployment)  # one GET for pods and conditions
    target, mine, others = _split_pods(ports, s, dep)
    if target is None:
        s.gate = {"status": Verdict.WAITING.value, "reason": "waiting for the Deployment controller to create the new ReplicaSet"}
        if now >= s.step_deadline:
            s.gate = {"status": Verdict.FAILED.value, "reason": "step deadline passed before the new ReplicaSet appeared"}
        s.wait_seconds = pod_poll_seconds(_poll_key(s, "rs"))
        return s.dump()

    progressing = dep.condition("Progressing")
    if _deadline_exceeded_during_step(progressing, record.started_at):
        _fail_gate(s, f"Kubernetes reports ProgressDeadlineExceeded: {progressing.message or 'no progress'}", now)
        return s.dump()

    live = [p for p in mine if not p.terminating]
    released = [p for p in live if is_released(p)]
    # Only pods behind albgate's gate wait for it; a rollback's ungated pods turn Ready by themselves.
    candidates = [p for p in live if not is_released(p) and ALBGATE_GATE in p.readiness_gates]
    needed = s.plan[s.step] - len(released)

    health = None
    handed_over = s.pending_drain_step is not None
    if pods_needing_targets(candidates, needed) or (handed_over and needed <= 0):
        budget_wait = _budget_wait(ports, s, now)
        if budget_wait:
            s.gate = {
                "status": Verdict.WAITING.value,
                "reason": f"albgate's share of the account's Describe* calls is spent (other albgate rollouts "
                f"are polling); this look is booked in {budget_wait} s",
            }
            if now >= s.step_deadline:
                _fail_gate(s, "step deadline passed while albgate waited for its share of the Describe* calls", now)
            s.wait_seconds = budget_wait
            return s.dump()
        try:
            health = _describe_all(ports, s)
            s.throttles = 0
            record.observed_at = now
        except ThrottledError:
            s.throttles += 1
            s.gate = {"status": Verdict.WAITING.value, "reason": f"DescribeTargetHealth throttled ({s.throttles}x); backing off"}
            if now >= s.step_deadline:
                _fail_gate(s, "step deadline passed while DescribeTargetHealth was throttled", now)
            s.wait_seconds = target_poll_seconds(_interval(s), _poll_key(s, "throttled"), s.throttles)
            return s.dump()

    result = evaluate_gate(candidates=candidates, needed=needed, health=health, now=now, deadline=s.step_deadline)
    s.gate = result.as_dict()
    if health is not None:
        s.gate["groups"] = group_summary(s.target_groups, candidates, health)
    status = result.status
    if handed_over and health is not None and status is not Verdict.FAILED:
        status = _follow_handed_over_drain(ports, s, mine, others, health, now, gate_passed=status is Verdict.PASSED)
    registering = health is not None and all_registering(candidates, health)
    if health is not None and not registering:
        record.registering_since = None
    if status is Verdict.FAILED:
        _fail_gate(s, s.gate["reason"], now)
    if status is Verdict.PASSED:
        record.gate_passed_at = now
        s.wait_seconds = 0
    elif result.status is Verdict.PASSED:  # the new targets are healthy; the previous step's are still draining
        s.wait_seconds = drain_poll_seconds(_interval(s), _poll_key(s, "handed-over-drain"))
    elif registering:
        record.registering_since = record.registering_since if record.registering_since is not None else now
        s.wait_seconds = registration_poll_seconds(_interval(s), now - record.registering_since, _poll_key(s, "registering"))
    elif health is not None:
        s.wait_seconds = target_poll_seconds(_interval(s), _poll_key(s, "targets"))
    else:
        stuck = result.starting > 0 and result.unschedulable == result.starting  # every starting pod waits for a node
        s.wait_seconds = pod_poll_seconds(_poll_key(s, "pods"), unschedulable=stuck)
    return s.dump()


def _follow_handed_over_drain(
    ports: Ports,
    s: RolloutState,
    mine: list[Pod],
    others: list[Pod],
    health: dict[str, list[TargetHealth]],
    now: float,
    *,
    gate_passed: bool,
) -> Verdict:
    """Check the targets the previous step handed over still draining (``verify_drain``), on the gate's look.

    The step releases nothing until they have left every target group, so a step's drain is verified before
    the next step lets any old pod go, as when Verify Drain waits for it, but on the same DescribeTargetHealth
    calls as the gate and while the new pods start. Returns the gate's verdict once the drain is counted:
    FAILED (with ``s.gate`` saying why) when the drain deadline passed, PASSED only when the gate passed and
    the targets have left, else WAITING. Released targets still in the pool are deregistered, as in Verify Drain.
    """
    step = s.pending_drain_step
    assert step is not None
    record = next(r for r in reversed(s.steps) if r.step == step and r.mode == s.mode)
    result = evaluate_drain(
        old_pods=others,
        expected_old=s.replicas - s.plan[step - 1],
        watched_ips=s.watched_ips,
        health=health,
        now=now,
        deadline=s.drain_deadline,
    )
    s.drain = {**result.as_dict(), "step": step}
    if result.status is Verdict.FAILED:
        reason = f"step {step}'s old targets did not leave: {result.reason}"
        s.gate = {**s.gate, "status": Verdict.FAILED.value, "reason": reason, "release": []}
        return Verdict.FAILED
    if result.status is Verdict.PASSED:
        record.drained_at = now
        s.pending_drain_step = None
        return Verdict.PASSED if gate_passed else Verdict.WAITING
    _deregister_released(ports, s, result.leaving_ips, health, held=_held_ips(mine, others), record=record)
    if gate_passed:
        s.gate = {
            **s.gate,
            "status": Verdict.WAITING.value,
            "reason": f"{s.gate['reason']}; waiting for step {step}'s old targets to leave ({result.reason})",
            "release": [],
        }
    return Verdict.WAITING


def _deadline_exceeded_during_step(progressing: DeploymentCondition | None, step_started_at: float) -> bool:
    """ProgressDeadlineExceeded raised by this step's pods, not left over from an earlier attempt.

    Kubernetes keeps the condition until the Deployment makes progress again (progress.go), so right after a
    rollback (or a new rollout over a timed-out one) it still describes the abandoned ReplicaSet. A condition
    whose lastUpdateTime predates the step is that leftover. Without a time the condition is trusted.
    """
    if not progressing or progressing.status != "False" or progressing.reason != "ProgressDeadlineExceeded":
        return False
    return progressing.last_update_time is None or progressing.last_update_time >= step_started_at


def group_summary(
    groups: list[TargetGroupInfo], candidates: list[Pod], health: dict[str, list[TargetHealth]]
) -> list[dict[str, Any]]:
    """Per target group, the states of the step's started new pods' targets (what `albgate watch` shows).

    ``unregistered``: the pod is ContainersReady but its IP is not (yet) a target of that group."""
    started = [p.ip for p in candidates if p.containers_ready and p.ip]
    out = []
    for g in groups:
        by_ip = {t.target_id: t.state for t in health.get(g.arn, [])}
        counts = {"healthy": 0, "initial": 0, "unhealthy": 0, "draining": 0, "unregistered": 0}
        for ip in started:
            state = by_ip.get(ip)
            key = state if state in counts else "unregistered"
            counts[key] += 1
        name = g.arn.split(":targetgroup/")[-1].split("/")[0]
        out.append({"target_group": name, "service": g.service, **counts})
    return out


# Older than this many health-check intervals, the last look at the targets says nothing about them now.
STALE_OBSERVATION_INTERVALS = 4


def _fail_gate(s: RolloutState, reason: str, now: float) -> None:
    """Fail the step; forbid an automatic rollback when the targets are out of sight (blind)."""
    record = s.steps[-1]
    stale = record.observed_at is None or now - record.observed_at > STALE_OBSERVATION_INTERVALS * _interval(s)
    blind = (s.throttles > 0 or s.describe_slot_at is not None) and stale
    if blind:
        s.rollback_allowed = False
        reason += (
            "; albgate has not seen this step's targets for a while (DescribeTargetHealth throttled, or waiting for "
            "albgate's share of the account's Describe* calls), so it cannot tell whether "
            "a rollback would remove serving pods: it stops here with the old pods serving; roll back by hand "
            "once the account's Describe* calls are no longer throttled"
        )
    s.gate = {**s.gate, "status": Verdict.FAILED.value, "reason": reason}


def release_old_pods(ports: Ports, raw_state: dict) -> dict:
    s = RolloutState.model_validate(raw_state)
    req = s.request
    _, mine, others = _split_pods(ports, s)
    # Every pod of the other ReplicaSets, terminating ones included: Kubernetes may already be removing one
    # (an ungated pod turned Ready by itself), and its target must leave the groups like the others.
    s.watched_ips = sorted({p.ip for p in others if p.ip})
    live_names = {p.name for p in mine if not p.terminating}
    for name in s.gate.get("release", []):
        if name not in live_names:
            continue  # gone since the gate looked: the next gate turn re-counts
        ports.kube.set_pod_condition(
            req.namespace,
            name,
            ALBGATE_GATE,
            "True",
            "TargetHealthy",
            f"albgate {s.execution_name}: target healthy in all {len(s.target_groups)} target group(s)",
        )
    now = ports.clock.now()
    delay = max(g.deregistration_delay_seconds for g in s.target_groups)
    s.drain_deadline = now + (req.policy.drain_deadline_seconds or delay + DRAIN_MARGIN_SECONDS)
    s.drain = {"status": Verdict.WAITING.value, "reason": "old pods released"}
    s.wait_seconds = 0
    return s.dump()


def verify_drain(ports: Ports, raw_state: dict) -> dict:
    s = RolloutState.model_validate(raw_state)
    now = ports.clock.now()
    record = s.steps[-1]
    record.polls += 1
    _, mine, others = _split_pods(ports, s)
    expected_old = s.replicas - s.plan[s.step]
    health = None
    budget_wait = 0
    if sum(1 for p in others if not p.terminating) <= expected_old:
        budget_wait = _budget_wait(ports, s, now)
        try:
            if not budget_wait:
                health = _describe_all(ports, s)
                s.throttles = 0
        except ThrottledError:
            s.throttles += 1
    result = evaluate_drain(
        old_pods=others,
        expected_old=expected_old,
        watched_ips=s.watched_ips,
        health=health,
        now=now,
        deadline=s.drain_deadline,
    )
    s.drain = result.as_dict()
    if result.status is Verdict.WAITING and result.leaving_ips and (health is not None or s.throttles):
        _deregister_released(ports, s, result.leaving_ips, health, held=_held_ips(mine, others), record=record)
    handed_over = result.status is Verdict.WAITING and health is not None and _may_hand_over(s, result, health, record)
    if handed_over:
        s.pending_drain_step = record.step
        s.drain = {
            **s.drain,
            "status": Verdict.DRAINING.value,
            "reason": f"{len(result.leaving_ips)} old target(s) out of the pool, draining; step {record.step + 1}'s "
            "gate releases nothing until they have left every target group",
        }
    if result.status is Verdict.PASSED:
        record.drained_at = now
    if result.status is Verdict.PASSED or handed_over:
        s.wait_seconds = 0
        s.bake_seconds = s.request.policy.bake_seconds if (s.more_steps and s.mode == "rollout") else 0
    elif budget_wait:
        s.wait_seconds = budget_wait
    elif health is None and not s.throttles:
        s.wait_seconds = pod_poll_seconds(_poll_key(s, "scale-down"))
    else:
        s.wait_seconds = drain_poll_seconds(_interval(s), _poll_key(s, "drain"), s.throttles)
    return s.dump()


def _held_ips(mine: list[Pod], others: list[Pod]) -> set[str]:
    """IPs of the Deployment's live pods: a target with such an IP is never deregistered (its pod serves)."""
    return {p.ip for p in mine + others if p.ip and not p.terminating}


def _may_hand_over(s: RolloutState, drain: DrainResult, health: dict[str, list[TargetHealth]], record: StepRecord) -> bool:
    """Whether a step may leave its drain to the next step's gate (``Verdict.DRAINING``) instead of waiting.

    Only between two steps of a rollout (a rollback and the last step wait here, so the execution ends with
    the targets gone), and only once nothing of the drain is left to do but wait: Kubernetes has scaled the
    old ReplicaSet down, and every released target is `draining` or gone in every target group, or albgate
    has just deregistered it. Waiting for them to leave is then the same here or in the next step's gate,
    which checks it on the DescribeTargetHealth calls it makes anyway while the next pods start.
    """
    if s.mode != "rollout" or not s.more_steps or drain.old_live > drain.expected_old:
        return False
    deregistered = set(record.deregistered)
    leaving = set(drain.leaving_ips)
    return all(
        t.state in (DRAINING, UNUSED) or f"{arn}|{t.target_id}" in deregistered
        for arn, targets in health.items()
        for t in targets
        if t.target_id in leaving
    )


def _deregister_released(
    ports: Ports,
    s: RolloutState,
    leaving: tuple[str, ...],
    health: dict[str, list[TargetHealth]] | None,
    held: set[str],
    record: StepRecord,
) -> None:
    """Start the drain of released pods' targets that nobody deregistered (see ``targets_to_deregister``).

    ``record``: the step that released them (its ``deregistered`` list keeps a blind deregistration to once)."""
    todo = targets_to_deregister(
        leaving_ips=leaving,
        held_ips=held,
        health=health,
        blind_ports={g.arn: g.target_port for g in s.target_groups if g.target_port is not None},
        already=set(record.deregistered),
    )
    for arn, targets in todo.items():
        ports.elb.deregister_targets(arn, targets)
        record.deregistered.extend(f"{arn}|{ip}" for ip, _ in targets if f"{arn}|{ip}" not in record.deregistered)
    if todo:
        n = sum(len(t) for t in todo.values())
        s.drain = {
            **s.drain,
            "reason": f"{s.drain['reason']}; albgate started the drain of {n} released target(s) the Load Balancer "
            "Controller had not deregistered yet",
        }


# ---------------------------------------------------------------------------------------------------------
# Rollback and finish
# ---------------------------------------------------------------------------------------------------------
def describe_failure(failure: dict | None) -> str:
    """A caught error's {Error, Cause} as one line; Lambda causes are JSON with errorMessage."""
    if not failure:
        return "unknown failure"
    error = failure.get("Error", "Error")
    cause = failure.get("Cause", "")
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            cause = parsed.get("errorMessage", cause)
    except (TypeError, ValueError):
        pass
    return f"{error}: {cause}"


def roll_back(ports: Ports, raw_state: dict) -> dict:
    s = RolloutState.model_validate(raw_state)
    where = f"step {s.step + 1}/{len(s.plan)}" if s.step >= 0 else "before the first step"
    s.failure_summary = f"{s.mode} failed at {where}: {describe_failure(s.failure)}"
    if not s.template_changed or s.mode == "rollback":
        s.rollback_needed = False
        s.outcome = "failed"
        return s.dump()
    s.mode = "rollback"
    s.rollback_needed = True
    s.target_image = s.previous_image
    # One step: the previous ReplicaSet still serves, so bring it back to full size at once; the drain
    # check then watches every pod of the failed version leave the target groups.
    s.plan = [s.replicas]
    s.next_step = 0
    s.step = -1
    # Targets a rollout step handed over still draining are on their way out and belong to the version the
    # rollback brings back: its own drain check watches the failed version's pods instead.
    s.pending_drain_step = None
    s.more_steps = True
    s.approval_required = False
    s.bake_seconds = 0
    s.gate = {"status": Verdict.WAITING.value, "reason": "rollback not started"}
    s.drain = {"status": Verdict.WAITING.value, "reason": "rollback not started"}
    return s.dump()


def finish_rollout(ports: Ports, raw_state: dict) -> dict:
    s = RolloutState.model_validate(raw_state)
    req = s.request
    ports.kube.patch_deployment(
        req.namespace,
        req.deployment,
        DeploymentPatch(max_surge=s.original_max_surge, annotations={ROLLOUT_ANNOTATION: ""}),
    )
    s.outcome = "succeeded" if s.mode == "rollout" else "rolled_back"
    s.finished_at = ports.clock.now()
    return s.dump()


def approval_request(raw_state: dict, task_token: str, execution_name: str) -> dict:
    """What a person needs to approve or reject the next step."""
    s = RolloutState.model_validate(raw_state)
    step = s.next_step + 1
    return {
        "execution_name": execution_name,
        "deployment": f"{s.request.namespace}/{s.request.deployment}",
        "cluster": s.request.cluster,
        "step": step,
        "new_pods_after_step": s.plan[s.next_step] if s.next_step < len(s.plan) else s.replicas,
        "image": s.target_image,
        "approve": f"aws stepfunctions send-task-success --task-token {task_token} --task-output '{{}}'",
        "reject": f"aws stepfunctions send-task-failure --task-token {task_token} --error ApprovalRejected",
    }
