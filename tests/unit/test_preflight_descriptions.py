"""Preflight on the board of target group descriptions (lambdas/domain/descriptions.py), on the simulated cluster
and ALB with the real use case: what it books in albgate's share, what it calls, what it leaves on the board.

The other Preflights are played by writing to the board as they would; the budget is scripted (it says "wait N s"
on demand and records every ask as (tokens, reserve)); the simulated ALB counts albgate's DescribeTargetGroups
calls (``group_calls``) and the Describe* tokens it spent (``tokens``).
"""

from __future__ import annotations

import pytest

from lambdas.domain.descriptions import JOIN_WAIT_SECONDS, Board
from lambdas.domain.errors import NotFoundError
from lambdas.domain.rollout.preflight import PREFLIGHT_WAITING
from tests.unit.test_rollout_budget import World, _world, preflight


@pytest.fixture
def world() -> World:
    return _world(label_namespace=False)


def own_arn(world: World) -> str:
    (arn,) = [tg.arn for tg in world.sim.alb.tgs.values() if "/k8s-other-svc/" not in tg.arn]
    return arn


def tokens(world: World) -> int:
    """Describe* tokens albgate spent in the account's bucket."""
    return sum(n for _, caller, n in world.sim.alb.asked if caller == "albgate")


def other_group(world: World):
    """A second target group in the account, another Deployment's."""
    return world.sim.alb.create_target_group("k8s-other-svc", 80, "ip", (5, 2, 2, 2), 30)


def board(world: World) -> Board:
    return world.ports.descriptions.board()


def test_alone_preflight_describes_its_group_and_leaves_the_answer_for_others(world):
    # When a Preflight runs with room in the budget and nothing on the board
    state = preflight(world.ports, world.request(), "t1")
    # Then it booked and spent DescribeTargetGroups and DescribeTargetGroupAttributes, as before the board
    assert world.budget.asks == [(2, True)] and tokens(world) == 2 and world.group_calls == 1
    assert len(state["target_groups"]) == 1
    # and its answer is on the board, its group off the wanted list
    assert own_arn(world) in board(world).described and not board(world).wanted


def test_a_group_described_moments_ago_costs_only_its_attributes(world):
    # Given another Preflight's answer for this group, made a second ago
    settings = world.sim.alb.tgs[own_arn(world)].settings()
    world.ports.descriptions.offer([settings], world.now - 1)
    # When Preflight runs
    state = preflight(world.ports, world.request(), "t1")
    # Then it books and spends one call, the attributes, and keeps the group as described
    assert world.budget.asks == [(1, True)] and tokens(world) == 1 and world.group_calls == 0
    assert state["target_groups"][0]["health_check_interval_seconds"] == settings.health_check_interval_seconds


def test_an_answer_that_would_refuse_the_rollout_is_asked_again(world):
    # Given an answer on the board that shows the group with instance targets (Preflight would refuse it)
    settings = world.sim.alb.tgs[own_arn(world)].settings()
    world.ports.descriptions.offer([type(settings)(**{**settings.__dict__, "target_type": "instance"})], world.now)
    # When Preflight runs
    state = preflight(world.ports, world.request(), "t1")
    # Then it describes the group itself, and goes on with what ELB says now
    assert world.budget.asks == [(2, True)] and world.group_calls == 1
    assert len(state["target_groups"]) == 1


def test_a_waiting_preflight_becomes_the_describer_and_describes_what_others_want_at_its_turn(world):
    other = other_group(world)
    # Given a spent budget: Preflight must wait 4 s, and nobody describes for it
    world.budget.say(4.0)
    waiting = preflight(world.ports, world.request(), "t1")
    # Then it booked its attributes and one DescribeTargetGroups call, and its turn is the describer's
    assert world.budget.asks == [(2, True)] and waiting["booked_calls"] == 2
    assert board(world).describer_at == pytest.approx(waiting["describe_slot_at"], abs=1e-6)
    assert own_arn(world) in board(world).wanted
    # When another Preflight, waiting for a later turn, asks for its group
    world.ports.descriptions.want([other.arn], world.now)
    # and this one comes back at its turn
    world.sim.run_until(world.now + waiting["wait_seconds"])
    state = preflight(world.ports, world.request(), "t1", waiting)
    # Then one DescribeTargetGroups call described both groups, without asking the budget again
    assert world.budget.asks == [(2, True)] and world.group_calls == 1 and tokens(world) == 2
    assert len(state["target_groups"]) == 1
    b = board(world)
    assert {own_arn(world), other.arn} <= set(b.described) and not b.wanted and b.describer_at is None


def test_a_preflight_that_must_wait_joins_a_describer_to_come_and_books_only_its_attributes(world):
    # Given a describer whose turn is 5 s away, and a spent budget (this Preflight waits 6 s, a short queue)
    world.ports.descriptions.want([other_group(world).arn], world.now, describer_at=world.now + 5)
    world.budget.say(6.0, 6.0)
    # When Preflight runs
    waiting = preflight(world.ports, world.request(), "t1")
    # Then it asked how long its two calls would wait, joined: one call booked, its group wanted, the describer's
    # turn unchanged
    assert world.budget.asks == [(2, False), (1, True)] and waiting["booked_calls"] == 1
    assert "another Preflight describes them" in waiting["reason"]
    start = world.now
    assert own_arn(world) in board(world).wanted and board(world).describer_at == pytest.approx(start + 5, abs=1e-6)
    # When the describer describes it at its turn, and this Preflight comes back at its own
    world.sim.run_until(start + 5)
    world.ports.descriptions.offer([world.sim.alb.tgs[own_arn(world)].settings()], world.now)
    world.sim.run_until(start + waiting["wait_seconds"])
    state = preflight(world.ports, world.request(), "t1", waiting)
    # Then it reads the answer and spends its one booked call on the attributes
    assert world.budget.asks == [(2, False), (1, True)] and world.group_calls == 0 and tokens(world) == 1
    assert len(state["target_groups"]) == 1


