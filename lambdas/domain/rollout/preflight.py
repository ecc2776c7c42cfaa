"""Preflight: validate the request against the Deployment, find its target groups, assess safety, size the run,
and look at the CloudWatch alarms the policy names.

Invariant: reads only (but for the board of target group descriptions it shares with other Preflights, a cache
of ELB's answers), so a refused rollout changed nothing; returns the rollout's first state, or a waiting answer
when its Describe* calls are booked for later.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lambdas.domain import descriptions, limits, safety
from lambdas.domain import lbc_annotations as lbc
from lambdas.domain.contract import PREFLIGHT_WAITING
from lambdas.domain.errors import InvalidInputError, NotFoundError, ThrottledError, UnsafeConfigurationError
from lambdas.domain.looks import BOOKED_EARLY_SECONDS
from lambdas.domain.models import RolloutPolicy, RolloutRequest, parse_image
from lambdas.domain.plan import step_problems, step_targets
from lambdas.domain.poll import POD_START_POLL_SECONDS
from lambdas.domain.ports import Deployment, Ports, TargetGroupBinding, TargetGroupSettings
from lambdas.domain.rollout import alarms, analysis
from lambdas.domain.rollout.observe import STALE_SLOT_SECONDS
from lambdas.domain.rollout.targets import group_info, target_group_bindings
from lambdas.domain.state import RolloutState, TargetGroupInfo, largest_state_bytes

# Booked turns in a row after which Preflight gives up (ThrottledError, then the Retry and the Catch): a booked
# turn always comes, so more than this means the bookings keep going stale.
MAX_PREFLIGHT_TURNS = 10
# Preflight's Describe* calls per target group when it describes its groups alone: DescribeTargetGroups and
# DescribeTargetGroupAttributes (one DescribeTargetGroups call names up to 20 groups: describe_groups).
CALLS_PER_GROUP = 2


class PreflightWaiting(BaseModel):
    """Preflight's answer when its Describe* calls are booked for later: the state machine's `Describe Turn
    Booked?` sees ``preflight`` and sends it to `Wait For Describe Turn` for ``wait_seconds``, then back."""

    model_config = ConfigDict(extra="forbid")
    preflight: Literal["WAITING_FOR_DESCRIBE_TURN"] = PREFLIGHT_WAITING
    describe_slot_at: float
    wait_seconds: int
    turns: int
    reason: str
    # The Describe* calls the booked turn covers (None: an answer from before they were counted, which booked
    # CALLS_PER_GROUP a group).
    booked_calls: int | None = None

    @classmethod
    def parse(cls, data: Any) -> PreflightWaiting | None:
        """The waiting answer Preflight finds in its own input when it comes back from the wait, else None."""
        if isinstance(data, dict) and data.get("preflight") == PREFLIGHT_WAITING:
            return cls.model_validate(data)
        return None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def preflight(
    ports: Ports, request: RolloutRequest, execution_name: str, waited: PreflightWaiting | None = None
) -> RolloutState | PreflightWaiting:
    """Validate, find the target groups, assess safety. Reads only: a refused rollout changed nothing.

    ``waited`` is Preflight's own earlier answer when it comes back from `Wait For Describe Turn` (its Describe*
    calls were booked for later). Returns the rollout's first state, or such a waiting answer."""
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
    groups = describe_groups(ports, dep.namespace, bindings, waited)
    if isinstance(groups, PreflightWaiting):
        return groups
    # Requests longer than declared, as the ALB saw them, size the drain (a note says so); the state carries the
    # request as sized, so Start Step's hardening and every later check use the same number.
    request, long_notes, long_calls = analysis.sized_for_long_requests(ports, request, groups, ports.clock.now())
    try:
        hardening, findings = assess(request, dep, groups)
    except UnsafeConfigurationError as e:
        if not long_notes:
            raise
        raise UnsafeConfigurationError(f"{e} ({long_notes[0]})") from e
    if findings and not request.policy.harden:
        raise UnsafeConfigurationError(
            f"{ns}/{dep.name} cannot roll without dropping requests: "
            + "; ".join(findings + long_notes)
            + ". Fix these, or start again with policy.harden=true to let albgate apply them on the first step."
        )

    now = ports.clock.now()
    plan = step_targets(dep.replicas, request.policy)
    check_limits(request, plan, groups, previous_image=container.image, hardening=hardening, findings=findings)
    # Last of the checks: an alarm may be failing for a reason the checks above would have named first.
    alarm_notes = alarms.check_at_start(ports, request.policy, now)
    baselines, analysis_notes = analysis.check_at_start(ports, request.policy, groups, now)
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
        notes=notes + long_notes + alarm_notes + analysis_notes,
        requested_image=request.image or "",
        target_groups=groups,
        approval_required=1 in request.policy.approval_before_steps,
        more_steps=True,
        rollback_allowed=request.policy.rollback_on_failure,
        baselines=baselines,
        get_metric_data_calls=len(baselines) + long_calls,
    )
    if request.kind == "restart":
        # A restart keeps the image: a new template annotation makes a new ReplicaSet (as kubectl does).
        state.hardening = {**hardening, "template_annotations": {"albgate.io/restarted-by": execution_name}}
    return state


