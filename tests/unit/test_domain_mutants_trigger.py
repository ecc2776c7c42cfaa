"""The ECR trigger's reading of its two events, and the reason it logs for each event it does not act on.

Given an ECR ``Image Action`` event or a Step Functions ``Execution Status Change`` event as EventBridge delivers
it, when ``parse_ecr_push`` / ``parse_execution_ended`` reads it, then a successful tagged push in this account
and Region becomes an ``EcrPush`` (and a terminal execution an ``ExecutionEnded``) field for field, and anything
else raises ``Ignored`` whose text, the line an operator reads in the trigger's log, says exactly why.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

import pytest

from lambdas.domain.contract import ROLLOUT_FAILED, ROLLOUT_ROLLED_BACK, ROLLOUT_SUCCEEDED
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.trigger import (
    Decision, EcrPush, ExecutionEnded, console_url, Ignored, LockDecision, LockItem, Order, Pending, TriggerApplication, decide,
    execution_name, is_account, is_newer_or_same, outcome_event, parse_applications, parse_ecr_push,
    parse_execution_ended, push_order, rollout_request,
)

ACCOUNT, REGION = "123456789012", "eu-west-1"
DIGEST = "sha256:" + "ab" * 32
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Rollout"
EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Rollout:cart-abababababab-0123456789abcdef"

PUSH_EVENT: dict[str, Any] = {
    "version": "0", "id": "4f5ec4d5-4de4-7aad-a046-56d5cfe1df0e", "detail-type": "ECR Image Action",
    "source": "aws.ecr", "account": ACCOUNT, "time": "2025-01-01T10:00:00Z", "region": REGION, "resources": [],
    "detail": {"result": "SUCCESS", "repository-name": "team/cart", "image-digest": DIGEST,
               "action-type": "PUSH", "image-tag": "release-7"},
}

ENDED_EVENT: dict[str, Any] = {
    "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175",
    "detail-type": "Step Functions Execution Status Change", "source": "aws.states", "account": ACCOUNT,
    "time": "2025-01-01T10:20:00Z", "region": REGION, "resources": [EXECUTION],
    "detail": {"executionArn": EXECUTION, "stateMachineArn": MACHINE, "name": "cart-abababababab-0123456789abcdef",
               "status": "FAILED", "error": "RolledBack", "cause": "step 2: new pod unhealthy",
               "input": json.dumps({"cluster": "prod", "namespace": "shop", "deployment": "cart"})},
}


def changed(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``event`` with ``path`` ("detail.result", "time") set to ``value`` (``...``: removed)."""
    out = copy.deepcopy(event)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


def read_push(event: Any) -> EcrPush:
    return parse_ecr_push(event, account=ACCOUNT, region=REGION)


def read_end(event: Any) -> ExecutionEnded:
    return parse_execution_ended(event, state_machine_arn=MACHINE)


# ---------------------------------------------------------------------------------------------------------
# ECR pushes
# ---------------------------------------------------------------------------------------------------------
def test_a_successful_tagged_push_is_read_field_for_field():
    # Given the event of a push of team/cart:release-7 / When it is read / Then every field is the event's
    assert read_push(PUSH_EVENT) == EcrPush(ACCOUNT, REGION, "team/cart", DIGEST, "release-7",
                                            "2025-01-01T10:00:00Z", "4f5ec4d5-4de4-7aad-a046-56d5cfe1df0e")


def test_a_push_event_without_an_id_still_rolls():
    # Given the same event without its id (or with a non-string id) / Then it is read, with an empty event id
    assert read_push(changed(PUSH_EVENT, "id", ...)).event_id == ""
    assert read_push(changed(PUSH_EVENT, "id", 7)).event_id == ""


