"""Many copies of the app in one world: their own objects and clients, one controller and bucket, rollouts at once."""

from __future__ import annotations

from pathlib import Path

import pytest

import albgate.sim.albgate_strategy  # noqa: F401 - registers the albgate strategy
from albgate.sim import ScenarioError, Simulation, load_scenario, parse_scenario
from albgate.sim.fleet import FleetResult, FleetRollout, alone_seconds, run_fleet, summary
from albgate.sim.runner import run_strategy
from albgate.sim.simulation import COPY_LABEL

ROOT = Path(__file__).resolve().parents[2]
HARDENED = load_scenario(ROOT / "scenarios" / "seed-app-hardened.yaml")


def fleet(n: int, within: float = 10, **changes) -> object:
    return HARDENED.with_changes(fleet={"deployments": n, "start_within_seconds": within}, **changes)


def test_a_single_app_keeps_the_scenarios_names():
    # Given the scenario without a fleet section / When its world is built
    sim = Simulation(HARDENED)
    # Then there is one copy, named as the scenario says, starting with the rollout
    (copy,) = sim.copies
    assert (copy.deployment, copy.service, copy.start) == ("nginx-app", "nginx-svc", sim.rollout_start)
    assert COPY_LABEL not in copy.labels


def test_each_copy_has_its_own_deployment_service_group_and_clients():
    # Given three copies / When the world is built
    sim = Simulation(fleet(3))
    # Then each has its own Deployment, Service (selecting only its pods), target group and traffic stream
    assert [c.deployment for c in sim.copies] == ["nginx-app-1", "nginx-app-2", "nginx-app-3"]
    assert [c.service for c in sim.copies] == ["nginx-svc-1", "nginx-svc-2", "nginx-svc-3"]
    assert len({g.arn for c in sim.copies for g in c.groups}) == 3
    for c in sim.copies:
        pods = sim.cluster.service_pods(sim.cluster.services[(sim.scenario.namespace.name, c.service)])
        assert len(pods) == 3 and {p.labels[COPY_LABEL] for p in pods} == {c.deployment}
        assert set(c.groups[0].targets) == {p.ip for p in pods}
    # and one controller binds all three groups
    assert len(sim.lbc.bindings) == 3
    # When traffic flows for a minute / Then every copy got its own clients, none failed
    sim.advance(60)
    assert all(c.traffic.requests > 0 for c in sim.copies)
    assert sim.traffic.requests == sum(c.traffic.requests for c in sim.copies)
    assert sim.traffic.failed_requests == 0


def test_starts_fall_in_the_window_and_a_copy_alone_is_the_same_copy():
    # Given ten copies starting within 10 s
    whole = Simulation(fleet(10))
    starts = [c.start - whole.rollout_start for c in whole.copies]
    # Then every start is inside the window, and they differ
    assert all(0 <= s <= 10 for s in starts) and len(set(starts)) == 10
    # When copy 7 is built alone / Then it has the same names and start as in the fleet, and nothing else
    alone = Simulation(fleet(10), only=[7])
    (copy,) = alone.copies
    assert (copy.deployment, copy.start) == (whole.copies[7].deployment, whole.copies[7].start)
    assert len(alone.lbc.bindings) == 1
    with pytest.raises(ValueError, match="between 0 and 9"):
        Simulation(fleet(10), only=[10])


def test_the_fleet_section_is_validated():
    # Given a fleet of 0, a negative window, an unknown field / Then each is one error naming the field
    for bad, field in (({"deployments": 0}, "fleet.deployments"), ({"start_within_seconds": -1},
                       "fleet.start_within_seconds"), ({"copies": 3}, "fleet.copies")):
        with pytest.raises(ScenarioError, match=field):
            parse_scenario({"name": "x", "fleet": bad})
    # and the request cap counts every copy's clients
    with pytest.raises(ScenarioError, match="fleet.deployments"):
        parse_scenario({"name": "x", "traffic": {"rate_per_second": 1000}, "fleet": {"deployments": 2000}})
    # (each Service's clients: copies behind one Service share them)
    parse_scenario({"name": "x", "traffic": {"rate_per_second": 1000}, "fleet": {"deployments": 2000, "per_service": 2000}})


