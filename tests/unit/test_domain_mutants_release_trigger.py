"""ECR push -> release (lambdas/domain/release_trigger.py) over in-memory ports: which releases a push starts, under
which name and lease, what it writes and announces, and what a release execution's end does to the lease.

Given the configured releases and fakes of the trigger's ports (the lease table's conditional writes,
StartExecution, albgate's bus, a decision log), when ``roll_release_push`` or ``release_ended`` runs, then the
release's lease (``release/<name>``) holds or queues exactly the push's execution, its input is the release and
the image by digest, only ``Release Queued`` and ``Release Order Unknown`` are published (the release state machine
announces its own start), and a push or an end it cannot act on is ``Ignored`` with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from lambdas.domain.release import ReleaseSpec, ReleaseTarget, WaveSpec
from lambdas.domain.release_trigger import (
    matching_releases,
    release_ended,
    release_execution_name,
    release_lock_key,
    roll_release_push,
)
from lambdas.domain.trigger import LEASE_TTL_SECONDS, EcrPush, ExecutionEnded, Ignored, LockItem, Pending, console_url
from lambdas.domain.trigger_use_case import TriggerPorts
from tests.trigger.test_use_case import Leases, Started, Starter

ACCOUNT, REGION = "123456789012", "us-east-1"
RELEASE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Release"
NOW = 1_735_725_600.7
DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
IMAGE_A = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/myapp@{DIGEST_A}"
IMAGE_B = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/myapp@{DIGEST_B}"
WEB_A = "web-aaaaaaaaaaaa-a3efcec65aab7d02"  # release_execution_name("web", DIGEST_A)
INPUT_A = '{"image": "' + IMAGE_A + '", "release": "web"}'  # keys sorted: the same push writes the same text


def arn(name: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Release:{name}"


def spec(name: str, repository: str | None, pattern: str = "*") -> ReleaseSpec:
    target = ReleaseTarget(cluster="prod", namespace="web", deployment="web", container="app", account=ACCOUNT,
                           region=REGION, state_machine_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:R")
    return ReleaseSpec(name=name, waves=[WaveSpec(name="all", targets=[target], max_concurrency=1, bake_seconds=0)],
                       ecr_repository=repository, tag_pattern=pattern)


# Not in name order, on purpose: what a push starts is listed by release name.
SPECS = {s.name: s for s in (spec("web", "myapp", "v*"), spec("web-canary", "myapp", "canary-*"),
                             spec("api", "api", "v*"), spec("docs", None))}


@dataclass(frozen=True)
class Machine:
    """The release state machine the trigger starts executions of."""

    state_machine_arn: str = RELEASE_MACHINE
    region: str = REGION


@dataclass
class Bus:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        self.events.append((detail_type, detail))


@dataclass
class Log:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def info(self, msg: str, *, extra: dict[str, Any] | None = None) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str, *, extra: dict[str, Any] | None = None) -> None:
        self.lines.append(("warning", msg))


@dataclass
class InputStarter(Starter):
    """StartExecution that also keeps each execution's input, as sent."""

    inputs: dict[str, str] = field(default_factory=dict)

    def start(self, state_machine_arn: str, name: str, input_json: str) -> Started:
        self.inputs[name] = input_json
        return super().start(state_machine_arn, name, input_json)


class Running:
    def status(self, execution_arn: str) -> str | None:
        return "RUNNING"


@dataclass
class World:
    leases: Leases = field(default_factory=Leases)
    starter: InputStarter = field(default_factory=InputStarter)
    bus: Bus = field(default_factory=Bus)
    log: Log = field(default_factory=Log)

    @property
    def ports(self) -> TriggerPorts:
        return TriggerPorts(self.leases, self.starter, self.bus, lambda: NOW, executions=Running(), log=self.log)


def push(tag: str = "v2", digest: str = DIGEST_A, time: str = "2025-01-01T10:00:00Z",
         repository: str = "myapp") -> EcrPush:
    return EcrPush(ACCOUNT, REGION, repository, digest, tag, time)


def holder(name: str = "web-running", pushed_at: str = "2025-01-01T09:00:00Z") -> LockItem:
    """The lease of release web, held by another execution of it that still runs."""
    return LockItem("release/web", name, "", 0, pushed_at, IMAGE_B, execution_arn=arn(name))


def ended(name: str, request: dict[str, Any] | None) -> ExecutionEnded:
    return ExecutionEnded(arn(name), RELEASE_MACHINE, name, "SUCCEEDED", "", "", request)


def release_detail(name: str, image: str = IMAGE_A, release: str = "web") -> dict[str, Any]:
    return {"release": release, "image": image, "execution_name": name, "execution_arn": arn(name),
            "console_url": console_url(REGION, arn(name))}


# ---------------------------------------------------------------------------------------------------------
# Names: release_lock_key, release_execution_name
# ---------------------------------------------------------------------------------------------------------
def test_a_releases_lease_key_is_release_slash_its_name():
    assert release_lock_key("web") == "release/web"


