"""The ECR trigger's use case, seen from outside: the events it publishes, the executions it starts, the lease
items it writes and the decision log it leaves, for each way a push or an execution's end can go.

Given in-memory ports (the lease table's conditional writes, StartExecution, albgate's bus, DescribeExecution,
ECR's push times, a log), when ``roll_push`` or ``finish_holder`` runs, then every event carries what is rolled,
by which execution and its console link, the lease item records the holder as the rollout's own Preflight will
read it, and the log says which push got which decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from typing import Any

import pytest

from lambdas.domain.errors import ConflictError
from lambdas.domain.trigger import (
    LEASE_TTL_SECONDS, EcrPush, Ignored, LockItem, Pending, console_url, execution_name,
)
from lambdas.domain.trigger_use_case import MAX_LOCK_ATTEMPTS, TriggerPorts, finish_holder, roll_push
from tests.trigger.test_use_case import (
    ACCOUNT, DIGEST_A, DIGEST_B, KEY, MACHINE, REGION, Leases, Starter, Target, push,
)

NOW = 1_735_725_600.7
IMAGE_A = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/cart@{DIGEST_A}"
IMAGE_B = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/cart@{DIGEST_B}"
NAME_A = execution_name("prod", "shop", "cart", DIGEST_A)
NAME_B = execution_name("prod", "shop", "cart", DIGEST_B)


def arn(name: str) -> str:
    return MACHINE.replace(":stateMachine:", ":execution:") + f":{name}"


ROLLED = {"cluster": "prod", "namespace": "shop", "deployment": "cart", "container": "app"}


@dataclass
class Bus:
    events: list[tuple[str, dict[str, Any], list[str] | None]] = field(default_factory=list)

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        self.events.append((detail_type, detail, resources))


@dataclass
class Log:
    lines: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)

    def info(self, msg: str, *, extra: dict[str, Any] | None = None) -> None:
        self.lines.append(("info", msg, extra))

    def warning(self, msg: str, *, extra: dict[str, Any] | None = None) -> None:
        self.lines.append(("warning", msg, extra))


@dataclass
class Statuses:
    """DescribeExecution: status per ARN (default RUNNING); records the ARNs asked."""

    by_arn: dict[str, str | None] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def status(self, execution_arn: str) -> str | None:
        self.asked.append(execution_arn)
        return self.by_arn.get(execution_arn, "RUNNING")


@dataclass
class PushTimes:
    """ECR's imagePushedAt per image (missing: unknown)."""

    at: dict[str, float]

    def pushed_at(self, image: str) -> float | None:
        return self.at.get(image)


@dataclass
class InputStarter(Starter):
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, state_machine_arn: str, name: str, input_json: str):
        self.inputs[name] = json.loads(input_json)
        return super().start(state_machine_arn, name, input_json)


@dataclass
class World:
    leases: Leases = field(default_factory=Leases)
    starter: InputStarter = field(default_factory=InputStarter)
    bus: Bus = field(default_factory=Bus)
    log: Log = field(default_factory=Log)
    statuses: Statuses = field(default_factory=Statuses)
    images: PushTimes | None = None

    @property
    def ports(self) -> TriggerPorts:
        return TriggerPorts(self.leases, self.starter, self.bus, lambda: NOW, executions=self.statuses,
                            images=self.images, log=self.log)


def detail(name: str, image: str) -> dict[str, Any]:
    return {**ROLLED, "image": image, "execution_name": name, "execution_arn": arn(name),
            "console_url": console_url(REGION, arn(name))}


def holding(name: str = "cart-now", pushed_at: str = "2025-01-01T09:00:00Z", pending: Pending | None = None,
            **kw: Any) -> LockItem:
    return LockItem(KEY, name, "", 0, pushed_at, "img@" + DIGEST_B, pending, **kw)


