"""The state a rollout execution carries from task to task (the JSON the console shows as each state's output).

Invariant: the fields the state machine's Choice and Wait states read (``gate.status``, ``drain.status``,
``wait_seconds``, ``bake_seconds``, ``more_steps``, ``approval_required``, ``rollback_needed``,
``rollback_allowed``, ``failure_summary``) are always present and typed; everything a
handler needs to resume after a retry is in here, never in Lambda memory.

Size: Step Functions refuses a state over 256 KB with ``States.DataLimitExceeded``, which no Catch takes
(docs/facts.md, "AWS limits albgate checks"), so the state is bounded. What grows with the rollout is bounded
by the plan (one ``StepRecord`` per step), the Deployment (pod names and IPs) and its target groups, and
Preflight refuses a rollout whose ``largest_state`` is over ``STATE_PAYLOAD_BUDGET_BYTES``. Free text is
capped when a handler reads the state (``MAX_TEXT_CHARS``): a caught error's cause, the failure summary.
A step's list of targets albgate deregistered itself is kept only while that step's drain may still read it
(the current step, and the one whose drain the next gate follows; ``deregistered_total`` keeps the count), and
each entry names its target group by position in the carried state ("#0|10.0.1.7"; handlers see the
"<target group ARN>|<IP>" they wrote). What albgate keeps of the new targets it registers itself is per target
group, not per pod (``unregistered_since``, kept on the current step's record only, its groups named "#0" the
same way) and a count (``registered_total``): a list per pod would cost as much as ``deregistered`` again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lambdas.domain.gate import DrainResult, GateResult, GroupCounts, Verdict
from lambdas.domain.limits import CAUSE_MAX_CHARS, ERROR_MAX_CHARS, payload_bytes
from lambdas.domain.models import RolloutRequest
from lambdas.domain.plan import batch_sizes

# A caught error's cause, the failure summary and the rollback's error are cut to this many characters when a
# handler reads the state (a Lambda's cause may be 32,768 characters, with its stack trace).
MAX_TEXT_CHARS = 4096
TRUNCATED = " [truncated]"
_GROUP_REF = "#"  # a deregistered entry "#<i>|<ip>": target group i of target_groups


def cap_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` when it fits in ``limit`` characters, else its first part ending in ``TRUNCATED``."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def _cap_values(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {k: cap_text(v) if isinstance(v, str) else v for k, v in value.items()}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetGroupInfo(_Model):
    arn: str
    service: str
    health_check_interval_seconds: int
    healthy_threshold: int
    deregistration_delay_seconds: int
    # The one port its targets are registered on, as DescribeTargetHealth showed it or its TargetGroupBinding's
    # Service gives it; None while unknown, and for good once ELB showed targets on several ports (``ports_mixed``:
    # a target is then named only on the port ELB shows for it).
    target_port: int | None = None
    ports_mixed: bool = False
    load_balancer_arn: str = ""  # the first load balancer DescribeTargetGroups names (its ALB metrics' dimension)
    binding: str = ""  # its TargetGroupBinding: the controller's readiness gate on a pod is named after it


class AnalysisBaseline(_Model):
    """What a target group answered in the minutes before the rollout (lambdas.domain.rollout.analysis.Baseline)."""

    periods: int
    requests: float
    error_rate: float
    dispersion: float
    latency: float | None = None
    latency_sd: float | None = None


class StepRecord(_Model):
    step: int  # 1-based
    mode: Literal["rollout", "rollback"]
    target: int
    started_at: float
    gate_passed_at: float | None = None
    drained_at: float | None = None
    polls: int = 0
    observed_at: float | None = None  # when a DescribeTargetHealth last answered during this step
    # Since when every target the gate waits for has been `initial` (Elb.RegistrationInProgress), as the gate saw
    # it (from the pods' start where the step held its first look back for the turn: rollout.gate.expected_turn_at);
    # None when not (domain/poll.py paces the looks by it).
    registering_since: float | None = None
    # When a look of this step first saw one of its pods ContainersReady: the controller's conditions are trusted
    # alone until they are overdue (``rollout.gate.conditions_overdue_seconds``), then ELB is asked, or first the
    # controller nudged (``rollout.gate.elb_asked_at``).
    first_ready_at: float | None = None
    # How many looks of this step waited on those conditions at the quick pace (``poll.CONDITIONS_*``).
    quick_looks: int = 0
    # Seconds from the step's pods' ContainersReady (rollout.gate.started_at) to the last look at ELB that did not yet
    # find every new target healthy, when the gate passed on ELB's answer: the targets turned no sooner (None: the
    # gate passed on the controller's conditions, or not yet). Later steps of the same mode ask ELB no sooner after
    # their own pods, less a margin (rollout.gate.expected_turn_at).
    turned_after: float | None = None
    # Whether the Load Balancer Controller's own conditions opened this step's gate (they said every new target
    # healthy): its reconcile of the step's bindings went through just now, and rollout.drain leaves it the drain.
    opened_by_controller: bool = False
    # How long the controller took, at most, to register this step's slowest pod once it was ContainersReady, as its
    # first look at the pods' conditions bounded it (rollout.conditions.registration_lag); None until known. Its
    # client-side limiter queues registrations and deregistrations alike, so a long wait says a drain left to it
    # would wait as long.
    registration_lag: float | None = None
    # When the drain of this step was left to the controller (rollout.drain), so that it is left once.
    left_at: float | None = None
    # Released pods whose targets albgate deregistered itself (at once when the old ReplicaSet is scaled down, or
    # when a look still showed them in the pool): "target group ARN|IP". Emptied once no drain reads it any more (RolloutState.dump).
    deregistered: list[str] = Field(default_factory=list)
    deregistered_total: int = 0  # how many albgate deregistered itself in this step, the emptied ones included
    # Target group ARN -> since when every look of the gate has found a started new pod without a target there
    # (nobody registered it: gate.targets_to_register); a group where none is missing has no entry.
    unregistered_since: dict[str, float] = Field(default_factory=dict)
    registered_total: int = 0  # how many new pods' targets albgate registered itself in this step
    # When albgate last wrote a pod of this step to make a Load Balancer Controller that lags ELB look again
    # (rollout.nudge), and how many such writes the step made.
    nudged_at: float | None = None
    nudges: int = 0
    # When a look of this step first read the controller's conditions saying ELB health-checks every target the gate
    # waits for (rollout.gate.health_checked): about one health-check interval later each has had the one check a
    # registered target needs, and the gate nudges the controller (rollout.gate.checked_nudge_at). None: not so.
    checked_at: float | None = None
    # Old pods this step took out of their Service's endpoints before releasing its new ones
    # (rollout.out_of_service): their names and IPs, the new pods its passing look named, when they went out, and
    # when they were shown out of every pool (None: not yet, or never), and whether a look at ELB shows it rather
    # than the controller's checkpoint (a binding of the rollout carried none when they went out).
    out_of_service: list[str] = Field(default_factory=list)
    out_ips: list[str] = Field(default_factory=list)
    out_release: list[str] = Field(default_factory=list)
    out_at: float | None = None
    out_proven_at: float | None = None
    out_by_look: bool = False
    # How many of albgate's own DeregisterTargets calls for them the account's bucket refused (or could not be made).
    out_deregister_tries: int = 0


class RolloutState(_Model):
    request: RolloutRequest
    execution_name: str
    mode: Literal["rollout", "rollback"] = "rollout"
    started_at: float
    replicas: int
    plan: list[int]
    target_image: str  # what the pods must run at the end of the current mode
    previous_image: str
    previous_revision: int
    original_max_surge: int | str
    original_max_unavailable: int | str
    hardening: dict[str, Any] = Field(default_factory=dict)  # DeploymentPatch fields applied on step 1
    findings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # worth knowing, not blocking (e.g. a tag left unpinned)
    requested_image: str = ""  # the image as the input named it (a tag is pinned to target_image's digest)
    target_groups: list[TargetGroupInfo]
    template_changed: bool = False

    next_step: int = 0  # 0-based index of the step Start Step begins next
    step: int = -1  # 0-based index of the current step
    step_deadline: float = 0.0
    drain_deadline: float = 0.0
    watched_ips: list[str] = Field(default_factory=list)
    # The step (1-based) whose Verify Drain handed its still-draining targets, seen on ELB, over to the next step's
    # gate (Verdict.DRAINING); None once a look saw them out of the pool, and when they were handed over unseen
    # (``carried_ips``). watched_ips and drain_deadline are still that step's.
    pending_drain_step: int | None = None
    # Released targets of earlier steps that albgate deregistered itself and handed over unseen (Verdict.DRAINING
    # without a look): known out of the pool, not yet seen so. Every later drain watches them too, so the last one
    # sees every released target out of the pool; a gate's look that shows one still in it deregisters it again.
    carried_ips: list[str] = Field(default_factory=list)
    # When a step left its released targets to the Load Balancer Controller (rollout.drain), carried with the
    # others, while nothing has shown the controller deregistered them: the next gate deregisters the carried
    # targets itself unless the controller proves it went past them first (rollout.left.follow_left).
    left_at: float | None = None

    gate: GateResult = Field(default_factory=lambda: GateResult(Verdict.WAITING, "not started"))
    drain: DrainResult = Field(default_factory=lambda: DrainResult(Verdict.WAITING, "not started"))
    wait_seconds: int = 0
    bake_seconds: int = 0
    more_steps: bool = True
    approval_required: bool = False
    rollback_needed: bool = False
    # False when rolling back would be blind: albgate never saw this step's targets (throttled throughout), so
    # it cannot tell whether the pods a rollback removes are serving. The state machine then stops instead.
    rollback_allowed: bool = True
    throttles: int = 0
    # When the Describe* calls of the next look are booked in albgate's share of the account's bucket (epoch
    # seconds; None: nothing booked). Set only while that share is spent (lambdas/domain/budget.py).
    describe_slot_at: float | None = None
    # No DescribeTargetHealth of the gate before this time (epoch seconds): the back-off after a throttled call,
    # kept so that the looks meanwhile can read the controller's conditions (rollout.gate). None: no back-off.
    elb_after: float | None = None
    # Shared looks (lambdas/domain/looks.py): when this execution last looked at its targets, and when it last
    # did something that moves their states (released pods, registered or deregistered targets); another
    # execution's answer stands in for a call only if it is newer than both (epoch seconds; None: not yet).
    looked_at: float | None = None
    changed_at: float | None = None
    # When the other execution's booked call this one follows is due (epoch seconds; None: it follows none). A
    # follow that found no answer is not followed by another: the next look books its own turn.
    followed_at: float | None = None

    describe_target_health_calls: int = 0
    shared_looks: int = 0  # answers of other executions used instead of a DescribeTargetHealth call
    # policy.analysis (lambdas/domain/rollout/analysis.py): each target group's baseline, read by Preflight; when the
    # metrics were last read; what the last reading concluded (capped like the other reasons).
    baselines: dict[str, AnalysisBaseline] = Field(default_factory=dict)
    analysis_at: float | None = None
    analysis: str = ""
    get_metric_data_calls: int = 0
    steps: list[StepRecord] = Field(default_factory=list)
    failure: dict[str, Any] | None = None
    failure_summary: str = ""
    rollback_error: dict[str, Any] | None = None
    rollback_failure: dict[str, Any] | None = None
    outcome: Literal["in_progress", "succeeded", "rolled_back", "failed"] = "in_progress"
    finished_at: float | None = None

    @field_validator("failure_summary")
    @classmethod
    def _cap_summary(cls, v: str) -> str:
        return cap_text(v)

    @field_validator("failure", "rollback_error", "rollback_failure")
    @classmethod
    def _cap_failure(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _cap_values(v)

    @model_validator(mode="before")
    @classmethod
    def _expand_deregistered(cls, data: Any) -> Any:
        """"#<i>|<ip>" as carried -> "<ARN of target group i>|<ip>" as the handlers read and write it; "#<i>"
        (an ``unregistered_since`` key) -> "<ARN of target group i>"."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            return data
        groups = data.get("target_groups") or []
        arns = [g.get("arn") if isinstance(g, dict) else getattr(g, "arn", None) for g in groups]

        def expand(entry: Any) -> Any:
            if isinstance(entry, str) and entry.startswith(_GROUP_REF):
                index, sep, ip = entry[len(_GROUP_REF):].partition("|")
                if index.isdigit() and int(index) < len(arns) and arns[int(index)]:
                    return f"{arns[int(index)]}{sep}{ip}"
            return entry

        steps = []
        for record in data["steps"]:
            if isinstance(record, dict) and isinstance(record.get("deregistered"), list):
                record = {**record, "deregistered": [expand(e) for e in record["deregistered"]]}
            if isinstance(record, dict) and isinstance(record.get("unregistered_since"), dict):
                since = record["unregistered_since"]
                record = {**record, "unregistered_since": {expand(k): v for k, v in since.items()}}
            steps.append(record)
        return {**data, "steps": steps}

    def live_records(self) -> set[int]:
        """Indexes of the step records whose ``deregistered`` list a handler may still read: the current step's
        (Verify Drain) and the one whose drain the current gate follows (``pending_drain_step``)."""
        live = {len(self.steps) - 1} if self.steps else set()
        if self.pending_drain_step is not None:
            live |= {i for i, r in enumerate(self.steps)
                     if r.step == self.pending_drain_step and r.mode == self.mode}
        return live

    def dump(self) -> dict[str, Any]:
        """The state as the next state receives it (see the module's docstring for what is compacted)."""
        data = self.model_dump(mode="json")
        live = self.live_records()
        index = {g.arn: i for i, g in enumerate(self.target_groups)}

        def compact(entry: str) -> str:
            arn, sep, ip = entry.rpartition("|")
            return f"{_GROUP_REF}{index[arn]}|{ip}" if sep and arn in index else entry

        current = len(data["steps"]) - 1
        for i, record in enumerate(data["steps"]):
            record["deregistered_total"] = max(record["deregistered_total"], len(record["deregistered"]))
            record["deregistered"] = [compact(e) for e in record["deregistered"]] if i in live else []
            since = record["unregistered_since"] if i == current else {}  # only the current step's gate reads it
            record["unregistered_since"] = {f"{_GROUP_REF}{index[arn]}" if arn in index else arn: t
                                            for arn, t in since.items()}
        return data