def test_an_execution_name_is_the_release_12_digest_hex_and_16_hash_hex():
    # Given a release and an image digest / Then its name is fixed by both, and differs per digest and release
    assert release_execution_name("web", DIGEST_A) == WEB_A
    assert release_execution_name("web-canary", DIGEST_B) == "web-canary-bbbbbbbbbbbb-5857915f2d82289c"


def test_a_long_release_name_is_cut_so_that_the_execution_name_is_exactly_80_characters():
    # Given a release name of 60 characters / When its execution is named
    name = release_execution_name("p" * 60, DIGEST_A)
    # Then 50 of them are kept, then the digest's 12 hex and the 16 hex hash: 80 characters
    assert name == "p" * 50 + "-aaaaaaaaaaaa-4f9e723a9826d74b"
    assert len(name) == 80


# ---------------------------------------------------------------------------------------------------------
# matching_releases
# ---------------------------------------------------------------------------------------------------------
def test_a_push_matches_the_releases_of_its_repository_whose_pattern_takes_its_tag_by_name():
    # Given two releases of myapp that take every tag, configured out of name order, and others
    specs = {**SPECS, "zeta": spec("zeta", "myapp"), "alpha": spec("alpha", "myapp")}
    # When a push of myapp:v2 is matched / Then alpha, web and zeta, by name; not web-canary, not api's v*
    assert [s.name for s in matching_releases(specs, "myapp", "v2")] == ["alpha", "web", "zeta"]
    # and a canary tag matches the canary release and the catch-alls only
    assert [s.name for s in matching_releases(specs, "myapp", "canary-1")] == ["alpha", "web-canary", "zeta"]


def test_a_tag_pattern_is_matched_case_sensitively_and_only_in_its_own_repository():
    # Given web (myapp, v*) and api (api, v*)
    # Then myapp:V2 matches nothing, and api:v2 matches api only
    assert matching_releases(SPECS, "myapp", "V2") == []
    assert [s.name for s in matching_releases(SPECS, "api", "v2")] == ["api"]


# ---------------------------------------------------------------------------------------------------------
# roll_release_push
# ---------------------------------------------------------------------------------------------------------
def test_a_push_to_a_free_release_starts_it_and_announces_nothing_itself():
    # Given no execution of release web runs
    w = World()
    # When myapp:v2 is pushed
    answer = roll_release_push(push(), SPECS, Machine(), w.ports)
    # Then release web starts under its name, with what was pushed and the release's own detail
    assert answer == {"outcome": "handled", "image": f"myapp:v2@{DIGEST_A}",
                      "results": [{"outcome": "started", **release_detail(WEB_A)}]}
    assert w.starter.calls == [WEB_A] and w.starter.inputs[WEB_A] == INPUT_A
    # and the release state machine announces its own start: nothing is published, the log says a release started
    assert w.bus.events == []
    assert w.log.lines == [("info", "lock decision"), ("info", "release started")]


def test_the_lease_a_started_release_takes_names_its_execution_input_push_time_and_image():
    # Given no execution of release web runs / When myapp:v2 is pushed at 10:00
    w = World()
    roll_release_push(push(time="2025-01-01T10:00:00Z"), SPECS, Machine(), w.ports)
    # Then the lease release/web is the push's execution, with its input, push time, image, ARN and claim time
    assert w.leases.items == {"release/web": LockItem(
        "release/web", WEB_A, INPUT_A, int(NOW) + LEASE_TTL_SECONDS, "2025-01-01T10:00:00Z", IMAGE_A, None,
        execution_arn=arn(WEB_A), claimed_at=int(NOW))}


def test_a_push_matching_two_releases_starts_each_under_its_own_lease():
    # Given two releases of myapp that take every tag
    specs = {"b-release": spec("b-release", "myapp"), "a-release": spec("a-release", "myapp")}
    w = World()
    # When one push arrives / Then both start, by name, each holding its own lease
    results = roll_release_push(push(), specs, Machine(), w.ports)["results"]
    names = [release_execution_name("a-release", DIGEST_A), release_execution_name("b-release", DIGEST_A)]
    assert [(r["outcome"], r["release"], r["execution_name"]) for r in results] == [
        ("started", "a-release", names[0]), ("started", "b-release", names[1])]
    assert {k: v.execution_name for k, v in w.leases.items.items()} == {
        "release/a-release": names[0], "release/b-release": names[1]}


def test_a_push_during_a_running_release_waits_as_its_pending_push_and_is_announced_queued():
    # Given another execution of release web runs
    w = World(leases=Leases(items={"release/web": holder()}))
    # When myapp:v2 is pushed
    answer = roll_release_push(push(), SPECS, Machine(), w.ports)
    # Then it waits on the lease, and Release Queued names it and what it waits for
    queued = {"release": "web", "image": IMAGE_A, "execution_name": WEB_A, "execution_arn": None,
              "console_url": None, "waiting_for": "web-running", "replaces": None}
    assert answer["results"] == [{"outcome": "queued", **queued}]
    assert w.leases.items["release/web"].pending == Pending(WEB_A, INPUT_A, "2025-01-01T10:00:00Z", IMAGE_A)
    assert w.bus.events == [("Release Queued", queued)] and w.starter.calls == []