# ---------------------------------------------------------------------------------------------------------
# A push that starts
# ---------------------------------------------------------------------------------------------------------
def test_a_started_rollout_is_announced_with_what_is_rolled_and_its_console_link():
    # Given a free Deployment
    w = World()
    # When a push of release-1 arrives
    answer = roll_push(push(), Target(), w.ports)
    # Then Rollout Started carries the Deployment, the pinned image, the execution and its console page
    assert w.bus.events == [("Rollout Started", detail(NAME_A, IMAGE_A), [arn(NAME_A)])]
    assert answer == {"outcome": "handled", "image": f"team/cart:release-1@{DIGEST_A}",
                      "results": [{"outcome": "started", **detail(NAME_A, IMAGE_A)}]}
    # and the execution got the rollout input, the image pinned by digest
    assert {k: w.starter.inputs[NAME_A][k] for k in (*ROLLED, "image")} == {**ROLLED, "image": IMAGE_A}


def test_the_lease_written_for_a_started_push_is_what_preflight_reads():
    # Given a free Deployment / When a push arrives
    w = World()
    roll_push(push(time="2025-01-01T10:00:00Z"), Target(), w.ports)
    # Then the lease item names its execution, input, image, push time, ARN and claim time, and lives long enough
    item = w.leases.items[KEY]
    assert item == LockItem(KEY, NAME_A, item.input, int(NOW) + LEASE_TTL_SECONDS, "2025-01-01T10:00:00Z", IMAGE_A,
                            None, execution_arn=arn(NAME_A), claimed_at=int(NOW))
    assert json.loads(item.input)["image"] == IMAGE_A


def test_the_log_says_which_push_got_which_decision_and_that_it_started():
    # Given a free Deployment / When a push arrives
    w = World()
    roll_push(push(), Target(), w.ports)
    # Then the decision log has the decision with its lease key, execution and reason, then the start
    assert w.log.lines == [
        ("info", "lock decision", {"lock_key": KEY, "execution_name": NAME_A, "decision": "acquire",
                                   "reason": "no rollout holds the Deployment"}),
        ("info", "rollout started", detail(NAME_A, IMAGE_A)),
    ]


def test_a_replayed_push_of_the_running_rollout_starts_nothing_new_and_says_so():
    # Given the push's own rollout holds the Deployment and runs
    w = World()
    roll_push(push(), Target(), w.ports)
    w.bus.events.clear(), w.log.lines.clear()
    # When the same push is delivered again
    answer = roll_push(push(), Target(), w.ports)
    # Then it is a duplicate, nothing is announced, and the log says why
    assert answer["results"] == [{"outcome": "duplicate", **detail(NAME_A, IMAGE_A)}]
    assert w.bus.events == [] and w.log.lines[-1] == ("info", "execution exists already: duplicate event",
                                                       detail(NAME_A, IMAGE_A))


def test_a_push_whose_execution_ran_long_ago_logs_that_it_lets_the_lock_go():
    # Given the push's execution exists already (an old event replayed) and the Deployment is free
    w = World(starter=InputStarter(existing={NAME_A}))
    # When it is handled / Then the log says the lock is let go, then that it was released
    roll_push(push(), Target(), w.ports)
    assert [line[1] for line in w.log.lines] == [
        "lock decision", "execution exists already: this push was rolled before; letting the lock go", "lock released"]
    assert w.log.lines[1][2] == detail(NAME_A, IMAGE_A)
    assert w.log.lines[2][2] == {"lock_key": KEY, "execution_name": NAME_A}


# ---------------------------------------------------------------------------------------------------------
# A push that waits, or cannot be ordered
# ---------------------------------------------------------------------------------------------------------
def test_a_queued_push_is_announced_with_the_rollout_it_waits_for():
    # Given another rollout holds the Deployment and runs
    w = World(leases=Leases(items={KEY: holding()}))
    # When a newer push arrives
    answer = roll_push(push(), Target(), w.ports)
    # Then Rollout Queued names the push, what it waits for, and no execution yet
    queued = {**ROLLED, "image": IMAGE_A, "execution_name": NAME_A, "execution_arn": None, "console_url": None,
              "waiting_for": "cart-now", "replaces": None}
    assert w.bus.events == [("Rollout Queued", queued, None)]
    assert answer["results"] == [{"outcome": "queued", **queued}]
    assert w.leases.items[KEY].pending == Pending(NAME_A, w.leases.items[KEY].pending.input, "2025-01-01T10:00:00Z",
                                                  IMAGE_A)


