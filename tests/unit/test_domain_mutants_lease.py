"""One rollout per Deployment: what Preflight's ``take_lease`` answers, and what it writes, in memory.

Given a lease table (conditional writes, as DynamoDB's) and DescribeExecution answers, when an execution takes
the lease of the Deployment its input names, then it takes a free one, keeps one claimed for it, takes over one
whose holder is proven not running (keeping the push that waits on it), and is refused, with the holder's name
and console page, by one whose holder may still run; a lease that keeps changing under it ends in a retryable
ConflictError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from lambdas.domain.errors import ConflictError
from lambdas.domain.lease import (
    MAX_LEASE_ATTEMPTS, REFUSED, TAKEN, UNKEYED, Lease, LeaseAnswer, request_key, sibling_arn, take_lease,
)
from lambdas.domain.trigger import LEASE_TTL_SECONDS, Pending

NOW = 1_735_725_600.4
REGION, ACCOUNT = "eu-west-1", "123456789012"
MACHINE_EXECUTIONS = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Rollout"
MINE = f"{MACHINE_EXECUTIONS}:mine"
KEY = "prod/shop/cart"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/cart@sha256:" + "ab" * 32
REQUEST = {"cluster": "prod", "namespace": "shop", "deployment": "cart", "container": "app", "image": IMAGE}
WAITING = Pending("cart-next", '{"cluster": "prod"}', "2025-01-01T10:01:00Z", "img@sha256:" + "cd" * 32)


@dataclass
class Table:
    """Conditional writes as lambdas/adapters/dynamodb_lock.py makes them; ``before_write`` races them."""

    items: dict[str, Lease] = field(default_factory=dict)
    before_write: Callable[[], None] = lambda: None
    writes: list[str] = field(default_factory=list)
    nows: list[float] = field(default_factory=list)  # the time each acquire was decided at

    def get(self, key: str) -> Lease | None:
        return self.items.get(key)

    def acquire(self, lock: Lease, now: float) -> bool:
        self.before_write()
        self.writes.append("acquire")
        self.nows.append(now)
        if lock.key in self.items:
            return False
        self.items[lock.key] = lock
        return True

    def take_over(self, lock: Lease, previous: str) -> bool:
        self.before_write()
        self.writes.append("take_over")
        held = self.items.get(lock.key)
        if held is None or held.execution_name != previous:
            return False
        self.items[lock.key] = lock
        return True


@dataclass
class Executions:
    """DescribeExecution: status per ARN (missing: no such execution); records the ARNs asked."""

    statuses: dict[str, str]
    asked: list[str] = field(default_factory=list)

    def status(self, execution_arn: str) -> str | None:
        self.asked.append(execution_arn)
        return self.statuses.get(execution_arn)


def holder(name: str = "theirs", *, arn: str = "", claimed_at: int = int(NOW) - 3_600,
           pending: Pending | None = None) -> Lease:
    return Lease(key=KEY, execution_name=name, input="", expires_at=int(NOW) + 100, pushed_at="", image="old",
                 pending=pending, execution_arn=arn, claimed_at=claimed_at)


def take(table: Table, executions: Executions, request: object = REQUEST, name: str = "mine") -> LeaseAnswer:
    return take_lease(table, executions, raw_request=request, execution_arn=MINE, execution_name=name, now=NOW)


# ---------------------------------------------------------------------------------------------------------
def test_a_free_deployment_is_taken_with_a_lease_that_outlives_any_execution():
    # Given no lease item for the Deployment
    table = Table()
    # When an execution takes it
    answer = take(table, Executions({}))
    # Then it is TAKEN, and the item names the execution, its ARN, its image and when it was claimed
    assert answer.dump() == {"lease": {"status": TAKEN, "reason": "no rollout held the Deployment", "key": KEY,
                                       "holder": "", "holder_arn": "", "console_url": ""}}
    assert table.items[KEY] == Lease(key=KEY, execution_name="mine", input="", expires_at=int(NOW) + LEASE_TTL_SECONDS,
                                     pushed_at="", image=IMAGE, execution_arn=MINE, claimed_at=int(NOW))
    assert table.nows == [NOW]


def test_a_lease_claimed_for_this_execution_is_kept_without_a_write():
    # Given the ECR trigger claimed the lease for this execution before starting it
    table = Table({KEY: holder("mine")})
    # When the execution takes it / Then it is TAKEN as claimed, and nothing is written
    assert take(table, Executions({})) == LeaseAnswer(TAKEN, "the lease was claimed for this execution", KEY)
    assert table.writes == []


def test_a_running_holder_refuses_the_lease_naming_it_and_its_console_page():
    # Given another execution of the same state machine holds the Deployment and runs (its ARN not on the item)
    table = Table({KEY: holder("theirs")})
    theirs = f"{MACHINE_EXECUTIONS}:theirs"
    executions = Executions({theirs: "RUNNING"})
    # When this execution takes the lease
    answer = take(table, executions)
    # Then it is refused, naming the holder, its ARN (derived from this execution's) and its console page
    url = f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/{theirs}"
    assert executions.asked == [theirs]
    assert answer == LeaseAnswer(
        REFUSED,
        f"Deployment {KEY} is being rolled by execution theirs (RUNNING): {url} ; albgate rolls one Deployment at a "
        "time and changed nothing: wait for that execution to end (or stop it), then start again",
        KEY, "theirs", theirs, url)
    assert table.writes == []


def test_a_holder_claimed_seconds_ago_and_not_started_yet_still_refuses():
    # Given a holder claimed 5 s ago that Step Functions does not know yet, its own ARN on the item
    arn = f"arn:aws:states:us-east-2:{ACCOUNT}:execution:Rollout:theirs"
    table = Table({KEY: holder("theirs", arn=arn, claimed_at=int(NOW) - 5)})
    executions = Executions({})
    # When this execution takes the lease / Then it is refused as "starting", with the holder's own Region's page
    answer = take(table, executions)
    assert executions.asked == [arn]
    assert answer.status == REFUSED and "(starting)" in answer.reason
    assert answer.console_url.startswith("https://us-east-2.console.aws.amazon.com/states/home?region=us-east-2#")


@pytest.mark.parametrize("status,why", [("SUCCEEDED", "ended SUCCEEDED"), ("ABORTED", "ended ABORTED"),
                                        (None, "never started")])
def test_a_holder_proven_not_running_is_taken_over_keeping_the_waiting_push(status, why):
    # Given a holder that ended (or was claimed an hour ago and never started), with a push waiting on the item
    table = Table({KEY: holder("theirs", pending=WAITING)})
    theirs = f"{MACHINE_EXECUTIONS}:theirs"
    executions = Executions({} if status is None else {theirs: status})
    # When this execution takes the lease
    answer = take(table, executions)
    # Then it takes it over, saying from whom and why, and the waiting push stays on the item
    assert answer == LeaseAnswer(TAKEN, f"taken over from theirs, which {why}", KEY, "theirs", theirs)
    assert table.items[KEY].execution_name == "mine" and table.items[KEY].pending == WAITING
    assert table.items[KEY].claimed_at == int(NOW)


def test_an_input_naming_no_deployment_takes_no_lease():
    # Given an input Preflight would refuse (no deployment)
    table = Table()
    # When the lease is taken / Then it answers UNKEYED, saying why, and writes nothing
    answer = take(table, Executions({}), {"cluster": "prod"})
    assert answer == LeaseAnswer(UNKEYED, "the input names no Deployment Preflight would accept; Preflight refuses it")
    assert table.writes == []


def test_a_lease_lost_to_a_racing_execution_is_decided_again():
    # Given another execution takes the free Deployment between this one's read and its write, and runs
    table = Table()
    table.before_write = lambda: table.items.setdefault(KEY, holder("racer"))
    executions = Executions({f"{MACHINE_EXECUTIONS}:racer": "RUNNING"})
    # When this execution takes the lease / Then its write fails, it reads again, and is refused by the racer
    answer = take(table, executions)
    assert table.writes == ["acquire"] and answer.status == REFUSED and answer.holder == "racer"


def test_a_takeover_lost_to_a_racing_execution_is_decided_again():
    # Given an ended holder, and a racer that takes the lease over first and runs
    table = Table({KEY: holder("theirs")})
    table.before_write = lambda: table.items.__setitem__(KEY, holder("racer"))
    executions = Executions({f"{MACHINE_EXECUTIONS}:theirs": "FAILED", f"{MACHINE_EXECUTIONS}:racer": "RUNNING"})
    # When this execution takes the lease / Then its takeover fails and the second look finds the racer running
    answer = take(table, executions)
    assert table.writes == ["take_over"] and (answer.status, answer.holder) == (REFUSED, "racer")


def test_a_lease_that_keeps_changing_gives_up_with_a_retryable_conflict():
    # Given every write loses to another execution that then ends at once
    table = Table({KEY: holder("h0")})
    n = iter(range(100))
    table.before_write = lambda: table.items.__setitem__(KEY, holder(f"h{next(n) + 1}"))
    # When this execution takes the lease / Then after MAX_LEASE_ATTEMPTS writes it raises ConflictError
    with pytest.raises(ConflictError, match=f"^lease {KEY}: changed {MAX_LEASE_ATTEMPTS} times while taking it; "
                                            "Step Functions retries$"):
        take(table, Executions({}))
    assert len(table.writes) == MAX_LEASE_ATTEMPTS


def test_a_sibling_execution_arn_replaces_only_the_name():
    # Given an execution ARN / When the ARN of another execution of the same machine is made / Then only the name differs
    assert sibling_arn(f"{MACHINE_EXECUTIONS}:a:b", "c") == f"{MACHINE_EXECUTIONS}:a:c"


def test_an_execution_input_is_keyed_to_its_deployment():
    assert request_key(REQUEST) == KEY
    assert request_key("not an object") is None
