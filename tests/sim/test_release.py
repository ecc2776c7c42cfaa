"""Releases in the simulation: the release scenario schema, the lockstep worlds, the child executions, and whole
releases run by the synthesized release and rollout state machines."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from albgate.sim import ScenarioError
from albgate.sim.engine import EPOCH
from albgate.sim.release import (
    ROLLBACK,
    ROLLOUT,
    SimChildExecutions,
    World,
    cluster_seed,
    load_release_scenario,
    merged,
    parse_release_scenario,
    run_release,
)
from lambdas.domain.errors import InvalidInputError, NotFoundError
from lambdas.domain.ports import DeploymentPatch
from tests.sim.conftest import SCENARIOS

RELEASES = SCENARIOS / "release"
THREE_WAVES = RELEASES / "three-waves-five-clusters.yaml"
BROKEN = RELEASES / "broken-second-wave.yaml"
OLD_IMAGE = "ikubernetes/myapp:v1"  # the base scenario's app image
RAW = yaml.safe_load(THREE_WAVES.read_text())
IMAGE = RAW["release"]["image"]


def changed(change) -> dict[str, Any]:  # noqa: ANN001 - a function editing the raw scenario in place
    data = copy.deepcopy(RAW)
    change(data)
    return data


def two_clusters(**extra: Any) -> dict[str, Any]:
    return {
        "name": "two", "seed": 3,
        "clusters": [{"name": "a", "account": "111111111111", "region": "us-east-1"},
                     {"name": "b", "account": "222222222222", "region": "eu-west-1"}],
        "release": {"name": "app", "image": IMAGE,
                    "waves": [{"name": "first", "clusters": ["a"]}, {"name": "second", "clusters": ["b"]}]},
        **extra,
    }


# --- the scenario file -------------------------------------------------------------------------------------------
def test_each_cluster_is_the_base_with_its_overrides_its_names_and_the_release_image():
    # Given the broken-second-wave release scenario / When it is loaded
    rs = load_release_scenario(BROKEN)
    worlds = rs.cluster_scenarios
    # Then every cluster's world is the hardened base app, named and placed as its entry says, rolling the release's
    # image from the base's start
    assert list(worlds) == ["staging-use1", "prod-use1-a", "prod-use1-b", "prod-euw1-a", "prod-euw1-b"]
    for name, sc in worlds.items():
        entry = rs.cluster(name)
        assert (sc.cluster.name, sc.cluster.account_id, sc.cluster.region) == (name, entry.account, entry.region)
        assert sc.rollout.image == IMAGE and sc.app.image == OLD_IMAGE
        assert sc.app.pre_stop_sleep_seconds == 30 and sc.rollout.start_at_seconds == 30
    # and only the second wave's cluster breaks the new image
    assert {n for n, sc in worlds.items() if sc.faults.broken_images} == {"prod-use1-a"}
    assert worlds["prod-use1-a"].faults.broken_images == [IMAGE]


def test_the_release_spec_names_each_clusters_rollout_state_machine_and_role():
    # Given the three-wave scenario / When its release is built as the release functions read it
    spec = load_release_scenario(THREE_WAVES).release_spec()
    # Then the waves keep their order, concurrency, bake and approval
    assert [(w.name, len(w.targets), w.max_concurrency, w.bake_seconds, w.approval) for w in spec.waves] == [
        ("staging", 1, 1, 60, False), ("canary", 1, 1, 60, True), ("production", 3, 2, 0, False)]
    # and each target is the cluster's app, its rollout state machine in its own Region and account, reached
    # through a role outside the release's own account (the first cluster's)
    staging = spec.waves[0].targets[0]
    euw = spec.waves[2].targets[1]
    assert (staging.namespace, staging.deployment, staging.container) == ("readiness", "nginx-app", "nginx")
    assert staging.role_arn is None
    assert euw.state_machine_arn.startswith("arn:aws:states:eu-west-1:333333333333:stateMachine:")
    assert euw.role_arn is not None and ":333333333333:" in euw.role_arn


def test_overrides_merge_mapping_by_mapping_and_replace_lists():
    # Given a base and overrides / When merged / Then nested mappings merge, lists and values are replaced
    base = {"traffic": {"rate_per_second": 20, "error_rate": 0}, "faults": {"broken_images": ["a:1"]}}
    out = merged(base, {"traffic": {"rate_per_second": 2}, "faults": {"broken_images": ["b:2"]}})
    assert out == {"traffic": {"rate_per_second": 2, "error_rate": 0}, "faults": {"broken_images": ["b:2"]}}
    assert base["traffic"]["rate_per_second"] == 20  # the base is not changed


def test_common_overrides_apply_to_every_cluster_and_a_clusters_own_win():
    # Given common overrides and one cluster's own
    data = two_clusters(overrides={"traffic": {"rate_per_second": 3}})
    data["clusters"][1]["overrides"] = {"traffic": {"rate_per_second": 7}}
    # When parsed / Then cluster a has the common rate, cluster b its own
    worlds = parse_release_scenario(data).cluster_scenarios
    assert (worlds["a"].traffic.rate_per_second, worlds["b"].traffic.rate_per_second) == (3, 7)


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(colour=1), "colour: no such field"),
    (lambda d: d.update(seed="abc"), "seed: Input should be a valid integer"),
    (lambda d: d["clusters"][0].update(account="123"), "clusters.0.account: '123' is not a 12-digit"),
    (lambda d: d["clusters"][3].update(region="mars"), "clusters.3.region: 'mars' is not an AWS Region"),
    (lambda d: d["release"]["waves"][0].update(max_concurrency=0), "release.waves.0.max_concurrency: Input should "
                                                                   "be greater than or equal to 1"),
    (lambda d: d["release"]["waves"][2].update(bake_seconds=-1), "release.waves.2.bake_seconds: Input should be "
                                                                  "greater than or equal to 0"),
    (lambda d: d["release"]["waves"][0].update(size=2), "release.waves.0.size: no such field"),
    (lambda d: d["release"].update(image="ikubernetes/myapp:v2"), "release.image: 'ikubernetes/myapp:v2' has no "
                                                                  "digest"),
    (lambda d: d["release"].update(waves=[]), "release.waves: List should have at least 1 item"),
    (lambda d: d["release"]["waves"][0].update(clusters=["nope"]), "release.waves.0.clusters.0: 'nope' is not one "
                                                                   "of the clusters"),
    (lambda d: d["release"]["waves"][1].update(clusters=["staging-use1"]),
     "release.waves.1.clusters.0: 'staging-use1' is already in wave 'staging'"),
    (lambda d: d["release"]["waves"][1].update(name="staging"), "release.waves.1.name: 'staging' is listed twice"),
    (lambda d: d["clusters"].append(dict(d["clusters"][0])), "clusters.5.name: 'staging-use1' is listed twice"),
    (lambda d: d["clusters"][1].update(overrides={"rollout": {"image": "x:1"}}),
     "clusters.1.overrides: 'rollout' cannot be overridden"),
    (lambda d: d.update(overrides={"fleet": {"deployments": 3}}), "overrides: 'fleet' cannot be overridden"),
    (lambda d: d["clusters"][1].update(overrides={"traffic": {"rate_per_second": 5000}}),
     "clusters.1 (prod-use1-a): overrides: traffic.rate_per_second: Input should be less than or equal to 2000"),
    (lambda d: d.update(overrides={"app": {"replicas": 0}}), "overrides: app.replicas: Input should be greater"),
    (lambda d: d.update(base="nope.yaml"), "base: 'nope.yaml' is not a scenario file under scenarios/"),
    (lambda d: d.update(base="../pyproject.toml"), "base: '../pyproject.toml' is not a scenario file"),
    (lambda d: d.update(base="fleet/seed-app-50.yaml"), "base: fleet/seed-app-50.yaml is a fleet of 50"),
])
def test_a_bad_field_is_one_line_naming_it(change, expected):  # noqa: ANN001
    # Given the three-wave scenario with one field broken / When parsed
    with pytest.raises(ScenarioError) as err:
        parse_release_scenario(changed(change), "release.yaml")
    # Then the error is one line naming the file and the field, and what is wrong
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"release.yaml: {expected}"), message


def test_a_file_with_a_key_given_twice_is_refused(tmp_path):
    # Given a release file whose mapping repeats a key
    path = tmp_path / "twice.yaml"
    path.write_text(THREE_WAVES.read_text() + "seed: 2\n")
    # When loaded / Then the error names the file and the key
    with pytest.raises(ScenarioError, match=r"twice.yaml: not valid YAML \(key 'seed' is given twice"):
        load_release_scenario(path)


# --- the worlds ------------------------------------------------------------------------------------------------
def test_the_worlds_advance_in_lockstep_each_with_its_own_draws():
    # Given two clusters of the same base app
    world = World(parse_release_scenario(two_clusters()))
    a, b = world.sims["a"], world.sims["b"]
    assert (a.seed, b.seed) == (cluster_seed(3, "a"), cluster_seed(3, "b"))
    # When the world runs to 90 s
    world.run_until(EPOCH + 90)
    # Then every cluster is at that instant, each with traffic drawn from its own seed
    assert a.clock.now() == b.clock.now() == world.now() == EPOCH + 90
    assert a.traffic.requests > 0 and b.traffic.requests > 0
    assert a.traffic.requests != b.traffic.requests
    # When a rolls a new image and the world sleeps two minutes
    ports = world.ports("a")
    ports.kube.patch_deployment("readiness", "nginx-app", DeploymentPatch(images={"nginx": IMAGE}))
    world.sleep(120)
    # Then only a's Deployment changed, and both clusters are still at the same instant
    assert (a.current_image(), b.current_image()) == (IMAGE, OLD_IMAGE)
    assert a.clock.now() == b.clock.now() == EPOCH + 210


def test_clusters_of_one_account_and_region_share_one_describe_bucket():
    # Given a and b in one account and Region, c in another Region
    raw = two_clusters()
    raw["clusters"][1].update(account=raw["clusters"][0]["account"], region=raw["clusters"][0]["region"])
    raw["clusters"].append({**raw["clusters"][0], "name": "c", "region": "eu-west-1"})
    raw["release"]["waves"][-1]["clusters"].append("c")
    world = World(parse_release_scenario(raw))
    a, b, c = (world.sims[n] for n in "abc")
    # Then a and b spend one bucket, c its own
    assert a.alb.bucket is b.alb.bucket and c.alb.bucket is not a.alb.bucket
    # When b spends the whole bucket at once, Then a call from a at the same instant is throttled, c's is not
    world.run_until(world.release_start)
    now = world.now()
    while b.alb.bucket.take(now):
        pass
    assert not a.alb.bucket.take(now) and c.alb.bucket.take(now)


def test_the_worlds_events_run_in_one_time_order():
    # Given events scheduled on two worlds, interleaved in time
    world = World(parse_release_scenario(two_clusters()))
    a, b = world.sims["a"], world.sims["b"]
    seen: list[tuple[str, float]] = []
    t0 = world.now()
    for sim, name, offsets in ((a, "a", (1.0, 3.0)), (b, "b", (2.0, 4.0))):
        for dt in offsets:
            sim.loop.at(t0 + dt, lambda n=name, s=sim: seen.append((n, s.clock.now() - t0)))
    # When the world runs past them
    world.run_until(t0 + 5)
    # Then they ran in time order across the worlds, each at its own instant
    assert seen == [("a", 1.0), ("b", 2.0), ("a", 3.0), ("b", 4.0)]


def test_a_cluster_outside_the_release_has_no_ports():
    world = World(parse_release_scenario(two_clusters()))
    # Given the worlds a and b / When a handler asks for cluster c / Then it is refused, naming the known ones
    with pytest.raises(NotFoundError, match="'c' is not in this release's worlds"):
        world.ports("c")


def test_settling_ends_with_every_world_at_the_same_instant():
    # Given two clusters of one pod each, b in the middle of a rollout (its new pod serving, the old one draining)
    world = World(parse_release_scenario(two_clusters(overrides={"app": {"replicas": 1}})))
    world.run_until(world.release_start)
    world.ports("b").kube.patch_deployment("readiness", "nginx-app", DeploymentPatch(images={"nginx": IMAGE}))
    world.sleep(25)
    a, b = world.sims["a"], world.sims["b"]
    assert a.quiescent() and not b.quiescent()
    settle_from = world.now()
    # When the worlds settle
    world.settle()
    # Then b is quiet again, and a, quiet all along, waited for it: both at the same instant, later than a's own
    # settling (its settle_seconds) alone would end
    assert b.quiescent()
    assert a.clock.now() == b.clock.now() > settle_from + a.scenario.traffic.settle_seconds


# --- the child executions --------------------------------------------------------------------------------------
@dataclass
class FakeResult:
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None


class FakeInterleaver:
    """What SimChildExecutions uses of the interleaver: start, result_of, and the world's clock."""

    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.results: dict[int, FakeResult] = {}
        self.world = type("W", (), {"now": staticmethod(lambda: EPOCH + 42)})()

    def start(self, start: Any) -> int:
        self.starts.append(start)
        return len(self.starts) - 1

    def result_of(self, index: int) -> FakeResult | None:
        return self.results.get(index)