def test_a_push_of_the_same_second_as_the_running_release_is_announced_as_not_ordered():
    # Given the running execution's image was pushed in the same second, and ECR's push times are not asked
    w = World(leases=Leases(items={"release/web": holder(pushed_at="2025-01-01T10:00:00Z")}))
    # When myapp:v2 is pushed at that second
    result = roll_release_push(push(time="2025-01-01T10:00:00Z"), SPECS, Machine(), w.ports)["results"][0]
    # Then Release Order Unknown names both pushes and the push's own time, and nothing starts
    assert (result["outcome"], result["release"], result["execution_name"]) == ("unordered", "web", WEB_A)
    assert (result["pushed_at"], result["not_ordered_against"]) == ("2025-01-01T10:00:00Z", "web-running")
    assert w.bus.events == [("Release Order Unknown", {k: v for k, v in result.items() if k != "outcome"})]
    assert w.log.lines[-1] == ("warning", "push not ordered") and w.starter.calls == []


def test_a_push_to_a_repository_no_release_names_is_ignored_listing_the_known_repositories():
    # Given releases of myapp and api, and one with no repository
    # When a push of another repository arrives / Then it is ignored, naming the repositories that start releases
    with pytest.raises(Ignored) as raised:
        roll_release_push(push(repository="other"), SPECS, Machine(), World().ports)
    assert str(raised.value) == "repository 'other' starts no release (known: api, myapp)"


def test_a_push_whose_tag_no_pattern_takes_is_ignored_naming_the_tag():
    # Given myapp's releases take v* and canary-* / When myapp:latest is pushed / Then the tag is the reason
    w = World()
    with pytest.raises(Ignored) as raised:
        roll_release_push(push(tag="latest"), SPECS, Machine(), w.ports)
    assert str(raised.value) == "tag 'latest' of myapp matches no release's tag_pattern"
    assert w.leases.writes == [] and w.starter.calls == []


# ---------------------------------------------------------------------------------------------------------
# release_ended
# ---------------------------------------------------------------------------------------------------------
def test_the_end_of_the_running_release_lets_its_lease_go():
    # Given WEB_A holds release web's lease and no push waits
    w = World()
    roll_release_push(push(), SPECS, Machine(), w.ports)
    # When its execution ends / Then the lease is released
    assert release_ended(ended(WEB_A, {"release": "web", "image": IMAGE_A}), Machine(), w.ports) == {
        "lock": "released"}
    assert w.leases.items == {}


def test_the_end_of_the_running_release_starts_the_waiting_push_without_announcing_it():
    # Given a push waits for the running execution of release web
    w = World(leases=Leases(items={"release/web": holder()}))
    roll_release_push(push(), SPECS, Machine(), w.ports)
    w.bus.events.clear(), w.log.lines.clear()
    # When the running execution ends
    answer = release_ended(ended("web-running", {"release": "web", "image": IMAGE_B}), Machine(), w.ports)
    # Then the waiting push holds the lease and starts on the release state machine; nothing is published
    assert answer == {"lock": "handed_over", "next": {"outcome": "started", **release_detail(WEB_A)}}
    assert w.leases.items["release/web"].execution_name == WEB_A
    assert w.leases.items["release/web"].execution_arn == arn(WEB_A)
    assert w.starter.calls == [WEB_A] and w.starter.inputs[WEB_A] == INPUT_A
    assert w.bus.events == [] and w.log.lines[-1] == ("info", "release started")


def test_the_end_of_an_execution_that_does_not_hold_the_lease_names_the_holder():
    # Given web-running holds the lease / When another execution of web ends (started by hand)
    w = World(leases=Leases(items={"release/web": holder()}))
    answer = release_ended(ended("by-hand", {"release": "web"}), Machine(), w.ports)
    # Then the lease stays with its holder
    assert answer == {"lock": "not_held", "holder": "web-running"} and w.leases.writes == []


@pytest.mark.parametrize("request_", [None, {}, {"image": IMAGE_A}, {"release": ""}, {"release": 7}],
                         ids=["no input", "empty input", "no release", "empty release", "release not a string"])
def test_the_end_of_an_execution_without_a_release_input_is_ignored(request_):
    # Given the lease of release web is held / When an execution without a usable release name ends
    w = World(leases=Leases(items={"release/web": holder()}))
    with pytest.raises(Ignored) as raised:
        release_ended(ended("web-running", request_), Machine(), w.ports)
    # Then it is ignored, naming the execution, and the lease is untouched
    assert str(raised.value) == "execution web-running has no release input: it held no release lease"
    assert w.leases.writes == []