def describe_groups(
    ports: Ports, ns: str, bindings: list[TargetGroupBinding], waited: PreflightWaiting | None
) -> list[TargetGroupInfo] | PreflightWaiting:
    """Each binding's target group as ELB describes it, its calls in turns of albgate's share of the account's
    Describe* bucket: the settings of groups another Preflight described moments ago from the board, the others
    with one DescribeTargetGroups call that also describes what the Preflights waiting for a turn want, and one
    DescribeTargetGroupAttributes call a group (lambdas/domain/descriptions.py). Returns a waiting answer when
    the calls are booked for later."""
    now = ports.clock.now()
    ordered = sorted(bindings, key=lambda b: b.name)
    arns = list(dict.fromkeys(b.target_group_arn for b in ordered))
    board = ports.descriptions.board()
    known = descriptions.fresh(board, arns, now)
    missing = [arn for arn in arns if arn not in known]
    need = len(arns) + descriptions.calls_for(missing)
    slot, turns, have = None, 0, 0
    if waited is not None:
        slot, turns = waited.describe_slot_at, waited.turns
        have = waited.booked_calls if waited.booked_calls is not None else CALLS_PER_GROUP * len(arns)
        if now > slot + STALE_SLOT_SECONDS:  # the turn went stale: book again
            slot, have = None, 0
        elif now + BOOKED_EARLY_SECONDS < slot:
            return _waiting(slot, max(POD_START_POLL_SECONDS, math.ceil(slot - now)), turns, have,
                            "Preflight's look at the target groups is booked")
    # Two bookings at most: a Preflight that joined a describer and was let go at once (or whose describer went
    # another way) books the DescribeTargetGroups call it then lacks.
    while need > have:
        join = False
        if have == 0 and descriptions.may_join(board, missing, now):
            # only where the share's queue is short: a start-up crowd, not the share pacing many rollouts' starts
            probe = ports.budget.acquire(need, reserve=False)
            if probe <= 0:  # let go at once, all of its calls counted
                break
            join = probe <= descriptions.JOIN_WAIT_SECONDS
        book = need - have - (descriptions.calls_for(missing) if join else 0)
        wait = ports.budget.acquire(book, reserve=True)
        have += book
        if wait > 0:
            slot = now + wait
            if missing:
                ports.descriptions.want(missing, now, None if join else slot)
            return _waiting(slot, max(POD_START_POLL_SECONDS, math.ceil(wait)), turns, have,
                            "albgate's share of the account's Describe* calls is spent (other albgate rollouts are "
                            "polling); Preflight's look at the target groups is booked" +
                            (", and another Preflight describes them before it" if join else ""))
    described = {**known, **_describe_settings(ports, board, missing, now)}
    delays = {arn: ports.elb.describe_deregistration_delay(arn) for arn in arns}
    return [group_info(ns, b, described[b.target_group_arn].with_delay(delays[b.target_group_arn])) for b in ordered]


def _describe_settings(ports: Ports, board: descriptions.Board, missing: list[str],
                       now: float) -> dict[str, TargetGroupSettings]:
    """DescribeTargetGroups for ``missing``, each call filled up with what other Preflights want, the answers put on
    the board. A call ELB refuses because a group another Preflight wanted is gone (NotFoundError names none) is
    made again with this Preflight's own groups only, and the others are taken off the wanted list."""
    answers: dict[str, TargetGroupSettings] = {}
    for batch in descriptions.batches(board, missing, now):
        own = [arn for arn in batch if arn in missing]
        try:
            got = ports.elb.describe_target_group_settings(batch)
        except NotFoundError:
            if len(own) == len(batch):
                raise
            ports.descriptions.offer([], now, forget=[arn for arn in batch if arn not in own])
            got = ports.elb.describe_target_group_settings(own)
        answers.update((s.arn, s) for s in got)
    if answers:
        ports.descriptions.offer(list(answers.values()), now, forget=descriptions.done_with(board, now))
    lost = [arn for arn in missing if arn not in answers]
    if lost:
        raise NotFoundError(f"target group {lost[0]} was not returned by DescribeTargetGroups")
    return answers


def _waiting(slot: float, wait: int, turns: int, booked: int, reason: str) -> PreflightWaiting:
    if turns >= MAX_PREFLIGHT_TURNS:
        raise ThrottledError(f"albgate's share of the account's Describe* calls: no turn after {turns} bookings")
    return PreflightWaiting(describe_slot_at=slot, wait_seconds=wait, turns=turns + 1, booked_calls=booked,
                            reason=f"{reason} in {wait} s")


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


def assess(
    request: RolloutRequest, dep: Deployment, groups: list[TargetGroupInfo]
) -> tuple[dict[str, Any], list[str]]:
    """What would drop requests (lambdas/domain/safety.py), and the DeploymentPatch fields that fix it (applied
    only with harden). A target group whose deregistration delay is too short is refused outright: the fix is on
    the Ingress or Service, not the Deployment."""
    policy = request.policy
    found = safety.deployment_findings(dep, policy)
    # The delay is the target group's own attribute (DescribeTargetGroupAttributes), i.e. the value the controller
    # applied after preferring the Service's annotation over the Ingress's; only the fix must name both places.
    for g in groups:
        problem = safety.deregistration_delay_problem(g.deregistration_delay_seconds, policy)
        if problem:
            raise UnsafeConfigurationError(
                f"target group {g.arn}: {problem}; raise it: "
                + lbc.fix(lbc.TG_ATTRIBUTES, f"{lbc.DEREGISTRATION_DELAY}={policy.max_request_seconds}")
            )
    return safety.hardening_patch(found), [f"{f.message}; {f.fix}" for f in found]