IGNORED_PUSHES = [
    # id, change to the event (path, value; ... removes it), the whole reason the log shows
    ("not-an-object", None, None, "malformed event: expected a JSON object, got list"),
    ("other-source", "source", "aws.s3",
     "not an ECR image action: source 'aws.s3', detail-type 'ECR Image Action'"),
    ("other-detail-type", "detail-type", "ECR Image Scan",
     "not an ECR image action: source 'aws.ecr', detail-type 'ECR Image Scan'"),
    ("other-account", "account", "210987654321",
     "event from account '210987654321'; this albgate serves account 123456789012"),
    ("other-region", "region", "us-east-1", "event from Region 'us-east-1'; this albgate serves Region eu-west-1"),
    ("no-detail", "detail", ..., "malformed event: detail is missing or not an object"),
    ("delete", "detail.action-type", "DELETE", "action-type 'DELETE': only PUSH starts a rollout"),
    ("no-action", "detail.action-type", ..., "malformed event: detail.action-type is missing"),
    ("action-not-text", "detail.action-type", 3,
     "malformed event: detail.action-type is int, expected a string (an action type)"),
    ("failed-push", "detail.result", "FAILURE", "result 'FAILURE': only a successful push starts a rollout"),
    ("result-not-text", "detail.result", ["SUCCESS"],
     "malformed event: detail.result is list, expected a string (a result)"),
    ("bad-digest", "detail.image-digest", "sha256:xyz", "malformed event: detail.image-digest 'sha256:xyz' is not"),
    ("untagged", "detail.image-tag", ...,
     f"push of team/cart@{DIGEST} has no tag; albgate matches tag_pattern, so it rolls tags only"),
    ("empty-tag", "detail.image-tag", "",
     f"push of team/cart@{DIGEST} has no tag; albgate matches tag_pattern, so it rolls tags only"),
    ("bad-tag", "detail.image-tag", "-no", "malformed event: detail.image-tag '-no' is not"),
    ("no-time", "time", ..., "malformed event: time None is not an ISO 8601 timestamp"),
    ("bad-time", "time", "yesterday", "malformed event: time 'yesterday' is not an ISO 8601 timestamp"),
]


@pytest.mark.parametrize("path,value,reason", [c[1:] for c in IGNORED_PUSHES], ids=[c[0] for c in IGNORED_PUSHES])
def test_an_event_albgate_does_not_roll_is_ignored_with_the_exact_reason(path, value, reason):
    # Given the push event with one thing wrong for albgate
    event = ["not", "an", "event"] if path is None else changed(PUSH_EVENT, path, value)
    # When it is read / Then it is ignored, and the reason the log shows says what
    with pytest.raises(Ignored) as caught:
        read_push(event)
    assert str(caught.value).startswith(reason), str(caught.value)


def test_a_repository_name_ecr_would_refuse_is_ignored_naming_the_rule():
    # Given a push event whose repository name has an upper-case letter (ECR names are lower case)
    event = changed(PUSH_EVENT, "detail.repository-name", "Team/Cart")
    # When it is read / Then the reason names the field, the value and the rule it breaks
    with pytest.raises(Ignored, match=r"^malformed event: detail.repository-name 'Team/Cart' is not an? \w"):
        read_push(event)


def test_a_long_bad_value_is_cut_to_a_hundred_characters_in_the_reason():
    # Given a push event whose digest is 300 characters of junk
    event = changed(PUSH_EVENT, "detail.image-digest", "x" * 300)
    # When it is read / Then the reason quotes the first 100 characters only
    with pytest.raises(Ignored) as caught:
        read_push(event)
    assert f"'{'x' * 100}'" in str(caught.value) and "x" * 101 not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# Execution status changes
# ---------------------------------------------------------------------------------------------------------
def test_a_rolled_back_execution_is_read_field_for_field():
    # Given the event of a rollout that failed with RolledBack / When it is read
    ended = read_end(ENDED_EVENT)
    # Then every field is the event's, the input is parsed, and it maps to Rollout Rolled Back on its lock
    assert ended == ExecutionEnded(EXECUTION, MACHINE, "cart-abababababab-0123456789abcdef", "FAILED", "RolledBack",
                                   "step 2: new pod unhealthy", {"cluster": "prod", "namespace": "shop",
                                                                 "deployment": "cart"})
    assert ended.lock_key == "prod/shop/cart"
    assert outcome_event(ended) == ROLLOUT_ROLLED_BACK


@pytest.mark.parametrize("status,error,event", [
    ("SUCCEEDED", "", ROLLOUT_SUCCEEDED),
    ("FAILED", "States.Timeout", ROLLOUT_FAILED),
    ("TIMED_OUT", "", ROLLOUT_FAILED),
    ("ABORTED", "", ROLLOUT_FAILED),
])
def test_each_terminal_status_maps_to_its_albgate_event(status, error, event):
    # Given an execution that ended with ``status`` / When read / Then albgate announces ``event``
    ended = read_end(changed(changed(ENDED_EVENT, "detail.status", status), "detail.error", error))
    assert ended.status == status and outcome_event(ended) == event