def test_a_newer_push_replaces_the_waiting_one_and_says_which():
    # Given a rollout runs and an older push waits for it
    older = Pending("cart-older", "{}", "2025-01-01T09:30:00Z", "img-older")
    w = World(leases=Leases(items={KEY: holding(pending=older)}))
    # When a newer push arrives / Then it takes the waiting place, and the event says whose
    answer = roll_push(push(), Target(), w.ports)
    assert answer["results"][0]["replaces"] == "cart-older"
    assert w.leases.items[KEY].pending.execution_name == NAME_A


def test_the_holders_arn_asked_about_is_the_one_on_the_lease_item():
    # Given the holder's ARN recorded on the item (another state machine's), and the holder ended
    theirs = "arn:aws:states:us-east-1:123456789012:execution:Other:cart-now"
    w = World(leases=Leases(items={KEY: holding(execution_arn=theirs)}), statuses=Statuses({theirs: "SUCCEEDED"}))
    # When a push arrives / Then DescribeExecution is asked about that ARN, and the push takes the lease over
    answer = roll_push(push(), Target(), w.ports)
    assert w.statuses.asked == [theirs]
    assert answer["results"][0]["took_over_from"] == "cart-now" and answer["results"][0]["outcome"] == "started"


def test_without_an_arn_on_the_item_the_holder_is_found_by_name_on_this_state_machine():
    # Given a lease item written before ARNs were recorded, its holder ended
    w = World(leases=Leases(items={KEY: holding()}), statuses=Statuses({arn("cart-now"): "FAILED"}))
    # When a push arrives / Then the ARN asked about is built from the holder's name, and the push takes over
    answer = roll_push(push(), Target(), w.ports)
    assert w.statuses.asked == [arn("cart-now")] and answer["results"][0]["outcome"] == "started"


def test_a_pending_push_newer_than_this_one_starts_when_the_holder_is_gone():
    # Given the holder ended and a push newer than this one waits
    waiting = Pending(NAME_B, json.dumps({**ROLLED, "image": IMAGE_B}), "2025-01-01T10:05:00Z", IMAGE_B)
    w = World(leases=Leases(items={KEY: holding(pending=waiting)}), statuses=Statuses({arn("cart-now"): "ABORTED"}))
    # When this (older) push arrives
    answer = roll_push(push(time="2025-01-01T10:00:00Z"), Target(), w.ports)
    # Then the waiting push starts, and the answer says this one was superseded and why
    result = answer["results"][0]
    assert result["outcome"] == "superseded" and result["execution_name"] == NAME_A
    assert result["took_over_from"] == "cart-now" and result["started"]["execution_name"] == NAME_B
    assert "the push waiting for it" in result["reason"] and w.starter.calls == [NAME_B]


def test_two_pushes_of_one_second_are_ordered_by_ecrs_own_push_times():
    # Given a rollout of an image pushed in the same second runs, and ECR knows this push came 0.4 s later
    w = World(leases=Leases(items={KEY: holding(pushed_at="2025-01-01T10:00:00Z")}),
              images=PushTimes({IMAGE_A: 100.9, "img@" + DIGEST_B: 100.5}))
    # When the push arrives / Then it is queued as the newer one
    assert roll_push(push(time="2025-01-01T10:00:00Z"), Target(), w.ports)["results"][0]["outcome"] == "queued"


