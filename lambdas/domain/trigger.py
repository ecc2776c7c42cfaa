"""The ECR push trigger's decisions: which pushes start which rollouts, under which name, and who holds the lock.

Job: turn an EventBridge ``ECR Image Action`` event into an ``EcrPush`` (or a reason to ignore it), map the
push's repository and tag to the configured applications (``fnmatch`` globs, case-sensitive like tags), build the
rollout request pinned by digest and a deterministic Step Functions execution name, and decide, from the
current lease item of a Deployment (lambdas/domain/lease.py) and whether its holder still runs, whether a push
takes the lease, takes it over from a holder that ended, is a replay of the holder, is queued as the newest
pending push, is stale, or cannot be ordered against another push of the same second. Also: parse a Step Functions ``Execution Status Change`` event and name the
outcome albgate publishes, and parse the trigger's configuration (``TriggerConfig``, the file its layer holds).

Invariant: pure. No I/O, no clock, no environment: every function is a function of its arguments, so the same
event always gives the same decision and the same execution name (that is what makes a replayed event start
nothing new). Malformed input never raises anything but ``Ignored``, which carries the logged reason.

Event schemas: ECR "Sample events from Amazon ECR" (Amazon ECR user guide, "Amazon ECR events and
EventBridge"): ``detail`` has ``action-type`` (PUSH | DELETE), ``result`` (SUCCESS | FAILURE),
``repository-name``, ``image-digest`` and ``image-tag``. Step Functions (developer guide, "EventBridge for
Step Functions execution status changes"): ``detail`` has ``executionArn``, ``stateMachineArn``, ``name``,
``status`` (RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED), ``input`` (a JSON string, left out above
248 KB) and, when it failed, ``error`` and ``cause``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas.domain.limits import ROLLOUT_TIMEOUT_SECONDS
from lambdas.domain.models import RolloutPolicy, RolloutRequest, validation_message
from lambdas.domain.ports import EXECUTION_PENDING_REDRIVE, EXECUTION_RUNNING
from lambdas.domain.contract import ROLLED_BACK_ERROR, ROLLOUT_FAILED, ROLLOUT_ROLLED_BACK, ROLLOUT_SUCCEEDED
from lambdas.domain.validators import (
    ACCOUNT_ID,
    ACCOUNT_ID_PATTERN,
    AWS_REGION_PATTERN,
    ECR_REPOSITORY_NAME,
    IMAGE_TAG,
    SHA256_DIGEST,
    ClusterName,
    EcrRepositoryName,
    KubernetesName,
    KubernetesObjectName,
    Rule,
    TagGlob,
)

ECR_SOURCE = "aws.ecr"
ECR_DETAIL_TYPE = "ECR Image Action"
STATES_SOURCE = "aws.states"
STATES_DETAIL_TYPE = "Step Functions Execution Status Change"
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

# Step Functions execution names: 1-80 characters; for CloudWatch Logs only 0-9, A-Z, a-z, '-' and '_'
# (StartExecution API reference, `name`). albgate's names keep to the logging-safe set.
EXECUTION_NAME_MAX = 80
_NAME_HASH_CHARS = 16  # 64 bits of sha256 over the whole (cluster, namespace, deployment, digest)
_DIGEST_CHARS = 12  # what `docker images` shows: readable, not what makes the name unique
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z_-]+")

_STATE_MACHINE_ARN = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):states:(?P<region>{AWS_REGION_PATTERN}):(?P<account>{ACCOUNT_ID_PATTERN}):"
    r"stateMachine:"
    r"(?P<name>[0-9A-Za-z_-]{1,80})$"
)

# The rollout state machine's timeout (stacks/constructs/rollout_workflow.py uses this name): no execution runs
# longer, which bounds how long a lease item can matter (LEASE_TTL_SECONDS).
STATE_MACHINE_TIMEOUT_SECONDS = ROLLOUT_TIMEOUT_SECONDS
_LOCK_MARGIN_SECONDS = 600


class Ignored(Exception):
    """An event albgate does not act on; ``str(exc)`` is the reason it logs."""


@dataclass(frozen=True)
class EcrPush:
    account: str
    region: str
    repository: str
    digest: str
    tag: str
    time: str  # the event's `time` (ISO 8601, UTC): orders racing pushes
    event_id: str = ""


class TriggerApplication(BaseModel):
    """One application the trigger may roll: the CDK config's ``ApplicationConfig`` fields it needs, checked by
    the same rules (lambdas/domain/validators.py)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cluster: ClusterName
    namespace: KubernetesName
    deployment: KubernetesObjectName
    container: KubernetesName
    ecr_repository: EcrRepositoryName
    tag_pattern: TagGlob = "*"
    replicas: int | None = Field(default=None, ge=1)

    @property
    def lock_key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.deployment}"