SM = "arn:aws:states:eu-west-1:333333333333:stateMachine:Albgate-Rollout"
CHILD_INPUT = {"cluster": "prod-euw1-a", "namespace": "readiness", "deployment": "nginx-app", "container": "nginx",
               "image": IMAGE, "policy": {}}


def test_a_child_starts_on_the_local_rollout_state_machine_now_and_is_read_back():
    # Given the child executions bound to an interleaver
    inter = FakeInterleaver()
    children = SimChildExecutions("RolloutStateMachineABC")
    children.bind(inter)
    # When the release starts a child in another Region and account
    arn = children.start(SM, "arn:aws:iam::333333333333:role/r", "rel-w3-2", CHILD_INPUT)
    # Then it is the ARN StartExecution gives there, started at the current instant on the local rollout machine
    assert arn == "arn:aws:states:eu-west-1:333333333333:execution:Albgate-Rollout:rel-w3-2"
    (start,) = inter.starts
    assert (start.at, start.name, start.state_machine, start.input) == (
        EPOCH + 42, "rel-w3-2", "RolloutStateMachineABC", CHILD_INPUT)
    assert children.index_of(arn) == 0 and children.started[0].cluster == "prod-euw1-a"
    # and it runs until the interleaver has its result, then reads as it ended
    assert children.describe(arn, None).status == "RUNNING"
    inter.results[0] = FakeResult("FAILED", error="RolledBack", cause="step 1")
    answer = children.describe(arn, None)
    assert (answer.status, answer.error, answer.cause) == ("FAILED", "RolledBack", "step 1")