@pytest.mark.parametrize("raw", [None, 42, "not json", json.dumps(["a", "list"])])
def test_an_execution_without_a_readable_input_has_no_request_and_no_lock(raw):
    # Given an ended execution whose input is missing, not text, not JSON, or not an object
    ended = read_end(changed(ENDED_EVENT, "detail.input", ... if raw is None else raw))
    # When read / Then it has no request, hence no lock to release
    assert ended.request is None and ended.lock_key is None


def test_an_execution_without_error_or_cause_reads_them_as_empty():
    # Given an ended execution's event whose error and cause are not text
    ended = read_end(changed(changed(ENDED_EVENT, "detail.error", {"x": 1}), "detail.cause", {"x": 1}))
    # When read / Then both are empty strings (the events carry "" rather than null)
    assert (ended.error, ended.cause) == ("", "")


IGNORED_ENDS = [
    ("not-an-object", None, None, "malformed event: expected a JSON object, got str"),
    ("other-source", "source", "aws.ecr", "not an execution status change: source 'aws.ecr', "
     "detail-type 'Step Functions Execution Status Change'"),
    ("other-detail-type", "detail-type", "Activity", "not an execution status change: source 'aws.states', "
     "detail-type 'Activity'"),
    ("no-detail", "detail", [], "malformed event: detail is missing or not an object"),
    ("other-machine", "detail.stateMachineArn", MACHINE + "2",
     f"execution of {MACHINE}2, not of the rollout state machine {MACHINE}"),
    ("still-running", "detail.status", "RUNNING", "status 'RUNNING' is not terminal"),
    ("no-execution-arn", "detail.executionArn", ..., "malformed event: detail.executionArn is missing"),
    ("no-name", "detail.name", 12, "malformed event: detail.name is int, expected a string (a name)"),
    ("machine-not-text", "detail.stateMachineArn", 1,
     "malformed event: detail.stateMachineArn is int, expected a string (an ARN)"),
    ("status-not-text", "detail.status", True, "malformed event: detail.status is bool, expected a string (a status)"),
    ("execution-not-text", "detail.executionArn", [],
     "malformed event: detail.executionArn is list, expected a string (an ARN)"),
    ("no-status", "detail.status", ..., "malformed event: detail.status is missing"),
]


@pytest.mark.parametrize("path,value,reason", [c[1:] for c in IGNORED_ENDS], ids=[c[0] for c in IGNORED_ENDS])
def test_an_event_that_is_not_a_rollout_ending_is_ignored_with_the_exact_reason(path, value, reason):
    # Given an execution event with one thing that makes it none of albgate's business
    event = "event" if path is None else changed(ENDED_EVENT, path, value)
    # When it is read / Then it is ignored with this reason
    with pytest.raises(Ignored, match=f"^{re.escape(reason)}$"):
        read_end(event)


# ---------------------------------------------------------------------------------------------------------
# Push times, applications, accounts
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,newer", [
    ("2025-01-01T10:00:01Z", "2025-01-01T10:00:00Z", True),
    ("2025-01-01T10:00:00Z", "2025-01-01T10:00:00Z", True),
    ("2025-01-01T09:59:59Z", "2025-01-01T10:00:00Z", False),
    ("2025-01-01T10:00:00+01:00", "2025-01-01T09:30:00Z", False),
    ("garbled", "2025-01-01T10:00:00Z", False),
    ("2025-01-01T10:00:00Z", "garbled", True),
])
def test_push_times_compare_as_instants_and_an_unreadable_time_loses(a, b, newer):
    # Given two push times / When compared / Then the later instant wins, a tie counts as newer, garble loses
    assert is_newer_or_same(a, b) is newer


def test_applications_are_read_from_json_text_or_a_list():
    # Given the applications as the config writes them
    raw = [{"cluster": "prod", "namespace": "shop", "deployment": "cart", "container": "app",
            "ecr_repository": "team/cart", "tag_pattern": "release-*"}]
    # When read from a list or from its JSON text / Then the same application comes back
    assert parse_applications(raw) == parse_applications(json.dumps(raw))
    assert parse_applications(raw)[0].lock_key == "prod/shop/cart"