# Where the trigger's configuration (``TriggerConfig`` as JSON) is at run time: the EcrTrigger function's own
# layer holds it (stacks/constructs/ecr_trigger.py), and Lambda unpacks layers under /opt. Not in the
# environment: Lambda keeps at most 4 KB of environment per function (docs/facts.md, "AWS limits albgate checks").
TRIGGER_CONFIG_PATH = "/opt/albgate/trigger.json"
TRIGGER_CONFIG_ENV = "ALBGATE_TRIGGER_CONFIG"  # the environment variable that names the file (tests point it elsewhere)


class TriggerConfig(BaseModel):
    """What the trigger Lambda reads at cold start: the applications a push may roll and every rollout's policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    applications: list[TriggerApplication] = Field(min_length=1)
    policy: RolloutPolicy


def parse_trigger_config(text: str) -> TriggerConfig:
    """The trigger's configuration from its JSON; ValueError naming every bad field (``applications.0.namespace:
    ...``)."""
    try:
        return TriggerConfig.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from exc


def _get(detail: dict[str, Any], key: str, rule: Rule | None, what: str = "") -> str:
    """``detail[key]``, a string keeping ``rule`` (lambdas/domain/validators.py); else ``Ignored``."""
    what = rule.what if rule is not None else what
    value = detail.get(key)
    if value is None:
        raise Ignored(f"malformed event: detail.{key} is missing")
    if not isinstance(value, str):
        raise Ignored(f"malformed event: detail.{key} is {type(value).__name__}, expected a string ({what})")
    if rule is not None and not rule.matches(value):
        raise Ignored(f"malformed event: detail.{key} {value[:100]!r} is not {what}")
    return value


def parse_ecr_push(event: Any, *, account: str, region: str) -> EcrPush:
    """The successful push this event reports, in this account and Region; else ``Ignored`` with the reason."""
    if not isinstance(event, dict):
        raise Ignored(f"malformed event: expected a JSON object, got {type(event).__name__}")
    if event.get("source") != ECR_SOURCE or event.get("detail-type") != ECR_DETAIL_TYPE:
        raise Ignored(
            f"not an ECR image action: source {event.get('source')!r}, detail-type {event.get('detail-type')!r}"
        )
    if event.get("account") != account:
        raise Ignored(f"event from account {event.get('account')!r}; this albgate serves account {account}")
    if event.get("region") != region:
        raise Ignored(f"event from Region {event.get('region')!r}; this albgate serves Region {region}")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise Ignored("malformed event: detail is missing or not an object")
    action = _get(detail, "action-type", None, "an action type")
    if action != "PUSH":
        raise Ignored(f"action-type {action!r}: only PUSH starts a rollout")
    result = _get(detail, "result", None, "a result")
    if result != "SUCCESS":
        raise Ignored(f"result {result!r}: only a successful push starts a rollout")
    repository = _get(detail, "repository-name", ECR_REPOSITORY_NAME)
    digest = _get(detail, "image-digest", SHA256_DIGEST)
    if detail.get("image-tag") in (None, ""):
        raise Ignored(f"push of {repository}@{digest} has no tag; albgate matches tag_pattern, so it rolls tags only")
    tag = _get(detail, "image-tag", IMAGE_TAG)
    time = event.get("time")
    if not isinstance(time, str) or _parse_time(time) is None:
        raise Ignored(f"malformed event: time {time!r} is not an ISO 8601 timestamp")
    event_id = event.get("id") if isinstance(event.get("id"), str) else ""
    return EcrPush(account, region, repository, digest, tag, time, event_id)


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def is_newer_or_same(a: str, b: str) -> bool:
    """Whether push time ``a`` is at or after ``b`` (ISO 8601; an unparsable ``b`` loses)."""
    ta, tb = _parse_time(a), _parse_time(b)
    if ta is None:
        return False
    if tb is None:
        return True
    return ta >= tb


def matching_applications(
    applications: list[TriggerApplication], repository: str, tag: str
) -> list[TriggerApplication]:
    """Applications whose repository is the push's and whose tag_pattern glob matches its tag, in config order."""
    return [
        a for a in applications if a.ecr_repository == repository and fnmatch.fnmatchcase(tag, a.tag_pattern)
    ]