def test_a_retried_start_starts_nothing_and_another_input_under_the_same_name_is_refused():
    inter = FakeInterleaver()
    children = SimChildExecutions("RolloutStateMachineABC")
    children.bind(inter)
    arn = children.start(SM, None, "rel-w1-1", CHILD_INPUT)
    # When the same start is retried / Then the same ARN, and still one execution
    assert children.start(SM, None, "rel-w1-1", dict(CHILD_INPUT)) == arn
    assert len(inter.starts) == 1
    # When the same name comes with another input / Then it is refused, as ExecutionAlreadyExists is
    with pytest.raises(InvalidInputError, match="exists with another input"):
        children.start(SM, None, "rel-w1-1", {**CHILD_INPUT, "image": OLD_IMAGE})
    # and an execution nobody started does not exist
    with pytest.raises(NotFoundError):
        children.describe(arn + "-other", None)


# --- whole releases --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_waves():
    return run_release(load_release_scenario(THREE_WAVES))


@pytest.fixture(scope="module")
def broken():
    return run_release(load_release_scenario(BROKEN))


def test_three_waves_roll_every_cluster_to_the_new_image_without_a_failed_request(three_waves):
    r = three_waves
    # Given five clusters in three waves / When the release runs / Then it succeeds, every wave started
    assert (r.outcome, r.status, r.error) == ("succeeded", "SUCCEEDED", None), r.render()
    assert r.waves_started == ["staging", "canary", "production"]
    # and every cluster ran exactly one rollout, which succeeded, and ends on the new image with no failed request
    for c in r.clusters:
        assert [(e.kind, e.outcome) for e in c.executions] == [(ROLLOUT, "succeeded")], c.cluster
        assert c.final_image == IMAGE and c.requests > 0 and c.failed_requests == 0, c
    assert r.failed_requests == 0 and r.requests == sum(c.requests for c in r.clusters)
    # and the canary wave was approved once, before it started
    canary = r.cluster("prod-use1-a").executions[0]
    assert len(r.approved_at) == 1 and r.approved_at[0] <= canary.started_at