def test_a_fleet_is_not_a_single_run():
    # Given a fleet scenario / When run as one rollout / Then it says how to run it
    with pytest.raises(ValueError, match="run_fleet"):
        run_strategy(fleet(3), "albgate")
    with pytest.raises(ValueError, match="cannot run a fleet"):
        run_fleet(fleet(3), "oracle")


def test_the_controllers_gate_rolls_every_copy():
    # Given five copies of the hardened app, their namespace labelled by the strategy
    result = run_fleet(fleet(5), "readiness-gate")
    # Then each rollout succeeded from its own start, and the world's counts are the copies' sums
    assert result.failed_rollouts == 0 and len(result.rollouts) == 5
    assert result.requests == sum(r.requests for r in result.rollouts)
    assert all(0 <= r.started_at - 30 <= 10 for r in result.rollouts)
    assert result.describe_calls_by_caller.get("controller", 0) > 0 and "albgate" not in result.describe_calls_by_caller
    # and every call of the controllers' is on the world's clock, within the run, for the busiest-window measure
    asks = result.controller_asks
    assert len(asks) == result.describe_calls_by_caller["controller"] and asks == sorted(asks)
    assert all(0 <= t <= 30 + result.simulated_seconds for t in asks) and "controller_asks" not in result.to_json()


def test_albgate_rolls_three_copies_at_once_without_a_drop():
    # Given three copies rolled within 10 s by albgate, one execution each
    result = run_fleet(fleet(3), "albgate")
    # Then all three succeeded with no failed request
    assert [r.outcome for r in result.rollouts] == ["succeeded"] * 3
    assert result.failed_requests == 0 and all(r.failed_requests == 0 for r in result.rollouts)
    # and they ran at the same time: the makespan is shorter than the rollouts one after another
    assert result.makespan_seconds < sum(r.seconds for r in result.rollouts) / 2
    # and albgate asks ELB next to nothing: its gates read the controllers' conditions and nudge them once overdue,
    # its last drains pass on the controllers' checkpoints; the controllers' calls are counted apart, in one bucket
    calls = result.describe_calls_by_caller
    assert calls.get("albgate", 0) <= len(result.rollouts) and calls["controller"] >= 3 * 3


def test_a_fleet_rollout_that_did_not_succeed_says_how_it_ended():
    # Given two copies rolled to an image that fails the ALB's health checks
    result = run_fleet(fleet(2, faults={"broken_images": ["ikubernetes/myapp:v2"], "broken_mode": "http_500"}),
                       "albgate")
    # Then each rolled back, and says why, as a single rollout would
    assert [r.outcome for r in result.rollouts] == ["rolled_back"] * 2
    assert all("unhealthy" in r.detail and "Target.ResponseCodeMismatch" in r.detail for r in result.rollouts)


def test_a_rollout_alone_is_measured_in_the_same_world():
    # Given copy 1 of three / When it is rolled with no other copy in the world
    seconds = alone_seconds(fleet(3), "albgate", None, 1)
    # Then it succeeded, in the time a single seed-app rollout takes (tens of seconds, not minutes)
    assert seconds is not None and 40 < seconds < 200


def test_slowdowns_and_summaries():
    # Given a result with two rollouts, one timed alone
    result = FleetResult("s", "albgate", 1, 2, [], 0, 0, {}, None, {}, {}, 0, 0, 0)
    result.rollouts = [FleetRollout("a", "succeeded", 0, 120, 10, 0), FleetRollout("b", "succeeded", 0, 90, 10, 0)]
    result.alone_seconds = {"a": 100}
    # Then the slowdown is measured only where the time alone is known
    assert result.slowdowns() == [1.2]
    # and p99 is the nearest rank: of 1..100 the 99th value, of 1..10 the largest
    assert summary([float(x) for x in range(1, 101)])["p99"] == 99
    assert summary([float(x) for x in range(1, 11)])["p99"] == 10
    assert summary([]) is None