def image_uri(account: str, region: str, repository: str, digest: str) -> str:
    suffix = ".com.cn" if region.startswith("cn-") else ".com"
    return f"{account}.dkr.ecr.{region}.amazonaws{suffix}/{repository}@{digest}"


def rollout_request(app: TriggerApplication, push: EcrPush, policy: RolloutPolicy) -> RolloutRequest:
    """The execution input: the application's Deployment and container, the image pinned by digest."""
    return RolloutRequest(
        cluster=app.cluster,
        namespace=app.namespace,
        deployment=app.deployment,
        container=app.container,
        image=image_uri(push.account, push.region, push.repository, push.digest),
        policy=policy,
    )


def execution_name(cluster: str, namespace: str, deployment: str, digest: str) -> str:
    """``<deployment>-<12 digest hex>-<16 hash hex>``, at most 80 logging-safe characters, deterministic.

    Uniqueness comes from the hash over the whole tuple (a '/' joins it: no Kubernetes or cluster name has one);
    the readable prefix is truncated to fit.
    """
    key = "/".join((cluster, namespace, deployment, digest))
    h = hashlib.sha256(key.encode()).hexdigest()[:_NAME_HASH_CHARS]
    hex_digest = digest.split(":", 1)[-1][:_DIGEST_CHARS]
    room = EXECUTION_NAME_MAX - len(hex_digest) - len(h) - 2
    prefix = _UNSAFE_NAME.sub("-", deployment)[: room - 1].strip("-") or "rollout"
    return f"{prefix}-{hex_digest}-{h}"


# ---------------------------------------------------------------------------------------------------------
# The per-Deployment lease, as the ECR trigger sees it (the lease itself: lambdas/domain/lease.py)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """The newest push waiting for a Deployment's running rollout to end (kept on the lease item)."""

    execution_name: str
    input: str  # the execution input (JSON), started as is
    pushed_at: str  # the ECR event's `time`
    image: str  # <registry>/<repository>@<digest>


@dataclass(frozen=True)
class LockItem:
    """One Deployment's lease item: who holds the Deployment, and the push waiting for it."""

    key: str  # cluster/namespace/deployment
    execution_name: str  # the execution that holds the Deployment
    input: str  # its input when a push started it (a retried release restarts it idempotently); "" otherwise
    expires_at: int  # epoch seconds: DynamoDB's TTL only (LEASE_TTL_SECONDS); never decides who holds it
    pushed_at: str  # time of the push that started it; "" when it was started otherwise
    image: str
    pending: Pending | None = None
    handed_over_from: str = ""  # the execution whose end handed this lease over (release retries)
    execution_arn: str = ""  # the holder's ARN (state machine ARN + name), what DescribeExecution is asked about
    claimed_at: int = 0  # epoch seconds when the lease was written for this holder


# The ECR trigger (and the hand-over on release) writes the lease for an execution before StartExecution, in the
# same invocation (30 s timeout). Until this long after the claim, a holder Step Functions does not know yet is
# starting, not gone; after it, it never started (StartExecution failed: the event is retried or dead-lettered).
START_WINDOW_SECONDS = 60
# Every execution of the rollout state machine has ended by STATE_MACHINE_TIMEOUT_SECONDS after its start, so an
# item not written for that long (plus a margin) names nothing that runs; DynamoDB's TTL may then delete it. A
# push waiting that long is older than the push rule's maximum event age anyway (stacks/constructs/ecr_trigger.py).
LEASE_TTL_SECONDS = STATE_MACHINE_TIMEOUT_SECONDS + _LOCK_MARGIN_SECONDS