# ---------------------------------------------------------------------------------------------------------
# The largest state a rollout can carry
# ---------------------------------------------------------------------------------------------------------
# docs/facts.md, "AWS limits albgate checks": a ReplicaSet's pods are named by generateName, cut to 58 characters
# plus 5 random ones; the longest textual IP address is IPv6's x:x:x:x:x:x:d.d.d.d form.
POD_NAME_MAX_CHARS = 63
IP_MAX_CHARS = 45
ANALYSIS_MAX_CHARS = 600  # RolloutState.analysis: what the last reading of the ALB metrics concluded, capped
REASON_MAX_CHARS = 1024  # a gate's or drain's reason, the longest albgate writes (with a handed-over drain's)
_TIMESTAMP = 1.0e10 / 3  # an epoch float as long as JSON writes one
_DIGEST_SUFFIX = "@sha256:" + "0" * 64


def largest_state(
    request: RolloutRequest,
    *,
    replicas: int,
    plan: list[int],
    target_groups: list[TargetGroupInfo],
    previous_image: str,
    hardening: dict[str, Any] | None = None,
    findings: list[str] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The largest state this rollout can carry, at its largest moment: its rollback failed too, in the last
    state before `Rollback Failed` (three copies of a full-length cause: the rollback's caught error, its
    summary and the failure summary that repeats it, which the state machine's Pass states write; the other
    way a rollback ends, `Rollback Could Not Start`, carries one such cause in ``rollback_error`` instead).

    Every list at its longest (the step records of the whole plan plus the rollback's, the old pods' IPs, the
    pods a gate releases, the targets albgate deregistered itself in every target group, for the step records
    that keep them, and since when each group has missed a new target) and every string at its longest
    (45-character IPv6 addresses, 63-character pod names, the longest reasons), whether or not all of it can
    happen at once."""
    groups = [g.model_copy(update={"target_port": 65535}) for g in target_groups]
    batch = max(batch_sizes(plan)) if plan else replicas
    ip = "f" * IP_MAX_CHARS
    pod = "p" * POD_NAME_MAX_CHARS
    reason = "r" * REASON_MAX_CHARS
    old_ips = [ip] * (replicas + batch)  # the old pods, surged and terminating ones included
    # The live records' entries: a rollback's step (every pod of the failed version, in every group), or a
    # rollout step's and the step before it whose drain it follows (their batches: at most the replicas).
    deregistered = [f"{g.arn}|{ip}" for g in groups] * (replicas + batch)

    def record(step: int, mode: str, target: int, keep: bool) -> StepRecord:
        return StepRecord(step=step, mode=mode, target=target, started_at=_TIMESTAMP, gate_passed_at=_TIMESTAMP,
                          drained_at=_TIMESTAMP, polls=10**6, observed_at=_TIMESTAMP,
                          registering_since=_TIMESTAMP, first_ready_at=_TIMESTAMP,
                          deregistered=deregistered if keep else [],
                          deregistered_total=len(deregistered),
                          unregistered_since={g.arn: _TIMESTAMP for g in groups} if keep else {},
                          registered_total=10**6, quick_looks=10**6, nudged_at=_TIMESTAMP, nudges=10**6,
                          checked_at=_TIMESTAMP,
                          opened_by_controller=True, registration_lag=_TIMESTAMP, left_at=_TIMESTAMP)

    steps = [record(i + 1, "rollout", t, keep=False) for i, t in enumerate(plan)]
    steps.append(record(1, "rollback", replicas, keep=True))
    summary = tuple(GroupCounts(target_group="t" * 32, service="s" * 63, healthy=replicas, initial=replicas,
                                unhealthy=replicas, draining=replicas, unregistered=replicas) for _ in groups)
    cause = "c" * CAUSE_MAX_CHARS
    error = "e" * ERROR_MAX_CHARS
    capped_summary = "s" * MAX_TEXT_CHARS
    rollback_summary = f"rollback failed: {error} ({cause}); it started because: {capped_summary}"
    image = request.image if "@" in request.image else request.image + _DIGEST_SUFFIX
    state = RolloutState(
        request=request,
        execution_name="n" * 80,
        mode="rollback",
        started_at=_TIMESTAMP,
        replicas=replicas,
        plan=plan,
        target_image=image,
        previous_image=previous_image,
        previous_revision=10**9,
        original_max_surge="100%",
        original_max_unavailable="100%",
        hardening=dict(hardening or {}),
        findings=list(findings or []),
        notes=list(notes or []),
        requested_image=request.image,
        target_groups=groups,
        template_changed=True,
        next_step=len(plan),
        step=len(plan) - 1,
        step_deadline=_TIMESTAMP,
        drain_deadline=_TIMESTAMP,
        watched_ips=old_ips,
        left_at=_TIMESTAMP,
        pending_drain_step=len(plan),
        gate=GateResult(Verdict.FAILED, reason, needed=replicas, healthy=replicas, initial=replicas,
                        unhealthy=replicas, unregistered=replicas, starting=replicas, release=(pod,) * replicas,
                        groups=summary),
        drain=DrainResult(Verdict.FAILED, reason, old_live=replicas, expected_old=replicas, routable=replicas,
                          draining=replicas, step=len(plan)),
        wait_seconds=10**6,
        baselines={g.arn: AnalysisBaseline(periods=10**6, requests=1e308, error_rate=1e308, dispersion=1e308,
                                           latency=1e308, latency_sd=1e308) for g in groups}
        if request.policy.analysis is not None else {},
        analysis_at=_TIMESTAMP,
        analysis="a" * ANALYSIS_MAX_CHARS,
        get_metric_data_calls=10**6,
        bake_seconds=10**6,
        throttles=10**6,
        describe_slot_at=_TIMESTAMP,
        elb_after=_TIMESTAMP,
        looked_at=_TIMESTAMP,
        changed_at=_TIMESTAMP,
        followed_at=_TIMESTAMP,
        describe_target_health_calls=10**9,
        shared_looks=10**9,
        steps=steps,
        outcome="in_progress",
        finished_at=_TIMESTAMP,
    )
    data = state.dump()
    # What the state machine's Pass states write after the last handler, uncapped (rollout_workflow.py:
    # Summarise Rollback Failure, Keep Rollback Cause).
    data["failure"] = {"Error": error, "Cause": cause}
    data["rollback_failure"] = {"summary": rollback_summary}
    data["failure_summary"] = rollback_summary
    return data


def largest_state_bytes(request: RolloutRequest, **kwargs: Any) -> int:
    return payload_bytes(largest_state(request, **kwargs))