def test_waves_run_in_order_after_their_bake_and_at_most_two_at_once(three_waves):
    r = three_waves
    runs = {c.cluster: c.executions[0] for c in r.clusters}
    staging, canary = runs["staging-use1"], runs["prod-use1-a"]
    production = sorted((runs[n] for n in ("prod-use1-b", "prod-euw1-a", "prod-euw1-b")), key=lambda e: e.started_at)
    # Then the release starts at the base's rollout start, each wave after the previous one ended and baked 60 s
    assert 30 <= staging.started_at < 32
    assert canary.started_at >= staging.started_at + staging.seconds + 60
    assert production[0].started_at >= canary.started_at + canary.seconds + 60
    # and the third wave's two first rollouts start together, the third only once one of them ended
    assert production[0].started_at == production[1].started_at
    first_end = min(e.started_at + e.seconds for e in production[:2])
    assert production[2].started_at >= first_end


def test_a_broken_second_wave_stops_the_release_and_rolls_the_first_wave_back(broken):
    r = broken
    # Given the new image broken in the canary cluster / When the release runs / Then it stops at that wave
    assert (r.outcome, r.status, r.error) == ("stopped", "FAILED", "ReleaseStopped"), r.render()
    assert "wave 'canary'" in r.cause and "prod-use1-a" in r.cause and "waves not started: production" in r.cause
    assert r.waves_started == ["staging", "canary"]
    # and the canary cluster's own rollout rolled itself back to the old image
    canary = r.cluster("prod-use1-a")
    assert [(e.kind, e.outcome) for e in canary.executions] == [(ROLLOUT, "rolled_back")]
    # and staging's completed rollout was rolled back, through the same gates, to the image it ran before
    staging = r.cluster("staging-use1")
    assert [(e.kind, e.outcome, e.image) for e in staging.executions] == [
        (ROLLOUT, "succeeded", IMAGE), (ROLLBACK, "succeeded", OLD_IMAGE)]
    # and the third wave's clusters were never touched
    for name in ("prod-use1-b", "prod-euw1-a", "prod-euw1-b"):
        assert r.cluster(name).executions == [] and r.cluster(name).rollout_seconds is None
    # so every cluster ends on the old image, and no request failed anywhere
    for c in r.clusters:
        assert c.final_image == OLD_IMAGE and c.requests > 0 and c.failed_requests == 0, c