def holder_running(item: LockItem, status: str | None, now: float) -> bool:
    """Whether the lease's holder may still run, given DescribeExecution's answer about it (None: no such
    execution). Only a proof of the contrary frees a lease: an execution that ended (any terminal status), or
    one Step Functions does not know although it was claimed longer ago than a start takes."""
    if status in (EXECUTION_RUNNING, EXECUTION_PENDING_REDRIVE):
        return True
    if status is None:
        return now - item.claimed_at < START_WINDOW_SECONDS
    return False


class LockDecision(Enum):
    ACQUIRE = "acquire"  # no lease: take it and start
    TAKE_OVER = "take_over"  # the holder is proven not running: start the newest of this push and the pending one
    HELD_BY_SELF = "held_by_self"  # a replay of the holder's push: start again (idempotent by name)
    QUEUE = "queue"  # another rollout runs: become (or stay) the pending push
    ALREADY_PENDING = "already_pending"  # a replay of the pending push
    STALE = "stale"  # older than what runs or waits: nothing to do
    UNORDERED = "unordered"  # pushed in the same second as what runs or waits and ECR cannot tell which is newer


@dataclass(frozen=True)
class Decision:
    kind: LockDecision
    reason: str = field(default="")
    start: Pending | None = None  # TAKE_OVER: the push to start (this one, or the pending one when it is newer)
    other: str = ""  # UNORDERED: the execution this push could not be ordered against


class Order(Enum):
    NEWER = "newer"
    OLDER = "older"
    UNKNOWN = "unknown"


PushedAt = Callable[[str], "float | None"]  # image -> ECR's imagePushedAt (epoch seconds), None if unknown


def push_order(a_time: str, a_image: str, b_time: str, b_image: str, pushed_at: PushedAt) -> Order:
    """Whether push a came after push b. The event times first (ISO 8601, whole seconds: two pushes in one second
    tie); on a tie, ECR's own ``imagePushedAt`` of both images (DescribeImages, finer than a second); when ECR
    cannot tell them apart either, UNKNOWN: albgate does not guess. An unparsable ``b`` (a rollout not started by
    a push) is older than any push."""
    ta, tb = _parse_time(a_time), _parse_time(b_time)
    if tb is None:
        return Order.NEWER
    if ta is None:
        return Order.OLDER
    if ta != tb:
        return Order.NEWER if ta > tb else Order.OLDER
    pa, pb = pushed_at(a_image), pushed_at(b_image)
    if pa is None or pb is None or pa == pb:
        return Order.UNKNOWN
    return Order.NEWER if pa > pb else Order.OLDER


def decide(
    item: LockItem | None, push: Pending, *, running: bool | None, pushed_at: PushedAt
) -> Decision:
    """What a push for one Deployment does, given the lease item as read (None: no item) and whether its holder
    may still run (``holder_running``; only asked when the item names another execution)."""
    name = push.execution_name
    if item is None:
        return Decision(LockDecision.ACQUIRE, "no rollout holds the Deployment")
    if item.execution_name == name:
        return Decision(LockDecision.HELD_BY_SELF, "this push's rollout already holds the Deployment")
    if item.pending is not None and item.pending.execution_name == name:
        return Decision(LockDecision.ALREADY_PENDING, "this push already waits for the running rollout")
    pending = item.pending
    vs_holder = push_order(push.pushed_at, push.image, item.pushed_at, item.image, pushed_at)
    vs_pending = (push_order(push.pushed_at, push.image, pending.pushed_at, pending.image, pushed_at)
                  if pending is not None else Order.NEWER)
    if not running:
        # The holder ended and its lease was not released (its end event is late or was lost): the newest push
        # starts; a pending push is kept when this one is not newer, so no queued push is dropped.
        ended = f"{item.execution_name} no longer runs"
        if vs_holder is Order.NEWER and vs_pending is Order.NEWER:
            return Decision(LockDecision.TAKE_OVER, f"{ended}; this push starts", start=push)
        if pending is not None:
            return Decision(LockDecision.TAKE_OVER, f"{ended}; the push waiting for it ({pending.execution_name}) "
                            "starts, it is not older than this one", start=pending)
        if vs_holder is Order.UNKNOWN:
            return Decision(LockDecision.UNORDERED, f"{ended}, but it rolled an image pushed in the same second as "
                            "this one and ECR cannot tell which is newer", other=item.execution_name)
        return Decision(LockDecision.STALE, f"pushed before the image {item.execution_name} rolled")
    if vs_holder is Order.UNKNOWN:
        return Decision(LockDecision.UNORDERED, f"pushed in the same second as the image {item.execution_name} is "
                        "rolling, and ECR cannot tell which is newer", other=item.execution_name)
    if vs_holder is Order.OLDER:
        return Decision(LockDecision.STALE, f"pushed before the running rollout {item.execution_name}'s image")
    if pending is not None and vs_pending is Order.UNKNOWN:
        return Decision(LockDecision.UNORDERED, f"pushed in the same second as the waiting push "
                        f"{pending.execution_name}, and ECR cannot tell which is newer", other=pending.execution_name)
    if pending is not None and vs_pending is Order.OLDER:
        return Decision(LockDecision.STALE, f"a newer push ({pending.execution_name}) already waits")
    return Decision(
        LockDecision.QUEUE,
        f"{item.execution_name} is rolling the Deployment; this push waits as the newest and starts when it ends",
    )