def test_two_pushes_of_one_second_that_ecr_cannot_order_are_announced_and_warned_about():
    # Given a rollout of an image pushed in the same second runs, and no way to ask ECR
    w = World(leases=Leases(items={KEY: holding(pushed_at="2025-01-01T10:00:00Z")}))
    # When the push arrives
    answer = roll_push(push(time="2025-01-01T10:00:00Z"), Target(), w.ports)
    # Then Rollout Order Unknown names both, and the log warns with the same detail
    result = answer["results"][0]
    assert result["outcome"] == "unordered" and result["not_ordered_against"] == "cart-now"
    assert result["execution_name"] == NAME_A and result["execution_arn"] is None and result["console_url"] is None
    assert result["pushed_at"] == "2025-01-01T10:00:00Z" and result["reason"].endswith(
        "; neither replaces the other: start the one to roll by hand")
    assert w.bus.events[0][0] == "Rollout Order Unknown" and w.bus.events[0][1] == {
        k: v for k, v in result.items() if k != "outcome"}
    assert w.log.lines[-1] == ("warning", "push not ordered", w.bus.events[0][1])


def test_without_a_bus_nothing_is_published_but_the_rollout_starts():
    # Given a stack with no albgate bus
    w = World()
    ports = TriggerPorts(w.leases, w.starter, None, lambda: NOW, executions=w.statuses, log=w.log)
    # When a push arrives / Then its rollout starts all the same
    assert roll_push(push(), Target(), ports)["results"][0]["outcome"] == "started" and w.bus.events == []


# ---------------------------------------------------------------------------------------------------------
# The end of an execution
# ---------------------------------------------------------------------------------------------------------
def test_the_end_of_a_rollout_with_no_lease_item_changes_nothing():
    w = World()
    assert finish_holder(KEY, "cart-now", Target(), w.ports) == {"lock": "free"} and w.leases.writes == []


def test_the_end_of_an_execution_that_does_not_hold_the_lease_names_the_holder():
    # Given another execution holds the Deployment / When an execution started by hand ends
    w = World(leases=Leases(items={KEY: holding("cart-now")}))
    # Then the lease stays, and the answer names its holder
    assert finish_holder(KEY, "by-hand", Target(), w.ports) == {"lock": "not_held", "holder": "cart-now"}
    assert w.leases.writes == [] and w.starter.calls == []


def test_a_replayed_end_after_a_hand_over_restarts_the_new_holder_without_announcing_it_again():
    # Given the lease was handed from cart-now to the next push, whose execution runs
    waiting = Pending(NAME_B, json.dumps({**ROLLED, "image": IMAGE_B}), "2025-01-01T10:05:00Z", IMAGE_B)
    w = World(leases=Leases(items={KEY: holding(pending=waiting)}))
    finish_holder(KEY, "cart-now", Target(), w.ports)
    w.bus.events.clear()
    # When cart-now's end event is delivered again
    answer = finish_holder(KEY, "cart-now", Target(), w.ports)
    # Then the new holder's start is repeated (a no-op while it runs) and nothing is announced twice
    assert answer == {"lock": "handed_over", "next": {"outcome": "duplicate", **detail(NAME_B, IMAGE_B)}}
    assert w.bus.events == []


def test_a_hand_over_records_the_next_holders_arn_and_logs_it():
    # Given a push waits for cart-now
    waiting = Pending(NAME_B, json.dumps({**ROLLED, "image": IMAGE_B}), "2025-01-01T10:05:00Z", IMAGE_B)
    w = World(leases=Leases(items={KEY: holding(pending=waiting)}))
    # When cart-now ends
    finish_holder(KEY, "cart-now", Target(), w.ports)
    # Then the lease names the next holder's ARN, and the log says it was handed over
    assert w.leases.items[KEY].execution_arn == arn(NAME_B)
    assert ("info", "lock handed to the pending push", {"lock_key": KEY, "next": NAME_B}) in w.log.lines


def test_a_release_or_hand_over_lost_to_a_race_is_tried_again():
    # Given the holder's release fails once: another Lambda queues a push between its read and its write
    waiting = Pending(NAME_B, json.dumps({**ROLLED, "image": IMAGE_B}), "2025-01-01T10:05:00Z", IMAGE_B)
    leases = Leases(items={KEY: holding()})

    def race() -> None:
        if not leases.writes:  # just before the first write, a push queues behind cart-now
            leases.items[KEY] = holding(pending=waiting)

    leases.before_write = race
    w = World(leases=leases)
    # When cart-now ends / Then the release fails, it reads again, and hands the lease to the push
    answer = finish_holder(KEY, "cart-now", Target(), w.ports)
    assert leases.writes == ["release", "hand_over"] and answer["lock"] == "handed_over"