def test_copies_behind_one_service_share_its_groups_and_clients_and_keep_their_own_deployments():
    # Given four copies, two behind each Service / When the world is built
    sim = Simulation(HARDENED.with_changes(fleet={"deployments": 4, "start_within_seconds": 10, "per_service": 2}))
    # Then the copies of a pair name the same Service, target group and clients, and each keeps its Deployment
    assert [c.service for c in sim.copies] == ["nginx-svc-1", "nginx-svc-1", "nginx-svc-3", "nginx-svc-3"]
    assert [c.groups[0].arn for c in sim.copies[:2]] == [sim.copies[0].groups[0].arn] * 2
    assert sim.copies[0].traffic is sim.copies[1].traffic and sim.copies[1].traffic is not sim.copies[2].traffic
    assert len(sim.lbc.bindings) == 2
    for c in sim.copies:
        mine = sim.cluster.pods_selected(sim.scenario.namespace.name, sim.deployment(c.index).selector)
        assert len(mine) == 3 and {p.labels[COPY_LABEL] for p in mine} == {c.deployment}
        # the Service selects both copies' pods, and every one of them is a healthy target of the pair's group
        served = sim.cluster.service_pods(sim.cluster.services[(sim.scenario.namespace.name, c.service)])
        assert len(served) == 6 and set(c.groups[0].targets) == {p.ip for p in served}
    # When traffic flows / Then the pair's clients reach both copies' pods, and none fails
    sim.advance(30)
    assert sim.traffic.failed_requests == 0
    assert sim.traffic.requests == sim.copies[0].traffic.requests + sim.copies[2].traffic.requests
    # When the second copy of a pair is built alone / Then it meets the same Service and group, with its pods only
    (alone,) = Simulation(sim.scenario, only=[1]).copies
    assert (alone.service, alone.groups[0].name) == ("nginx-svc-1", sim.copies[1].groups[0].name)
    assert len(alone.groups[0].targets) == 3


def test_more_copies_per_service_than_copies_is_refused():
    with pytest.raises(ScenarioError, match="fleet.per_service"):
        parse_scenario({"name": "x", "fleet": {"deployments": 2, "per_service": 3}})
    with pytest.raises(ScenarioError, match="fleet.per_service"):
        parse_scenario({"name": "x", "fleet": {"deployments": 2, "per_service": 0}})


AUTO_MODE = load_scenario(ROOT / "scenarios" / "auto-mode.yaml")


def test_every_shipped_fleet_scenario_loads_and_the_pairs_one_puts_two_copies_behind_each_service():
    fleets = {p.name: load_scenario(p) for p in sorted((ROOT / "scenarios" / "fleet").glob("*.yaml"))}
    assert all(f.fleet.deployments > 1 for f in fleets.values())
    pairs = fleets["auto-mode-pairs-20.yaml"]
    assert (pairs.fleet.deployments, pairs.fleet.per_service, pairs.cluster.auto_mode) == (20, 2, True)


def test_rollouts_behind_one_service_share_their_looks_and_still_drop_nothing():
    # Given eight Auto Mode copies (no controller gate: every look asks ELB), two behind each Service
    pairs = AUTO_MODE.with_changes(fleet={"deployments": 8, "start_within_seconds": 10, "per_service": 2})
    shared = run_fleet(pairs, "albgate")
    alone = run_fleet(pairs, "albgate", share_looks=False)
    # Then every rollout succeeds without a failed request either way
    for result in (shared, alone):
        assert result.failed_rollouts == 0 and result.failed_requests == 0
    # and sharing the answers saves at least a quarter of albgate's calls
    assert shared.calls_per_rollout("albgate") <= 0.75 * alone.calls_per_rollout("albgate")