# ---------------------------------------------------------------------------------------------------------
# Step Functions execution status events
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutionEnded:
    execution_arn: str
    state_machine_arn: str
    name: str
    status: str
    error: str
    cause: str
    request: dict[str, Any] | None  # the execution input, when the event carries it

    @property
    def lock_key(self) -> str | None:
        r = self.request or {}
        parts = [r.get("cluster"), r.get("namespace"), r.get("deployment")]
        return "/".join(parts) if all(isinstance(p, str) and p for p in parts) else None  # type: ignore[arg-type]


def parse_execution_ended(event: Any, *, state_machine_arn: str) -> ExecutionEnded:
    """A terminal status of the rollout state machine's execution; else ``Ignored`` with the reason."""
    if not isinstance(event, dict):
        raise Ignored(f"malformed event: expected a JSON object, got {type(event).__name__}")
    if event.get("source") != STATES_SOURCE or event.get("detail-type") != STATES_DETAIL_TYPE:
        raise Ignored(
            f"not an execution status change: source {event.get('source')!r}, "
            f"detail-type {event.get('detail-type')!r}"
        )
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise Ignored("malformed event: detail is missing or not an object")
    arn = _get(detail, "stateMachineArn", None, "an ARN")
    if arn != state_machine_arn:
        raise Ignored(f"execution of {arn}, not of the rollout state machine {state_machine_arn}")
    status = _get(detail, "status", None, "a status")
    if status not in TERMINAL_STATUSES:
        raise Ignored(f"status {status!r} is not terminal")
    execution_arn = _get(detail, "executionArn", None, "an ARN")
    name = _get(detail, "name", None, "a name")
    request: dict[str, Any] | None = None
    raw = detail.get("input")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
            request = parsed if isinstance(parsed, dict) else None
        except json.JSONDecodeError:
            request = None
    error = detail.get("error") if isinstance(detail.get("error"), str) else ""
    cause = detail.get("cause") if isinstance(detail.get("cause"), str) else ""
    return ExecutionEnded(execution_arn, arn, name, status, error or "", cause or "", request)


def outcome_event(ended: ExecutionEnded) -> str:
    """The albgate event for an execution's end: rolled back is FAILED with the error ``RolledBack``."""
    if ended.status == "SUCCEEDED":
        return ROLLOUT_SUCCEEDED
    if ended.status == "FAILED" and ended.error == ROLLED_BACK_ERROR:
        return ROLLOUT_ROLLED_BACK
    return ROLLOUT_FAILED


def console_url(region: str, execution_arn: str) -> str:
    """The execution's page in the Step Functions console."""
    domain = "console.amazonaws.cn" if region.startswith("cn-") else "console.aws.amazon.com"
    return f"https://{region}.{domain}/states/home?region={region}#/v2/executions/details/{execution_arn}"


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN StartExecution gives an execution of this state machine with this name."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def parse_state_machine_arn(arn: str) -> dict[str, str] | None:
    m = _STATE_MACHINE_ARN.match(arn)
    return m.groupdict() if m else None


def parse_applications(raw: Any) -> list[TriggerApplication]:
    """Applications from their JSON form; ValueError with one line per bad field."""
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, list):
        raise ValueError("expected a JSON list of applications")
    try:
        return [TriggerApplication.model_validate(a) for a in raw]
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from exc


def is_account(value: str) -> bool:
    return ACCOUNT_ID.matches(value)