def test_a_lease_that_keeps_changing_while_it_is_released_gives_up_with_a_retryable_conflict():
    # Given every release loses to another writer
    leases = Leases(items={KEY: holding()})
    leases.before_write = lambda: leases.items.__setitem__(KEY, holding(pending=Pending("p", "{}", "t", "i")))
    w = World(leases=leases)
    leases.release = lambda key, finished: (leases.writes.append("release"), False)[1]  # type: ignore[method-assign]
    leases.hand_over = lambda *a, **k: (leases.writes.append("hand_over"), None)[1]  # type: ignore[method-assign]
    # When the holder ends / Then after MAX_LOCK_ATTEMPTS tries it raises a ConflictError the Lambda retries
    with pytest.raises(ConflictError, match=f"^lock {KEY}: changed {MAX_LOCK_ATTEMPTS} times while releasing it; "
                                            "retried with the Lambda$"):
        finish_holder(KEY, "cart-now", Target(), w.ports)
    assert len(leases.writes) == MAX_LOCK_ATTEMPTS


def test_an_older_push_is_stale_and_the_answer_says_why_and_which_push():
    # Given a rollout of a newer push runs / When an older push arrives / Then it is stale, nothing else happens
    w = World(leases=Leases(items={KEY: holding(pushed_at="2025-01-01T11:00:00Z")}))
    answer = roll_push(push(time="2025-01-01T10:00:00Z"), Target(), w.ports)
    assert answer["results"] == [{"outcome": "stale", "reason": "pushed before the running rollout cart-now's image",
                                  "execution_name": NAME_A}]
    assert w.bus.events == [] and w.starter.calls == []


def test_a_replay_of_the_waiting_push_asks_step_functions_nothing():
    # Given this push already waits behind a running rollout
    waiting = Pending(NAME_A, "{}", "2025-01-01T10:00:00Z", IMAGE_A)
    w = World(leases=Leases(items={KEY: holding(pending=waiting)}))
    # When it is delivered again / Then it is already pending, and no DescribeExecution call was made
    assert roll_push(push(), Target(), w.ports)["results"][0]["outcome"] == "already_pending"
    assert w.statuses.asked == []


def test_a_holder_step_functions_never_heard_of_and_claimed_long_ago_is_taken_over():
    # Given the holder was claimed an hour ago and DescribeExecution does not know it (its start failed)
    w = World(leases=Leases(items={KEY: holding(claimed_at=int(NOW) - 3600)}),
              statuses=Statuses({arn("cart-now"): None}))
    # When a push arrives / Then it takes the Deployment over and starts
    result = roll_push(push(), Target(), w.ports)["results"][0]
    assert (result["outcome"], result["took_over_from"]) == ("started", "cart-now")


def test_without_describe_execution_a_holder_is_assumed_to_run_and_the_push_waits():
    # Given no way to ask Step Functions, and another rollout holding the Deployment
    w = World(leases=Leases(items={KEY: holding()}))
    ports = TriggerPorts(w.leases, w.starter, w.bus, lambda: NOW, executions=None, log=w.log)
    # When a push arrives / Then it waits behind the holder rather than taking over
    assert roll_push(push(), Target(), ports)["results"][0]["outcome"] == "queued"


@dataclass
class ClockedLeases(Leases):
    """Leases that also record the time each acquire and queue write was decided at."""

    nows: list[float] = field(default_factory=list)

    def acquire(self, lock: LockItem, now: float) -> bool:
        self.nows.append(now)
        return super().acquire(lock, now)

    def queue(self, key: str, holder: str, pending: Pending, replaces: str | None, now: float) -> bool:
        self.nows.append(now)
        return super().queue(key, holder, pending, replaces, now)