def test_a_preflight_in_a_long_queue_does_not_join_and_becomes_the_next_describer(world):
    # Given a describer to come, and a budget whose queue is longer than the share's burst takes to refill
    world.ports.descriptions.want([other_group(world).arn], world.now, describer_at=world.now + 5)
    world.budget.say(JOIN_WAIT_SECONDS + 0.5, JOIN_WAIT_SECONDS + 0.5)
    # When Preflight runs
    waiting = preflight(world.ports, world.request(), "t1")
    # Then it books both of its calls, as the share paces the starts of many rollouts, and describes at its turn
    assert world.budget.asks == [(2, False), (2, True)] and waiting["booked_calls"] == 2
    assert board(world).describer_at == pytest.approx(waiting["describe_slot_at"], abs=1e-6)


def test_a_preflight_the_share_lets_go_at_once_calls_without_booking(world):
    # Given a describer to come, and a budget that has room after all when asked
    world.ports.descriptions.want([other_group(world).arn], world.now, describer_at=world.now + 5)
    world.budget.say(0.0)
    # When Preflight runs / Then its probe counted both calls, and it makes them now
    state = preflight(world.ports, world.request(), "t1")
    assert world.budget.asks == [(2, False)] and world.group_calls == 1 and tokens(world) == 2
    assert len(state["target_groups"]) == 1


def test_a_joiner_whose_describer_went_another_way_books_the_call_it_lacks(world):
    # Given a Preflight that joined a describer (5 s away) that then never described
    world.ports.descriptions.want([other_group(world).arn], world.now, describer_at=world.now + 5)
    world.budget.say(6.0, 6.0)
    waiting = preflight(world.ports, world.request(), "t1")
    # When it comes back at its turn to find no answer, with the budget spent for 3 s more
    world.sim.run_until(world.now + waiting["wait_seconds"])
    world.budget.say(3.0)
    again = preflight(world.ports, world.request(), "t1", waiting)
    # Then it booked the DescribeTargetGroups call as a turn of its own, and called nothing yet
    assert world.budget.asks == [(1, True)] and again["preflight"] == PREFLIGHT_WAITING
    assert again["booked_calls"] == 2 and again["turns"] == 2 and tokens(world) == 0
    # and at that turn it makes both calls without asking again
    world.sim.run_until(world.now + again["wait_seconds"])
    state = preflight(world.ports, world.request(), "t1", again)
    assert world.budget.asks == [(1, True)] and world.group_calls == 1 and tokens(world) == 2
    assert len(state["target_groups"]) == 1


def test_a_joiner_let_go_at_once_books_the_describe_call_too(world):
    # Given a describer to come, and a budget that lets the joiner's one call go now but not a second
    world.ports.descriptions.want([other_group(world).arn], world.now, describer_at=world.now + 5)
    world.budget.say(6.0, 0.0, 2.0)
    # When Preflight runs
    waiting = preflight(world.ports, world.request(), "t1")
    # Then it booked the call it lacks as well, and waits for it
    assert world.budget.asks == [(2, False), (1, True), (1, True)] and waiting["booked_calls"] == 2
    assert tokens(world) == 0


def test_a_wanted_group_that_is_gone_does_not_fail_the_describer(world):
    # Given a group on the wanted list that no longer exists (its Preflight will fail on its own)
    gone = own_arn(world).replace("targetgroup/", "targetgroup/gone-")
    world.ports.descriptions.want([gone], world.now, describer_at=world.now + 30)
    # When a Preflight describes its own group with it
    state = preflight(world.ports, world.request(), "t1")
    # Then the refused call is made again for its own group alone, and the gone group is off the list
    assert world.group_calls == 2 and len(state["target_groups"]) == 1
    assert gone not in board(world).wanted


def test_a_preflights_own_group_that_is_gone_fails_it(world):
    gone = own_arn(world)
    del world.sim.alb.tgs[gone]
    with pytest.raises(NotFoundError):
        preflight(world.ports, world.request(), "t1")


def test_an_answer_from_before_the_count_booked_two_calls_a_group(world):
    # Given a waiting answer written before Preflights counted their booked calls (no booked_calls)
    world.budget.say(4.0)
    waiting = preflight(world.ports, world.request(), "t1")
    del waiting["booked_calls"]
    world.sim.run_until(world.now + waiting["wait_seconds"])
    # When it comes back at its turn
    state = preflight(world.ports, world.request(), "t1", waiting)
    # Then it calls without asking again
    assert world.budget.asks == [(2, True)] and len(state["target_groups"]) == 1


def test_a_describer_takes_groups_wanted_too_long_ago_off_the_board(world):
    # Given a group wanted long ago by a Preflight that ended another way
    lost = other_group(world).arn
    world.ports.descriptions.want([lost], world.now - 500, describer_at=world.now - 490)
    # When a Preflight describes its own group
    preflight(world.ports, world.request(), "t1")
    # Then the lost group was neither described nor left on the board
    b = board(world)
    assert lost not in b.wanted and lost not in b.described and world.group_calls == 1