@pytest.mark.parametrize("raw,message", [
    ({"cluster": "prod"}, "expected a JSON list of applications"),
    ([{"cluster": "prod", "namespace": "Shop", "deployment": "cart", "container": "app",
       "ecr_repository": "team/cart"}], "namespace: 'Shop' is not a Kubernetes name"),
])
def test_bad_applications_are_refused_naming_what_is_wrong(raw, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_applications(raw)


@pytest.mark.parametrize("value,ok", [("123456789012", True), ("12345678901", False), ("12345678901a", False)])
def test_an_account_is_twelve_digits(value, ok):
    assert is_account(value) is ok


# ---------------------------------------------------------------------------------------------------------
# The lease decision and the reason it logs
# ---------------------------------------------------------------------------------------------------------
T0, T1, T2 = "2025-01-01T10:00:00Z", "2025-01-01T10:00:30Z", "2025-01-01T10:01:00Z"
MY_PUSH = Pending("cart-mine", "{}", T1, "img-mine")
WAITS_OLDER = Pending("cart-older", "{}", T0, "img-older")
WAITS_NEWER = Pending("cart-newer", "{}", T2, "img-newer")
WAITS_SAME_SECOND = Pending("cart-same", "{}", T1, "img-same")


def lease_item(pushed_at: str = T0, pending: Pending | None = None, holder: str = "cart-now") -> LockItem:
    return LockItem("prod/shop/cart", holder, "", 0, pushed_at, "img-now", pending)


DECISIONS = [
    # id, item, running, expected decision
    ("free", None, None, Decision(LockDecision.ACQUIRE, "no rollout holds the Deployment")),
    ("replay-of-the-holder", lease_item(holder="cart-mine"), True,
     Decision(LockDecision.HELD_BY_SELF, "this push's rollout already holds the Deployment")),
    ("replay-of-the-waiting-push", lease_item(pending=Pending("cart-mine", "{}", T1, "img-mine")), True,
     Decision(LockDecision.ALREADY_PENDING, "this push already waits for the running rollout")),
    ("holder-gone", lease_item(), False,
     Decision(LockDecision.TAKE_OVER, "cart-now no longer runs; this push starts", start=MY_PUSH)),
    ("holder-gone-newer-push-waits", lease_item(pending=WAITS_NEWER), False,
     Decision(LockDecision.TAKE_OVER, "cart-now no longer runs; the push waiting for it (cart-newer) starts, it is "
              "not older than this one", start=WAITS_NEWER)),
    ("holder-gone-same-second", lease_item(pushed_at=T1), False,
     Decision(LockDecision.UNORDERED, "cart-now no longer runs, but it rolled an image pushed in the same second as "
              "this one and ECR cannot tell which is newer", other="cart-now")),
    ("holder-gone-this-push-older", lease_item(pushed_at=T2), False,
     Decision(LockDecision.STALE, "pushed before the image cart-now rolled")),
    ("holder-runs-same-second", lease_item(pushed_at=T1), True,
     Decision(LockDecision.UNORDERED, "pushed in the same second as the image cart-now is rolling, and ECR cannot "
              "tell which is newer", other="cart-now")),
    ("holder-runs-this-push-older", lease_item(pushed_at=T2), True,
     Decision(LockDecision.STALE, "pushed before the running rollout cart-now's image")),
    ("waiting-push-same-second", lease_item(pending=WAITS_SAME_SECOND), True,
     Decision(LockDecision.UNORDERED, "pushed in the same second as the waiting push cart-same, and ECR cannot tell "
              "which is newer", other="cart-same")),
    ("newer-push-waits", lease_item(pending=WAITS_NEWER), True,
     Decision(LockDecision.STALE, "a newer push (cart-newer) already waits")),
    ("newest-queues", lease_item(pending=WAITS_OLDER), True,
     Decision(LockDecision.QUEUE, "cart-now is rolling the Deployment; this push waits as the newest and starts "
              "when it ends")),
]


@pytest.mark.parametrize("item,running,expected", [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS])
def test_each_lease_decision_says_why_in_the_log_line_it_becomes(item, running, expected):
    # Given the lease item as read and whether its holder runs / When this push is decided (no ECR push times)
    # Then the decision, its reason (logged, and carried by Rollout Order Unknown) and whom it starts or names
    assert decide(item, MY_PUSH, running=running, pushed_at=lambda image: None) == expected


@pytest.mark.parametrize("times,order", [
    ({"a": 5.2, "b": 5.1}, Order.NEWER),
    ({"a": 5.1, "b": 5.2}, Order.OLDER),
    ({"a": 5.1, "b": 5.1}, Order.UNKNOWN),
    ({"a": 5.1}, Order.UNKNOWN),
    ({"b": 5.1}, Order.UNKNOWN),
])
def test_pushes_of_one_second_are_ordered_by_ecr_only_when_it_knows_both(times, order):
    # Given two pushes with the same event time, and what ECR's imagePushedAt says of each image
    # When ordered / Then the later imagePushedAt is newer; a tie or an unknown time orders nothing
    assert push_order(T1, "a", T1, "b", times.get) is order


def test_an_unreadable_push_time_is_older_than_any_push_and_any_push_newer_than_a_non_push():
    assert push_order("garbled", "a", T1, "b", lambda image: None) is Order.OLDER
    assert push_order(T1, "a", "", "b", lambda image: None) is Order.NEWER


# ---------------------------------------------------------------------------------------------------------
# Execution names and images
# ---------------------------------------------------------------------------------------------------------
def test_the_name_of_a_push_never_changes_between_versions():
    # Given one push / When its execution name is made / Then it is the name earlier versions gave it, so a push
    # replayed after an upgrade finds its execution and starts no second rollout
    assert execution_name("prod", "shop", "cart", "sha256:" + "ab" * 32) == EXPECTED_NAME


EXPECTED_NAME = "cart-abababababab-" + hashlib.sha256(
    ("prod/shop/cart/sha256:" + "ab" * 32).encode()).hexdigest()[:16]


def test_a_long_deployment_name_is_cut_to_fit_and_the_name_stays_what_it_was():
    # Given a 253-character Deployment name / When named / Then its first 49 characters, the digest's first 12 hex
    # characters and the hash make a name within Step Functions' 80, the same as earlier versions gave it
    digest = "sha256:" + "cd" * 32
    name = execution_name("prod", "shop", "a" * 253, digest)
    tail = hashlib.sha256(f"prod/shop/{'a' * 253}/{digest}".encode()).hexdigest()[:16]
    assert name == f"{'a' * 49}-{'cd' * 6}-{tail}" and len(name) <= 80


def test_characters_step_functions_logs_refuse_become_dashes_and_an_empty_prefix_becomes_rollout():
    assert execution_name("prod", "shop", "web.v2", "sha256:" + "ab" * 32).startswith("web-v2-abababababab-")
    assert execution_name("prod", "shop", "...", "sha256:" + "ab" * 32).startswith("rollout-abababababab-")


@pytest.mark.parametrize("region,host", [("eu-west-1", "amazonaws.com"), ("cn-north-1", "amazonaws.com.cn")])
def test_the_rolled_image_is_the_pushed_repository_pinned_by_digest_in_its_regions_registry(region, host):
    # Given a push in ``region`` / When its rollout input is made with a custom policy
    app = TriggerApplication(cluster="prod", namespace="shop", deployment="cart", container="app",
                             ecr_repository="team/cart")
    policy = RolloutPolicy(step_deadline_seconds=301)
    request = rollout_request(app, EcrPush(ACCOUNT, region, "team/cart", DIGEST, "v1", T0), policy)
    # Then the image is the account's registry in that Region, pinned by digest, and the policy is the config's
    assert request.image == f"{ACCOUNT}.dkr.ecr.{region}.{host}/team/cart@{DIGEST}"
    assert request.policy == policy


@pytest.mark.parametrize("region,host", [("eu-west-1", "console.aws.amazon.com"), ("cn-north-1", "console.amazonaws.cn")])
def test_the_console_link_of_an_execution_is_on_its_partitions_console(region, host):
    arn = f"arn:aws:states:{region}:{ACCOUNT}:execution:Rollout:x"
    assert console_url(region, arn) == f"https://{region}.{host}/states/home?region={region}#/v2/executions/details/{arn}"