def test_each_lease_write_carries_the_time_its_decision_was_made():
    # Given a free Deployment, then one held by another rollout
    w = World(leases=ClockedLeases())
    roll_push(push(), Target(), w.ports)
    w2 = World(leases=ClockedLeases(items={KEY: holding()}))
    roll_push(push(), Target(), w2.ports)
    # Then the acquire and the queue write were each handed the time of the read they were decided on
    assert w.leases.nows == [NOW] and w2.leases.nows == [NOW]


def test_a_queue_write_lost_to_a_race_is_decided_again():
    # Given the waiting place changes once between this push's read and its queue write
    leases = Leases(items={KEY: holding()})
    other = Pending("cart-other", "{}", "2025-01-01T09:30:00Z", "img-other")

    def race() -> None:
        if not leases.writes:
            leases.items[KEY] = holding(pending=other)

    leases.before_write = race
    w = World(leases=leases)
    # When the push arrives / Then the first queue write fails, and the second replaces the push that came in between
    result = roll_push(push(), Target(), w.ports)["results"][0]
    assert leases.writes == ["queue", "queue"] and result["replaces"] == "cart-other"


def test_a_hand_over_lost_to_a_race_is_tried_again():
    # Given a push waits for cart-now, and the first hand-over write loses to another writer that changes nothing
    waiting = Pending(NAME_B, json.dumps({**ROLLED, "image": IMAGE_B}), "2025-01-01T10:05:00Z", IMAGE_B)
    leases = Leases(items={KEY: holding(pending=waiting)})
    real = leases.hand_over
    fails = iter([True])

    def flaky(*args: Any, **kwargs: Any) -> LockItem | None:
        if next(fails, False):
            leases.writes.append("hand_over")
            return None
        return real(*args, **kwargs)

    leases.hand_over = flaky  # type: ignore[method-assign]
    w = World(leases=leases)
    # When cart-now ends / Then the hand-over is tried again and the waiting push starts
    answer = finish_holder(KEY, "cart-now", Target(), w.ports)
    assert leases.writes == ["hand_over", "hand_over"] and answer["next"]["outcome"] == "started"


def test_a_replayed_push_that_lets_its_lock_go_hands_it_to_a_push_that_queued_meanwhile():
    # Given this push's execution ran long ago, and another push queues right after this one took the lease
    waiting = Pending(NAME_B, json.dumps({**ROLLED, "image": IMAGE_B}), "2025-01-01T10:05:00Z", IMAGE_B)
    leases = Leases()

    def queue_after_the_acquire() -> None:
        if leases.writes == ["acquire"]:
            leases.items[KEY] = dataclass_replace(leases.items[KEY], pending=waiting)

    leases.before_write = queue_after_the_acquire
    w = World(leases=leases, starter=InputStarter(existing={NAME_A}))
    # When the replayed push is handled / Then its lock goes to the waiting push, which starts
    result = roll_push(push(), Target(), w.ports)["results"][0]
    assert result["outcome"] == "duplicate" and result["lock"]["lock"] == "handed_over"
    assert w.starter.calls == [NAME_A, NAME_B]


def test_a_push_of_a_repository_no_application_names_is_ignored_listing_the_known_ones():
    w = World()
    with pytest.raises(Ignored, match=r"^repository 'team/other' is not configured \(known: team/cart\)$"):
        roll_push(EcrPush(ACCOUNT, REGION, "team/other", DIGEST_A, "release-1", "2025-01-01T10:00:00Z"), Target(),
                  w.ports)


def test_a_takeover_lost_to_a_race_is_decided_again():
    # Given an ended holder, replaced just before this push's takeover write by another holder that ended too
    leases = Leases(items={KEY: holding("cart-old")})

    def race() -> None:
        if not leases.writes:
            leases.items[KEY] = holding("cart-older-still")

    leases.before_write = race
    w = World(leases=leases, statuses=Statuses({arn("cart-old"): "SUCCEEDED", arn("cart-older-still"): "FAILED"}))
    # When the push arrives / Then its first takeover fails, and the second takes the Deployment from the new holder
    result = roll_push(push(), Target(), w.ports)["results"][0]
    assert leases.writes == ["take_over", "take_over"]
    assert (result["outcome"], result["took_over_from"]) == ("started", "cart-older-still")