def test_a_release_is_the_same_run_again_and_reports_as_json(broken):
    # Given the broken release already run once / When it runs again with the same seed
    again = run_release(load_release_scenario(BROKEN))
    # Then everything but the wall time is the same, and the report is JSON
    first, second = broken.to_json(), again.to_json()
    first.pop("wall_seconds"), second.pop("wall_seconds")
    assert first == second
    assert json.loads(json.dumps(first))["clusters"][0]["cluster"] == "staging-use1"
    assert "stopped" in broken.render().splitlines()[0]


def test_the_release_tells_the_bus_where_it_is(three_waves, broken):
    # Given the two releases' events as their histories record the puts on the release bus
    def types(r):
        return [t for t, _ in r.events]

    # Then a successful release announces its start, the canary's approval request, each wave and its end
    assert types(three_waves) == ["Release Started", "Release Wave Passed", "Release Wave Awaits Approval",
                                  "Release Wave Passed", "Release Wave Passed", "Release Succeeded"]
    passed = [d for t, d in three_waves.events if t == "Release Wave Passed"]
    assert [(d["wave"], d["waves_passed"], d["more_waves"]) for d in passed] == [
        ("staging", 1, True), ("canary", 2, True), ("production", 3, False)]
    approval = next(d for t, d in three_waves.events if t == "Release Wave Awaits Approval")
    assert approval["wave"]["name"] == "canary" and approval["task_token"]
    # every event names the release, the image, the execution and its console page
    for _, d in three_waves.events:
        assert d["release"] == "myapp" and d["image"] == IMAGE
        assert d["console_url"].endswith(d["execution_arn"]) and ":execution:" in d["execution_arn"]
    # and a stopped one ends with Release Stopped, whose cause says where and why
    assert types(broken)[-1] == "Release Stopped"
    assert "Release Succeeded" not in types(broken)
    cause = broken.events[-1][1]["cause"]
    assert "wave 'canary'" in cause and "prod-use1-a" in cause and "waves not started: production" in cause
